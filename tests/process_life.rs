//! Issue 18, "Process life": how `portcullis serve` starts, stops and holds up
//! under clients that misbehave, tried on the real engine with the real docker
//! CLI where a user would meet it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `portcullis serve` this test controls: its own data dir (kept across
/// restarts), signals, exit status.
struct Serve {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, name: &str, extra: &[&str]) -> Serve {
        Serve::start_env(dir, name, extra, &[])
    }

    /// With `PORTCULLIS_*` settings in the environment (as an operator's unit
    /// file would set them).
    fn start_env(dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let socket = dir.join("portcullis.sock");
        let serve = Serve::spawn_env(dir, name, &socket, extra, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not listen; log:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    /// Spawn without waiting for the socket.
    fn spawn(dir: &Path, name: &str, socket: &Path, extra: &[&str]) -> Serve {
        Serve::spawn_env(dir, name, socket, extra, &[])
    }

    fn spawn_env(
        dir: &Path,
        name: &str,
        socket: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let listen = format!("unix://{}", socket.display());
        let data = dir.join(format!("{name}-data"));
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(&data)
            .args(extra)
            .env("PORTCULLIS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn portcullis");
        Serve {
            child,
            socket: socket.to_path_buf(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(args)
            .output()
            .expect("run docker")
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The exit status, if the process ends within `within`.
    fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send raw bytes to a socket; what comes back before the server closes (or 5 s).
fn raw(socket: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGTERM lets the request in flight finish, then the server removes its
/// socket, leaves nothing in the WAL for the next start, and exits 0.
#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_cleanly() {
    if !engine() {
        return;
    }
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), "a", &[]);
    let name = unique("pl-term");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&["run", "-d", "--name", &name, img, "sleep", "2"]));

    // `docker wait` is in flight until the container exits, 2 s from now.
    let waiter = Command::new("docker")
        .env("DOCKER_HOST", serve.host())
        .args(["wait", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    serve.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Stopping, not stopped: the wait is still in flight, and no new
    // request is taken.
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "exited with a request in flight; log:\n{}",
        serve.log()
    );
    assert!(
        !serve.docker(&["version"]).status.success(),
        "a new request was served after SIGTERM"
    );
    let waited = waiter.wait_with_output().unwrap();
    assert_eq!(
        ok(&waited).trim(),
        "0",
        "the request in flight was cut: {}",
        stderr(&waited)
    );
    let status = serve
        .exit_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM; log:\n{}", serve.log()));
    assert_eq!(status.code(), Some(0), "log:\n{}", serve.log());
    assert!(
        !serve.socket.exists(),
        "the socket file was left behind; log:\n{}",
        serve.log()
    );

    // The next start finds the log complete: nothing to replay.
    let again = Serve::start(dir.path(), "a", &[]);
    ok(&again.docker(&["version"]));
    assert!(
        !again.log().contains("audit WAL replayed"),
        "the clean stop left records in the WAL:\n{}",
        again.log()
    );
}

/// SIGINT too; a stream holds the stop until the grace period ends, and a
/// second signal exits at once.
#[test]
fn a_second_signal_exits_at_once_and_the_grace_period_closes_streams() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // Grace over: the stream is closed and the exit is clean.
    let mut serve = Serve::start_env(
        dir.path(),
        "grace",
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "2")],
    );
    let mut events = Command::new("docker")
        .env("DOCKER_HOST", serve.host())
        .args(["events"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let start = Instant::now();
    serve.signal("INT");
    let status = serve
        .exit_within(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "still running after the grace period; log:\n{}",
                serve.log()
            )
        });
    assert_eq!(status.code(), Some(0), "log:\n{}", serve.log());
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "the stream in flight was not given its grace period"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "docker events still connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!serve.socket.exists());

    // A second signal does not wait for the grace period.
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_env(
        dir.path(),
        "twice",
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "60")],
    );
    let mut events = Command::new("docker")
        .env("DOCKER_HOST", serve.host())
        .args(["events"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    serve.signal("TERM");
    assert!(
        serve.exit_within(Duration::from_secs(1)).is_none(),
        "the open stream was not waited for"
    );
    serve.signal("TERM");
    let status = serve
        .exit_within(Duration::from_secs(3))
        .expect("a second signal exits at once");
    assert_ne!(status.code(), Some(0));
    let _ = events.kill();
    let _ = events.wait();
}

/// A second server on a live server's socket is refused and the first keeps
/// serving; a stale socket file is replaced.
#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = Serve::start(dir.path(), "first", &[]);
    let mut second = Serve::spawn(dir.path(), "second", &first.socket, &[]);
    let status = second
        .exit_within(Duration::from_secs(20))
        .expect("the second server must not start");
    assert!(!status.success());
    assert!(
        second.log().contains("another server is listening on"),
        "{}",
        second.log()
    );
    ok(&first.docker(&["version"]));

    // A socket file nobody answers on is stale.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("portcullis.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let serve = Serve::start(dir.path(), "stale", &[]);
    ok(&serve.docker(&["version"]));
}

