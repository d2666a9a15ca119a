//! Listen: accept connections on unix sockets, TCP and TLS, and hand each
//! HTTP/1.1 request to the pipeline together with who is on the other end.
//!
//! Why here: everything identity rests on is known only at accept time (the
//! unix peer's credentials, the TLS client certificate, which listener), and
//! the limits against hostile clients (connection count, header size and
//! read time, HTTP/2 prior knowledge) are cheapest to enforce before hyper
//! parses anything. The same holds for the per-caller connection limit, and
//! for a clean stop ([`Control`]): no new connection, the requests in flight
//! answered, then the rest closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::{Limits, ListenAddr, ListenerSpec, TlsFiles, Workers};
use crate::reply::ProxyBody;

/// Who is on the other end of a connection, as far as the transport can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    Tcp {
        addr: SocketAddr,
    },
    /// A TLS connection whose client certificate verified against the CA.
    Tls {
        addr: SocketAddr,
        common_name: Option<String>,
    },
}

/// One accepted connection, shared by every request on it.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    /// The listener's label, e.g. `unix:///run/portcullis.sock`.
    pub listener: String,
    /// Set when the listener is pinned to one caller.
    pub pinned_caller: Option<String>,
    pub peer: Peer,
}

/// What the pipeline provides: a request and its connection in, a response out.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>, Arc<Connection>) -> BoxFuture<'static, Response<ProxyBody>>
        + Send
        + Sync,
>;

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
}

/// A bound listener, ready to serve.
pub struct Listener {
    spec: ListenerSpec,
    socket: Socket,
}

impl Listener {
    pub fn label(&self) -> String {
        self.spec.label()
    }

    /// For `tcp://127.0.0.1:0`: the port the OS chose.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            Socket::Tcp(l) | Socket::Tls(l, _) => l.local_addr().ok(),
            Socket::Unix(_) => None,
        }
    }
}

/// A listening socket handed over by systemd (socket activation), with the
/// address it is bound to.
pub struct Inherited {
    pub addr: ListenAddr,
    fd: std::os::fd::OwnedFd,
}

/// Whether systemd passed listening sockets to this process (`LISTEN_PID` is
/// ours and `LISTEN_FDS` is set).
pub fn socket_activated() -> bool {
    std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id())
        && std::env::var_os("LISTEN_FDS").is_some()
}

/// Take the sockets systemd passed (fds 3.. by the `LISTEN_FDS` protocol),
/// each with its bound address. Called once: the variables are removed so
/// that no child inherits them.
pub fn inherited_sockets() -> anyhow::Result<Vec<Inherited>> {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    use std::os::fd::{FromRawFd, OwnedFd};
    let fds = sd_notify::listen_fds().context("reading LISTEN_FDS")?;
    let mut out = Vec::new();
    for raw in fds {
        // Checked before the descriptor is taken over: one that is not a
        // socket is not ours to close (it may be the runtime's own).
        let name: SockaddrStorage = getsockname(raw)
            .with_context(|| format!("socket activation: fd {raw} is not a socket"))?;
        // SAFETY: systemd passed this socket to us for our own use, and
        // `listen_fds` hands each one out once (it removes the variables).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = match name.family() {
            Some(AddressFamily::Unix) => {
                let path = name
                    .as_unix_addr()
                    .and_then(|u| u.path())
                    .with_context(|| {
                        format!("socket activation: fd {raw} is an unnamed unix socket")
                    })?;
                ListenAddr::Unix(path.to_path_buf())
            }
            Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
                let std = std::net::TcpListener::from(fd.try_clone()?);
                ListenAddr::Tcp(std.local_addr()?.to_string())
            }
            other => bail!("socket activation: fd {raw} has address family {other:?}"),
        };
        out.push(Inherited { addr, fd });
    }
    Ok(out)
}

