//! Issue 4, "The decision log: append-only, hash-chained, durable before
//! forwarding", proved end to end against the real binary:
//!
//! 1. denied docker commands are exactly the `--decision deny` records, and the
//!    decision id printed in a refusal finds its record (real engine);
//! 2. `audit verify` passes online and offline, names a changed byte, and
//!    startup refuses a broken chain until `--allow-broken-chain`;
//! 5. reading the log is itself authorized (403 for a non-admin caller);
//! 7. `audit tail --follow` prints new records once, in order;
//! -  (issue 18) a damaged WAL frame length stops startup instead of being cut,
//!    offline verify changes nothing, `audit repair` keeps what it cuts, a damaged
//!    sled file is a clear error, and `--verify-full` checks the whole chain.
//!
//! 3, 4 and 6, the log under load (kill -9, a full disk, verify while
//! writing), are in audit_under_load.rs. All but 1 run against an in-process
//! upstream and need no Docker daemon.

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::audit::{cli_offline, export, fixture, http, json_of, runtime, serve_on, verify, BIN};
use common::{cli_at, direct, engine, image, ok, stderr, stdout, unique, Cleanup, Proxy};

fn decision_ids(text: &str) -> Vec<u64> {
    let re = regex::Regex::new(r"\(decision (\d+)\)").unwrap();
    re.captures_iter(text)
        .map(|c| c[1].parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Denied docker commands are exactly the `--decision deny` records.
// ---------------------------------------------------------------------------

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn denied_docker_commands_are_exactly_the_deny_records_and_ids_find_them() {
    engine();
    let img = image();
    let side = tempfile::tempdir().unwrap();
    let ci_sock = side.path().join("ci.sock");
    let ci_listen = format!("unix://{}?caller=ci", ci_sock.display());
    let p = Proxy::start(&["--listen", &ci_listen]);
    p.wait_for_socket(&ci_sock);
    let ci = format!("unix://{}", ci_sock.display());

    let web = unique("web");
    let db = unique("db");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    for n in [&web, &db] {
        ok(&direct(&["create", "--name", n, img, "sleep", "300"]));
    }
    let created = p.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=ci",
        "--set",
        "target_container=web-*",
        "--set",
        "can_start=true",
    ]);
    let trust = json_of(&ok(&created));
    let trust_id = trust["id"].as_str().expect("trust id").to_string();

    // Allowed: listing, starting and reading logs of web-*.
    for args in [
        vec!["ps", "-a"],
        vec!["start", web.as_str()],
        vec!["logs", web.as_str()],
    ] {
        let out = p.docker_at(&ci, &args);
        assert!(
            out.status.success(),
            "ci should be allowed `docker {}`: {}",
            args.join(" "),
            stderr(&out)
        );
        assert!(decision_ids(&stderr(&out)).is_empty());
    }
    // Denied: what the relationship does not grant, and what has no relationship.
    let denied: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["stop", web.as_str()], "container.stop", web.as_str()),
        (vec!["start", db.as_str()], "container.start", db.as_str()),
        (
            vec!["rm", "-f", db.as_str()],
            "container.remove",
            db.as_str(),
        ),
        (
            vec!["restart", web.as_str()],
            "container.restart",
            web.as_str(),
        ),
    ];
    let mut expected = Vec::new();
    for (args, action, target) in &denied {
        let out = p.docker_at(&ci, args);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "ci should be refused `docker {}`",
            args.join(" ")
        );
        let ids = decision_ids(&err);
        assert_eq!(
            ids.len(),
            1,
            "one refusal with one decision id for `docker {}`: {err}",
            args.join(" ")
        );
        expected.push((ids[0], *action, *target, err));
    }
    // The refused commands had no effect on the engine.
    assert_eq!(
        ok(&direct(&["inspect", "-f", "{{.State.Running}}", &web])).trim(),
        "true"
    );
    assert_eq!(
        ok(&direct(&["inspect", "-f", "{{.State.Running}}", &db])).trim(),
        "false"
    );

    let out = p.cli(&["audit", "query", "--decision", "deny", "--format", "json"]);
    let records = json_of(&ok(&out));
    let records = records.as_array().expect("a JSON array of records");
    let got: BTreeSet<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let want: BTreeSet<u64> = expected.iter().map(|e| e.0).collect();
    assert_eq!(
        got, want,
        "deny records must be exactly the refused commands; records: {records:#?}"
    );
    for (id, action, target, err) in &expected {
        let r = records.iter().find(|r| r["seq"] == *id).unwrap();
        assert_eq!(r["allowed"], false);
        assert_eq!(r["enforced"], true);
        assert_eq!(r["caller"], "ci");
        assert_eq!(r["action"], *action, "record {id}");
        assert_eq!(r["target_name"], *target, "record {id}");
        let reasons: Vec<&str> = r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!reasons.is_empty(), "record {id} carries its reasons");
        assert!(
            err.contains(&reasons.join("; ")),
            "the CLI showed the recorded reason {reasons:?}: {err}"
        );

        // The id from the refusal finds its record by cursor (newest first, strictly below).
        let cursor = (id + 1).to_string();
        let page = json_of(&ok(&p.cli(&[
            "audit", "query", "--cursor", &cursor, "--limit", "1", "--format", "json",
        ])));
        assert_eq!(page[0]["seq"], *id, "cursor {cursor} finds decision {id}");
        assert_eq!(page[0]["request_id"], r["request_id"]);
        // And by filter.
        let by_action = json_of(&ok(&p.cli(&[
            "audit", "query", "--caller", "ci", "--action", action, "--format", "json",
        ])));
        assert!(
            by_action
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["seq"] == *id),
            "filter finds decision {id}"
        );
    }

    // The allowed start is recorded as allowed, under the relationship that granted it.
    let allowed = json_of(&ok(&p.cli(&[
        "audit",
        "query",
        "--decision",
        "allow",
        "--caller",
        "ci",
        "--action",
        "container.start",
        "--format",
        "json",
    ])));
    let starts = allowed.as_array().unwrap();
    assert_eq!(starts.len(), 1, "one allowed start: {starts:#?}");
    assert_eq!(starts[0]["target_name"], web.as_str());
    assert_eq!(starts[0]["trust_id"], trust_id.as_str());

    let (passed, report) = verify(&p.cli(&["audit", "verify"]));
    assert!(passed && report["broken"].is_null(), "verify: {report}");
}

