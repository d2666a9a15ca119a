//! Issue 18, "Process life": how `portcullis serve` starts, stops and holds up
//! under clients that misbehave, tried on the real engine with the real docker
//! CLI where a user would meet it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `portcullis serve` this test controls, in `dir` under `name` (its data
/// dir kept across restarts), with `PORTCULLIS_*` settings in `env` as an
/// operator's unit file would set them.
/// Listening on `socket` (by default `dir/portcullis.sock`).
fn serve_cmd(
    dir: &Path,
    name: &str,
    socket: Option<&Path>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServeCmd {
    let socket = socket.map_or_else(|| dir.join("portcullis.sock"), Path::to_path_buf);
    let cmd = ServeCmd::named(dir, name).listen(&socket).args(extra);
    env.iter().fold(cmd, |cmd, (k, v)| cmd.env(*k, *v))
}

/// Send raw bytes to a socket; what comes back before the server closes (or 5 s).
fn raw(socket: &Path, request: &[u8]) -> String {
    common::raw(socket, request, Duration::from_secs(5))
}

/// SIGTERM lets the request in flight finish, then the server removes its
/// socket, leaves nothing in the WAL for the next start, and exits 0.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn sigterm_finishes_the_request_in_flight_and_exits_cleanly() {
    engine();
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_cmd(dir.path(), "a", None, &[], &[]).start();
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
        serve.try_wait().is_none(),
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
    let again = serve_cmd(dir.path(), "a", None, &[], &[]).start();
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_second_signal_exits_at_once_and_the_grace_period_closes_streams() {
    engine();
    let dir = tempfile::tempdir().unwrap();

    // Grace over: the stream is closed and the exit is clean.
    let mut serve = serve_cmd(
        dir.path(),
        "grace",
        None,
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "2")],
    )
    .start();
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
    let mut serve = serve_cmd(
        dir.path(),
        "twice",
        None,
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "60")],
    )
    .start();
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let first = serve_cmd(dir.path(), "first", None, &[], &[]).start();
    let mut second = serve_cmd(dir.path(), "second", Some(&first.socket), &[], &[]).spawn();
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
    let serve = serve_cmd(dir.path(), "stale", None, &[], &[]).start();
    ok(&serve.docker(&["version"]));
}

/// A registry login's `X-Registry-Auth` runs to tens of KiB; Docker accepts
/// 1 MiB of headers, and so must the proxy. The limit is configurable.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_45_kb_header_passes_as_it_does_direct() {
    engine();
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn one_caller_cannot_take_every_connection() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let slow_sock = dir.path().join("slow.sock");
    let slow = format!("unix://{}?caller=slow", slow_sock.display());
    let p = serve_cmd(
        dir.path(),
        "slots",
        None,
        &["--listen", &slow],
        &[
            ("PORTCULLIS_MAX_CONNECTIONS", "6"),
            ("PORTCULLIS_MAX_CONNECTIONS_PER_CALLER", "3"),
        ],
    )
    .start();
    p.wait_for_socket(&slow_sock);
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn refusals_without_a_request_are_recorded_and_counted() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_cmd(
        dir.path(),
        "count",
        None,
        &[],
        &[("PORTCULLIS_MAX_HEADER_BYTES", "16384")],
    )
    .start();
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_full_disk_does_not_flood_the_log() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let serve = serve_cmd(
        dir.path(),
        "full",
        None,
        &["--audit-min-free", &(1u64 << 60).to_string()],
        &[],
    )
    .start();
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
    let mut serve = serve_cmd(
        dir.path(),
        "noup",
        Some(&dir.path().join("p.sock")),
        &["--upstream", &format!("unix://{}", missing.display())],
        &[],
    )
    .spawn();
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
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_stop_closes_hijacked_connections() {
    engine();
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_cmd(
        dir.path(),
        "hijack",
        None,
        &[],
        &[("PORTCULLIS_SHUTDOWN_GRACE", "60")],
    )
    .start();
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
