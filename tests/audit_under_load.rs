//! Issue 4, "The decision log: append-only, hash-chained, durable before
//! forwarding", under load (see audit_acceptance.rs for the rest):
//!
//! 3. kill -9 under load: every request that reached the upstream has its record;
//! 4. a full disk refuses requests with a 503 in Docker's format, and service
//!    resumes without a restart once space is freed, losing nothing;
//! 6. online verify while the log is being written reports no false break.
//!
//! They run against an in-process upstream and need no Docker daemon.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use common::audit::{
    cli_offline, counting_upstream, export, http, json_of, runtime, serve_on, verify, LOAD_AGENT,
};
use common::stderr;

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
