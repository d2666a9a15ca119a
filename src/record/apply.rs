//! The applier: copies acknowledged group commits from the WAL's path into sled.
//!
//! Why in the background: the records are already durable in the WAL when their
//! appends return; sled only has to hold them for reading (verify, query, export,
//! prune, the index). Applying off the request path lets several group commits
//! share one sled blob and one `apply_batch`, and lets sled be flushed every
//! [`FLUSH_EVERY`] instead of per batch.
//!
//! Order of events per round: apply the batches received (same key layout as
//! before: one blob per group of records plus the head, atomically), publish the
//! applied seq (readers waiting for it wake), wake the indexer. Every
//! [`FLUSH_EVERY`], and when the log closes: flush sled, `fdatasync` its file when
//! an fsync policy is set, and only then delete WAL segments that sled now covers.
//!
//! If sled fails (sled 0.34 keeps I/O errors for the life of the `Db`), nothing
//! more is applied or deleted: every record stays in the WAL, is replayed at the
//! next start, and readers get the error instead of an incomplete answer.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use sled::Batch;

use super::codec;
use super::store::{blob_key, set_head, Stores, MAX_BATCH_CAP};
use super::wal;
use super::RecordError;

/// How often sled is flushed and covered WAL segments deleted.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How long a reader waits for the applier before giving up with an error.
pub(crate) const READ_WAIT: Duration = Duration::from_secs(10);

/// One acknowledged group commit: its frame as written to the WAL.
pub(crate) struct Durable {
    pub frame: Vec<u8>,
    pub first: u64,
    pub last: u64,
    pub hash: [u8; 32],
}

/// What readers can see: everything up to `applied` is in sled.
pub(crate) struct Progress {
    state: Mutex<ApplyState>,
    changed: Condvar,
}

#[derive(Default)]
struct ApplyState {
    applied: u64,
    error: Option<String>,
    running: bool,
}

impl Progress {
    pub fn new(applied: u64) -> Progress {
        Progress {
            state: Mutex::new(ApplyState {
                applied,
                error: None,
                running: true,
            }),
            changed: Condvar::new(),
        }
    }

    /// (last applied seq, sticky apply error)
    pub fn snapshot(&self) -> (u64, Option<String>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.applied, s.error.clone())
    }

    /// Wait until sled holds every record up to `seq`.
    pub fn wait_for(&self, seq: u64) -> Result<(), RecordError> {
        let deadline = Instant::now() + READ_WAIT;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.applied >= seq {
                return Ok(());
            }
            if let Some(e) = &s.error {
                return Err(RecordError::Unavailable(format!(
                    "the audit store is behind the WAL ({e}); records are safe in the WAL and are applied at the next start"
                )));
            }
            let now = Instant::now();
            if !s.running || now >= deadline {
                return Err(RecordError::Unavailable(format!(
                    "the audit store has not caught up to record {seq} (at {})",
                    s.applied
                )));
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn update(&self, f: impl FnOnce(&mut ApplyState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_all();
    }
}

pub(crate) struct Applier {
    pub stores: Stores,
    pub progress: std::sync::Arc<Progress>,
    pub wal_dir: PathBuf,
    /// sled's data file, synced before segments are deleted when `sync_db`.
    pub db_file: PathBuf,
    pub sync_db: bool,
    pub index_wake: Sender<()>,
    pub index_chunk: u64,
}

impl Applier {
    pub fn run(self, rx: Receiver<Durable>) {
        struct Stopped<'a>(&'a Progress);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                self.0.update(|s| s.running = false);
            }
        }
        let _stopped = Stopped(&self.progress);
        let mut failed = false;
        let mut unindexed = 0u64;
        let mut unflushed = 0u64;
        let mut last_flush = Instant::now();
        let mut open = true;
        while open {
            let mut round = Vec::new();
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(d) => round.push(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while round.len() < 256 {
                match rx.try_recv() {
                    Ok(d) => round.push(d),
                    Err(_) => break,
                }
            }
            if failed {
                // Records stay in the WAL; keep draining so appends are not held up.
                continue;
            }
            if let Some(last) = round.last() {
                let last = last.last;
                match self.apply(&round) {
                    Ok(()) => {
                        self.progress.update(|s| s.applied = last);
                        let n = round.iter().map(|d| d.last + 1 - d.first).sum::<u64>();
                        unflushed += n;
                        unindexed += n;
                        if unindexed >= self.index_chunk {
                            unindexed = 0;
                            let _ = self.index_wake.send(());
                        }
                    }
                    Err(e) => {
                        failed = true;
                        tracing::error!(error = %e, "audit store cannot apply the WAL; records stay in the WAL until a restart replays them");
                        self.progress.update(|s| s.error = Some(e.to_string()));
                        continue;
                    }
                }
            }
            if unflushed > 0 && (!open || last_flush.elapsed() >= FLUSH_EVERY) {
                if let Err(e) = self.flush_and_trim() {
                    failed = true;
                    tracing::error!(error = %e, "audit store flush failed; records stay in the WAL");
                    self.progress.update(|s| s.error = Some(e));
                    continue;
                }
                unflushed = 0;
                last_flush = Instant::now();
            }
        }
    }

    /// Apply a round of batches in one atomic sled batch: blobs of at most
    /// `MAX_BATCH_CAP` records, then the head.
    fn apply(&self, round: &[Durable]) -> Result<(), RecordError> {
        let mut batch = Batch::default();
        let mut blob = Vec::new();
        let mut blob_first = 0;
        let mut count = 0u64;
        for d in round {
            let n = d.last + 1 - d.first;
            if count > 0 && count + n > MAX_BATCH_CAP as u64 {
                batch.insert(&blob_key(blob_first)[..], blob.as_slice());
                count = 0;
            }
            if count == 0 {
                codec::start_blob(&mut blob);
                blob_first = d.first;
            }
            blob.extend_from_slice(&wal::frame_blob(&d.frame)[1..]);
            count += n;
        }
        if count > 0 {
            batch.insert(&blob_key(blob_first)[..], blob.as_slice());
        }
        let last = round.last().expect("a non-empty round");
        set_head(&mut batch, last.last, &last.hash);
        self.stores.commit(batch)
    }

    fn flush_and_trim(&self) -> Result<(), String> {
        let flushed = self.progress.snapshot().0;
        self.stores
            .db
            .flush()
            .map_err(|e| format!("flush audit store: {e}"))?;
        if self.sync_db {
            std::fs::File::open(&self.db_file)
                .and_then(|f| f.sync_data())
                .map_err(|e| format!("fsync audit store: {e}"))?;
        }
        // A failure to delete only costs disk space and replay time; say so.
        if let Err(e) = wal::remove_covered(&self.wal_dir, flushed) {
            tracing::warn!(error = %e, "cannot delete applied audit WAL segments");
        }
        Ok(())
    }
}
