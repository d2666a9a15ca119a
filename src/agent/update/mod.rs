//! Recreate a container on a new image (`POST …/update-image`) or with a
//! changed environment (`PATCH …/env`), with rollback: the old container is
//! never lost.
//!
//! Why one recreate for both: an env change needs a new container just as an
//! image change does, and the guarantees (the old one keeps its name and data
//! until the new one is proven; every step recorded; rollback on any failure)
//! must be the same. [`carry`] decides what the new container carries over,
//! [`recreate`] runs and records the steps.
//!
//! Why the work runs in a task of its own: a client that hangs up must not
//! stop an update half way (the old container stopped, the new one unproven);
//! the update finishes, or rolls back, either way.

pub mod body;
pub mod carry;
pub mod recreate;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bollard::models::ContainerInspectResponse;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{daemon_error, existing_container, AgentEvent, Agents, Stages};
use crate::classify::Action;
use crate::decide::Decision;
use crate::record::{Decided, Permit};
use crate::reply::{self, ProxyBody};
pub use body::{has_tag_or_digest, parse_env_patch, parse_update_image};
use carry::Carry;
use recreate::{Ctx, Job, Outcome};

/// Containers (by id) with an update in progress.
#[derive(Debug, Default, Clone)]
pub struct InProgress(Arc<Mutex<HashSet<String>>>);

/// An update in progress on one container, until dropped.
#[derive(Debug)]
pub struct Updating {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl InProgress {
    /// `None` when an update of `id` is already in progress.
    pub fn begin(&self, id: &str) -> Option<Updating> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(id.to_string()).then(|| Updating {
            set: self.0.clone(),
            id: id.to_string(),
        })
    }
}

impl Drop for Updating {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.id);
    }
}

/// A container's name without the leading `/`.
pub fn container_name(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}

/// What both handlers share up to the recreate: the container, inspected,
/// and the lock on it.
async fn prepare(
    agents: &Agents,
    req: &Decided<'_>,
) -> Result<(ContainerInspectResponse, Updating), Response<ProxyBody>> {
    let id = existing_container(req)?;
    let Some(updating) = agents.updating.begin(&id) else {
        let name = req.target.display();
        return Err(reply::error(
            StatusCode::CONFLICT,
            format!("portcullis: an update of container {name} is already in progress"),
        ));
    };
    let old = agents
        .docker
        .inspect_container(&id, None)
        .await
        .map_err(|e| daemon_error(&format!("inspecting container {id}"), e))?;
    let auto_remove = old
        .host_config
        .as_ref()
        .and_then(|h| h.auto_remove)
        .unwrap_or(false);
    if auto_remove {
        return Err(reply::error(
            StatusCode::CONFLICT,
            format!(
                "portcullis: container {} was started with --rm: stopping it would remove it, so it could not be rolled back; it is not updated",
                container_name(&old)
            ),
        ));
    }
    Ok((old, updating))
}

/// The context of the recreate: where step records go, under which decision.
fn context(agents: &Agents, permit: &Permit, stages: &Stages, req: &Decided<'_>) -> Ctx {
    let step = Decision {
        allowed: true,
        reasons: Vec::new(),
        trust_id: None,
        policy_version: "-".into(),
    };
    let mut base = req.record(&step, true);
    base.action = Action::CONTAINER_UPDATE_STEP.to_string();
    Ctx {
        docker: agents.docker.clone(),
        recorder: stages.recorder.clone(),
        base,
        decision_id: permit.decision_id(),
        ready_timeout: agents.settings.ready_timeout,
    }
}

/// Run the job in a task of its own (see the module docs), holding the lock
/// until it ends; `done` (the closing event) runs in the task too, so it is
/// published even if the client has gone.
async fn run(
    ctx: Ctx,
    job: Job,
    updating: Updating,
    done: impl FnOnce(&Outcome) + Send + 'static,
) -> Outcome {
    let task = tokio::spawn(async move {
        let outcome = recreate::run(&ctx, job).await;
        drop(updating);
        done(&outcome);
        outcome
    });
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed {
            new_id: None,
            error: format!("the update task ended abnormally: {e}"),
        },
    }
}

/// The status word of an outcome, for events and answers.
fn status_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done { status, .. } => status,
        Outcome::RolledBack { .. } => "rolled-back",
        Outcome::NothingChanged { .. } | Outcome::Failed { .. } => "failed",
    }
}

