//! Issue 4, "The decision log: append-only, hash-chained, durable before
//! forwarding", proved end to end against the real binary:
//!
//! 1. denied docker commands are exactly the `--decision deny` records, and the
//!    decision id printed in a refusal finds its record (real engine);
//! 2. `audit verify` passes online and offline, names a changed byte, and
//!    startup refuses a broken chain until `--allow-broken-chain`;
//! 3. kill -9 under load: every request that reached the upstream has its record;
//! 4. a full disk refuses requests with a 503 in Docker's format, and service
//!    resumes without a restart once space is freed, losing nothing;
//! 5. reading the log is itself authorized (403 for a non-admin caller);
//! 6. (issue 18) a damaged WAL frame length stops startup instead of being cut,
//!    offline verify changes nothing, `audit repair` keeps what it cuts, a damaged
//!    sled file is a clear error, and `--verify-full` checks the whole chain.
//!
//! Tests 2–5 run against an in-process upstream and need no Docker daemon.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use common::{
    cli_at, direct, engine, image, ok, request, stderr, stdout, unique, Cleanup, FixtureUpstream,
    Proxy, ServeCmd,
};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// User-Agent of the load this file generates: the counting upstream counts only
/// these, because the proxy's own container-event feed also calls the upstream
/// (`/events` and `/containers/json` about once a second) and is never recorded.
const LOAD_AGENT: &str = "portcullis-acceptance-load";

// ---------------------------------------------------------------------------
// Harness: a `portcullis serve` on a data dir we choose (so it can be killed
// and restarted on the same one), plain HTTP over unix sockets, upstreams.
// ---------------------------------------------------------------------------

/// `portcullis serve` on a data dir we choose (so it can be killed and
/// restarted on the same one), forwarding to `upstream`.
fn serve_on(admin: &Path, data: &Path, upstream: &Path, extra: &[String], log: &Path) -> ServeCmd {
    ServeCmd::at(admin, data, log)
        .upstream(upstream)
        .args(extra)
}

fn cli_offline(args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("PORTCULLIS_HOST")
        .args(args)
        .output()
        .expect("run portcullis")
}