// ---------------------------------------------------------------------------
// 2. verify online and offline; a changed byte is named; startup refuses.
// ---------------------------------------------------------------------------

#[test]
fn verify_names_a_changed_record_and_startup_refuses_until_allowed() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let pinned = dir.path().join("stranger.sock");
    let extra = vec![
        "--listen".to_string(),
        format!("unix://{}?caller=stranger", pinned.display()),
    ];
    let mut server = serve_on(
        &admin,
        &data,
        &upstream,
        &extra,
        &dir.path().join("serve1.log"),
    )
    .start();
    server.wait_for_socket(&pinned);

    for _ in 0..4 {
        assert_eq!(http(&admin, "GET", "/_ping").0, 200);
        assert_eq!(http(&pinned, "GET", "/containers/json").0, 403);
    }
    assert!(fx.count() >= 4, "the allowed pings reached the fixture");
    let records = export(&admin);
    assert!(
        records.len() >= 8,
        "every request was recorded: {}",
        records.len()
    );

    let (passed, report) = verify(&server.cli(&["audit", "verify"]));
    assert!(passed, "online verify: {report}");
    assert!(report["broken"].is_null());
    assert!(report["checked"].as_u64().unwrap() >= 8);

    server.kill();
    let data_s = data.display().to_string();
    let (passed, report) = verify(&cli_offline(&["audit", "verify", "--data-dir", &data_s]));
    assert!(
        passed && report["broken"].is_null(),
        "offline verify of an intact log: {report}"
    );
    let head_before = report["head_hash"].clone();

    // Change one byte of record 3's canonical bytes (after version byte and hash).
    let victim = 3u64;
    {
        let db = portcullis::record::open_offline(&data).expect("open the stopped proxy's db");
        portcullis::record::testing::corrupt_record_byte(&db, victim, 1 + 32 + 10)
            .expect("corrupt a byte");
        db.flush().unwrap();
    }
    let out = cli_offline(&["audit", "verify", "--data-dir", &data_s]);
    let (passed, report) = verify(&out);
    assert!(!passed, "verify must fail on a changed byte: {report}");
    assert_eq!(
        report["broken"]["seq"], victim,
        "verify names the changed record: {report}"
    );
    assert!(
        stdout(&out).contains(&format!("\"seq\": {victim}")),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("BROKEN"), "{}", stderr(&out));
    assert_eq!(report["last_good_seq"], victim - 1);

    // Startup refuses, with a message, and never listens.
    let (status, log) = serve_on(
        &admin,
        &data,
        &upstream,
        &[],
        &dir.path().join("serve2.log"),
    )
    .run_to_exit();
    assert!(
        !status.success(),
        "serve must refuse a broken chain; log:\n{log}"
    );
    assert!(log.contains("broken"), "the refusal says why: {log}");
    assert!(
        log.contains(&format!("seq {victim}")),
        "the refusal names the record: {log}"
    );
    assert!(
        StdUnixStream::connect(&admin).is_err(),
        "a refusing server does not listen"
    );

    // Told otherwise, it serves; the damage stays on record.
    let flag = vec!["--allow-broken-chain".to_string()];
    let server = serve_on(
        &admin,
        &data,
        &upstream,
        &flag,
        &dir.path().join("serve3.log"),
    )
    .start();
    assert_eq!(
        http(&admin, "GET", "/_ping").0,
        200,
        "serving with --allow-broken-chain"
    );
    let (passed, report) = verify(&server.cli(&["audit", "verify"]));
    assert!(!passed, "the break is still reported online: {report}");
    assert_eq!(report["broken"]["seq"], victim);
    assert_ne!(report["head_hash"], head_before);
}

