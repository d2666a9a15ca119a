//! The write-ahead log: where an append becomes durable.
//!
//! Why a WAL in front of sled: sled's `flush` costs two `sync_file_range` calls
//! (~300 µs) per group commit, which capped the proxy at about 10k req/s and cost
//! ~500 µs per lone request. One `pwrite` of a group commit into an append-only file
//! gives the same guarantee (the bytes are in the kernel's page cache: they survive
//! the process being killed, not a power loss) for a few microseconds. sled is then
//! brought up to date in the background ([`super::apply`]) and stays the store that
//! verify, query, export and prune read.
//!
//! Layout: `<data_dir>/audit-wal/<first seq, 20 digits>.wal` segments, each a
//! [`SEGMENT_HEADER`] (`PCAWAL01` + first seq u64 BE) followed by frames, one per
//! group commit: `[FRAME_MAGIC u32][payload length u32][CRC-32 of payload u32]
//! [CRC-32 of the 12 bytes before u32]` and the payload, which is exactly the sled
//! blob of the batch ([`super::codec`]). The header has its own CRC so that a
//! damaged length cannot pass for a torn write (a length that runs past the end
//! of the file is only believed when the header that holds it checks out).
//! Frames of the first format (`LEGACY_FRAME_MAGIC`, 12-byte header, no header
//! CRC) are still read, so a WAL left by an older portcullis replays; but for them
//! a frame running past the end cannot be told from damage, so it is a break
//! (`portcullis audit repair` cuts it, keeping a copy), never cut silently.
//! A segment is started when the current one exceeds its size limit; segments are
//! deleted once sled holds (and has flushed) every record in them.
//!
//! A write that fails or is cut short is undone with `ftruncate` back to the last
//! acknowledged length; until that succeeds nothing else is written (a stale frame
//! left in the middle would break the chain on replay).
//!
//! Replay ([`recover`]) runs before the log opens and in the offline tools (on a
//! copy for `audit verify --data-dir`, see [`super::offline`]): frames
//! beyond sled's head are applied to sled, checked for contiguous seqs and chain
//! links. A frame cut short at the end of the last segment is what a kill during a
//! write leaves: it was never acknowledged, so it is cut off (logged). Anything
//! else that does not continue the chain is a [`ChainBreak`], never dropped: the
//! WAL is left as it is.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::codec::{self, chain_hash};
use super::store::{ChainHead, Packer, Stores};
use super::{BreakKind, ChainBreak, RecordError};

/// Directory of the WAL inside the data directory.
pub(crate) const WAL_DIR: &str = "audit-wal";
const SEGMENT_MAGIC: &[u8; 8] = b"PCAWAL01";
pub(crate) const SEGMENT_HEADER: u64 = 16;
/// Magic of a frame whose header carries its own CRC ("PCAX").
const FRAME_MAGIC: u32 = 0x5043_4158;
/// Magic of the first frame format, without a header CRC ("PCAW"); read, never written.
const LEGACY_FRAME_MAGIC: u32 = 0x5043_4157;
/// Bytes before a frame's payload: magic, length, payload CRC-32, header CRC-32.
pub(crate) const FRAME_HEADER: usize = 16;
/// Header size of [`LEGACY_FRAME_MAGIC`] frames.
const LEGACY_FRAME_HEADER: usize = 12;
/// Larger payloads are refused as damage (a group commit of 10000 records of the
/// largest accepted size stays far below it in practice).
const MAX_PAYLOAD: u32 = 1 << 30;
/// Default size after which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;

/// Start a frame in `buf`: header space, then the blob version byte. Entries follow
/// ([`codec::push_entry`]), then [`finish_frame`].
pub(crate) fn start_frame(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    buf.push(codec::BLOB_VERSION);
}

/// Fill in the header of a frame built with [`start_frame`].
pub(crate) fn finish_frame(buf: &mut [u8]) {
    let payload_len = (buf.len() - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&buf[FRAME_HEADER..]);
    buf[0..4].copy_from_slice(&FRAME_MAGIC.to_be_bytes());
    buf[4..8].copy_from_slice(&payload_len.to_be_bytes());
    buf[8..12].copy_from_slice(&crc.to_be_bytes());
    let header_crc = crc32fast::hash(&buf[..12]);
    buf[12..16].copy_from_slice(&header_crc.to_be_bytes());
}

