//! Exports that verify on their own: each exported record carries its chain hash
//! and its predecessor's, so a file can be checked without the server.
//!
//! Why beside the record rather than a new format: an export line is the record's
//! usual JSON (what `audit query --format jsonl` prints) plus `hash` and
//! `prev_hash` (hex). Every field of the canonical encoding ([`super::codec`]) is
//! in the JSON, so [`verify_export`] re-encodes each record, recomputes
//! `SHA-256(prev_hash || canonical)` and compares it with `hash`, and checks that
//! `prev_hash` is the hash of the line before. A changed record fails at its own
//! seq (hash mismatch); a changed record whose `hash` was recomputed too fails at
//! the next seq (broken link); a rewrite of every line after it is caught only by
//! comparing the last hash with the server's head ([`super::AuditLog::head`]), as
//! for the store itself.
//!
//! A range export (`--from N`) starts after a record it does not hold: its first
//! `prev_hash` is taken as given and named in the report ("starts at seq N after
//! hash H"); an export from the chain's start must begin at seq 1 after the
//! genesis hash.
//!
//! [`opa_event`] maps a record to OPA's decision-log event shape, for tools that
//! read OPA's logs.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::codec::{self, GENESIS_HASH};
use super::store::{self, Stores};
use super::{AuditRecord, RecordError};

/// One exported line: the record, its chain hash and its predecessor's (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedRecord {
    #[serde(flatten)]
    pub record: AuditRecord,
    pub hash: String,
    pub prev_hash: String,
}

/// Records from `from_seq` on (or from the first retained one), oldest first, each
/// with its stored hash and its predecessor's.
pub(crate) fn chained_records(
    stores: &Stores,
    from_seq: u64,
) -> Box<dyn Iterator<Item = Result<ChainedRecord, RecordError>> + Send + 'static> {
    let start = match first_link(stores, from_seq) {
        Ok(s) => s,
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    let Some((from, mut prev)) = start else {
        return Box::new(std::iter::empty());
    };
    let blob_start = match stores.blob_start_for(from) {
        Ok(s) => s.unwrap_or(from),
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    let mut failed = false;
    Box::new(
        stores
            .blobs_from(blob_start)
            .flat_map(move |item| {
                let mut out = Vec::new();
                let blob = match item {
                    Ok((_, blob)) => blob,
                    Err(e) => {
                        out.push(Err(RecordError::Store(format!("export: {e}"))));
                        return out;
                    }
                };
                for entry in codec::blob_entries(&blob) {
                    match entry {
                        Ok((seq, _)) if seq < from => {}
                        Ok((seq, value)) => {
                            let item = codec::split_value(value)
                                .map_err(|e| RecordError::Corrupt(format!("record {seq}: {e}")))
                                .and_then(|split| {
                                    let record = store::decode_stored(seq, value)?;
                                    let line = ChainedRecord {
                                        record,
                                        hash: hex::encode(split.hash),
                                        prev_hash: hex::encode(prev),
                                    };
                                    prev = split.hash;
                                    Ok(line)
                                });
                            out.push(item);
                        }
                        Err(e) => {
                            out.push(Err(RecordError::Corrupt(format!("audit record blob: {e}"))));
                            break;
                        }
                    }
                }
                out
            })
            // The first error ends the export: what follows it cannot be linked.
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                go
            }),
    )
}

/// The first seq at or after `from_seq` that is stored, and the hash it chains from.
fn first_link(stores: &Stores, from_seq: u64) -> Result<Option<(u64, [u8; 32])>, RecordError> {
    let cp = stores.read_checkpoint()?;
    let from = from_seq.max(cp.first_seq);
    if from == cp.first_seq {
        return Ok(Some((from, cp.prev_hash)));
    }
    match stores.locate(from - 1)? {
        Some(l) => {
            let split = codec::split_value(l.value())
                .map_err(|e| RecordError::Corrupt(format!("record {}: {e}", from - 1)))?;
            Ok(Some((from, split.hash)))
        }
        // Past the last record: nothing to export.
        None if stores.last_seq()?.is_none_or(|last| last < from) => Ok(None),
        None => Err(RecordError::Corrupt(format!(
            "record {} is missing; run `portcullis audit verify`",
            from - 1
        ))),
    }
}

/// What breaks an export's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportBreakKind {
    /// The record (or its `prev_hash`) does not hash to its `hash`: changed.
    HashMismatch,
    /// `prev_hash` is not the hash of the record before it.
    BrokenLink,
    /// A seq is absent (or out of order) between two lines.
    Missing,
    /// A line that is not an exported record.
    Unreadable,
}

/// The first break in an export: the seq (and line) where it stops holding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportBreak {
    /// The seq of the record that fails (the line's own seq when readable).
    pub seq: Option<u64>,
    /// 1-based line number in the file.
    pub line: u64,
    pub kind: ExportBreakKind,
    pub detail: String,
}

