//! The watchdog: restart unhealthy containers that opt in with the label
//! `portcullis.watchdog=restart`, with backoff, and give up after a limit.
//!
//! Why through the pipeline's stages: a restart by the watchdog is power over
//! a container like any caller's, so it is one. Each restart is the request
//! `POST /containers/{id}/restart` by the built-in caller `watchdog`,
//! classified by the same table, decided by the same policy (an operator
//! grants `watchdog` `can_restart`, e.g. on `label:portcullis.watchdog=restart`)
//! and recorded before it runs. Without that grant every attempt is a
//! recorded denial, and nothing restarts.
//!
//! Why events and not polling: the daemon reports each health change
//! (`health_status: unhealthy`), so an idle host costs nothing. A scan at
//! start (and after the event stream drops) catches containers that turned
//! unhealthy while nobody listened.
//!
//! The schedule, per container: the n-th restart within the window waits
//! `delay × 1.5^(n-1)` after the container is reported unhealthy, and is
//! skipped if it is no longer unhealthy by then. After `max_restarts`
//! restarts within the window the watchdog stops trying, records that it gave
//! up (`container.watchdog`) and emits a `watchdog-restart` event with status
//! `gave-up`; it tries again only once the oldest of those restarts has left
//! the window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::{EventsOptions, ListContainersOptions, RestartContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use super::{AgentEvent, AgentEvents, Settings};
use crate::classify::{self, Action, VersionRange};
use crate::decide::{Decide, Decision, PolicyInput};
use crate::identify::{Caller, Identification};
use crate::inspect::Inspected;
use crate::record::{self, AuditRecord, Decided, Life, Record, Recorded};
use crate::resolve::{Freshness, Resolver};

/// The label a container opts in with, and its value.
pub const LABEL: &str = "portcullis.watchdog";
pub const LABEL_VALUE: &str = "restart";

/// The caller every watchdog decision is made for.
pub const CALLER: &str = "watchdog";

/// How much longer each restart waits than the one before.
const BACKOFF: f64 = 1.5;

/// What the watchdog needs: the daemon, and the decide and record stages.
pub struct Watchdog {
    pub docker: Docker,
    pub decider: Arc<dyn Decide>,
    pub recorder: Arc<dyn Record>,
    pub resolver: Arc<Resolver>,
    pub events: AgentEvents,
    pub settings: Settings,
    /// Enforce mode (in audit-only mode a denied restart is recorded and done).
    pub enforced: bool,
}

/// One container's restarts.
#[derive(Default)]
struct Track {
    /// When each restart within the window happened.
    restarts: VecDeque<Instant>,
    /// A restart is scheduled: further reports wait for it.
    pending: bool,
    /// Gave up: until the oldest restart leaves the window.
    gave_up: bool,
}

/// The built-in caller.
pub fn caller() -> Caller {
    Caller {
        name: CALLER.into(),
        admin: false,
        identified: true,
        via: Identification::BuiltIn {
            component: CALLER.into(),
        },
    }
}

/// The delay before restart number `attempt` (1-based) within the window.
pub fn delay_for(base: Duration, attempt: u32) -> Duration {
    base.mul_f64(BACKOFF.powi(attempt.saturating_sub(1) as i32))
}

/// What to do about a container reported unhealthy, given its restarts so far.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Restart attempt `n` after this delay.
    Restart { attempt: u32, delay: Duration },
    /// The limit is reached: give up (once).
    GiveUp { restarts: u32 },
    /// Already scheduled, or already given up.
    Nothing,
}

fn next(track: &mut Track, now: Instant, settings: &Settings) -> Next {
    while track
        .restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) >= settings.watchdog_window)
    {
        track.restarts.pop_front();
        track.gave_up = false;
    }
    if track.pending || track.gave_up {
        return Next::Nothing;
    }
    let done = track.restarts.len() as u32;
    if done >= settings.watchdog_max_restarts {
        track.gave_up = true;
        return Next::GiveUp { restarts: done };
    }
    track.pending = true;
    let attempt = done + 1;
    Next::Restart {
        attempt,
        delay: delay_for(settings.watchdog_base_delay, attempt),
    }
}

