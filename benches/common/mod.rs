//! What the proxy benchmarks share: the tests' support (tests/common: the
//! serve harness, the fixture upstream, the HTTP client, the daemon probe),
//! included by path so that it is written once, plus a keep-alive HTTP/1.1
//! client that times each request.
#![allow(dead_code, unused_imports)] // not every bench uses every helper

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[path = "../../tests/common/mod.rs"]
pub mod support;

pub use support::{FixtureUpstream, Serve, ServeCmd};

/// `portcullis serve` (release build) listening on `socket`, forwarding to
/// `upstream`, keeping state in `data`; returns once the socket accepts
/// connections. Warnings go to stderr.
pub fn serve(socket: &Path, data: &Path, upstream: &Path) -> Serve {
    ServeCmd::new()
        .listen(socket)
        .upstream(upstream)
        .data(data)
        .env("PORTCULLIS_LOG", "warn")
        .start()
}

/// One keep-alive client sending `n` GETs, taking `paths` in turn; the
/// latency of each (status checked, body read to the end).
pub async fn keep_alive_client(
    socket: PathBuf,
    paths: Vec<&'static str>,
    n: usize,
) -> Vec<Duration> {
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("client connection: {e}");
        }
    });
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let path = paths[i % paths.len()];
        let req = hyper::Request::get(path)
            .header("host", "docker")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("request");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let _ = resp.into_body().collect().await.expect("body");
        latencies.push(started.elapsed());
    }
    latencies
}
