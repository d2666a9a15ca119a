//! Issue 15, parts 5 and 8, against the real binary and an in-process upstream
//! (no Docker daemon needed):
//!
//! - `audit export` verifies offline (`audit verify --file`), whole and as a
//!   range whose first link is named; a changed record fails and is named;
//! - `audit export --format opa` writes OPA's decision-log events;
//! - `audit tail --follow` streams: following for ~2 s while requests are made
//!   shows them, and leaves ONE `audit.read` record, not one per poll.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::audit::{cli_offline, export, fixture, http, json_of, runtime, serve_on, BIN};
use common::{cli_at, ok, stderr, within};

/// A running server with a few records: (tempdir, admin socket, guards).
struct Setup {
    dir: tempfile::TempDir,
    admin: std::path::PathBuf,
    _server: common::Serve,
    _fixture: common::FixtureUpstream,
    _rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let server = serve_on(
        &admin,
        &dir.path().join("data"),
        &upstream,
        &[],
        &dir.path().join("serve.log"),
    )
    .start();
    for _ in 0..6 {
        assert_eq!(http(&admin, "GET", "/info").0, 200);
    }
    Setup {
        dir,
        admin,
        _server: server,
        _fixture: fx,
        _rt: rt,
    }
}

fn export_text(admin: &Path, args: &[&str]) -> String {
    let mut all = vec!["audit", "export"];
    all.extend_from_slice(args);
    ok(&cli_at(admin, &all)).to_string()
}

fn verify_file(path: &Path) -> (bool, Value, String) {
    let out = cli_offline(&["audit", "verify", "--file", path.to_str().unwrap()]);
    let report = json_of(&String::from_utf8_lossy(&out.stdout));
    (out.status.success(), report, stderr(&out))
}

fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn an_export_verifies_offline_and_a_changed_record_is_named() {
    let s = setup();
    let text = export_text(&s.admin, &[]);
    let lines: Vec<Value> = text.lines().map(json_of).collect();
    assert!(lines.len() >= 7, "{text}");
    for l in &lines {
        assert_eq!(l["hash"].as_str().map(str::len), Some(64), "{l}");
        assert_eq!(l["prev_hash"].as_str().map(str::len), Some(64), "{l}");
    }
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));

    let file = s.dir.path().join("export.jsonl");
    write(&file, &text);
    let (good, report, err) = verify_file(&file);
    assert!(good, "{report:#} {err}");
    assert_eq!(report["checked"], lines.len());
    assert!(report["broken"].is_null());
    assert!(err.contains("from the chain's start"), "{err}");
    assert_eq!(report["head_hash"], lines.last().unwrap()["hash"]);

    // One record changed: its decision flipped.
    let victim = 3;
    let mut changed: Vec<String> = text.lines().map(str::to_string).collect();
    let mut v = lines[victim].clone();
    v["allowed"] = Value::Bool(!v["allowed"].as_bool().unwrap());
    changed[victim] = v.to_string();
    write(&file, &(changed.join("\n") + "\n"));
    let (good, report, err) = verify_file(&file);
    assert!(!good, "a changed record must fail: {report:#}");
    let seq = lines[victim]["seq"].as_u64().unwrap();
    assert_eq!(report["broken"]["seq"], seq, "{report:#}");
    assert_eq!(report["broken"]["kind"], "hash_mismatch", "{report:#}");
    assert!(err.contains(&format!("seq {seq}")), "{err}");
    assert_eq!(report["last_good_seq"], seq - 1);

    // A line dropped: the link after it is named.
    let mut dropped: Vec<String> = text.lines().map(str::to_string).collect();
    dropped.remove(victim);
    write(&file, &(dropped.join("\n") + "\n"));
    let (good, report, _) = verify_file(&file);
    assert!(!good);
    assert_eq!(report["broken"]["seq"], seq + 1, "{report:#}");
    assert_eq!(report["broken"]["kind"], "missing", "{report:#}");
}

