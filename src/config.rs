//! Serve-time configuration: embedded defaults that work with no file and no
//! arguments, overridden by flags and `PORTCULLIS_*` environment variables.
//!
//! Why these defaults: root gets the paths an operator expects
//! (`/run/portcullis.sock`, `/var/lib/portcullis`); anyone else gets paths they
//! can write (`$XDG_RUNTIME_DIR`, `~/.local/share`), so `portcullis serve`
//! always starts.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Where requests are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for UpstreamAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            Ok(UpstreamAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            Ok(UpstreamAddr::Tcp(a.trim_end_matches('/').to_string()))
        } else if s.starts_with('/') {
            Ok(UpstreamAddr::Unix(PathBuf::from(s)))
        } else {
            Err(format!(
                "upstream {s:?}: expected unix:///path or tcp://host:port"
            ))
        }
    }
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            UpstreamAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The transport of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(String),
    /// TCP with TLS; client certificates are required.
    Tls(String),
}

/// One `--listen` value: `unix:///path[?mode=660&group=docker&caller=NAME]`,
/// `tcp://HOST:PORT[?caller=NAME]` or `tls://HOST:PORT[?caller=NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub addr: ListenAddr,
    /// File mode of a unix socket (octal).
    pub mode: Option<u32>,
    /// Group owning a unix socket (name or gid).
    pub group: Option<String>,
    /// Every connection on this listener *is* this caller.
    pub caller: Option<String>,
}

impl ListenerSpec {
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        ListenerSpec {
            addr: ListenAddr::Unix(path.into()),
            mode: None,
            group: None,
            caller: None,
        }
    }

    /// A short label for logs and audit records.
    pub fn label(&self) -> String {
        match &self.addr {
            ListenAddr::Unix(p) => format!("unix://{}", p.display()),
            ListenAddr::Tcp(a) => format!("tcp://{a}"),
            ListenAddr::Tls(a) => format!("tls://{a}"),
        }
    }
}

impl FromStr for ListenerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (base, query) = s.split_once('?').unwrap_or((s, ""));
        let addr = if let Some(p) = base.strip_prefix("unix://") {
            ListenAddr::Unix(PathBuf::from(p))
        } else if let Some(a) = base.strip_prefix("tcp://") {
            ListenAddr::Tcp(a.to_string())
        } else if let Some(a) = base.strip_prefix("tls://") {
            ListenAddr::Tls(a.to_string())
        } else if base.starts_with('/') {
            ListenAddr::Unix(PathBuf::from(base))
        } else {
            return Err(format!(
                "listener {s:?}: expected unix:///path, tcp://host:port or tls://host:port"
            ));
        };
        let mut spec = ListenerSpec {
            addr,
            mode: None,
            group: None,
            caller: None,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "mode" => {
                    spec.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| {
                        format!("listener {s:?}: mode {v:?} is not an octal file mode")
                    })?)
                }
                "group" => spec.group = Some(v.into_owned()),
                "caller" if !v.is_empty() => spec.caller = Some(v.into_owned()),
                other => return Err(format!("listener {s:?}: unknown option {other:?}")),
            }
        }
        if (spec.mode.is_some() || spec.group.is_some())
            && !matches!(spec.addr, ListenAddr::Unix(_))
        {
            return Err(format!(
                "listener {s:?}: mode and group apply to unix sockets only"
            ));
        }
        Ok(spec)
    }
}

/// Enforce decisions, or only record what would have been refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Enforce,
    /// Decide and record every request, enforce nothing (for rolling out).
    AuditOnly,
}

/// As the flag spells it (`enforce`, `audit-only`), for messages.
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// TLS material for `tls://` listeners.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// Limits against hostile clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_inspect: usize,
    /// `docker cp` uploads are read whole so every entry is checked before any is forwarded.
    pub max_archive_inspect: usize,
    pub max_connections: usize,
    /// Connections one caller may hold open at once, so that one caller's
    /// slow connections cannot take every slot (see `listen::connection_owner`
    /// for who counts as one caller at accept time).
    pub max_connections_per_caller: usize,
    pub header_read_timeout: Duration,
    /// Upper bound on the request head (request line + headers) in bytes:
    /// 1 MiB by default, Docker's own limit (Go's `http.DefaultMaxHeaderBytes`),
    /// since a registry login (`X-Registry-Auth`) can run to tens of KiB.
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_inspect: 4 * 1024 * 1024,
            max_archive_inspect: 256 * 1024 * 1024,
            max_connections: 1024,
            max_connections_per_caller: 256,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 1024 * 1024,
            max_headers: 100,
        }
    }
}

