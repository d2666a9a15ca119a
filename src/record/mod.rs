//! Record: the append-only, hash-chained decision log.
//!
//! Auditors ask who did what to which container, when, whether it was allowed and
//! why, and they need the answer complete and provably untampered. As with Vault's
//! audit devices, no request is served that could not be recorded: the pipeline
//! calls [`AuditLog::append`] and forwards only after it returns `Ok`; on
//! [`RecordError::Unavailable`] it answers 503.
//!
//! # Storage
//! One sled tree, `audit_log`, with key prefixes (layout in [`store`]): blobs of
//! contiguous records (keyed by their first seq, u64 big-endian), metadata (head,
//! checkpoint, index progress), and secondary indexes (caller, target, action,
//! decision, time) as per-chunk postings. Blobs are written with the new head in
//! one atomic `Tree::apply_batch`: a few keys for many records, because sled's
//! cost is per key. The indexes are written later in large chunks by an indexer
//! thread ([`index`]); queries scan the few
//! records not yet indexed, so they never miss a record.
//!
//! # The chain
//! Each stored value is `[version][hash][canonical bytes]` with
//! `hash = SHA-256(previous hash || canonical bytes)` (encoding in [`codec`]; the
//! first record chains from 32 zero bytes). No API updates or deletes a record
//! except [`AuditLog::prune`], which removes the OLDEST records and writes a
//! checkpoint holding the hash the remaining chain continues from.
//! [`AuditLog::verify`] walks the chain and names the FIRST break: a changed
//! record, a missing seq, a reordered record, or a tail cut short (the stored head
//! remembers the last seq and hash). [`AuditLog::open`] verifies the tail (last
//! `verify_tail` records, the checkpoint link and the head) and refuses a broken
//! chain unless `allow_broken_chain` is set.
//!
//! What the chain does NOT prove: someone able to write the db can rewrite every
//! record and recompute every hash. Anchor [`AuditLog::head`] elsewhere (logs,
//! another host) to make such a rewrite detectable.
//!
//! # Durability: what `append` returning `Ok` means
//! With `data_dir` set (as `serve` does), the durability point is a write-ahead
//! log, `<data_dir>/audit-wal/` ([`wal`]), not sled. Appenders commit in groups
//! without a writer thread ([`writer`]): the first appender finding no write in
//! progress writes every record linked so far as ONE frame with ONE `pwrite`, and
//! only then are those appends answered; appends arriving during the write form
//! the next group. sled is brought up to date by a background applier
//! ([`apply`]) and flushed every half second; WAL segments are deleted only once
//! sled holds and has flushed their records. Queries, `get`, `export` and
//! `verify` first wait until sled holds every record acknowledged when they were
//! called, so they never miss one.
//! - `pwrite` returning means the bytes are in the kernel's page cache: an
//!   acknowledged record survives the process being killed (SIGKILL, panic, OOM).
//!   It may NOT survive a power loss or kernel crash. This is the same promise as
//!   before the WAL, when sled 0.34.7's `flush` (`sync_file_range`, not `fsync`)
//!   was the durability point.
//! - With [`AuditFsync::EveryBatch`] the leader also `fdatasync`s the WAL segment
//!   before answering (segment files and their directory entry are synced when
//!   created): acknowledged records survive power loss, at the cost of one disk
//!   sync per group. With [`AuditFsync::Interval`] it syncs when a group is
//!   written at least that long after the last sync: records acknowledged since
//!   may be lost on power loss (never on a process kill); the kernel's writeback
//!   bounds the window when writes stop. With either, sled's files are also
//!   synced (`syncfs`) before WAL segments are deleted, so the records always
//!   have one synced copy.
//! - At open (and in the offline tools) WAL frames beyond sled's head are
//!   replayed into sled, checked for seq continuity and chain links. A frame cut
//!   short at the end of the WAL (a kill during the write: never acknowledged) is
//!   cut off; any other frame that does not continue the chain is a break, and
//!   open refuses it like any other (with `allow_broken_chain` the WAL is moved
//!   aside to `audit-wal.broken-<time>/` as evidence, and the log continues from
//!   sled's head).
//! - Without `data_dir` (temporary and in-memory dbs, tests) there is no WAL: the
//!   leader writes the batch into sled and flushes it, as before.
//!
//! The index is not part of the durability promise: it is rebuilt from the
//! records if lost. A record may exist for a request that was refused (a write
//! that failed after reaching the disk), never the reverse.
//!
//! # When the log cannot be written
//! Appends fail with [`RecordError::Unavailable`]. A failed or short WAL write is
//! truncated back to the last acknowledged frame; its group and every group linked
//! after it are refused, and the chain head rolls back to the last acknowledged
//! record, so the next append continues the chain exactly. If the truncation
//! itself fails, nothing more is written until a later attempt succeeds. With
//! `data_dir` set, writes are refused while free space is under `min_free_bytes`
//! BEFORE anything is written, and resume by themselves once space is freed. The
//! reserve keeps sled, which the applier writes after the WAL, away from ENOSPC:
//! sled 0.34 makes a real I/O error sticky for the life of the `Db`. If that
//! happens anyway, appends still succeed (the WAL holds them), readers get the
//! error instead of an incomplete answer, [`AuditLog::stats`] shows it, and a
//! restart replays the WAL. A low-space warning is logged (at most every
//! `disk_check_interval`) below `low_disk_warn_bytes`.
//!
//! One `AuditLog` per `sled::Db`: two writers on the same trees would fork the chain.

