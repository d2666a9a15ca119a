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
}

#[derive(Debug, Args)]
pub struct ServeArgs {
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
    /// Microseconds an idle worker busy-waits before it sleeps: waking a
    /// sleeping thread costs more than that on a small VM. 0 = sleep at once.
    #[arg(long, env = "PORTCULLIS_IDLE_SPIN_US", default_value_t = Workers::DEFAULT_IDLE_SPIN.as_micros() as u64)]
    pub idle_spin_us: u64,
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
        let listeners = if self.listen.is_empty() {
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
            tls,
            limits: Limits {
                max_body_inspect: self.max_body,
                max_archive_inspect: self.max_archive,
                max_connections: self.max_connections,
                header_read_timeout: Duration::from_secs(self.header_read_timeout.max(1)),
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
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Compile every policy and report errors with file and line.
    Check(PolicySourceArgs),
    /// Run the test_* rules of *_test.rego, in the style of `opa test`.
    Test(PolicySourceArgs),
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
