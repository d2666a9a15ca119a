//! Forward: send an allowed request to the daemon over a pooled connection and
//! stream the answer back, including connections the daemon takes over.
//!
//! Why so little happens here: every decision is already made. This layer
//! only moves bytes: request bodies and responses stream without buffering
//! (logs, events, pulls and tar downloads stay open as long as the daemon keeps
//! them open: no idle timeout), and an `Upgrade: tcp` answer (attach, exec
//! start) becomes a raw two-way pipe whose half-closes pass through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection as ClientConnection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::classify::{Classified, ResourceKind};
use crate::config::UpstreamAddr;
use crate::inspect::is_upgrade;
use crate::record::Permit;
use crate::reply::{self, BoxError, ProxyBody};
use crate::resolve::Target;

/// The daemon, reached over a pool of connections.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, ProxyBody>,
    addr: UpstreamAddr,
}

/// Why forwarding failed. Both are 502s for the client.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the Docker daemon at {addr} is unreachable: {source}")]
    Unreachable { addr: String, source: BoxError },
    #[error("invalid upstream request: {0}")]
    Request(String),
}

impl Upstream {
    pub fn new(addr: UpstreamAddr) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(Connector { addr: addr.clone() });
        Upstream { client, addr }
    }

    pub fn addr(&self) -> &UpstreamAddr {
        &self.addr
    }

    /// Forward `parts` with `body` exactly; `path_and_query` is what the daemon
    /// sees (the client's own request-target unless the target was pinned).
    pub async fn send(
        &self,
        mut parts: http::request::Parts,
        path_and_query: &str,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, ForwardError> {
        let hijack = is_upgrade(&parts.headers);
        strip_hop_by_hop(&mut parts.headers, hijack);
        parts.uri = format!("http://docker{path_and_query}")
            .parse::<Uri>()
            .map_err(|e| ForwardError::Request(e.to_string()))?;
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, body);
        self.client.request(req).await.map_err(|e| {
            UPSTREAM_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ForwardError::Unreachable {
                addr: self.addr.to_string(),
                source: Box::new(e),
            }
        })
    }
}

/// Requests the daemon could not be reached for (connect or transport
/// errors), for `/metrics`: one process-wide count across the workers' pools.
pub static UPSTREAM_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Remove hop-by-hop headers (RFC 9110 §7.6.1); keep `Upgrade` only for hijacks.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Names as constants, not strings: a string is parsed into a name on
    // every removal, for every request.
    const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: header::HeaderName =
        header::HeaderName::from_static("proxy-connection");
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !(keep_upgrade && t == "upgrade"))
            .collect();
        for name in listed {
            headers.remove(name.as_str());
        }
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::HOST,
    ] {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Turn the daemon's response into the client's. A `101` becomes a two-way
/// pipe between the client's and the daemon's upgraded connections.
pub fn relay(
    client_req: Option<hyper::upgrade::OnUpgrade>,
    mut resp: Response<Incoming>,
) -> Response<ProxyBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        match client_req {
            Some(client) => {
                let stream = async move {
                    match tokio::try_join!(client, upstream) {
                        Ok((c, u)) => {
                            let mut c = TokioIo::new(c);
                            let mut u = TokioIo::new(u);
                            // copy_bidirectional shuts down each write side when
                            // the other read side ends: the half-close passes through.
                            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                                tracing::debug!(error = %e, "hijacked stream ended with an error");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "upgrade failed"),
                    }
                };
                // The stream outlives the handler: its log lines keep the request's ids.
                tokio::spawn(tracing::Instrument::in_current_span(stream));
            }
            None => {
                return reply::error(
                    StatusCode::BAD_GATEWAY,
                    "portcullis: the daemon upgraded a connection that asked for no upgrade",
                );
            }
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, reply::empty());
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove("keep-alive");
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// Collect a (small) response body, e.g. a container list to filter.
pub async fn collect(body: Incoming, limit: usize) -> Result<Bytes, BoxError> {
    let limited = http_body_util::Limited::new(body, limit);
    Ok(limited.collect().await?.to_bytes())
}

/// The daemon as the pipeline reaches it: only through [`forward`], which
/// takes a [`Permit`]. (A bare [`Upstream`] is for probes such as `/version`
/// at startup and for the CLI's own client.)
#[derive(Clone)]
pub struct Daemon {
    upstream: Upstream,
}

impl Daemon {
    pub fn new(upstream: Upstream) -> Self {
        Daemon { upstream }
    }

    pub fn addr(&self) -> &UpstreamAddr {
        self.upstream.addr()
    }
}

/// What is handed to the forward stage: the request as it goes on, and the
/// [`Permit`] the record stage gave it (no permit, no forwarding).
pub struct Forwardable {
    pub parts: http::request::Parts,
    /// The unread body, for routes whose body is streamed.
    pub body: Option<Incoming>,
    /// The inspected bytes, forwarded exactly, for routes whose body was read.
    pub bytes: Bytes,
    pub client_upgrade: hyper::upgrade::OnUpgrade,
    pub permit: Permit,
}

impl Forwardable {
    /// The body to send on: exactly the inspected bytes, or the stream.
    fn take_body(&mut self) -> ProxyBody {
        match self.body.take() {
            Some(stream) => stream.map_err(|e| Box::new(e) as BoxError).boxed(),
            None => {
                // Exactly the inspected bytes, framed by their length.
                self.parts.headers.remove(header::TRANSFER_ENCODING);
                self.parts
                    .headers
                    .insert(header::CONTENT_LENGTH, self.bytes.len().into());
                reply::full(self.bytes.clone())
            }
        }
    }
}

/// What the daemon answered a forwarded request.
pub enum Forwarded {
    /// A successful answer, for the filter step.
    Answer(Response<Incoming>),
    /// Passed on as is: a taken-over connection, an error, or the daemon unreachable.
    Done(Response<ProxyBody>),
}

/// Send an allowed request to the daemon, pinned to the container that was
/// decided on.
pub async fn forward(
    daemon: &Daemon,
    request: &Classified,
    target: &Target,
    mut work: Forwardable,
) -> Forwarded {
    let raw = work
        .parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path = pinned_target(request, target, &raw);
    let body = work.take_body();
    tracing::trace!(decision = work.permit.decision_id(), path, "forwarding");
    let resp = match daemon.upstream.send(work.parts, &path, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "a request could not be forwarded");
            let error = reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}"));
            return Forwarded::Done(error);
        }
    };
    if request.route.hijack || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Forwarded::Done(relay(Some(work.client_upgrade), resp));
    }
    if !resp.status().is_success() {
        return Forwarded::Done(relay(None, resp));
    }
    Forwarded::Answer(resp)
}

