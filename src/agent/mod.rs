//! The agent controls: what an agent platform uses to run its containers.
//! A rolling image update with rollback, the environment read and patched,
//! health, stats, logs and events as Server-Sent Events, and a watchdog.
//!
//! Why routes of this server and not a separate service: each is classified
//! (`container.update_image`, `container.env_update`, `container.health` …),
//! decided by the same policy and recorded in the same log before it runs,
//! like every Docker call; each handler takes a [`Permit`]. The work itself
//! is done over bollard, and every step that changes a container is recorded
//! too, under the request id of the decision that allowed it.
//!
//! | route | module |
//! |---|---|
//! | `POST /api/v1/containers/{id}/update-image`, `PATCH …/env` | [`update`] |
//! | `GET …/env` | [`env`] |
//! | `GET /api/v1/containers/health`, `…/{id}/health`, `…/{id}/stats` | [`health`] |
//! | `GET …/{id}/logs`, `GET /api/v1/events` | [`sse`] |
//! | the watchdog (`serve --watchdog`) | [`watchdog`] |

// A handler's early exit *is* its response, so errors are responses.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod env;
pub mod events;
pub mod health;
pub mod sse;
pub mod update;
pub mod watchdog;

use std::sync::Arc;

use bollard::Docker;
use http::{Response, StatusCode};

use crate::classify::AgentOp;
use crate::decide::Decide;
use crate::files::FileEvents;
use crate::record::{Decided, Permit, Record};
use crate::reply::{self, ProxyBody};
use crate::resolve::Resolver;

pub use events::{AgentEvent, AgentEvents};

/// The stages a handler needs after the decision: the decide stage (what
/// else the caller may see: secrets, other containers), the record stage
/// (each step of an update), and the resolver (containers named by id).
#[derive(Clone)]
pub struct Stages {
    pub decider: Arc<dyn Decide>,
    pub recorder: Arc<dyn Record>,
    pub resolver: Arc<Resolver>,
    /// Enforce mode (else audit-only: refusals are recorded, not enforced).
    pub enforced: bool,
}

/// The agent controls' state.
pub struct Agents {
    pub docker: Docker,
    /// portcullis's own events (`version-update`, `env-update`, `watchdog-restart`).
    pub events: AgentEvents,
    /// File changes made through the file API (`file-changed`).
    pub file_events: FileEvents,
    /// Containers with an update in progress: a second one gets 409.
    pub updating: update::InProgress,
    pub settings: Settings,
}

pub use crate::config::AgentSettings as Settings;

impl Agents {
    pub fn new(docker: Docker, file_events: FileEvents, settings: Settings) -> Self {
        Agents {
            docker,
            events: AgentEvents::default(),
            file_events,
            updating: update::InProgress::default(),
            settings,
        }
    }

    /// Serve one permitted agent control request, by the handler its route
    /// names. `headers`: the request's (a log stream resumes from `Last-Event-ID`).
    pub async fn serve(
        &self,
        op: AgentOp,
        permit: Permit,
        stages: &Stages,
        req: Decided<'_>,
        headers: &http::HeaderMap,
    ) -> Response<ProxyBody> {
        match op {
            AgentOp::UpdateImage => update::update_image(self, permit, stages, req).await,
            AgentOp::EnvPatch => update::patch_env(self, permit, stages, req).await,
            AgentOp::EnvGet => env::get(self, stages, req).await,
            AgentOp::HealthSummary => health::summary(self, stages, req).await,
            AgentOp::Health => health::one(self, stages, req).await,
            AgentOp::Stats => health::stats(self, stages, req).await,
            AgentOp::Logs => sse::logs(self, stages, req, headers).await,
            AgentOp::Events => sse::events(self, stages, req).await,
        }
    }
}

/// The container a request names, which the resolve stage found; else 404
/// in Docker's words.
pub fn existing_container(req: &Decided<'_>) -> Result<String, Response<ProxyBody>> {
    let target = req.target;
    match target.id.as_deref().filter(|_| target.exists) {
        Some(id) => Ok(id.to_string()),
        None => Err(reply::error(
            StatusCode::NOT_FOUND,
            format!(
                "No such container: {}",
                target.reference.clone().unwrap_or_default()
            ),
        )),
    }
}

/// A daemon error, with what was being done.
pub fn daemon_error(doing: &str, e: bollard::errors::Error) -> Response<ProxyBody> {
    let status = match &e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
            StatusCode::from_u16(*status_code).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    reply::error(status, format!("portcullis: {doing}: {e}"))
}