// ---------------------------------------------------------------------------
// 5. Reading the log is itself authorized.
// ---------------------------------------------------------------------------

#[test]
fn a_non_admin_caller_may_not_read_the_log() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let ci_sock = dir.path().join("ci.sock");
    let extra = vec![
        "--listen".to_string(),
        format!("unix://{}?caller=ci", ci_sock.display()),
    ];
    let server = serve_on(
        &admin,
        &dir.path().join("data"),
        &upstream,
        &extra,
        &dir.path().join("serve.log"),
    )
    .start();
    server.wait_for_socket(&ci_sock);
    // Even a caller with a trust relationship may not read the log.
    ok(&server.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=ci",
        "--set",
        "target_container=*",
    ]));

    let (status, _) = http(&admin, "GET", "/api/v1/trust/audit");
    assert_eq!(status, 200, "the admin may read the log");

    for path in [
        "/api/v1/trust/audit",
        "/api/v1/trust/audit?decision=deny",
        "/api/v1/audit/verify",
    ] {
        let (status, body) = http(&ci_sock, "GET", path);
        assert_eq!(status, 403, "ci reading {path}: {body}");
        let message = json_of(&body)["message"].as_str().unwrap().to_string();
        assert!(message.contains("ci may not audit.read"), "{message}");
    }
    let out = cli_at(&ci_sock, &["audit", "query", "--format", "json"]);
    assert!(
        !out.status.success(),
        "the CLI through ci's socket is refused: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).trim().is_empty(),
        "no records leak: {}",
        stdout(&out)
    );

    // And the refusals are on record.
    let denied = json_of(&ok(&server.cli(&[
        "audit",
        "query",
        "--caller",
        "ci",
        "--action",
        "audit.read",
        "--decision",
        "deny",
        "--format",
        "json",
    ])));
    assert_eq!(denied.as_array().unwrap().len(), 4, "{denied:#}");
}

