//! Proxy overhead, as a ratio to the direct socket in the same run.
//!
//! `cargo bench --bench proxy` prints, for `GET /_ping` and `GET /containers/json`
//! at 1 and 32 concurrent clients: throughput and p50/p99 latency straight at
//! the upstream and through `portcullis serve` (release build, enforcing,
//! durable audit log), against the real engine and against a fixed-cost
//! fixture upstream that isolates the proxy's own cost.
//!
//! Each line also gives the CPU time spent per request by the proxy and, on the
//! engine, by dockerd: on a small machine whose cores the client, the proxy
//! and the daemon share, throughput at 32 clients is bounded by the sum.
//!
//! Env: PORTCULLIS_BENCH_REQUESTS (per client count; default 4000),
//! PORTCULLIS_BENCH_SKIP_ENGINE=1 to measure only the fixture,
//! PORTCULLIS_BENCH_BASELINE=/path/to/portcullis to compare this build with
//! another side by side. The `metrics` lines give the cost of `--metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;

mod common;

use common::{keep_alive_client, serve, FixtureUpstream, Serve, ServeCmd};

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(socket: &Path, path: &'static str, clients: usize, total: usize) -> Stats {
    // Warm up connections and caches.
    keep_alive_client(socket.to_path_buf(), vec![path], 50).await;
    let per = (total / clients).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(keep_alive_client(socket.to_path_buf(), vec![path], per)))
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
struct Proxy(Serve, #[allow(dead_code)] tempfile::TempDir);

fn start_proxy(upstream: &Path) -> (Proxy, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let serve = serve(&socket, &dir.path().join("data"), upstream);
    (Proxy(serve, dir), socket)
}

/// The floor any proxy pays here: the same listener and forward layer as
/// portcullis (hyper in, pooled hyper client out, one single-threaded runtime
/// per worker, spinning as long before it sleeps) with nothing in between: no identity, classification, decision or record.
/// "portcullis minus this" is the cost of the checks themselves; "this minus
/// direct" is the cost of a second hop (two more socket round trips and
/// thread wake-ups, which a small VM makes expensive).
fn start_bare_forwarder(upstream: &Path, socket: &Path) {
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    // As many single-threaded workers as portcullis runs by default.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..workers {
        let listener = listener.try_clone().unwrap();
        let upstream = upstream.to_path_buf();
        std::thread::spawn(move || {
            let rt =
                portcullis::listen::worker_runtime(portcullis::config::Workers::DEFAULT_IDLE_SPIN)
                    .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let forward = portcullis::forward::Upstream::new(
                    portcullis::config::UpstreamAddr::Unix(upstream),
                );
                while let Ok((stream, _)) = listener.accept().await {
                    let forward = forward.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let forward = forward.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let path = parts.uri.path_and_query().unwrap().as_str().to_string();
                                let body = body.map_err(Into::into).boxed();
                                let resp = forward.send(parts, &path, body).await.expect("forward");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// CPU time (user + system) a process has used so far, from /proc.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, 100 per second on every supported platform.
    Some(Duration::from_millis(ticks * 10))
}

/// The process listening on the upstream socket, when it is dockerd.
fn dockerd_pid() -> Option<u32> {
    let out = Command::new("pgrep")
        .arg("-x")
        .arg("dockerd")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Run `measure`, and say how much CPU `pid` spent per request meanwhile.
async fn measure_cpu(
    socket: &Path,
    path: &'static str,
    clients: usize,
    total: usize,
    pid: Option<u32>,
) -> (Stats, Option<f64>) {
    let before = pid.and_then(cpu_time);
    let stats = measure(socket, path, clients, total).await;
    let per = match (before, pid.and_then(cpu_time)) {
        (Some(b), Some(a)) => Some(us(a - b) / (total / clients * clients) as f64),
        _ => None,
    };
    (stats, per)
}

fn cpu_label(per: Option<f64>) -> String {
    per.map_or("?".into(), |v| format!("{v:.0}µs"))
}

async fn compare(
    label: &str,
    direct: &Path,
    bare: &Path,
    proxied: &Path,
    total: usize,
    upstream_pid: Option<u32>,
    proxy_pid: u32,
) {
    for path in ["/_ping", "/containers/json"] {
        for clients in [1usize, 32] {
            let (d, d_cpu) = measure_cpu(direct, path, clients, total, upstream_pid).await;
            let b = measure(bare, path, clients, total).await;
            let (p, p_cpu) = measure_cpu(proxied, path, clients, total, Some(proxy_pid)).await;
            println!(
                "{label:8} {path:18} c={clients:<3} bare forwarder {:>9.0} req/s p50 {:>7.1}µs | ratio {:.2}x  added p50 {:>6.1}µs  (the floor of any second hop)",
                b.rps,
                us(b.p50),
                b.rps / d.rps,
                us(b.p50) - us(d.p50),
            );
            println!(
                "{label:8} {path:18} c={clients:<3} direct {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | proxy {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | ratio {:.2}x  added p50 {:>6.1}µs | cpu/req upstream {} proxy {}",
                d.rps,
                us(d.p50),
                us(d.p99),
                p.rps,
                us(p.p50),
                us(p.p99),
                p.rps / d.rps,
                us(p.p50) - us(d.p50),
                cpu_label(d_cpu),
                cpu_label(p_cpu),
            );
        }
    }
}

/// The cost of `--metrics`: the proxy measured above (metrics off) against
/// the same setup with metrics on, against the fixture.
async fn metrics_cost(upstream: &Path, off: &Proxy, total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("m.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let on = ServeCmd::new()
        .listen(&socket)
        .upstream(upstream)
        .data(&dir.path().join("data"))
        .env("PORTCULLIS_LOG", "warn")
        .args(&["--metrics", &format!("tcp://127.0.0.1:{port}")])
        .start();
    let off_socket = off.1.path().join("p.sock");
    side_by_side(
        "metrics",
        ("off", &off_socket, off.0.pid()),
        ("on", &socket, on.pid()),
        total,
    )
    .await;
}

/// This build against another (`PORTCULLIS_BENCH_BASELINE=/path/to/portcullis`,
/// e.g. the last release), against the fixture: a refactor shows no slowdown
/// when the ratio stays in the noise.
async fn baseline_cost(upstream: &Path, this: &Proxy, total: usize) {
    let Some(binary) = std::env::var_os("PORTCULLIS_BENCH_BASELINE") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("b.sock");
    let baseline = ServeCmd::new()
        .binary(Path::new(&binary))
        .listen(&socket)
        .upstream(upstream)
        .data(&dir.path().join("data"))
        .env("PORTCULLIS_LOG", "warn")
        .start();
    let this_socket = this.1.path().join("p.sock");
    side_by_side(
        "baseline",
        ("baseline", &socket, baseline.pid()),
        ("this", &this_socket, this.0.pid()),
        total,
    )
    .await;
}

/// Two proxies on `/_ping` in alternating rounds, so that both see the same
/// machine; the median throughput and CPU per request of each, and b ÷ a.
async fn side_by_side(what: &str, a: (&str, &Path, u32), b: (&str, &Path, u32), total: usize) {
    for clients in [1usize, 32] {
        let (mut cpu, mut rps) = ([vec![], vec![]], [vec![], vec![]]);
        for _ in 0..3 {
            for (i, (_, socket, pid)) in [a, b].into_iter().enumerate() {
                let (s, c) = measure_cpu(socket, "/_ping", clients, total, Some(pid)).await;
                cpu[i].push(c.unwrap_or(f64::NAN));
                rps[i].push(s.rps);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() / 2]
        };
        let (a_cpu, b_cpu) = (median(&mut cpu[0]), median(&mut cpu[1]));
        println!(
            "{what:8} /_ping             c={clients:<3} {} {:>9.0} req/s cpu/req {a_cpu:.1}µs | {} {:>9.0} req/s cpu/req {b_cpu:.1}µs | {}/{} cpu {:.2}x  (median of 3 alternating rounds)",
            a.0,
            median(&mut rps[0]),
            b.0,
            median(&mut rps[1]),
            b.0,
            a.0,
            b_cpu / a_cpu,
        );
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
        let fixture = FixtureUpstream::start(&fixture_sock).unwrap();
        let fixture = Arc::new(fixture);
        let (p, proxied) = start_proxy(&fixture_sock);
        let bare = dir.path().join("bare-fixture.sock");
        start_bare_forwarder(&fixture_sock, &bare);
        // The fixture runs in this process, so its CPU is not told apart.
        compare(
            "fixture",
            &fixture_sock,
            &bare,
            &proxied,
            total,
            None,
            p.0.pid(),
        )
        .await;
        println!("fixture upstream received {} requests", fixture.count());
        metrics_cost(&fixture_sock, &p, total).await;
        baseline_cost(&fixture_sock, &p, total).await;

        let engine = Path::new("/var/run/docker.sock");
        if std::env::var("PORTCULLIS_BENCH_SKIP_ENGINE").is_ok()
            || common::support::daemon::answers().is_err()
        {
            println!("engine: skipped (no daemon at {})", engine.display());
            return;
        }
        let (q, proxied) = start_proxy(engine);
        let bare = dir.path().join("bare-engine.sock");
        start_bare_forwarder(engine, &bare);
        compare(
            "engine",
            engine,
            &bare,
            &proxied,
            total,
            dockerd_pid(),
            q.0.pid(),
        )
        .await;
    });
}
