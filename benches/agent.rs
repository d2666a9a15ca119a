//! The agent controls under load: the health summary over 50 containers, and
//! the memory an idle `logs?follow=true` SSE stream costs the proxy.
//!
//! Issue 12's targets: `GET /api/v1/containers/health` for 50 running
//! containers answers well under a second; an idle followed log stream costs
//! at most ~16 KiB of the proxy's RSS.
//!
//! `cargo bench --bench agent` starts its own `portcullis serve` (this build's
//! binary, connection limits raised) on a temporary admin socket, runs 50
//! busybox containers (`sleep`), and prints:
//! - the summary's first answer (cold: every container is sampled with
//!   `precpu`, which makes the daemon wait ~1 s) and the median of the next
//!   rounds (warm: one-shot samples, CPU% against the cached previous one);
//! - VmRSS of the proxy before and after opening 1,000 idle followed log
//!   streams (to 4 quiet containers), and the difference per stream; and the
//!   proxy's open files before, during and after (no stream outlives its client).
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does a tiny round.
//! Without a daemon, or with PORTCULLIS_BENCH_SKIP_ENGINE set, it prints SKIP
//! and exits 0. Env: PORTCULLIS_BENCH_ROUNDS (default 10),
//! PORTCULLIS_BENCH_STREAMS (default 1000), PORTCULLIS_BENCH_CONTAINERS (50).
//! All containers are removed at the end, also on panic.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::support::{daemon, image, request, ServeCmd, IMAGE};

/// The bench's containers (by label), removed on drop.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=portcullis-bench={}", self.0),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .env("DOCKER_HOST", "unix:///var/run/docker.sock")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raise the soft limit on open files to the hard one: the proxy (a child,
/// which inherits it) holds two per stream, client and daemon side.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// This build's `portcullis serve` in `dir` (socket `{name}.sock`), its
/// connection limits raised for `streams`.
fn start_proxy(dir: &Path, name: &str, streams: usize) -> (common::support::Serve, PathBuf) {
    let socket = dir.join(format!("{name}.sock"));
    let limit = (streams * 2 + 100).to_string();
    let log = dir.join(format!("{name}.log"));
    let proxy = ServeCmd::at(&socket, &dir.join(format!("{name}-data")), &log)
        .args(&["--max-connections", &limit])
        .args(&["--max-connections-per-caller", &limit])
        .env("PORTCULLIS_LOG", "warn")
        .start();
    (proxy, socket)
}

/// Open a followed log stream and read its answer head (status 200).
fn open_stream(socket: &Path, target: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: portcullis\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "the proxy closed a stream before answering");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "stream refused: {head}");
    s
}

