//! portcullis's own events: what the agent controls did, for `GET
//! /api/v1/events` beside the daemon's container events.
//!
//! Why a broadcast channel: watchers come and go, and a slow one must not hold
//! up an update; a receiver that falls behind loses the oldest events and is
//! told so (`RecvError::Lagged`), as with [`crate::files::FileEvents`].

use serde::Serialize;
use tokio::sync::broadcast;

/// One event. Each names its container by id and name, so that a stream shows
/// it only to callers who may inspect that container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AgentEvent {
    /// An update-image step: `status` is `started`, then `running` (done),
    /// `created` (done, for a container that was not running: the new one is
    /// left stopped too), `rolled-back` or `failed`. An env patch's events
    /// (`EnvUpdate`) take the same statuses.
    #[serde(rename_all = "camelCase")]
    VersionUpdate {
        container_id: String,
        container: String,
        image: String,
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_container_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// An env patch: which names were set or unset (never their values).
    #[serde(rename_all = "camelCase")]
    EnvUpdate {
        container_id: String,
        container: String,
        status: String,
        names: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_container_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The watchdog restarted (or was refused, or gave up on) a container.
    #[serde(rename_all = "camelCase")]
    WatchdogRestart {
        container_id: String,
        container: String,
        /// `restarted`, `refused`, `failed` or `gave-up`.
        status: String,
        attempt: u32,
        /// The delay before this attempt, in milliseconds.
        delay_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl AgentEvent {
    /// The SSE event name (`version-update`, `env-update`, `watchdog-restart`).
    pub fn name(&self) -> &'static str {
        match self {
            AgentEvent::VersionUpdate { .. } => "version-update",
            AgentEvent::EnvUpdate { .. } => "env-update",
            AgentEvent::WatchdogRestart { .. } => "watchdog-restart",
        }
    }

    /// The container it is about: (id, name).
    pub fn container(&self) -> (&str, &str) {
        match self {
            AgentEvent::VersionUpdate {
                container_id,
                container,
                ..
            }
            | AgentEvent::EnvUpdate {
                container_id,
                container,
                ..
            }
            | AgentEvent::WatchdogRestart {
                container_id,
                container,
                ..
            } => (container_id, container),
        }
    }
}

/// Owner of the broadcast channel.
#[derive(Debug, Clone)]
pub struct AgentEvents {
    sender: broadcast::Sender<AgentEvent>,
}

impl AgentEvents {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        AgentEvents { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.sender.subscribe()
    }

    /// Publish; nobody listening is not an error.
    pub fn publish(&self, event: AgentEvent) -> usize {
        self.sender.send(event).unwrap_or(0)
    }
}

impl Default for AgentEvents {
    fn default() -> Self {
        AgentEvents::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_type_and_camel_case_fields() {
        let e = AgentEvent::WatchdogRestart {
            container_id: "abc".into(),
            container: "web".into(),
            status: "restarted".into(),
            attempt: 2,
            delay_ms: 1500,
            detail: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "watchdog-restart");
        assert_eq!(v["containerId"], "abc");
        assert_eq!(v["delayMs"], 1500);
        assert_eq!(e.name(), "watchdog-restart");
        assert_eq!(e.container(), ("abc", "web"));
    }
}