mod apply;
pub mod codec;
pub mod export;
pub mod format;
pub(crate) mod index;
mod offline;
mod permit;
pub mod query;
mod sled_guard;
mod stage;
pub mod store;
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod types;
pub(crate) mod wal;
mod writer;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::broadcast;

pub use export::{
    opa_event, verify_export, ChainedRecord, ExportBreak, ExportBreakKind, ExportVerifyReport,
};
pub use format::{format_json, format_jsonl, format_table, record_json};
pub use index::DEFAULT_INDEX_CHUNK;
pub use offline::{repair_offline, verify_offline, RepairReport};
pub use permit::{record_decision, Permit, Recorded};
pub use query::{AuditFilter, AuditPage, FilterError, Order};
pub use sled_guard::{open_sled, without_panic};
pub use stage::{log_unavailable, Decided, Life, Record};
pub use store::{BreakKind, ChainBreak, Checkpoint, VerifyReport};
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub use testing::FailPoint;
pub use types::{
    AuditFsync, AuditOptions, AuditRecord, AuditStats, PrunePolicy, PruneReport, RecordError,
    STARTUP_VERIFY_TAIL,
};

use store::{Stores, VerifyScope};

/// Rows removed per prune transaction (each step leaves a valid checkpoint).
const PRUNE_CHUNK: u64 = 10_000;

/// The decision log. Cheap to clone; all clones share one group commit.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    stores: Stores,
    committer: Arc<writer::Committer>,
    /// How far the applier got; None without a WAL (sled is the durability point).
    progress: Option<Arc<apply::Progress>>,
    prune_lock: Mutex<()>,
    /// Held by the indexer while it posts a chunk and by prune: never both at once.
    index_lock: Arc<Mutex<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets the applier flush and exit, releasing its handle on the db.
        self.committer.close();
    }
}

