//! `portcullis doctor`: passes on a healthy setup, and fails with a clear
//! line on each broken one.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::*;

fn doctor(dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("doctor")
        .arg("--listen")
        .arg(format!("unix://{}", dir.join("p.sock").display()))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .output()
        .unwrap()
}

#[track_caller]
fn fails_with(out: &Output, line_start: &str) {
    assert!(!out.status.success(), "doctor passed: {}", stdout(out));
    let text = stdout(out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(line_start) && l.contains("(fix: ")),
        "no line {line_start:?} with a fix in:\n{text}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn doctor_passes_when_healthy_and_names_each_breakage() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let healthy = doctor(dir.path(), &[]);
    assert!(healthy.status.success(), "{}", stdout(&healthy));
    assert!(stdout(&healthy).lines().all(|l| l.starts_with("ok")));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&doctor(dir.path(), &["--format", "json"]))).unwrap();
    assert_eq!(json["healthy"], true);

    // The daemon is down (here: not where --upstream says).
    let down = doctor(
        dir.path(),
        &["--upstream", "unix:///nonexistent/docker.sock"],
    );
    fails_with(&down, "FAIL daemon:");

    // The data directory cannot be written (a file stands where it should be).
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let unwritable = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["doctor", "--data-dir"])
        .arg(blocked.join("data"))
        .output()
        .unwrap();
    fails_with(&unwritable, "FAIL data directory:");

    // A policy does not compile.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("bad.rego"), "package portcullis\nallow if {").unwrap();
    let broken = doctor(dir.path(), &["--policies", &policies.to_string_lossy()]);
    fails_with(&broken, "FAIL policies:");

    // The chain is broken: a bit flipped in a WAL frame of a killed server.
    let mut p = Proxy::start(&[]);
    for _ in 0..20 {
        ok(&p.docker(&["version", "--format", "{{.Server.Version}}"]));
    }
    p.kill();
    let wal = p.dir.path().join("data/audit-wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    let segment = segments.pop().expect("a WAL segment survives the kill");
    let mut bytes = std::fs::read(&segment).unwrap();
    // The first frame's length field (after the 16-byte segment header).
    bytes[16 + 4] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let broken_chain = doctor(p.dir.path(), &[]);
    fails_with(&broken_chain, "FAIL decision log:");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "doctor changed the log"
    );

    // docker.sock is world-writable: anyone bypasses portcullis.
    let fake = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o666)).unwrap();
    let open = doctor(
        dir.path(),
        &["--upstream", &format!("unix://{}", fake.display())],
    );
    fails_with(&open, "FAIL docker.sock:");
    assert!(stdout(&open).contains("chmod 660"), "{}", stdout(&open));
}
