//! Health and stats: `GET /api/v1/containers/health` (a summary of every
//! container the caller may inspect), `…/{id}/health` and `…/{id}/stats`.
//!
//! Why a summary here and not `docker ps` + `docker stats` by the client: one
//! call answers a dashboard, and it shows only what the caller may see (each
//! container is decided like a `docker ps` entry; `resources` only where
//! `container.stats` is allowed too).
//!
//! CPU% is computed as `docker stats` does (CPU time over system time, × online
//! CPUs). The daemon (20.10) answers a stats request at its collector's next
//! one-second tick, and gives the previous sample (`precpu`) only when asked
//! without `one-shot`, a tick later: 1–2 s, where one-shot takes 0–1 s. So a
//! sample is taken one-shot and CPU% is computed against the previous sample
//! of the same container, kept in [`CpuSamples`]; only a container without a
//! usable previous sample (first look, or one older than [`SAMPLE_MAX_AGE`])
//! is asked the slow way. Containers are sampled concurrently, and all wait
//! for the same tick: fifty cost what one does (`cargo bench --bench agent`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStatsResponse, HealthcheckResult};
use bollard::query_parameters::{ListContainersOptions, StatsOptionsBuilder};
use futures_util::{StreamExt, TryStreamExt};
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::{daemon_error, existing_container, Agents, Stages};
use crate::classify::Action;
use crate::decide;
use crate::filter::target_of_summary;
use crate::record::Decided;
use crate::reply::{self, ProxyBody};
use crate::resolve::Target;

/// How many containers are inspected and sampled at once.
const CONCURRENCY: usize = 64;
/// A previous sample older than this is not used for CPU%.
pub const SAMPLE_MAX_AGE: Duration = Duration::from_secs(60);
/// Samples closer than this give a noisy CPU%: the last figure is repeated.
const SAMPLE_MIN_GAP: Duration = Duration::from_millis(500);

/// `resources` of an entry: `docker stats`'s figures, sizes in MiB (as
/// `docker stats` shows memory; "MB" in the field names is the seed's), and
/// percentages, to two decimals.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_percent: f64,
    #[serde(rename = "memoryUsageMB")]
    pub memory_usage_mb: f64,
    #[serde(rename = "memoryLimitMB")]
    pub memory_limit_mb: f64,
    pub memory_percent: f64,
    #[serde(rename = "networkRxMB")]
    pub network_rx_mb: f64,
    #[serde(rename = "networkTxMB")]
    pub network_tx_mb: f64,
    #[serde(rename = "blockReadMB")]
    pub block_read_mb: f64,
    #[serde(rename = "blockWriteMB")]
    pub block_write_mb: f64,
    pub pids: u64,
}

/// The CPU counters of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample {
    pub total: u64,
    pub system: u64,
    pub online: u32,
}

/// The previous sample of each container (by id), and the CPU% last shown.
#[derive(Debug, Default)]
pub struct CpuSamples(Mutex<HashMap<String, (Instant, CpuSample, f64)>>);

impl CpuSamples {
    /// A sample recent enough to compute against.
    fn usable(&self, id: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .is_some_and(|(at, _, _)| at.elapsed() <= SAMPLE_MAX_AGE)
    }

    /// CPU% of `now` against the previous sample, remembering `now`.
    fn percent(&self, id: &str, now: CpuSample, slow: Option<CpuSample>) -> f64 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a host's containers come and go; forget them all at once
        // rather than keep a sample per container ever seen.
        if map.len() > 10_000 {
            map.clear();
        }
        let percent = match (slow, map.get(id)) {
            (Some(pre), _) => cpu_percent(pre, now),
            (None, Some((at, _, last))) if at.elapsed() < SAMPLE_MIN_GAP => return *last,
            (None, Some((_, pre, _))) => cpu_percent(*pre, now),
            (None, None) => 0.0,
        };
        map.insert(id.to_string(), (Instant::now(), now, percent));
        percent
    }
}

/// Samples shared by every request of this process.
fn samples() -> &'static CpuSamples {
    static SAMPLES: std::sync::OnceLock<CpuSamples> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(CpuSamples::default)
}

