//! `/metrics` in the Prometheus text format, on a listener of its own
//! (`--metrics tcp://127.0.0.1:9180`), never on the Docker socket.
//!
//! Why layers: requests are counted by a layer over the record stage (every
//! request, allowed or refused, passes it exactly once, with its caller,
//! action and decision), and decision latency by a layer over the decide
//! stage. Neither stage knows it is measured, and with `--metrics` off
//! neither layer exists, so the request path pays nothing.
//!
//! Counters that other parts keep (webhook deliveries, the policy's version
//! and reloads) are read at scrape time by a collector.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::decide::engine::PolicyEngine;
use crate::decide::{Decide, Decision, PolicyInput};
use crate::dlogs::DecisionLogCounters;
use crate::notify::NotifyCounters;
use crate::record::{AuditLog, AuditRecord, Record};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    caller: String,
    action: String,
    decision: &'static str,
}

/// Every metric portcullis exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    listeners: Arc<std::sync::OnceLock<Arc<crate::listen::Control>>>,
    decision_logs: Arc<std::sync::OnceLock<Arc<DecisionLogCounters>>>,
    requests: Family<RequestLabels, Counter>,
    record_failures: Counter,
    decision_seconds: Histogram,
    append_seconds: Histogram,
}

/// The audit log as the metrics read it at each scrape.
pub struct AuditWatch {
    pub log: AuditLog,
    /// Where the log lives, for its free space.
    pub data_dir: PathBuf,
    /// Free space under which appends are refused (`--audit-min-free`).
    pub reserve_bytes: u64,
}