impl AuditLog {
    /// Open (or create) the log in `db`: replay the WAL, verify the tail, start the
    /// applier and indexer threads.
    pub fn open(db: &sled::Db, opts: AuditOptions) -> Result<AuditLog, RecordError> {
        if opts.fsync != AuditFsync::Never && opts.data_dir.is_none() {
            return Err(RecordError::Invalid("audit fsync needs data_dir".into()));
        }
        if !(1..=index::MAX_INDEX_CHUNK).contains(&opts.index_chunk) {
            return Err(RecordError::Invalid(format!(
                "index_chunk {} is outside 1..={}",
                opts.index_chunk,
                index::MAX_INDEX_CHUNK
            )));
        }
        let stores = Stores::open(db)?;
        if let Some(dir) = &opts.data_dir {
            let wal_dir = dir.join(wal::WAL_DIR);
            let replayed = wal::recover(&stores, &wal_dir, dir, opts.fsync != AuditFsync::Never)?;
            if let Some(b) = replayed.broken {
                if !opts.allow_broken_chain {
                    return Err(RecordError::BrokenChain(b));
                }
                let aside = dir.join(format!(
                    "{}.broken-{}",
                    wal::WAL_DIR,
                    time::OffsetDateTime::now_utc().unix_timestamp()
                ));
                std::fs::rename(&wal_dir, &aside).map_err(|e| {
                    RecordError::Store(format!("move the broken audit WAL aside: {e}"))
                })?;
                tracing::error!(chain_break = %b, kept_in = %aside.display(), "the audit WAL does not continue the chain; continuing because allow_broken_chain is set");
            }
        }
        let scope = if opts.verify_tail == 0 {
            VerifyScope::Full
        } else {
            VerifyScope::Tail(opts.verify_tail)
        };
        let report = store::verify(&stores, scope)?;
        if let Some(b) = report.broken {
            if !opts.allow_broken_chain {
                return Err(RecordError::BrokenChain(b));
            }
            tracing::error!(chain_break = %b, "audit chain is broken; continuing because allow_broken_chain is set");
        }
        let head = stores.load_head()?;
        let index_lock = Arc::new(Mutex::new(()));
        let (wake_tx, wake_rx) = mpsc::channel();
        {
            let (stores, lock, chunk) = (stores.clone(), index_lock.clone(), opts.index_chunk);
            std::thread::Builder::new()
                .name("portcullis-audit-indexer".into())
                .spawn(move || index::run(stores, chunk, lock, wake_rx))
                .map_err(|e| RecordError::Unavailable(format!("start audit indexer: {e}")))?;
        }
        // Catch up on whatever a previous run left unindexed.
        let _ = wake_tx.send(());
        let (sink, progress) = match &opts.data_dir {
            None => (
                writer::Sink::Sled(writer::SledSink {
                    stores: stores.clone(),
                    index_wake: Some(wake_tx),
                    index_chunk: opts.index_chunk,
                    unindexed: 0,
                }),
                None,
            ),
            Some(dir) => {
                let wal_dir = dir.join(wal::WAL_DIR);
                let wal = wal::WalWriter::create(
                    &wal_dir,
                    head.next_seq,
                    opts.wal_segment_bytes,
                    opts.fsync != AuditFsync::Never,
                )
                .map_err(|e| RecordError::Unavailable(format!("start the audit WAL: {e}")))?;
                let progress = Arc::new(apply::Progress::new(head.next_seq - 1));
                let (tx, rx) = mpsc::channel();
                let applier = apply::Applier {
                    stores: stores.clone(),
                    progress: progress.clone(),
                    wal_dir,
                    data_dir: dir.clone(),
                    sync_db: opts.fsync != AuditFsync::Never,
                    index_wake: wake_tx,
                    index_chunk: opts.index_chunk,
                };
                std::thread::Builder::new()
                    .name("portcullis-audit-applier".into())
                    .spawn(move || applier.run(rx))
                    .map_err(|e| RecordError::Unavailable(format!("start audit applier: {e}")))?;
                let sink = writer::Sink::Wal(writer::WalSink {
                    wal,
                    to_applier: Some(tx),
                    fsync: opts.fsync,
                    last_sync: std::time::Instant::now(),
                    disk: writer::DiskGuard::new(
                        dir.clone(),
                        opts.min_free_bytes,
                        opts.low_disk_warn_bytes,
                        opts.disk_check_interval,
                    ),
                });
                (sink, Some(progress))
            }
        };
        let shared = writer::shared(opts.subscribe_capacity);
        Ok(AuditLog {
            inner: Arc::new(Inner {
                stores,
                committer: Arc::new(writer::Committer::new(head, sink, shared, opts.max_batch)),
                progress,
                prune_lock: Mutex::new(()),
                index_lock,
            }),
        })
    }

    /// Append one record; returns its seq once it is durable (see the module docs).
    /// `seq` is assigned here; `time` too when empty (else it must be RFC 3339).
    pub async fn append(&self, record: AuditRecord) -> Result<u64, RecordError> {
        let c = &self.inner.committer;
        match c.enter(record)? {
            writer::Role::Lead(seq) => c.lead_async(seq).await,
            writer::Role::Follow(seq, rx) => {
                writer::Follow {
                    committer: c,
                    seq,
                    rx: Some(rx),
                }
                .wait()
                .await
            }
        }
    }

    /// [`AuditLog::append`] for synchronous callers (never call inside an async task).
    pub fn append_blocking(&self, record: AuditRecord) -> Result<u64, RecordError> {
        let c = &self.inner.committer;
        match c.enter(record)? {
            writer::Role::Lead(seq) => c.lead(seq),
            writer::Role::Follow(seq, rx) => writer::Follow {
                committer: c,
                seq,
                rx: Some(rx),
            }
            .wait_blocking(),
        }
    }

    /// Stop accepting appends; what was accepted is still written, then the
    /// applier flushes sled and exits.
    pub fn close(&self) {
        self.inner.committer.close();
    }