/// One HTTP/1.1 request of this file's load: (status, body).
fn http(socket: &Path, method: &str, path: &str) -> (u16, String) {
    let answer = request(method, path)
        .header("User-Agent", LOAD_AGENT)
        .timeout(Duration::from_secs(30))
        .send(socket);
    (answer.status, answer.text())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every record, oldest first, through `portcullis audit export`.
fn export(socket: &Path) -> Vec<Value> {
    let out = cli_at(socket, &["audit", "export"]);
    ok(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(json_of)
        .collect()
}

/// `portcullis audit verify` (online or offline): (exit success, report).
fn verify(out: &Output) -> (bool, Value) {
    (out.status.success(), json_of(&stdout(out)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The fixture upstream, served by `rt`.
fn fixture(rt: &tokio::runtime::Runtime, socket: &Path) -> FixtureUpstream {
    rt.block_on(async { FixtureUpstream::start(socket) })
        .expect("start fixture upstream")
}

/// The fixture upstream counting, at arrival, the requests of this file's
/// load (tagged by [`LOAD_AGENT`]) apart from the proxy's own.
fn counting_upstream(rt: &tokio::runtime::Runtime, socket: &Path) -> FixtureUpstream {
    rt.block_on(async { FixtureUpstream::start_tagged(socket, Some(LOAD_AGENT)) })
        .expect("start counting upstream")
}

/// What a load run saw.
#[derive(Default)]
struct LoadStats {
    sent: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    other_status: AtomicU64,
    transport_errors: AtomicU64,
    last_unavailable: Mutex<Option<(String, String)>>,
}

/// `clients` keep-alive connections alternating GET /_ping and GET
/// /containers/json until `stop` is set (reconnecting after transport errors).
fn spawn_load(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    clients: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
    stop_on_503: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|i| {
            let (socket, stop, stats) = (socket.to_path_buf(), stop.clone(), stats.clone());
            rt.spawn(async move {
                let mut n = i;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(stream) = tokio::net::UnixStream::connect(&socket).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let Ok((mut tx, conn)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                    else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    while !stop.load(Ordering::SeqCst) {
                        if tx.ready().await.is_err() {
                            break;
                        }
                        let path = if n % 2 == 0 {
                            "/_ping"
                        } else {
                            "/containers/json"
                        };
                        n += 1;
                        let req = hyper::Request::get(path)
                            .header("host", "portcullis")
                            .header("user-agent", LOAD_AGENT)
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        stats.sent.fetch_add(1, Ordering::SeqCst);
                        let resp = match tx.send_request(req).await {
                            Ok(r) => r,
                            Err(_) => {
                                stats.transport_errors.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        };
                        let status = resp.status().as_u16();
                        let ctype = resp
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = match resp.into_body().collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => {
                                stats.transport_errors.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        };
                        match status {
                            200 => stats.ok.fetch_add(1, Ordering::SeqCst),
                            503 => {
                                *stats.last_unavailable.lock().unwrap() =
                                    Some((ctype, String::from_utf8_lossy(&body).into_owned()));
                                if stop_on_503 {
                                    stop.store(true, Ordering::SeqCst);
                                }
                                stats.unavailable.fetch_add(1, Ordering::SeqCst)
                            }
                            _ => stats.other_status.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                }
            })
        })
        .collect()
}

/// Records of this file's load: the allowed `system.ping` and `container.list` records.
fn load_records(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            let action = r["action"].as_str().unwrap_or_default();
            (action == "system.ping" || action == "container.list")
                && r["allowed"] == Value::Bool(true)
        })
        .collect()
}

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
// 3. kill -9 under load: records >= requests that reached the upstream.
// ---------------------------------------------------------------------------

#[test]
fn kill_9_under_load_loses_no_record_of_a_forwarded_request() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream_sock = dir.path().join("upstream.sock");
    let upstream = counting_upstream(&rt, &upstream_sock);
    let admin = dir.path().join("admin.sock");
    let data = dir.path().join("data");
    let mut server = serve_on(
        &admin,
        &data,
        &upstream_sock,
        &[],
        &dir.path().join("serve1.log"),
    )
    .start();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats::default());
    let clients = spawn_load(&rt, &admin, 32, stop.clone(), stats.clone(), false);
    // Let the load build up, then kill in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.ok.load(Ordering::SeqCst) < 1500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let served_before_kill = stats.ok.load(Ordering::SeqCst);
    server.kill();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for c in clients {
            let _ = c.await;
        }
    });
    let reached = upstream.tagged_count();
    let (sent, served, failed) = (
        stats.sent.load(Ordering::SeqCst),
        stats.ok.load(Ordering::SeqCst),
        stats.transport_errors.load(Ordering::SeqCst),
    );
    eprintln!(
        "kill -9: sent {sent}, served {served} ({served_before_kill} before the kill), reached upstream {reached} \
         (+{} of the proxy's own), transport errors {failed}",
        upstream.other_count()
    );
    assert!(
        served_before_kill >= 1500,
        "the load ran before the kill: {served_before_kill}"
    );
    assert!(failed > 0, "the kill interrupted requests in flight");
    assert_eq!(
        stats.other_status.load(Ordering::SeqCst) + stats.unavailable.load(Ordering::SeqCst),
        0
    );

    // Offline first: the chain as the killed process left it.
    let data_s = data.display().to_string();
    let (passed, report) = verify(&cli_offline(&["audit", "verify", "--data-dir", &data_s]));
    assert!(passed, "offline verify after kill -9: {report}");

    // It restarts on the same data dir (startup verifies the chain).
    let server = serve_on(
        &admin,
        &data,
        &upstream_sock,
        &[],
        &dir.path().join("serve2.log"),
    )
    .start();
    let records = export(&admin);
    let load = load_records(&records);
    eprintln!("kill -9: {} load records", load.len());
    assert!(
        load.len() as u64 >= reached,
        "every request that reached the upstream has its record: {} records < {reached} requests",
        load.len()
    );
    assert!(
        load.len() as u64 <= sent,
        "no record without a request: {} > {sent}",
        load.len()
    );
    assert!(served <= reached, "a served request was forwarded");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs are contiguous"
    );
    let (passed, report) = verify(&server.cli(&["audit", "verify"]));
    assert!(
        passed && report["broken"].is_null(),
        "verify after restart: {report}"
    );
    assert_eq!(
        http(&admin, "GET", "/_ping").0,
        200,
        "the restarted proxy serves"
    );
}

// ---------------------------------------------------------------------------
// 4. Disk full: 503 in Docker's format, then served again, nothing lost.
// ---------------------------------------------------------------------------

/// Unmounts (lazily if busy) on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

