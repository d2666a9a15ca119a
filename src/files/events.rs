//! File-change events: the pipeline publishes one after a successful write or
//! delete so watchers (an SSE stream, a config reloader) learn about it without
//! polling the container.
//!
//! A broadcast channel is used because watchers come and go and a slow one must
//! not block the file API: a lagging receiver loses old events (and is told so by
//! `RecvError::Lagged`) instead of applying back-pressure.

use serde::Serialize;
use tokio::sync::broadcast;

/// What happened to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    Write,
    Delete,
}

/// One change made through portcullis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChanged {
    /// The container as the caller named it.
    pub container: String,
    /// The normalized path that was written or deleted.
    pub path: String,
    pub action: FileAction,
}

/// Owner of the broadcast channel (the pipeline holds one).
#[derive(Debug, Clone)]
pub struct FileEvents {
    sender: broadcast::Sender<FileChanged>,
}

impl FileEvents {
    /// `capacity`: how many events a slow receiver may fall behind before it
    /// starts losing the oldest ones.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        FileEvents { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FileChanged> {
        self.sender.subscribe()
    }

    /// Publish an event; returns how many receivers got it (0 when nobody
    /// listens, which is not an error).
    pub fn publish(&self, event: FileChanged) -> usize {
        self.sender.send(event).unwrap_or(0)
    }
}

impl Default for FileEvents {
    fn default() -> Self {
        FileEvents::new(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_published_events() {
        let events = FileEvents::new(4);
        assert_eq!(
            events.publish(FileChanged {
                container: "c".into(),
                path: "/a".into(),
                action: FileAction::Write,
            }),
            0
        );
        let mut rx = events.subscribe();
        let event = FileChanged {
            container: "c".into(),
            path: "/app/x".into(),
            action: FileAction::Delete,
        };
        assert_eq!(events.publish(event.clone()), 1);
        assert_eq!(rx.recv().await.unwrap(), event);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"container":"c","path":"/app/x","action":"delete"})
        );
    }
}
