//! The sled tree behind the log, its key layout, the head, checkpoint and index
//! metadata, and chain verification.
//!
//! Everything lives in ONE tree, `audit_log`, under one-byte key prefixes:
//! - `r` + first seq of the blob (u64 BE) -> a blob of contiguous records:
//!   `[BLOB_VERSION]` then per record `[seq u64][len u32][stored value]`, seqs
//!   contiguous and ascending (stored value layout in [`super::codec`]).
//! - `m` + `head` -> last seq (u64 BE) + chain hash; `m` + `checkpoint` ->
//!   [`Checkpoint`]; `m` + `indexed` -> last seq covered by the index (u64 BE).
//! - `i` + kind + value + 0xFF + first seq of an index chunk (u64 BE) -> the seqs of
//!   that chunk with this value, ascending, 8 bytes each. Kinds: `c` caller, `g`
//!   target (container id and name), `a` action, `d` decision (`allow`/`deny`).
//!   0xFF never occurs in UTF-8, so a prefix scan on `kind + value + 0xFF` finds
//!   exactly that value, in seq order. Kind `t`: sortable i64 Unix nanoseconds,
//!   floored to the second, + chunk first seq -> seqs.
//! - `x` + chunk first seq -> chunk directory: last seq (u64 BE), then each posting
//!   key of the chunk as u32 BE length + bytes (pruning finds postings through it).
//!
//! Why this shape: sled 0.34 costs about 15-20 µs per key written on this class of
//! machine and a cross-tree transaction costs more again, while a value of a few KiB
//! costs little more than a small one (up to ~128 KiB, past which sled writes a
//! separate file). Records are therefore written as blobs of many records,
//! together with the head in one `Tree::apply_batch`, which sled applies
//! atomically: a crash never leaves the head out of step with the records. With
//! the WAL, the applier packs records into blobs of about [`PACKED_BLOB_BYTES`]
//! ([`Packer`]); without it, each group commit is one blob.
//!
//! The index is derived data, so it need not be written with the records: the
//! indexer ([`super::index`]) posts whole chunks of at least `index_chunk` records
//! (a few hundred keys instead of several per record) together with `m indexed` in
//! one atomic batch. Queries read the postings up to `indexed` and scan the blobs
//! after it, so answers are complete whatever the indexer's progress.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sled::{Batch, IVec, Tree};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::codec::{self, FieldView, GENESIS_HASH};
use super::{AuditRecord, RecordError};

pub(crate) const TREE_LOG: &str = "audit_log";
/// The tree of the previous layout (one tree per kind); refused, never misread.
const OLD_LAYOUT_TREE: &str = "audit_records";

pub(crate) const PREFIX_RECORDS: u8 = b'r';
const PREFIX_META: u8 = b'm';
pub(crate) const PREFIX_INDEX: u8 = b'i';
pub(crate) const PREFIX_CHUNK: u8 = b'x';

pub(crate) const META_HEAD: &[u8] = b"mhead";
const META_CHECKPOINT: &[u8] = b"mcheckpoint";
const META_INDEXED: &[u8] = b"mindexed";
const CHECKPOINT_VERSION: u8 = 1;

/// Most records in one group commit.
pub(crate) const MAX_BATCH_CAP: usize = 10_000;
/// Separator between an indexed string and the seq; invalid in UTF-8.
pub(crate) const INDEX_SEP: u8 = 0xFF;

/// Index kinds (the byte after `i`).
pub(crate) const KIND_CALLER: u8 = b'c';
pub(crate) const KIND_TARGET: u8 = b'g';
pub(crate) const KIND_ACTION: u8 = b'a';
pub(crate) const KIND_DECISION: u8 = b'd';
pub(crate) const KIND_TIME: u8 = b't';

const _: () = assert!(PREFIX_META == META_HEAD[0] && PREFIX_META == META_INDEXED[0]);

/// Key of the blob whose first record is `seq`.
pub(crate) fn blob_key(seq: u64) -> [u8; 9] {
    let mut k = [PREFIX_RECORDS; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// First seq of a blob key; None for anything that is not `r` + 8 bytes.
pub(crate) fn parse_blob_key(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&PREFIX_RECORDS, rest)) => codec::parse_seq(rest),
        _ => None,
    }
}

pub(crate) fn chunk_key(first: u64) -> [u8; 9] {
    let mut k = [PREFIX_CHUNK; 9];
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}

/// The log's tree. Cloning is cheap (sled handles are reference counted).
#[derive(Clone)]
pub(crate) struct Stores {
    pub db: sled::Db,
    pub log: Tree,
}

