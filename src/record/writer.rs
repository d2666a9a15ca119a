//! Group commit on the appending threads: no writer thread, no hand-off on the
//! fast path.
//!
//! Why: handing each record to a writer thread and waking the caller afterwards
//! costs two thread switches per request, which is most of the latency budget
//! once the durable write itself is a `pwrite` of a few microseconds.
//!
//! How: under one mutex an appender takes the next seq, links its record into the
//! chain (hash of the predecessor's hash and its canonical bytes, encoded before
//! the lock) and adds the framed entry to the pending batch. If no write is in
//! progress it becomes the LEADER: it takes the pending batch, releases the lock,
//! writes the batch ([`Sink`]: one WAL `pwrite`, or sled when there is no data
//! directory), broadcasts the records, then marks them durable and answers the
//! other appenders of that batch (FOLLOWERS, waiting on a oneshot). Appends that
//! arrive during a write form the next batch; when the leader is done it makes
//! one of them the next leader (a `Lead` message), so no caller writes batches
//! other than its own for long, and the next batch grew for free meanwhile.
//!
//! Seqs and hashes are assigned before the write, so a failed write fails its
//! batch AND every batch queued after it (they chain from the failed records);
//! the chain head rolls back to the last durable record and the next append
//! continues from there.
//!
//! A follower whose future is dropped (the client went away) still has its record
//! written: records are never withdrawn once linked. If it had just been made
//! leader, its drop does the leading, so a batch is never left without a leader.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{broadcast, oneshot};

use super::apply::Durable;
use super::codec::{self, chain_hash, encode_canonical_into};
use super::store::{blob_key, parse_time_nanos, set_head, ChainHead, Stores, MAX_BATCH_CAP};
use super::wal::{self, Inject, WalWriter};
use super::{AuditFsync, AuditRecord, RecordError};

/// Injected failure points (tests only; see `AuditLog::testing_inject_failure`).
pub(crate) const FAIL_NONE: u8 = 0;
pub(crate) const FAIL_WRITE: u8 = 1;
pub(crate) const FAIL_FLUSH: u8 = 2;
/// `FAIL_WRITE` for the next write only.
pub(crate) const FAIL_WRITE_ONCE: u8 = 3;

/// Buckets of the group-commit size histogram: up to 1, 2, 4 … 1024, more.
pub(crate) const GROUP_SIZE_BUCKETS: usize = 12;

/// The bucket of a group commit of `count` records.
pub(crate) fn group_size_bucket(count: u64) -> usize {
    let bits = u64::BITS - count.saturating_sub(1).leading_zeros();
    (bits as usize).min(GROUP_SIZE_BUCKETS - 1)
}

/// Counters and the event stream, shared with the `AuditLog` handles.
pub(crate) struct Shared {
    pub records_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub batches_failed: AtomicU64,
    /// Group commits by size: bucket `i` counts sizes up to `2^i` (the last, any).
    pub group_sizes: [AtomicU64; GROUP_SIZE_BUCKETS],
    pub fail_point: AtomicU8,
    pub last_error: Mutex<Option<String>>,
    pub events: broadcast::Sender<AuditRecord>,
}

pub(crate) fn shared(capacity: usize) -> Arc<Shared> {
    let (events, _) = broadcast::channel(capacity.max(1));
    Arc::new(Shared {
        records_committed: AtomicU64::new(0),
        batches_committed: AtomicU64::new(0),
        batches_failed: AtomicU64::new(0),
        group_sizes: Default::default(),
        fail_point: AtomicU8::new(FAIL_NONE),
        last_error: Mutex::new(None),
        events,
    })
}

/// What a waiting follower is told.
pub(crate) enum Msg {
    Done(Result<u64, RecordError>),
    /// Your batch is next and nobody is writing: lead it.
    Lead,
}

type Waiter = oneshot::Sender<Msg>;

