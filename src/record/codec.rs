//! Canonical byte encoding of an [`AuditRecord`] and of the stored chain value.
//!
//! Why hand-rolled rather than serde_json: the chain hash must be computed over
//! bytes that can never change meaning when a library changes its formatting
//! (key order, float or escape rules). A length-prefixed layout is unambiguous,
//! cheap to hash and strict to decode.
//!
//! Canonical record encoding, version 1 (all integers big-endian):
//!
//! | field | encoding |
//! |---|---|
//! | seq | u64 |
//! | time, request_id, caller, identified_by, action | str |
//! | target_id, target_name, resource_path | opt |
//! | method, path | str |
//! | allowed, enforced | u8, exactly 0 or 1 |
//! | reasons | u32 count, then count × str |
//! | trust_id | opt |
//! | policy_version | str |
//! | body_sha256 | opt |
//!
//! `str` = u32 byte length + UTF-8 bytes; `opt` = byte 0 (none) or byte 1 + str.
//! Decoding rejects anything else, including trailing bytes.
//!
//! Stored value of one record: `[VALUE_VERSION][chain hash: 32][canonical]`,
//! where chain hash = SHA-256(previous record's chain hash || canonical). The
//! first record ever chains from 32 zero bytes ([`GENESIS_HASH`]).
//!
//! Record blob (one sled value of contiguous records, key `r` + first seq, see
//! [`super::store`]): `[BLOB_VERSION]` then, per record in seq order,
//! `[seq u64][value length u32][stored value]`. The framing seq plays the role a
//! per-record key used to: verification compares it with the expected position
//! (gap = missing) and with the seq inside the canonical bytes (moved = reordered).
//! Verification hashes the canonical bytes in place; nothing is decoded.

use sha2::{Digest, Sha256};

use super::{AuditRecord, RecordError};

/// Version byte at the start of every stored value.
pub const VALUE_VERSION: u8 = 1;
/// The predecessor hash of the very first record.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];
/// Longest accepted string field: records are summaries, never bodies.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most reasons a record may carry.
pub const MAX_REASONS: usize = 1024;

const HEADER_LEN: usize = 1 + 32;

/// Encode `record` canonically. Fails on fields over [`MAX_FIELD_BYTES`] or too many reasons.
pub fn encode_canonical(record: &AuditRecord) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(256);
    encode_canonical_into(&mut out, record)?;
    Ok(out)
}

/// [`encode_canonical`] appending to `out` (the writer reuses one buffer per batch).
/// On error `out` may hold a partial encoding: truncate it back.
pub fn encode_canonical_into(out: &mut Vec<u8>, record: &AuditRecord) -> Result<(), RecordError> {
    out.extend_from_slice(&record.seq.to_be_bytes());
    put_str(out, "time", &record.time)?;
    put_str(out, "request_id", &record.request_id)?;
    put_str(out, "caller", &record.caller)?;
    put_str(out, "identified_by", &record.identified_by)?;
    put_str(out, "action", &record.action)?;
    put_opt(out, "target_id", &record.target_id)?;
    put_opt(out, "target_name", &record.target_name)?;
    put_opt(out, "resource_path", &record.resource_path)?;
    put_str(out, "method", &record.method)?;
    put_str(out, "path", &record.path)?;
    out.push(u8::from(record.allowed));
    out.push(u8::from(record.enforced));
    if record.reasons.len() > MAX_REASONS {
        return Err(RecordError::Invalid(format!(
            "record has {} reasons, at most {MAX_REASONS} are accepted",
            record.reasons.len()
        )));
    }
    out.extend_from_slice(&(record.reasons.len() as u32).to_be_bytes());
    for reason in &record.reasons {
        put_str(out, "reasons[]", reason)?;
    }
    put_opt(out, "trust_id", &record.trust_id)?;
    put_str(out, "policy_version", &record.policy_version)?;
    put_opt(out, "body_sha256", &record.body_sha256)?;
    Ok(())
}

fn put_str(out: &mut Vec<u8>, field: &str, value: &str) -> Result<(), RecordError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(RecordError::Invalid(format!(
            "field {field} is {} bytes, at most {MAX_FIELD_BYTES} are accepted",
            value.len()
        )));
    }
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, field: &str, value: &Option<String>) -> Result<(), RecordError> {
    match value {
        None => {
            out.push(0);
            Ok(())
        }
        Some(v) => {
            out.push(1);
            put_str(out, field, v)
        }
    }
}

/// Strict decoder over canonical bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bool byte {other} at {}", self.pos - 1)),
        }
    }
    fn str(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        if len > MAX_FIELD_BYTES {
            return Err(format!(
                "string length {len} over limit at {}",
                self.pos - 4
            ));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("invalid UTF-8 before {}", self.pos))
    }
    fn opt(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            other => Err(format!("option tag {other} at {}", self.pos - 1)),
        }
    }
}

