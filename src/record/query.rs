//! Queries over the log: the filter of `GET /api/v1/trust/audit` and its execution.
//!
//! Results are ordered by sequence number, newest first unless `order=oldest`.
//! Paging: a page that may have more carries `next_cursor` (the seq of its last
//! record); pass it back as `cursor` to continue strictly past it, in the same order.
//!
//! Execution picks one driving index, the most selective available:
//! request id (its own index, one key per record), target, caller, action, time
//! range, decision; with none it walks the records, newest first, stopping once
//! the page is full. An index covers seqs up to its mark (see [`super::index`]);
//! records after it are found by scanning their blobs, checking the raw bytes before decoding. Every
//! returned record is checked against ALL filters, so the choice of index affects
//! speed only, never the answer. Target matches the full container
//! id or the name exactly (short ids are resolved by the caller of this API).

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::codec;
use super::index::MAX_CHUNK_SPAN;
use super::store::{self, Stores};
use super::{AuditRecord, RecordError};

/// Default and maximum page size.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// Which records to return. Empty filter = everything, newest first, 100 per page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub caller: Option<String>,
    /// Container id (full) or name.
    pub target: Option<String>,
    pub action: Option<String>,
    /// Some(true) = allowed only, Some(false) = denied only.
    pub allowed: Option<bool>,
    /// Inclusive lower bound, Unix nanoseconds (parsed from RFC 3339).
    pub since_nanos: Option<i64>,
    /// Inclusive upper bound, Unix nanoseconds.
    pub until_nanos: Option<i64>,
    pub request_id: Option<String>,
    pub limit: usize,
    /// Continue strictly past this seq (in `order`).
    pub cursor: Option<u64>,
    pub order: Order,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            caller: None,
            target: None,
            action: None,
            allowed: None,
            since_nanos: None,
            until_nanos: None,
            request_id: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
            order: Order::Newest,
        }
    }
}

/// A bad query parameter; the admin API answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit query parameter {param}: {reason}")]
pub struct FilterError {
    pub param: String,
    pub reason: String,
}

fn ferr(param: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        param: param.to_string(),
        reason: reason.into(),
    }
}