/// The listener for `spec` on a socket systemd bound (its mode and owner are
/// the `.socket` unit's): `SocketMode=`, `SocketGroup=`.
pub fn adopt(
    spec: &ListenerSpec,
    inherited: Inherited,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<Listener> {
    let label = spec.label();
    let socket = match &spec.addr {
        ListenAddr::Unix(_) => {
            let l = std::os::unix::net::UnixListener::from(inherited.fd);
            l.set_nonblocking(true)?;
            Socket::Unix(UnixListener::from_std(l).with_context(|| format!("adopting {label}"))?)
        }
        ListenAddr::Tcp(_) | ListenAddr::Tls(_) => {
            let l = std::net::TcpListener::from(inherited.fd);
            l.set_nonblocking(true)?;
            let l = TcpListener::from_std(l).with_context(|| format!("adopting {label}"))?;
            match &spec.addr {
                ListenAddr::Tls(_) => {
                    let files = tls.context(
                        "a tls:// listener needs --tls-cert, --tls-key and --tls-client-ca",
                    )?;
                    Socket::Tls(l, tls_acceptor(files)?)
                }
                _ => Socket::Tcp(l),
            }
        }
    };
    Ok(Listener {
        spec: spec.clone(),
        socket,
    })
}

/// Whether an inherited socket serves `spec` (same path, or same address).
pub fn serves(inherited: &Inherited, spec: &ListenerSpec) -> bool {
    match (&inherited.addr, &spec.addr) {
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b) | ListenAddr::Tls(b)) => {
            let parse = |s: &str| s.parse::<SocketAddr>().ok();
            parse(a).is_some() && parse(a) == parse(b)
        }
        _ => false,
    }
}

/// Bind one listener. A stale unix socket file (nobody answers on it) is
/// replaced; a live server's socket, or any other file at that path, is an
/// error, never overwritten.
pub async fn bind(spec: &ListenerSpec, tls: Option<&TlsFiles>) -> anyhow::Result<Listener> {
    let socket = match &spec.addr {
        ListenAddr::Unix(path) => Socket::Unix(bind_unix(path, spec)?),
        ListenAddr::Tcp(addr) => Socket::Tcp(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding tcp://{addr}"))?,
        ),
        ListenAddr::Tls(addr) => {
            let files =
                tls.context("a tls:// listener needs --tls-cert, --tls-key and --tls-client-ca")?;
            let acceptor = tls_acceptor(files)?;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding tls://{addr}"))?;
            Socket::Tls(l, acceptor)
        }
    };
    Ok(Listener {
        spec: spec.clone(),
        socket,
    })
}

fn bind_unix(path: &Path, spec: &ListenerSpec) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        // Unlinking a live server's socket would leave that server running
        // and unreachable: only a socket nobody answers on is stale.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "another server is listening on {}; stop it first, or choose another --listen path",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "{} exists and cannot be connected to (permission denied), so it may belong to \
                 a live server; refusing to replace it",
                path.display()
            ),
            Err(_) => {}
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // 0660 by default: a local user who is neither owner nor in the group has no
    // business even talking to the proxy.
    let mode = spec.mode.unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
    if let Some(group) = &spec.group {
        let gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(group)
                .with_context(|| format!("looking up group {group}"))?
                .with_context(|| format!("no such group {group}"))?
                .gid
                .as_raw(),
        };
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .with_context(|| format!("chgrp {group} {}", path.display()))?;
    }
    Ok(listener)
}

fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .context("parsing --tls-cert")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .context("parsing --tls-key")?
        .context("no private key in --tls-key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &read(&files.client_ca)?[..]) {
        roots.add(ca.context("parsing --tls-client-ca")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("building the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("loading the server certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The common name of a DER certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Refusals made before a request exists: counted here (they become
/// metrics). Those of a connection that sent something are also recorded
/// ([`Refused`]); the rest are only counted. README.md lists which.
#[derive(Debug, Default)]
pub struct Refusals {
    /// An HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`).
    pub h2_preface: AtomicU64,
    /// A request head over `--max-header-bytes` (431).
    pub head_too_large: AtomicU64,
    /// A head hyper could not parse: a malformed request line, header or
    /// `Transfer-Encoding`, too many headers (400).
    pub malformed_head: AtomicU64,
    /// A head not complete within `--header-read-timeout`.
    pub header_timeout: AtomicU64,
    /// A connection over `--max-connections` (503).
    pub busy: AtomicU64,
    /// A connection over `--max-connections-per-caller` (503).
    pub caller_busy: AtomicU64,
}

impl Refusals {
    /// Each counter by name, for logs now and metrics later.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("h2_preface", get(&self.h2_preface)),
            ("head_too_large", get(&self.head_too_large)),
            ("malformed_head", get(&self.malformed_head)),
            ("header_timeout", get(&self.header_timeout)),
            ("busy", get(&self.busy)),
            ("caller_busy", get(&self.caller_busy)),
        ]
    }
}

/// A connection refused before hyper could hand over a request, but after it
/// sent something: the connection identifies a caller, so a record can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    H2Preface,
    HeadTooLarge,
    MalformedHead,
}

impl Refused {
    /// The record's action: no route was ever read, so a marker.
    pub fn action(self) -> &'static str {
        match self {
            Refused::H2Preface => "http.h2_preface",
            Refused::HeadTooLarge => "http.head_too_large",
            Refused::MalformedHead => "http.malformed",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refused::H2Preface => "HTTP/2 prior knowledge (h2c) is refused",
            Refused::HeadTooLarge => "the request head is larger than --max-header-bytes",
            Refused::MalformedHead => "the request head is not valid HTTP/1.1",
        }
    }
}

/// Records a [`Refused`] connection (the pipeline's record stage).
pub type RefusalRecorder =
    Arc<dyn Fn(Arc<Connection>, Refused) -> BoxFuture<'static, ()> + Send + Sync>;

/// What the listeners share across workers: the connection slots, the
/// per-caller slots, the stop signal and the refusal counters.
pub struct Control {
    slots: Arc<Semaphore>,
    max_connections: usize,
    callers: CallerSlots,
    stop: watch::Sender<bool>,
    pub refusals: Arc<Refusals>,
    recorder: Option<RefusalRecorder>,
}

