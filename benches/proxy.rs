//! Proxy overhead, as a ratio to the direct socket and to HAProxy in the same run.
//!
//! `cargo bench --bench proxy` prints, for `GET /_ping` and `GET /containers/json`
//! at 1 and 32 concurrent clients: throughput and p50/p99 latency straight at
//! the upstream, through a bare forwarder (the floor of a second hop), through
//! HAProxy with a Tecnativa-style allowlist (`fixtures/haproxy-tec.cfg`, when
//! `haproxy` is on PATH: the peer users pick) and through `portcullis serve`
//! (release build, enforcing, durable audit log), against the real engine and
//! against a fixed-cost fixture upstream that isolates the proxies' own cost.
//! A `portcullis ÷ haproxy` line gives the ratios the cost target is set in.
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

/// A second hop measured against the direct socket: its socket, and the
/// process whose CPU it spends (none for the in-process bare forwarder).
struct Hop<'a> {
    name: &'static str,
    socket: &'a Path,
    pid: Option<u32>,
}

/// Each hop against the direct socket, in one run, line by line: throughput,
/// p50, p99, the ratio to direct, the added p50, and the CPU µs per request of
/// the hop's process and of the upstream (dockerd). With HAProxy among the
/// hops, portcullis's figures are also given as ratios to HAProxy's.
async fn compare(
    label: &str,
    direct: &Path,
    hops: &[Hop<'_>],
    total: usize,
    upstream_pid: Option<u32>,
) {
    for path in ["/_ping", "/containers/json"] {
        for clients in [1usize, 32] {
            let (d, d_cpu) = measure_cpu(direct, path, clients, total, upstream_pid).await;
            println!(
                "{label:8} {path:18} c={clients:<3} {:<11} {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | cpu/req upstream {}",
                "direct",
                d.rps,
                us(d.p50),
                us(d.p99),
                cpu_label(d_cpu),
            );
            let mut seen: Vec<(&str, Stats, Option<f64>)> = Vec::new();
            for hop in hops {
                let before = upstream_pid.and_then(cpu_time);
                let (h, h_cpu) = measure_cpu(hop.socket, path, clients, total, hop.pid).await;
                let up_cpu = match (before, upstream_pid.and_then(cpu_time)) {
                    (Some(b), Some(a)) => Some(us(a - b) / (total / clients * clients) as f64),
                    _ => None,
                };
                println!(
                    "{label:8} {path:18} c={clients:<3} {:<11} {:>9.0} req/s p50 {:>7.1}µs p99 {:>7.1}µs | ratio {:.2}x  added p50 {:>6.1}µs | cpu/req proxy {} upstream {}",
                    hop.name,
                    h.rps,
                    us(h.p50),
                    us(h.p99),
                    h.rps / d.rps,
                    us(h.p50) - us(d.p50),
                    cpu_label(h_cpu),
                    cpu_label(up_cpu),
                );
                seen.push((hop.name, h, h_cpu));
            }
            let find = |n: &str| seen.iter().find(|(name, ..)| *name == n);
            if let (Some((_, h, h_cpu)), Some((_, p, p_cpu))) =
                (find("haproxy"), find("portcullis"))
            {
                let cpu = match (h_cpu, p_cpu) {
                    (Some(h), Some(p)) => format!("{:.2}x", p / h),
                    _ => "?".into(),
                };
                println!(
                    "{label:8} {path:18} c={clients:<3} portcullis ÷ haproxy: throughput {:.2}x  cpu/req {cpu}  added p50 {:.1}µs vs {:.1}µs",
                    p.rps / h.rps,
                    us(p.p50) - us(d.p50),
                    us(h.p50) - us(d.p50),
                );
            }
        }
    }
}

/// HAProxy with the Tecnativa-style allowlist (`fixtures/haproxy-tec.cfg`)
/// in front of `upstream`, when `haproxy` is on PATH; killed on drop.
struct Haproxy(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_haproxy(upstream: &Path) -> Option<(Haproxy, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("h.sock");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/haproxy-tec.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config)
        .env("HAPROXY_SOCK", &socket)
        .env("HAPROXY_UPSTREAM", upstream)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("haproxy: not measured ({e}); `apt-get install haproxy` to compare with it");
            return None;
        }
    };
    let haproxy = Haproxy(child, dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            println!("haproxy: not measured (it did not listen within 10 s)");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((haproxy, socket))
}

/// The hops measured in front of `upstream`: the bare forwarder, HAProxy
/// (when installed) and portcullis.
async fn compare_all(
    label: &str,
    upstream: &Path,
    upstream_pid: Option<u32>,
    proxy: &Proxy,
    total: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.sock");
    start_bare_forwarder(upstream, &bare);
    let haproxy = start_haproxy(upstream);
    let proxied = proxy.1.path().join("p.sock");
    let mut hops = vec![Hop {
        name: "bare",
        socket: &bare,
        pid: None,
    }];
    if let Some((h, socket)) = &haproxy {
        hops.push(Hop {
            name: "haproxy",
            socket,
            pid: Some(h.0.id()),
        });
    }
    hops.push(Hop {
        name: "portcullis",
        socket: &proxied,
        pid: Some(proxy.0.pid()),
    });
    compare(label, upstream, &hops, total, upstream_pid).await;
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
        let (p, _) = start_proxy(&fixture_sock);
        // The fixture runs in this process, so its CPU is not told apart.
        compare_all("fixture", &fixture_sock, None, &p, total).await;
        println!("fixture upstream received {} requests", fixture.count());
        metrics_cost(&fixture_sock, &p, total).await;
        baseline_cost(&fixture_sock, &p, total).await;

        let engine = Path::new("/var/run/docker.sock");
        if std::env::var("PORTCULLIS_BENCH_SKIP_ENGINE").is_ok() {
            println!("engine: skipped (PORTCULLIS_BENCH_SKIP_ENGINE is set)");
            return;
        }
        if let Err(why) = common::support::daemon::answers() {
            println!("engine: skipped ({why})");
            return;
        }
        let (q, _) = start_proxy(engine);
        compare_all("engine", engine, dockerd_pid(), &q, total).await;
    });
}
