//! Assembly: build every stage from a [`ServeConfig`] and serve.
//!
//! Why here and not in `main`: tests and benchmarks start the same server in
//! process, and a reviewer finds every wiring decision in one place.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;

use crate::classify::{ApiVersion, VersionRange};
use crate::config::{ServeConfig, UpstreamAddr};
use crate::forward::Upstream;
use crate::gateway::Gateway;
use crate::listen::{self, Handler, HandlerFactory};
use crate::pipeline;
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
        .with_context(|| {
            format!(
                "setting up a client for the Docker daemon at {}",
                p.display()
            )
        }),
        UpstreamAddr::Tcp(a) => bollard::Docker::connect_with_http(
            &format!("tcp://{a}"),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .with_context(|| format!("setting up a client for the Docker daemon at tcp://{a}")),
    }
}

/// Say in the operator's terms why the daemon's socket cannot be used: a
/// missing socket refuses the start (nothing could ever be forwarded); a socket
/// that refuses us is only warned about, since dockerd may still be starting.
fn check_upstream_socket(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::ErrorKind;
    let shown = path.display();
    let Err(e) = std::os::unix::net::UnixStream::connect(path) else {
        return Ok(());
    };
    match e.kind() {
        ErrorKind::NotFound => anyhow::bail!(
            "the Docker daemon's socket {shown} does not exist: is dockerd running, and is \
             --upstream (PORTCULLIS_UPSTREAM) the socket it listens on?"
        ),
        ErrorKind::PermissionDenied => tracing::warn!(
            "cannot connect to the Docker daemon's socket {shown}: permission denied; run \
             portcullis as root or as a member of the socket's group (ls -l {shown})"
        ),
        ErrorKind::ConnectionRefused => tracing::warn!(
            "nobody answers on the Docker daemon's socket {shown}: is dockerd running?"
        ),
        _ => tracing::warn!("cannot connect to the Docker daemon's socket {shown}: {e}"),
    }
    Ok(())
}