pub(crate) fn store_err(context: &str, e: impl std::fmt::Display) -> RecordError {
    RecordError::Store(format!("{context}: {e}"))
}

/// Where a stored value sits: its blob and the byte range inside it.
pub(crate) struct Located {
    /// First seq of the blob.
    pub first: u64,
    pub blob: IVec,
    pub start: usize,
    pub end: usize,
}

impl Located {
    pub fn value(&self) -> &[u8] {
        &self.blob[self.start..self.end]
    }
}

impl Stores {
    pub fn open(db: &sled::Db) -> Result<Self, RecordError> {
        let names = db.tree_names();
        if names
            .iter()
            .any(|n| n.as_ref() == OLD_LAYOUT_TREE.as_bytes())
        {
            let old = db
                .open_tree(OLD_LAYOUT_TREE)
                .map_err(|e| store_err("open old audit tree", e))?;
            if !old.is_empty() {
                return Err(RecordError::Corrupt(format!(
                    "this db holds an audit log in the older multi-tree layout ({OLD_LAYOUT_TREE}); \
                     export it with the portcullis version that wrote it"
                )));
            }
        }
        let log = db
            .open_tree(TREE_LOG)
            .map_err(|e| store_err(&format!("open tree {TREE_LOG}"), e))?;
        Ok(Stores {
            db: db.clone(),
            log,
        })
    }

    /// Apply one batch atomically (sled applies a batch on one tree all or nothing).
    pub fn commit(&self, batch: Batch) -> Result<(), RecordError> {
        self.log
            .apply_batch(batch)
            .map_err(|e| store_err("audit batch", e))
    }

    /// Blobs whose first seq is in `from..`, in seq order.
    pub fn blobs_from(&self, from: u64) -> sled::Iter {
        self.log.range(blob_key(from)..=blob_key(u64::MAX))
    }

    /// First seq of the blob that would hold `seq` (the last blob starting at or
    /// before it), or None when no blob starts at or before it.
    pub fn blob_start_for(&self, seq: u64) -> Result<Option<u64>, RecordError> {
        match self
            .log
            .range(blob_key(0)..=blob_key(seq))
            .next_back()
            .transpose()
            .map_err(|e| store_err("read audit blob", e))?
        {
            None => Ok(None),
            Some((k, _)) => Ok(parse_blob_key(&k)),
        }
    }

    /// The stored value of `seq`, if present and its blob frames cleanly up to it.
    pub fn locate(&self, seq: u64) -> Result<Option<Located>, RecordError> {
        let found = self
            .log
            .range(blob_key(0)..=blob_key(seq))
            .next_back()
            .transpose()
            .map_err(|e| store_err("read audit blob", e))?;
        let Some((k, blob)) = found else {
            return Ok(None);
        };
        let first = parse_blob_key(&k).unwrap_or(0);
        Ok(locate_in(&blob, seq).map(|(start, end)| Located {
            first,
            blob,
            start,
            end,
        }))
    }

    pub fn get_record(&self, seq: u64) -> Result<Option<AuditRecord>, RecordError> {
        match self.locate(seq)? {
            None => Ok(None),
            Some(l) => decode_stored(seq, l.value()).map(Some),
        }
    }

    /// Seq of the last stored record (None when there is none).
    pub fn last_seq(&self) -> Result<Option<u64>, RecordError> {
        Ok(self.last_entry()?.map(|(seq, _)| seq))
    }

    /// The last cleanly framed entry of the last blob: (seq, stored value).
    fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, RecordError> {
        let last = self
            .log
            .range(blob_key(0)..=blob_key(u64::MAX))
            .next_back()
            .transpose()
            .map_err(|e| store_err("read last audit blob", e))?;
        let Some((k, blob)) = last else {
            return Ok(None);
        };
        let mut out = None;
        for (seq, value) in codec::blob_entries(&blob).map_while(Result::ok) {
            out = Some((seq, value.to_vec()));
        }
        match out {
            Some(e) => Ok(Some(e)),
            // An unreadable last blob still names a position: its key.
            None => Ok(parse_blob_key(&k).map(|s| (s, blob.to_vec()))),
        }
    }

    pub fn read_checkpoint(&self) -> Result<Checkpoint, RecordError> {
        match self
            .log
            .get(META_CHECKPOINT)
            .map_err(|e| store_err("read checkpoint", e))?
        {
            None => Ok(Checkpoint::initial()),
            Some(v) => Checkpoint::decode(&v).map_err(RecordError::Corrupt),
        }
    }

    /// Last seq the index covers (0 = none).
    pub fn read_indexed(&self) -> Result<u64, RecordError> {
        match self
            .log
            .get(META_INDEXED)
            .map_err(|e| store_err("read index progress", e))?
        {
            None => Ok(0),
            Some(v) => codec::parse_seq(&v).ok_or_else(|| {
                RecordError::Corrupt(format!("audit index progress is {} bytes", v.len()))
            }),
        }
    }

