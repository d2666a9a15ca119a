//! The sled trees behind the log, their key layouts, the head and checkpoint
//! metadata, and chain verification.
//!
//! Trees (all prefixed `audit_`):
//! - `audit_records`: seq (u64 BE) -> stored value (see [`super::codec`]).
//! - `audit_meta`: `head` -> seq (u64 BE) + chain hash; `checkpoint` -> [`Checkpoint`].
//! - `audit_batches`: first seq of each group commit (u64 BE) -> record count (u32 BE).
//! - Index trees `audit_idx_caller`, `audit_idx_target` (container id and name),
//!   `audit_idx_action`, `audit_idx_decision` (`allow`/`deny`): key = value bytes +
//!   0xFF + first seq of the batch (u64 BE); value = the seqs of that batch with this
//!   value, ascending, 8 bytes each. 0xFF never occurs in UTF-8, so a prefix scan on
//!   `value + 0xFF` finds exactly that value, in seq order.
//! - `audit_idx_time`: sortable i64 Unix nanoseconds + batch first seq -> seqs.
//!
//! Why postings per batch rather than one key per record: sled's cost is per key
//! written; a batch of 100 records from a handful of callers and actions then
//! writes a handful of index keys instead of hundreds, which is what lets group
//! commit reach high append rates. Request ids are unique, so indexing them would
//! cost one key per record: a request-id query walks the records instead.
//!
//! Every group commit writes its records, postings, batch entry and the new head
//! in ONE sled transaction, so a crash never leaves a record without its index
//! entries or the head out of step with the records.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional, Tree};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::codec::{self, GENESIS_HASH};
use super::{AuditRecord, RecordError};

pub(crate) const TREE_RECORDS: &str = "audit_records";
pub(crate) const TREE_META: &str = "audit_meta";
const TREE_IDX_CALLER: &str = "audit_idx_caller";
const TREE_IDX_TARGET: &str = "audit_idx_target";
const TREE_IDX_ACTION: &str = "audit_idx_action";
const TREE_BATCHES: &str = "audit_batches";
const TREE_IDX_DECISION: &str = "audit_idx_decision";
const TREE_IDX_TIME: &str = "audit_idx_time";

const META_HEAD: &[u8] = b"head";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const CHECKPOINT_VERSION: u8 = 1;
/// Most records in one group commit. Postings of one batch then span at most this
/// many seqs, which bounds how far before a cursor an index scan must start.
pub(crate) const MAX_BATCH_CAP: usize = 10_000;
/// Separator between an indexed string and the seq; invalid in UTF-8.
pub(crate) const INDEX_SEP: u8 = 0xFF;

/// All trees of the log. Cloning is cheap (sled handles are reference counted).
#[derive(Clone)]
pub(crate) struct Stores {
    pub db: sled::Db,
    pub records: Tree,
    pub meta: Tree,
    pub idx_caller: Tree,
    pub idx_target: Tree,
    pub idx_action: Tree,
    pub batches: Tree,
    pub idx_decision: Tree,
    pub idx_time: Tree,
}

fn store_err(context: &str, e: impl std::fmt::Display) -> RecordError {
    RecordError::Store(format!("{context}: {e}"))
}

impl Stores {
    pub fn open(db: &sled::Db) -> Result<Self, RecordError> {
        let t = |name: &str| {
            db.open_tree(name)
                .map_err(|e| store_err(&format!("open tree {name}"), e))
        };
        Ok(Stores {
            db: db.clone(),
            records: t(TREE_RECORDS)?,
            meta: t(TREE_META)?,
            idx_caller: t(TREE_IDX_CALLER)?,
            idx_target: t(TREE_IDX_TARGET)?,
            idx_action: t(TREE_IDX_ACTION)?,
            batches: t(TREE_BATCHES)?,
            idx_decision: t(TREE_IDX_DECISION)?,
            idx_time: t(TREE_IDX_TIME)?,
        })
    }

