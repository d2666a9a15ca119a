//! Binding listeners: unix sockets (stale-socket replacement, mode, group),
//! TCP and TLS, or adopting the sockets systemd passed (socket activation).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context as _};
use tokio::net::{TcpListener, UnixListener};

use super::tls::tls_acceptor;
use crate::config::{ListenAddr, ListenerSpec, TlsFiles};

pub(super) enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
}

/// A bound listener, ready to serve.
pub struct Listener {
    pub(super) spec: ListenerSpec,
    pub(super) socket: Socket,
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