/// Rewrite `/containers/{name}/…` to `/containers/{id}/…` so the daemon acts
/// on exactly the container that was decided on. Only the name segment is
/// replaced: the rest of the path goes on as the client encoded it, since the
/// daemon decodes it itself (a decoded `%253F` would reach it as `?`).
fn pinned_target(request: &Classified, target: &Target, raw_target: &str) -> String {
    let (Some(id), Some(_)) = (&target.id, &request.resource.name) else {
        return raw_target.to_string();
    };
    if request.resource.kind != ResourceKind::Container || !target.exists {
        return raw_target.to_string();
    }
    // A link name (`parent/alias`) spans two segments, and a link removal
    // names the link itself, which no id can stand for: the daemon gets the
    // name as the client wrote it.
    if request
        .resource
        .name
        .as_deref()
        .is_some_and(|n| n.contains('/'))
    {
        return raw_target.to_string();
    }
    let (raw_path, query) = match raw_target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw_target, None),
    };
    // Classification accepted the path: `[/vX.Y]/containers/{name}[/rest]`.
    let unversioned = match request.version {
        Some(_) => raw_path
            .get(1..)
            .and_then(|p| p.find('/'))
            .map_or("", |i| &raw_path[i + 1..]),
        None => raw_path,
    };
    let Some(after) = unversioned.strip_prefix("/containers/") else {
        return raw_target.to_string();
    };
    let rest = after.find('/').map_or("", |i| &after[i..]);
    let version = request
        .version
        .map(|v| format!("/v{v}"))
        .unwrap_or_default();
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{version}/containers/{id}{rest}{query}")
}

/// Connects to the configured daemon socket whatever the URI's host says.
#[derive(Clone)]
pub struct Connector {
    addr: UpstreamAddr,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.addr.clone();
        Box::pin(async move {
            let stream = match addr {
                UpstreamAddr::Unix(path) => UpstreamStream::Unix(UnixStream::connect(path).await?),
                UpstreamAddr::Tcp(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    UpstreamStream::Tcp(s)
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// A connection to the daemon.
pub enum UpstreamStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl ClientConnection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            UpstreamStream::Unix($s) => $e,
            UpstreamStream::Tcp($s) => $e,
        }
    };
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use crate::classify::{classify, VersionRange};

    #[test]
    fn pinning_replaces_the_name_and_keeps_the_rest_as_encoded() {
        let target = Target {
            id: Some("c0ffee".into()),
            name: Some("web".into()),
            exists: true,
            kind: Some(ResourceKind::Container),
            ..Target::default()
        };
        for (raw, pinned) in [
            (
                "/v1.41/containers/web/json",
                "/v1.41/containers/c0ffee/json",
            ),
            (
                "/containers/web/json?size=1",
                "/containers/c0ffee/json?size=1",
            ),
            ("/v1.41/containers/web", "/v1.41/containers/c0ffee"),
            (
                "/v1.41/containers/web/checkpoints/a%253Fb",
                "/v1.41/containers/c0ffee/checkpoints/a%253Fb",
            ),
            (
                "/containers/w%65b/archive?path=/a%20b",
                "/containers/c0ffee/archive?path=/a%20b",
            ),
        ] {
            let method = if raw.contains("checkpoints") || raw.ends_with("/web") {
                "DELETE"
            } else {
                "GET"
            };
            let request = classify(method, raw, &VersionRange::default())
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(pinned_target(&request, &target, raw), pinned, "{raw}");
        }
    }

    #[test]
    fn link_names_go_on_as_written() {
        let target = Target {
            id: Some("c0ffee".into()),
            name: Some("db".into()),
            exists: true,
            kind: Some(ResourceKind::Container),
            ..Target::default()
        };
        for (method, raw) in [
            ("GET", "/v1.41/containers/web/db/json"),
            ("DELETE", "/v1.41/containers/web/db?link=1"),
        ] {
            let request = classify(method, raw, &VersionRange::default()).unwrap();
            assert_eq!(pinned_target(&request, &target, raw), raw);
        }
    }

    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_but_upgrade_kept_for_hijacks() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade, X-Drop".parse().unwrap());
        h.insert("upgrade", "tcp".parse().unwrap());
        h.insert("x-drop", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert("x-registry-auth", "abc".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "tcp");
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
        assert!(h.get("x-drop").is_none() && h.get("keep-alive").is_none());
        assert_eq!(h.get("x-registry-auth").unwrap(), "abc");

        let mut h = HeaderMap::new();
        h.insert("upgrade", "tcp".parse().unwrap());
        assert!(!is_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("upgrade").is_none());
    }
}
