//! The record stage as the pipeline uses it: what a request is recorded as,
//! and the [`Record`] step that makes a record durable.
//!
//! Why apart from the log itself: the log ([`super::AuditLog`]) stores and
//! verifies records; this file says which record each request becomes (a
//! decided request, one refused before it could be decided, a `trust/check`
//! what-if, a file change) so that every door writes the same shape.

use futures_util::future::BoxFuture;
use http::StatusCode;
use serde_json::Value;

use super::AuditRecord;
use crate::classify::{Action, Classified};
use crate::decide::{Decision, FileContext};
use crate::identify::Caller;
use crate::inspect::Inspected;
use crate::reply::{self, ProxyBody};
use crate::resolve::Target;

/// The record stage: append, durably, and return the record's sequence id,
/// or fail (the request is then refused).
pub trait Record: Send + Sync {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>>;
}

/// What the pipeline knows of a request before it is classified: enough to
/// record it whatever happens next.
pub struct Life {
    pub request_id: String,
    pub method: String,
    /// The request-target exactly as received (path and query).
    pub raw_target: String,
    /// `None` until the request is classified.
    pub action: Option<Action>,
    /// A marker for a record that is no request's action (a refused
    /// connection: `http.*`, see [`crate::listen::Refused`]).
    pub marker: Option<&'static str>,
    /// The file path a file action names, as sent (kept even when the request
    /// is refused before its path could be normalized).
    pub resource_path: Option<String>,
}

/// A request id unique across restarts: a random per-process prefix and a
/// counter (a random id per request cost a `getrandom` syscall each). The
/// counter is 64-bit: a 32-bit one would repeat ids after about 40 hours at
/// 30k requests a second.
fn next_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix:08x}{n:08x}")
}

impl Life {
    pub fn begin(parts: &http::request::Parts) -> Self {
        Life {
            request_id: next_request_id(),
            method: parts.method.as_str().to_string(),
            raw_target: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            action: None,
            marker: None,
            resource_path: None,
        }
    }

    /// A connection refused before any request could be read: no method, no
    /// target, and `marker` for its action.
    pub fn refused_connection(marker: &'static str) -> Self {
        Life {
            request_id: next_request_id(),
            method: String::new(),
            raw_target: String::new(),
            action: None,
            marker: Some(marker),
            resource_path: None,
        }
    }

    /// Note what the request names once it is classified (and its body read).
    pub fn classified(&mut self, request: &Classified, inspected: Option<&Inspected>) {
        self.action = Some(request.action);
        if !request.action.is_file() {
            return;
        }
        self.resource_path = request.resource_path().map(str::to_string).or_else(|| {
            let body: Value = serde_json::from_slice(&inspected?.bytes).ok()?;
            body.get("path")?.as_str().map(str::to_string)
        });
    }

    pub fn path_only(&self) -> &str {
        self.raw_target.split('?').next().unwrap_or("/")
    }

    /// What the request is called in records and messages: its action, or
    /// before it has one, its marker or method and path.
    pub fn what(&self) -> String {
        match (self.action, self.marker) {
            (Some(action), _) => action.to_string(),
            (None, Some(marker)) => marker.to_string(),
            (None, None) => format!("{} {}", self.method, self.path_only()),
        }
    }

    fn base_record(&self, caller: &Caller, decision: &Decision, enforced: bool) -> AuditRecord {
        AuditRecord {
            request_id: self.request_id.clone(),
            caller: caller.name.clone(),
            identified_by: caller.via.summary(),
            action: match (self.action, self.marker) {
                (Some(action), _) => action.to_string(),
                (None, Some(marker)) => marker.to_string(),
                (None, None) => "unclassified".into(),
            },
            method: self.method.clone(),
            path: self.path_only().to_string(),
            allowed: decision.allowed,
            enforced,
            reasons: decision.reasons.clone(),
            trust_id: decision.trust_id.clone(),
            policy_version: decision.policy_version.clone(),
            resource_path: self.resource_path.clone(),
            ..AuditRecord::default()
        }
    }

    /// The record of a request refused before it could be decided.
    /// Structural refusals (bad credential, unknown route, unreadable body)
    /// are enforced even in audit-only mode: there is nothing safe to forward.
    pub fn early_record(&self, caller: &Caller, decision: &Decision) -> AuditRecord {
        self.base_record(caller, decision, true)
    }

