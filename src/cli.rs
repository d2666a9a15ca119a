//! The command line: `serve` for operators, `policy` for policy authors,
//! `trust` and `caller` for whoever administers the trust data, `audit` for
//! auditors. Flags follow clap conventions; every serve flag also reads a
//! `PORTCULLIS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    self, Limits, ListenerSpec, Mode, ServeConfig, TlsFiles, UpstreamAddr, Workers,
};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An authorization proxy for the Docker Engine API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr: text, or one JSON object a line.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (embedded defaults: no file, no arguments needed).
    Serve(ServeArgs),
    /// Policy author's tools: check, test, eval.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage trust relationships through a running server's admin API.
    #[command(subcommand)]
    Trust(crate::admin::cli::TrustCommand),
    /// Manage callers and their credentials through a running server.
    #[command(subcommand)]
    Caller(crate::admin::cli::CallerCommand),
    /// Query and verify the decision log.
    #[command(subcommand)]
    Audit(crate::admin::cli::AuditCommand),
    /// Agent controls through a running server: update-image, env, health,
    /// stats, logs, events.
    #[command(subcommand)]
    Container(crate::agent::cli::ContainerCommand),
    /// Ask a running server for `/_ping` through its whole pipeline (exit 0
    /// when it answers OK): the container image's HEALTHCHECK.
    Health(crate::admin::cli::ServerArgs),
    /// Print a shell completion script: `portcullis completions bash > /etc/bash_completion.d/portcullis`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `portcullis man > /usr/local/share/man/man1/portcullis.1`.
    Man,
    /// Check a deployment (the daemon, docker.sock's permissions, the data
    /// directory, the whole log chain, the policies, the listeners, the
    /// clock): one line per check, exit non-zero on any failure. Takes the
    /// same flags and config file as serve.
    Doctor {
        #[command(flatten)]
        serve: ServeArgs,
        /// text (default) or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Write a starter deployment into DIR: portcullis.toml, trust.yaml, the
    /// policies of a template, and systemd units. Never overwrites without --force.
    Init {
        /// Where to write (e.g. /etc/portcullis).
        dir: PathBuf,
        /// The policy template to start from: strict, standard or permissive.
        #[arg(long, default_value = "standard")]
        template: String,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file holding any of these flags by name (`listen = [...]`,
    /// `data_dir = "..."`); flags and PORTCULLIS_* override it.
    /// Default: /etc/portcullis/portcullis.toml when it exists.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Callers and trust relationships (JSON, or YAML by extension) applied
    /// at start, idempotently: each declared (caller, target) pair is created
    /// or updated to exactly what is declared; others are left alone.
    #[arg(long, env = "PORTCULLIS_TRUST_FILE")]
    pub trust_file: Option<PathBuf>,
    /// Where to listen (repeatable): unix:///path[?mode=660&group=G&caller=NAME],
    /// tcp://HOST:PORT[?caller=NAME], tls://HOST:PORT[?caller=NAME].
    /// Default: unix:///run/portcullis.sock (root) or $XDG_RUNTIME_DIR/portcullis.sock.
    #[arg(long, env = "PORTCULLIS_LISTEN", value_delimiter = ',')]
    pub listen: Vec<ListenerSpec>,
    /// The Docker daemon to forward to.
    #[arg(
        long,
        env = "PORTCULLIS_UPSTREAM",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub upstream: UpstreamAddr,
    /// Where the trust store and the decision log live.
    /// Default: /var/lib/portcullis (root) or $XDG_DATA_HOME/portcullis.
    #[arg(long, env = "PORTCULLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// enforce, or audit-only (decide and record everything, enforce nothing).
    #[arg(long, env = "PORTCULLIS_MODE", value_enum, default_value = "enforce")]
    pub mode: Mode,
    /// A directory of *.rego files that replaces the embedded policies.
    #[arg(long, env = "PORTCULLIS_POLICIES")]
    pub policies: Option<PathBuf>,
    /// The embedded policy template: strict, standard or permissive.
    #[arg(long, env = "PORTCULLIS_TEMPLATE", default_value = "standard")]
    pub template: String,
    /// An OPA bundle (.tar.gz): its policies replace the embedded ones and
    /// its data.json's portcullis.trust is applied as --trust-file is.
    #[arg(long, env = "PORTCULLIS_BUNDLE", conflicts_with = "policies")]
    pub bundle: Option<PathBuf>,
    /// The key (a file) the bundle must be signed with (.signatures.json):
    /// an RSA public key in PEM (RS256), else an HMAC secret (HS256).
    /// Without it a signature is not checked.
    #[arg(long, env = "PORTCULLIS_BUNDLE_VERIFICATION_KEY", requires = "bundle")]
    pub bundle_verification_key: Option<PathBuf>,
    /// Server certificate (PEM) for tls:// listeners.
    #[arg(long, env = "PORTCULLIS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM) for tls:// listeners.
    #[arg(long, env = "PORTCULLIS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to.
    #[arg(long, env = "PORTCULLIS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Largest body read for inspection (container create, exec, …), in bytes.
    #[arg(long, env = "PORTCULLIS_MAX_BODY", default_value_t = Limits::default().max_body_inspect)]
    pub max_body: usize,
    /// Largest docker cp upload read for inspection, in bytes.
    #[arg(long, env = "PORTCULLIS_MAX_ARCHIVE", default_value_t = Limits::default().max_archive_inspect)]
    pub max_archive: usize,
    /// Most connections served at once.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Most connections one caller may hold open at once (a pinned listener's
    /// caller, else a unix uid, else a client IP address).
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS_PER_CALLER", default_value_t = Limits::default().max_connections_per_caller)]
    pub max_connections_per_caller: usize,
    /// Largest request head (request line and headers) accepted, in bytes;
    /// larger ones get 431. The default, 1 MiB, is Docker's own.
    #[arg(long, env = "PORTCULLIS_MAX_HEADER_BYTES", default_value_t = Limits::default().max_header_bytes)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Start even when the decision log's hash chain does not verify.
    #[arg(long, env = "PORTCULLIS_ALLOW_BROKEN_CHAIN")]
    pub allow_broken_chain: bool,
    /// At startup, verify the decision log's whole hash chain, not only its last
    /// 1,000 records (the time grows with the log's size).
    #[arg(long, env = "PORTCULLIS_VERIFY_FULL")]
    pub verify_full: bool,
    /// fdatasync the decision log after every group commit (survives power
    /// loss, at a cost per batch); by default a record survives a killed process.
    #[arg(long, env = "PORTCULLIS_AUDIT_FSYNC")]
    pub audit_fsync: bool,
    /// Free bytes kept on the data directory's disk: below it requests are
    /// refused (503) before sled could hit a full disk.
    #[arg(long, env = "PORTCULLIS_AUDIT_MIN_FREE", default_value_t = 64 << 20)]
    pub audit_min_free: u64,
    /// Worker threads, each serving its connections from accept to forward
    /// (0 = one per CPU).
    #[arg(long, env = "PORTCULLIS_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Seconds the requests in flight have to finish after SIGTERM or SIGINT;
    /// then streams and hijacked connections are closed. A second signal
    /// exits at once.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Microseconds an idle worker busy-waits before it sleeps: waking a
    /// sleeping thread costs more than that on a small VM. 0 = sleep at once.
    #[arg(long, env = "PORTCULLIS_IDLE_SPIN_US", default_value_t = Workers::DEFAULT_IDLE_SPIN.as_micros() as u64)]
    pub idle_spin_us: u64,
    /// POST recorded decisions to this webhook, in signed batches (repeatable):
    /// URL[#decision=deny|allow|any&caller=a,b&action=container.*]; denials by default.
    #[arg(long, env = "PORTCULLIS_NOTIFY_WEBHOOK")]
    pub notify_webhook: Vec<crate::notify::WebhookSpec>,
    /// The shared secret that signs webhook batches (HMAC-SHA256); required with --notify-webhook.
    #[arg(long, env = "PORTCULLIS_NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<String>,
    /// Records queued per webhook at most; beyond it they are dropped and counted.
    #[arg(long, env = "PORTCULLIS_NOTIFY_QUEUE", default_value_t = 10_000)]
    pub notify_queue: usize,
    /// Ship every recorded decision to this collector, in OPA's decision-log
    /// format (gzipped JSON arrays, as OPA's decision log plugin POSTs them);
    /// resumes after a restart from the last acknowledged seq.
    #[arg(long, env = "PORTCULLIS_DECISION_LOGS")]
    pub decision_logs: Option<String>,
    /// Decision-log wake-ups queued at most; beyond it they are dropped and
    /// counted (the records are still shipped, read from the log).
    #[arg(long, env = "PORTCULLIS_DECISION_LOGS_QUEUE", default_value_t = 10_000)]
    pub decision_logs_queue: usize,
    /// Decision-log events per POST at most (a batch also leaves after 1 s).
    #[arg(long, env = "PORTCULLIS_DECISION_LOGS_BATCH", default_value_t = 500)]
    pub decision_logs_batch: usize,
    /// Serve Prometheus metrics at /metrics on its own listener: tcp://HOST:PORT
    /// (never on a Docker listener). Off by default.
    #[arg(long, env = "PORTCULLIS_METRICS")]
    pub metrics: Option<String>,
    /// Seconds a container recreated by update-image or an env patch has to be
    /// running (and healthy, when it has a healthcheck); then the update rolls back.
    #[arg(long, env = "PORTCULLIS_UPDATE_TIMEOUT", default_value_t = 60.0)]
    pub update_timeout: f64,
    /// Seconds between heartbeats (SSE comments) on an idle log or event stream.
    #[arg(long, env = "PORTCULLIS_SSE_HEARTBEAT", default_value_t = 15.0)]
    pub sse_heartbeat: f64,
    /// Restart unhealthy containers labelled `portcullis.watchdog=restart`,
    /// each restart decided (as caller `watchdog`) and recorded. Off by default.
    #[arg(long, env = "PORTCULLIS_WATCHDOG")]
    pub watchdog: bool,
    /// Seconds before the watchdog's first restart of a container; each next one waits ×1.5.
    #[arg(long, env = "PORTCULLIS_WATCHDOG_DELAY", default_value_t = 10.0)]
    pub watchdog_delay: f64,
    /// Restarts of one container within the window before the watchdog gives up on it.
    #[arg(long, env = "PORTCULLIS_WATCHDOG_MAX_RESTARTS", default_value_t = 5)]
    pub watchdog_max_restarts: u32,
    /// Decide every request afresh, never reusing the decision made for the
    /// same input (by default a decision is reused while it provably holds).
    #[arg(long, env = "PORTCULLIS_NO_DECISION_MEMO")]
    pub no_decision_memo: bool,
    /// The watchdog's window, in seconds.
    #[arg(long, env = "PORTCULLIS_WATCHDOG_WINDOW", default_value_t = 3600.0)]
    pub watchdog_window: f64,
}

/// Seconds given on the command line, as a duration (a bad value is an error).
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|e| anyhow::anyhow!("--{flag} {value}: {e}"))
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        let tls = match (self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            _ => anyhow::bail!("--tls-cert, --tls-key and --tls-client-ca go together"),
        };
        // Under socket activation the sockets systemd passes are the default.
        let listeners = if self.listen.is_empty() && !crate::listen::socket_activated() {
            vec![ListenerSpec::unix(config::default_socket())]
        } else {
            self.listen
        };
        Ok(ServeConfig {
            listeners,
            upstream: self.upstream,
            data_dir: self.data_dir.unwrap_or_else(config::default_data_dir),
            mode: self.mode,
            policies: self.policies,
            template: self.template,
            bundle: self.bundle,
            bundle_verification_key: self.bundle_verification_key,
            tls,
            limits: Limits {
                max_body_inspect: self.max_body,
                max_archive_inspect: self.max_archive,
                max_connections: self.max_connections,
                max_connections_per_caller: self.max_connections_per_caller,
                header_read_timeout: Duration::from_secs(self.header_read_timeout.max(1)),
                max_header_bytes: self.max_header_bytes,
                ..Limits::default()
            },
            allow_broken_chain: self.allow_broken_chain,
            verify_full: self.verify_full,
            audit_fsync: self.audit_fsync,
            audit_min_free: self.audit_min_free,
            admin_uids: config::default_admin_uids(),
            workers: Workers {
                count: self.workers,
                idle_spin: Duration::from_micros(self.idle_spin_us),
            },
            trust_file: self.trust_file,
            decision_memo: !self.no_decision_memo,
            agent: config::AgentSettings {
                ready_timeout: seconds("update-timeout", self.update_timeout)?,
                heartbeat: seconds("sse-heartbeat", self.sse_heartbeat)?,
                watchdog: self.watchdog,
                watchdog_base_delay: seconds("watchdog-delay", self.watchdog_delay)?,
                watchdog_max_restarts: self.watchdog_max_restarts,
                watchdog_window: seconds("watchdog-window", self.watchdog_window)?,
            },
            metrics: match self.metrics {
                None => None,
                Some(m) => Some(
                    m.strip_prefix("tcp://")
                        .map(str::to_string)
                        .ok_or_else(|| anyhow::anyhow!("--metrics {m:?}: expected tcp://HOST:PORT"))?,
                ),
            },
            decision_logs: match &self.decision_logs {
                None => None,
                Some(url) => Some(crate::dlogs::Settings {
                    url: crate::dlogs::parse_url(url).map_err(anyhow::Error::msg)?,
                    queue: self.decision_logs_queue,
                    batch: self.decision_logs_batch,
                }),
            },
            notify: match (self.notify_webhook.is_empty(), self.notify_secret) {
                (true, _) => None,
                (false, Some(secret)) if !secret.is_empty() => Some(config::Notify {
                    webhooks: self.notify_webhook,
                    secret: secret.into_bytes(),
                    queue: self.notify_queue,
                }),
                (false, _) => anyhow::bail!(
                    "--notify-webhook needs --notify-secret (PORTCULLIS_NOTIFY_SECRET): batches are always signed"
                ),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Compile every policy and report errors with file and line.
    Check(PolicySourceArgs),
    /// Run the test_* rules, in the style of `opa test`: failures name the
    /// rule's file:line and the statement that failed; exit 2 on any failure.
    Test {
        /// A policy directory (as --policies): its *.rego, tests included.
        dir: Option<PathBuf>,
        #[command(flatten)]
        source: PolicySourceArgs,
        /// List passing tests too (default: failures, errors and the summary).
        #[arg(short, long)]
        verbose: bool,
        /// Output format: text, or json (OPA's shape).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Report the lines of the policies (not the tests) no test reached.
        #[arg(long)]
        coverage: bool,
    },
    /// Evaluate one input document and print the decision.
    Eval {
        #[command(flatten)]
        source: PolicySourceArgs,
        /// The input document (JSON), as documented in policies/README.md.
        #[arg(long)]
        input: PathBuf,
        /// Trust relationships (a JSON array) to evaluate against.
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Also say which rules produced the decision and each reason, with file:line.
        #[arg(long)]
        explain: bool,
        /// With --explain: every rule defined for the input and its value.
        #[arg(long, requires = "explain")]
        full: bool,
        /// text (default) or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Build an OPA bundle (.tar.gz) for `serve --bundle`: the served
    /// *.rego of a directory, and trust data as data.portcullis.trust.
    Bundle {
        /// The policy directory (its *.rego but *_test.rego).
        #[arg(long)]
        policies: PathBuf,
        /// Take the callers and relationships from this data directory's
        /// trust store (the server must not be running on it).
        #[arg(long, conflicts_with = "trust")]
        trust_from_store: Option<PathBuf>,
        /// Take trust from a file, as --trust-file takes it (JSON or YAML).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// The bundle's revision (default: a hash of its contents).
        #[arg(long)]
        revision: Option<String>,
        /// Sign with this key (a file): an RSA private key in PEM (RS256),
        /// else an HMAC secret (HS256). Adds .signatures.json.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// Where to write the bundle.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Debug, Args, Clone)]
pub struct PolicySourceArgs {
    /// A policy directory; default: the embedded policies.
    #[arg(long, env = "PORTCULLIS_POLICIES")]
    pub policies: Option<PathBuf>,
    /// The embedded template when no directory is given.
    #[arg(long, env = "PORTCULLIS_TEMPLATE", default_value = "standard")]
    pub template: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_config(args: &[&str]) -> ServeConfig {
        let argv = ["portcullis", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Serve(serve) => serve.into_config().expect("a valid config"),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn process_limits_default_to_docker_and_can_be_set() {
        let defaults = serve_config(&[]);
        assert_eq!(defaults.limits.max_header_bytes, 1 << 20);
        assert_eq!(defaults.limits.max_connections_per_caller, 256);
        assert_eq!(defaults.shutdown_grace, Duration::from_secs(10));
        let tuned = serve_config(&[
            "--max-header-bytes",
            "65536",
            "--max-connections-per-caller",
            "4",
            "--shutdown-grace",
            "3",
        ]);
        assert_eq!(tuned.limits.max_header_bytes, 65536);
        assert_eq!(tuned.limits.max_connections_per_caller, 4);
        assert_eq!(tuned.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn workers_spin_by_default_and_can_sleep_at_once() {
        let defaults = serve_config(&[]);
        assert_eq!(defaults.workers, Workers::default());
        assert_eq!(defaults.workers.idle_spin, Duration::from_micros(10));
        let tuned = serve_config(&["--workers", "3", "--idle-spin-us", "0"]);
        assert_eq!(tuned.workers.count, 3);
        assert_eq!(tuned.workers.threads(), 3);
        assert!(tuned.workers.idle_spin.is_zero());
    }
}