impl std::fmt::Display for ExportBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "{:?} at seq {seq} (line {}): {}",
                self.kind, self.line, self.detail
            ),
            None => write!(f, "{:?} at line {}: {}", self.kind, self.line, self.detail),
        }
    }
}

/// Result of checking an export, shaped like [`super::VerifyReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportVerifyReport {
    /// Records whose hash and link were recomputed.
    pub checked: u64,
    /// Seq of the first record in the file.
    pub from_seq: Option<u64>,
    /// Hash (hex) the first record chains from: the genesis value for an export
    /// from the chain's start, else taken as given.
    pub starts_after: Option<String>,
    /// "starts at seq 1 from the chain's start" or "starts at seq N after hash H".
    pub start: String,
    /// Last seq that verified.
    pub last_good_seq: Option<u64>,
    /// Hash after the last good record: compare it with the server's head.
    pub head_hash: String,
    /// The FIRST break, if any.
    pub broken: Option<ExportBreak>,
}

impl ExportVerifyReport {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none() && self.checked > 0
    }
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// Check an export (JSON Lines of [`ChainedRecord`]) offline; blank lines are
/// skipped. The report names the first break; I/O errors are errors.
pub fn verify_export<R: BufRead>(input: R) -> std::io::Result<ExportVerifyReport> {
    let mut report = ExportVerifyReport {
        checked: 0,
        from_seq: None,
        starts_after: None,
        start: "the export holds no records".into(),
        last_good_seq: None,
        head_hash: String::new(),
        broken: None,
    };
    // (seq, hash) of the last good record.
    let mut last: Option<(u64, [u8; 32])> = None;
    let brk = |line: u64, seq: Option<u64>, kind, detail: String| {
        Some(ExportBreak {
            seq,
            line,
            kind,
            detail,
        })
    };
    for (n, text) in input.lines().enumerate() {
        let text = text?;
        let line = n as u64 + 1;
        if text.trim().is_empty() {
            continue;
        }
        let parsed: ChainedRecord = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let seq = last.map(|(s, _)| s + 1);
                report.broken = brk(
                    line,
                    seq,
                    ExportBreakKind::Unreadable,
                    format!("not an exported record ({e})"),
                );
                break;
            }
        };
        let seq = parsed.record.seq;
        let (Some(hash), Some(prev)) = (parse_hash(&parsed.hash), parse_hash(&parsed.prev_hash))
        else {
            report.broken = brk(
                line,
                Some(seq),
                ExportBreakKind::Unreadable,
                "hash and prev_hash must be 64 hex digits".into(),
            );
            break;
        };
        match last {
            None => {
                report.from_seq = Some(seq);
                report.starts_after = Some(hex::encode(prev));
                if seq == 1 && prev != GENESIS_HASH {
                    report.start = "starts at seq 1 from the chain's start".into();
                    report.broken = brk(
                        line,
                        Some(seq),
                        ExportBreakKind::BrokenLink,
                        format!(
                            "the chain's first record must follow the genesis hash, its prev_hash is {}",
                            parsed.prev_hash
                        ),
                    );
                    break;
                }
                report.start = if seq == 1 {
                    "starts at seq 1 from the chain's start".into()
                } else {
                    format!("starts at seq {seq} after hash {}", hex::encode(prev))
                };
            }
            Some((last_seq, last_hash)) => {
                if seq != last_seq + 1 {
                    report.broken = brk(
                        line,
                        Some(seq),
                        ExportBreakKind::Missing,
                        format!("expected seq {} after seq {last_seq}", last_seq + 1),
                    );
                    break;
                }
                if prev != last_hash {
                    report.broken = brk(
                        line,
                        Some(seq),
                        ExportBreakKind::BrokenLink,
                        format!(
                            "prev_hash {} is not the hash of seq {last_seq} ({})",
                            parsed.prev_hash,
                            hex::encode(last_hash)
                        ),
                    );
                    break;
                }
            }
        }
        let canonical = match codec::encode_canonical(&parsed.record) {
            Ok(c) => c,
            Err(e) => {
                report.broken = brk(line, Some(seq), ExportBreakKind::Unreadable, e.to_string());
                break;
            }
        };
        let computed = codec::chain_hash(&prev, &canonical);
        if computed != hash {
            report.broken = brk(
                line,
                Some(seq),
                ExportBreakKind::HashMismatch,
                format!(
                    "the record hashes to {}, the export says {}: the record was changed",
                    hex::encode(computed),
                    parsed.hash
                ),
            );
            break;
        }
        report.checked += 1;
        report.last_good_seq = Some(seq);
        report.head_hash = parsed.hash;
        last = Some((seq, hash));
    }
    Ok(report)
}