#[test]
fn full_disk_refuses_with_503_and_recovers_without_restart() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // The log refuses appends below a 64 MiB reserve, so the tmpfs must be larger.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"])
        .arg(&mnt)
        .output()
        .expect("run mount");
    if !mounted.status.success() {
        let why = stderr(&mounted);
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but a tmpfs cannot be mounted: {why}");
        }
        eprintln!("SKIP: cannot mount a tmpfs ({why})");
        return;
    }
    let _mount = Mount(mnt.clone());
    let upstream_sock = dir.path().join("upstream.sock");
    let upstream = counting_upstream(&rt, &upstream_sock);
    let admin = dir.path().join("admin.sock");
    let data = mnt.join("data");
    let mut server = serve_on(
        &admin,
        &data,
        &upstream_sock,
        &[],
        &dir.path().join("serve.log"),
    )
    .start();

    for _ in 0..20 {
        assert_eq!(http(&admin, "GET", "/_ping").0, 200);
    }
    let before = export(&admin);
    assert!(before.len() >= 20);

    // Leave a little above the reserve, so the log's own growth crosses it.
    let reserve: u64 = 64 << 20;
    let margin: u64 = 2 << 20;
    let filler = mnt.join("filler");
    let fill = free_bytes(&mnt).saturating_sub(reserve + margin);
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        let mut left = fill;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }
    eprintln!("disk full: filler {fill} bytes, {} free", free_bytes(&mnt));

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats::default());
    let started = Instant::now();
    let clients = spawn_load(&rt, &admin, 8, stop.clone(), stats.clone(), true);
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for c in clients {
            let _ = c.await;
        }
    });
    let served_while_filling = stats.ok.load(Ordering::SeqCst);
    eprintln!(
        "disk full: {served_while_filling} served before refusals, {} refused, {} free",
        stats.unavailable.load(Ordering::SeqCst),
        free_bytes(&mnt)
    );
    let (ctype, body) = stats
        .last_unavailable
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| {
            panic!(
                "no 503 after {served_while_filling} requests; log:\n{}",
                server.log()
            )
        });
    assert_eq!(ctype, "application/json", "Docker's error format");
    let message = json_of(&body)["message"]
        .as_str()
        .expect("{\"message\": …}")
        .to_string();
    assert!(
        message.contains("decision log cannot be written"),
        "a clear message: {message}"
    );
    assert_eq!(stats.other_status.load(Ordering::SeqCst), 0);

    // While full, every request is refused, and none reaches the upstream.
    let reached = upstream.tagged_count();
    for path in ["/_ping", "/containers/json"] {
        let (status, body) = http(&admin, "GET", path);
        assert_eq!(status, 503, "{path} while the disk is full: {body}");
        assert!(json_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("decision log"));
    }
    assert_eq!(
        upstream.tagged_count(),
        reached,
        "a refused request is not forwarded"
    );

    // Free space: served again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    while Instant::now() < deadline {
        status = http(&admin, "GET", "/_ping").0;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        status,
        200,
        "served again once space is freed; log:\n{}",
        server.log()
    );
    assert!(server.try_wait().is_none(), "the same process serves");
    assert_eq!(http(&admin, "GET", "/containers/json").0, 200);

    // Nothing recorded before is lost, and the chain verifies.
    let after = export(&admin);
    assert!(after.len() > before.len());
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "records from before the full disk are unchanged"
    );
    let load = load_records(&after);
    assert!(
        load.len() as u64 >= upstream.tagged_count(),
        "every forwarded request has its record: {} < {}",
        load.len(),
        upstream.tagged_count()
    );
    let (passed, report) = verify(&server.cli(&["audit", "verify"]));
    assert!(
        passed && report["broken"].is_null(),
        "verify after the full disk: {report}"
    );
    server.kill();
    let data_s = data.display().to_string();
    let (passed, report) = verify(&cli_offline(&["audit", "verify", "--data-dir", &data_s]));
    assert!(passed, "offline verify after the full disk: {report}");
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
// 6. Online verify while the log is being written must not report a false break.
// ---------------------------------------------------------------------------

/// An online verify while records are being written must not report a break
/// (the head is read before the walk).
#[test]
fn online_verify_under_load_reports_no_false_break() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let upstream_sock = dir.path().join("upstream.sock");
    let _upstream = counting_upstream(&rt, &upstream_sock);
    let admin = dir.path().join("admin.sock");
    let server = serve_on(
        &admin,
        &dir.path().join("data"),
        &upstream_sock,
        &[],
        &dir.path().join("serve.log"),
    )
    .start();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats::default());
    let clients = spawn_load(&rt, &admin, 16, stop.clone(), stats.clone(), false);
    while stats.ok.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut false_breaks = Vec::new();
    for _ in 0..20 {
        let (passed, report) = verify(&server.cli(&["audit", "verify"]));
        if !passed {
            false_breaks.push(report["broken"].clone());
        }
    }
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for c in clients {
            let _ = c.await;
        }
    });
    let (passed, report) = verify(&server.cli(&["audit", "verify"]));
    assert!(passed, "verify once the load stopped: {report}");
    assert!(false_breaks.is_empty(), "online verify reported breaks in an intact chain while records were appended: {false_breaks:#?}");
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
