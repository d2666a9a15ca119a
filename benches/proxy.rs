//! Proxy overhead, as a ratio to the direct socket in the same run.
//!
//! `cargo bench --bench proxy` prints, for `GET /_ping` and `GET /containers/json`
//! at 1 and 32 concurrent clients: throughput and p50/p99 latency straight at
//! the upstream and through `portcullis serve` (release build, enforcing,
//! durable audit log), against the real engine and against a fixed-cost
//! fixture upstream that isolates the proxy's own cost.
//!
//! Env: PORTCULLIS_BENCH_REQUESTS (per client count; default 4000),
//! PORTCULLIS_BENCH_SKIP_ENGINE=1 to measure only the fixture.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn one_client(socket: PathBuf, path: &'static str, n: usize) -> Vec<Duration> {
    let stream = UnixStream::connect(&socket).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::get(path)
            .header("host", "docker")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let t = Instant::now();
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("request");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let _ = resp.into_body().collect().await.expect("body");
        lat.push(t.elapsed());
    }
    lat
}

async fn measure(socket: &Path, path: &'static str, clients: usize, total: usize) -> Stats {
    // Warm up connections and caches.
    one_client(socket.to_path_buf(), path, 50).await;
    let per = (total / clients).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(one_client(socket.to_path_buf(), path, per)))
        .collect();
    let mut all = Vec::with_capacity(per * clients);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    Stats {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

/// The temp dir lives as long as the process using it.
struct Proxy(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(upstream: &Path) -> (Proxy, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--listen"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--upstream")
        .arg(format!("unix://{}", upstream.display()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn portcullis");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "portcullis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proxy(child, dir), socket)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn compare(label: &str, direct: &Path, proxied: &Path, total: usize) {
    for path in ["/_ping", "/containers/json"] {
        for clients in [1usize, 32] {
            let d = measure(direct, path, clients, total).await;
            let p = measure(proxied, path, clients, total).await;
            println!(
                "{label:8} {path:18} c={clients:<3} direct {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | proxy {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | ratio {:.2}x  added p50 {:>6.1}µs",
                d.rps,
                us(d.p50),
                us(d.p99),
                p.rps,
                us(p.p50),
                us(p.p99),
                p.rps / d.rps,
                us(p.p50) - us(d.p50),
            );
        }
    }
}

fn main() {
    // `cargo test --benches` runs this binary without --bench: stay quick there.
    let benching = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::var("PORTCULLIS_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 4000 } else { 200 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let fixture_sock = dir.path().join("fixture.sock");
        let fixture = portcullis::fixture::FixtureUpstream::start(&fixture_sock).unwrap();
        let fixture = Arc::new(fixture);
        let (_p, proxied) = start_proxy(&fixture_sock);
        compare("fixture", &fixture_sock, &proxied, total).await;
        println!("fixture upstream received {} requests", fixture.count());

        let engine = Path::new("/var/run/docker.sock");
        if std::env::var("PORTCULLIS_BENCH_SKIP_ENGINE").is_ok()
            || std::os::unix::net::UnixStream::connect(engine).is_err()
        {
            println!("engine: skipped (no daemon at {})", engine.display());
            return;
        }
        let (_q, proxied) = start_proxy(engine);
        compare("engine", engine, &proxied, total).await;
    });
}