impl Watchdog {
    /// Run until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let me = Arc::new(self);
        tokio::spawn(async move { me.run().await })
    }

    async fn run(self: Arc<Self>) {
        let tracks: Arc<Mutex<HashMap<String, Track>>> = Arc::default();
        let mut backoff = Duration::from_millis(500);
        loop {
            let opted_in = format!("{LABEL}={LABEL_VALUE}");
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("label".to_string(), vec![opted_in.clone()]),
            ]);
            let mut stream = self.docker.events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
            // Subscribed first, then scanned: a change between the two is seen.
            match self.unhealthy_now(&opted_in).await {
                Ok(ids) => {
                    for id in ids {
                        self.clone().report(&tracks, id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watchdog: listing unhealthy containers failed")
                }
            }
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "watchdog: the daemon's event stream failed; reconnecting");
                        break;
                    }
                };
                backoff = Duration::from_millis(500);
                let unhealthy = event
                    .action
                    .as_deref()
                    .is_some_and(|a| a.starts_with("health_status") && a.ends_with("unhealthy"));
                match event.actor.and_then(|a| a.id) {
                    Some(id) if unhealthy => self.clone().report(&tracks, id),
                    _ => {}
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn unhealthy_now(&self, opted_in: &str) -> Result<Vec<String>, bollard::errors::Error> {
        let filters = HashMap::from([
            ("label".to_string(), vec![opted_in.to_string()]),
            ("health".to_string(), vec!["unhealthy".to_string()]),
        ]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// A container was reported unhealthy: schedule its restart, or give up.
    fn report(self: Arc<Self>, tracks: &Arc<Mutex<HashMap<String, Track>>>, id: String) {
        let next = {
            let mut tracks = tracks.lock().unwrap_or_else(|e| e.into_inner());
            next(
                tracks.entry(id.clone()).or_default(),
                Instant::now(),
                &self.settings,
            )
        };
        match next {
            Next::Nothing => {}
            Next::GiveUp { restarts } => {
                tokio::spawn(async move { self.give_up(&id, restarts).await });
            }
            Next::Restart { attempt, delay } => {
                let tracks = tracks.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let restarted = self.attempt(&id, attempt, delay).await;
                    let mut tracks = tracks.lock().unwrap_or_else(|e| e.into_inner());
                    let track = tracks.entry(id).or_default();
                    track.pending = false;
                    if restarted {
                        track.restarts.push_back(Instant::now());
                    }
                });
            }
        }
    }

    /// Restart attempt `attempt`, if the container is still unhealthy: decided
    /// and recorded first. Whether it restarted.
    async fn attempt(&self, id: &str, attempt: u32, delay: Duration) -> bool {
        let (name, status) = match self.docker.inspect_container(id, None).await {
            Ok(c) => (
                c.name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                c.state.and_then(|s| s.health).and_then(|h| h.status),
            ),
            Err(e) => {
                tracing::info!(container = id, error = %e, "watchdog: the container is gone");
                return false;
            }
        };
        if status.map(|s| s.to_string()).as_deref() != Some("unhealthy") {
            return false;
        }
        let event = |status: &str, detail: Option<String>| AgentEvent::WatchdogRestart {
            container_id: id.to_string(),
            container: name.clone(),
            status: status.to_string(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            detail,
        };
        let why = format!(
            "watchdog: container unhealthy; restart {attempt} of at most {} within {} s, after {} ms",
            self.settings.watchdog_max_restarts,
            self.settings.watchdog_window.as_secs(),
            delay.as_millis()
        );
        match self.decide_and_record(id, why).await {
            Ok(Recorded::Permit(permit)) => {
                let options = RestartContainerOptions {
                    t: Some(10),
                    ..Default::default()
                };
                match self.docker.restart_container(id, Some(options)).await {
                    Ok(()) => {
                        tracing::info!(container = %name, attempt, decision = permit.decision_id(), "watchdog: restarted an unhealthy container");
                        self.events.publish(event("restarted", None));
                        true
                    }
                    Err(e) => {
                        tracing::warn!(container = %name, error = %e, "watchdog: the restart failed");
                        self.events.publish(event("failed", Some(e.to_string())));
                        false
                    }
                }
            }
            Ok(Recorded::Refused { decision_id }) => {
                tracing::warn!(container = %name, decision = decision_id, "watchdog: the policy refused the restart; grant caller `watchdog` can_restart");
                let detail = format!("the policy refused it (decision {decision_id})");
                self.events.publish(event("refused", Some(detail)));
                false
            }
            Err(e) => {
                tracing::error!(container = %name, error = %e, "watchdog: the restart could not be recorded, so it was not done");
                self.events.publish(event("failed", Some(e)));
                false
            }
        }
    }

    /// `POST /containers/{id}/restart` by the watchdog: classified by the route
    /// table, decided by the policy, recorded (with `why`).
    async fn decide_and_record(&self, id: &str, why: String) -> Result<Recorded, String> {
        let caller = caller();
        let path = format!("/containers/{id}/restart");
        let (parts, ()) = http::Request::post(path.as_str())
            .body(())
            .map_err(|e| format!("watchdog request {path}: {e}"))?
            .into_parts();
        let mut life = Life::begin(&parts);
        let request = classify::classify("POST", &life.raw_target, &VersionRange::default())
            .map_err(|e| format!("classifying {path}: {e}"))?;
        debug_assert_eq!(request.action, Action::CONTAINER_RESTART);
        life.classified(&request, None);
        let target = self
            .resolver
            .container(id, Freshness::Fresh)
            .await
            .map_err(|e| format!("resolving {id}: {e}"))?;
        let inspected = Inspected::default();
        let input = PolicyInput::of(&caller, &request, &target, &inspected, None);
        let decision = self.decider.decide(&input);
        let decided = Decided {
            caller: &caller,
            request: &request,
            target: &target,
            file: None,
            inspected: &inspected,
            life: &life,
        };
        let mut record = decided.record(&decision, self.enforced);
        record.reasons.push(why);
        record::record_decision(&*self.recorder, record).await
    }

    /// The limit is reached: say so, in the log and as an event.
    async fn give_up(&self, id: &str, restarts: u32) {
        let name = match self.resolver.container(id, Freshness::Fresh).await {
            Ok(t) => t.name.unwrap_or_else(|| id.to_string()),
            Err(_) => id.to_string(),
        };
        let detail = format!(
            "watchdog: gave up after {restarts} restarts within {} s; the container stays unhealthy",
            self.settings.watchdog_window.as_secs()
        );
        let caller = caller();
        let note = Decision {
            allowed: true,
            reasons: vec![detail.clone()],
            trust_id: None,
            policy_version: "-".into(),
        };
        let (parts, ()) = http::Request::post(format!("/containers/{id}/restart"))
            .body(())
            .unwrap_or_default()
            .into_parts();
        let life = Life::begin(&parts);
        let record = AuditRecord {
            action: Action::CONTAINER_WATCHDOG.to_string(),
            target_id: Some(id.to_string()),
            target_name: Some(name.clone()),
            method: "-".into(),
            path: "-".into(),
            ..life.early_record(&caller, &note)
        };
        if let Err(e) = self.recorder.append(record).await {
            tracing::error!(container = %name, error = %e, "watchdog: giving up could not be recorded");
        }
        tracing::warn!(container = %name, restarts, "{detail}");
        self.events.publish(AgentEvent::WatchdogRestart {
            container_id: id.to_string(),
            container: name,
            status: "gave-up".into(),
            attempt: restarts,
            delay_ms: 0,
            detail: Some(detail),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32) -> Settings {
        Settings {
            watchdog_base_delay: Duration::from_millis(1000),
            watchdog_max_restarts: max,
            watchdog_window: Duration::from_secs(60),
            ..Settings::default()
        }
    }

    #[test]
    fn delays_grow_by_half_each_time() {
        let base = Duration::from_millis(1000);
        let delays: Vec<u128> = (1..=5).map(|n| delay_for(base, n).as_millis()).collect();
        assert_eq!(delays, vec![1000, 1500, 2250, 3375, 5062]);
    }

    #[test]
    fn the_limit_gives_up_once_then_the_window_reopens() {
        let s = settings(2);
        let mut t = Track::default();
        let t0 = Instant::now();
        for n in 1..=2 {
            assert_eq!(
                next(&mut t, t0, &s),
                Next::Restart {
                    attempt: n,
                    delay: delay_for(s.watchdog_base_delay, n)
                }
            );
            // A second report while one is pending does nothing.
            assert_eq!(next(&mut t, t0, &s), Next::Nothing);
            t.pending = false;
            t.restarts.push_back(t0);
        }
        assert_eq!(next(&mut t, t0, &s), Next::GiveUp { restarts: 2 });
        assert_eq!(next(&mut t, t0, &s), Next::Nothing, "gives up once");
        // Once the restarts leave the window, it starts over.
        let later = t0 + Duration::from_secs(61);
        assert!(matches!(
            next(&mut t, later, &s),
            Next::Restart { attempt: 1, .. }
        ));
    }
}