/// The answer: 200 done; 502 rolled back (the old container is as it was);
/// 500 failed with the rollback incomplete; a plain Docker-style error when
/// nothing was changed. `extra` is merged into the JSON answers.
fn answer(outcome: Outcome, old_id: &str, name: &str, extra: Value) -> Response<ProxyBody> {
    let (status, mut body) = match outcome {
        Outcome::Done { new_id, status } => (
            StatusCode::OK,
            json!({"success": true, "oldContainerId": old_id, "newContainerId": new_id, "container": name, "status": status}),
        ),
        Outcome::NothingChanged { status, message } => return reply::error(status, message),
        Outcome::RolledBack { new_id, error } => (
            StatusCode::BAD_GATEWAY,
            json!({
                "success": false, "oldContainerId": old_id, "newContainerId": new_id,
                "container": name, "status": "rolled-back", "rolledBack": true, "error": error,
                "message": format!("portcullis: the update of {name} was rolled back: {error}"),
            }),
        ),
        Outcome::Failed { new_id, error } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "success": false, "oldContainerId": old_id, "newContainerId": new_id,
                "container": name, "status": "failed", "rolledBack": false, "error": error,
                "message": format!("portcullis: the update of {name} failed: {error}"),
            }),
        ),
    };
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    reply::json(status, &body)
}

fn detail(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Done { .. } => None,
        Outcome::NothingChanged { message, .. } => Some(message.clone()),
        Outcome::RolledBack { error, .. } | Outcome::Failed { error, .. } => Some(error.clone()),
    }
}

fn new_id_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Done { new_id, .. } => Some(new_id.clone()),
        Outcome::RolledBack { new_id, .. } | Outcome::Failed { new_id, .. } => new_id.clone(),
        Outcome::NothingChanged { .. } => None,
    }
}

pub async fn update_image(
    agents: &Agents,
    permit: Permit,
    stages: &Stages,
    req: Decided<'_>,
) -> Response<ProxyBody> {
    let (image, carry) = match parse_update_image(&req.inspected.canonical) {
        Ok(parsed) => parsed,
        Err((status, message)) => return reply::error(status, message),
    };
    let (old, updating) = match prepare(agents, &req).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    let (old_id, name) = (old.id.clone().unwrap_or_default(), container_name(&old));
    let (events, id, n, i) = (
        agents.events.clone(),
        old_id.clone(),
        name.clone(),
        image.clone(),
    );
    let event = move |status: &str, new_id: Option<String>, detail: Option<String>| {
        events.publish(AgentEvent::VersionUpdate {
            container_id: id.clone(),
            container: n.clone(),
            image: i.clone(),
            status: status.to_string(),
            new_container_id: new_id,
            detail,
        });
    };
    event("started", None, None);
    let job = Job {
        old,
        image: image.clone(),
        carry,
        env: None,
        what: "update",
    };
    let done = move |o: &Outcome| event(status_word(o), new_id_of(o), detail(o));
    let outcome = run(context(agents, &permit, stages, &req), job, updating, done).await;
    answer(outcome, &old_id, &name, json!({ "image": image }))
}

pub async fn patch_env(
    agents: &Agents,
    permit: Permit,
    stages: &Stages,
    req: Decided<'_>,
) -> Response<ProxyBody> {
    let change = match parse_env_patch(&req.inspected.canonical) {
        Ok(change) => change,
        Err((status, message)) => return reply::error(status, message),
    };
    let (old, updating) = match prepare(agents, &req).await {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    let (old_id, name) = (old.id.clone().unwrap_or_default(), container_name(&old));
    // The same image: by the name it was created with while that still
    // names the same image, else by id (a moved tag is not an upgrade).
    let image_id = old.image.clone().unwrap_or_default();
    let configured = old.config.as_ref().and_then(|c| c.image.clone());
    let image = match configured {
        Some(reference) => match agents.docker.inspect_image(&reference).await {
            Ok(i) if i.id.as_deref() == Some(image_id.as_str()) => reference,
            _ => image_id.clone(),
        },
        None => image_id.clone(),
    };
    let set: Vec<String> = change.set.keys().cloned().collect();
    let unset: Vec<String> = change.unset.iter().cloned().collect();
    let names: Vec<String> = set.iter().chain(unset.iter()).cloned().collect();
    let (events, id, n) = (agents.events.clone(), old_id.clone(), name.clone());
    let event = move |status: &str, new_id: Option<String>, detail: Option<String>| {
        events.publish(AgentEvent::EnvUpdate {
            container_id: id.clone(),
            container: n.clone(),
            status: status.to_string(),
            names: names.clone(),
            new_container_id: new_id,
            detail,
        });
    };
    event("started", None, None);
    let job = Job {
        old,
        image,
        carry: Carry {
            volumes: true,
            networks: true,
        },
        env: Some(change),
        what: "env update",
    };
    let done = move |o: &Outcome| event(status_word(o), new_id_of(o), detail(o));
    let outcome = run(context(agents, &permit, stages, &req), job, updating, done).await;
    answer(
        outcome,
        &old_id,
        &name,
        json!({ "set": set, "unset": unset }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_update_per_container_until_the_guard_drops() {
        let p = InProgress::default();
        let first = p.begin("c1").expect("first");
        assert!(p.begin("c1").is_none());
        assert!(p.begin("c2").is_some());
        drop(first);
        assert!(p.begin("c1").is_some());
    }
}
