//! Identity sources end to end: bearer tokens sent by the docker CLI through
//! config.json `HttpHeaders`, unix peer uids mapped to callers, unidentified
//! peers, and the credential header never reaching the daemon.

mod common;

use std::process::Command;

use common::*;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_bearer_token_in_http_headers_identifies_the_caller() {
    engine();
    let img = image();
    let p = Proxy::start(&[]);
    ok(&p.cli(&["caller", "add", "ci"]));
    let token = json(&p.cli(&["caller", "token", "ci"]));
    let secret = token["token"]
        .as_str()
        .expect("the token is shown once")
        .to_string();
    // Only the hash is kept: listing callers never shows the secret.
    let callers = ok(&p.cli(&["caller", "list"]));
    assert!(!callers.contains(&secret));
    ok(&p.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=ci",
        "--set",
        "target_container=ci-*",
        "--set",
        "can_stop=true",
    ]));

    let mine = unique("ci");
    let theirs = unique("other");
    let _c = Cleanup(vec![mine.clone(), theirs.clone()]);
    for n in [&mine, &theirs] {
        ok(&direct(&["run", "-d", "--name", n, img, "sleep", "300"]));
    }
    // The docker CLI sends the token with every request through config.json.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({ "HttpHeaders": { "Authorization": format!("Bearer {secret}") } })
            .to_string(),
    )
    .unwrap();
    let docker = |args: &[&str]| {
        Command::new("docker")
            .env("DOCKER_HOST", p.host())
            .env("DOCKER_CONFIG", config.path())
            .args(args)
            .output()
            .unwrap()
    };
    ok(&docker(&["stop", "-t", "1", &mine]));
    let out = docker(&["stop", "-t", "1", &theirs]);
    assert!(
        stderr(&out).contains("portcullis: ci may not container.stop"),
        "{}",
        stderr(&out)
    );

    // A wrong token is refused, never downgraded to the peer's uid (root here).
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({ "HttpHeaders": { "Authorization": "Bearer pcl_wrong" } }).to_string(),
    )
    .unwrap();
    let out = docker(&["ps"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bearer token"), "{}", stderr(&out));

    // The audit record names the token, not its secret.
    let records = ok(&p.cli(&["audit", "query", "--caller", "ci", "--format", "json"]));
    assert!(records.contains("token "), "{records}");
    assert!(!records.contains(&secret));
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn unix_peer_uids_map_to_callers_and_unknown_uids_get_nothing() {
    engine();
    if Command::new("setpriv").arg("--version").output().is_err() {
        panic!("setpriv (util-linux) is required");
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.sock");
    let spec = format!("unix://{}?mode=666", shared.display());
    let p = Proxy::start(&["--listen", &spec]);
    p.wait_for_socket(&shared);
    let config = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        config.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let as_uid = |uid: &str, args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid", uid, "--regid", uid, "--clear-groups", "docker"])
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", shared.display()))
            .env("DOCKER_CONFIG", config.path())
            .env("HOME", config.path())
            .output()
            .unwrap()
    };
    let out = as_uid("4242", &["ps"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("portcullis: unidentified(uid 4242) may not"),
        "{}",
        stderr(&out)
    );

    ok(&p.cli(&["caller", "add", "dashboard", "--uid", "4242"]));
    ok(&p.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=dashboard",
        "--set",
        "target_container=*",
    ]));
    let out = as_uid("4242", &["ps", "--format", "{{.Names}}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_uid("4242", &["network", "create", &unique("nope")]);
    assert!(
        stderr(&out).contains("portcullis: dashboard may not network.create"),
        "{}",
        stderr(&out)
    );
    let records = ok(&p.cli(&[
        "audit",
        "query",
        "--caller",
        "dashboard",
        "--format",
        "json",
    ]));
    assert!(
        records.contains("uid 4242"),
        "the record says how the caller was identified: {records}"
    );
}

/// docker CLI 28 asks for API 1.50; the daemon here speaks 1.41. An
/// unidentified caller's `_ping` is refused, and the CLI negotiates its
/// version from that refusal's `Api-Version` header: it must then be told it
/// is unidentified, not that its API version is out of range.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_unidentified_caller_with_a_newer_cli_is_told_it_is_unidentified() {
    engine();
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let p = Proxy::start(&["--listen", &listen]);
    wait_for_tcp(port, START_LIMIT, || p.log());
    for args in [
        &["ps"][..],
        &["version"][..],
        &["run", "--rm", image(), "true"][..],
    ] {
        let out = p.docker_at(&listen, args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("portcullis: unidentified(127.0.0.1:")
                && err.contains("is not identified"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("outside the supported range"),
            "{args:?}: {err}"
        );
    }
}