/// Open `n` idle streams (`target` of a container, to `quiet` in turn),
/// print the proxy's VmRSS and open files before, with them, and after they
/// close; the KiB of RSS per stream.
fn idle_streams(
    socket: &Path,
    pid: u32,
    quiet: &[&String],
    n: usize,
    fd_limit: u64,
    what: &str,
    target: &dyn Fn(&str) -> String,
) -> f64 {
    drop(open_stream(socket, &target(quiet[0])));
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, fds0) = (vm_rss_kib(pid), open_files(pid));
    let t = Instant::now();
    let streams: Vec<UnixStream> = (0..n)
        .map(|i| open_stream(socket, &target(quiet[i % quiet.len()])))
        .collect();
    let opened = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (rss1, fds1) = (vm_rss_kib(pid), open_files(pid));
    let per = rss1.saturating_sub(rss0) as f64 / n as f64;
    println!(
        "agent: {n} idle {what} streams opened in {:.1} s; proxy VmRSS {rss0} KiB -> {rss1} KiB: \
         {per:.1} KiB per stream; open files {fds0} -> {fds1} (fd limit {fd_limit})",
        opened.as_secs_f64(),
    );
    drop(streams);
    let closed = Instant::now();
    while open_files(pid) > fds0 + 4 && closed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "agent: clients gone: open files {} after {:.0} ms (each stream's daemon connection closed with it)",
        open_files(pid),
        ms(closed.elapsed()),
    );
    per
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if std::env::var_os("PORTCULLIS_BENCH_SKIP_ENGINE").is_some() {
        println!("SKIP: PORTCULLIS_BENCH_SKIP_ENGINE is set");
        return;
    }
    if let Err(why) = daemon::answers() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {why}"
        );
        println!("SKIP: {why}");
        return;
    }
    let (n_containers, rounds, n_streams) = if full {
        (
            env_number("PORTCULLIS_BENCH_CONTAINERS", 50),
            env_number("PORTCULLIS_BENCH_ROUNDS", 10),
            env_number("PORTCULLIS_BENCH_STREAMS", 1000),
        )
    } else {
        (3, 2, 10)
    };
    let fd_limit = raise_fd_limit();
    image();

    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, socket) = start_proxy(dir.path(), "summary", n_streams);

    let tag = format!("{:08x}", rand::random::<u32>());
    let _guard = Containers(tag.clone());
    let started = Instant::now();
    let names: Vec<String> = (0..n_containers)
        .map(|i| format!("portcullis-bench-agent-{tag}-{i}"))
        .collect();
    std::thread::scope(|s| {
        for chunk in names.chunks(n_containers.div_ceil(8).max(1)) {
            let tag = &tag;
            s.spawn(move || {
                for name in chunk {
                    let out = Command::new("docker")
                        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
                        .args(["run", "-d", "--name", name])
                        .args(["--label", &format!("portcullis-bench={tag}")])
                        .args([IMAGE, "sleep", "3600"])
                        .output()
                        .expect("docker run");
                    assert!(
                        out.status.success(),
                        "docker run: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            });
        }
    });
    println!(
        "agent: {n_containers} containers running in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The health summary, restricted to this bench's containers.
    let target = format!("/api/v1/containers/health?label=portcullis-bench={tag}");
    let summary = || {
        let t = Instant::now();
        let a = request("GET", &target).send(&socket);
        let took = t.elapsed();
        assert_eq!(a.status, 200, "summary: {}", a.text());
        let v = a.json();
        assert_eq!(v["total"].as_u64(), Some(n_containers as u64), "{v}");
        assert!(
            v["containers"][0]["resources"]["cpuPercent"].is_number(),
            "{v}"
        );
        took
    };
    let cold = summary();
    // Samples closer than 0.5 s repeat the last CPU%; space the rounds a little.
    let mut warm: Vec<Duration> = (0..rounds)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(600));
            summary()
        })
        .collect();
    warm.sort();
    println!(
        "agent: health summary of {n_containers}: cold (precpu: the daemon waits 1–2 s) {:.0} ms; \
         warm (one-shot + cached sample) median {:.0} ms, min {:.0} ms, max {:.0} ms over {rounds}",
        ms(cold),
        ms(warm[warm.len() / 2]),
        ms(warm[0]),
        ms(warm[warm.len() - 1]),
    );

    // Idle followed log streams: RSS per stream. The same through Docker's
    // own route (proxied, `docker logs -f`) for comparison: what the
    // connection and the pipeline cost whatever the handler.
    let quiet: Vec<&String> = names.iter().take(4).collect();
    let sse = |c: &str| format!("/api/v1/containers/{c}/logs?follow=true&tail=0");
    let docker = |c: &str| format!("/containers/{c}/logs?follow=1&stdout=1&stderr=1&tail=0");
    // Each on a fresh proxy: the allocator keeps what the first one freed.
    let measure = |name: &str, what: &str, target: &dyn Fn(&str) -> String| {
        let (p, socket) = start_proxy(dir.path(), name, n_streams);
        idle_streams(&socket, p.pid(), &quiet, n_streams, fd_limit, what, target)
    };
    let sse_cost = measure("sse", "SSE logs?follow=true", &sse);
    let docker_cost = measure("docker", "proxied docker logs -f", &docker);
    println!(
        "agent: RSS per idle stream: SSE {sse_cost:.1} KiB, proxied docker logs -f {docker_cost:.1} KiB"
    );
    drop(proxy);
}
