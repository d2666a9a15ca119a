//! Packing records into blobs after the fact (the WAL applier and replay).
//!
//! Why apart: how records are grouped into sled values is a cost trade-off
//! (sled charges per key and stores big values as files), separate from where
//! they live.

use sled::Batch;

use super::{blob_key, set_head, ChainHead, Stores, MAX_BATCH_CAP};
use crate::record::codec;
use crate::record::RecordError;

/// Aim for blobs of about this many bytes when packing records after the fact
/// (applier, WAL replay): sled 0.34 stores a value over ~128 KiB (a quarter
/// segment) as a separate file, and rewrites a node's values when it splits.
pub(crate) const PACKED_BLOB_BYTES: usize = 48 << 10;

/// Packs contiguous records into blobs of about [`PACKED_BLOB_BYTES`] (at most
/// `MAX_BATCH_CAP` records each) plus the head, for one atomic `apply_batch`.
#[derive(Default)]
pub(crate) struct Packer {
    batch: Batch,
    blob: Vec<u8>,
    first: u64,
    count: usize,
    head: Option<ChainHead>,
    /// Blobs in `batch`.
    pub blobs: usize,
}

impl Packer {
    /// Add the records of `blob` (a group commit's blob, contiguous with what was
    /// added before); `end` is the head after its last record. A blob that does
    /// not decode is an error: the head must never claim records sled lacks.
    pub fn add(&mut self, blob: &[u8], end: ChainHead) -> Result<(), RecordError> {
        for entry in codec::blob_entries(blob) {
            let (seq, value) =
                entry.map_err(|e| RecordError::Store(format!("audit blob to apply: {e}")))?;
            if self.count > 0
                && (self.count >= MAX_BATCH_CAP
                    || self.blob.len() + value.len() > PACKED_BLOB_BYTES)
            {
                self.close_blob();
            }
            if self.count == 0 {
                codec::start_blob(&mut self.blob);
                self.first = seq;
            }
            codec::push_raw_entry(&mut self.blob, seq, value);
            self.count += 1;
        }
        self.head = Some(end);
        Ok(())
    }

    fn close_blob(&mut self) {
        if self.count > 0 {
            self.batch
                .insert(&blob_key(self.first)[..], self.blob.as_slice());
            self.count = 0;
            self.blobs += 1;
        }
    }

    /// Write what was added (blobs and head, atomically); a no-op when empty.
    pub fn commit(&mut self, stores: &Stores) -> Result<(), RecordError> {
        self.close_blob();
        self.blobs = 0;
        match self.head.take() {
            None => Ok(()),
            Some(h) => {
                set_head(&mut self.batch, h.next_seq - 1, &h.hash);
                stores.commit(std::mem::take(&mut self.batch))
            }
        }
    }
}