/// `docker stats`'s CPU%: the container's CPU time over the host's, times
/// the online CPUs; 0 when either did not advance.
pub fn cpu_percent(pre: CpuSample, now: CpuSample) -> f64 {
    let cpu = now.total as f64 - pre.total as f64;
    let system = now.system as f64 - pre.system as f64;
    if cpu > 0.0 && system > 0.0 {
        round2(cpu / system * f64::from(now.online.max(1)) * 100.0)
    } else {
        0.0
    }
}

fn cpu_sample(s: Option<&bollard::models::ContainerCpuStats>) -> Option<CpuSample> {
    let s = s?;
    let usage = s.cpu_usage.as_ref()?;
    let online = s.online_cpus.filter(|n| *n > 0).unwrap_or_else(|| {
        usage
            .percpu_usage
            .as_ref()
            .map_or(1, |v| v.len().max(1) as u32)
    });
    Some(CpuSample {
        total: usage.total_usage?,
        system: s.system_cpu_usage?,
        online,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mb(bytes: u64) -> f64 {
    round2(bytes as f64 / (1024.0 * 1024.0))
}

/// Every figure but CPU% from one stats answer, as `docker stats` computes
/// it: memory without the page cache (`inactive_file` on cgroup v2,
/// `total_inactive_file` on v1), network summed over interfaces, block I/O
/// summed over devices.
pub fn resources(s: &ContainerStatsResponse, cpu_percent: f64) -> Resources {
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    let stats = mem.and_then(|m| m.stats.as_ref());
    let cache = stats
        .and_then(|m| {
            m.get("total_inactive_file")
                .or_else(|| m.get("inactive_file"))
        })
        .copied()
        .filter(|c| *c < usage)
        .unwrap_or(0);
    let used = usage - cache;
    let limit = mem.and_then(|m| m.limit).unwrap_or(0);
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.iter().flat_map(|n| n.values()) {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0u64, 0u64);
    let blkio = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in blkio.into_iter().flatten() {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += e.value.unwrap_or(0),
            Some("write") => write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    Resources {
        cpu_percent,
        memory_usage_mb: mb(used),
        memory_limit_mb: mb(limit),
        memory_percent: if limit > 0 {
            round2(used as f64 / limit as f64 * 100.0)
        } else {
            0.0
        },
        network_rx_mb: mb(rx),
        network_tx_mb: mb(tx),
        block_read_mb: mb(read),
        block_write_mb: mb(write),
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

/// One stats answer (`stream=false`), one-shot or with `precpu` filled.
async fn stats_once(
    docker: &bollard::Docker,
    id: &str,
    one_shot: bool,
) -> Result<ContainerStatsResponse, bollard::errors::Error> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(one_shot)
        .build();
    let mut s = docker.stats(id, Some(opts));
    match s.try_next().await? {
        Some(x) => Ok(x),
        None => Err(bollard::errors::Error::DockerStreamError {
            error: format!("no stats for container {id}"),
        }),
    }
}

/// A container's resources now, CPU% against its previous sample (see the
/// module docs).
async fn sample(docker: &bollard::Docker, id: &str) -> Result<Resources, bollard::errors::Error> {
    let cache = samples();
    let fast = cache.usable(id);
    let s = stats_once(docker, id, fast).await?;
    let cpu = match cpu_sample(s.cpu_stats.as_ref()) {
        Some(now) => {
            let pre = if fast {
                None
            } else {
                cpu_sample(s.precpu_stats.as_ref())
            };
            cache.percent(id, now, pre)
        }
        // A stopped container has no CPU counters.
        None => 0.0,
    };
    Ok(resources(&s, cpu))
}

/// Go's `time.Duration` text, to the second: `2h30m15s`, `4m0s`, `7s`.
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `healthy|unhealthy|starting|none`.
fn health_of(i: &ContainerInspectResponse) -> String {
    i.state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| matches!(s.as_str(), "healthy" | "unhealthy" | "starting"))
        .unwrap_or_else(|| "none".to_string())
}

fn health_log(i: &ContainerInspectResponse) -> &[HealthcheckResult] {
    i.state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.as_deref())
        .unwrap_or_default()
}

/// The entry shape shared by the summary and the single-container answer.
fn entry(i: &ContainerInspectResponse, resources: Option<Resources>) -> Value {
    let state = i.state.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let started = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_time);
    let uptime_text = started.filter(|_| running).map(|t| {
        let d = time::OffsetDateTime::now_utc() - t;
        uptime(d.try_into().unwrap_or_default())
    });
    let last_check = health_log(i).last().and_then(|r| r.end.clone());
    let config = i.config.as_ref();
    json!({
        "id": i.id,
        "name": i.name.as_deref().map(|n| n.trim_start_matches('/')),
        "image": config.and_then(|c| c.image.clone()),
        "status": status,
        "health": health_of(i),
        "uptime": uptime_text,
        "resources": resources,
        "labels": config.and_then(|c| c.labels.clone()).map(|l| l.into_iter().collect::<BTreeMap<_, _>>()).unwrap_or_default(),
        "lastHealthCheck": last_check,
    })
}

/// What the caller may see of containers: `may(target, action)`.
struct Sight<'a> {
    stages: &'a Stages,
    req: &'a Decided<'a>,
}

impl Sight<'_> {
    fn may(&self, t: &Target, action: Action) -> bool {
        let r = self.req;
        r.caller.admin || decide::may(&*self.stages.decider, r.caller, r.request, t, action)
    }
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "yes")
}