    pub fn read_head_meta(&self) -> Result<Option<(u64, [u8; 32])>, RecordError> {
        match self
            .log
            .get(META_HEAD)
            .map_err(|e| store_err("read head", e))?
        {
            None => Ok(None),
            Some(v) if v.len() == 40 => {
                let seq = codec::parse_seq(&v[..8]).unwrap_or(0);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&v[8..]);
                Ok(Some((seq, hash)))
            }
            Some(v) => Err(RecordError::Corrupt(format!(
                "audit head metadata is {} bytes, expected 40",
                v.len()
            ))),
        }
    }

    /// Where appends continue: after the stored head or the last record, whichever is
    /// later. Continuing after the stored head keeps a truncated tail visible as a gap
    /// (when started with allow_broken_chain) instead of reusing the lost seqs.
    pub fn load_head(&self) -> Result<ChainHead, RecordError> {
        let from_records = self.head_from_records()?;
        match self.read_head_meta() {
            Ok(Some((seq, hash))) if seq >= from_records.next_seq => Ok(ChainHead {
                next_seq: seq + 1,
                hash,
            }),
            Ok(_) | Err(RecordError::Corrupt(_)) => Ok(from_records),
            Err(e) => Err(e),
        }
    }

    fn head_from_records(&self) -> Result<ChainHead, RecordError> {
        match self.last_entry()? {
            None => {
                let cp = self.read_checkpoint()?;
                Ok(ChainHead {
                    next_seq: cp.first_seq,
                    hash: cp.prev_hash,
                })
            }
            Some((seq, v)) => {
                // A damaged last value (only reachable with allow_broken_chain) still
                // yields a deterministic predecessor hash, so appends can go on.
                let hash = match codec::split_value(&v) {
                    Ok(s) => s.hash,
                    Err(_) => Sha256::digest(&v).into(),
                };
                Ok(ChainHead {
                    next_seq: seq + 1,
                    hash,
                })
            }
        }
    }
}

/// Byte range of `seq`'s stored value inside `blob`, if it frames cleanly up to it.
pub(crate) fn locate_in(blob: &[u8], seq: u64) -> Option<(usize, usize)> {
    for entry in codec::blob_entries(blob) {
        let (s, value) = entry.ok()?;
        if s == seq {
            let start = value.as_ptr() as usize - blob.as_ptr() as usize;
            return Some((start, start + value.len()));
        }
        if s > seq {
            return None;
        }
    }
    None
}

/// Decode a stored value into its record, checking the embedded seq.
pub(crate) fn decode_stored(seq: u64, value: &[u8]) -> Result<AuditRecord, RecordError> {
    let split = codec::split_value(value)
        .map_err(|e| RecordError::Corrupt(format!("record {seq}: {e}")))?;
    let rec = codec::decode_canonical(split.canonical)
        .map_err(|e| RecordError::Corrupt(format!("record {seq}: {e}")))?;
    if rec.seq != seq {
        return Err(RecordError::Corrupt(format!(
            "record stored under seq {seq} says seq {}",
            rec.seq
        )));
    }
    Ok(rec)
}

/// Where the next record goes and what it chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub next_seq: u64,
    pub hash: [u8; 32],
}

pub(crate) fn head_value(seq: u64, hash: &[u8; 32]) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..].copy_from_slice(hash);
    v
}

pub(crate) fn set_head(b: &mut Batch, seq: u64, hash: &[u8; 32]) {
    b.insert(META_HEAD, &head_value(seq, hash)[..]);
}

pub(crate) fn set_checkpoint(b: &mut Batch, cp: &Checkpoint) {
    b.insert(META_CHECKPOINT, cp.encode());
}

pub(crate) fn set_indexed(b: &mut Batch, seq: u64) {
    b.insert(META_INDEXED, &seq.to_be_bytes()[..]);
}

/// Aim for blobs of about this many bytes when packing records after the fact
/// (applier, WAL replay): sled 0.34 stores a value over ~128 KiB (a quarter
/// segment) as a separate file, and rewrites a node's values when it splits.
pub(crate) const PACKED_BLOB_BYTES: usize = 48 << 10;

/// Packs contiguous records into blobs of about [`PACKED_BLOB_BYTES`] (at most
/// `MAX_BATCH_CAP` records each) plus the head, for one atomic `apply_batch`.
#[derive(Default)]
pub(crate) struct Packer {
    batch: Batch,
    blob: Vec<u8>,
    first: u64,
    count: usize,
    head: Option<ChainHead>,
    /// Blobs in `batch`.
    pub blobs: usize,
}