/// Decode canonical bytes back into a record. Any deviation is an error.
pub fn decode_canonical(bytes: &[u8]) -> Result<AuditRecord, String> {
    let mut r = Reader { bytes, pos: 0 };
    let record = AuditRecord {
        seq: r.u64()?,
        time: r.str()?,
        request_id: r.str()?,
        caller: r.str()?,
        identified_by: r.str()?,
        action: r.str()?,
        target_id: r.opt()?,
        target_name: r.opt()?,
        resource_path: r.opt()?,
        method: r.str()?,
        path: r.str()?,
        allowed: r.bool()?,
        enforced: r.bool()?,
        reasons: {
            let count = r.u32()? as usize;
            if count > MAX_REASONS {
                return Err(format!("{count} reasons over limit"));
            }
            let mut reasons = Vec::with_capacity(count);
            for _ in 0..count {
                reasons.push(r.str()?);
            }
            reasons
        },
        trust_id: r.opt()?,
        policy_version: r.str()?,
        body_sha256: r.opt()?,
    };
    if r.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - r.pos));
    }
    Ok(record)
}

/// SHA-256(prev || canonical): the link of one record to its predecessor.
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// Build the stored value for one record.
pub fn encode_value(hash: &[u8; 32], canonical: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + canonical.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(hash);
    out.extend_from_slice(canonical);
    out
}

/// A stored value split into its parts, without decoding the record.
pub struct StoredValue<'a> {
    pub hash: [u8; 32],
    pub canonical: &'a [u8],
}

impl StoredValue<'_> {
    /// The sequence number written inside the canonical bytes (first 8 bytes).
    pub fn embedded_seq(&self) -> Option<u64> {
        let b = self.canonical.get(..8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
}

/// Split a stored value; fails on an unknown version or a short value.
pub fn split_value(value: &[u8]) -> Result<StoredValue<'_>, String> {
    if value.len() < HEADER_LEN + 8 {
        return Err(format!("stored value is only {} bytes", value.len()));
    }
    if value[0] != VALUE_VERSION {
        return Err(format!("unknown stored value version {}", value[0]));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[1..HEADER_LEN]);
    Ok(StoredValue {
        hash,
        canonical: &value[HEADER_LEN..],
    })
}

/// The request id inside a stored value, without decoding the rest (fast scans).
pub fn peek_request_id(value: &[u8]) -> Option<&[u8]> {
    let canonical = split_value(value).ok()?.canonical;
    let mut r = Reader {
        bytes: canonical,
        pos: 8,
    };
    let time_len = r.u32().ok()? as usize;
    r.take(time_len).ok()?;
    let len = r.u32().ok()? as usize;
    r.take(len).ok()
}

/// Version byte at the start of every group-commit blob.
pub const BLOB_VERSION: u8 = 1;
/// Bytes framing one entry inside a blob: seq (u64) + value length (u32).
const ENTRY_HEADER: usize = 8 + 4;

/// Start a group-commit blob (entries follow, see [`push_entry`]).
pub fn start_blob(out: &mut Vec<u8>) {
    out.clear();
    out.push(BLOB_VERSION);
}

/// Append one framed entry `[seq u64][len u32][stored value]` to a blob.
pub fn push_entry(out: &mut Vec<u8>, seq: u64, hash: &[u8; 32], canonical: &[u8]) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN + canonical.len()) as u32).to_be_bytes());
    out.push(VALUE_VERSION);
    out.extend_from_slice(hash);
    out.extend_from_slice(canonical);
}

/// Append an already stored value under `seq` (pruning and test hooks rebuild blobs).
pub fn push_raw_entry(out: &mut Vec<u8>, seq: u64, value: &[u8]) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// The framed entries of a blob, in stored order: `(seq, stored value)`.
/// A framing error ends the walk with `Err` (the rest of the blob is unreadable).
pub struct BlobEntries<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Walk the entries of a blob; an unknown blob version is the first (and last) item.
pub fn blob_entries(blob: &[u8]) -> BlobEntries<'_> {
    BlobEntries {
        bytes: blob,
        pos: 1,
        failed: false,
    }
}

impl<'a> Iterator for BlobEntries<'a> {
    type Item = Result<(u64, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pos == 1 && self.bytes.first() != Some(&BLOB_VERSION) {
            self.failed = true;
            return Some(Err(format!(
                "unknown audit blob version {:?}",
                self.bytes.first()
            )));
        }
        if self.pos >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        if rest.len() < ENTRY_HEADER {
            self.failed = true;
            return Some(Err(format!(
                "blob entry header cut short at byte {}",
                self.pos
            )));
        }
        let seq = parse_seq(&rest[..8]).unwrap_or(0);
        let len = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        let Some(value) = rest.get(ENTRY_HEADER..ENTRY_HEADER + len) else {
            self.failed = true;
            return Some(Err(format!(
                "blob entry of {len} bytes at byte {} runs past the blob",
                self.pos
            )));
        };
        self.pos += ENTRY_HEADER + len;
        Some(Ok((seq, value)))
    }
}