impl Metrics {
    pub fn new(
        engine: Arc<PolicyEngine>,
        notify: Option<Arc<NotifyCounters>>,
        audit: Option<AuditWatch>,
    ) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests decided and recorded, by caller, action and decision (allow, deny, or \
             would_deny in audit-only mode)",
            requests.clone(),
        );
        let record_failures = Counter::default();
        registry.register(
            "record_failures",
            "Records that could not be made durable: the request refused with 503, or an applied file change answered with 500",
            record_failures.clone(),
        );
        // 1 µs .. ~16 ms.
        let decision_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 15));
        registry.register(
            "decision_seconds",
            "Time to decide one request (policy input built and evaluated)",
            decision_seconds.clone(),
        );
        // 1 µs .. ~16 ms.
        let append_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 15));
        registry.register(
            "audit_append_seconds",
            "Time from handing a record to the log until it is durable (the request waits for it)",
            append_seconds.clone(),
        );
        let listeners = Arc::new(std::sync::OnceLock::new());
        let decision_logs = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(Collected {
            engine,
            notify,
            audit,
            listeners: listeners.clone(),
            decision_logs: decision_logs.clone(),
        }));
        Arc::new(Metrics {
            registry,
            listeners,
            decision_logs,
            requests,
            record_failures,
            decision_seconds,
            append_seconds,
        })
    }

    /// Expose the decision-log shipper's counters (`serve --decision-logs`).
    pub fn attach_decision_logs(&self, counters: Arc<DecisionLogCounters>) {
        let _ = self.decision_logs.set(counters);
    }

    /// Count the listeners' connections and refusals from now on.
    pub fn attach_listeners(&self, control: Arc<crate::listen::Control>) {
        let _ = self.listeners.set(control);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Read at each scrape from the parts that keep them.
struct Collected {
    engine: Arc<PolicyEngine>,
    notify: Option<Arc<NotifyCounters>>,
    audit: Option<AuditWatch>,
    /// The listeners' control, known once they are built (after the gateway).
    listeners: Arc<std::sync::OnceLock<Arc<crate::listen::Control>>>,
    decision_logs: Arc<std::sync::OnceLock<Arc<DecisionLogCounters>>>,
}

impl std::fmt::Debug for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collected")
    }
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let version = self.engine.version();
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "policy_info",
            "The policy in force (its version label); 1",
            None,
            info.metric_type(),
        )?;
        info.encode(family.encode_family(&[("version", version.as_str())])?)?;
        let loaded = ConstGauge::new(i64::from(self.engine.last_error().is_none()));
        let family = encoder.encode_descriptor(
            "policy_loaded",
            "1 when the last policy load or reload compiled, 0 when it failed (the previous \
             policy, or none, stays in force)",
            None,
            loaded.metric_type(),
        )?;
        loaded.encode(family)?;
        let mut family = encoder.encode_descriptor(
            "policy_reloads",
            "Policy reloads (a watched --policies directory changed), by outcome",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, n) in [
            ("ok", &self.engine.reloads.ok),
            ("failed", &self.engine.reloads.failed),
        ] {
            ConstCounter::new(n.load(Ordering::Relaxed))
                .encode(family.encode_family(&[("outcome", outcome)])?)?;
        }
        let upstream = ConstCounter::new(crate::forward::UPSTREAM_ERRORS.load(Ordering::Relaxed));
        let m = encoder.encode_descriptor(
            "upstream_errors",
            "Requests for which the Docker daemon could not be reached",
            None,
            upstream.metric_type(),
        )?;
        upstream.encode(m)?;
        if let Some(control) = self.listeners.get() {
            let open = ConstGauge::new(control.open_connections() as i64);
            let m = encoder.encode_descriptor(
                "open_connections",
                "Connections open on every listener",
                None,
                open.metric_type(),
            )?;
            open.encode(m)?;
            let mut family = encoder.encode_descriptor(
                "listener_open_connections",
                "Connections open, by listener",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (listener, n) in control.open_by_listener() {
                ConstGauge::new(n as i64)
                    .encode(family.encode_family(&[("listener", listener.as_str())])?)?;
            }
            let mut family = encoder.encode_descriptor(
                "refused_without_request",
                "Connections refused before a request existed, by why (h2_preface, \
                 head_too_large and malformed_head are also recorded in the log; busy, \
                 caller_busy and header_timeout are only counted)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (why, n) in control.refusals.snapshot() {
                ConstCounter::new(n).encode(family.encode_family(&[("why", why)])?)?;
            }
        }
        if let Some(audit) = &self.audit {
            encode_audit(audit, &mut encoder)?;
        }
        if let Some(d) = self.decision_logs.get() {
            for (name, help, value) in [
                (
                    "decision_logs_shipped",
                    "Decision-log events acknowledged by the collector",
                    &d.shipped,
                ),
                (
                    "decision_logs_failed_posts",
                    "Decision-log POSTs that failed and were retried",
                    &d.failed_posts,
                ),
                (
                    "decision_logs_dropped_queue_full",
                    "Decision-log wake-ups dropped on a full queue (records are still shipped from the log)",
                    &d.dropped_queue_full,
                ),
                (
                    "decision_logs_lost",
                    "Records that left the audit log before they were shipped",
                    &d.lost,
                ),
            ] {
                let c = ConstCounter::new(value.load(Ordering::Relaxed));
                let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
                c.encode(m)?;
            }
        }
        if let Some(n) = &self.notify {
            for (name, help, value) in [
                (
                    "notify_delivered",
                    "Records delivered to webhooks",
                    &n.delivered,
                ),
                (
                    "notify_dropped_queue_full",
                    "Records dropped because a webhook's queue was full",
                    &n.dropped_queue_full,
                ),
                (
                    "notify_dropped_undeliverable",
                    "Records dropped after every delivery attempt failed",
                    &n.dropped_undeliverable,
                ),
            ] {
                let c = ConstCounter::new(value.load(Ordering::Relaxed));
                let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
                c.encode(m)?;
            }
        }
        Ok(())
    }
}

