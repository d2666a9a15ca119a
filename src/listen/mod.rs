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
//!
//! Split along those seams: `binding` (bind, adopt systemd's sockets),
//! `tls` (the acceptor and the client certificate's name), `workers` (one
//! runtime per worker thread, each accepting on every listener), `accept`
//! (connection limits, the peer's identity), `connection` (the HTTP/2
//! preface check, hyper), `control` (slots and the stop) and `refusals`
//! (what is refused before a request exists). This file keeps the types the
//! pipeline sees.

mod accept;
mod binding;
mod connection;
mod control;
mod refusals;
mod tls;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::{Request, Response};

pub use binding::{adopt, bind, inherited_sockets, serves, socket_activated, Inherited, Listener};
pub use control::Control;
pub use refusals::{RefusalRecorder, Refusals, Refused};
pub use workers::{serve, worker_runtime};

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

/// Builds one [`Handler`] per worker: each worker gets its own (so its own
/// pooled upstream connections, which live on that worker's runtime).
pub type HandlerFactory = Arc<dyn Fn() -> Handler + Send + Sync>;
