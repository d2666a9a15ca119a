//! The secondary indexes: per-chunk postings, their keys and values, the time
//! index, and the chunk directories pruning finds postings through.
//!
//! Why apart: the index is derived data with its own encoding; the indexer
//! ([`crate::record::index`]) writes it and queries read it.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    INDEX_SEP, KIND_ACTION, KIND_CALLER, KIND_DECISION, KIND_TARGET, KIND_TIME, PREFIX_INDEX,
};
use crate::record::codec::{self, FieldView};
use crate::record::RecordError;

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
