//! `docker cp` downloads (`GET /containers/{id}/archive`), held to the path
//! rules entry by entry.
//!
//! Why: a download is decided on the path asked for, but the daemon answers
//! with a tar of everything below it. With read globs `/app/config/*` and
//! `/app/config/instructions/*`, `docker cp c:/app/config/instructions out/`
//! would hand out `instructions/prompts/deep.txt`, which neither the file API
//! nor a single-file `docker cp` gives. So every entry is judged like a read of
//! its own path.
//!
//! Choice: refused entries are **left out** of the archive (the download goes
//! on with the rest), rather than refusing the whole download. Refusing would
//! need the whole listing before the first byte is sent (a second download, or
//! the archive buffered), and a 200 cannot be taken back once streaming has
//! begun. Leaving entries out streams, and still lets nothing the rules refuse
//! leave the container. What was left out is recorded (`file.withheld`).
//!
//! How: [`TarFilter`] reads the raw tar stream in 512-byte blocks, the way Go's
//! `archive/tar` reader (the docker CLI's) reads it: PAX `x` records and GNU
//! `L`/`K` long names apply to the next entry, the USTAR prefix is part of the
//! name, PAX `size` overrides the header's, header-only types carry no data.
//! A kept entry goes on byte for byte (its extension headers included); a
//! withheld one, data and all, is skipped. Only headers are held in memory.
//! Anything it cannot read exactly as Go would (a bad checksum, sparse files,
//! global PAX headers, a truncated stream) ends the stream with an error: the
//! client sees a failed copy, never an entry that was not judged.
//!
//! [`DownloadScope`] maps an entry's name to the container path it came from:
//! the daemon names entries after the last element of the requested path
//! (`instructions/…`, `./…` for a path ending in `/.`, `/…` for the root) and
//! reads them below the path with every symlink resolved. An entry is judged
//! by both its requested and its resolved path, as the file API judges a read.
//! A symlink entry is judged where it lies and passed on as a link (the tar
//! never follows it); a file reached through a symlink in the requested path
//! is judged by its resolved path too. A hard link whose target was withheld
//! is withheld as well.
//!
//! The filter's state machine is here; the parsing of one header block and
//! of its extension records is in `header` (Go's `archive/tar` rules, kept
//! apart so they can be read against Go's reader), and what an entry maps to
//! and whether it is withheld is in `scope`.

mod header;
mod scope;

use std::collections::HashMap;

use bytes::BytesMut;

use header::{c_string, parse_pax, Header};
pub use scope::{archive_root_name, DownloadScope, Withholder};

const BLOCK: usize = 512;

/// Largest PAX or GNU long-name extension read (Go's `maxSpecialFileSize`).
const MAX_META: u64 = 1 << 20;

/// The kind of a tar entry, as far as judging it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
    Other,
}

/// One real entry of the archive (extension headers applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// The entry's name as Go's tar reader gives it; `None` when it is not UTF-8.
    pub name: Option<String>,
    pub kind: EntryKind,
    /// A link's target (symlinks and hard links).
    pub link_name: Option<String>,
}

/// Why the stream was ended instead of filtered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the daemon's archive cannot be filtered: {0}")]
pub struct TarFilterError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, TarFilterError> {
    Err(TarFilterError(message.into()))
}

#[derive(Debug, Default)]
enum State {
    /// Reading a header block into `block`.
    #[default]
    Header,
    /// Reading an extension's data (and padding) into `meta_raw`.
    Meta {
        flag: u8,
        data_len: usize,
        remaining: u64,
    },
    /// An entry's data and padding: passed on or skipped.
    Body { remaining: u64, keep: bool },
    /// One zero block seen: the next must be zero too.
    SecondZero,
    /// The end-of-archive marker is through; anything after it is dropped.
    End,
}

