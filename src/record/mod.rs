//! Record: the append-only, hash-chained decision log.
//!
//! (Skeleton: the audit helper fills in the sled chain, group commit and queries.)

use serde::{Deserialize, Serialize};

/// One decision, as recorded. Secrets never enter it: no tokens, no body contents.
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