impl Control {
    async fn record_refused(&self, conn: Arc<Connection>, refused: Refused) {
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
        })
    }

    /// Stop accepting, and ask every connection to close once its request in
    /// flight is answered (idle keep-alive connections close at once).
    pub fn stop_accepting(&self) {
        self.stop.send_replace(true);
    }

    fn stopping(&self) -> watch::Receiver<bool> {
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
fn connection_owner(pinned: Option<&str>, accepted: &Accepted) -> String {
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
struct CallerSlots {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One owner's open connection; gives its slot back when dropped.
struct CallerSlot<'a> {
    slots: &'a CallerSlots,
    owner: String,
}

impl CallerSlots {
    fn take(&self, owner: String) -> Option<CallerSlot<'_>> {
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

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// Builds one [`Handler`] per worker: each worker gets its own (so its own
/// pooled upstream connections, which live on that worker's runtime).
pub type HandlerFactory = Arc<dyn Fn() -> Handler + Send + Sync>;

/// Serve every listener on `workers` threads until `control` stops them and
/// their connections have drained (at most `grace` after the stop).
///
/// Why one single-threaded runtime per worker, each accepting on every
/// listener (thread per core, as pingora and envoy do): a connection then
/// lives on one thread from accept to forward: its request, its decision (the
/// policy VM is per thread), its record and its pooled upstream connection.
/// On tokio's shared work-stealing runtime the same request hopped between
/// threads several times, and each wake-up of a parked thread costs more than
/// the proxy's whole latency budget on a small VM. The kernel spreads new
/// connections over the workers blocked in `accept`.
///
/// A worker's runtime ends when it returns: the streams and hijacked
/// connections still open on it are closed then.
pub fn serve(
    listeners: Vec<Listener>,
    limits: Limits,
    workers: Workers,
    make_handler: HandlerFactory,
    control: Arc<Control>,
    grace: Duration,
) -> anyhow::Result<()> {
    let limits = Arc::new(limits);
    let mut shared = Vec::new();
    for l in listeners {
        shared.push(l.into_shareable()?);
    }
    let mut threads = Vec::new();
    for worker in 0..workers.threads() {
        let mut mine = Vec::new();
        for l in &shared {
            mine.push(l.try_clone()?);
        }
        let (control, limits, make_handler) =
            (control.clone(), limits.clone(), make_handler.clone());
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{worker}"))
            .spawn(move || -> anyhow::Result<()> {
                let runtime =
                    worker_runtime(workers.idle_spin).context("starting a worker runtime")?;
                let handler = make_handler();
                runtime.block_on(async move {
                    // hyper arms a header-read timer for every request. tokio
                    // wakes its own driver (an eventfd write and an extra
                    // epoll round, per request) whenever a new timer expires
                    // before every pending one; a short timer that always
                    // pends keeps the header timers from being "earliest".
                    tokio::spawn(async {
                        loop {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    });
                    let mut tasks = Vec::new();
                    for l in mine {
                        let listener = l.into_tokio()?;
                        let (control, limits, handler) =
                            (control.clone(), limits.clone(), handler.clone());
                        tasks.push(tokio::spawn(accept_loop(
                            listener, control, limits, handler,
                        )));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                    // Stopped: let the requests in flight finish.
                    control.drained(grace).await;
                    anyhow::Ok(())
                })
            })
            .context("starting a worker thread")?;
        threads.push(thread);
    }
    drop(shared);
    for t in threads {
        match t.join() {
            Ok(result) => result?,
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    Ok(())
}

/// A worker's runtime: single-threaded, and spinning for `idle_spin` before it
/// sleeps.
///
/// Why spin: with nothing left to run, a worker sleeps in `epoll_wait` until
/// the upstream answers or the client sends its next request, often a few
/// microseconds later. On a VM, putting a vCPU to sleep and waking it again (an
/// inter-processor interrupt, two VM exits) costs tens of microseconds per
/// request, measured as about half of the proxy's samples at one client. A
/// short busy-wait lets what arrives meanwhile be picked up without sleeping;
/// the price is at most `idle_spin` of CPU each time a worker runs out of work.
pub fn worker_runtime(idle_spin: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if !idle_spin.is_zero() {
        builder.on_thread_park(move || {
            let until = Instant::now() + idle_spin;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        });
    }
    builder.build()
}

/// A bound listener as a plain socket, which any worker's runtime can adopt.
struct Shareable {
    spec: ListenerSpec,
    socket: SharedSocket,
}

enum SharedSocket {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
    Tls(std::net::TcpListener, tokio_rustls::TlsAcceptor),
}

impl Listener {
    fn into_shareable(self) -> anyhow::Result<Shareable> {
        let socket = match self.socket {
            Socket::Unix(l) => SharedSocket::Unix(l.into_std()?),
            Socket::Tcp(l) => SharedSocket::Tcp(l.into_std()?),
            Socket::Tls(l, acc) => SharedSocket::Tls(l.into_std()?, acc),
        };
        Ok(Shareable {
            spec: self.spec,
            socket,
        })
    }
}

impl Shareable {
    fn try_clone(&self) -> anyhow::Result<Shareable> {
        let socket = match &self.socket {
            SharedSocket::Unix(l) => SharedSocket::Unix(l.try_clone()?),
            SharedSocket::Tcp(l) => SharedSocket::Tcp(l.try_clone()?),
            SharedSocket::Tls(l, acc) => SharedSocket::Tls(l.try_clone()?, acc.clone()),
        };
        Ok(Shareable {
            spec: self.spec.clone(),
            socket,
        })
    }

    /// Register with the current (worker's) runtime.
    fn into_tokio(self) -> anyhow::Result<Listener> {
        let socket = match self.socket {
            SharedSocket::Unix(l) => {
                l.set_nonblocking(true)?;
                Socket::Unix(UnixListener::from_std(l)?)
            }
            SharedSocket::Tcp(l) => {
                l.set_nonblocking(true)?;
                Socket::Tcp(TcpListener::from_std(l)?)
            }
            SharedSocket::Tls(l, acc) => {
                l.set_nonblocking(true)?;
                Socket::Tls(TcpListener::from_std(l)?, acc)
            }
        };
        Ok(Listener {
            spec: self.spec,
            socket,
        })
    }
}

async fn accept_loop(
    listener: Listener,
    control: Arc<Control>,
    limits: Arc<Limits>,
    handler: Handler,
) {
    let label = listener.label();
    let pinned = listener.spec.caller.clone();
    let mut stopping = control.stopping();
    loop {
        let accept = async {
            match &listener.socket {
                Socket::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
                Socket::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
                Socket::Tls(l, acc) => l
                    .accept()
                    .await
                    .map(|(s, a)| Accepted::Tls(s, a, acc.clone())),
            }
        };
        let accepted = tokio::select! {
            a = accept => a,
            _ = until_stopped(&mut stopping) => return,
        };
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %label, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = control.slots.clone().try_acquire_owned();
        let (label, pinned, limits, handler, control) = (
            label.clone(),
            pinned.clone(),
            limits.clone(),
            handler.clone(),
            control.clone(),
        );
        tokio::spawn(async move {
            let Ok(permit) = permit else {
                control.refusals.busy.fetch_add(1, Ordering::Relaxed);
                accepted
                    .refuse_busy("portcullis: too many connections; try again later")
                    .await;
                return;
            };
            let owner = connection_owner(pinned.as_deref(), &accepted);
            let Some(_caller_slot) = control.callers.take(owner.clone()) else {
                drop(permit);
                control.refusals.caller_busy.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%owner, "refused a connection over the per-caller limit");
                accepted
                    .refuse_busy(&format!(
                        "portcullis: too many connections from {owner} (at most {} at once); try again later",
                        control.callers.max
                    ))
                    .await;
                return;
            };
            serve_accepted(accepted, label, pinned, &limits, handler, &control, permit).await
        });
    }
}

async fn serve_accepted(
    accepted: Accepted,
    label: String,
    pinned: Option<String>,
    limits: &Limits,
    handler: Handler,
    control: &Control,
    _permit: OwnedSemaphorePermit,
) {
    let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
    let stopping = control.stopping();
    match accepted {
        Accepted::Unix(s) => {
            let peer = match s.peer_cred() {
                Ok(c) => Peer::Unix {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "SO_PEERCRED failed; closing");
                    return;
                }
            };
            let conn = Connection {
                id,
                listener: label,
                pinned_caller: pinned,
                peer,
            };
            serve_connection(s, conn, limits, handler, stopping, control).await
        }
        Accepted::Tcp(s, addr) => {
            let conn = Connection {
                id,
                listener: label,
                pinned_caller: pinned,
                peer: Peer::Tcp { addr },
            };
            serve_connection(s, conn, limits, handler, stopping, control).await
        }
        Accepted::Tls(s, addr, acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(s)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let common_name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            let conn = Connection {
                id,
                listener: label,
                pinned_caller: pinned,
                peer: Peer::Tls { addr, common_name },
            };
            serve_connection(tls, conn, limits, handler, stopping, control).await
        }
    }
}

enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
    Tls(TcpStream, SocketAddr, tokio_rustls::TlsAcceptor),
}

impl Accepted {
    /// Over a connection limit: say so in Docker's format, then close.
    async fn refuse_busy(self, message: &str) {
        let msg = raw_error(503, "Service Unavailable", message);
        match self {
            Accepted::Unix(mut s) => {
                let _ = s.write_all(msg.as_bytes()).await;
            }
            Accepted::Tcp(mut s, ..) => {
                let _ = s.write_all(msg.as_bytes()).await;
            }
            // Writing plain HTTP into a TLS handshake would be noise: just close.
            Accepted::Tls(..) => {}
        }
    }
}

/// A complete HTTP/1.1 error response written by hand, for refusals that happen
/// before hyper owns the connection.
fn raw_error(status: u16, reason: &str, message: &str) -> String {
    let body = serde_json::json!({ "message": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

async fn serve_connection<IO>(
    mut io: IO,
    conn: Connection,
    limits: &Limits,
    handler: Handler,
    mut stopping: watch::Receiver<bool>,
    control: &Control,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/2 prior knowledge would reach BuildKit's gRPC server past every
    // check; hyper would only drop it silently. Look at the first bytes and
    // refuse it in words.
    let mut head = Vec::with_capacity(H2_PREFACE.len());
    let peek = tokio::time::timeout(limits.header_read_timeout, async {
        let mut byte = [0u8; 64];
        while head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&head) {
            let want = H2_PREFACE.len() - head.len();
            let n = io.read(&mut byte[..want]).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&byte[..n]);
        }
        Ok::<_, std::io::Error>(())
    });
    // A connection that has sent nothing yet has nothing in flight: a stop closes it.
    let peeked = tokio::select! {
        p = peek => p,
        _ = until_stopped(&mut stopping) => return,
    };
    let refusals = &control.refusals;
    match peeked {
        Ok(Ok(())) if !head.is_empty() => {}
        Err(_) => {
            refusals.header_timeout.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => return,
    }
    if head == H2_PREFACE {
        refusals.h2_preface.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(listener = %conn.listener, peer = ?conn.peer, "refused HTTP/2 prior-knowledge connection");
        let msg = raw_error(
            400,
            "Bad Request",
            "portcullis: HTTP/2 prior knowledge (h2c) is refused: it is an opaque tunnel to BuildKit",
        );
        control
            .record_refused(Arc::new(conn), Refused::H2Preface)
            .await;
        let _ = io.write_all(msg.as_bytes()).await;
        let _ = io.shutdown().await;
        return;
    }

    let conn = Arc::new(conn);
    let for_refusal = conn.clone();
    let io = TokioIo::new(Prefixed {
        head,
        pos: 0,
        inner: io,
    });
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = handler(req, conn.clone());
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The head limit is exact; the read buffer only has to hold a head
        // that fits it (and never be below hyper's minimum).
        .max_header_size(limits.max_header_bytes)
        .max_buf_size((limits.max_header_bytes + 4096).max(8192))
        .max_headers(limits.max_headers);
    let serving = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(serving);
    let ended = tokio::select! {
        ended = serving.as_mut() => ended,
        _ = until_stopped(&mut stopping) => {
            // Answer the request in flight, then close.
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = ended {
        if let Some(refused) = count_refused_head(&e, refusals) {
            // hyper has answered (431 or 400); the record follows.
            control.record_refused(for_refusal, refused).await;
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves once a stop is asked for (or the control is gone).
async fn until_stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Count what hyper refused before a request existed (it has answered
/// 431 or 400 itself).
fn count_refused_head(e: &hyper::Error, refusals: &Refusals) -> Option<Refused> {
    if e.is_parse_too_large() {
        refusals.head_too_large.fetch_add(1, Ordering::Relaxed);
        Some(Refused::HeadTooLarge)
    } else if e.is_parse() {
        refusals.malformed_head.fetch_add(1, Ordering::Relaxed);
        Some(Refused::MalformedHead)
    } else {
        if e.is_timeout() {
            refusals.header_timeout.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

/// A stream that first replays the bytes already read for the preface check.
struct Prefixed<IO> {
    head: Vec<u8>,
    pos: usize,
    inner: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    // Half-close reaches the client: attach and exec rely on it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

    /// A spinning worker still sleeps (timers fire on time, not early or
    /// never) and still wakes for I/O from another thread.
    #[test]
    fn a_spinning_worker_runs_timers_and_io() {
        let runtime = worker_runtime(Duration::from_micros(50)).expect("runtime");
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut a, b"x").expect("write");
        });
        runtime.block_on(async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(start.elapsed() >= Duration::from_millis(5));
            let mut b = UnixStream::from_std(b).expect("adopt");
            let mut byte = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut byte))
                .await
                .expect("woken by the write")
                .expect("read");
            assert_eq!(&byte, b"x");
        });
        writer.join().expect("writer");
    }
}