/// Records linked into the chain and waiting for one write.
struct Batch {
    /// A WAL frame under construction ([`wal::start_frame`]).
    frame: Vec<u8>,
    first: u64,
    count: u64,
    last_hash: [u8; 32],
    records: Vec<AuditRecord>,
    /// One per record, in seq order; None for the leader's own or a promoted one.
    waiters: Vec<Option<Waiter>>,
}

impl Batch {
    fn new(first: u64) -> Batch {
        let mut frame = Vec::with_capacity(4096);
        wal::start_frame(&mut frame);
        Batch {
            frame,
            first,
            count: 0,
            last_hash: [0; 32],
            records: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn end(&self) -> ChainHead {
        ChainHead {
            next_seq: self.first + self.count,
            hash: self.last_hash,
        }
    }
}

struct State {
    /// Where the next append goes (pending records included).
    next: ChainHead,
    /// After the last acknowledged record: what a failure rolls back to.
    durable: ChainHead,
    pending: VecDeque<Batch>,
    /// A leader exists (writing, or promoted and about to). Pending is empty when false.
    writing: bool,
    closed: bool,
    /// Set if a leader panicked: refuse everything from then on.
    dead: Option<String>,
}

/// A failed write.
pub(crate) struct Failed {
    why: String,
    /// The batch's records stayed stored (sled applied them but could not flush):
    /// the chain continues after them although they were refused.
    kept: bool,
}

/// Where a batch becomes durable.
pub(crate) enum Sink {
    /// The WAL; sled is brought up to date by the applier.
    Wal(WalSink),
    /// No data directory (temporary and in-memory dbs): sled itself, flushed per
    /// batch, as before the WAL existed. No applier, no disk guard, no fsync.
    Sled(SledSink),
}

pub(crate) struct WalSink {
    pub wal: WalWriter,
    pub to_applier: Option<Sender<Durable>>,
    pub fsync: AuditFsync,
    pub last_sync: Instant,
    pub disk: DiskGuard,
}

pub(crate) struct SledSink {
    pub stores: Stores,
    pub index_wake: Option<Sender<()>>,
    pub index_chunk: u64,
    pub unindexed: u64,
}

impl Sink {
    /// Durably write `batch`. May block for a sync when an fsync policy is set.
    fn write(&mut self, batch: &mut Batch, inject: u8) -> Result<(), Failed> {
        let fail = |why: String| Failed { why, kept: false };
        match self {
            Sink::Wal(s) => {
                s.disk.check(batch.frame.len() as u64).map_err(fail)?;
                wal::finish_frame(&mut batch.frame);
                let inject = match inject {
                    FAIL_WRITE => Inject::Write,
                    FAIL_FLUSH => Inject::Sync,
                    _ => Inject::None,
                };
                s.wal
                    .write_frame(&batch.frame, batch.first, inject)
                    .map_err(fail)?;
                let due = match s.fsync {
                    AuditFsync::Never => false,
                    AuditFsync::EveryBatch => true,
                    AuditFsync::Interval(every) => s.last_sync.elapsed() >= every,
                };
                if due {
                    if let Err(e) = s.wal.sync() {
                        let undone = s.wal.undo_last(batch.frame.len());
                        return Err(fail(match undone {
                            Ok(()) => format!("fdatasync audit WAL: {e}"),
                            Err(u) => format!("fdatasync audit WAL: {e}; {u}"),
                        }));
                    }
                    s.last_sync = Instant::now();
                }
                Ok(())
            }
            Sink::Sled(s) => {
                let mut b = sled::Batch::default();
                b.insert(&blob_key(batch.first)[..], wal::frame_blob(&batch.frame));
                set_head(&mut b, batch.first + batch.count - 1, &batch.last_hash);
                if inject == FAIL_WRITE {
                    return Err(fail("write audit batch: injected failure".into()));
                }
                s.stores
                    .commit(b)
                    .map_err(|e| fail(format!("write audit batch: {e}")))?;
                let flushed = if inject == FAIL_FLUSH {
                    Err("injected flush failure".to_string())
                } else {
                    s.stores.db.flush().map(|_| ()).map_err(|e| e.to_string())
                };
                // The records may be in the tree without being durable: refused, but
                // the chain continues after them.
                flushed.map_err(|e| Failed {
                    why: format!("flush audit batch: {e}"),
                    kept: true,
                })
            }
        }
    }

    /// Hand a durable batch on (to the applier) before anyone is answered.
    fn durable(&mut self, batch: &mut Batch) {
        match self {
            Sink::Wal(s) => {
                let d = Durable {
                    frame: std::mem::take(&mut batch.frame),
                    first: batch.first,
                    last: batch.first + batch.count - 1,
                    hash: batch.last_hash,
                };
                if let Some(tx) = &s.to_applier {
                    if tx.send(d).is_err() {
                        // Durable in the WAL all the same; readers see the applier stopped.
                        tracing::error!("audit applier has stopped; records stay in the WAL");
                        s.to_applier = None;
                    }
                }
            }
            Sink::Sled(s) => {
                s.unindexed += batch.count;
                if s.unindexed >= s.index_chunk {
                    s.unindexed = 0;
                    if let Some(w) = &s.index_wake {
                        let _ = w.send(());
                    }
                }
            }
        }
    }

    /// The log closed and nothing is pending: let the background threads finish.
    fn close(&mut self) {
        match self {
            Sink::Wal(s) => s.to_applier = None,
            Sink::Sled(s) => s.index_wake = None,
        }
    }

    /// Whether every write may block long enough to matter to an async worker
    /// (an interval sync blocks one group in many: not worth a hand-off each).
    fn may_block(&self) -> bool {
        match self {
            Sink::Wal(s) => s.fsync == AuditFsync::EveryBatch,
            Sink::Sled(_) => true,
        }
    }
}

/// The group commit.
pub(crate) struct Committer {
    state: Mutex<State>,
    /// Only the leader locks it, so it is never contended.
    sink: Mutex<Sink>,
    pub shared: Arc<Shared>,
    max_batch: u64,
    may_block: bool,
}

pub(crate) enum Role {
    Lead(u64),
    Follow(u64, oneshot::Receiver<Msg>),
}

impl Committer {
    pub fn new(head: ChainHead, sink: Sink, shared: Arc<Shared>, max_batch: usize) -> Committer {
        Committer {
            state: Mutex::new(State {
                next: head,
                durable: head,
                pending: VecDeque::new(),
                writing: false,
                closed: false,
                dead: None,
            }),
            may_block: sink.may_block(),
            sink: Mutex::new(sink),
            shared,
            max_batch: max_batch.clamp(1, MAX_BATCH_CAP) as u64,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The injected failure for this write (tests); a one-shot one is used up.
    fn take_fail_point(&self) -> u8 {
        let point = &self.shared.fail_point;
        match point.compare_exchange(
            FAIL_WRITE_ONCE,
            FAIL_NONE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => FAIL_WRITE,
            Err(current) => current,
        }
    }

    /// Hold the sink, so that a leader waits before writing (tests).
    #[cfg(test)]
    pub(crate) fn testing_hold_sink(&self) -> MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a leader is at work, and how many appends wait behind it (tests).
    #[cfg(test)]
    pub(crate) fn testing_queue(&self) -> (bool, u64) {
        let st = self.lock();
        (st.writing, st.pending.iter().map(|b| b.count).sum())
    }

    /// The head after the last acknowledged record.
    pub fn durable(&self) -> ChainHead {
        self.lock().durable
    }

    pub fn alive(&self) -> bool {
        let st = self.lock();
        st.dead.is_none() && !st.closed
    }

    /// Link `record` into the chain; become the leader if nobody writes.
    pub fn enter(&self, mut record: AuditRecord) -> Result<Role, RecordError> {
        if record.time.is_empty() {
            record.time = now_rfc3339();
        } else if parse_time_nanos(&record.time).is_none() {
            return Err(RecordError::Invalid(format!(
                "time {:?} is not RFC 3339",
                record.time
            )));
        }
        // Encode outside the lock; the seq (first 8 bytes) is filled in under it.
        let mut canonical = Vec::with_capacity(512);
        encode_canonical_into(&mut canonical, &record)?;
        let mut st = self.lock();
        if let Some(why) = &st.dead {
            return Err(RecordError::Unavailable(why.clone()));
        }
        if st.closed {
            return Err(RecordError::Unavailable("audit log is closed".into()));
        }
        let seq = st.next.next_seq;
        canonical[..8].copy_from_slice(&seq.to_be_bytes());
        let hash = chain_hash(&st.next.hash, &canonical);
        record.seq = seq;
        st.next = ChainHead {
            next_seq: seq + 1,
            hash,
        };
        let max = self.max_batch;
        if st.pending.back().is_none_or(|b| b.count >= max) {
            st.pending.push_back(Batch::new(seq));
        }
        let lead = !st.writing;
        st.writing = true;
        let batch = st.pending.back_mut().expect("a pending batch");
        codec::push_entry(&mut batch.frame, seq, &hash, &canonical);
        batch.count += 1;
        batch.last_hash = hash;
        batch.records.push(record);
        if lead {
            batch.waiters.push(None);
            return Ok(Role::Lead(seq));
        }
        let (tx, rx) = oneshot::channel();
        batch.waiters.push(Some(tx));
        Ok(Role::Follow(seq, rx))
    }

    /// Lead from an async task. The write is a `pwrite` into the page cache (a few
    /// microseconds, less than handing it to another thread would cost), so it
    /// runs on the worker. A sync per group (`EveryBatch`) or a sled flush takes hundreds
    /// of microseconds or more, so then it runs on tokio's blocking pool: the
    /// worker keeps serving its other connections, whose records pile up into
    /// the next group instead of waiting for the worker (measured with
    /// `--audit-fsync` at 32 clients: groups of ~4 records and ~4k req/s when the
    /// worker itself waited in `fdatasync`). A dropped caller does not stop the
    /// write: the followers in its group are answered all the same.
    pub async fn lead_async(self: &Arc<Self>, own: u64) -> Result<u64, RecordError> {
        if self.may_block {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // A runtime shutting down drops the closure unrun: the guard
                // then leads, so the followers of this group are answered.
                let guard = LeadOnDrop(Some((self.clone(), own)));
                return runtime
                    .spawn_blocking(move || guard.lead())
                    .await
                    .unwrap_or_else(|e| {
                        Err(RecordError::Unavailable(format!(
                            "the audit group commit stopped: {e}"
                        )))
                    });
            }
        }
        self.lead(own)
    }

    /// Write pending batches until one of their waiters takes over (or none is left).
    /// Returns the result of `own`'s record, which is in the first batch written.
    pub fn lead(&self, own: u64) -> Result<u64, RecordError> {
        struct Panicked<'a>(&'a Committer, bool);
        impl Drop for Panicked<'_> {
            fn drop(&mut self) {
                if self.1 {
                    // Dropping the pending waiters answers them (Unavailable).
                    let mut st = self.0.lock();
                    st.dead = Some("the audit group commit failed unexpectedly".into());
                    st.pending.clear();
                    st.writing = false;
                }
            }
        }
        let mut guard = Panicked(self, true);
        let mut own_result = None;
        loop {
            let Some(mut batch) = self.lock().pending.pop_front() else {
                // Unreachable: a leader exists only while something is pending.
                self.lock().writing = false;
                break;
            };
            let inject = self.take_fail_point();
            let written = {
                let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
                let r = sink.write(&mut batch, inject);
                if r.is_ok() {
                    sink.durable(&mut batch);
                }
                r
            };
            let mut answers: Vec<(Batch, Result<u64, RecordError>)> = Vec::new();
            if written.is_ok() {
                // Broadcast before answering: whoever subscribes after an append
                // returned never receives that append's record late. Still the
                // leader, so batches are broadcast in order.
                for record in batch.records.drain(..) {
                    let _ = self.shared.events.send(record);
                }
            }
            let mut st = self.lock();
            match written {
                Ok(()) => {
                    st.durable = batch.end();
                    self.shared
                        .records_committed
                        .fetch_add(batch.count, Ordering::Relaxed);
                    self.shared
                        .batches_committed
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.group_sizes[group_size_bucket(batch.count)]
                        .fetch_add(1, Ordering::Relaxed);
                    if own_result.is_none() {
                        own_result = Some(Ok(own));
                    }
                    answers.push((batch, Ok(0)));
                }
                Err(f) => {
                    let back = if f.kept { batch.end() } else { st.durable };
                    st.durable = back;
                    st.next = back;
                    let err = RecordError::Unavailable(f.why.clone());
                    if own_result.is_none() {
                        own_result = Some(Err(err.clone()));
                    }
                    let failed = 1 + st.pending.len();
                    answers.push((batch, Err(err.clone())));
                    for b in st.pending.drain(..) {
                        answers.push((b, Err(err.clone())));
                    }
                    self.note_failure(&f.why, failed);
                }
            }
            let again = match st.pending.front_mut() {
                None => {
                    st.writing = false;
                    false
                }
                Some(next) => !promote(next),
            };
            let closing = st.closed && !st.writing;
            drop(st);
            let ok = answers.first().is_some_and(|(_, r)| r.is_ok());
            for (b, result) in answers {
                for (i, w) in b.waiters.into_iter().enumerate() {
                    if let Some(w) = w {
                        let r = result.clone().map(|_| b.first + i as u64);
                        let _ = w.send(Msg::Done(r));
                    }
                }
            }
            if ok {
                self.clear_error();
            }
            if closing {
                self.sink.lock().unwrap_or_else(|p| p.into_inner()).close();
            }
            if !again {
                break;
            }
        }
        guard.1 = false;
        own_result.unwrap_or_else(|| Err(RecordError::Unavailable("audit write lost".into())))
    }

    fn note_failure(&self, why: &str, batches: usize) {
        self.shared
            .batches_failed
            .fetch_add(batches as u64, Ordering::Relaxed);
        tracing::error!(error = %why, "audit log unavailable: refusing requests");
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    fn clear_error(&self) {
        let mut e = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if e.is_some() {
            *e = None;
        }
    }

    /// Refuse new appends; what is linked already is still written.
    pub fn close(&self) {
        let idle = {
            let mut st = self.lock();
            st.closed = true;
            !st.writing
        };
        if idle {
            self.sink.lock().unwrap_or_else(|p| p.into_inner()).close();
        }
    }
}

/// A leadership that must be exercised: by [`LeadOnDrop::lead`], or when dropped.
struct LeadOnDrop(Option<(Arc<Committer>, u64)>);

impl LeadOnDrop {
    fn lead(mut self) -> Result<u64, RecordError> {
        let (committer, own) = self.0.take().expect("led once");
        committer.lead(own)
    }
}

impl Drop for LeadOnDrop {
    fn drop(&mut self) {
        if let Some((committer, own)) = self.0.take() {
            let _ = committer.lead(own);
        }
    }
}

/// Make the first live waiter of `batch` its leader; false if none is alive.
fn promote(batch: &mut Batch) -> bool {
    for w in batch.waiters.iter_mut() {
        if let Some(tx) = w.take() {
            if tx.send(Msg::Lead).is_ok() {
                return true;
            }
        }
    }
    false
}

/// A follower's wait. If its future is dropped just after it was made leader,
/// the drop leads, so the pending batch is still written.
pub(crate) struct Follow<'a> {
    pub committer: &'a Arc<Committer>,
    pub seq: u64,
    pub rx: Option<oneshot::Receiver<Msg>>,
}

impl Follow<'_> {
    pub async fn wait(mut self) -> Result<u64, RecordError> {
        let msg = match self.rx.as_mut() {
            Some(rx) => rx.await,
            None => return Err(stopped()),
        };
        self.rx = None;
        match msg {
            Ok(Msg::Done(r)) => r,
            Ok(Msg::Lead) => self.committer.lead_async(self.seq).await,
            Err(_) => Err(stopped()),
        }
    }

