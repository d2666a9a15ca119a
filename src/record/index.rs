//! The indexer: posts committed records into the secondary index in chunks, off the
//! append path.
//!
//! Why asynchronous and chunked: sled's cost is per key written, and a group commit
//! of 100 records from 100 callers about 500 containers would need several hundred
//! posting keys, ten times the cost of the records themselves. The index is derived
//! data (it can always be rebuilt from the records), so it does not have to be
//! durable with them: this thread waits until at least `index_chunk` records are
//! unindexed, then writes their postings, the chunk directory and the new `indexed`
//! mark in ONE atomic batch. Queries combine the postings up to `indexed` with a scan
//! of the (bounded) unindexed tail, so they are complete whether or not the
//! indexer has caught up, crashed, or was never run on an old tail.
//!
//! The request-id index (one key per record, see [`super::store`]) is posted by
//! a second pass with its own mark, so a log written before it existed gets it
//! built from its first record by the same thread, chunk by chunk, after start.
//!
//! Chunks end on blob boundaries, so `indexed` is always the last seq of a
//! blob, and a chunk spans at most `index_chunk + MAX_BATCH_CAP` seqs.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use sled::Batch;

use super::codec;
use super::store::{
    self, chunk_key, parse_blob_key, ChunkDir, Postings, Stores, MAX_BATCH_CAP, PREFIX_CHUNK,
};
use super::RecordError;

/// Default records per index chunk: about 1 µs of index writing per record with
/// hundreds of distinct callers and containers, and a tail scan of a few ms at most.
pub const DEFAULT_INDEX_CHUNK: u64 = 8192;
/// Largest accepted `index_chunk`.
pub const MAX_INDEX_CHUNK: u64 = 1 << 20;
/// Most seqs one chunk spans: posting scans start this far below their lower bound.
pub(crate) const MAX_CHUNK_SPAN: u64 = MAX_INDEX_CHUNK + MAX_BATCH_CAP as u64;