    /// `close`, then wait up to `timeout` for the applier to apply and flush
    /// what was accepted (a clean shutdown: the next start has no WAL to
    /// replay). False when it did not finish in time; the WAL still holds it.
    pub fn close_and_wait(&self, timeout: std::time::Duration) -> bool {
        self.close();
        self.inner
            .progress
            .as_ref()
            .is_none_or(|p| p.wait_stopped(timeout))
    }

    /// `close`, then wait for the applier to flush sled and stop (tests).
    #[cfg(test)]
    pub(crate) fn testing_close_and_wait(&self) {
        self.close();
        if let Some(p) = &self.inner.progress {
            assert!(
                p.wait_stopped(std::time::Duration::from_secs(10)),
                "the applier did not stop"
            );
        }
    }

    /// Wait until sled holds every record acknowledged so far, up to `seq`.
    fn caught_up(&self, seq: u64) -> Result<(), RecordError> {
        match &self.inner.progress {
            None => Ok(()),
            Some(p) => {
                let durable = self.inner.committer.durable().next_seq - 1;
                p.wait_for(seq.min(durable))
            }
        }
    }

    /// Walk the whole chain; the report names the first break.
    pub fn verify(&self) -> Result<VerifyReport, RecordError> {
        self.caught_up(u64::MAX)?;
        store::verify(&self.inner.stores, VerifyScope::Full)
    }

    /// Last acknowledged (seq, chain hash hex). seq 0 = empty log.
    pub fn head(&self) -> (u64, String) {
        let h = self.inner.committer.durable();
        (h.next_seq - 1, hex::encode(h.hash))
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.inner.committer.shared;
        let (applied_seq, apply_error) = match &self.inner.progress {
            Some(p) => p.snapshot(),
            None => (self.inner.committer.durable().next_seq - 1, None),
        };
        AuditStats {
            records_committed: s.records_committed.load(Ordering::Relaxed),
            batches_committed: s.batches_committed.load(Ordering::Relaxed),
            batches_failed: s.batches_failed.load(Ordering::Relaxed),
            group_sizes: s
                .group_sizes
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            durable_seq: self.inner.committer.durable().next_seq - 1,
            writer_alive: self.inner.committer.alive(),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            applied_seq,
            apply_error,
        }
    }

    /// One record by seq (None if never written or pruned).
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>, RecordError> {
        self.caught_up(seq)?;
        self.inner.stores.get_record(seq)
    }

    /// Filtered, paged query (see [`query`] for ordering and paging).
    pub fn query(&self, filter: &AuditFilter) -> Result<AuditPage, RecordError> {
        self.caught_up(u64::MAX)?;
        query::run(&self.inner.stores, filter)
    }