    /// The record of a `trust/check` what-if: `subject` asked about, decided
    /// as `action` on `target`. Never enforced: nothing is served by it.
    pub fn what_if_record(
        &self,
        subject: &Caller,
        action: Action,
        target: &Target,
        file: Option<&FileContext>,
        decision: &Decision,
    ) -> AuditRecord {
        AuditRecord {
            caller: subject.name.clone(),
            identified_by: subject.via.summary(),
            action: action.to_string(),
            target_id: target.id.clone(),
            target_name: target.name.clone(),
            resource_path: file.map(|f| f.path.clone()),
            method: "CHECK".into(),
            path: "/api/v1/trust/check".into(),
            ..self.base_record(subject, decision, false)
        }
    }
}

/// A decided request, as the steps after the decision see it (forward,
/// filter, the admin and file APIs): everything it was decided on.
///
/// Its [`record`](Decided::record) is what the decision log keeps:
///
/// ```
/// use portcullis::classify::{classify, VersionRange};
/// use portcullis::decide::Decision;
/// use portcullis::identify::{Caller, Identification};
/// use portcullis::inspect::Inspected;
/// use portcullis::record::{Decided, Life};
/// use portcullis::resolve::Target;
///
/// let (parts, ()) = http::Request::post("/v1.41/containers/web-1/start")
///     .body(())?
///     .into_parts();
/// let mut life = Life::begin(&parts);
/// let request = classify("POST", &life.raw_target, &VersionRange::default())?;
/// life.classified(&request, None);
/// let caller = Caller {
///     name: "ci".into(),
///     admin: false,
///     identified: true,
///     via: Identification::Listener { listener: "ci.sock".into() },
/// };
/// let target = Target::none(request.resource.kind, request.resource.name.as_deref());
/// let inspected = Inspected::default();
/// let decided = Decided {
///     caller: &caller,
///     request: &request,
///     target: &target,
///     file: None,
///     inspected: &inspected,
///     life: &life,
/// };
/// let decision = Decision {
///     allowed: true,
///     reasons: vec!["trust t-1 grants container.start".into()],
///     trust_id: Some("t-1".into()),
///     policy_version: "p1".into(),
/// };
/// let record = decided.record(&decision, true);
/// assert_eq!(record.action, "container.start");
/// assert_eq!((record.caller.as_str(), record.method.as_str()), ("ci", "POST"));
/// assert_eq!(record.path, "/containers/web-1/start");
/// assert_eq!(record.target_name.as_deref(), Some("web-1"));
/// assert!(record.allowed && record.enforced);
/// assert_eq!(record.trust_id.as_deref(), Some("t-1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Decided<'a> {
    pub caller: &'a Caller,
    pub request: &'a Classified,
    pub target: &'a Target,
    pub file: Option<&'a FileContext>,
    pub inspected: &'a Inspected,
    pub life: &'a Life,
}

impl Decided<'_> {
    /// Its record, with `decision`.
    pub fn record(&self, decision: &Decision, enforced: bool) -> AuditRecord {
        let (life, target) = (self.life, self.target);
        AuditRecord {
            path: self.request.path.clone(),
            target_id: target.id.clone(),
            target_name: target.name.clone().or_else(|| target.reference.clone()),
            resource_path: self
                .file
                .map(|f| f.path.clone())
                .or_else(|| life.resource_path.clone()),
            body_sha256: self.inspected.sha256.clone(),
            ..life.base_record(self.caller, decision, enforced)
        }
    }
}

/// The audit log cannot be written: refuse, in Docker's format.
pub fn log_unavailable(e: &str) -> http::Response<ProxyBody> {
    tracing::error!(error = %e, "decision log unavailable; refusing requests");
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("portcullis: the decision log cannot be written, so no request is served: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::next_request_id;

    #[test]
    fn request_ids_share_the_process_prefix_and_never_repeat() {
        let ids: Vec<String> = (0..1000).map(|_| next_request_id()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids
            .iter()
            .all(|id| id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit())));
        assert!(ids.iter().all(|id| id[..8] == ids[0][..8]));
    }
}