impl Packer {
    /// Add the records of `blob` (a group commit's blob, contiguous with what was
    /// added before); `end` is the head after its last record. A blob that does
    /// not decode is an error: the head must never claim records sled lacks.
    pub fn add(&mut self, blob: &[u8], end: ChainHead) -> Result<(), RecordError> {
        for entry in codec::blob_entries(blob) {
            let (seq, value) =
                entry.map_err(|e| RecordError::Store(format!("audit blob to apply: {e}")))?;
            if self.count > 0
                && (self.count >= MAX_BATCH_CAP
                    || self.blob.len() + value.len() > PACKED_BLOB_BYTES)
            {
                self.close_blob();
            }
            if self.count == 0 {
                codec::start_blob(&mut self.blob);
                self.first = seq;
            }
            codec::push_raw_entry(&mut self.blob, seq, value);
            self.count += 1;
        }
        self.head = Some(end);
        Ok(())
    }

    fn close_blob(&mut self) {
        if self.count > 0 {
            self.batch
                .insert(&blob_key(self.first)[..], self.blob.as_slice());
            self.count = 0;
            self.blobs += 1;
        }
    }

    /// Write what was added (blobs and head, atomically); a no-op when empty.
    pub fn commit(&mut self, stores: &Stores) -> Result<(), RecordError> {
        self.close_blob();
        self.blobs = 0;
        match self.head.take() {
            None => Ok(()),
            Some(h) => {
                set_head(&mut self.batch, h.next_seq - 1, &h.hash);
                stores.commit(std::mem::take(&mut self.batch))
            }
        }
    }
}

/// Index postings of one chunk, accumulated per (kind, value), borrowing the
/// values from the records' bytes.
#[derive(Default)]
pub(crate) struct Postings<'a> {
    strings: std::collections::HashMap<(u8, &'a [u8]), Vec<u64>>,
    /// Whole seconds -> seqs.
    times: std::collections::HashMap<i64, Vec<u64>>,
    /// Records of one batch share one time string: parse it once.
    last_time: Option<(&'a [u8], Option<i64>)>,
}

impl<'a> Postings<'a> {
    /// Post record `seq` (fields in `v`); seqs must be added in ascending order.
    pub fn add(&mut self, v: &FieldView<'a>, seq: u64) {
        let push = |seqs: &mut Vec<u64>| {
            // A container whose name equals its id is posted once.
            if seqs.last() != Some(&seq) {
                seqs.push(seq);
            }
        };
        push(self.strings.entry((KIND_CALLER, v.caller)).or_default());
        push(self.strings.entry((KIND_ACTION, v.action)).or_default());
        for target in [v.target_id, v.target_name].into_iter().flatten() {
            push(self.strings.entry((KIND_TARGET, target)).or_default());
        }
        push(
            self.strings
                .entry((KIND_DECISION, decision_value(v.allowed)))
                .or_default(),
        );
        let nanos = match self.last_time {
            Some((t, n)) if t == v.time => n,
            _ => {
                let n = std::str::from_utf8(v.time).ok().and_then(parse_time_nanos);
                self.last_time = Some((v.time, n));
                n
            }
        };
        if let Some(nanos) = nanos {
            push(self.times.entry(floor_second(nanos)).or_default());
        }
    }

    /// Distinct posting keys so far.
    pub fn len(&self) -> usize {
        self.strings.len() + self.times.len()
    }

    /// The posting keys of the chunk starting at `chunk_first`, with their seqs.
    pub fn into_keys(self, chunk_first: u64) -> impl Iterator<Item = (Vec<u8>, Vec<u64>)> + 'a {
        let strings = self
            .strings
            .into_iter()
            .map(move |((kind, value), seqs)| (posting_key(kind, value, chunk_first), seqs));
        let times = self
            .times
            .into_iter()
            .map(move |(secs, seqs)| (time_index_key(secs, chunk_first), seqs));
        strings.chain(times)
    }
}

fn floor_second(nanos: i64) -> i64 {
    nanos - nanos.rem_euclid(1_000_000_000)
}

/// The indexed value of a decision.
pub(crate) fn decision_value(allowed: bool) -> &'static [u8] {
    if allowed {
        b"allow"
    } else {
        b"deny"
    }
}

pub(crate) fn posting_key(kind: u8, value: &[u8], chunk_first: u64) -> Vec<u8> {
    let mut k = string_index_prefix(kind, value);
    k.extend_from_slice(&chunk_first.to_be_bytes());
    k
}