/// Parse an RFC 3339 time into Unix nanoseconds.
///
/// A space where the offset's `+` belongs is read as `+`: form decoding of an
/// unescaped query string turns `+01:00` into ` 01:00`, and nothing else is meant.
pub fn parse_rfc3339_nanos(param: &str, value: &str) -> Result<i64, FilterError> {
    let repaired;
    let mut text = value;
    if value.len() > 6 && value.as_bytes()[value.len() - 6] == b' ' {
        repaired = format!(
            "{}+{}",
            &value[..value.len() - 6],
            &value[value.len() - 5..]
        );
        text = &repaired;
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ferr(
            param,
            format!("{value:?} is not an RFC 3339 time like 2026-01-02T03:04:05Z ({e})"),
        )
    })?;
    Ok(t.unix_timestamp_nanos()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

impl AuditFilter {
    /// Parse the query parameters of `GET /api/v1/trust/audit`:
    /// caller, target, action, decision (allow|deny), since, until (RFC 3339),
    /// request_id, limit (1..=1000, default 100), cursor (seq), order (newest|oldest).
    /// Unknown, repeated or empty parameters are refused (fail closed: a typo must
    /// not silently widen an auditor's query).
    pub fn from_query_pairs(pairs: &[(String, String)]) -> Result<AuditFilter, FilterError> {
        let mut f = AuditFilter::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            let key = key.as_str();
            if seen.contains(&key) {
                return Err(ferr(key, "given more than once"));
            }
            seen.push(key);
            if value.is_empty() {
                return Err(ferr(key, "empty value"));
            }
            match key {
                "caller" => f.caller = Some(value.clone()),
                "target" => f.target = Some(value.clone()),
                "action" => f.action = Some(value.clone()),
                "request_id" => f.request_id = Some(value.clone()),
                "decision" => {
                    f.allowed = Some(match value.as_str() {
                        "allow" => true,
                        "deny" => false,
                        other => return Err(ferr(key, format!("{other:?} is not allow or deny"))),
                    })
                }
                "since" => f.since_nanos = Some(parse_rfc3339_nanos(key, value)?),
                "until" => f.until_nanos = Some(parse_rfc3339_nanos(key, value)?),
                "limit" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| ferr(key, format!("{value:?} is not a number")))?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(ferr(key, format!("{n} is outside 1..={MAX_LIMIT}")));
                    }
                    f.limit = n;
                }
                "cursor" => {
                    f.cursor = Some(
                        value
                            .parse()
                            .map_err(|_| ferr(key, format!("{value:?} is not a sequence number")))?,
                    )
                }
                "order" => {
                    f.order = match value.as_str() {
                        "newest" => Order::Newest,
                        "oldest" => Order::Oldest,
                        other => return Err(ferr(key, format!("{other:?} is not newest or oldest"))),
                    }
                }
                other => {
                    return Err(ferr(
                        other,
                        "unknown (expected caller, target, action, decision, since, until, request_id, limit, cursor, order)",
                    ))
                }
            }
        }
        if let (Some(s), Some(u)) = (f.since_nanos, f.until_nanos) {
            if s > u {
                return Err(ferr("since", "is after until"));
            }
        }
        Ok(f)
    }

    /// Does `rec` satisfy every filter (cursor and limit aside)?
    pub fn matches(&self, rec: &AuditRecord) -> bool {
        if self.caller.as_deref().is_some_and(|c| c != rec.caller) {
            return false;
        }
        if self.action.as_deref().is_some_and(|a| a != rec.action) {
            return false;
        }
        if self
            .request_id
            .as_deref()
            .is_some_and(|r| r != rec.request_id)
        {
            return false;
        }
        if let Some(t) = self.target.as_deref() {
            if rec.target_id.as_deref() != Some(t) && rec.target_name.as_deref() != Some(t) {
                return false;
            }
        }
        if self.allowed.is_some_and(|a| a != rec.allowed) {
            return false;
        }
        if self.since_nanos.is_some() || self.until_nanos.is_some() {
            // A record whose time cannot be read never matches a time range.
            let Some(n) = store::parse_time_nanos(&rec.time) else {
                return false;
            };
            if self.since_nanos.is_some_and(|s| n < s) || self.until_nanos.is_some_and(|u| n > u) {
                return false;
            }
        }
        true
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass back as `cursor` for the next page; None when this is the last page.
    pub next_cursor: Option<u64>,
}

/// Seq range strictly past the cursor, in iteration terms.
fn seq_bounds(f: &AuditFilter) -> (u64, u64) {
    match (f.order, f.cursor) {
        (_, None) => (0, u64::MAX),
        (Order::Newest, Some(c)) => (0, c.saturating_sub(1)),
        (Order::Oldest, Some(c)) => (c.saturating_add(1), u64::MAX),
    }
}

/// Collects matching records into one page.
struct Page<'f> {
    f: &'f AuditFilter,
    records: Vec<AuditRecord>,
    more: bool,
}

impl Page<'_> {
    /// Offer a candidate; false once the page is full (and more exist).
    fn offer(&mut self, rec: AuditRecord) -> bool {
        if !self.f.matches(&rec) {
            return true;
        }
        if self.records.len() == self.f.limit {
            self.more = true;
            return false;
        }
        self.records.push(rec);
        true
    }

    fn finish(self) -> AuditPage {
        let next_cursor = if self.more {
            self.records.last().map(|r| r.seq)
        } else {
            None
        };
        AuditPage {
            records: self.records,
            next_cursor,
        }
    }
}