/// Build the gateway and serve until the process ends.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    if let UpstreamAddr::Unix(path) = &config.upstream {
        check_upstream_socket(path)?;
    }
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
    // Trust changes from `--trust-file` and `--bundle` are recorded like the
    // admin calls they replace.
    crate::assemble::record_config_changes(&config, &parts).await?;
    let _policy_watch = parts.watcher;
    let (log, db) = (parts.recorder.clone(), parts.db.clone());
    // Optional layers over the decide and record stages (see `notify`, `metrics`).
    let audit_log = (*parts.recorder).clone();
    let mut decider: Arc<dyn crate::decide::Decide> = parts.decider.clone();
    let mut recorder: Arc<dyn crate::record::Record> = parts.recorder;
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
    let mut dlog_counters = None;
    if let Some(settings) = &config.decision_logs {
        let shipping = crate::dlogs::Shipping::start(
            recorder,
            audit_log.clone(),
            settings.clone(),
            &config.data_dir,
        )
        .map_err(anyhow::Error::msg)
        .context("starting --decision-logs")?;
        dlog_counters = Some(shipping.counters.clone());
        recorder = Arc::new(shipping);
    }
    let mut metrics_handle = None;
    if let Some(addr) = &config.metrics {
        let audit = crate::metrics::AuditWatch {
            log: audit_log,
            data_dir: config.data_dir.clone(),
            reserve_bytes: config.audit_min_free,
        };
        let metrics =
            crate::metrics::Metrics::new(parts.decider.clone(), notify_counters, Some(audit));
        if let Some(c) = dlog_counters.take() {
            metrics.attach_decision_logs(c);
        }
        metrics_handle = Some(metrics.clone());
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
        daemon: crate::forward::Daemon::new(upstream),
        versions,
        admin_uids: config.admin_uids.clone(),
        credentials: parts.credentials,
        decider,
        recorder,
        resolver,
        services: parts.services,
        agents: parts.agents,
        selector_is_immutable: parts.selector_is_immutable,
        mode: config.mode,
        limits: config.limits.clone(),
    });

    // The watchdog (`--watchdog`): its restarts pass the same decide and record stages.
    let _watchdog = config.agent.watchdog.then(|| {
        crate::agent::watchdog::Watchdog {
            docker: gateway.agents.docker.clone(),
            decider: gateway.decider.clone(),
            recorder: gateway.recorder.clone(),
            resolver: gateway.resolver.clone(),
            events: gateway.agents.events.clone(),
            settings: config.agent.clone(),
            enforced: gateway.enforced(),
        }
        .spawn()
    });

    // Socket activation: a socket systemd passed serves the `--listen` spec
    // with its address (pinning and all), or stands alone; the others are bound.
    let mut inherited = listen::inherited_sockets()?;
    let mut specs = config.listeners.clone();
    for socket in &inherited {
        if !specs.iter().any(|spec| listen::serves(socket, spec)) {
            specs.push(crate::config::ListenerSpec {
                addr: socket.addr.clone(),
                mode: None,
                group: None,
                caller: None,
            });
        }
    }
    // Sockets systemd owns are left for it at shutdown.
    let mut owned_by_systemd = Vec::new();
    let mut listeners = Vec::new();
    for spec in &specs {
        let l = match inherited.iter().position(|i| listen::serves(i, spec)) {
            Some(i) => {
                owned_by_systemd.push(spec.addr.clone());
                listen::adopt(spec, inherited.swap_remove(i), config.tls.as_ref())?
            }
            None => listen::bind(spec, config.tls.as_ref()).await?,
        };
        let pinned = spec
            .caller
            .as_deref()
            .map(|c| format!(" (pinned to caller {c})"))
            .unwrap_or_default();
        println!("portcullis listening on {}{pinned}", l.label());
        listeners.push(l);
    }
    if let Some(first) = specs.first() {
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
    let gateway_for_refusals = gateway.clone();
    // Each worker forwards over its own connection pool (see `listen::serve`).
    let make_handler: HandlerFactory = Arc::new(move || -> Handler {
        let mut gw = (*gateway).clone();
        gw.daemon = crate::forward::Daemon::new(Upstream::new(gateway.daemon.addr().clone()));
        let gw = Arc::new(gw);
        Arc::new(move |req, conn| pipeline::handle(gw.clone(), req, conn).boxed())
    });
    let workers = config.workers;
    let limits = config.limits.clone();
    let record_refused: listen::RefusalRecorder = {
        let gateway = gateway_for_refusals;
        Arc::new(move |conn, refused| {
            let gw = gateway.clone();
            async move { pipeline::record_refused_connection(&gw, &conn, refused).await }.boxed()
        })
    };
    let control = listen::Control::new(&limits, Some(record_refused));
    if let Some(metrics) = &metrics_handle {
        metrics.attach_listeners(control.clone());
    }
    let grace = config.shutdown_grace;
    // Installed before serving, so that no signal finds the default action (death).
    let mut signals = Signals::install()?;
    let serving = {
        let control = control.clone();
        tokio::task::spawn_blocking(move || {
            listen::serve(listeners, limits, workers, make_handler, control, grace)
        })
    };
    tokio::pin!(serving);
    let signal = tokio::select! {
        served = &mut serving => return served.context("the listeners stopped")?,
        signal = signals.next() => signal,
    };

    // Stop accepting; the requests in flight have `grace` to finish.
    tracing::info!(
        signal,
        connections = control.open_connections(),
        grace_s = grace.as_secs_f64(),
        "stopping: no new connections; answering the requests in flight (a second signal exits at once)"
    );
    control.stop_accepting();
    tokio::spawn(async move {
        let again = signals.next().await;
        eprintln!("portcullis: {again} again: exiting at once");
        std::process::exit(1);
    });
    if !control.drained(grace).await {
        tracing::warn!(
            connections = control.open_connections(),
            "the grace period is over: closing the connections still open"
        );
    }
    // The workers close their streams and hijacked connections as they return.
    // Whatever went wrong there, the log and the socket files are still dealt with.
    match tokio::time::timeout(Duration::from_secs(5), &mut serving).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "a worker failed while stopping"),
        Ok(Err(e)) => tracing::error!(error = %e, "the listeners did not stop cleanly"),
        Err(_) => tracing::warn!("the workers did not stop in time"),
    }
    shut_down(&specs, &owned_by_systemd, &log, &db, &control);
    Ok(())
}

/// The last steps of a clean stop: the log durable, the socket files gone.
fn shut_down(
    listeners: &[crate::config::ListenerSpec],
    owned_by_systemd: &[crate::config::ListenAddr],
    log: &crate::record::AuditLog,
    db: &sled::Db,
    control: &listen::Control,
) {
    if !log.close_and_wait(Duration::from_secs(10)) {
        tracing::error!("the decision log did not finish writing; the next start replays its WAL");
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "flushing the database failed");
    }
    for spec in listeners {
        if owned_by_systemd.contains(&spec.addr) {
            continue;
        }
        if let crate::config::ListenAddr::Unix(path) = &spec.addr {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
    let refused: Vec<String> = control
        .refusals
        .snapshot()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    tracing::info!(
        refused_without_record = %refused.join(" "),
        "stopped cleanly"
    );
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