    /// Every record from `from_seq` on, oldest first: resumable export.
    pub fn export(
        &self,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<AuditRecord, RecordError>> + Send + 'static {
        match self.caught_up(u64::MAX) {
            Ok(()) => export_records(&self.inner.stores, from_seq),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// [`AuditLog::export`] with each record's chain hash and its predecessor's,
    /// so the export verifies on its own ([`export::verify_export`]).
    pub fn export_chained(
        &self,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<ChainedRecord, RecordError>> + Send + 'static {
        match self.caught_up(u64::MAX) {
            Ok(()) => export::chained_records(&self.inner.stores, from_seq),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The last seqs the secondary index and the request-id index cover
    /// (benches and tests wait for the indexer with it).
    pub fn index_marks(&self) -> Result<(u64, u64), RecordError> {
        let s = &self.inner.stores;
        Ok((s.read_indexed()?, s.read_rid_indexed()?))
    }

    /// Write records from `from_seq` on as JSON Lines; returns (count, last seq written).
    pub fn export_jsonl<W: Write>(
        &self,
        from_seq: u64,
        out: W,
    ) -> Result<(u64, Option<u64>), RecordError> {
        self.caught_up(u64::MAX)?;
        write_jsonl(&self.inner.stores, from_seq, out)
    }

    /// Newly committed records, in seq order, as they become durable (for `tail -f`).
    /// A follower that falls behind gets `Lagged` and should resume with
    /// [`AuditLog::export`] from the last seq it saw.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditRecord> {
        self.inner.committer.shared.events.subscribe()
    }

    /// Remove old records and move the checkpoint so the rest still verifies.
    /// Refuses (Corrupt) to prune records whose chain does not verify: damage is
    /// evidence and is not deleted silently.
    pub fn prune(&self, policy: PrunePolicy) -> Result<PruneReport, RecordError> {
        self.caught_up(u64::MAX)?;
        let _one_at_a_time = self
            .inner
            .prune_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _no_indexing = self
            .inner
            .index_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        prune(&self.inner.stores, policy)
    }
}

/// Open the sled db of a STOPPED portcullis for offline tools (`portcullis audit verify
/// --data-dir`) and replay its audit WAL into it, as a start would. sled locks the
/// directory, so this fails while portcullis runs. Refuses a directory without a db
/// rather than creating an empty one that would verify, and a WAL that does not
/// continue the chain ([`RecordError::BrokenChain`]; [`verify_offline`] reports it).
pub fn open_offline(data_dir: &Path) -> Result<sled::Db, RecordError> {
    let db = open_sled_offline(data_dir)?;
    if let Some(b) = without_panic(data_dir, || replay_offline(&db, data_dir))?? {
        return Err(RecordError::BrokenChain(b));
    }
    Ok(db)
}

fn replay_offline(db: &sled::Db, data_dir: &Path) -> Result<Option<ChainBreak>, RecordError> {
    let stores = Stores::open(db)?;
    // The offline tools do not know the server's fsync policy: assume it is on.
    let replayed = wal::recover(&stores, &data_dir.join(wal::WAL_DIR), data_dir, true)?;
    Ok(replayed.broken)
}

/// Refuse a directory without a db rather than create an empty one that would verify.
fn require_db(data_dir: &Path) -> Result<(), RecordError> {
    if !data_dir.join("db").exists() && !data_dir.join("conf").exists() {
        return Err(RecordError::Open(format!(
            "{} holds no sled database",
            data_dir.display()
        )));
    }
    Ok(())
}

fn open_sled_offline(data_dir: &Path) -> Result<sled::Db, RecordError> {
    require_db(data_dir)?;
    open_sled(data_dir)
}

/// The full check of the log in `db`: every record's link from the checkpoint
/// to the stored head. What `serve --verify-full` runs at startup (through
/// [`AuditOptions::verify_tail`] 0) and what a `doctor` command should call; the
/// WAL is not included (see [`verify_offline`] for a stopped server's whole log).
pub fn verify_full(db: &sled::Db) -> Result<VerifyReport, RecordError> {
    verify_db(db)
}

/// Full verification of the log in `db` without starting a writer (offline tools).
/// A db with a WAL should come from [`open_offline`], which replays it.
pub fn verify_db(db: &sled::Db) -> Result<VerifyReport, RecordError> {
    store::verify(&Stores::open(db)?, VerifyScope::Full)
}

/// Export from `db` without a writer (offline tools); see [`AuditLog::export`].
pub fn export_db(
    db: &sled::Db,
    from_seq: u64,
) -> Result<impl Iterator<Item = Result<AuditRecord, RecordError>>, RecordError> {
    Ok(export_records(&Stores::open(db)?, from_seq))
}

/// [`export_db`] with chain hashes (offline tools); see [`AuditLog::export_chained`].
pub fn export_chained_db(
    db: &sled::Db,
    from_seq: u64,
) -> Result<impl Iterator<Item = Result<ChainedRecord, RecordError>>, RecordError> {
    Ok(export::chained_records(&Stores::open(db)?, from_seq))
}

/// Query `db` without a writer (offline tools).
pub fn query_db(db: &sled::Db, filter: &AuditFilter) -> Result<AuditPage, RecordError> {
    query::run(&Stores::open(db)?, filter)
}

fn export_records(
    stores: &Stores,
    from_seq: u64,
) -> Box<dyn Iterator<Item = Result<AuditRecord, RecordError>> + Send + 'static> {
    let start = match stores.blob_start_for(from_seq) {
        Ok(s) => s.unwrap_or(from_seq),
        Err(e) => return Box::new(std::iter::once(Err(e))) as Box<dyn Iterator<Item = _> + Send>,
    };
    Box::new(stores.blobs_from(start).flat_map(move |item| {
        let (_, blob) = match item {
            Ok(kv) => kv,
            Err(e) => return vec![Err(RecordError::Store(format!("export: {e}")))],
        };
        let mut out = Vec::new();
        for entry in codec::blob_entries(&blob) {
            match entry {
                Ok((seq, _)) if seq < from_seq => {}
                Ok((seq, value)) => out.push(store::decode_stored(seq, value)),
                Err(e) => {
                    out.push(Err(RecordError::Corrupt(format!("audit record blob: {e}"))));
                    break;
                }
            }
        }
        out
    }))
}

fn write_jsonl<W: Write>(
    stores: &Stores,
    from_seq: u64,
    mut out: W,
) -> Result<(u64, Option<u64>), RecordError> {
    let mut count = 0;
    let mut last = None;
    for rec in export_records(stores, from_seq) {
        let rec = rec?;
        writeln!(out, "{}", record_json(&rec))
            .map_err(|e| RecordError::Store(format!("write export: {e}")))?;
        count += 1;
        last = Some(rec.seq);
    }
    out.flush()
        .map_err(|e| RecordError::Store(format!("write export: {e}")))?;
    Ok((count, last))
}

fn prune(stores: &Stores, policy: PrunePolicy) -> Result<PruneReport, RecordError> {
    let rd = |e: sled::Error| RecordError::Store(format!("prune: {e}"));
    let mut cp = stores.read_checkpoint()?;
    let Some(last) = stores.last_seq()? else {
        return Ok(PruneReport {
            removed: 0,
            checkpoint: cp,
        });
    };
    let before = match policy {
        PrunePolicy::BeforeSeq(s) => s.min(last + 1),
        PrunePolicy::MaxRecords(n) => (last + 1).saturating_sub(n),
        PrunePolicy::MaxAge(age) => {
            let cutoff = time::OffsetDateTime::now_utc() - age;
            let cutoff = cutoff
                .unix_timestamp_nanos()
                .clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            let mut before = last + 1;
            for rec in export_records(stores, cp.first_seq) {
                let rec = rec?;
                // Unreadable time: keep it and everything after (never prune by guess).
                if store::parse_time_nanos(&rec.time).is_none_or(|n| n >= cutoff) {
                    before = rec.seq;
                    break;
                }
            }
            before
        }
    };
    // Whole blobs only, each checked against the chain first.
    let mut removed = 0;
    let mut prev = cp.prev_hash;
    loop {
        let mut batch = sled::Batch::default();
        let mut end = cp.first_seq;
        for item in stores.blobs_from(cp.first_seq) {
            if end - cp.first_seq >= PRUNE_CHUNK {
                break;
            }
            let (k, blob) = item.map_err(rd)?;
            let first = store::parse_blob_key(&k)
                .ok_or_else(|| RecordError::Corrupt("malformed audit blob key".into()))?;
            if first != end {
                return Err(RecordError::Corrupt(format!(
                    "prune: expected a batch at {end}, found {first}; run verify"
                )));
            }
            let mut entries = Vec::new();
            for entry in codec::blob_entries(&blob) {
                entries.push(entry.map_err(|e| {
                    RecordError::Corrupt(format!("prune: batch {first}: {e}; run verify"))
                })?);
            }
            let Some(&(blob_last, _)) = entries.last() else {
                return Err(RecordError::Corrupt(format!(
                    "prune: batch {first} is empty; run verify"
                )));
            };
            if blob_last + 1 > before {
                break;
            }
            let mut link = prev;
            for (i, (seq, value)) in entries.iter().enumerate() {
                let split = codec::split_value(value)
                    .map_err(|e| RecordError::Corrupt(format!("prune: record {seq}: {e}")))?;
                if *seq != first + i as u64
                    || split.embedded_seq() != Some(*seq)
                    || codec::chain_hash(&link, split.canonical) != split.hash
                {
                    return Err(RecordError::Corrupt(format!(
                        "prune: record {seq} does not verify; refusing to delete evidence"
                    )));
                }
                link = split.hash;
                if let Some(rid) = codec::peek_request_id(value) {
                    batch.remove(store::request_id_key(rid, *seq));
                }
            }
            prev = link;
            batch.remove(k);
            end = blob_last + 1;
        }
        if end == cp.first_seq {
            break;
        }
        index::prune_postings(stores, &mut batch, end)?;
        let next = Checkpoint {
            first_seq: end,
            prev_hash: prev,
            pruned_total: cp.pruned_total + (end - cp.first_seq),
            time: writer::now_rfc3339(),
        };
        store::set_checkpoint(&mut batch, &next);
        stores.commit(batch)?;
        removed += end - cp.first_seq;
        cp = next;
    }
    stores.db.flush().map_err(rd)?;
    if removed > 0 {
        tracing::info!(removed, first_seq = cp.first_seq, "audit log pruned");
    }
    Ok(PruneReport {
        removed,
        checkpoint: cp,
    })
}
