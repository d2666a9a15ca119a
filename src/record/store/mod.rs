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
//! - `q` + request id + 0xFF + seq (u64 BE) -> empty: the request-id index, one
//!   key per record (request ids are nearly unique, so per-chunk postings would
//!   be one seq each anyway); a prefix scan finds a request's records in seq
//!   order. `m` + `request_ids` is the last seq it covers. Written by the indexer
//!   in its own chunked pass, so a log from before it existed is indexed from the
//!   start in the background, while queries scan what is not yet covered.
//! - `x` + chunk first seq -> chunk directory: last seq (u64 BE), then each posting
//!   key of the chunk as u32 BE length + bytes (pruning finds postings through it).
//!
//! Why this shape: sled 0.34 costs about 15-20 µs per key written on this class of
//! machine and a cross-tree transaction costs more again, while a value of a few KiB
//! costs little more than a small one (up to ~128 KiB, past which sled writes a
//! separate file). Records are therefore written as blobs of many records,
//! together with the head in one `Tree::apply_batch`, which sled applies
//! atomically: a crash never leaves the head out of step with the records. With
//! the WAL, the applier packs records into blobs of about [`pack::PACKED_BLOB_BYTES`]
//! ([`Packer`]); without it, each group commit is one blob.
//!
//! The index is derived data, so it need not be written with the records: the
//! indexer ([`super::index`]) posts whole chunks of at least `index_chunk` records
//! (a few hundred keys instead of several per record) together with `m indexed` in
//! one atomic batch. Queries read the postings up to `indexed` and scan the blobs
//! after it, so answers are complete whatever the indexer's progress.
//!
//! Layout: `keys` holds the key bytes, this file the tree handle
//! (`Stores`) and the head; `pack` packs blobs, `postings` encodes the
//! indexes, `checkpoint` the prune checkpoint, `verify` walks the chain.

mod checkpoint;
mod keys;
mod pack;
mod postings;
#[cfg(test)]
mod tests;
mod verify;

use sha2::{Digest, Sha256};
use sled::{Batch, IVec, Tree};

use super::codec;
use super::{AuditRecord, RecordError};

pub use checkpoint::Checkpoint;
pub(crate) use keys::{
    blob_key, chunk_key, parse_blob_key, request_id_key, request_id_prefix, INDEX_SEP, KIND_ACTION,
    KIND_CALLER, KIND_DECISION, KIND_TARGET, KIND_TIME, MAX_BATCH_CAP, META_HEAD, PREFIX_CHUNK,
    PREFIX_INDEX, PREFIX_RECORDS, TREE_LOG,
};
use keys::{META_CHECKPOINT, META_INDEXED, META_RID_INDEXED, OLD_LAYOUT_TREE};
pub(crate) use pack::Packer;
pub(crate) use postings::{
    decision_value, parse_time_nanos, posting_seqs, posting_value, string_index_prefix,
    time_index_bounds, ChunkDir, Postings,
};
pub(crate) use verify::{verify, VerifyScope};
pub use verify::{BreakKind, ChainBreak, VerifyReport};

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

    /// Last seq the request-id index covers (0 = none).
    pub fn read_rid_indexed(&self) -> Result<u64, RecordError> {
        match self
            .log
            .get(META_RID_INDEXED)
            .map_err(|e| store_err("read request-id index progress", e))?
        {
            None => Ok(0),
            Some(v) => codec::parse_seq(&v).ok_or_else(|| {
                RecordError::Corrupt(format!(
                    "audit request-id index progress is {} bytes",
                    v.len()
                ))
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

pub(crate) fn set_rid_indexed(b: &mut Batch, seq: u64) {
    b.insert(META_RID_INDEXED, &seq.to_be_bytes()[..]);
}
