//! The single writer: group commit of appends.
//!
//! Why one writer thread (not a tokio task): sled writes and flushes block, and a
//! plain thread keeps them off the async workers and works without a runtime
//! (offline tools). Why a single writer: sequence numbers and the chain are a
//! strict order; one owner of the chain head needs no locks to keep it.
//!
//! Each round takes up to `max_batch` waiting appends (lingering at most
//! `batch_linger` for more), assigns seqs, computes the chain, writes ONE blob with
//! all the records plus the head in one atomic `apply_batch`, flushes once, then
//! answers every waiter. Appends that arrive while a flush runs queue up and form
//! the next batch: the batch grows with the load, with no fixed wait. Indexing
//! happens later, in chunks, on the indexer thread ([`super::index`]).
//! Any failure answers every waiter of that batch with `Unavailable` and forgets
//! the in-memory head, which is reloaded from the tree before the next batch, so
//! the chain continues exactly from what is stored.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{broadcast, oneshot};

use std::sync::mpsc::Sender;

use super::codec::{self, chain_hash, encode_canonical_into};
use super::store::{blob_key, parse_time_nanos, set_head, ChainHead, Stores, MAX_BATCH_CAP};
use super::{AuditFsync, AuditOptions, AuditRecord, RecordError};

pub(crate) type Reply = oneshot::Sender<Result<u64, RecordError>>;

pub(crate) struct Append {
    pub record: AuditRecord,
    pub reply: Reply,
}

/// Injected failure points (tests only; see `AuditLog::inject_failure`).
pub(crate) const FAIL_NONE: u8 = 0;
pub(crate) const FAIL_WRITE: u8 = 1;
pub(crate) const FAIL_FLUSH: u8 = 2;

/// State shared between the writer and the `AuditLog` handles.
pub(crate) struct Shared {
    pub records_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub batches_failed: AtomicU64,
    pub fail_point: AtomicU8,
    pub writer_alive: AtomicBool,
    /// Last committed head, for `AuditLog::head()`.
    pub head: Mutex<ChainHead>,
    pub last_error: Mutex<Option<String>>,
    pub events: broadcast::Sender<AuditRecord>,
}

pub(crate) struct Writer {
    stores: Stores,
    opts: AuditOptions,
    shared: Arc<Shared>,
    /// None after a failure: reload from the tree before the next batch.
    head: Option<ChainHead>,
    disk: DiskWatch,
    fsync: FsyncState,
    /// Reused encoding buffers.
    blob: Vec<u8>,
    canonical: Vec<u8>,
    /// Wakes the indexer once `index_chunk` records were committed since the last wake.
    index_wake: Option<Sender<()>>,
    unindexed: u64,
}

struct DiskWatch {
    dir: Option<PathBuf>,
    last_warn: Option<Instant>,
    free: Option<u64>,
}

struct FsyncState {
    file: Option<File>,
    last: Instant,
}

impl Writer {
    pub fn new(
        stores: Stores,
        opts: AuditOptions,
        shared: Arc<Shared>,
        head: ChainHead,
        index_wake: Option<Sender<()>>,
    ) -> Self {
        Writer {
            blob: Vec::new(),
            canonical: Vec::with_capacity(512),
            index_wake,
            unindexed: 0,
            stores,
            disk: DiskWatch {
                dir: opts.data_dir.clone(),
                last_warn: None,
                free: None,
            },
            fsync: FsyncState {
                file: None,
                last: Instant::now(),
            },
            opts,
            shared,
            head: Some(head),
        }
    }

