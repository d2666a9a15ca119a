//! Accepting: the connection limits (overall and per caller) taken before a
//! byte is read, and the peer's identity (unix credentials, TLS handshake and
//! client certificate) fixed for the connection's life.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::OwnedSemaphorePermit;

use super::binding::Socket;
use super::connection::{serve_connection, until_stopped};
use super::control::connection_owner;
use super::refusals::raw_error;
use super::tls::common_name;
use super::{Connection, Control, Handler, Listener, Peer};
use crate::config::Limits;

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

pub(super) async fn accept_loop(
    listener: Listener,
    control: Arc<Control>,
    limits: Arc<Limits>,
    handler: Handler,
) {
    let label = listener.label();
    let pinned = listener.spec.caller.clone();
    let open_here = control.listener_count(&label);
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
        let (label, pinned, limits, handler, control, open_here) = (
            label.clone(),
            pinned.clone(),
            limits.clone(),
            handler.clone(),
            control.clone(),
            open_here.clone(),
        );
        tokio::spawn(async move {
            let Ok(permit) = permit else {
                control.refusals.busy.fetch_add(1, Ordering::Relaxed);
                Box::pin(accepted.refuse_busy("portcullis: too many connections; try again later"))
                    .await;
                return;
            };
            let owner = connection_owner(pinned.as_deref(), &accepted);
            let Some(_caller_slot) = control.callers.take(owner.clone()) else {
                drop(permit);
                control.refusals.caller_busy.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%owner, "refused a connection over the per-caller limit");
                let why = format!(
                    "portcullis: too many connections from {owner} (at most {} at once); try again later",
                    control.callers.max
                );
                Box::pin(accepted.refuse_busy(&why)).await;
                return;
            };
            let _open = super::control::OpenOnListener::new(&open_here);
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
            // Boxed: a connection's task holds its future for the connection's
            // whole life, so the largest variant (TLS) and the rare paths
            // (refusals) must not set every connection's size.
            Box::pin(serve_connection(
                s, conn, limits, handler, stopping, control,
            ))
            .await
        }
        Accepted::Tcp(s, addr) => {
            let conn = Connection {
                id,
                listener: label,
                pinned_caller: pinned,
                peer: Peer::Tcp { addr },
            };
            Box::pin(serve_connection(
                s, conn, limits, handler, stopping, control,
            ))
            .await
        }
        Accepted::Tls(s, addr, acceptor) => {
            let handshake = Box::pin(tokio::time::timeout(
                limits.header_read_timeout,
                acceptor.accept(s),
            ))
            .await;
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
            Box::pin(serve_connection(
                tls, conn, limits, handler, stopping, control,
            ))
            .await
        }
    }
}

pub(super) enum Accepted {
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
