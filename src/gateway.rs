//! The gateway: everything the stages share, built once by `serve` and cloned
//! per worker.
//!
//! Why a module of its own: only [`crate::pipeline`] (and `server`, which
//! builds it) may see the whole of it. The pipeline hands each stage just the
//! fields that stage needs, so no stage depends on the pipeline above it.

use std::sync::Arc;

use crate::classify::VersionRange;
use crate::config::{Limits, Mode};
use crate::decide::Decide;
use crate::forward::Daemon;
use crate::identify::Credentials;
use crate::record::Record;
use crate::resolve::Resolver;
use crate::services::Local;

/// Everything the stages share.
#[derive(Clone)]
pub struct Gateway {
    /// The daemon, reached only with a `Permit`.
    pub daemon: Daemon,
    pub versions: VersionRange,
    pub admin_uids: Vec<u32>,
    pub credentials: Arc<dyn Credentials>,
    pub decider: Arc<dyn Decide>,
    pub recorder: Arc<dyn Record>,
    pub resolver: Arc<Resolver>,
    pub services: Arc<Local>,
    /// The agent controls (update-image, env, health, logs, events).
    pub agents: Arc<crate::agent::Agents>,
    /// Whether a trust relationship's target selector cannot change with a
    /// container's name (`*` or a label selector): see [`crate::resolve`].
    pub selector_is_immutable: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    pub mode: Mode,
    pub limits: Limits,
}

impl Gateway {
    /// Whether denials are enforced (else recorded as would-be denials and served).
    pub fn enforced(&self) -> bool {
        self.mode == Mode::Enforce
    }

    /// What the agent controls need after the decision.
    pub fn agent_stages(&self) -> crate::agent::Stages {
        crate::agent::Stages {
            decider: self.decider.clone(),
            recorder: self.recorder.clone(),
            resolver: self.resolver.clone(),
            enforced: self.enforced(),
        }
    }

    /// What the filter step needs.
    pub fn filter(&self) -> crate::filter::Context<'_> {
        crate::filter::Context {
            decider: &self.decider,
            resolver: &self.resolver,
            recorder: &self.recorder,
            enforced: self.enforced(),
        }
    }
}