/// The sled blob inside a frame.
pub(crate) fn frame_blob(frame: &[u8]) -> &[u8] {
    &frame[FRAME_HEADER..]
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Segments in `dir`, oldest first: (first seq from the name, path).
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Make everything sled wrote durable: `syncfs` of the filesystem holding
/// `data_dir`. Syncing sled's `db` file alone is not enough: sled 0.34 writes
/// large nodes to files under `blobs/` and never syncs them.
pub(crate) fn sync_store(data_dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(data_dir)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a test wants the next write to fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inject {
    None,
    /// Half the frame is written, then an error (a short write).
    Write,
    /// The whole frame is written, then the sync fails.
    Sync,
}

/// The open segment the leader appends to. Only the group-commit leader touches it.
pub(crate) struct WalWriter {
    dir: PathBuf,
    file: File,
    /// Bytes acknowledged in `file` (header included).
    len: u64,
    /// A failed write may have left bytes past `len`: truncate before writing again.
    dirty: bool,
    segment_bytes: u64,
    /// Sync new segments and their names (only worth it with an fsync policy).
    sync_new: bool,
}

impl WalWriter {
    /// Start a fresh segment for records from `next_seq` on (after [`recover`]).
    pub fn create(
        dir: &Path,
        next_seq: u64,
        segment_bytes: u64,
        sync_new: bool,
    ) -> io::Result<WalWriter> {
        fs::create_dir_all(dir)?;
        let file = new_segment(dir, next_seq, sync_new)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            len: SEGMENT_HEADER,
            dirty: false,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER + 1),
            sync_new,
        })
    }

    /// Append one finished frame holding records from `first_seq` on, in one write.
    /// On error the file is truncated back (or marked for truncation before the
    /// next write): the frame is not acknowledged.
    pub fn write_frame(
        &mut self,
        frame: &[u8],
        first_seq: u64,
        inject: Inject,
    ) -> Result<(), String> {
        if self.dirty {
            self.undo()
                .map_err(|e| format!("undo an earlier failed WAL write: {e}"))?;
        }
        if self.len >= self.segment_bytes {
            // The old segment is complete (and synced if fsync is on): every later
            // replay reads it as is.
            let file = new_segment(&self.dir, first_seq, self.sync_new)
                .map_err(|e| format!("start WAL segment {first_seq}: {e}"))?;
            self.file = file;
            self.len = SEGMENT_HEADER;
        }
        self.dirty = true;
        let written = match inject {
            Inject::Write => self
                .file
                .write_all_at(&frame[..frame.len() / 2], self.len)
                .and(Err(io::Error::other("injected short write"))),
            _ => self.file.write_all_at(frame, self.len),
        };
        if let Err(e) = written {
            let _ = self.undo();
            return Err(format!("write audit WAL: {e}"));
        }
        if inject == Inject::Sync {
            let _ = self.undo();
            return Err("sync audit WAL: injected failure".into());
        }
        self.len += frame.len() as u64;
        self.dirty = false;
        Ok(())
    }

    /// `fdatasync` the segment; on failure the last frame is undone by the caller
    /// through [`WalWriter::undo_last`].
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Take back the frame of `len` bytes just written (its sync failed).
    pub fn undo_last(&mut self, len: usize) -> Result<(), String> {
        self.len -= len as u64;
        self.dirty = true;
        self.undo().map_err(|e| format!("undo a WAL write: {e}"))
    }

    fn undo(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.dirty = false;
        Ok(())
    }
}

