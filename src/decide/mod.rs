//! Decide: allow or deny, with every reason, from Rego policies over trust data.
//!
//! The pipeline calls one function, [`Decide::decide`], with one narrow input,
//! [`PolicyInput`]; the same call serves proxied Docker requests, the admin API,
//! the file API and `trust/check`. There is no second path.
//!
//! The engine ([`engine::PolicyEngine`]) runs the Rego policies in `policies/`
//! (embedded, or a directory given with `--policies`) on regorus's compiled VM,
//! over facts the Rust side precomputes ([`facts`]), with the input serialized
//! straight into regorus's value type ([`value`]); [`tools`] holds the policy
//! author's `check`, `test` and `eval`.

pub mod bundle;
pub mod engine;
pub mod facts;
mod failclosed;
mod lint;
pub mod tools;
pub mod value;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use engine::{
    CompileError, Evaluator, PolicyEngine, PolicySource, PolicyStatus, PolicyWatcher, Template,
};
pub use tools::{policy_check, policy_eval, policy_test, CheckReport, TestOutcome, TestReport};

use crate::classify::{Action, Classified, Resource};
use crate::identify::Caller;
use crate::inspect::Inspected;
use crate::resolve::Target;
// The file facts are found by the resolve stage; the policy reads them here.
pub use crate::resolve::{FileContext, MountInfo};

/// The request as the policy sees it (documented in `policies/README.md`).
#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    pub method: String,
    /// Decoded path without the version prefix.
    pub path: String,
    /// Query (and merged form) parameters: every value, in order, per key.
    pub query: BTreeMap<String, Vec<String>>,
    /// The `/vX.Y` prefix, if any.
    pub version: Option<String>,
}

/// Everything a policy decides on: `input` in the Rego policies
/// (`policies/README.md` documents each field).
///
/// ```
/// use portcullis::classify::{classify, Action, VersionRange};
/// use portcullis::decide::PolicyInput;
/// use portcullis::identify::{Caller, Identification};
/// use portcullis::inspect::Inspected;
/// use portcullis::resolve::Target;
///
/// let request = classify("POST", "/v1.41/containers/web-1/start", &VersionRange::default())?;
/// assert_eq!(request.action, Action::CONTAINER_START);
/// let caller = Caller {
///     name: "ci".into(),
///     admin: false,
///     identified: true,
///     via: Identification::Listener { listener: "ci.sock".into() },
/// };
/// let target = Target::none(request.resource.kind, request.resource.name.as_deref());
/// let input = PolicyInput::of(&caller, &request, &target, &Inspected::default(), None);
///
/// let input = serde_json::to_value(&input)?;
/// assert_eq!(input["action"], "container.start");
/// assert_eq!(input["caller"]["name"], "ci");
/// assert_eq!(input["resource"], serde_json::json!({"kind": "container", "name": "web-1"}));
/// assert_eq!(input["request"]["method"], "POST");
/// assert_eq!(input["request"]["path"], "/containers/web-1/start");
/// assert_eq!(input["request"]["version"], "1.41");
/// assert_eq!(input["target"]["name"], "web-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput {
    pub caller: Caller,
    pub action: Action,
    pub resource: Resource,
    pub target: Target,
    pub request: RequestInfo,
    /// The canonical body (see [`crate::inspect`]); `null` when not inspected.
    pub body: Value,
    pub file: Option<FileContext>,
    /// RFC 3339 time of the decision, for expiry checks.
    pub now: String,
}

impl PolicyInput {
    /// The input for deciding `action` on `target`: the one builder every
    /// decision's input comes from (see [`PolicyInput::of`] for a request's).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        caller: &Caller,
        action: Action,
        resource: Resource,
        target: &Target,
        request: RequestInfo,
        body: Value,
        file: Option<FileContext>,
    ) -> Self {
        PolicyInput {
            caller: caller.clone(),
            action,
            resource,
            target: target.clone(),
            request,
            body,
            file,
            now: now_rfc3339(),
        }
    }

    /// The input for one classified, inspected and resolved request.
    pub fn of(
        caller: &Caller,
        request: &Classified,
        target: &Target,
        inspected: &Inspected,
        file: Option<FileContext>,
    ) -> Self {
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &inspected.form {
            query.entry(k.clone()).or_default().push(v.clone());
        }
        let info = RequestInfo {
            method: request.route.method.to_string(),
            path: request.path.clone(),
            query,
            version: request.version.map(|v| v.to_string()),
        };
        let body = inspected.canonical.clone();
        let resource = request.resource.clone();
        Self::new(caller, request.action, resource, target, info, body, file)
    }
}

/// Now, as the policies' `input.now` shows it.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Whether `caller` may perform `action` on `target` (asked by the filters
/// and the refusal, with the request's other facts but no body).
pub fn may(
    decider: &dyn Decide,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    action: Action,
) -> bool {
    let mut input = PolicyInput::of(caller, request, target, &Inspected::default(), None);
    input.action = action;
    input.body = Value::Null;
    decider.decide(&input).allowed
}

/// Whether a decision made on cached container data must be made again on a
/// fresh look: a denial (the cache may be behind), or an allow that matched a
/// trust selector which depends on the container's name
/// (`selector_is_immutable` says which do not).
pub fn needs_fresh_look(
    selector_is_immutable: &dyn Fn(&str) -> bool,
    caller: &Caller,
    target: &Target,
    decision: &Decision,
) -> bool {
    if caller.admin || !target.from_cache {
        return false;
    }
    if !decision.allowed {
        return true;
    }
    match &decision.trust_id {
        Some(id) => !selector_is_immutable(id),
        None => true,
    }
}

/// The narrow type that leaves this stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// Every deny message (or, when allowed, why).
    pub reasons: Vec<String>,
    /// The trust relationship that matched, if any.
    pub trust_id: Option<String>,
    /// Hash of the loaded policy set and the trust data revision.
    pub policy_version: String,
}

impl Decision {
    pub fn deny(reason: impl Into<String>, policy_version: &str) -> Self {
        Decision {
            allowed: false,
            reasons: vec![reason.into()],
            trust_id: None,
            policy_version: policy_version.to_string(),
        }
    }
}

/// The decision step. Implementations must fail closed: an evaluation error is a deny.
pub trait Decide: Send + Sync {
    fn decide(&self, input: &PolicyInput) -> Decision;
}
