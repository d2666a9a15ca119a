//! Watching a policy directory: reload whenever a `.rego` file changes.
//!
//! Why apart: the watcher owns a thread and a `notify` handle; the engine only
//! sees calls to [`PolicyEngine::reload_policies`].

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::PolicyEngine;

impl PolicyEngine {
    /// Reload the policies whenever a `.rego` file in `dir` changes (debounced
    /// by 150 ms). The watch stops when the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, dir: PathBuf) -> notify::Result<PolicyWatcher> {
        use notify::{RecursiveMode, Watcher};
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    let relevant = event
                        .paths
                        .iter()
                        .any(|p| p.extension().and_then(|e| e.to_str()) == Some("rego"))
                        || event.paths.is_empty();
                    if relevant && !matches!(event.kind, notify::EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let engine: Weak<PolicyEngine> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Debounce: wait for 150 ms of quiet.
                    while rx.recv_timeout(Duration::from_millis(150)).is_ok() {}
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    let _ = engine.reload_policies();
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(PolicyWatcher {
            _watcher: watcher,
            _thread: thread,
        })
    }
}

/// Keeps a directory watch alive.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
    _thread: std::thread::JoinHandle<()>,
}