fn new_segment(dir: &Path, first_seq: u64, sync: bool) -> io::Result<File> {
    let path = dir.join(segment_name(first_seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let mut header = [0u8; SEGMENT_HEADER as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&first_seq.to_be_bytes());
    file.write_all_at(&header, 0)?;
    if sync {
        // The name must survive a power loss too, or fsync of the file is worth nothing.
        file.sync_all()?;
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Delete the segments whose records are all at or below `flushed_seq` (sled holds
/// and has flushed them). The newest segment is kept: the leader appends to it.
pub(crate) fn remove_covered(dir: &Path, flushed_seq: u64) -> io::Result<usize> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for pair in segs.windows(2) {
        // Every record of pair[0] precedes pair[1]'s first seq.
        if pair[1].0 <= flushed_seq.saturating_add(1) {
            fs::remove_file(&pair[0].1)?;
            removed += 1;
        } else {
            break;
        }
    }
    Ok(removed)
}

/// What [`recover`] did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Records applied to sled from the WAL.
    pub records: u64,
    /// Bytes of a torn last frame that were cut off.
    pub torn_bytes: u64,
    /// The first frame that does not continue sled's chain (the WAL is then kept).
    pub broken: Option<ChainBreak>,
    /// Where the WAL stops continuing the chain: the segment and the byte offset of
    /// the first frame that does not (what `audit repair` cuts from).
    pub broken_at: Option<(PathBuf, u64)>,
}

/// Apply every WAL record beyond sled's head to sled, flush sled, then delete the
/// segments. With `sync`, `data_dir` (sled's directory) is synced ([`sync_store`])
/// before any segment is deleted so a power loss cannot take both copies;
/// without, the guarantee is the same as while serving (a killed process loses
/// nothing), and a restart does not pay a filesystem-wide sync.
pub(crate) fn recover(
    stores: &Stores,
    dir: &Path,
    data_dir: &Path,
    sync: bool,
) -> Result<Replayed, RecordError> {
    let io = |what: &str, e: io::Error| RecordError::Store(format!("audit WAL: {what}: {e}"));
    let segs = segments(dir).map_err(|e| io("list segments", e))?;
    let mut out = Replayed::default();
    if segs.is_empty() {
        return Ok(out);
    }
    let mut head = stores.load_head()?;
    let mut pending = Packer::default();
    'segments: for (i, (_, path)) in segs.iter().enumerate() {
        let last_segment = i + 1 == segs.len();
        let bytes = fs::read(path).map_err(|e| io(&format!("read {}", path.display()), e))?;
        let name = path.display();
        if bytes.len() < SEGMENT_HEADER as usize || &bytes[..8] != SEGMENT_MAGIC {
            if last_segment && bytes.len() < SEGMENT_HEADER as usize {
                // Killed while starting the segment: nothing in it was acknowledged.
                out.torn_bytes += bytes.len() as u64;
                let _ = fs::remove_file(path);
                continue;
            }
            out.broken = Some(wal_break(
                head.next_seq,
                BreakKind::Changed,
                format!("{name}: not an audit WAL segment"),
            ));
            out.broken_at = Some((path.clone(), 0));
            break;
        }
        let scan = scan_segment(&bytes, head, last_segment, &name.to_string());
        for frame in &scan.frames {
            if frame.count == 0 {
                continue;
            }
            pending.add(frame.blob, frame.last)?;
            if pending.blobs >= 64 {
                pending.commit(stores)?;
            }
            out.records += frame.count;
        }
        head = scan.head;
        match scan.end {
            SegmentEnd::Whole => {}
            SegmentEnd::Torn { at, why } => {
                // The end of the last segment: a write the kill cut short. It was
                // never acknowledged (acknowledgement follows the whole write).
                let cut = (bytes.len() - at) as u64;
                tracing::warn!(segment = %name, at, bytes = cut, %why, "audit WAL: cutting off a torn last frame");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io("open to cut", e))?;
                f.set_len(at as u64).map_err(|e| io("cut torn frame", e))?;
                f.sync_all().map_err(|e| io("sync cut", e))?;
                out.torn_bytes += cut;
                break 'segments;
            }
            SegmentEnd::Broken { at, chain_break } => {
                out.broken = Some(chain_break);
                out.broken_at = Some((path.clone(), at as u64));
                break 'segments;
            }
        }
    }
    pending.commit(stores)?;
    if out.records > 0 {
        stores
            .db
            .flush()
            .map_err(|e| RecordError::Store(format!("flush replayed audit records: {e}")))?;
    }
    if sync {
        sync_store(data_dir).map_err(|e| io("sync the sled db", e))?;
    }
    if out.broken.is_none() {
        for (_, path) in &segs {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove replayed segment", e)),
            }
        }
        let _ = sync_dir(dir);
    }
    if out.records > 0 || out.torn_bytes > 0 {
        tracing::info!(
            records = out.records,
            torn_bytes = out.torn_bytes,
            "audit WAL replayed into the store"
        );
    }
    Ok(out)
}