/// Cheap rejection on borrowed fields before a full decode. Only equality tests that
/// `AuditFilter::matches` also makes, so it never rejects a match.
fn may_match(f: &AuditFilter, v: &codec::FieldView<'_>) -> bool {
    let eq = |want: &Option<String>, got: &[u8]| want.as_ref().is_none_or(|w| w.as_bytes() == got);
    if !eq(&f.caller, v.caller) || !eq(&f.action, v.action) || !eq(&f.request_id, v.request_id) {
        return false;
    }
    if f.allowed.is_some_and(|a| a != v.allowed) {
        return false;
    }
    if let Some(t) = f.target.as_deref() {
        let t = Some(t.as_bytes());
        if v.target_id != t && v.target_name != t {
            return false;
        }
    }
    true
}

pub(crate) fn run(stores: &Stores, f: &AuditFilter) -> Result<AuditPage, RecordError> {
    if f.limit == 0 || f.limit > MAX_LIMIT {
        return Err(RecordError::Invalid(format!(
            "limit {} is outside 1..={MAX_LIMIT}",
            f.limit
        )));
    }
    let (lo, hi) = seq_bounds(f);
    let mut page = Page {
        f,
        records: Vec::with_capacity(f.limit.min(64)),
        more: false,
    };
    if f.cursor.is_some() && ((f.order == Order::Newest && f.cursor == Some(0)) || lo > hi) {
        return Ok(page.finish());
    }
    let newest = f.order == Order::Newest;

    // The driving index, if any filter has one.
    let keyed: Option<(u8, &[u8])> = if let Some(v) = &f.target {
        Some((store::KIND_TARGET, v.as_bytes()))
    } else if let Some(v) = &f.caller {
        Some((store::KIND_CALLER, v.as_bytes()))
    } else if let Some(v) = &f.action {
        Some((store::KIND_ACTION, v.as_bytes()))
    } else if f.since_nanos.is_some() || f.until_nanos.is_some() {
        None
    } else {
        f.allowed
            .map(|a| (store::KIND_DECISION, store::decision_value(a)))
    };
    let by_request = f.request_id.as_deref().map(str::as_bytes);
    let timed = keyed.is_none() && (f.since_nanos.is_some() || f.until_nanos.is_some());
    if by_request.is_none() && keyed.is_none() && !timed {
        scan_blobs(stores, lo, hi, newest, &mut page)?;
        return Ok(page.finish());
    }

    // Postings cover seqs up to `indexed`; the blobs after it are scanned. Reading
    // the mark once keeps the two parts disjoint whatever the indexer does meanwhile.
    // A request id is the most selective filter there is: its own index drives.
    let indexed = if by_request.is_some() {
        stores.read_rid_indexed()?
    } else {
        stores.read_indexed()?
    };
    let index_hi = hi.min(indexed);
    let tail_lo = lo.max(indexed.saturating_add(1));
    if newest && tail_lo <= hi && !scan_blobs(stores, tail_lo, hi, true, &mut page)? {
        return Ok(page.finish());
    }
    if lo <= index_hi {
        let candidates: Box<dyn Iterator<Item = Result<u64, RecordError>>> =
            match (by_request, keyed) {
                (Some(rid), _) => request_ids(stores, rid, lo, index_hi, newest),
                (None, Some((kind, value))) => postings(stores, kind, value, lo, index_hi, newest),
                (None, None) => time_index(stores, f, lo, index_hi, newest)?,
            };
        // Candidates often share a blob: keep the last one instead of looking it up.
        let mut cached: Option<(u64, sled::IVec)> = None;
        for seq in candidates {
            let seq = seq?;
            let hit = cached
                .as_ref()
                .filter(|(first, _)| *first <= seq)
                .and_then(|(_, blob)| store::locate_in(blob, seq));
            let (blob, (start, end)) = match hit {
                Some(range) => (&cached.as_ref().expect("hit").1, range),
                None => {
                    // An index entry whose record is gone (pruned concurrently) is skipped.
                    let Some(l) = stores.locate(seq)? else {
                        continue;
                    };
                    cached = Some((l.first, l.blob));
                    (&cached.as_ref().expect("just set").1, (l.start, l.end))
                }
            };
            let value = &blob[start..end];
            let likely = codec::split_value(value)
                .and_then(|s| codec::view_fields(s.canonical))
                .map(|v| may_match(page.f, &v))
                .unwrap_or(true);
            if !likely {
                continue;
            }
            if !page.offer(store::decode_stored(seq, value)?) {
                return Ok(page.finish());
            }
        }
    }
    if !newest && tail_lo <= hi {
        scan_blobs(stores, tail_lo, hi, false, &mut page)?;
    }
    Ok(page.finish())
}