    pub fn wait_blocking(mut self) -> Result<u64, RecordError> {
        let Some(rx) = self.rx.take() else {
            return Err(stopped());
        };
        match rx.blocking_recv() {
            Ok(Msg::Done(r)) => r,
            Ok(Msg::Lead) => self.committer.lead(self.seq),
            Err(_) => Err(stopped()),
        }
    }
}

impl Drop for Follow<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Msg::Lead) = rx.try_recv() {
                let _ = self.committer.lead(self.seq);
            }
        }
    }
}

fn stopped() -> RecordError {
    RecordError::Unavailable("the audit group commit stopped before answering".into())
}

/// Refuses writes while free space is under the reserve, before sled can hit ENOSPC:
/// sled 0.34 makes an I/O error sticky for the life of the `Db`, so running out of
/// space inside sled would need a restart, while refusing here recovers by itself.
pub(crate) struct DiskGuard {
    pub dir: PathBuf,
    pub min_free: u64,
    pub warn_below: u64,
    pub warn_every: Duration,
    last_warn: Option<Instant>,
    /// Free space at the last look, and bytes written since.
    free: Option<u64>,
    checked: Option<Instant>,
    written: u64,
}

/// Longest time between two looks at free space. Between looks, the log itself
/// writes at most half the space above the reserve (see [`DiskGuard::check`]).
const DISK_RECHECK: Duration = Duration::from_millis(10);

