//! Issue 15, part 6: `serve --decision-logs URL` ships every recorded decision
//! to a collector in OPA's decision-log format, against the real binary, the
//! fixture upstream and a tiny collector in the test (no Docker daemon needed):
//!
//! - the collector's events are the log's records (seqs, OPA fields, chain
//!   hashes), gzipped JSON arrays, batched;
//! - a collector that answers 503 at first gets the backlog once it is up;
//! - a restart resumes after the last acknowledged seq: nothing lost, nothing
//!   acknowledged sent twice.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use common::audit::{export, fixture, http, runtime, serve_on};
use common::within;

/// A one-thread collector: gunzips each POST's body (a JSON array of events)
/// and keeps the events while `up`; answers 503 while not.
struct Collector {
    url: String,
    up: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start(up: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/logs", listener.local_addr().unwrap());
        let c = Collector {
            url,
            up: Arc::new(AtomicBool::new(up)),
            refused: Arc::default(),
            events: Arc::default(),
        };
        let (up, refused, events) = (c.up.clone(), c.refused.clone(), c.events.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut gzip, mut request_line) = (0usize, false, String::new());
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => length = v.trim().parse().unwrap_or(0),
                            "content-encoding" => gzip = v.trim() == "gzip",
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = if !up.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    "503 Service Unavailable"
                } else {
                    let mut json = Vec::new();
                    let batch: Option<Vec<Value>> = (gzip
                        && request_line.starts_with("POST /logs ")
                        && flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut json)
                            .is_ok())
                    .then(|| serde_json::from_slice(&json).ok())
                    .flatten();
                    match batch {
                        Some(batch) => {
                            events.lock().unwrap().extend(batch);
                            "200 OK"
                        }
                        None => "400 Bad Request",
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        c
    }

    /// How many times each seq arrived.
    fn seqs(&self) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for e in self.events.lock().unwrap().iter() {
            let seq = e["portcullis_chain"]["seq"].as_u64().expect("a seq");
            *out.entry(seq).or_default() += 1;
        }
        out
    }

    fn event(&self, seq: u64) -> Value {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["portcullis_chain"]["seq"] == seq)
            .cloned()
            .unwrap_or_else(|| panic!("no event for seq {seq}"))
    }

    /// Whether every seq in `records` has arrived.
    fn has_all(&self, records: &[Value]) -> bool {
        let seqs = self.seqs();
        records
            .iter()
            .all(|r| seqs.contains_key(&r["seq"].as_u64().unwrap()))
    }
}