    /// Trees in the fixed order used by [`Stores::commit`].
    fn all(&self) -> [&Tree; 8] {
        [
            &self.records,
            &self.meta,
            &self.idx_caller,
            &self.idx_target,
            &self.idx_action,
            &self.batches,
            &self.idx_decision,
            &self.idx_time,
        ]
    }

    /// Apply one batch per tree atomically (one sled transaction).
    pub fn commit(&self, batches: &TreeBatches) -> Result<(), RecordError> {
        let trees = self.all();
        let result: Result<(), TransactionError<()>> = trees[..].transaction(|tx| {
            tx[0].apply_batch(&batches.records)?;
            tx[1].apply_batch(&batches.meta)?;
            tx[2].apply_batch(&batches.caller)?;
            tx[3].apply_batch(&batches.target)?;
            tx[4].apply_batch(&batches.action)?;
            tx[5].apply_batch(&batches.batches)?;
            tx[6].apply_batch(&batches.decision)?;
            tx[7].apply_batch(&batches.time)?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        result.map_err(|e| store_err("audit transaction", format!("{e:?}")))
    }

    pub fn get_record(&self, seq: u64) -> Result<Option<AuditRecord>, RecordError> {
        match self
            .records
            .get(codec::seq_key(seq))
            .map_err(|e| store_err("read record", e))?
        {
            None => Ok(None),
            Some(v) => decode_stored(seq, &v).map(Some),
        }
    }

    pub fn read_checkpoint(&self) -> Result<Checkpoint, RecordError> {
        match self
            .meta
            .get(META_CHECKPOINT)
            .map_err(|e| store_err("read checkpoint", e))?
        {
            None => Ok(Checkpoint::initial()),
            Some(v) => Checkpoint::decode(&v).map_err(RecordError::Corrupt),
        }
    }

    pub fn read_head_meta(&self) -> Result<Option<(u64, [u8; 32])>, RecordError> {
        match self
            .meta
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
        let last = self
            .records
            .last()
            .map_err(|e| store_err("read last record", e))?;
        match last {
            None => {
                let cp = self.read_checkpoint()?;
                Ok(ChainHead {
                    next_seq: cp.first_seq,
                    hash: cp.prev_hash,
                })
            }
            Some((k, v)) => {
                let seq = codec::parse_seq(&k).ok_or_else(|| {
                    RecordError::Corrupt(format!("audit record key of {} bytes", k.len()))
                })?;
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

/// One sled batch per tree, filled by the writer or by pruning.
#[derive(Default)]
pub(crate) struct TreeBatches {
    pub records: Batch,
    pub meta: Batch,
    pub caller: Batch,
    pub target: Batch,
    pub action: Batch,
    pub batches: Batch,
    pub decision: Batch,
    pub time: Batch,
}

impl TreeBatches {
    pub fn set_head(&mut self, seq: u64, hash: &[u8; 32]) {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(hash);
        self.meta.insert(META_HEAD, v);
    }

    pub fn set_checkpoint(&mut self, cp: &Checkpoint) {
        self.meta.insert(META_CHECKPOINT, cp.encode());
    }

    /// Record a group commit of `count` records starting at `first_seq`.
    pub fn add_batch(&mut self, first_seq: u64, count: u32) {
        self.batches
            .insert(&first_seq.to_be_bytes(), &count.to_be_bytes());
    }
}

/// Index postings of one group commit, accumulated per key.
#[derive(Default)]
pub(crate) struct Postings {
    map: BTreeMap<(IndexTree, Vec<u8>), Vec<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IndexTree {
    Caller,
    Target,
    Action,
    Decision,
    Time,
}

impl Postings {
    /// Add `rec` (already carrying its seq) to the postings of the batch at `batch_first`.
    pub fn add(&mut self, rec: &AuditRecord, batch_first: u64) {
        let seq = rec.seq;
        let mut push = |tree: IndexTree, key: Vec<u8>| {
            let seqs = self.map.entry((tree, key)).or_default();
            // A container whose name equals its id is posted once.
            if seqs.last() != Some(&seq) {
                seqs.push(seq);
            }
        };
        push(
            IndexTree::Caller,
            posting_key(rec.caller.as_bytes(), batch_first),
        );
        push(
            IndexTree::Action,
            posting_key(rec.action.as_bytes(), batch_first),
        );
        for target in [&rec.target_id, &rec.target_name].into_iter().flatten() {
            push(
                IndexTree::Target,
                posting_key(target.as_bytes(), batch_first),
            );
        }
        push(
            IndexTree::Decision,
            posting_key(decision_value(rec.allowed), batch_first),
        );
        if let Some(nanos) = parse_time_nanos(&rec.time) {
            let mut k = sortable_nanos(nanos).to_vec();
            k.extend_from_slice(&batch_first.to_be_bytes());
            push(IndexTree::Time, k);
        }
    }

    fn batch_for(b: &mut TreeBatches, tree: IndexTree) -> &mut Batch {
        match tree {
            IndexTree::Caller => &mut b.caller,
            IndexTree::Target => &mut b.target,
            IndexTree::Action => &mut b.action,
            IndexTree::Decision => &mut b.decision,
            IndexTree::Time => &mut b.time,
        }
    }

    /// Write the postings into the per-tree batches.
    pub fn insert_into(self, b: &mut TreeBatches) {
        for ((tree, key), seqs) in self.map {
            let value: Vec<u8> = seqs.iter().flat_map(|s| s.to_be_bytes()).collect();
            Self::batch_for(b, tree).insert(key, value);
        }
    }

    /// Delete the postings (pruning whole batches).
    pub fn remove_from(self, b: &mut TreeBatches) {
        for ((tree, key), _) in self.map {
            Self::batch_for(b, tree).remove(key);
        }
    }
}

/// The indexed value of a decision.
pub(crate) fn decision_value(allowed: bool) -> &'static [u8] {
    if allowed {
        b"allow"
    } else {
        b"deny"
    }
}

pub(crate) fn posting_key(value: &[u8], batch_first: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 9);
    k.extend_from_slice(value);
    k.push(INDEX_SEP);
    k.extend_from_slice(&batch_first.to_be_bytes());
    k
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

pub(crate) fn string_index_prefix(value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 9);
    k.extend_from_slice(value);
    k.push(INDEX_SEP);
    k
}

/// Unix nanoseconds, clamped to i64, as bytes whose order equals time order.
pub(crate) fn sortable_nanos(nanos: i64) -> [u8; 8] {
    ((nanos as u64) ^ (1u64 << 63)).to_be_bytes()
}

pub(crate) fn time_index_key(nanos: i64, batch_first: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&sortable_nanos(nanos));
    k.extend_from_slice(&batch_first.to_be_bytes());
    k
}

pub(crate) fn parse_time_nanos(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let n = t.unix_timestamp_nanos();
    Some(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
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

    // Nothing may precede the checkpoint, and every key must be a seq.
    if let Some((k, _)) = stores.records.first().map_err(rd)? {
        match codec::parse_seq(&k) {
            None => {
                return brk(
                    report,
                    0,
                    BreakKind::Unexpected,
                    format!("malformed key {}", hex::encode(&k)),
                )
            }
            Some(s) if s < cp.first_seq => {
                return brk(
                    report,
                    s,
                    BreakKind::Unexpected,
                    format!("record {s} precedes checkpoint at {}", cp.first_seq),
                )
            }
            Some(_) => {}
        }
    }
    let last_seq = match stores.records.last().map_err(rd)? {
        Some((k, _)) => codec::parse_seq(&k),
        None => None,
    };

    let mut start = cp.first_seq;
    let mut prev = cp.prev_hash;
    if let (VerifyScope::Tail(n), Some(last)) = (scope, last_seq) {
        let tail_start = last.saturating_add(1).saturating_sub(n.max(1));
        if tail_start > cp.first_seq {
            // The checkpoint link: the first retained record chains from the checkpoint.
            match stores
                .records
                .get(codec::seq_key(cp.first_seq))
                .map_err(rd)?
            {
                None => {
                    return brk(
                        report,
                        cp.first_seq,
                        BreakKind::Missing,
                        "first record after checkpoint is absent".into(),
                    )
                }
                Some(v) => {
                    if let Some(b) = check_link(stores, &cp, cp.first_seq, &v, &cp.prev_hash) {
                        return brk(report, b.seq, b.kind, b.detail);
                    }
                }
            }
            // Trust the stored hash of the record just before the tail.
            match stores
                .records
                .get(codec::seq_key(tail_start - 1))
                .map_err(rd)?
            {
                None => {
                    return brk(
                        report,
                        tail_start - 1,
                        BreakKind::Missing,
                        "record absent".into(),
                    )
                }
                Some(v) => match codec::split_value(&v) {
                    Ok(s) => prev = s.hash,
                    Err(e) => return brk(report, tail_start - 1, BreakKind::Changed, e),
                },
            }
            start = tail_start;
        }
    }
    report.from_seq = start;

    let mut expected = start;
    for item in stores.records.range(codec::seq_key(start)..) {
        let (k, v) = item.map_err(rd)?;
        let Some(seq) = codec::parse_seq(&k) else {
            return brk(
                report,
                expected,
                BreakKind::Unexpected,
                format!("malformed key {}", hex::encode(&k)),
            );
        };
        if seq != expected {
            return brk(
                report,
                expected,
                BreakKind::Missing,
                format!("next stored record is {seq}"),
            );
        }
        if let Some(b) = check_link(stores, &cp, seq, &v, &prev) {
            return brk(report, b.seq, b.kind, b.detail);
        }
        // check_link succeeded, so the value splits.
        prev = codec::split_value(&v).map(|s| s.hash).unwrap_or(prev);
        report.checked += 1;
        report.last_good_seq = Some(seq);
        report.head_hash = hex::encode(prev);
        expected = seq + 1;
    }

    // The head guards against a truncated tail, which the chain alone cannot show.
    let walked_last = expected - 1;
    match stores.read_head_meta() {
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
                return brk(
                    report,
                    head_seq + 1,
                    BreakKind::Unexpected,
                    format!("records beyond the stored head {head_seq}"),
                );
            }
            if head_hash != prev {
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
                .records
                .get(codec::seq_key(other - 1))
                .ok()
                .flatten()
                .and_then(|v| codec::split_value(&v).ok().map(|s| s.hash))
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
    fn postings_group_seqs_per_value_and_batch() {
        let mut p = Postings::default();
        for seq in 10..14u64 {
            let rec = AuditRecord {
                seq,
                caller: if seq % 2 == 0 { "a".into() } else { "b".into() },
                target_id: Some("same".into()),
                target_name: Some("same".into()),
                ..Default::default()
            };
            p.add(&rec, 10);
        }
        let mut b = TreeBatches::default();
        p.insert_into(&mut b);
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("t").unwrap();
        t.apply_batch(b.caller).unwrap();
        let a = t.get(posting_key(b"a", 10)).unwrap().unwrap();
        assert_eq!(posting_seqs(&a).unwrap(), vec![10, 12]);
        let t2 = db.open_tree("t2").unwrap();
        t2.apply_batch(b.target).unwrap();
        let same = t2.get(posting_key(b"same", 10)).unwrap().unwrap();
        assert_eq!(
            posting_seqs(&same).unwrap(),
            vec![10, 11, 12, 13],
            "name equal to id is posted once"
        );
        assert!(posting_seqs(&[0u8; 7]).is_err());
    }
}