/// Encode seqs as a posting value.
pub(crate) fn posting_value(seqs: &[u64]) -> Vec<u8> {
    seqs.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// Decode a posting value into its seqs.
pub(crate) fn posting_seqs(value: &[u8]) -> Result<Vec<u64>, RecordError> {
    if !value.len().is_multiple_of(8) {
        return Err(RecordError::Corrupt(format!(
            "audit index posting of {} bytes",
            value.len()
        )));
    }
    Ok(value.chunks_exact(8).filter_map(codec::parse_seq).collect())
}

pub(crate) fn string_index_prefix(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 11);
    k.push(PREFIX_INDEX);
    k.push(kind);
    k.extend_from_slice(value);
    k.push(INDEX_SEP);
    k
}

/// Unix nanoseconds, clamped to i64, as bytes whose order equals time order.
pub(crate) fn sortable_nanos(nanos: i64) -> [u8; 8] {
    ((nanos as u64) ^ (1u64 << 63)).to_be_bytes()
}

pub(crate) fn time_index_key(nanos: i64, chunk_first: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.push(PREFIX_INDEX);
    k.push(KIND_TIME);
    k.extend_from_slice(&sortable_nanos(nanos));
    k.extend_from_slice(&chunk_first.to_be_bytes());
    k
}

/// Time-index key bounds covering `[since, until]` (keys hold whole seconds).
pub(crate) fn time_index_bounds(since: Option<i64>, until: Option<i64>) -> (Vec<u8>, Vec<u8>) {
    let lo = since.map(floor_second).unwrap_or(i64::MIN);
    let hi = until.unwrap_or(i64::MAX);
    (time_index_key(lo, 0), time_index_key(hi, u64::MAX))
}

pub(crate) fn parse_time_nanos(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let n = t.unix_timestamp_nanos();
    Some(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// A chunk directory entry: the chunk's last seq and its posting keys.
pub(crate) struct ChunkDir {
    pub last: u64,
    pub keys: Vec<Vec<u8>>,
}

impl ChunkDir {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.keys.iter().map(|k| k.len() + 4).sum::<usize>());
        v.extend_from_slice(&self.last.to_be_bytes());
        for k in &self.keys {
            v.extend_from_slice(&(k.len() as u32).to_be_bytes());
            v.extend_from_slice(k);
        }
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self, RecordError> {
        let bad = || RecordError::Corrupt("audit index chunk directory is malformed".into());
        let last = v.get(..8).and_then(codec::parse_seq).ok_or_else(bad)?;
        let mut keys = Vec::new();
        let mut pos = 8;
        while pos < v.len() {
            let len = v
                .get(pos..pos + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(bad)?;
            let key = v.get(pos + 4..pos + 4 + len).ok_or_else(bad)?;
            keys.push(key.to_vec());
            pos += 4 + len;
        }
        Ok(ChunkDir { last, keys })
    }
}

/// Where the retained chain starts after pruning.
///
/// Encoding: version byte, first_seq (u64 BE), prev_hash (32), pruned_total (u64 BE),
/// time (u32 BE length + UTF-8), then SHA-256 of everything before it, so a damaged
/// checkpoint is detected rather than silently trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The first retained sequence number; it chains from `prev_hash`.
    pub first_seq: u64,
    /// Chain hash of record `first_seq - 1` (zeros before any pruning).
    #[serde(serialize_with = "hex_hash")]
    pub prev_hash: [u8; 32],
    /// Records removed by pruning, in total.
    pub pruned_total: u64,
    /// When the checkpoint was written (RFC 3339), empty for the initial one.
    pub time: String,
}

fn hex_hash<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

impl Checkpoint {
    pub fn initial() -> Self {
        Checkpoint {
            first_seq: 1,
            prev_hash: GENESIS_HASH,
            pruned_total: 0,
            time: String::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        v.push(CHECKPOINT_VERSION);
        v.extend_from_slice(&self.first_seq.to_be_bytes());
        v.extend_from_slice(&self.prev_hash);
        v.extend_from_slice(&self.pruned_total.to_be_bytes());
        v.extend_from_slice(&(self.time.len() as u32).to_be_bytes());
        v.extend_from_slice(self.time.as_bytes());
        let digest: [u8; 32] = Sha256::digest(&v).into();
        v.extend_from_slice(&digest);
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self, String> {
        let fixed = 1 + 8 + 32 + 8 + 4;
        if v.len() < fixed + 32 {
            return Err(format!("audit checkpoint is only {} bytes", v.len()));
        }
        let (body, digest) = v.split_at(v.len() - 32);
        let expect: [u8; 32] = Sha256::digest(body).into();
        if digest != expect {
            return Err("audit checkpoint checksum mismatch".into());
        }
        if body[0] != CHECKPOINT_VERSION {
            return Err(format!("unknown audit checkpoint version {}", body[0]));
        }
        let first_seq = codec::parse_seq(&body[1..9]).unwrap_or(0);
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&body[9..41]);
        let pruned_total = codec::parse_seq(&body[41..49]).unwrap_or(0);
        let tlen = u32::from_be_bytes([body[49], body[50], body[51], body[52]]) as usize;
        if body.len() != fixed + tlen {
            return Err("audit checkpoint length mismatch".into());
        }
        let time = String::from_utf8(body[fixed..].to_vec())
            .map_err(|_| "audit checkpoint time is not UTF-8".to_string())?;
        Ok(Checkpoint {
            first_seq,
            prev_hash,
            pruned_total,
            time,
        })
    }
}

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The record's bytes or its stored hash do not match the chain.
    Changed,
    /// A sequence number is absent (deleted record, or a truncated tail).
    Missing,
    /// The record stored under this seq says it is another seq (moved or swapped).
    Reordered,
    /// Data where none should be: a record before the checkpoint, a malformed key,
    /// or records beyond the recorded head.
    Unexpected,
    /// The stored head (last seq + hash) disagrees with the records.
    HeadMismatch,
    /// The checkpoint itself is damaged.
    CheckpointCorrupt,
}

/// The first break found, naming the sequence number where the chain stops holding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub seq: u64,
    pub kind: BreakKind,
    pub detail: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at seq {}: {}", self.kind, self.seq, self.detail)
    }
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records whose link was recomputed.
    pub checked: u64,
    /// First seq the walk started at.
    pub from_seq: u64,
    /// Last seq that verified (None when none did).
    pub last_good_seq: Option<u64>,
    /// Chain hash (hex) after the last good record: anchor it elsewhere to detect a
    /// rewrite of the whole log.
    pub head_hash: String,
    pub checkpoint: Checkpoint,
    /// The FIRST break, if any.
    pub broken: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// How much of the chain to walk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum VerifyScope {
    Full,
    /// The last N records plus the checkpoint link and the head.
    Tail(u64),
}