/// A streaming filter over a tar archive: feed it chunks with [`TarFilter::push`],
/// call [`TarFilter::finish`] at the end of the input.
#[derive(Default)]
pub struct TarFilter {
    state: State,
    block: Vec<u8>,
    /// Extension headers waiting for their entry, exactly as received.
    meta_raw: Vec<u8>,
    meta_data: Vec<u8>,
    pax: HashMap<String, String>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl TarFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Filter one chunk of the archive into `out`; `judge` says, per entry,
    /// whether it may be passed on.
    pub fn push(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        judge: &mut impl FnMut(&ArchiveEntry) -> bool,
    ) -> Result<(), TarFilterError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Header | State::SecondZero => {
                    let take = (BLOCK - self.block.len()).min(input.len());
                    self.block.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::take(&mut self.block);
                        self.on_block(&block, out, judge)?;
                        self.block = block;
                        self.block.clear();
                    }
                }
                State::Meta {
                    data_len,
                    remaining,
                    ..
                } => {
                    let take = (*remaining).min(input.len() as u64) as usize;
                    self.meta_raw.extend_from_slice(&input[..take]);
                    let wanted = data_len.saturating_sub(self.meta_data.len()).min(take);
                    self.meta_data.extend_from_slice(&input[..wanted]);
                    *remaining -= take as u64;
                    input = &input[take..];
                    if *remaining == 0 {
                        self.on_meta_done()?;
                    }
                }
                State::Body { remaining, keep } => {
                    let take = (*remaining).min(input.len() as u64) as usize;
                    if *keep {
                        out.extend_from_slice(&input[..take]);
                    }
                    *remaining -= take as u64;
                    input = &input[take..];
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                }
                State::End => return Ok(()),
            }
        }
        Ok(())
    }

    /// The input ended: it must have ended where an archive may end.
    pub fn finish(&self) -> Result<(), TarFilterError> {
        match self.state {
            State::End => Ok(()),
            // Go's reader takes a clean EOF before a header as the end.
            State::Header | State::SecondZero if self.block.is_empty() => {
                if self.meta_raw.is_empty() {
                    Ok(())
                } else {
                    fail("the archive ends after an extension header")
                }
            }
            _ => fail("the archive is truncated"),
        }
    }

    fn on_block(
        &mut self,
        block: &[u8],
        out: &mut BytesMut,
        judge: &mut impl FnMut(&ArchiveEntry) -> bool,
    ) -> Result<(), TarFilterError> {
        let zero = block.iter().all(|&b| b == 0);
        if matches!(self.state, State::SecondZero) {
            if !zero {
                return fail("a zero block followed by a header");
            }
            out.extend_from_slice(block);
            self.state = State::End;
            return Ok(());
        }
        if zero {
            if !self.meta_raw.is_empty() {
                return fail("an extension header without its entry");
            }
            out.extend_from_slice(block);
            self.state = State::SecondZero;
            return Ok(());
        }
        let header = Header::parse(block)?;
        match header.flag {
            b'x' | b'L' | b'K' => {
                if header.size > MAX_META {
                    return fail(format!("an extension header of {} bytes", header.size));
                }
                self.meta_raw.extend_from_slice(block);
                self.meta_data.clear();
                self.state = State::Meta {
                    flag: header.flag,
                    data_len: header.size as usize,
                    remaining: header.size + padding(header.size),
                };
                if header.size == 0 {
                    self.on_meta_done()?;
                }
                Ok(())
            }
            b'g' => fail("a global PAX header"),
            b'S' => fail("a GNU sparse file"),
            _ => self.on_entry(block, header, out, judge),
        }
    }

    fn on_meta_done(&mut self) -> Result<(), TarFilterError> {
        let State::Meta { flag, .. } = self.state else {
            return fail("internal: extension state");
        };
        let data = std::mem::take(&mut self.meta_data);
        match flag {
            // Each PAX header replaces the one before (as in Go's reader).
            b'x' => self.pax = parse_pax(&data)?,
            b'L' => self.long_name = Some(c_string(&data).to_vec()),
            _ => self.long_link = Some(c_string(&data).to_vec()),
        }
        self.state = State::Header;
        Ok(())
    }

    fn on_entry(
        &mut self,
        block: &[u8],
        header: Header,
        out: &mut BytesMut,
        judge: &mut impl FnMut(&ArchiveEntry) -> bool,
    ) -> Result<(), TarFilterError> {
        let mut name = header.name;
        let mut link = header.link;
        let mut size = header.size;
        for (key, value) in std::mem::take(&mut self.pax) {
            if key.starts_with("GNU.sparse.") {
                return fail("a PAX sparse file");
            }
            if value.is_empty() {
                continue; // Go keeps the header's value
            }
            match key.as_str() {
                "path" => name = value.into_bytes(),
                "linkpath" => link = value.into_bytes(),
                "size" => {
                    size = value
                        .parse::<u64>()
                        .or_else(|_| fail(format!("PAX size {value:?}")))?
                }
                _ => {}
            }
        }
        if let Some(long) = self.long_name.take().filter(|n| !n.is_empty()) {
            name = long;
        }
        if let Some(long) = self.long_link.take().filter(|n| !n.is_empty()) {
            link = long;
        }
        let flag = match header.flag {
            0 if name.ends_with(b"/") => b'5',
            0 => b'0',
            f => f,
        };
        let kind = match flag {
            b'0' | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            b'2' => EntryKind::Symlink,
            b'1' => EntryKind::HardLink,
            _ => EntryKind::Other,
        };
        let header_only = matches!(flag, b'1'..=b'6');
        let data = if header_only { 0 } else { size };
        let entry = ArchiveEntry {
            name: String::from_utf8(name).ok(),
            kind,
            link_name: matches!(kind, EntryKind::Symlink | EntryKind::HardLink)
                .then(|| String::from_utf8_lossy(&link).into_owned()),
        };
        let keep = judge(&entry);
        if keep {
            out.extend_from_slice(&self.meta_raw);
            out.extend_from_slice(block);
        }
        self.meta_raw.clear();
        let remaining = data + padding(data);
        self.state = if remaining == 0 {
            State::Header
        } else {
            State::Body { remaining, keep }
        };
        Ok(())
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// A tar like the daemon's: a directory, files, a symlink, a hard link,
    /// a long (PAX) name and a GNU long name.
    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Directory, 0),
            "instructions/",
            &b""[..],
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 6),
            "instructions/CLAUDE.md",
            &b"claude"[..],
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Directory, 0),
            "instructions/prompts/",
            &b""[..],
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 600),
            "instructions/prompts/deep.txt",
            &[b'D'; 600][..],
        )
        .unwrap();
        let mut link = header(tar::EntryType::Symlink, 0);
        b.append_link(&mut link, "instructions/etclink", "/etc")
            .unwrap();
        let mut hard = header(tar::EntryType::Link, 0);
        b.append_link(
            &mut hard,
            "instructions/hard.txt",
            "instructions/prompts/deep.txt",
        )
        .unwrap();
        // A long name through PAX, pointing below prompts/.
        let long = format!("instructions/prompts/{}.txt", "p".repeat(120));
        b.append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 3);
        h.set_path("instructions/short-alias.txt").unwrap();
        h.set_cksum();
        b.append(&h, &b"pax"[..]).unwrap();
        // A long name through GNU `L` (the tar crate writes one for > 100 bytes).
        let mut g = tar::Header::new_gnu();
        g.set_entry_type(tar::EntryType::Regular);
        g.set_size(3);
        g.set_mode(0o644);
        let gnu_long = format!("instructions/prompts/{}.md", "g".repeat(120));
        b.append_data(&mut g, &gnu_long, &b"gnu"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// Filter `tar` in chunks of `chunk` bytes; return the output and the names judged.
    fn run(
        tar: &[u8],
        chunk: usize,
        mut judge: impl FnMut(&ArchiveEntry) -> bool,
    ) -> (Result<(), TarFilterError>, Vec<u8>, Vec<ArchiveEntry>) {
        let mut seen = Vec::new();
        let mut recording = |e: &ArchiveEntry| {
            seen.push(e.clone());
            judge(e)
        };
        let mut filter = TarFilter::new();
        let mut out = BytesMut::new();
        for piece in tar.chunks(chunk) {
            if let Err(e) = filter.push(piece, &mut out, &mut recording) {
                return (Err(e), out.to_vec(), seen);
            }
        }
        (filter.finish(), out.to_vec(), seen)
    }

    fn names_of(tar_bytes: &[u8]) -> Vec<String> {
        tar::Archive::new(tar_bytes)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn keeping_everything_is_the_identity_in_any_chunking() {
        let tar = sample();
        for chunk in [1, 7, 512, 513, 4096, tar.len()] {
            let (done, out, seen) = run(&tar, chunk, |_| true);
            done.unwrap();
            assert_eq!(out, tar, "chunk {chunk}");
            assert_eq!(seen.len(), 8, "chunk {chunk}");
        }
    }

    #[test]
    fn names_are_read_as_go_reads_them() {
        let (_, _, seen) = run(&sample(), 100, |_| true);
        let names: Vec<&str> = seen.iter().map(|e| e.name.as_deref().unwrap()).collect();
        assert_eq!(names[0], "instructions/");
        assert_eq!(seen[0].kind, EntryKind::Directory);
        assert_eq!(seen[4].kind, EntryKind::Symlink);
        assert_eq!(seen[4].link_name.as_deref(), Some("/etc"));
        assert_eq!(seen[5].kind, EntryKind::HardLink);
        // The PAX path wins over the header's name; the GNU long name is read.
        assert!(
            names[6].starts_with("instructions/prompts/ppp"),
            "{}",
            names[6]
        );
        assert!(
            names[7].starts_with("instructions/prompts/ggg"),
            "{}",
            names[7]
        );
    }

    #[test]
    fn withheld_entries_leave_nothing_behind() {
        let tar = sample();
        let (done, out, _) = run(&tar, 333, |e| {
            !e.name
                .as_deref()
                .unwrap()
                .starts_with("instructions/prompts/")
        });
        done.unwrap();
        let names = names_of(&out);
        assert_eq!(
            names,
            [
                "instructions/",
                "instructions/CLAUDE.md",
                "instructions/etclink",
                "instructions/hard.txt"
            ]
        );
        assert!(
            !out.windows(4).any(|w| w == b"DDDD"),
            "deep.txt's data leaked"
        );
        assert!(!out.windows(3).any(|w| w == b"pax" || w == b"gnu"));
        // The output is a well-formed archive that ends like the input.
        assert_eq!(&out[out.len() - 1024..], &[0u8; 1024][..]);
    }

    #[test]
    fn what_cannot_be_read_exactly_ends_the_stream() {
        let tar = sample();
        // A truncated archive.
        let (done, _, _) = run(&tar[..tar.len() - 1500], 512, |_| true);
        assert!(done.is_err());
        // A broken checksum.
        let mut bad = tar.clone();
        bad[512] ^= 0x01; // the second header (CLAUDE.md)
        let (done, _, _) = run(&bad, 512, |_| true);
        assert!(done.unwrap_err().0.contains("checksum"));
        // A global PAX header.
        let mut g = header(tar::EntryType::XGlobalHeader, 0);
        g.set_path("pax_global_header").unwrap();
        g.set_cksum();
        let mut global = g.as_bytes().to_vec();
        global.extend_from_slice(&tar);
        let (done, out, _) = run(&global, 512, |_| true);
        assert!(done.is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn pax_size_and_header_only_types_set_the_data_length() {
        // A symlink header claiming 512 bytes of size carries no data (Go).
        let mut b = tar::Builder::new(Vec::new());
        let mut l = header(tar::EntryType::Symlink, 0);
        l.set_path("d/l").unwrap();
        l.set_link_name("x").unwrap();
        l.set_size(512);
        l.set_cksum();
        b.append(&l, &b""[..]).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 2), "d/f", &b"ok"[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        let (done, _, seen) = run(&tar, 512, |_| true);
        done.unwrap();
        let names: Vec<_> = seen.iter().map(|e| e.name.clone().unwrap()).collect();
        assert_eq!(names, ["d/l", "d/f"]);
        // A PAX size overrides the header's.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"700"[..])]).unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        h.set_path("d/big").unwrap();
        h.set_cksum();
        b.append(&h, &[b'B'; 700][..]).unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 2),
            "d/next",
            &b"ok"[..],
        )
        .unwrap();
        let tar = b.into_inner().unwrap();
        let (done, out, seen) = run(&tar, 100, |e| e.name.as_deref() != Some("d/big"));
        done.unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(names_of(&out), ["d/next"]);
        assert!(!out.contains(&b'B'));
    }
}