/// Run the indexer until `wake` disconnects (the writer exited).
pub(crate) fn run(stores: Stores, chunk: u64, lock: Arc<Mutex<()>>, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        while wake.try_recv().is_ok() {}
        // One chunk of each in turn: a log whose request-id index is being built
        // from the start must not hold the secondary index back meanwhile.
        loop {
            let mut progressed = false;
            for pass in [index_one_chunk, index_request_ids] {
                match pass(&stores, chunk, &lock, false) {
                    Ok(done) => progressed |= done,
                    // Queries stay complete (they scan the unindexed tail); only
                    // their speed suffers until a later wake succeeds.
                    Err(e) => tracing::warn!(error = %e, "audit indexer could not post a chunk"),
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

/// Post the next chunk if at least `chunk` records are unindexed (or any, with
/// `force`). Returns whether a chunk was written.
pub(crate) fn index_one_chunk(
    stores: &Stores,
    chunk: u64,
    lock: &Mutex<()>,
    force: bool,
) -> Result<bool, RecordError> {
    let _exclusive_with_prune = lock.lock().unwrap_or_else(|p| p.into_inner());
    let cp = stores.read_checkpoint()?;
    let from = stores.read_indexed()?.max(cp.first_seq - 1) + 1;
    let Some(last) = stores.last_seq()? else {
        return Ok(false);
    };
    if last < from || (!force && last - from + 1 < chunk) {
        return Ok(false);
    }
    let start_blob = stores.blob_start_for(from)?.unwrap_or(from);
    // Hold the chunk's blobs so postings can borrow their bytes: one allocation per
    // distinct key, not several per record.
    let mut blobs = Vec::new();
    let mut count = 0u64;
    let mut end = None;
    for item in stores.blobs_from(start_blob) {
        let (k, blob) = item.map_err(|e| store::store_err("index: read blob", e))?;
        let Some(blob_first) = parse_blob_key(&k) else {
            break;
        };
        let mut blob_last = blob_first;
        for (seq, _) in codec::blob_entries(&blob).map_while(Result::ok) {
            blob_last = seq;
            count += u64::from(seq >= from);
        }
        end = Some(blob_last.max(from));
        blobs.push(blob);
        if count >= chunk {
            break;
        }
    }
    let Some(end) = end else {
        return Ok(false);
    };
    let mut postings = Postings::default();
    for blob in &blobs {
        for (seq, value) in codec::blob_entries(blob).map_while(Result::ok) {
            if seq < from {
                continue;
            }
            // Damaged records cannot be posted; verify names them.
            let Ok(split) = codec::split_value(value) else {
                continue;
            };
            let Ok(view) = codec::view_fields(split.canonical) else {
                continue;
            };
            postings.add(&view, seq);
        }
    }
    let mut batch = Batch::default();
    let mut keys = Vec::with_capacity(postings.len());
    for (key, seqs) in postings.into_keys(from) {
        batch.insert(key.as_slice(), store::posting_value(&seqs));
        keys.push(key);
    }
    batch.insert(&chunk_key(from)[..], ChunkDir { last: end, keys }.encode());
    store::set_indexed(&mut batch, end);
    stores.commit(batch)?;
    Ok(true)
}

/// Post the request ids of the next chunk after the request-id mark, if at least
/// `chunk` records are not covered (or any, with `force`). Returns whether it did.
pub(crate) fn index_request_ids(
    stores: &Stores,
    chunk: u64,
    lock: &Mutex<()>,
    force: bool,
) -> Result<bool, RecordError> {
    let _exclusive_with_prune = lock.lock().unwrap_or_else(|p| p.into_inner());
    let cp = stores.read_checkpoint()?;
    let from = stores.read_rid_indexed()?.max(cp.first_seq - 1) + 1;
    let Some(last) = stores.last_seq()? else {
        return Ok(false);
    };
    if last < from || (!force && last - from + 1 < chunk) {
        return Ok(false);
    }
    let start_blob = stores.blob_start_for(from)?.unwrap_or(from);
    let mut batch = Batch::default();
    let mut count = 0u64;
    let mut end = None;
    for item in stores.blobs_from(start_blob) {
        let (k, blob) = item.map_err(|e| store::store_err("index request ids: read blob", e))?;
        let Some(blob_first) = parse_blob_key(&k) else {
            break;
        };
        let mut blob_last = blob_first;
        for (seq, value) in codec::blob_entries(&blob).map_while(Result::ok) {
            blob_last = seq;
            if seq < from {
                continue;
            }
            count += 1;
            // Damaged records cannot be posted; verify names them.
            if let Some(rid) = codec::peek_request_id(value) {
                batch.insert(store::request_id_key(rid, seq), &[][..]);
            }
        }
        end = Some(blob_last.max(from));
        if count >= chunk {
            break;
        }
    }
    let Some(end) = end else {
        return Ok(false);
    };
    store::set_rid_indexed(&mut batch, end);
    stores.commit(batch)?;
    Ok(true)
}

/// Remove every posting of a seq below `new_first` (records being pruned): chunks
/// wholly below go with their directory, a chunk straddling it is rewritten.
pub(crate) fn prune_postings(
    stores: &Stores,
    batch: &mut Batch,
    new_first: u64,
) -> Result<(), RecordError> {
    let rd = |e: sled::Error| store::store_err("prune index", e);
    for item in stores.log.range(chunk_key(0)..chunk_key(new_first)) {
        let (k, v) = item.map_err(rd)?;
        if k.first() != Some(&PREFIX_CHUNK) {
            continue;
        }
        let dir = ChunkDir::decode(&v)?;
        if dir.last < new_first {
            for key in &dir.keys {
                batch.remove(key.as_slice());
            }
            batch.remove(k);
            continue;
        }
        for key in &dir.keys {
            let Some(value) = stores.log.get(key).map_err(rd)? else {
                continue;
            };
            let mut seqs = store::posting_seqs(&value)?;
            seqs.retain(|s| *s >= new_first);
            if seqs.is_empty() {
                batch.remove(key.as_slice());
            } else {
                batch.insert(key.as_slice(), store::posting_value(&seqs));
            }
        }
    }
    Ok(())
}