pub(crate) fn verify(stores: &Stores, scope: VerifyScope) -> Result<VerifyReport, RecordError> {
    let rd = |e: sled::Error| store_err("verify: read", e);
    let cp = match stores.read_checkpoint() {
        Ok(cp) => cp,
        Err(RecordError::Corrupt(detail)) => {
            return Ok(VerifyReport {
                checked: 0,
                from_seq: 0,
                last_good_seq: None,
                head_hash: String::new(),
                checkpoint: Checkpoint::initial(),
                broken: Some(ChainBreak {
                    seq: 0,
                    kind: BreakKind::CheckpointCorrupt,
                    detail,
                }),
            });
        }
        Err(e) => return Err(e),
    };
    let mut report = VerifyReport {
        checked: 0,
        from_seq: cp.first_seq,
        last_good_seq: None,
        head_hash: hex::encode(cp.prev_hash),
        checkpoint: cp.clone(),
        broken: None,
    };
    let brk = |mut report: VerifyReport, seq, kind, detail: String| {
        report.broken = Some(ChainBreak { seq, kind, detail });
        Ok(report)
    };

    // Nothing may precede the checkpoint. Keys under `r` other than `r` + seq are
    // caught by the walk below.
    let first_blob = stores
        .log
        .range(blob_key(0)..=blob_key(u64::MAX))
        .next()
        .transpose()
        .map_err(rd)?;
    if let Some((k, _)) = first_blob {
        if let Some(s) = parse_blob_key(&k).filter(|s| *s < cp.first_seq) {
            return brk(
                report,
                s,
                BreakKind::Unexpected,
                format!("record {s} precedes checkpoint at {}", cp.first_seq),
            );
        }
    }
    let last_seq = stores.last_seq()?;

    let mut start = cp.first_seq;
    let mut prev = cp.prev_hash;
    if let (VerifyScope::Tail(n), Some(last)) = (scope, last_seq) {
        let tail_start = last.saturating_add(1).saturating_sub(n.max(1));
        if tail_start > cp.first_seq {
            // The checkpoint link: the first retained record chains from the checkpoint.
            match stores.locate(cp.first_seq)? {
                None => {
                    return brk(
                        report,
                        cp.first_seq,
                        BreakKind::Missing,
                        "first record after checkpoint is absent".into(),
                    )
                }
                Some(l) => {
                    if let Some(b) = check_link(stores, &cp, cp.first_seq, l.value(), &cp.prev_hash)
                    {
                        return brk(report, b.seq, b.kind, b.detail);
                    }
                }
            }
            // Trust the stored hash of the record just before the tail.
            match stores.locate(tail_start - 1)? {
                None => {
                    return brk(
                        report,
                        tail_start - 1,
                        BreakKind::Missing,
                        "record absent".into(),
                    )
                }
                Some(l) => match codec::split_value(l.value()) {
                    Ok(s) => prev = s.hash,
                    Err(e) => return brk(report, tail_start - 1, BreakKind::Changed, e),
                },
            }
            start = tail_start;
        }
    }
    report.from_seq = start;

    // The head is read before the walk: every record up to it was committed
    // (atomically with it) before the walk began, so a running writer cannot
    // make an intact log look truncated. Records past it are checked against
    // a second read after the walk.
    let head_before = stores.read_head_meta();
    let head_before_seq = match &head_before {
        Ok(Some((seq, _))) => Some(*seq),
        _ => None,
    };
    // A head just before the first walked record (nothing left after a prune)
    // must carry the hash the walk starts from.
    let mut hash_at_head: Option<[u8; 32]> =
        (head_before_seq.map(|h| h.saturating_add(1)) == Some(start)).then_some(prev);
    let mut expected = start;
    let brk_at = |mut report: VerifyReport, prev: &[u8; 32], seq, kind, detail: String| {
        report.head_hash = hex::encode(prev);
        report.broken = Some(ChainBreak { seq, kind, detail });
        Ok(report)
    };
    let from_blob = stores.blob_start_for(start)?.unwrap_or(start);
    // Keys under the `r` prefix, including malformed ones, so none hides from the walk.
    let mut upper = [0xFFu8; 10];
    upper[0] = PREFIX_RECORDS;
    for item in stores
        .log
        .range(blob_key(from_blob).to_vec()..=upper.to_vec())
    {
        let (k, blob) = item.map_err(rd)?;
        let Some(blob_first) = parse_blob_key(&k) else {
            return brk_at(
                report,
                &prev,
                expected,
                BreakKind::Unexpected,
                format!("malformed key {}", hex::encode(&k)),
            );
        };
        for (i, entry) in codec::blob_entries(&blob).enumerate() {
            let (seq, value) = match entry {
                Ok(e) => e,
                Err(e) => {
                    return brk_at(
                        report,
                        &prev,
                        expected,
                        BreakKind::Changed,
                        format!("blob {blob_first}: {e}"),
                    )
                }
            };
            if i == 0 && seq != blob_first {
                return brk_at(
                    report,
                    &prev,
                    seq.min(blob_first).max(expected),
                    BreakKind::Unexpected,
                    format!("blob keyed {blob_first} starts with record {seq}"),
                );
            }
            if seq < start {
                continue;
            }
            if seq != expected {
                let (at, kind) = if seq > expected {
                    (expected, BreakKind::Missing)
                } else {
                    (seq, BreakKind::Unexpected)
                };
                return brk_at(
                    report,
                    &prev,
                    at,
                    kind,
                    format!("next stored record is {seq}"),
                );
            }
            if let Some(b) = check_link(stores, &cp, seq, value, &prev) {
                return brk_at(report, &prev, b.seq, b.kind, b.detail);
            }
            // check_link succeeded, so the value splits.
            prev = codec::split_value(value).map(|s| s.hash).unwrap_or(prev);
            report.checked += 1;
            report.last_good_seq = Some(seq);
            if Some(seq) == head_before_seq {
                hash_at_head = Some(prev);
            }
            expected = seq + 1;
        }
    }
    report.head_hash = hex::encode(prev);

    // The head guards against a truncated tail, which the chain alone cannot show.
    let walked_last = expected - 1;
    match head_before {
        Err(RecordError::Corrupt(d)) => {
            return brk(report, walked_last, BreakKind::HeadMismatch, d)
        }
        Err(e) => return Err(e),
        Ok(None) => {
            if last_seq.is_some() || cp.first_seq != 1 {
                return brk(
                    report,
                    walked_last,
                    BreakKind::HeadMismatch,
                    "records exist but no head is stored".into(),
                );
            }
        }
        Ok(Some((head_seq, head_hash))) => {
            if head_seq > walked_last {
                return brk(
                    report,
                    walked_last + 1,
                    BreakKind::Missing,
                    format!("head says the log ends at {head_seq}: tail truncated"),
                );
            }
            if head_seq < walked_last {
                // Committed while we walked? Then the head has moved past them.
                let head_now = match stores.read_head_meta() {
                    Ok(Some((seq, _))) => seq,
                    _ => head_seq,
                };
                if head_now < walked_last {
                    return brk(
                        report,
                        head_seq + 1,
                        BreakKind::Unexpected,
                        format!("records beyond the stored head {head_seq}"),
                    );
                }
            }
            if Some(head_hash) != hash_at_head {
                return brk(
                    report,
                    head_seq,
                    BreakKind::HeadMismatch,
                    "stored head hash differs from the chain".into(),
                );
            }
        }
    }
    Ok(report)
}