    pub fn run(mut self, rx: Receiver<Append>) {
        // Marks the writer dead however the loop ends, panics included, so
        // `stats()` shows it; waiters of a dead writer already see Unavailable.
        struct AliveGuard(Arc<Shared>);
        impl Drop for AliveGuard {
            fn drop(&mut self) {
                self.0.writer_alive.store(false, Ordering::SeqCst);
            }
        }
        let _alive = AliveGuard(self.shared.clone());
        let max_batch = self.opts.max_batch.clamp(1, MAX_BATCH_CAP);
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::with_capacity(max_batch);
            batch.push(first);
            let deadline = Instant::now() + self.opts.batch_linger;
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match rx.recv_timeout(deadline - now) {
                            Ok(a) => batch.push(a),
                            Err(RecvTimeoutError::Timeout)
                            | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
            }
            self.process(batch);
        }
    }

    fn fail_all(&mut self, waiters: Vec<Reply>, why: String) {
        self.shared.batches_failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %why, records = waiters.len(), "audit log unavailable: refusing requests");
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        for w in waiters {
            let _ = w.send(Err(RecordError::Unavailable(why.clone())));
        }
    }

    fn process(&mut self, batch: Vec<Append>) {
        if let Err(why) = self.disk_guard() {
            let waiters = batch.into_iter().map(|a| a.reply).collect();
            return self.fail_all(waiters, why);
        }
        let head = match self.head {
            Some(h) => h,
            None => match self.stores.load_head() {
                Ok(h) => h,
                Err(e) => {
                    let waiters = batch.into_iter().map(|a| a.reply).collect();
                    return self.fail_all(waiters, format!("reload chain head: {e}"));
                }
            },
        };

        let now = now_rfc3339();
        let mut next = head.next_seq;
        let mut hash = head.hash;
        // One blob per group commit, built in reused buffers: no per-record allocation.
        codec::start_blob(&mut self.blob);
        let mut accepted: Vec<(AuditRecord, Reply)> = Vec::with_capacity(batch.len());
        for Append { mut record, reply } in batch {
            record.seq = next;
            if record.time.is_empty() {
                record.time = now.clone();
            } else if parse_time_nanos(&record.time).is_none() {
                let _ = reply.send(Err(RecordError::Invalid(format!(
                    "time {:?} is not RFC 3339",
                    record.time
                ))));
                continue;
            }
            self.canonical.clear();
            if let Err(e) = encode_canonical_into(&mut self.canonical, &record) {
                let _ = reply.send(Err(e));
                continue;
            }
            let link = chain_hash(&hash, &self.canonical);
            codec::push_entry(&mut self.blob, next, &link, &self.canonical);
            hash = link;
            next += 1;
            accepted.push((record, reply));
        }
        if accepted.is_empty() {
            return;
        }
        let mut batch = sled::Batch::default();
        batch.insert(&blob_key(head.next_seq)[..], self.blob.as_slice());
        set_head(&mut batch, next - 1, &hash);

        let fail_point = self.shared.fail_point.load(Ordering::SeqCst);
        let committed = if fail_point == FAIL_WRITE {
            Err(RecordError::Store("injected write failure".into()))
        } else {
            self.stores.commit(batch)
        };
        if let Err(e) = committed {
            self.head = None;
            let waiters = accepted.into_iter().map(|(_, r)| r).collect();
            return self.fail_all(waiters, format!("write audit batch: {e}"));
        }
        let flushed = if fail_point == FAIL_FLUSH {
            Err("injected flush failure".to_string())
        } else {
            self.stores
                .db
                .flush()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let flushed = flushed.and_then(|_| self.maybe_fsync());
        if let Err(e) = flushed {
            // The records may be in the tree without being durable: their waiters
            // are refused, and the head is reloaded from whatever the tree holds.
            self.head = None;
            let waiters = accepted.into_iter().map(|(_, r)| r).collect();
            return self.fail_all(waiters, format!("flush audit batch: {e}"));
        }

        let new_head = ChainHead {
            next_seq: next,
            hash,
        };
        self.head = Some(new_head);
        *self.shared.head.lock().unwrap_or_else(|p| p.into_inner()) = new_head;
        self.shared
            .records_committed
            .fetch_add(accepted.len() as u64, Ordering::Relaxed);
        self.shared
            .batches_committed
            .fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        // Broadcast before answering: whoever subscribes after an append returned
        // never receives that append's batch late.
        let mut replies = Vec::with_capacity(accepted.len());
        for (record, reply) in accepted {
            replies.push((record.seq, reply));
            // No subscribers is not an error.
            let _ = self.shared.events.send(record);
        }
        for (seq, reply) in replies {
            let _ = reply.send(Ok(seq));
        }
        self.unindexed += next - head.next_seq;
        if self.unindexed >= self.opts.index_chunk {
            self.unindexed = 0;
            if let Some(w) = &self.index_wake {
                let _ = w.send(());
            }
        }
    }

    /// Refuse a batch when free space is under the reserve, before sled can hit ENOSPC:
    /// sled 0.34 makes an I/O error sticky for the life of the `Db`, so running out of
    /// space inside sled would need a restart, while refusing here recovers by itself.
    fn disk_guard(&mut self) -> Result<(), String> {
        let Some(dir) = self.disk.dir.clone() else {
            return Ok(());
        };
        let now = Instant::now();
        // statvfs costs about a microsecond: look before every batch (not every
        // record), because a disk can fill in far less than the warning period and
        // one write into a full disk would poison sled until restart.
        {
            match fs2::available_space(&dir) {
                Ok(free) => {
                    self.disk.free = Some(free);
                    let warn_due = self
                        .disk
                        .last_warn
                        .is_none_or(|t| now.duration_since(t) >= self.opts.disk_check_interval);
                    if free < self.opts.low_disk_warn_bytes && warn_due {
                        self.disk.last_warn = Some(now);
                        tracing::warn!(
                            dir = %dir.display(),
                            free_bytes = free,
                            warn_below = self.opts.low_disk_warn_bytes,
                            refuse_below = self.opts.min_free_bytes,
                            "audit log disk is low on space"
                        );
                    }
                }
                Err(e) => {
                    self.disk.free = None;
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read free space of the audit disk");
                }
            }
        }
        match self.disk.free {
            Some(free) if free < self.opts.min_free_bytes => Err(format!(
                "audit disk has {free} bytes free, below the {} byte reserve",
                self.opts.min_free_bytes
            )),
            _ => Ok(()),
        }
    }

    fn maybe_fsync(&mut self) -> Result<(), String> {
        let due = match self.opts.fsync {
            AuditFsync::Never => false,
            AuditFsync::EveryBatch => true,
            AuditFsync::Interval(every) => self.fsync.last.elapsed() >= every,
        };
        if !due {
            return Ok(());
        }
        let Some(dir) = &self.opts.data_dir else {
            return Err("fsync requested but no data_dir is known".into());
        };
        if self.fsync.file.is_none() {
            // sled 0.34 keeps its log and pages in the single file `db`.
            let path = dir.join("db");
            let f =
                File::open(&path).map_err(|e| format!("open {} for fsync: {e}", path.display()))?;
            self.fsync.file = Some(f);
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        if let Some(f) = &self.fsync.file {
            f.sync_data().map_err(|e| format!("fsync audit db: {e}"))?;
        }
        self.fsync.last = Instant::now();
        Ok(())
    }
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

pub(crate) fn shared(head: ChainHead, capacity: usize) -> Arc<Shared> {
    let (events, _) = broadcast::channel(capacity.max(1));
    Arc::new(Shared {
        records_committed: AtomicU64::new(0),
        batches_committed: AtomicU64::new(0),
        batches_failed: AtomicU64::new(0),
        fail_point: AtomicU8::new(FAIL_NONE),
        writer_alive: AtomicBool::new(true),
        head: Mutex::new(head),
        last_error: Mutex::new(None),
        events,
    })
}

/// Default linger: none. Appends that arrive while a flush runs form the next batch,
/// so concurrency batches by itself and a lone request pays no extra latency.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_millis(0);
