//! Chain verification: walk the records, recompute every link, and name the
//! FIRST break (changed, missing, reordered, unexpected, head or checkpoint).
//!
//! Why apart: this is the log's proof of integrity and the longest single
//! walk over the tree; it only reads.

use serde::Serialize;

use super::{blob_key, parse_blob_key, store_err, Checkpoint, Stores, PREFIX_RECORDS};
use crate::record::codec;
use crate::record::RecordError;

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