/// Check one record against its predecessor's hash; None when it links.
///
/// A value carrying another seq is called reordered only when it is an authentic
/// record of that other position (it links to that position's predecessor);
/// otherwise it was altered, and is called changed.
fn check_link(
    stores: &Stores,
    cp: &Checkpoint,
    seq: u64,
    value: &[u8],
    prev: &[u8; 32],
) -> Option<ChainBreak> {
    let changed = |detail: String| ChainBreak {
        seq,
        kind: BreakKind::Changed,
        detail,
    };
    let split = match codec::split_value(value) {
        Ok(s) => s,
        Err(e) => return Some(changed(e)),
    };
    let embedded = split.embedded_seq();
    if embedded != Some(seq) {
        let other = embedded.unwrap_or(0);
        let other_prev = if other == cp.first_seq {
            Some(cp.prev_hash)
        } else if other > cp.first_seq {
            stores
                .locate(other - 1)
                .ok()
                .flatten()
                .and_then(|l| codec::split_value(l.value()).ok().map(|s| s.hash))
        } else {
            None
        };
        let authentic =
            other_prev.is_some_and(|p| codec::chain_hash(&p, split.canonical) == split.hash);
        if authentic {
            return Some(ChainBreak {
                seq,
                kind: BreakKind::Reordered,
                detail: format!("stored under {seq} but it is record {other}"),
            });
        }
        return Some(changed(format!(
            "stored under {seq} but the bytes say seq {other}"
        )));
    }
    if codec::chain_hash(prev, split.canonical) != split.hash {
        return Some(changed(
            "hash does not match predecessor || record bytes".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_detects_damage() {
        let cp = Checkpoint {
            first_seq: 1234,
            prev_hash: [9u8; 32],
            pruned_total: 1233,
            time: "2026-01-02T03:04:05Z".into(),
        };
        let mut bytes = cp.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), cp);
        bytes[3] ^= 1;
        assert!(Checkpoint::decode(&bytes).unwrap_err().contains("checksum"));
        assert!(Checkpoint::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn sortable_nanos_orders_like_time() {
        let ts = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(sortable_nanos(w[0]) < sortable_nanos(w[1]), "{w:?}");
        }
    }

    #[test]
    fn postings_group_seqs_per_value_and_chunk() {
        let mut bufs = Vec::new();
        for seq in 10..14u64 {
            let rec = AuditRecord {
                seq,
                time: "2026-01-02T03:04:05.5Z".into(),
                caller: if seq % 2 == 0 { "a".into() } else { "b".into() },
                target_id: Some("same".into()),
                target_name: Some("same".into()),
                ..Default::default()
            };
            bufs.push((seq, codec::encode_canonical(&rec).unwrap()));
        }
        let mut p = Postings::default();
        for (seq, c) in &bufs {
            p.add(&codec::view_fields(c).unwrap(), *seq);
        }
        let map: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = p.into_keys(10).collect();
        assert_eq!(map[&posting_key(KIND_CALLER, b"a", 10)], vec![10, 12]);
        assert_eq!(
            map[&posting_key(KIND_TARGET, b"same", 10)],
            vec![10, 11, 12, 13],
            "name equal to id is posted once"
        );
        let t = parse_time_nanos("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(
            map[&time_index_key(t, 10)].len(),
            4,
            "floored to the second"
        );
        assert!(posting_seqs(&[0u8; 7]).is_err());
        assert_eq!(posting_seqs(&posting_value(&[3, 9])).unwrap(), vec![3, 9]);
    }

    #[test]
    fn chunk_dir_round_trips() {
        let d = ChunkDir {
            last: 77,
            keys: vec![b"ic\xffabc".to_vec(), vec![]],
        };
        let back = ChunkDir::decode(&d.encode()).unwrap();
        assert_eq!((back.last, back.keys), (77, d.keys));
        assert!(ChunkDir::decode(&[1, 2]).is_err());
    }

    #[test]
    fn blob_keys_sort_by_seq_and_reject_other_prefixes() {
        assert!(blob_key(255) < blob_key(256));
        assert_eq!(parse_blob_key(&blob_key(42)), Some(42));
        assert_eq!(parse_blob_key(&chunk_key(42)), None);
        assert_eq!(parse_blob_key(&blob_key(42)[..8]), None);
    }
}