/// One record as an OPA decision-log event: `decision_id` (the seq), `path`,
/// `input` (what was asked), `result` (what was decided), `timestamp`, `labels`
/// and `metrics` (none are measured per decision).
pub fn opa_event(r: &ChainedRecord) -> Value {
    let rec = &r.record;
    json!({
        "decision_id": rec.seq.to_string(),
        "path": "portcullis/decision",
        "input": {
            "request_id": rec.request_id,
            "caller": rec.caller,
            "identified_by": rec.identified_by,
            "action": rec.action,
            "target": {"id": rec.target_id, "name": rec.target_name},
            "method": rec.method,
            "path": rec.path,
            "resource_path": rec.resource_path,
            "body_sha256": rec.body_sha256,
        },
        "result": {
            "allowed": rec.allowed,
            "enforced": rec.enforced,
            "reasons": rec.reasons,
            "trust_id": rec.trust_id,
        },
        "requested_by": rec.identified_by,
        "timestamp": rec.time,
        "labels": {"app": "portcullis", "policy_version": rec.policy_version},
        "metrics": {},
        "portcullis_chain": {"seq": rec.seq, "hash": r.hash, "prev_hash": r.prev_hash},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64, first: u64, mut prev: [u8; 32]) -> Vec<String> {
        (first..first + n)
            .map(|seq| {
                let record = AuditRecord {
                    seq,
                    time: "2026-01-02T03:04:05Z".into(),
                    request_id: format!("r{seq}"),
                    caller: "ci".into(),
                    action: "container.start".into(),
                    allowed: seq % 2 == 0,
                    ..Default::default()
                };
                let hash = codec::chain_hash(&prev, &codec::encode_canonical(&record).unwrap());
                let line = ChainedRecord {
                    record,
                    hash: hex::encode(hash),
                    prev_hash: hex::encode(prev),
                };
                prev = hash;
                serde_json::to_string(&line).unwrap()
            })
            .collect()
    }

    fn verify(lines: &[String]) -> ExportVerifyReport {
        verify_export(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_whole_chain_verifies_from_genesis() {
        let r = verify(&chain(5, 1, GENESIS_HASH));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((r.checked, r.last_good_seq), (5, Some(5)));
        assert!(r.start.contains("chain's start"), "{}", r.start);
    }

    #[test]
    fn a_range_names_its_first_link() {
        let r = verify(&chain(3, 10, [7u8; 32]));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            r.start,
            format!("starts at seq 10 after hash {}", "07".repeat(32))
        );
    }

    #[test]
    fn a_changed_record_is_named() {
        let mut lines = chain(4, 1, GENESIS_HASH);
        lines[2] = lines[2].replace("\"caller\":\"ci\"", "\"caller\":\"cj\"");
        let b = verify(&lines).broken.unwrap();
        assert_eq!(
            (b.seq, b.kind, b.line),
            (Some(3), ExportBreakKind::HashMismatch, 3)
        );
    }

    #[test]
    fn a_rehashed_record_breaks_the_next_link() {
        let mut lines = chain(4, 1, GENESIS_HASH);
        let mut v: ChainedRecord = serde_json::from_str(&lines[1]).unwrap();
        v.record.allowed = !v.record.allowed;
        let prev = parse_hash(&v.prev_hash).unwrap();
        v.hash = hex::encode(codec::chain_hash(
            &prev,
            &codec::encode_canonical(&v.record).unwrap(),
        ));
        lines[1] = serde_json::to_string(&v).unwrap();
        let b = verify(&lines).broken.unwrap();
        assert_eq!((b.seq, b.kind), (Some(3), ExportBreakKind::BrokenLink));
    }

    #[test]
    fn a_missing_line_and_a_false_genesis_are_named() {
        let mut lines = chain(4, 1, GENESIS_HASH);
        lines.remove(1);
        let b = verify(&lines).broken.unwrap();
        assert_eq!((b.seq, b.kind), (Some(3), ExportBreakKind::Missing));
        let b = verify(&chain(2, 1, [1u8; 32])).broken.unwrap();
        assert_eq!((b.seq, b.kind), (Some(1), ExportBreakKind::BrokenLink));
        assert!(!verify(&[]).is_ok());
    }

    #[test]
    fn opa_events_have_opas_fields() {
        let line: ChainedRecord = serde_json::from_str(&chain(1, 1, GENESIS_HASH)[0]).unwrap();
        let e = opa_event(&line);
        for k in [
            "decision_id",
            "path",
            "input",
            "result",
            "timestamp",
            "labels",
            "metrics",
        ] {
            assert!(e.get(k).is_some(), "{k}");
        }
        assert_eq!(e["decision_id"], "1");
        assert_eq!(e["labels"]["app"], "portcullis");
        assert_eq!(e["result"]["allowed"], false);
    }
}
