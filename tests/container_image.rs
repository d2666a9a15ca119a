//! The top-level Dockerfile builds here, offline, and the image serves: a
//! non-root process, `docker ps` through its socket, and a HEALTHCHECK that
//! turns healthy by asking the binary itself.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn the_image_builds_offline_runs_as_non_root_and_serves() {
    engine();
    let tag = portcullis_image();
    let run_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        run_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let name = unique("pc-image");
    let _c = Cleanup(vec![name.clone()]);
    let gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap();
    ok(&direct(&[
        "run",
        "-d",
        "--name",
        &name,
        "--group-add",
        &gid.to_string(),
        "--health-interval",
        "1s",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &format!("{}:/run/portcullis", run_dir.path().display()),
        tag,
    ]));
    let socket = run_dir.path().join("portcullis.sock");
    let host = format!("unix://{}", socket.display());
    wait_for_unix(&socket, Duration::from_secs(30), || {
        format!(
            "the image did not listen: {}",
            stderr(&direct(&["logs", &name]))
        )
    });
    // The host's root is an administrator of the proxy (uid 0).
    let ps = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["ps", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert!(ok(&ps).lines().any(|n| n == name), "{}", stdout(&ps));

    let top = ok(&direct(&["top", &name, "-o", "pid,uid,args"]));
    assert!(
        top.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("PID"))
            .all(|l| l.split_whitespace().nth(1) == Some("65532")),
        "not run as the non-root user: {top}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = ok(&direct(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &name,
        ]));
        if status.trim() == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy ({status}): {}",
            ok(&direct(&[
                "inspect",
                "--format",
                "{{json .State.Health}}",
                &name
            ]))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
