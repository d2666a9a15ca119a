//! Test hooks that damage a stored log on purpose, so tests can prove that
//! verification notices. They bypass the log's API by design; nothing in the
//! product calls them. Each rewrites the blob holding the record, the
//! way someone editing the db file would. Also here: making the writer fail
//! on purpose ([`FailPoint`]) and indexing on demand.
//!
//! Compiled only for tests: unit tests, and integration tests through the
//! `test-hooks` feature (a dev-dependency of the crate on itself); the
//! product never contains them.

use std::sync::atomic::Ordering;

use super::codec;
use super::store::{blob_key, parse_blob_key, PREFIX_INDEX, TREE_LOG};
use super::{index, writer, AuditLog, RecordError};

fn log_tree(db: &sled::Db) -> Result<sled::Tree, RecordError> {
    db.open_tree(TREE_LOG)
        .map_err(|e| RecordError::Store(format!("open {TREE_LOG}: {e}")))
}

fn err(e: sled::Error) -> RecordError {
    RecordError::Store(e.to_string())
}

/// A blob's entries as owned (seq, stored value) pairs.
type Entries = Vec<(u64, Vec<u8>)>;

/// The blob holding `seq`: (its key seq, its entries).
fn blob_of(tree: &sled::Tree, seq: u64) -> Result<(u64, Entries), RecordError> {
    let (k, blob) = tree
        .range(blob_key(0)..=blob_key(seq))
        .next_back()
        .transpose()
        .map_err(err)?
        .ok_or_else(|| RecordError::Invalid(format!("no record {seq}")))?;
    let first = parse_blob_key(&k).ok_or_else(|| RecordError::Invalid("bad blob key".into()))?;
    let entries = codec::blob_entries(&blob)
        .map(|e| e.map(|(s, v)| (s, v.to_vec())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RecordError::Corrupt)?;
    if !entries.iter().any(|(s, _)| *s == seq) {
        return Err(RecordError::Invalid(format!("no record {seq}")));
    }
    Ok((first, entries))
}

/// Store `entries` as the blob keyed `first` (removing it when empty; re-keyed to
/// its first entry, as a careful forger would).
fn put_blob(tree: &sled::Tree, first: u64, entries: &[(u64, Vec<u8>)]) -> Result<(), RecordError> {
    tree.remove(blob_key(first)).map_err(err)?;
    if let Some((new_first, _)) = entries.first() {
        let mut blob = Vec::new();
        codec::start_blob(&mut blob);
        for (s, v) in entries {
            codec::push_raw_entry(&mut blob, *s, v);
        }
        tree.insert(blob_key(*new_first), blob).map_err(err)?;
    }
    tree.flush().map_err(err)?;
    Ok(())
}

/// Flip (xor 0x01) the byte at `offset` of record `seq`'s stored value.
/// Offset 0 is the version byte, 1..33 the hash, then the canonical bytes.
pub fn corrupt_record_byte(db: &sled::Db, seq: u64, offset: usize) -> Result<(), RecordError> {
    let tree = log_tree(db)?;
    let (first, mut entries) = blob_of(&tree, seq)?;
    let value = &mut entries
        .iter_mut()
        .find(|(s, _)| *s == seq)
        .expect("blob_of found it")
        .1;
    let byte = value
        .get_mut(offset)
        .ok_or_else(|| RecordError::Invalid(format!("record {seq} has no byte {offset}")))?;
    *byte ^= 0x01;
    put_blob(&tree, first, &entries)
}

/// Remove record `seq` (and nothing else).
pub fn delete_record_raw(db: &sled::Db, seq: u64) -> Result<(), RecordError> {
    let tree = log_tree(db)?;
    let (first, mut entries) = blob_of(&tree, seq)?;
    entries.retain(|(s, _)| *s != seq);
    put_blob(&tree, first, &entries)
}

/// Exchange the stored values of records `a` and `b` (each stays at its position).
pub fn swap_records_raw(db: &sled::Db, a: u64, b: u64) -> Result<(), RecordError> {
    let tree = log_tree(db)?;
    let (first_a, mut entries_a) = blob_of(&tree, a)?;
    let (first_b, mut entries_b) = blob_of(&tree, b)?;
    let ia = entries_a.iter().position(|(s, _)| *s == a).expect("found");
    let ib = entries_b.iter().position(|(s, _)| *s == b).expect("found");
    if first_a == first_b {
        let va = entries_a[ia].1.clone();
        entries_a[ia].1 = entries_a[ib].1.clone();
        entries_a[ib].1 = va;
        return put_blob(&tree, first_a, &entries_a);
    }
    std::mem::swap(&mut entries_a[ia].1, &mut entries_b[ib].1);
    put_blob(&tree, first_a, &entries_a)?;
    put_blob(&tree, first_b, &entries_b)
}

/// Remove the stored head metadata (to simulate damage outside the records).
pub fn delete_head_raw(db: &sled::Db) -> Result<(), RecordError> {
    let tree = log_tree(db)?;
    tree.remove(super::store::META_HEAD).map_err(err)?;
    tree.flush().map_err(err)?;
    Ok(())
}

/// Every seq the secondary index posts, over all postings (tests of pruning).
pub fn indexed_seqs(db: &sled::Db) -> Result<Vec<u64>, RecordError> {
    let tree = log_tree(db)?;
    let mut out = Vec::new();
    for item in tree.scan_prefix([PREFIX_INDEX]) {
        let (_, v) = item.map_err(err)?;
        out.extend(super::store::posting_seqs(&v)?);
    }
    Ok(out)
}

/// Test-only failure injection points for [`AuditLog::testing_inject_failure`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    None,
    /// The write fails: nothing is kept (with the WAL: a short write, truncated back).
    Write,
    /// The write lands but the flush (WAL: fdatasync) fails; sled keeps the records,
    /// the WAL truncates them away.
    Flush,
    /// `Write`, for the next write only.
    WriteOnce,
}

impl AuditLog {
    /// Index every committed record now, however few (tests of the index path).
    #[doc(hidden)]
    pub fn testing_index_all(&self) -> Result<(), RecordError> {
        self.caught_up(u64::MAX)?;
        while index::index_one_chunk(&self.inner.stores, 1, &self.inner.index_lock, true)? {}
        while index::index_request_ids(&self.inner.stores, 1, &self.inner.index_lock, true)? {}
        Ok(())
    }

    /// Make the writer fail on purpose (tests of the 503 path).
    #[doc(hidden)]
    pub fn testing_inject_failure(&self, point: FailPoint) {
        let v = match point {
            FailPoint::None => writer::FAIL_NONE,
            FailPoint::Write => writer::FAIL_WRITE,
            FailPoint::Flush => writer::FAIL_FLUSH,
            FailPoint::WriteOnce => writer::FAIL_WRITE_ONCE,
        };
        self.inner
            .committer
            .shared
            .fail_point
            .store(v, Ordering::SeqCst);
    }
}
