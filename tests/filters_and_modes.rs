//! Response filtering (events, inspect secrets) and dry-run mode, through the
//! real docker CLI.

mod common;

use common::*;

fn pinned(p_extra: &[&str], caller: &str) -> (Proxy, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let spec = format!("unix://{}?caller={caller}", sock.display());
    let mut args = vec!["--listen", spec.as_str()];
    args.extend_from_slice(p_extra);
    let p = Proxy::start(&args);
    p.wait_for_socket(&sock);
    (p, format!("unix://{}", sock.display()), dir)
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn events_show_only_visible_containers_and_secrets_are_redacted() {
    engine();
    let img = image();
    let (p, host, _d) = pinned(&[], "watcher");
    ok(&p.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=watcher",
        "--set",
        "target_container=web-*",
        "--set",
        r#"resources={"system":{"read":true}}"#,
    ]));
    let web = unique("web");
    let db = unique("db");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    let since = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1)
    .to_string();
    for n in [&web, &db] {
        ok(&direct(&[
            "run",
            "-d",
            "--name",
            n,
            "-e",
            "DB_PASSWORD=hunter2",
            "-e",
            "PLAIN=visible",
            img,
            "sleep",
            "300",
        ]));
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let fmt = "{{.Type}} {{.Actor.Attributes.name}}";
    let events = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        fmt,
    ];
    let all = ok(&direct(&events));
    assert!(
        all.contains(&db) && all.contains(&web),
        "directly, both appear: {all}"
    );
    let seen = ok(&p.docker_at(&host, &events));
    assert!(
        seen.contains(&web),
        "the caller sees its own container's events: {seen}"
    );
    assert!(!seen.contains(&db), "and nothing of the others: {seen}");

    let env = ok(&p.docker_at(
        &host,
        &["container", "inspect", "-f", "{{json .Config.Env}}", &web],
    ));
    assert!(env.contains("PLAIN=visible"), "{env}");
    assert!(
        !env.contains("hunter2"),
        "secret values are redacted: {env}"
    );
    assert!(env.contains("DB_PASSWORD="), "the name stays: {env}");
    let env = ok(&p.docker(&["container", "inspect", "-f", "{{json .Config.Env}}", &web]));
    assert!(
        env.contains("hunter2"),
        "the administrator sees everything: {env}"
    );

    // An explicit right lifts the redaction.
    let list: serde_json::Value = serde_json::from_str(&ok(&p.cli(&["trust", "list"]))).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    ok(&p.cli(&["trust", "update", &id, "--set", "can_see_secrets=true"]));
    let env = ok(&p.docker_at(
        &host,
        &["container", "inspect", "-f", "{{json .Config.Env}}", &web],
    ));
    assert!(
        env.contains("hunter2"),
        "can_see_secrets shows the values: {env}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn audit_only_mode_records_refusals_but_enforces_nothing() {
    engine();
    let img = image();
    let (p, host, _d) = pinned(&["--mode", "audit-only"], "rollout");
    let name = unique("db");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&[
        "run", "-d", "--name", &name, img, "sleep", "300",
    ]));
    // No trust at all, yet the request goes through...
    ok(&p.docker_at(&host, &["stop", "-t", "1", &name]));
    let state = ok(&direct(&["inspect", "-f", "{{.State.Running}}", &name]));
    assert_eq!(state.trim(), "false");
    // ...and the log says it would have been refused.
    let out = ok(&p.cli(&[
        "audit",
        "query",
        "--caller",
        "rollout",
        "--action",
        "container.stop",
        "--format",
        "json",
    ]));
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &records.as_array().expect("a JSON array")[0];
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["enforced"], false, "{r}");
    assert!(!r["reasons"].as_array().unwrap().is_empty());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn audit_fsync_and_reserve_flags_serve_and_verify() {
    engine();
    let p = Proxy::start(&["--audit-fsync", "--audit-min-free", "1048576"]);
    ok(&p.docker(&["version"]));
    let out = ok(&p.cli(&[
        "audit",
        "query",
        "--action",
        "system.version",
        "--format",
        "json",
    ]));
    assert!(out.contains("system.version"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&ok(&p.cli(&["audit", "verify"]))).unwrap();
    assert!(report["broken"].is_null(), "{report}");
    assert!(report["checked"].as_u64().unwrap() >= 2, "{report}");
}