#[test]
fn a_range_export_verifies_with_its_first_link_named() {
    let s = setup();
    let whole: Vec<Value> = export(&s.admin);
    let text = export_text(&s.admin, &["--from", "4"]);
    let lines: Vec<Value> = text.lines().map(json_of).collect();
    assert_eq!(lines[0]["seq"], 4);
    assert_eq!(lines[0]["prev_hash"], whole[2]["hash"]);
    let file = s.dir.path().join("range.jsonl");
    write(&file, &text);
    let (good, report, err) = verify_file(&file);
    assert!(good, "{report:#} {err}");
    let start = format!(
        "starts at seq 4 after hash {}",
        whole[2]["hash"].as_str().unwrap()
    );
    assert_eq!(report["start"], start.as_str());
    assert!(err.contains(&start), "{err}");
    assert_eq!(report["from_seq"], 4);

    // The range with its first record changed fails at seq 4.
    let mut v = lines[0].clone();
    v["caller"] = Value::String("someone-else".into());
    let mut changed: Vec<String> = text.lines().map(str::to_string).collect();
    changed[0] = v.to_string();
    write(&file, &changed.join("\n"));
    let (good, report, _) = verify_file(&file);
    assert!(!good);
    assert_eq!(report["broken"]["seq"], 4, "{report:#}");
}

#[test]
fn opa_format_is_opas_decision_log_shape() {
    let s = setup();
    let text = export_text(&s.admin, &["--format", "opa"]);
    let events: Vec<Value> = text.lines().map(json_of).collect();
    assert!(events.len() >= 7);
    let info = events
        .iter()
        .find(|e| e["input"]["action"] == "system.info")
        .expect("a system.info event");
    for key in [
        "decision_id",
        "path",
        "input",
        "result",
        "timestamp",
        "labels",
        "metrics",
    ] {
        assert!(info.get(key).is_some(), "{key} missing: {info:#}");
    }
    assert!(info["decision_id"].is_string(), "{info:#}");
    assert_eq!(info["path"], "portcullis/decision");
    assert_eq!(info["input"]["method"], "GET");
    assert_eq!(info["input"]["path"], "/info");
    assert_eq!(info["result"]["allowed"], true);
    assert!(info["result"]["reasons"].is_array());
    assert_eq!(info["labels"]["app"], "portcullis");
    assert!(info["labels"]["policy_version"].is_string());
    assert!(info["timestamp"].as_str().unwrap().contains('T'));
    assert!(info["metrics"].is_object());
    let unknown = cli_at(&s.admin, &["audit", "export", "--format", "xml"]);
    assert!(!unknown.status.success());
}

#[test]
fn tail_follow_streams_with_one_read_record() {
    let s = setup();
    let mut tail = Command::new(BIN)
        .env("PORTCULLIS_HOST", format!("unix://{}", s.admin.display()))
        .args(["audit", "tail", "--follow", "--lines", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run portcullis audit tail --follow");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = tail.stdout.take().unwrap();
    let tail = Kill(tail);
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(json_of(&line));
            }
        });
    }
    // The backlog, then its own audit.read (recorded before the stream reads).
    assert!(
        within(Duration::from_secs(10), || {
            seen.lock()
                .unwrap()
                .iter()
                .any(|r| r["action"] == "audit.read")
        }),
        "tail printed nothing: {:?}",
        seen.lock().unwrap()
    );
    // ~2 s of requests while following.
    let started = Instant::now();
    let mut made = 0;
    while started.elapsed() < Duration::from_secs(2) {
        assert_eq!(http(&s.admin, "GET", "/version").0, 200);
        made += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        within(Duration::from_secs(10), || {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|r| r["action"] == "system.version")
                .count()
                == made
        }),
        "tail --follow showed the new records"
    );
    drop(tail);
    let seen = seen.lock().unwrap().clone();
    let seqs: Vec<u64> = seen.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "each record once, in order, none skipped: {seqs:?}"
    );
    // Every record but the last (the export's own read): one audit.read, the tail's.
    let all = export(&s.admin);
    let reads: Vec<&Value> = all[..all.len() - 1]
        .iter()
        .filter(|r| r["action"] == "audit.read")
        .collect();
    assert_eq!(reads.len(), 1, "the tail was recorded once: {reads:#?}");
    assert_eq!(reads[0]["path"], "/api/v1/audit/stream");
}
