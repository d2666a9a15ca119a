//! Exec instances: who created each one, and a second look when it is used.
//!
//! Why: `POST /exec/{id}/start` (and resize, inspect) names only the exec id,
//! yet it runs whatever the exec was created with (privileged, user,
//! command), possibly by another caller or directly on the daemon. The create
//! is where a refusal reaches the user (the CLI shows only "unable to upgrade"
//! for a refused start, see NOTES.md), so this is the second line of defence:
//! the exec's real configuration is looked up from the daemon and decided as
//! the `container.exec` that would have created it, so a caller never starts
//! an exec it could not have created; and an exec another caller created
//! through portcullis is theirs alone.
//!
//! Creators are remembered in memory from the exec create responses, at most
//! [`crate::resolve::EXEC_CREATORS_CAPACITY`] of them (the oldest are forgotten first). After a restart, or
//! for an exec created directly on the daemon, the creator is unknown and the
//! exec is judged on its configuration alone.

use serde_json::{json, Value};

use crate::classify::{Action, Classified};
use crate::decide::{Decide, Decision, PolicyInput};
use crate::identify::Caller;
use crate::inspect::Inspected;
use crate::resolve::{Resolver, Target};

/// The actions that use an existing exec instance.
fn uses_an_exec(action: Action) -> bool {
    matches!(
        action,
        Action::EXEC_START | Action::EXEC_RESIZE | Action::EXEC_INSPECT
    )
}

/// Decide again, for an allowed use of an exec instance, on who created it
/// and on its real configuration; any other decision is returned unchanged.
pub async fn second_look(
    resolver: &Resolver,
    decider: &dyn Decide,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    decision: Decision,
) -> Decision {
    if !decision.allowed || caller.admin || !uses_an_exec(request.action) {
        return decision;
    }
    let Some(exec_id) = request.resource.name.as_deref() else {
        return decision;
    };
    let deny = |reason: String| Decision {
        allowed: false,
        reasons: vec![reason],
        trust_id: None,
        policy_version: decision.policy_version.clone(),
    };
    if let Some(creator) = resolver.exec_creators.creator(exec_id) {
        if creator != caller.name {
            return deny(format!(
                "exec {exec_id} was created by caller {creator}; only its creator may use it"
            ));
        }
    }
    let exec = match resolver.docker().inspect_exec(exec_id).await {
        Ok(exec) => exec,
        Err(e) => return deny(format!("cannot look up exec {exec_id} in the daemon: {e}")),
    };
    // Without its configuration an exec cannot be judged: refuse.
    let Some(config) = exec.process_config else {
        return deny(format!(
            "exec {exec_id}: the daemon did not say what it runs"
        ));
    };
    let body = exec_create_body(config);
    let inspected = Inspected {
        canonical: body,
        ..Inspected::default()
    };
    let mut input = PolicyInput::of(caller, request, target, &inspected, None);
    input.action = Action::CONTAINER_EXEC;
    let as_created = decider.decide(&input);
    if as_created.allowed {
        return decision;
    }
    deny(format!(
        "exec {exec_id} runs what it was created with, and creating it is not allowed: {}",
        as_created.reasons.join("; ")
    ))
}

/// The `POST /containers/{id}/exec` body that would create an exec with this
/// configuration, as the policy reads a create.
fn exec_create_body(config: bollard::models::ProcessConfig) -> Value {
    let cmd: Vec<String> = config
        .entrypoint
        .into_iter()
        .chain(config.arguments.unwrap_or_default())
        .collect();
    json!({
        "Privileged": config.privileged.unwrap_or(false),
        "User": config.user.unwrap_or_default(),
        "Tty": config.tty.unwrap_or(false),
        "Cmd": cmd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_body_carries_the_real_configuration() {
        let body = exec_create_body(bollard::models::ProcessConfig {
            privileged: Some(true),
            user: Some("root".into()),
            tty: None,
            entrypoint: Some("sh".into()),
            arguments: Some(vec!["-c".into(), "id".into()]),
        });
        assert_eq!(
            body,
            json!({"Privileged": true, "User": "root", "Tty": false, "Cmd": ["sh", "-c", "id"]})
        );
    }
}