/// A registry login's `X-Registry-Auth` runs to tens of KiB; Docker accepts
/// 1 MiB of headers, and so must the proxy. The limit is configurable.
#[test]
fn a_45_kb_header_passes_as_it_does_direct() {
    if !engine() {
        return;
    }
    let p = Proxy::start(&[]);
    let big = "a".repeat(45 * 1024);
    std::fs::write(
        p.config_dir.join("config.json"),
        serde_json::json!({ "HttpHeaders": { "X-Registry-Auth": big } }).to_string(),
    )
    .unwrap();
    let direct_big = Command::new("docker")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .env("DOCKER_CONFIG", &p.config_dir)
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    let through = p.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(ok(&through), ok(&direct_big));

    // Over the limit: 431, as configured.
    let small = Proxy::start(&["--max-header-bytes", "16384"]);
    let req = format!(
        "GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let answer = raw(&small.socket, req.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// One caller's idle connections cannot take every slot: past its own limit
/// it is refused, and another caller still gets in.
#[test]
fn one_caller_cannot_take_every_connection() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let slow_sock = dir.path().join("slow.sock");
    let slow = format!("unix://{}?caller=slow", slow_sock.display());
    let p = Serve::start_env(
        dir.path(),
        "slots",
        &["--listen", &slow],
        &[
            ("PORTCULLIS_MAX_CONNECTIONS", "6"),
            ("PORTCULLIS_MAX_CONNECTIONS_PER_CALLER", "3"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&slow_sock).is_err() {
        assert!(Instant::now() < deadline, "slow.sock never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the probes of the start close their slots.
    std::thread::sleep(Duration::from_millis(500));
    // Six connections that never send a request: the slow caller's.
    let mut held: Vec<UnixStream> = (0..6)
        .map(|_| UnixStream::connect(&slow_sock).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..n]);
            if answer.starts_with("HTTP/1.1 503") {
                assert!(answer.contains("too many connections from"), "{answer}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 3, "the slow caller should hold exactly 3");
    // The admin socket's caller is not shut out.
    ok(&p.docker(&["version"]));
    drop(held);
}

/// Connections refused before a request exists are recorded as denials of the
/// caller the connection identifies, counted, and the counts reported at a
/// clean stop.
#[test]
fn refusals_without_a_request_are_recorded_and_counted() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_env(
        dir.path(),
        "count",
        &[],
        &[("PORTCULLIS_MAX_HEADER_BYTES", "16384")],
    );
    let h2 = raw(&serve.socket, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(h2.starts_with("HTTP/1.1 400"), "{h2}");
    let te = raw(
        &serve.socket,
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    );
    assert!(te.starts_with("HTTP/1.1 400"), "{te}");
    let big = format!(
        "GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let big = raw(&serve.socket, big.as_bytes());
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");

    let export = || {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .env("PORTCULLIS_HOST", serve.host())
            .args(["audit", "export"])
            .output()
            .expect("run portcullis audit export")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records: Vec<serde_json::Value> = ok(&export())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &serde_json::Value| {
                r["action"].as_str().is_some_and(|a| a.starts_with("http."))
            })
            .collect();
        if records.len() >= 3 || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["http.h2_preface", "http.head_too_large", "http.malformed"],
        "{records:?}"
    );
    for r in &records {
        assert_eq!(r["allowed"], false, "{r}");
        assert!(
            r["caller"].as_str().is_some_and(|c| !c.is_empty()),
            "no caller: {r}"
        );
    }

    serve.signal("TERM");
    assert_eq!(
        serve
            .exit_within(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    let log = serve.log();
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped cleanly"))
        .unwrap_or_else(|| panic!("no stop line:\n{log}"));
    for counted in ["h2_preface=1", "malformed_head=1", "head_too_large=1"] {
        assert!(stopped.contains(counted), "{counted} missing: {stopped}");
    }
}

/// With the decision log's disk "full" (a reserve larger than the disk),
/// every request is refused; the log says so once, not twice per request.
#[test]
fn a_full_disk_does_not_flood_the_log() {
    if !engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        "full",
        &["--audit-min-free", &(1u64 << 60).to_string()],
    );
    for _ in 0..40 {
        let answer = raw(
            &serve.socket,
            b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
    let log = serve.log();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        (1..=4).contains(&errors),
        "{errors} ERROR lines for 40 refused requests:\n{log}"
    );
}

/// A missing upstream socket is named, with what to check, in the operator's
/// terms (not an internal library's).
#[test]
fn a_missing_upstream_socket_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-dockerd.sock");
    let mut serve = Serve::spawn(
        dir.path(),
        "noup",
        &dir.path().join("p.sock"),
        &["--upstream", &format!("unix://{}", missing.display())],
    );
    let status = serve
        .exit_within(Duration::from_secs(20))
        .expect("serve must refuse to start");
    assert!(!status.success());
    let log = serve.log();
    assert!(log.contains(&missing.display().to_string()), "{log}");
    assert!(log.contains("is dockerd running"), "{log}");
    assert!(log.contains("--upstream"), "{log}");
    assert!(!log.to_lowercase().contains("bollard"), "{log}");
}

/// A hijacked connection (`docker exec -i`) does not hold the stop for the
/// grace period: once the requests in flight are answered it is closed, and
/// the client sees its session end.
#[test]
fn a_stop_closes_hijacked_connections() {
    if !engine() {
        return;
    }
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_env(
        dir.path(),
        "hijack",
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "60")],
    );
    let name = unique("pl-hijack");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&["run", "-d", "--name", &name, img, "sleep", "60"]));
    // `cat` with a stdin that stays open: the session lasts until it is cut.
    let mut session = Command::new("docker")
        .env("DOCKER_HOST", serve.host())
        .args(["exec", "-i", &name, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    stdin.write_all(b"echoed\n").unwrap();
    let mut echoed = [0u8; 7];
    stdout.read_exact(&mut echoed).expect("the session is up");
    assert_eq!(&echoed, b"echoed\n");

    serve.signal("TERM");
    let status = serve
        .exit_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the hijacked session held the stop; log:\n{}", serve.log()));
    assert_eq!(status.code(), Some(0), "log:\n{}", serve.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the exec session is still open");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
}
