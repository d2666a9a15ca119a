//! Assembly: build every stage from a [`ServeConfig`] and serve.
//!
//! Why here and not in `main`: tests and benchmarks start the same server in
//! process, and a reviewer finds every wiring decision in one place.

use std::sync::Arc;

use anyhow::Context;
use futures_util::FutureExt;

use crate::classify::{ApiVersion, VersionRange};
use crate::config::{ServeConfig, UpstreamAddr};
use crate::forward::Upstream;
use crate::listen::{self, Handler, HandlerFactory};
use crate::pipeline::{self, Gateway};
use crate::resolve::Resolver;

/// The oldest API version served, whatever the daemon accepts.
pub const MIN_API: ApiVersion = ApiVersion::new(1, 24);

/// Learn the daemon's API range from `/version`, as the daemon itself enforces it.
pub async fn daemon_versions(upstream: &Upstream) -> Option<VersionRange> {
    use http_body_util::BodyExt;
    let (parts, _) = http::Request::get("/version").body(()).ok()?.into_parts();
    let resp = upstream
        .send(parts, "/version", crate::reply::empty())
        .await
        .ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let max = ApiVersion::parse(v.get("ApiVersion")?.as_str()?)?;
    let min = v
        .get("MinAPIVersion")
        .and_then(|m| m.as_str())
        .and_then(ApiVersion::parse)
        .unwrap_or(MIN_API);
    // Below 1.24 the daemon still applies a HostConfig sent with container
    // start: a second, uninspected way to make a container privileged.
    Some(VersionRange {
        min: min.max(MIN_API),
        max,
    })
}

pub fn docker_client(addr: &UpstreamAddr) -> anyhow::Result<bollard::Docker> {
    match addr {
        UpstreamAddr::Unix(p) => bollard::Docker::connect_with_unix(
            &p.to_string_lossy(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .with_context(|| format!("connecting bollard to {}", p.display())),
        UpstreamAddr::Tcp(a) => bollard::Docker::connect_with_http(
            &format!("tcp://{a}"),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .with_context(|| format!("connecting bollard to {a}")),
    }
}

/// Build the gateway and serve until the process ends.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let upstream = Upstream::new(config.upstream.clone());
    let versions = match daemon_versions(&upstream).await {
        Some(v) => v,
        None => {
            tracing::warn!(upstream = %config.upstream, "the daemon did not answer /version; assuming API 1.24–1.56");
            VersionRange::default()
        }
    };
    let resolver = Resolver::new(docker_client(&config.upstream)?);
    resolver.spawn_event_feed();

    let parts = crate::assemble::assemble(&config, resolver.clone())?;
    let _policy_watch = parts.watcher;
    // Trust changes from `--trust-file` are recorded like the admin calls they replace.
    if let Some(path) = &config.trust_file {
        for change in &parts.trust_file_changes {
            let record = crate::record::AuditRecord {
                caller: "config".into(),
                identified_by: format!("trust file {}", path.display()),
                action: "trust.write".into(),
                method: "-".into(),
                path: path.display().to_string(),
                allowed: true,
                enforced: true,
                reasons: vec![change.clone()],
                ..Default::default()
            };
            parts
                .recorder
                .append(record)
                .await
                .context("recording a change made by the trust file")?;
        }
    }
    // Optional layers over the decide and record stages (see `notify`, `metrics`).
    let mut decider: Arc<dyn crate::decide::Decide> = parts.decider.clone();
    let mut recorder: Arc<dyn pipeline::Record> = parts.recorder;
    let mut notify_counters = None;
    if let Some(n) = &config.notify {
        let notifying = crate::notify::Notifying::start(
            recorder,
            n.webhooks.clone(),
            n.secret.clone(),
            n.queue,
        );
        notify_counters = Some(notifying.counters.clone());
        recorder = Arc::new(notifying);
    }
    if let Some(addr) = &config.metrics {
        let metrics = crate::metrics::Metrics::new(parts.decider.clone(), notify_counters);
        decider = Arc::new(crate::metrics::Timed {
            inner: decider,
            metrics: metrics.clone(),
        });
        recorder = Arc::new(crate::metrics::Counted {
            inner: recorder,
            metrics: metrics.clone(),
        });
        crate::metrics::serve(addr.clone(), metrics).await?;
    }
    let gateway = Arc::new(Gateway {
        upstream,
        versions,
        admin_uids: config.admin_uids.clone(),
        credentials: parts.credentials,
        decider,
        recorder,
        resolver,
        services: parts.services,
        selector_is_immutable: parts.selector_is_immutable,
        mode: config.mode,
        limits: config.limits.clone(),
    });

    let mut listeners = Vec::new();
    for spec in &config.listeners {
        let l = listen::bind(spec, config.tls.as_ref()).await?;
        let pinned = spec
            .caller
            .as_deref()
            .map(|c| format!(" (pinned to caller {c})"))
            .unwrap_or_default();
        println!("portcullis listening on {}{pinned}", l.label());
        listeners.push(l);
    }
    if let Some(first) = config.listeners.first() {
        if let crate::config::ListenAddr::Unix(p) = &first.addr {
            println!("  export DOCKER_HOST=unix://{}", p.display());
        }
    }
    println!(
        "forwarding to {} (API {versions}); data in {}; mode {}",
        config.upstream,
        config.data_dir.display(),
        config.mode
    );
    // Type=notify: systemd starts dependent units only once the sockets
    // answer. Outside systemd (no NOTIFY_SOCKET) this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    // Each worker forwards over its own connection pool (see `listen::serve`).
    let make_handler: HandlerFactory = Arc::new(move || -> Handler {
        let mut gw = (*gateway).clone();
        gw.upstream = Upstream::new(gateway.upstream.addr().clone());
        let gw = Arc::new(gw);
        Arc::new(move |req, conn| pipeline::handle(gw.clone(), req, conn).boxed())
    });
    let workers = config.workers;
    let limits = config.limits.clone();
    tokio::task::spawn_blocking(move || listen::serve(listeners, limits, workers, make_handler))
        .await
        .context("the listeners stopped")?
}
