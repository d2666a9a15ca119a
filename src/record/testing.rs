//! Test hooks that damage a stored log on purpose, so tests can prove that
//! verification notices. They bypass the log's API by design; nothing in the
//! product calls them.

use super::codec::seq_key;
use super::store::{TREE_META, TREE_RECORDS};
use super::RecordError;

fn records(db: &sled::Db) -> Result<sled::Tree, RecordError> {
    db.open_tree(TREE_RECORDS)
        .map_err(|e| RecordError::Store(format!("open {TREE_RECORDS}: {e}")))
}

fn err(e: sled::Error) -> RecordError {
    RecordError::Store(e.to_string())
}

/// Flip (xor 0x01) the byte at `offset` of record `seq`'s stored value.
/// Offset 0 is the version byte, 1..33 the hash, then the canonical bytes.
pub fn corrupt_record_byte(db: &sled::Db, seq: u64, offset: usize) -> Result<(), RecordError> {
    let tree = records(db)?;
    let mut value = tree
        .get(seq_key(seq))
        .map_err(err)?
        .ok_or_else(|| RecordError::Invalid(format!("no record {seq}")))?
        .to_vec();
    let byte = value
        .get_mut(offset)
        .ok_or_else(|| RecordError::Invalid(format!("record {seq} has no byte {offset}")))?;
    *byte ^= 0x01;
    tree.insert(seq_key(seq), value).map_err(err)?;
    tree.flush().map_err(err)?;
    Ok(())
}

/// Remove record `seq` from the records tree (and nothing else).
pub fn delete_record_raw(db: &sled::Db, seq: u64) -> Result<(), RecordError> {
    let tree = records(db)?;
    tree.remove(seq_key(seq)).map_err(err)?;
    tree.flush().map_err(err)?;
    Ok(())
}

/// Exchange the stored values of records `a` and `b`.
pub fn swap_records_raw(db: &sled::Db, a: u64, b: u64) -> Result<(), RecordError> {
    let tree = records(db)?;
    let va = tree
        .get(seq_key(a))
        .map_err(err)?
        .ok_or_else(|| RecordError::Invalid(format!("no record {a}")))?;
    let vb = tree
        .get(seq_key(b))
        .map_err(err)?
        .ok_or_else(|| RecordError::Invalid(format!("no record {b}")))?;
    tree.insert(seq_key(a), vb).map_err(err)?;
    tree.insert(seq_key(b), va).map_err(err)?;
    tree.flush().map_err(err)?;
    Ok(())
}

/// Remove the stored head metadata (to simulate damage outside the records tree).
pub fn delete_head_raw(db: &sled::Db) -> Result<(), RecordError> {
    let meta = db.open_tree(TREE_META).map_err(err)?;
    meta.remove(b"head").map_err(err)?;
    meta.flush().map_err(err)?;
    Ok(())
}
