//! A fixed-cost stand-in for the Docker daemon, for benchmarks and for tests
//! that must count what reached the upstream (kill -9, disk full). It lives
//! with the tests, not in the product; the benches include this file by path.
//!
//! It answers `/_ping`, `/version` and `/containers/json` like a daemon with no
//! containers, and `{}` to everything else, counting every request on arrival
//! (so a request that reached it counts even if the proxy dies mid-answer).
//! Requests whose User-Agent is the `tag` given at start are counted apart, so
//! a test can tell its own load from the proxy's own calls (the event feed).
#![allow(dead_code)]

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
    tagged: Arc<AtomicU64>,
    other: Arc<AtomicU64>,
}

impl FixtureUpstream {
    /// Serve on `socket` until the runtime ends (call within a tokio runtime).
    pub fn start(socket: &Path) -> std::io::Result<FixtureUpstream> {
        FixtureUpstream::start_tagged(socket, None)
    }

    /// As [`FixtureUpstream::start`], counting requests with User-Agent `tag`
    /// apart from the rest.
    pub fn start_tagged(socket: &Path, tag: Option<&'static str>) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let (tagged, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (tagged.clone(), other.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counters = counters.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let is_tagged = tag.is_some_and(|tag| {
                                req.headers().get("user-agent").is_some_and(|v| v == tag)
                            });
                            let (tagged, other) = &counters;
                            // Counted on arrival: this request reached the upstream.
                            if is_tagged { tagged } else { other }.fetch_add(1, Ordering::SeqCst);
                            async move {
                                let path = req.uri().path().to_string();
                                // Drain the body so the connection can be reused.
                                let _ = req.into_body().collect().await;
                                Ok::<_, Infallible>(answer(&path))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FixtureUpstream { tagged, other })
    }

    /// Every request received.
    pub fn count(&self) -> u64 {
        self.tagged_count() + self.other_count()
    }

    /// Requests that carried the tag.
    pub fn tagged_count(&self) -> u64 {
        self.tagged.load(Ordering::SeqCst)
    }

    /// Requests without the tag (with a tagged start: the proxy's own calls,
    /// `/version` at startup and the event feed).
    pub fn other_count(&self) -> u64 {
        self.other.load(Ordering::SeqCst)
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
