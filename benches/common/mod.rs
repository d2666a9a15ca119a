//! What the proxy benchmarks share: a `portcullis serve` child and a
//! keep-alive HTTP/1.1 client that times each request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// `portcullis serve` (release build), killed when dropped.
pub struct Serve(Child);

impl Serve {
    /// Listen on `socket`, forward to `upstream`, keep state in `data`; returns
    /// once the socket accepts connections.
    pub fn start(socket: &Path, data: &Path, upstream: &Path) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .arg("--upstream")
            .arg(format!("unix://{}", upstream.display()))
            .arg("--data-dir")
            .arg(data)
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portcullis");
        let serve = Serve(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "portcullis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    #[allow(dead_code)] // not every bench reads the proxy's CPU time
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