/// Walk the records with seq in [lo, hi] in result order, pre-filtering on the raw
/// bytes so only likely matches are decoded. False once the page is full.
fn scan_blobs(
    stores: &Stores,
    lo: u64,
    hi: u64,
    newest: bool,
    page: &mut Page<'_>,
) -> Result<bool, RecordError> {
    let rd = |e: sled::Error| RecordError::Store(format!("audit query: {e}"));
    let from = stores.blob_start_for(lo)?.unwrap_or(lo);
    let range = stores
        .log
        .range(store::blob_key(from)..=store::blob_key(hi));
    let blobs: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if newest {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    for item in blobs {
        let (_, blob) = item.map_err(rd)?;
        let mut entries: Vec<(u64, &[u8])> = Vec::new();
        for e in codec::blob_entries(&blob) {
            let (seq, value) =
                e.map_err(|e| RecordError::Corrupt(format!("audit record blob: {e}")))?;
            if seq >= lo && seq <= hi {
                entries.push((seq, value));
            }
        }
        if newest {
            entries.reverse();
        }
        for &(seq, value) in &entries {
            // Undecodable values fall through to the full decode, which reports them.
            let likely = codec::split_value(value)
                .and_then(|s| codec::view_fields(s.canonical))
                .map(|v| may_match(page.f, &v))
                .unwrap_or(true);
            if !likely {
                continue;
            }
            if !page.offer(store::decode_stored(seq, value)?) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Seqs in [lo, hi] from the postings of `value`, in result order. Postings are
/// keyed by their chunk's first seq and a chunk spans at most MAX_CHUNK_SPAN seqs,
/// so the scan starts that far below `lo`.
fn postings(
    stores: &Stores,
    kind: u8,
    value: &[u8],
    lo: u64,
    hi: u64,
    newest: bool,
) -> Box<dyn Iterator<Item = Result<u64, RecordError>>> {
    let prefix = store::string_index_prefix(kind, value);
    let mut start = prefix.clone();
    start.extend_from_slice(&lo.saturating_sub(MAX_CHUNK_SPAN).to_be_bytes());
    let mut end = prefix;
    end.extend_from_slice(&hi.to_be_bytes());
    let range = stores.log.range(start..=end);
    let per_key =
        move |r: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<u64, RecordError>> {
            let seqs = r
                .map_err(|e| RecordError::Store(format!("audit index: {e}")))
                .and_then(|(_, v)| store::posting_seqs(&v));
            match seqs {
                Err(e) => vec![Err(e)],
                Ok(mut seqs) => {
                    seqs.retain(|s| *s >= lo && *s <= hi);
                    if newest {
                        seqs.reverse();
                    }
                    seqs.into_iter().map(Ok).collect()
                }
            }
        };
    if newest {
        Box::new(range.rev().flat_map(per_key))
    } else {
        Box::new(range.flat_map(per_key))
    }
}

/// Seqs in [lo, hi] of the records of `request_id`, in result order (the index
/// keys end in the seq, so a prefix scan yields them ascending).
fn request_ids(
    stores: &Stores,
    request_id: &[u8],
    lo: u64,
    hi: u64,
    newest: bool,
) -> Box<dyn Iterator<Item = Result<u64, RecordError>>> {
    let prefix = store::request_id_prefix(request_id);
    let skip = prefix.len();
    let seq_of =
        move |r: sled::Result<(sled::IVec, sled::IVec)>| -> Option<Result<u64, RecordError>> {
            match r {
                Err(e) => Some(Err(RecordError::Store(format!(
                    "audit request-id index: {e}"
                )))),
                Ok((k, _)) => codec::parse_seq(&k[skip..])
                    .filter(|s| *s >= lo && *s <= hi)
                    .map(Ok),
            }
        };
    let scan = stores.log.scan_prefix(prefix);
    if newest {
        Box::new(scan.rev().filter_map(seq_of))
    } else {
        Box::new(scan.filter_map(seq_of))
    }
}

/// The time index is ordered by time, results by seq: collect the seqs in the time
/// range, then sort. Cost grows with the number of records in the range.
fn time_index(
    stores: &Stores,
    f: &AuditFilter,
    lo: u64,
    hi: u64,
    newest: bool,
) -> Result<Box<dyn Iterator<Item = Result<u64, RecordError>>>, RecordError> {
    let (start, end) = store::time_index_bounds(f.since_nanos, f.until_nanos);
    let mut seqs = Vec::new();
    for r in stores.log.range(start..=end) {
        let (_, v) = r.map_err(|e| RecordError::Store(format!("audit time index: {e}")))?;
        seqs.extend(
            store::posting_seqs(&v)?
                .into_iter()
                .filter(|s| *s >= lo && *s <= hi),
        );
    }
    seqs.sort_unstable();
    seqs.dedup();
    if newest {
        seqs.reverse();
    }
    Ok(Box::new(seqs.into_iter().map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_parameter() {
        let f = AuditFilter::from_query_pairs(&pairs(&[
            ("caller", "svc"),
            ("target", "web"),
            ("action", "container.start"),
            ("decision", "deny"),
            ("since", "2026-01-01T00:00:00Z"),
            ("until", "2026-01-02T00:00:00+01:00"),
            ("request_id", "r-1"),
            ("limit", "5"),
            ("cursor", "77"),
            ("order", "oldest"),
        ]))
        .unwrap();
        assert_eq!(f.caller.as_deref(), Some("svc"));
        assert_eq!(f.target.as_deref(), Some("web"));
        assert_eq!(f.allowed, Some(false));
        assert_eq!(f.since_nanos, Some(1_767_225_600_000_000_000));
        assert_eq!(
            f.until_nanos,
            Some(1_767_225_600_000_000_000 + 23 * 3600 * 1_000_000_000)
        );
        assert_eq!((f.limit, f.cursor, f.order), (5, Some(77), Order::Oldest));
    }

    #[test]
    fn offset_plus_lost_to_form_decoding_is_restored() {
        let a = parse_rfc3339_nanos("since", "2026-01-02T00:00:00 01:00").unwrap();
        let b = parse_rfc3339_nanos("since", "2026-01-02T00:00:00+01:00").unwrap();
        assert_eq!(a, b);
        assert!(parse_rfc3339_nanos("since", "2026-01-02T00:00:00 xx:00").is_err());
    }

    #[test]
    fn refuses_bad_values() {
        let bad = [
            ("decision", "maybe"),
            ("since", "yesterday"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "-1"),
            ("cursor", "x"),
            ("order", "random"),
            ("colour", "red"),
            ("caller", ""),
        ];
        for (k, v) in bad {
            let e = AuditFilter::from_query_pairs(&pairs(&[(k, v)])).unwrap_err();
            assert_eq!(e.param, k, "{e}");
        }
        let dup = AuditFilter::from_query_pairs(&pairs(&[("caller", "a"), ("caller", "b")]));
        assert!(dup.unwrap_err().reason.contains("more than once"));
        let inverted = AuditFilter::from_query_pairs(&pairs(&[
            ("since", "2026-01-02T00:00:00Z"),
            ("until", "2026-01-01T00:00:00Z"),
        ]));
        assert!(inverted.is_err());
    }

    #[test]
    fn matches_target_by_id_or_name() {
        let rec = AuditRecord {
            target_id: Some("abc".into()),
            target_name: Some("web".into()),
            ..Default::default()
        };
        for t in ["abc", "web"] {
            let f = AuditFilter {
                target: Some(t.into()),
                ..Default::default()
            };
            assert!(f.matches(&rec));
        }
        let f = AuditFilter {
            target: Some("ab".into()),
            ..Default::default()
        };
        assert!(!f.matches(&rec));
    }
}