pub async fn summary(agents: &Agents, stages: &Stages, req: Decided<'_>) -> Response<ProxyBody> {
    let (mut labels, mut all) = (Vec::new(), false);
    for (k, v) in &req.request.query {
        match k.as_str() {
            "label" => labels.push(v.clone()),
            "all" => all = truthy(v),
            _ => {}
        }
    }
    // The daemon filters by label as `docker ps --filter label=…` does: all
    // must match; `k` alone means "has the label".
    let filters = (!labels.is_empty()).then(|| HashMap::from([("label".to_string(), labels)]));
    let opts = ListContainersOptions {
        all,
        filters,
        ..Default::default()
    };
    let list = match agents.docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => return daemon_error("listing containers", e),
    };
    let sight = Sight { stages, req: &req };
    // Decided like a `docker ps` entry (see filter::container_list).
    let visible: Vec<(String, bool)> = list
        .iter()
        .filter_map(|c| {
            let t = target_of_summary(&serde_json::to_value(c).ok()?);
            let id = t.id.clone()?;
            sight
                .may(&t, Action::CONTAINER_INSPECT)
                .then(|| (id, sight.may(&t, Action::CONTAINER_STATS)))
        })
        .collect();
    let docker = &agents.docker;
    let entries: Vec<Option<Value>> = futures_util::stream::iter(visible)
        .map(|(id, stats)| async move {
            let (inspect, res) = tokio::join!(docker.inspect_container(&id, None), async {
                if stats {
                    sample(docker, &id).await.ok()
                } else {
                    None
                }
            });
            // Removed since the list: left out.
            inspect.ok().map(|i| entry(&i, res))
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let containers: Vec<Value> = entries.into_iter().flatten().collect();
    let count = |h: &str| containers.iter().filter(|c| c["health"] == h).count();
    let healthy = containers
        .iter()
        .filter(|c| c["health"] == "healthy" || (c["health"] == "none" && c["status"] == "running"))
        .count();
    reply::json(
        StatusCode::OK,
        &json!({
            "timestamp": now_rfc3339(),
            "total": containers.len(),
            "healthy": healthy,
            "unhealthy": count("unhealthy"),
            "containers": containers,
        }),
    )
}

pub async fn one(agents: &Agents, stages: &Stages, req: Decided<'_>) -> Response<ProxyBody> {
    let id = match existing_container(&req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let sight = Sight { stages, req: &req };
    let stats = sight.may(req.target, Action::CONTAINER_STATS);
    let docker = &agents.docker;
    let (inspect, res) = tokio::join!(docker.inspect_container(&id, None), async {
        if stats {
            sample(docker, &id).await.ok()
        } else {
            None
        }
    });
    let inspect = match inspect {
        Ok(i) => i,
        Err(e) => return daemon_error(&format!("inspecting container {id}"), e),
    };
    let mut v = entry(&inspect, res);
    let health = inspect.state.as_ref().and_then(|s| s.health.as_ref());
    let hc = inspect.config.as_ref().and_then(|c| c.healthcheck.as_ref());
    v["healthcheck"] = match hc {
        Some(h) => json!({
            "test": h.test,
            "interval": h.interval,
            "timeout": h.timeout,
            "retries": h.retries,
            "startPeriod": h.start_period,
        }),
        None => Value::Null,
    };
    v["log"] = health_log(&inspect)
        .iter()
        .map(|r| {
            json!({
                "start": r.start,
                "end": r.end,
                "exitCode": r.exit_code,
                "output": r.output,
            })
        })
        .collect();
    v["failingStreak"] = json!(health.and_then(|h| h.failing_streak).unwrap_or(0));
    v["restartCount"] = json!(inspect.restart_count.unwrap_or(0));
    reply::json(StatusCode::OK, &v)
}

pub async fn stats(agents: &Agents, _stages: &Stages, req: Decided<'_>) -> Response<ProxyBody> {
    let id = match existing_container(&req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let res = match sample(&agents.docker, &id).await {
        Ok(r) => r,
        Err(e) => return daemon_error(&format!("stats of container {id}"), e),
    };
    reply::json(
        StatusCode::OK,
        &json!({
            "id": id,
            "name": req.target.name,
            "timestamp": now_rfc3339(),
            "resources": res,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_go() {
        assert_eq!(
            uptime(Duration::from_secs(2 * 3600 + 30 * 60 + 15)),
            "2h30m15s"
        );
        assert_eq!(uptime(Duration::from_secs(240)), "4m0s");
        assert_eq!(uptime(Duration::from_millis(7900)), "7s");
    }

    #[test]
    fn cpu_percent_is_docker_stats() {
        let pre = CpuSample {
            total: 1_000,
            system: 10_000,
            online: 2,
        };
        let now = CpuSample {
            total: 1_500,
            system: 20_000,
            online: 2,
        };
        assert_eq!(cpu_percent(pre, now), 10.0);
        assert_eq!(cpu_percent(now, now), 0.0);
    }

    #[test]
    fn memory_leaves_the_page_cache_out() {
        let s: ContainerStatsResponse = serde_json::from_value(json!({
            "memory_stats": {"usage": 300 * 1024 * 1024, "limit": 1024u64 * 1024 * 1024,
                "stats": {"inactive_file": 100 * 1024 * 1024}},
            "networks": {"eth0": {"rx_bytes": 1048576, "tx_bytes": 524288},
                "eth1": {"rx_bytes": 1048576, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 2097152},
                {"major": 8, "minor": 0, "op": "write", "value": 1048576}]},
            "pids_stats": {"current": 3}
        }))
        .unwrap();
        let r = resources(&s, 1.5);
        assert_eq!(r.memory_usage_mb, 200.0);
        assert_eq!(r.memory_limit_mb, 1024.0);
        assert_eq!(r.memory_percent, 19.53);
        assert_eq!((r.network_rx_mb, r.network_tx_mb), (2.0, 0.5));
        assert_eq!((r.block_read_mb, r.block_write_mb), (2.0, 1.0));
        assert_eq!(r.pids, 3);
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "cpuPercent",
            "memoryUsageMB",
            "memoryLimitMB",
            "networkRxMB",
            "blockWriteMB",
        ] {
            assert!(v.get(k).is_some(), "{k}: {v}");
        }
    }

    #[test]
    fn samples_give_cpu_against_the_previous_one() {
        let s = CpuSamples::default();
        let a = CpuSample {
            total: 0,
            system: 0,
            online: 1,
        };
        let b = CpuSample {
            total: 50,
            system: 100,
            online: 1,
        };
        assert_eq!(s.percent("x", b, Some(a)), 50.0);
        assert!(s.usable("x"));
        assert!(!s.usable("y"));
    }
}