/// Everything `portcullis serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listeners: Vec<ListenerSpec>,
    pub upstream: UpstreamAddr,
    pub data_dir: PathBuf,
    pub mode: Mode,
    /// A directory of `*.rego` that replaces the embedded policies.
    pub policies: Option<PathBuf>,
    /// The embedded policy template: strict, standard or permissive.
    pub template: String,
    /// An OPA bundle: policies and trust (see [`crate::decide::bundle`]).
    pub bundle: Option<PathBuf>,
    /// The HS256 secret file a bundle must be signed with.
    pub bundle_verification_key: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    /// Start even if the audit chain does not verify.
    pub allow_broken_chain: bool,
    /// Verify the whole audit chain at startup, not only its tail.
    pub verify_full: bool,
    /// fdatasync the decision log after every group commit.
    pub audit_fsync: bool,
    /// Free bytes the decision log keeps on its disk.
    pub audit_min_free: u64,
    /// Unix uids that are the built-in administrator (the process owner and root).
    pub admin_uids: Vec<u32>,
    /// The worker threads serving connections.
    pub workers: Workers,
    /// Webhooks told of recorded decisions (see [`crate::notify`]).
    pub notify: Option<Notify>,
    /// Where recorded decisions are shipped in OPA's decision-log format (see [`crate::dlogs`]).
    pub decision_logs: Option<crate::dlogs::Settings>,
    /// HOST:PORT of the `/metrics` listener (see [`crate::metrics`]).
    pub metrics: Option<String>,
    /// Callers and trust relationships declared in a file, applied at start.
    pub trust_file: Option<PathBuf>,
    /// After SIGTERM or SIGINT, how long the requests in flight have to finish
    /// before their connections are closed.
    pub shutdown_grace: Duration,
    /// The agent controls' timings and the watchdog (see [`crate::agent`]).
    pub agent: AgentSettings,
    /// Reuse a decision for a repeated input where it is provably the same
    /// decision (see `decide::engine`'s memo); `--no-decision-memo` turns it off.
    pub decision_memo: bool,
}

/// The agent controls: timings (tests shorten them) and the watchdog.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// How long a recreated container may take to be running (and healthy,
    /// when it has a healthcheck) before the update rolls back.
    pub ready_timeout: Duration,
    /// How often an idle SSE stream sends a comment, so that proxies keep it open.
    pub heartbeat: Duration,
    /// `serve --watchdog`: restart unhealthy containers that opt in.
    pub watchdog: bool,
    /// The watchdog's first delay before a restart (then ×1.5 each time).
    pub watchdog_base_delay: Duration,
    /// At most this many restarts of one container within `watchdog_window`.
    pub watchdog_max_restarts: u32,
    pub watchdog_window: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            ready_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            watchdog: false,
            watchdog_base_delay: Duration::from_secs(10),
            watchdog_max_restarts: 5,
            watchdog_window: Duration::from_secs(3600),
        }
    }
}

/// `--notify-webhook` and its secret.
#[derive(Debug, Clone)]
pub struct Notify {
    pub webhooks: Vec<crate::notify::WebhookSpec>,
    pub secret: Vec<u8>,
    pub queue: usize,
}

/// The threads that serve connections (see `listen::serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// How many; 0 = one per CPU.
    pub count: usize,
    /// How long a worker with nothing to do busy-waits before it sleeps.
    pub idle_spin: Duration,
}

impl Workers {
    /// The default spin, measured on a 2-vCPU VM (`cargo bench --bench proxy`):
    /// 8–15 µs took 25–30 µs off the added p50 at one client; 100 µs starved
    /// the client and the upstream of CPU.
    pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(10);

    /// The number of threads to start.
    pub fn threads(&self) -> usize {
        match self.count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            count: 0,
            idle_spin: Self::DEFAULT_IDLE_SPIN,
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `/run/portcullis.sock` for root, `$XDG_RUNTIME_DIR/portcullis.sock` otherwise.
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/portcullis.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => Path::new(&dir).join("portcullis.sock"),
        None => home().join(".portcullis").join("portcullis.sock"),
    }
}

/// `/var/lib/portcullis` for root, `$XDG_DATA_HOME/portcullis` otherwise.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/portcullis");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) => Path::new(&dir).join("portcullis"),
        None => home().join(".local/share/portcullis"),
    }
}

/// The process owner and root: the built-in administrators.
pub fn default_admin_uids() -> Vec<u32> {
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 {
        vec![0]
    } else {
        vec![0, me]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_specs_parse_with_options() {
        let s: ListenerSpec = "unix:///run/t.sock?mode=660&group=docker&caller=traefik"
            .parse()
            .unwrap();
        assert_eq!(s.addr, ListenAddr::Unix("/run/t.sock".into()));
        assert_eq!(s.mode, Some(0o660));
        assert_eq!(s.group.as_deref(), Some("docker"));
        assert_eq!(s.caller.as_deref(), Some("traefik"));
        let t: ListenerSpec = "tls://0.0.0.0:2376".parse().unwrap();
        assert_eq!(t.addr, ListenAddr::Tls("0.0.0.0:2376".into()));
        assert!("tcp://1.2.3.4:1?mode=600".parse::<ListenerSpec>().is_err());
        assert!("unix:///x?mode=9z".parse::<ListenerSpec>().is_err());
        assert!("unix:///x?bogus=1".parse::<ListenerSpec>().is_err());
        assert!("http://x".parse::<ListenerSpec>().is_err());
    }

    #[test]
    fn upstreams_parse() {
        assert_eq!(
            "unix:///var/run/docker.sock"
                .parse::<UpstreamAddr>()
                .unwrap(),
            UpstreamAddr::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:2375".parse::<UpstreamAddr>().unwrap(),
            UpstreamAddr::Tcp("127.0.0.1:2375".into())
        );
        assert!("ftp://x".parse::<UpstreamAddr>().is_err());
    }
}