fn state(data: &Path) -> u64 {
    std::fs::read_to_string(data.join("decision-logs.seq"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_collector_down_at_first_gets_the_log_in_opa_shape() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let collector = Collector::start(false);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let extra: Vec<String> = [
        "--decision-logs",
        &collector.url,
        "--decision-logs-batch",
        "3",
        "--metrics",
        &format!("tcp://{metrics}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _server = serve_on(
        &admin,
        &data,
        &upstream,
        &extra,
        &dir.path().join("serve.log"),
    )
    .start();
    for _ in 0..7 {
        assert_eq!(http(&admin, "GET", "/info").0, 200);
    }
    // The collector refuses: the shipper retries, and nothing is acknowledged.
    assert!(
        within(Duration::from_secs(10), || collector
            .refused
            .load(Ordering::SeqCst)
            >= 2),
        "no retry against a refusing collector"
    );
    assert_eq!(state(&data), 0, "nothing was acknowledged");
    collector.up.store(true, Ordering::SeqCst);

    let records = export(&admin);
    assert!(records.len() >= 7, "{records:?}");
    assert!(
        within(Duration::from_secs(30), || collector.has_all(&records)),
        "the backlog did not arrive: {:?}",
        collector.seqs()
    );
    let seqs = collector.seqs();
    // From seq 1, no gap, nothing twice.
    let max = *seqs.keys().last().unwrap();
    assert_eq!(
        seqs.keys().copied().collect::<Vec<_>>(),
        (1..=max).collect::<Vec<_>>()
    );
    assert!(seqs.values().all(|&n| n == 1), "duplicates: {seqs:?}");
    // Each event is the record, in the shape `audit export --format opa` writes.
    let chained: Vec<Value> = common::ok(&common::cli_at(&admin, &["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &records {
        let seq = r["seq"].as_u64().unwrap();
        let e = collector.event(seq);
        assert_eq!(e["decision_id"], seq.to_string(), "{e}");
        assert_eq!(e["path"], "portcullis/decision", "{e}");
        assert_eq!(e["input"]["caller"], r["caller"], "{e}");
        assert_eq!(e["input"]["action"], r["action"], "{e}");
        assert_eq!(e["input"]["request_id"], r["request_id"], "{e}");
        assert_eq!(e["result"]["allowed"], r["allowed"], "{e}");
        assert_eq!(e["timestamp"], r["time"], "{e}");
        assert!(e["labels"].is_object() && e["metrics"].is_object(), "{e}");
        let c = chained.iter().find(|c| c["seq"] == seq).unwrap();
        assert_eq!(e["portcullis_chain"]["hash"], c["hash"], "{e}");
    }
    assert!(
        within(Duration::from_secs(5), || state(&data) >= max),
        "the last shipped seq is saved"
    );
    // The counters are exposed.
    let scrape = common::request("GET", "/metrics").send_tcp(&metrics).text();
    let counter = |name: &str| -> u64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&format!("portcullis_decision_logs_{name}_total ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {scrape}"))
    };
    assert!(counter("shipped") >= max, "{scrape}");
    assert!(counter("failed_posts") >= 2, "{scrape}");
    assert_eq!(counter("lost"), 0, "{scrape}");
}

#[test]
fn a_restart_resumes_after_the_last_acknowledged_seq() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let collector = Collector::start(true);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let extra: Vec<String> = vec!["--decision-logs".into(), collector.url.clone()];
    let serve = || {
        serve_on(
            &admin,
            &data,
            &upstream,
            &extra,
            &dir.path().join("serve.log"),
        )
    };

    let mut first = serve().start();
    for _ in 0..3 {
        assert_eq!(http(&admin, "GET", "/info").0, 200);
    }
    let shipped = export(&admin);
    let last = shipped.last().unwrap()["seq"].as_u64().unwrap();
    assert!(
        within(Duration::from_secs(15), || state(&data) >= last),
        "not shipped: {:?}",
        collector.seqs()
    );
    // The collector goes down; these records are only in the log when the
    // proxy is killed.
    collector.up.store(false, Ordering::SeqCst);
    for _ in 0..4 {
        assert_eq!(http(&admin, "GET", "/info").0, 200);
    }
    let acknowledged = state(&data);
    first.kill();
    collector.up.store(true, Ordering::SeqCst);

    let _second = serve().start();
    assert_eq!(http(&admin, "GET", "/info").0, 200);
    let records = export(&admin);
    assert!(records.len() >= shipped.len() + 5, "{records:?}");
    assert!(
        within(Duration::from_secs(30), || collector.has_all(&records)),
        "records lost across the restart: {:?}",
        collector.seqs()
    );
    let seqs = collector.seqs();
    let max = *seqs.keys().last().unwrap();
    assert_eq!(
        seqs.keys().copied().collect::<Vec<_>>(),
        (1..=max).collect::<Vec<_>>(),
        "a gap"
    );
    // What was acknowledged before the kill is not sent again.
    for seq in 1..=acknowledged {
        assert_eq!(seqs[&seq], 1, "seq {seq} sent again: {seqs:?}");
    }
}

#[test]
fn a_decision_logs_url_must_be_http() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--listen",
            "unix:///nonexistent/x.sock",
            "--decision-logs",
            "ftp://127.0.0.1/logs",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--decision-logs"), "{err}");
    assert!(err.contains("http:// or https://"), "{err}");
}
