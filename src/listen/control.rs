//! What every worker shares: the connection slots, the per-caller slots,
//! the stop signal and the refusal counters, so limits and a clean stop hold
//! across all listeners and workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::accept::Accepted;
use super::{Connection, RefusalRecorder, Refusals, Refused};
use crate::config::Limits;

/// What the listeners share across workers: the connection slots, the
/// per-caller slots, the stop signal and the refusal counters.
pub struct Control {
    pub(super) slots: Arc<Semaphore>,
    max_connections: usize,
    pub(super) callers: CallerSlots,
    stop: watch::Sender<bool>,
    pub refusals: Arc<Refusals>,
    recorder: Option<RefusalRecorder>,
    /// Connections open on each listener, by its label (for `/metrics`).
    by_listener: Mutex<Vec<(String, Arc<AtomicUsize>)>>,
}

/// Counts a connection as open on its listener while it lives.
pub(super) struct OpenOnListener(Arc<AtomicUsize>);

impl OpenOnListener {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenOnListener(count.clone())
    }
}

impl Drop for OpenOnListener {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Control {
    pub(super) async fn record_refused(&self, conn: Arc<Connection>, refused: Refused) {
        if let Some(record) = &self.recorder {
            record(conn, refused).await;
        }
    }

    pub fn new(limits: &Limits, recorder: Option<RefusalRecorder>) -> Arc<Control> {
        Arc::new(Control {
            recorder,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            max_connections: limits.max_connections,
            callers: CallerSlots {
                max: limits.max_connections_per_caller.max(1),
                open: Mutex::new(HashMap::new()),
            },
            stop: watch::channel(false).0,
            refusals: Arc::new(Refusals::default()),
            by_listener: Mutex::new(Vec::new()),
        })
    }

    /// The open-connection count of the listener `label` (made at its first use).
    pub(super) fn listener_count(&self, label: &str) -> Arc<AtomicUsize> {
        let mut all = self.by_listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, n)) = all.iter().find(|(l, _)| l == label) {
            return n.clone();
        }
        let n = Arc::new(AtomicUsize::new(0));
        all.push((label.to_string(), n.clone()));
        n
    }

    /// Connections open on each listener.
    pub fn open_by_listener(&self) -> Vec<(String, usize)> {
        let all = self.by_listener.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .map(|(l, n)| (l.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Stop accepting, and ask every connection to close once its request in
    /// flight is answered (idle keep-alive connections close at once).
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    pub(super) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// The connections still open.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// Wait until every connection has closed, at most `grace`; true if they
    /// all did. An upgraded (hijacked) stream no longer counts: it is closed
    /// with its worker.
    pub async fn drained(&self, grace: Duration) -> bool {
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, self.slots.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                drop(permits);
                true
            }
            _ => false,
        }
    }
}

/// Who a connection belongs to for `--max-connections-per-caller`, as the
/// transport tells it at accept, before a byte is read: the listener's pinned
/// caller, else the unix peer's uid, else the client's IP address (for TLS too:
/// the certificate is known only after a handshake the client itself can stall).
/// A token names its caller only per request, too late for a connection limit.
pub(super) fn connection_owner(pinned: Option<&str>, accepted: &Accepted) -> String {
    if let Some(name) = pinned {
        return format!("caller:{name}");
    }
    match accepted {
        Accepted::Unix(s) => match s.peer_cred() {
            Ok(c) => format!("uid:{}", c.uid()),
            Err(_) => "uid:?".to_string(),
        },
        Accepted::Tcp(_, addr) | Accepted::Tls(_, addr, _) => format!("ip:{}", addr.ip()),
    }
}

/// Connections open per owner, shared by every worker.
pub(super) struct CallerSlots {
    pub(super) max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One owner's open connection; gives its slot back when dropped.
pub(super) struct CallerSlot<'a> {
    slots: &'a CallerSlots,
    owner: String,
}

impl CallerSlots {
    pub(super) fn take(&self, owner: String) -> Option<CallerSlot<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(owner.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(CallerSlot { slots: self, owner })
    }
}

impl Drop for CallerSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_holds_at_most_its_share_and_gets_slots_back() {
        let slots = CallerSlots {
            max: 2,
            open: Mutex::new(HashMap::new()),
        };
        let a1 = slots.take("uid:1".into()).expect("first");
        let a2 = slots.take("uid:1".into()).expect("second");
        assert!(slots.take("uid:1".into()).is_none(), "over the share");
        let b = slots
            .take("uid:2".into())
            .expect("another caller is not held back");
        drop(a1);
        let a3 = slots
            .take("uid:1".into())
            .expect("a closed connection frees its slot");
        drop((a2, a3, b));
        assert!(
            slots.open.lock().unwrap().is_empty(),
            "no owner left behind"
        );
    }
}