/// A frame of a segment that continues the chain (`count` 0: every record in it
/// is already at or below the head).
pub(crate) struct GoodFrame<'a> {
    pub blob: &'a [u8],
    pub count: u64,
    /// The head after this frame.
    pub last: ChainHead,
}

/// How reading a segment ended.
#[derive(Debug)]
pub(crate) enum SegmentEnd {
    /// Every byte after the header belongs to a frame that continues the chain.
    Whole,
    /// The last segment ends inside a frame from byte `at` on: the prefix of a
    /// write that a kill cut short, never acknowledged.
    Torn { at: usize, why: String },
    /// The frame at byte `at` is damaged or does not continue the chain.
    Broken { at: usize, chain_break: ChainBreak },
}

/// What [`scan_segment`] read.
pub(crate) struct SegmentScan<'a> {
    pub frames: Vec<GoodFrame<'a>>,
    /// The head after the last good frame.
    pub head: ChainHead,
    pub end: SegmentEnd,
}

/// Read the frames of one segment (`bytes` is the whole file, its header
/// already checked) from `head` on. Pure, so that it can be fuzzed: a torn
/// frame is only ever tolerated at the end of the `last_segment`; every other
/// defect is a [`SegmentEnd::Broken`] naming where it is.
pub(crate) fn scan_segment<'a>(
    bytes: &'a [u8],
    mut head: ChainHead,
    last_segment: bool,
    name: &str,
) -> SegmentScan<'a> {
    let mut frames = Vec::new();
    let mut pos = SEGMENT_HEADER as usize;
    let end = loop {
        if pos >= bytes.len() {
            break SegmentEnd::Whole;
        }
        let (frame, frame_len) = match read_frame(&bytes[pos..]) {
            Ok(f) => f,
            Err(BadFrame::Incomplete(why)) if last_segment => {
                break SegmentEnd::Torn { at: pos, why };
            }
            Err(BadFrame::Incomplete(why) | BadFrame::Corrupt(why)) => {
                // Anywhere else, and any frame whose bytes are all there, was
                // acknowledged: a break, kept as evidence, never cut off.
                let chain_break = wal_break(
                    head.next_seq,
                    BreakKind::Changed,
                    format!("{name} at byte {pos}: {why}"),
                );
                break SegmentEnd::Broken {
                    at: pos,
                    chain_break,
                };
            }
        };
        match check_frame(frame, &head) {
            Ok(Frame::Applied) => frames.push(GoodFrame {
                blob: frame,
                count: 0,
                last: head,
            }),
            Ok(Frame::Next { count, last }) => {
                frames.push(GoodFrame {
                    blob: frame,
                    count,
                    last,
                });
                head = last;
            }
            Err(mut chain_break) => {
                chain_break.detail =
                    format!("audit WAL {name} at byte {pos}: {}", chain_break.detail);
                break SegmentEnd::Broken {
                    at: pos,
                    chain_break,
                };
            }
        }
        pos += frame_len;
    };
    SegmentScan { frames, head, end }
}

fn wal_break(seq: u64, kind: BreakKind, detail: String) -> ChainBreak {
    ChainBreak { seq, kind, detail }
}

/// Why a frame could not be read.
enum BadFrame {
    /// The file ends inside the frame: the prefix of a write that a kill cut
    /// short (a `pwrite` lands as a prefix, never with holes).
    Incomplete(String),
    /// Every byte of the frame is there but it is wrong: damage or tampering,
    /// never a torn write.
    Corrupt(String),
}