/// The audit log's group commits, its lag and its disk.
fn encode_audit(audit: &AuditWatch, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let stats = audit.log.stats();
    for (name, help, value) in [
        (
            "audit_appended_records",
            "Records made durable by the log",
            stats.records_committed,
        ),
        (
            "audit_group_commits",
            "Group commits (one write each) that made records durable",
            stats.batches_committed,
        ),
        (
            "audit_group_commits_failed",
            "Group commits that failed (their requests were refused)",
            stats.batches_failed,
        ),
    ] {
        let c = ConstCounter::new(value);
        c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
    }
    let mut buckets = Vec::with_capacity(stats.group_sizes.len());
    for (i, &n) in stats.group_sizes.iter().enumerate() {
        let upper = if i + 1 == stats.group_sizes.len() {
            f64::INFINITY
        } else {
            (1u64 << i) as f64
        };
        buckets.push((upper, n));
    }
    let mut m = encoder.encode_descriptor(
        "audit_group_size",
        "Records per group commit",
        None,
        prometheus_client::metrics::MetricType::Histogram,
    )?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        stats.records_committed as f64,
        stats.batches_committed,
        &buckets,
        None,
    )?;
    let free = nix::sys::statvfs::statvfs(&audit.data_dir)
        .map(|s| s.blocks_available() as i64 * s.fragment_size() as i64)
        .unwrap_or(-1);
    for (name, help, value) in [
        (
            "audit_durable_seq",
            "Last record acknowledged as durable",
            stats.durable_seq as i64,
        ),
        (
            "audit_durable_lag_records",
            "Durable records not yet in the queryable store (the WAL is ahead of sled by this many)",
            stats.durable_seq.saturating_sub(stats.applied_seq) as i64,
        ),
        (
            "audit_disk_free_bytes",
            "Free space where the log lives (-1 when it cannot be read)",
            free,
        ),
        (
            "audit_disk_reserve_bytes",
            "Free space under which every append, and so every request, is refused",
            audit.reserve_bytes as i64,
        ),
        (
            "audit_writer_alive",
            "1 while the log accepts appends",
            i64::from(stats.writer_alive),
        ),
    ] {
        let g = ConstGauge::new(value);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
    }
    Ok(())
}

/// The record stage, counted: each record is one request with its caller,
/// action and decision.
pub struct Counted {
    pub inner: Arc<dyn Record>,
    pub metrics: Arc<Metrics>,
}

impl Record for Counted {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
        let labels = RequestLabels {
            caller: record.caller.clone(),
            action: if record.action.is_empty() {
                "-".to_string()
            } else {
                record.action.clone()
            },
            decision: match (record.allowed, record.enforced) {
                (true, _) => "allow",
                (false, true) => "deny",
                (false, false) => "would_deny",
            },
        };
        async move {
            let start = Instant::now();
            let outcome = self.inner.append(record).await;
            self.metrics
                .append_seconds
                .observe(start.elapsed().as_secs_f64());
            match &outcome {
                Ok(_) => {
                    self.metrics.requests.get_or_create(&labels).inc();
                }
                Err(_) => {
                    self.metrics.record_failures.inc();
                }
            }
            outcome
        }
        .boxed()
    }
}

/// The decide stage, timed.
pub struct Timed {
    pub inner: Arc<dyn Decide>,
    pub metrics: Arc<Metrics>,
}

impl Decide for Timed {
    fn decide(&self, input: &PolicyInput) -> Decision {
        let start = Instant::now();
        let decision = self.inner.decide(input);
        self.metrics
            .decision_seconds
            .observe(start.elapsed().as_secs_f64());
        decision
    }
}

/// Scrapes served, for the log line at shutdown and for tests.
pub static SCRAPES: AtomicU64 = AtomicU64::new(0);

/// Serve `GET /metrics` on `addr` (host:port) until the process ends.
pub async fn serve(addr: String, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the metrics listener tcp://{addr}"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let metrics = metrics.clone();
                    async move {
                        let _: &hyper::body::Incoming = req.body();
                        let resp = if req.uri().path() == "/metrics" && req.method() == "GET" {
                            SCRAPES.fetch_add(1, Ordering::Relaxed);
                            http::Response::builder()
                                .header(
                                    http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4; charset=utf-8",
                                )
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    metrics.encode(),
                                )))
                        } else {
                            http::Response::builder()
                                .status(http::StatusCode::NOT_FOUND)
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"only GET /metrics is served here\n",
                                )))
                        };
                        resp
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
