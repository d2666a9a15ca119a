//! Refuse: the answer to a request that is not served, once its refusal is
//! recorded.
//!
//! Why a module: a refusal is the other end of the pipeline from forwarding,
//! and the one place that says what a refused caller is told (portcullis's
//! message with its decision id, in Docker's error format; or, for a lookup,
//! what the daemon says of a container that does not exist).

use http::{Response, StatusCode};

use crate::classify::{Action, Classified, ClassifyError};
use crate::decide::{self, Decide, Decision};
use crate::identify::Caller;
use crate::record::{log_unavailable, Life, Record};
use crate::reply::{self, ProxyBody};
use crate::resolve::Target;

/// The status for a request the table cannot classify.
pub fn classify_status(e: &ClassifyError) -> StatusCode {
    match e {
        ClassifyError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A refusal before a decision could be made (bad credential, unknown
/// route, unreadable body): recorded as a denial, then answered.
pub async fn early(
    recorder: &dyn Record,
    life: &Life,
    caller: &Caller,
    status: StatusCode,
    reason: &str,
) -> Response<ProxyBody> {
    let record = life.early_record(caller, &Decision::deny(reason, "-"));
    let id = match recorder.append(record).await {
        Ok(seq) => {
            tracing::Span::current().record("decision", seq);
            seq.to_string()
        }
        Err(e) => return log_unavailable(&e),
    };
    let what = life.what();
    reply::error(
        status,
        format!(
            "portcullis: {} may not {what}: {reason} (decision {id})",
            caller.name
        ),
    )
}

/// The answer to a denied (and recorded) request.
pub fn denied(
    decider: &dyn Decide,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    decision: &Decision,
    id: u64,
) -> Response<ProxyBody> {
    if let Some(absent) = absence_answer(decider, caller, request, target) {
        return absent;
    }
    let reason = if decision.reasons.is_empty() {
        "no policy rule allows it".to_string()
    } else {
        decision.reasons.join("; ")
    };
    let target_name = match (&target.name, &target.reference) {
        (Some(n), _) | (None, Some(n)) => n.clone(),
        _ => request.resource.name.clone().unwrap_or_else(|| "-".into()),
    };
    reply::refusal(
        StatusCode::FORBIDDEN,
        &caller.name,
        request.action.as_str(),
        &target_name,
        &reason,
        &id.to_string(),
    )
}

/// One action for each right a trust relationship can grant on a container
/// (policies/actions.rego `container_rights`).
const CONTAINER_RIGHTS: [Action; 10] = [
    Action::CONTAINER_INSPECT,
    Action::CONTAINER_START,
    Action::CONTAINER_STOP,
    Action::CONTAINER_RESTART,
    Action::CONTAINER_REMOVE,
    Action::CONTAINER_EXEC,
    Action::CONTAINER_ATTACH,
    Action::CONTAINER_LOGS,
    Action::CONTAINER_STATS,
    Action::CONTAINER_INSPECT_SECRETS,
];

/// The rule for refusals about a container (policies/README.md): every
/// refusal is portcullis's, with its decision id, except a lookup
/// (`container.inspect`, which the docker CLI makes before exec, cp, attach,
/// …) by a caller that holds no right at all on the container. That one is
/// told what the daemon tells of a container that does not exist, so a
/// lookup leaks neither a name nor existence. `None`: refuse as usual.
fn absence_answer(
    decider: &dyn Decide,
    caller: &Caller,
    request: &Classified,
    target: &Target,
) -> Option<Response<ProxyBody>> {
    if request.action != Action::CONTAINER_INSPECT {
        return None;
    }
    let reference = request.resource.name.as_deref()?;
    let holds_a_right = target.exists
        && CONTAINER_RIGHTS
            .iter()
            .any(|action| decide::may(decider, caller, request, target, *action));
    (!holds_a_right).then(|| {
        reply::error(
            StatusCode::NOT_FOUND,
            format!("No such container: {reference}"),
        )
    })
}