/// The payload of the frame at the start of `bytes`, checked against its CRCs,
/// and the frame's whole length (header included).
fn read_frame(bytes: &[u8]) -> Result<(&[u8], usize), BadFrame> {
    if bytes.len() < LEGACY_FRAME_HEADER.min(FRAME_HEADER) {
        return Err(BadFrame::Incomplete(format!(
            "{} bytes, shorter than a frame header",
            bytes.len()
        )));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let header = match word(0) {
        FRAME_MAGIC => {
            if bytes.len() < FRAME_HEADER {
                return Err(BadFrame::Incomplete(format!(
                    "{} bytes, shorter than a frame header",
                    bytes.len()
                )));
            }
            if crc32fast::hash(&bytes[..12]) != word(12) {
                // The length cannot be trusted, so neither can "it runs past the end".
                return Err(BadFrame::Corrupt(format!(
                    "frame header checksum mismatch (length field says {})",
                    word(4)
                )));
            }
            FRAME_HEADER
        }
        LEGACY_FRAME_MAGIC => LEGACY_FRAME_HEADER,
        _ => return Err(BadFrame::Corrupt("no frame magic".into())),
    };
    let len = word(4);
    if len > MAX_PAYLOAD {
        return Err(BadFrame::Corrupt(format!(
            "frame length {len} is implausible"
        )));
    }
    let Some(payload) = bytes.get(header..header + len as usize) else {
        let why = format!("frame of {len} bytes runs past the end");
        return Err(if header == FRAME_HEADER {
            BadFrame::Incomplete(why)
        } else {
            // An old-format header has no CRC: a damaged length looks the same.
            BadFrame::Corrupt(format!(
                "{why} (old frame format without a header checksum: cannot tell a torn write from a damaged length)"
            ))
        });
    };
    if crc32fast::hash(payload) != word(8) {
        return Err(BadFrame::Corrupt("frame checksum mismatch".into()));
    }
    Ok((payload, header + len as usize))
}

enum Frame {
    /// Every record is at or below sled's head.
    Applied,
    /// The frame continues the chain: `count` records up to `last`.
    Next { count: u64, last: ChainHead },
}

/// Check that a (checksummed) frame continues the chain at `head`.
fn check_frame(blob: &[u8], head: &ChainHead) -> Result<Frame, ChainBreak> {
    let mut entries = codec::blob_entries(blob).peekable();
    let first = match entries.peek() {
        Some(Ok((seq, _))) => *seq,
        Some(Err(e)) => return Err(wal_break(head.next_seq, BreakKind::Changed, e.clone())),
        None => {
            return Err(wal_break(
                head.next_seq,
                BreakKind::Changed,
                "empty frame".into(),
            ))
        }
    };
    let mut expected = first;
    let mut prev = head.hash;
    let mut count = 0;
    for entry in entries {
        let (seq, value) = entry.map_err(|e| wal_break(expected, BreakKind::Changed, e))?;
        if seq != expected {
            return Err(wal_break(
                expected,
                BreakKind::Missing,
                format!("frame skips to record {seq}"),
            ));
        }
        if seq >= head.next_seq {
            if seq == first && first > head.next_seq {
                return Err(wal_break(
                    head.next_seq,
                    BreakKind::Missing,
                    format!(
                        "frame starts at {first}, the store ends at {}",
                        head.next_seq - 1
                    ),
                ));
            }
            if seq == head.next_seq && first < head.next_seq {
                // The applier only ever stops between frames.
                return Err(wal_break(
                    first,
                    BreakKind::Unexpected,
                    format!(
                        "frame {first}.. straddles the store's head {}",
                        head.next_seq - 1
                    ),
                ));
            }
            let split =
                codec::split_value(value).map_err(|e| wal_break(seq, BreakKind::Changed, e))?;
            if split.embedded_seq() != Some(seq) || chain_hash(&prev, split.canonical) != split.hash
            {
                return Err(wal_break(
                    seq,
                    BreakKind::Changed,
                    "record does not link to its predecessor".into(),
                ));
            }
            prev = split.hash;
            count += 1;
        }
        expected = seq + 1;
    }
    if count == 0 {
        return Ok(Frame::Applied);
    }
    Ok(Frame::Next {
        count,
        last: ChainHead {
            next_seq: expected,
            hash: prev,
        },
    })
}