/// The indexed fields of a record, borrowed from its canonical bytes (no allocation):
/// what the indexer and query pre-filters need.
#[derive(Debug, Clone, Copy)]
pub struct FieldView<'a> {
    pub seq: u64,
    pub time: &'a [u8],
    pub request_id: &'a [u8],
    pub caller: &'a [u8],
    pub action: &'a [u8],
    pub target_id: Option<&'a [u8]>,
    pub target_name: Option<&'a [u8]>,
    pub allowed: bool,
}

fn raw_str<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], String> {
    let len = r.u32()? as usize;
    r.take(len)
}

fn raw_opt<'a>(r: &mut Reader<'a>) -> Result<Option<&'a [u8]>, String> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(raw_str(r)?)),
        other => Err(format!("option tag {other} at {}", r.pos - 1)),
    }
}

/// Read the indexed fields of canonical bytes. Lenient past `allowed`: callers that
/// need the whole record decode it with [`decode_canonical`], which is strict.
pub fn view_fields(canonical: &[u8]) -> Result<FieldView<'_>, String> {
    let mut r = Reader {
        bytes: canonical,
        pos: 0,
    };
    let seq = r.u64()?;
    let time = raw_str(&mut r)?;
    let request_id = raw_str(&mut r)?;
    let caller = raw_str(&mut r)?;
    let _identified_by = raw_str(&mut r)?;
    let action = raw_str(&mut r)?;
    let target_id = raw_opt(&mut r)?;
    let target_name = raw_opt(&mut r)?;
    let _resource_path = raw_opt(&mut r)?;
    let _method = raw_str(&mut r)?;
    let _path = raw_str(&mut r)?;
    let allowed = r.bool()?;
    Ok(FieldView {
        seq,
        time,
        request_id,
        caller,
        action,
        target_id,
        target_name,
        allowed,
    })
}

/// Big-endian key for a sequence number: byte order equals numeric order.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Parse an 8-byte big-endian key (or key suffix).
pub fn parse_seq(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 8 {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(bytes);
    Some(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        AuditRecord {
            seq: 42,
            time: "2026-01-02T03:04:05Z".into(),
            request_id: "r1".into(),
            caller: "svc-a".into(),
            identified_by: "token:abc".into(),
            action: "container.restart".into(),
            target_id: Some("abc123".into()),
            target_name: None,
            resource_path: Some("/etc/x".into()),
            method: "POST".into(),
            path: "/containers/abc123/restart".into(),
            allowed: true,
            enforced: true,
            reasons: vec!["rule a".into(), "ünïcode".into()],
            trust_id: None,
            policy_version: "v7".into(),
            body_sha256: Some("00ff".into()),
        }
    }

    #[test]
    fn canonical_round_trips() {
        let rec = sample();
        let bytes = encode_canonical(&rec).unwrap();
        assert_eq!(decode_canonical(&bytes).unwrap(), rec);
        assert_eq!(&bytes[..8], &42u64.to_be_bytes());
        let value = encode_value(&GENESIS_HASH, &bytes);
        assert_eq!(peek_request_id(&value), Some(&b"r1"[..]));
    }

    #[test]
    fn decode_rejects_trailing_and_bad_bool() {
        let mut bytes = encode_canonical(&sample()).unwrap();
        bytes.push(0);
        assert!(decode_canonical(&bytes).unwrap_err().contains("trailing"));

        let rec = AuditRecord::default();
        let mut bytes = encode_canonical(&rec).unwrap();
        // allowed byte sits after 8 + 5*4 (empty strs) + 3 (none opts) + 2*4 (empty strs)
        let allowed_at = 8 + 5 * 4 + 3 + 2 * 4;
        assert_eq!(bytes[allowed_at], 0);
        bytes[allowed_at] = 2;
        assert!(decode_canonical(&bytes).unwrap_err().contains("bool"));
    }

    #[test]
    fn distinct_records_have_distinct_encodings() {
        // Length prefixes keep field boundaries unambiguous.
        let a = AuditRecord {
            caller: "ab".into(),
            action: "c".into(),
            ..Default::default()
        };
        let b = AuditRecord {
            caller: "a".into(),
            action: "bc".into(),
            ..Default::default()
        };
        assert_ne!(encode_canonical(&a).unwrap(), encode_canonical(&b).unwrap());
    }

    #[test]
    fn oversized_field_is_refused() {
        let mut rec = sample();
        rec.path = "x".repeat(MAX_FIELD_BYTES + 1);
        assert!(matches!(
            encode_canonical(&rec),
            Err(RecordError::Invalid(_))
        ));
    }

    #[test]
    fn chain_hash_depends_on_predecessor() {
        let c = encode_canonical(&sample()).unwrap();
        assert_ne!(chain_hash(&GENESIS_HASH, &c), chain_hash(&[1u8; 32], &c));
        let v = encode_value(&chain_hash(&GENESIS_HASH, &c), &c);
        let s = split_value(&v).unwrap();
        assert_eq!(s.embedded_seq(), Some(42));
        assert_eq!(s.canonical, &c[..]);
    }
}
