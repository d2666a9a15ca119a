//! Durable-before-forward throughput: how many requests per second
//! `portcullis serve` forwards when every one must first have its decision
//! record durable (written to the audit WAL, group commit), at 64 concurrent clients
//! against the fixed-cost fixture upstream (so the proxy's own cost shows).
//!
//! `cargo bench --bench forward_durable` prints req/s, p50/p99 latency and
//! whether the 20k req/s target is met, then checks that the log holds at least
//! one record per served request and still verifies.
//!
//! Env: PORTCULLIS_BENCH_REQUESTS (total; default 64 000 with --bench, 1 280 otherwise).

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{keep_alive_client, serve, FixtureUpstream};

const CLIENTS: usize = 64;
const TARGET_RPS: f64 = 20_000.0;
/// Each client alternates the two cheapest routes.
const PATHS: &[&str] = &["/_ping", "/containers/json"];

fn main() {
    // `cargo test --benches` runs this binary without --bench: stay quick there.
    let benching = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::var("PORTCULLIS_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 64_000 } else { CLIENTS * 20 });
    let per_client = (total / CLIENTS).max(1);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let socket = dir.path().join("portcullis.sock");
    let fixture = rt
        .block_on(async { FixtureUpstream::start(&upstream) })
        .expect("fixture upstream");
    let _proxy = serve(&socket, &dir.path().join("data"), &upstream);

    let (latencies, elapsed) = rt.block_on(async {
        // Warm up: connections, policy caches, the log's first batches.
        keep_alive_client(socket.clone(), PATHS.to_vec(), 100).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(keep_alive_client(
                    socket.clone(),
                    PATHS.to_vec(),
                    per_client,
                ))
            })
            .collect();
        let mut all = Vec::with_capacity(per_client * CLIENTS);
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        (all, started.elapsed())
    });
    let mut sorted = latencies;
    sorted.sort();
    let served = sorted.len();
    let rps = served as f64 / elapsed.as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "forward_durable c={CLIENTS} requests={served}: {rps:.0} req/s, p50 {:.0}µs, p99 {:.0}µs (target {TARGET_RPS:.0} req/s: {})",
        us(sorted[served / 2]),
        us(sorted[served * 99 / 100]),
        if rps >= TARGET_RPS { "met" } else { "NOT met" },
    );
    println!("fixture upstream received {} requests", fixture.count());

    // Every served request was recorded before it was forwarded, and the chain holds.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env("PORTCULLIS_HOST", format!("unix://{}", socket.display()))
        .args(["audit", "verify"])
        .output()
        .expect("run portcullis audit verify");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify report");
    assert!(
        out.status.success() && report["broken"].is_null(),
        "verify: {report}"
    );
    let checked = report["checked"].as_u64().unwrap_or(0);
    assert!(
        checked >= served as u64 + 100,
        "{checked} records for {} served requests",
        served + 100
    );
    println!("audit log: {checked} records, chain verifies");
}
