//! The applier: copies acknowledged group commits from the WAL's path into sled.
//!
//! Why in the background: the records are already durable in the WAL when their
//! appends return; sled only has to hold them for reading (verify, query, export,
//! prune, the index). Applying off the request path lets many group commits share
//! one `apply_batch` (the applier pauses [`APPLY_PAUSE`] between rounds unless a
//! reader waits), packs them into blobs of a sled-friendly size
//! ([`super::store::Packer`]), and lets sled be flushed every [`FLUSH_EVERY`]
//! instead of per group commit.
//!
//! Order of events per round: apply the batches received (same key layout as
//! before: blobs of contiguous records plus the head, atomically), publish the
//! applied seq (readers waiting for it wake), wake the indexer. Every
//! [`FLUSH_EVERY`], and when the log closes: flush sled, sync its files when an
//! fsync policy is set, and only then delete WAL segments that sled now covers.
//!
//! If sled fails (sled 0.34 keeps I/O errors for the life of the `Db`), nothing
//! more is applied or deleted: every record stays in the WAL, is replayed at the
//! next start, and readers get the error instead of an incomplete answer.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::store::{ChainHead, Packer, Stores};
use super::wal;
use super::RecordError;

/// How often sled is flushed and covered WAL segments deleted.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Pause after applying a round, unless a reader waits: lets group commits pile
/// up into fewer, larger sled writes (sled's cost is per key and per write).
pub(crate) const APPLY_PAUSE: Duration = Duration::from_millis(10);
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
    /// Readers waiting for records to be applied: no pause while any does.
    readers: usize,
}

impl Progress {
    pub fn new(applied: u64) -> Progress {
        Progress {
            state: Mutex::new(ApplyState {
                applied,
                error: None,
                running: true,
                readers: 0,
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
        if s.applied >= seq {
            return Ok(());
        }
        s.readers += 1;
        self.changed.notify_all();
        let result = loop {
            if s.applied >= seq {
                break Ok(());
            }
            if let Some(e) = &s.error {
                break Err(RecordError::Unavailable(format!(
                    "the audit store is behind the WAL ({e}); records are safe in the WAL and are applied at the next start"
                )));
            }
            let now = Instant::now();
            if !s.running || now >= deadline {
                break Err(RecordError::Unavailable(format!(
                    "the audit store has not caught up to record {seq} (at {})",
                    s.applied
                )));
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        s.readers -= 1;
        result
    }

    /// Wait until the applier has flushed and stopped (a clean shutdown, tests).
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.running)
            .unwrap_or_else(|p| p.into_inner());
        !s.running
    }

    /// The applier's pause between rounds, cut short when a reader waits.
    fn pause(&self, d: Duration) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.readers == 0 {
            let _ = self
                .changed
                .wait_timeout_while(s, d, |s| s.readers == 0)
                .unwrap_or_else(|p| p.into_inner());
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
    /// sled's directory, synced before segments are deleted when `sync_db`.
    pub data_dir: PathBuf,
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
            while round.len() < 4096 {
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
                        if open {
                            self.progress.pause(APPLY_PAUSE);
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

    /// Apply a round of group commits in one atomic sled batch: packed blobs,
    /// then the head.
    fn apply(&self, round: &[Durable]) -> Result<(), RecordError> {
        let mut packer = Packer::default();
        for d in round {
            let end = ChainHead {
                next_seq: d.last + 1,
                hash: d.hash,
            };
            packer.add(wal::frame_blob(&d.frame), end)?;
        }
        packer.commit(&self.stores)
    }

    fn flush_and_trim(&self) -> Result<(), String> {
        let flushed = self.progress.snapshot().0;
        self.stores
            .db
            .flush()
            .map_err(|e| format!("flush audit store: {e}"))?;
        if self.sync_db {
            wal::sync_store(&self.data_dir).map_err(|e| format!("sync audit store: {e}"))?;
        }
        // A failure to delete only costs disk space and replay time; say so.
        if let Err(e) = wal::remove_covered(&self.wal_dir, flushed) {
            tracing::warn!(error = %e, "cannot delete applied audit WAL segments");
        }
        Ok(())
    }
}