// ---------------------------------------------------------------------------
// 7. `audit tail --follow` prints new records as they are committed, once each.
// ---------------------------------------------------------------------------

#[test]
fn tail_follow_prints_new_records_once_in_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let _server = serve_on(
        &admin,
        &dir.path().join("data"),
        &upstream,
        &[],
        &dir.path().join("serve.log"),
    )
    .start();
    assert_eq!(http(&admin, "GET", "/_ping").0, 200);

    let mut tail = Command::new(BIN)
        .env("PORTCULLIS_HOST", format!("unix://{}", admin.display()))
        .args(["audit", "tail", "--follow", "--lines", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run portcullis audit tail --follow");
    let out = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(json_of(&line)).is_err() {
                break;
            }
        }
    });
    // Let it print the backlog and start following, then make new records.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_eq!(http(&admin, "GET", "/info").0, 200);
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen
        .iter()
        .filter(|r: &&Value| r["action"] == "system.info")
        .count()
        < 3
        && Instant::now() < deadline
    {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(r);
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let infos = seen.iter().filter(|r| r["action"] == "system.info").count();
    let own = seen.iter().filter(|r| r["action"] == "audit.read").count();
    eprintln!(
        "tail --follow: {} lines, {own} of them its own audit.read polls",
        seen.len()
    );
    assert_eq!(infos, 3, "tail --follow printed the new records: {seen:#?}");
    let seqs: Vec<u64> = seen.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "each record once, in order: {seqs:?}"
    );
    assert!(
        seen[0]["action"] == "system.ping",
        "the backlog came first: {seen:#?}"
    );
}

