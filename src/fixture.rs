//! A fixed-cost stand-in for the Docker daemon, for benchmarks and for tests
//! that must count what reached the upstream (kill -9, disk full).
//!
//! It answers `/_ping`, `/version` and `/containers/json` like a daemon with no
//! containers, and `{}` to everything else, counting every request it received.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

/// A running fixture upstream.
pub struct FixtureUpstream {
    pub received: Arc<AtomicU64>,
}

impl FixtureUpstream {
    /// Serve on `socket` until the runtime ends.
    pub fn start(socket: &Path) -> std::io::Result<FixtureUpstream> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let counter = counter.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                // Drain the body so the connection can be reused.
                                let _ = req.into_body().collect().await;
                                counter.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(answer(&path))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FixtureUpstream { received })
    }

    pub fn count(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

fn answer(path: &str) -> Response<Full<Bytes>> {
    // Strip a `/v1.41`-style prefix, not the `/v` of `/version`.
    let unversioned = match path
        .strip_prefix("/v")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((version, rest)) if version.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            &path[path.len() - rest.len() - 1..]
        }
        _ => path,
    };
    let (ctype, body): (&str, &[u8]) = match unversioned {
        "/_ping" => ("text/plain; charset=utf-8", b"OK"),
        "/version" => (
            "application/json",
            br#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"fixture"}"#,
        ),
        "/containers/json" => ("application/json", b"[]"),
        _ => ("application/json", b"{}"),
    };
    Response::builder()
        .header("content-type", ctype)
        .header("api-version", "1.41")
        .body(Full::new(Bytes::from_static(body)))
        .expect("static response")
}
