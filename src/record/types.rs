//! The log's public types: the record, its errors, the options it runs
//! with, and what prune and stats report.
//!
//! Why apart: these are the vocabulary other stages and the CLI use; the
//! handle that acts on them ([`super::AuditLog`]) lives in the module root.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{index, wal, ChainBreak, Checkpoint};

/// One decision, as recorded. Secrets never enter it: no tokens, no body contents.
///
/// What `portcullis audit query --format json` prints for a refused exec
/// (`seq` and `time` are set when it is appended; the chain hash is kept
/// beside the record, see [`super::codec`]):
///
/// ```
/// use portcullis::record::AuditRecord;
///
/// let record: AuditRecord = serde_json::from_value(serde_json::json!({
///     "seq": 42,
///     "time": "2026-12-07T21:00:00Z",
///     "request_id": "r-5f2c",
///     "caller": "ci-runner",
///     "identified_by": "token:ci",
///     "action": "container.exec",
///     "target_id": "4c0ffee",
///     "target_name": "web-1",
///     "resource_path": null,
///     "method": "POST",
///     "path": "/v1.47/containers/web-1/exec",
///     "allowed": false,
///     "enforced": true,
///     "reasons": ["no trust relationship grants container.exec on web-1 to ci-runner"],
///     "trust_id": null,
///     "policy_version": "sha256:1a2b",
///     "body_sha256": "9f86d081884c7d65"
/// }))
/// .unwrap();
/// assert!(!record.allowed && record.enforced);
/// // The canonical bytes that are hashed into the chain start with the seq.
/// let canonical = portcullis::record::codec::encode_canonical(&record).unwrap();
/// assert_eq!(&canonical[..8], &42u64.to_be_bytes());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Monotonic sequence id, assigned on append.
    pub seq: u64,
    /// RFC 3339 UTC time, assigned on append if empty.
    pub time: String,
    pub request_id: String,
    pub caller: String,
    /// How the caller was identified (`listener:x`, `uid:1000 pid:42`, `token:abc`, `cert:CN`).
    pub identified_by: String,
    pub action: String,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub resource_path: Option<String>,
    pub method: String,
    pub path: String,
    pub allowed: bool,
    /// False in dry-run (`--mode audit-only`): the decision was not enforced.
    pub enforced: bool,
    pub reasons: Vec<String>,
    pub trust_id: Option<String>,
    pub policy_version: String,
    /// SHA-256 (hex) of the inspected body bytes that were forwarded.
    pub body_sha256: Option<String>,
}

/// Everything that can go wrong in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The log cannot be written right now; the request must not be served (503).
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// Startup found a broken chain and `allow_broken_chain` is not set.
    #[error("audit chain is broken ({0}); run `portcullis audit verify` and investigate, or start with allow_broken_chain")]
    BrokenChain(ChainBreak),
    /// The record or an argument is unacceptable (too large, bad time, bad option).
    #[error("invalid audit input: {0}")]
    Invalid(String),
    /// Stored bytes that cannot be read as what they should be.
    #[error("audit data corrupt: {0}")]
    Corrupt(String),
    /// sled reported an error.
    #[error("audit store error: {0}")]
    Store(String),
    /// Opening the data directory offline failed (missing, or locked by a running portcullis).
    #[error("cannot open audit data dir: {0}")]
    Open(String),
}

/// Records whose links a normal start checks (plus the checkpoint link and the
/// stored head); `serve --verify-full` checks them all ([`super::verify_full`]).
pub const STARTUP_VERIFY_TAIL: u64 = 1000;

/// Extra syncing of the WAL beyond the page cache (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFsync {
    #[default]
    Never,
    EveryBatch,
    Interval(Duration),
}

/// How the log runs. `Default` suits production except `data_dir`, which should be set
/// (it enables the WAL, the disk-space guard and fsync).
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Start even though verification found a break (logged at error level).
    pub allow_broken_chain: bool,
    /// Records checked by `open` at the tail; 0 = the whole chain.
    pub verify_tail: u64,
    /// Most records per group commit (1..=10000). A group only grows while a write
    /// is in progress, so a high cap costs no latency at low load.
    pub max_batch: usize,
    /// Directory of the sled db. Set, it holds the WAL (`audit-wal/`) and enables
    /// the free-space guard and fsync; unset, batches are written to sled directly.
    pub data_dir: Option<PathBuf>,
    /// Warn when free space is below this.
    pub low_disk_warn_bytes: u64,
    /// Refuse appends when free space is below this (keeps sled away from ENOSPC).
    pub min_free_bytes: u64,
    /// Least time between two low-space warnings (free space itself is read at
    /// least every 10 ms of writing, and before every batch near the reserve).
    pub disk_check_interval: Duration,
    pub fsync: AuditFsync,
    /// Buffer of the `subscribe` broadcast; slower followers see `Lagged`.
    pub subscribe_capacity: usize,
    /// Records per index chunk (1..=2^20): the indexer posts records once this many
    /// are unindexed, and queries scan at most about this many unindexed records.
    pub index_chunk: u64,
    /// Size after which the WAL starts a new segment (old ones are deleted once
    /// sled holds their records).
    pub wal_segment_bytes: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            allow_broken_chain: false,
            verify_tail: STARTUP_VERIFY_TAIL,
            max_batch: 1000,
            data_dir: None,
            low_disk_warn_bytes: 1 << 30,
            min_free_bytes: 64 << 20,
            disk_check_interval: Duration::from_secs(5),
            fsync: AuditFsync::Never,
            subscribe_capacity: 4096,
            index_chunk: index::DEFAULT_INDEX_CHUNK,
            wal_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Which old records [`super::AuditLog::prune`] removes. Pruning removes whole blobs
/// (see [`super::store`]), so it may keep a few records more than asked, never fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrunePolicy {
    /// Remove every record with seq < this.
    BeforeSeq(u64),
    /// Keep at most this many newest records (rounded up to a batch boundary).
    MaxRecords(u64),
    /// Remove records older than this (stops at the first record that is not).
    MaxAge(Duration),
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub removed: u64,
    pub checkpoint: Checkpoint,
}

/// Counters and health of the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    pub records_committed: u64,
    /// Group commits (writes) that succeeded; < records_committed under concurrency.
    pub batches_committed: u64,
    /// Group commits refused (a failed write also refuses the groups queued after it).
    pub batches_failed: u64,
    /// Group commits by size: `group_sizes[i]` counts those of at most `2^i`
    /// records and more than `2^(i-1)`; the last bucket, any larger.
    pub group_sizes: Vec<u64>,
    /// Last seq acknowledged as durable (in the WAL, or sled without one).
    pub durable_seq: u64,
    /// Appends are accepted (the log is neither closed nor stopped by a fault).
    pub writer_alive: bool,
    /// The error of the last failed batch, cleared by the next success.
    pub last_error: Option<String>,
    /// Last seq the store (sled) holds; behind `head()` while the applier catches up.
    pub applied_seq: u64,
    /// Why the store stopped taking records from the WAL (they stay in the WAL and
    /// are replayed at the next start); readers fail until then.
    pub apply_error: Option<String>,
}