// ---------------------------------------------------------------------------
// Issue 18: the decision log never loses what it acknowledged.
// ---------------------------------------------------------------------------

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// A bit flipped in a WAL frame's length field makes it run past the end of the
/// file. That is damage, not a torn write: startup refuses, naming the segment,
/// the byte and the seq; `audit verify --data-dir` reports it without changing a
/// byte; `audit repair` cuts it, keeping a copy; then the server starts.
#[test]
fn a_flipped_wal_length_bit_stops_startup_and_verify_leaves_the_evidence() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let mut server = serve_on(&admin, &data, &upstream, &[], &dir.path().join("s1.log")).start();
    for _ in 0..60 {
        assert_eq!(http(&admin, "GET", "/_ping").0, 200);
    }
    server.kill();
    drop(server);

    let wal_dir = data.join("audit-wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a WAL segment survives the kill");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert!(bytes.len() > 16 + 16, "the segment holds a frame");
    // The first frame's length field starts at byte 16 + 4: +16 MiB runs past the end.
    bytes[16 + 4] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let (status, log) =
        serve_on(&admin, &data, &upstream, &[], &dir.path().join("s2.log")).run_to_exit();
    assert!(!status.success(), "startup must refuse; log:\n{log}");
    let seg_name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains(&seg_name), "names the file: {log}");
    assert!(log.contains("at byte 16"), "names the byte: {log}");
    assert!(log.contains("at seq "), "names the seq: {log}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "startup cut nothing");

    // Verify is read-only: every file stays byte-identical.
    let before = snapshot(&data);
    let data_s = data.display().to_string();
    let out = cli_offline(&["audit", "verify", "--data-dir", &data_s]);
    let (passed, report) = verify(&out);
    assert!(!passed, "verify reports the damaged frame: {report}");
    assert!(
        report["broken"]["detail"]
            .as_str()
            .unwrap()
            .contains(&seg.display().to_string()),
        "names the original segment: {report}"
    );
    assert!(
        before == snapshot(&data),
        "verify changed the data directory"
    );

    // Repair cuts it and keeps a copy of what it removed.
    let out = cli_offline(&["audit", "repair", "--data-dir", &data_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rep = json_of(&stdout(&out));
    let kept = PathBuf::from(rep["kept_in"].as_str().expect("names the copy"));
    assert!(stderr(&out).contains(&kept.display().to_string()));
    assert_eq!(std::fs::read(kept.join(&seg_name)).unwrap(), bytes);
    let (passed, report) = verify(&cli_offline(&["audit", "verify", "--data-dir", &data_s]));
    assert!(passed, "after repair: {report}");
    let _server = serve_on(&admin, &data, &upstream, &[], &dir.path().join("s3.log")).start();
    assert_eq!(http(&admin, "GET", "/_ping").0, 200);
}

/// A byte flipped in sled's files is met with an error that names the files and
/// says what to do, at `serve` and at `audit verify --data-dir`: no panic, no
/// backtrace, no guess that another portcullis is running.
#[test]
fn a_damaged_sled_file_is_a_clear_error_at_serve_and_verify() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let mut server = serve_on(&admin, &data, &upstream, &[], &dir.path().join("s1.log")).start();
    for _ in 0..10 {
        assert_eq!(http(&admin, "GET", "/_ping").0, 200);
    }
    server.kill();
    drop(server);
    let conf = data.join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    bytes[8] ^= 0x01;
    std::fs::write(&conf, &bytes).unwrap();

    let data_s = data.display().to_string();
    let clear = |text: &str, who: &str| {
        assert!(!text.contains("panicked"), "{who} panicked: {text}");
        assert!(!text.contains("RUST_BACKTRACE"), "{who}: {text}");
        assert!(
            text.contains("is damaged"),
            "{who} says what is wrong: {text}"
        );
        assert!(
            text.contains(&format!("{data_s}/db")),
            "{who} names the file: {text}"
        );
        assert!(text.contains("backup"), "{who} says what to do: {text}");
        assert!(
            !text.contains("another portcullis"),
            "{who} misleads: {text}"
        );
    };
    let out = cli_offline(&["audit", "verify", "--data-dir", &data_s]);
    assert!(!out.status.success());
    clear(&stderr(&out), "verify");
    let (status, log) =
        serve_on(&admin, &data, &upstream, &[], &dir.path().join("s2.log")).run_to_exit();
    assert!(!status.success(), "{log}");
    clear(&log, "serve");
}

/// A normal start checks only the last 1,000 records; `--verify-full` checks
/// them all and refuses a change further back.
#[test]
fn verify_full_at_startup_finds_a_change_beyond_the_checked_tail() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("fixture.sock");
    let _fx = fixture(&rt, &upstream);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let mut server = serve_on(&admin, &data, &upstream, &[], &dir.path().join("s1.log")).start();
    for _ in 0..1100 {
        assert_eq!(http(&admin, "GET", "/_ping").0, 200);
    }
    server.kill();
    drop(server);
    let victim = 5u64;
    {
        let db = portcullis::record::open_offline(&data).expect("open the stopped proxy's db");
        portcullis::record::testing::corrupt_record_byte(&db, victim, 1 + 32 + 10)
            .expect("corrupt a byte");
        db.flush().unwrap();
    }
    // The usual start does not reach record 5 (the README says so).
    let server = serve_on(&admin, &data, &upstream, &[], &dir.path().join("s2.log")).start();
    drop(server);
    let flag = vec!["--verify-full".to_string()];
    let (status, log) =
        serve_on(&admin, &data, &upstream, &flag, &dir.path().join("s3.log")).run_to_exit();
    assert!(!status.success(), "--verify-full must refuse; log:\n{log}");
    assert!(
        log.contains(&format!("seq {victim}")),
        "names the record: {log}"
    );
}
