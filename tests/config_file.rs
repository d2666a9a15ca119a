//! `serve --config FILE` with listeners pinned to callers and a declared
//! trust file: the pinned caller works through the real docker CLI at once,
//! with no imperative `trust create`, and a restart changes nothing.

mod common;

use common::*;

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_config_file_and_a_trust_file_make_a_working_deployment() {
    engine();
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let agent_sock = dir.path().join("agent.sock");
    let trust = dir.path().join("trust.yaml");
    std::fs::write(
        &trust,
        "relationships:\n  - caller_service: agent\n    target_container: agent-*\n    can_stop: true\n",
    )
    .unwrap();
    let admin_sock = dir.path().join("admin.sock");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"unix://{}\", \"unix://{}?caller=agent\"]\n\
             trust_file = \"{}\"\ndata-dir = \"{}\"\nmode = \"enforce\"\n",
            admin_sock.display(),
            agent_sock.display(),
            trust.display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let cfg = config.to_string_lossy().to_string();
    let mine = unique("agent");
    let theirs = unique("other");
    let _c = Cleanup(vec![mine.clone(), theirs.clone()]);
    for n in [&mine, &theirs] {
        ok(&direct(&["run", "-d", "--name", n, img, "sleep", "60"]));
    }
    // Started twice on the same data directory: the second start finds the
    // declared trust in place and changes (and records) nothing.
    for round in 0..2 {
        let mut serve = ServeCmd::new()
            .args(&["--config", &cfg])
            .socket(&agent_sock)
            .log(&dir.path().join("serve.log"))
            .start();
        let docker = |args: &[&str]| serve.docker(args);
        let ps = ok(&docker(&["ps", "--format", "{{.Names}}"]));
        assert!(ps.lines().any(|n| n == mine), "round {round}: {ps}");
        assert!(!ps.lines().any(|n| n == theirs), "round {round}: {ps}");
        assert!(
            !docker(&["stop", &theirs]).status.success(),
            "round {round}"
        );
        let out = cli_at(
            &admin_sock,
            &["audit", "query", "--caller", "config", "--format", "json"],
        );
        let records: Vec<serde_json::Value> = serde_json::from_str(&ok(&out)).unwrap();
        assert_eq!(records.len(), 1, "round {round}: {records:?}");
        assert_eq!(records[0]["action"], "trust.write");
        serve.kill();
        // sled releases its lock a moment after the process is gone.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn an_unknown_config_key_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, "listen_on = \"unix:///tmp/x.sock\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown key \"listen_on\""),
        "{}",
        stderr(&out)
    );
}

/// `portcullis init` writes files that `serve --config` takes as they are
/// (here with the socket and data directory moved by flags), and serve tells
/// systemd it is ready on NOTIFY_SOCKET (Type=notify).
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn init_writes_a_config_that_serves_and_readiness_is_notified() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("init")
        .arg(&etc)
        .output()
        .unwrap();
    ok(&out);
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("init")
        .arg(&etc)
        .output()
        .unwrap();
    assert!(!again.status.success(), "init overwrote without --force");

    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let sock = dir.path().join("p.sock");
    let mut serve = ServeCmd::new()
        .arg("--config")
        .arg(etc.join("portcullis.toml"))
        .listen(&sock)
        .data(&dir.path().join("data"))
        .env("NOTIFY_SOCKET", &notify)
        .log(&dir.path().join("serve.log"))
        .spawn();
    let mut buf = [0u8; 256];
    let got = listener.recv(&mut buf);
    let ps = serve.docker(&["ps", "-q"]);
    serve.kill();
    let n = got.expect("a readiness message on NOTIFY_SOCKET");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("READY=1"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    ok(&ps);
}

/// Socket activation: a socket bound by "systemd" (here, the test) and passed
/// as fd 3 by the LISTEN_FDS protocol is served with the `--listen` options of
/// its path (pinned to a caller), and left in place at a clean stop.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn sockets_passed_by_listen_fds_are_served_and_left_in_place() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    engine();
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    let name = unique("activated");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&["run", "-d", "--name", &name, img, "sleep", "60"]));
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        &format!(
            "{}LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" serve --listen \"$1\" --data-dir \"$2\"",
            if fd == 3 {
                String::new()
            } else {
                format!("exec 3<&{fd} {fd}<&-; ")
            }
        ),
        env!("CARGO_BIN_EXE_portcullis"),
        &format!("unix://{}?caller=agent", path.display()),
        &dir.path().join("data").to_string_lossy(),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap());
    // SAFETY: fcntl is async-signal-safe. The listening socket survives the
    // exec of sh, which moves it to fd 3, as systemd passes it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", path.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refused = loop {
        let out = docker(&["stop", &name]);
        let err = stderr(&out);
        if err.contains("portcullis: agent may not") {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{err}\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!refused.status.success());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(path.exists(), "the socket systemd owns was removed");
}
