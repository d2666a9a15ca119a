//! The key layout of the `audit_log` tree: prefixes, metadata keys, index
//! kinds, and the blob and chunk-directory keys.
//!
//! Why apart: every reader and writer of the tree agrees on these bytes; the
//! layout itself is described in [`super`].

use super::codec;

pub(crate) const TREE_LOG: &str = "audit_log";
/// The tree of the previous layout (one tree per kind); refused, never misread.
pub(super) const OLD_LAYOUT_TREE: &str = "audit_records";

pub(crate) const PREFIX_RECORDS: u8 = b'r';
const PREFIX_META: u8 = b'm';
pub(crate) const PREFIX_INDEX: u8 = b'i';
pub(crate) const PREFIX_CHUNK: u8 = b'x';
/// `q` + request id + 0xFF + seq (u64 BE) -> empty: the request-id index.
pub(crate) const PREFIX_REQUEST_ID: u8 = b'q';

pub(crate) const META_HEAD: &[u8] = b"mhead";
pub(super) const META_CHECKPOINT: &[u8] = b"mcheckpoint";
pub(super) const META_INDEXED: &[u8] = b"mindexed";
/// Last seq the request-id index covers (u64 BE); absent = none (an older log).
pub(super) const META_RID_INDEXED: &[u8] = b"mrequest_ids";

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

/// Prefix of every request-id index key of `request_id`.
pub(crate) fn request_id_prefix(request_id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(request_id.len() + 10);
    k.push(PREFIX_REQUEST_ID);
    k.extend_from_slice(request_id);
    k.push(INDEX_SEP);
    k
}

/// The request-id index key of record `seq`.
pub(crate) fn request_id_key(request_id: &[u8], seq: u64) -> Vec<u8> {
    let mut k = request_id_prefix(request_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn chunk_key(first: u64) -> [u8; 9] {
    let mut k = [PREFIX_CHUNK; 9];
    k[1..].copy_from_slice(&first.to_be_bytes());
    k
}