impl DiskGuard {
    pub fn new(dir: PathBuf, min_free: u64, warn_below: u64, warn_every: Duration) -> DiskGuard {
        DiskGuard {
            dir,
            min_free,
            warn_below,
            warn_every,
            last_warn: None,
            free: None,
            checked: None,
            written: 0,
        }
    }

    /// Before writing `bytes`: refuse if under the reserve. statvfs costs ~4 µs
    /// (measured on the 2-core CI class machine: more than the rest of an append),
    /// so it is read every [`DISK_RECHECK`], or sooner once the log's own writes
    /// since the last look could have used half the room above the reserve; while
    /// refusing, before every batch.
    pub fn check(&mut self, bytes: u64) -> Result<(), String> {
        let now = Instant::now();
        let fresh = match (self.free, self.checked) {
            (Some(free), Some(at)) => {
                free >= self.min_free
                    && now.duration_since(at) < DISK_RECHECK
                    && self.written + bytes < (free - self.min_free) / 2
            }
            _ => false,
        };
        if !fresh {
            self.look(now);
        }
        self.written += bytes;
        match self.free {
            Some(free) if free < self.min_free => Err(format!(
                "audit disk has {free} bytes free, below the {} byte reserve",
                self.min_free
            )),
            _ => Ok(()),
        }
    }

    fn look(&mut self, now: Instant) {
        self.checked = Some(now);
        self.written = 0;
        // Space an unprivileged writer may use: what `df` shows as available.
        #[allow(clippy::unnecessary_cast)] // the statvfs fields are u64 on 64-bit targets only
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64)
            .map_err(std::io::Error::from);
        match free {
            Ok(free) => {
                self.free = Some(free);
                let warn_due = self
                    .last_warn
                    .is_none_or(|t| now.duration_since(t) >= self.warn_every);
                if free < self.warn_below && warn_due {
                    self.last_warn = Some(now);
                    tracing::warn!(
                        dir = %self.dir.display(),
                        free_bytes = free,
                        warn_below = self.warn_below,
                        refuse_below = self.min_free,
                        "audit log disk is low on space"
                    );
                }
            }
            Err(e) => {
                self.free = None;
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free space of the audit disk");
            }
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
