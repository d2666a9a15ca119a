//! Issue 18 (security 3, 6, 7): relations between containers through the
//! real docker CLI. Link names (`parent/alias`) reach the daemon whole and a
//! link removal is decided on the parent; a link needs rights on the linked
//! container; alias names never match a caller's patterns; a refusal about a
//! container the caller holds rights on carries its decision id.

mod common;

use std::time::Duration;

use common::*;

#[track_caller]
fn fails_with(out: &std::process::Output, what: &str) {
    assert!(!out.status.success(), "expected a failure: {}", stdout(out));
    let err = stderr(out);
    assert!(err.contains(what), "stderr does not say {what:?}: {err}");
}

/// The links of `container`, as the daemon holds them.
fn links_of(container: &str) -> String {
    ok(&direct(&[
        "inspect",
        "--format",
        "{{json .HostConfig.Links}}",
        container,
    ]))
    .trim()
    .to_string()
}

/// `db` running, and `web` running with `--link db:alias`, made directly.
fn linked_pair(db: &str, web: &str) {
    let img = image();
    ok(&direct(&["run", "-d", "--name", db, img, "sleep", "300"]));
    let link = format!("{db}:alias");
    ok(&direct(&[
        "run", "-d", "--name", web, "--link", &link, img, "sleep", "300",
    ]));
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn link_names_reach_the_daemon_whole() {
    engine();
    let p = Proxy::start(&[]);
    let db = unique("reldb");
    let web = unique("relweb");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    linked_pair(&db, &web);

    // GET /containers/{parent}/{alias}/json names the linked container.
    let link = format!("{web}/alias");
    let name = ok(&p.docker(&["inspect", "--format", "{{.Name}}", &link]));
    assert_eq!(name.trim(), format!("/{db}"));

    // docker rm --link /parent/alias removes the link, as it does direct.
    assert!(links_of(&web).contains("alias"), "{}", links_of(&web));
    ok(&p.docker(&["rm", "--link", &format!("/{link}")]));
    assert!(!links_of(&web).contains("alias"), "{}", links_of(&web));
    assert!(direct(&["inspect", &db]).status.success(), "db stays");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_link_removal_is_decided_on_the_parent() {
    engine();
    let (p, host, _dir) = pinned_proxy("linker", &[]);
    let db = unique("reldb");
    let web = unique("relweb");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    linked_pair(&db, &web);
    let link = format!("{web}/alias");

    // Rights on the linked container do not reach the container the link is in.
    trust_create(
        &p,
        &[
            "caller_service=linker",
            &format!("target_container={db}"),
            "can_remove=true",
            "can_inspect=true",
        ],
    );
    let out = p.docker_at(&host, &["rm", "--link", &link]);
    fails_with(
        &out,
        &format!("portcullis: linker may not container.remove {web}"),
    );
    assert!(links_of(&web).contains("alias"), "{}", links_of(&web));

    // Rights on the parent do.
    trust_create(
        &p,
        &[
            "caller_service=linker",
            &format!("target_container={web}"),
            "can_remove=true",
        ],
    );
    assert!(
        within(Duration::from_secs(2), || p
            .docker_at(&host, &["rm", "--link", &link])
            .status
            .success()),
        "rm --link with can_remove on the parent"
    );
    assert!(!links_of(&web).contains("alias"), "{}", links_of(&web));
    assert!(direct(&["inspect", &db]).status.success(), "db stays");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_link_needs_rights_on_the_linked_container() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("linkmaker", &[]);
    let db = unique("reldb");
    let web = unique("relweb");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    ok(&direct(&[
        "run",
        "-d",
        "--name",
        &db,
        "-e",
        "DB_PASSWORD=hunter2",
        img,
        "sleep",
        "300",
    ]));
    trust_create(
        &p,
        &[
            "caller_service=linkmaker",
            &format!("target_container={web}"),
            "can_create=true",
            &format!("allowed_images=[\"{img}\"]"),
        ],
    );
    let link = format!("{db}:db");
    let create = ["create", "--name", &web, "--link", &link, img, "env"];
    fails_with(
        &p.docker_at(&host, &create),
        &format!("joining or borrowing from container {db} is not allowed"),
    );
    assert!(!direct(&["inspect", &web]).status.success(), "not created");

    // A caller that may inspect the linked container may link to it.
    trust_create(
        &p,
        &[
            "caller_service=linkmaker",
            &format!("target_container={db}"),
            "can_inspect=true",
        ],
    );
    assert!(
        within(Duration::from_secs(2), || p
            .docker_at(&host, &create)
            .status
            .success()),
        "create with a link to an inspectable container"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn alias_names_never_match_name_patterns() {
    engine();
    let (p, host, _dir) = pinned_proxy("aliased", &[]);
    // The daemon lists the linked container as ["/relweb-…/alias", "/zzrel-…"]:
    // the alias sorts first.
    let db = unique("zzrel");
    let web = unique("relweb");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    linked_pair(&db, &web);
    trust_create(
        &p,
        &[
            "caller_service=aliased",
            &format!("target_container={web}*"),
            "can_inspect=true",
            "can_stop=true",
        ],
    );
    for filter in [format!("name={db}"), format!("name={web}")] {
        let names = ok(&p.docker_at(
            &host,
            &[
                "ps",
                "-a",
                "--filter",
                &filter,
                "--format",
                "{{.ID}} {{.Names}}",
            ],
        ));
        assert!(
            !names.contains(&db),
            "{db} is listed through its alias: {names}"
        );
    }
    let names = ok(&p.docker_at(
        &host,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={web}"),
            "--format",
            "{{.Names}}",
        ],
    ));
    assert_eq!(names.trim(), web);
    let alias = format!("{web}/alias");
    fails_with(
        &p.docker_at(&host, &["stop", "-t", "1", &alias]),
        &format!("portcullis: aliased may not container.stop {db}"),
    );
    assert!(
        ok(&direct(&["inspect", "--format", "{{.State.Running}}", &db])).contains("true"),
        "the linked container still runs"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_lookup_looks_like_absence_only_without_any_right() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("execonly", &[]);
    let web = unique("relweb");
    let db = unique("reldb");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    for n in [&web, &db] {
        ok(&direct(&["run", "-d", "--name", n, img, "sleep", "300"]));
    }
    trust_create(
        &p,
        &[
            "caller_service=execonly",
            &format!("target_container={web}"),
            "can_exec=true",
            "can_inspect=false",
        ],
    );
    // A right on the container: portcullis's refusal, with its decision id
    // (the CLI inspects before it execs).
    let out = p.docker_at(&host, &["exec", &web, "true"]);
    fails_with(&out, "portcullis: execonly may not container.inspect");
    fails_with(&out, "(decision ");
    // No right at all: a lookup gets the daemon's absence answer, as for a
    // container that does not exist; any other refusal is portcullis's.
    let missing = unique("relmissing");
    for name in [&db, &missing] {
        fails_with(
            &p.docker_at(&host, &["container", "inspect", name]),
            &format!("No such container: {name}"),
        );
        fails_with(
            &p.docker_at(&host, &["exec", name, "true"]),
            &format!("No such container: {name}"),
        );
    }
    let out = p.docker_at(&host, &["stop", "-t", "1", &db]);
    fails_with(&out, "portcullis: execonly may not container.stop");
    fails_with(&out, "(decision ");
}

/// One request to the API at version 1.41, with a JSON `body` if any:
/// (status, body).
fn http(socket: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut req = request(method, &format!("/v1.41{path}"));
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.as_bytes());
    }
    let answer = req.send(std::path::Path::new(socket));
    (answer.status, answer.text())
}

fn exec_create(socket: &str, container: &str, config: &str) -> String {
    let (status, body) = http(
        socket,
        "POST",
        &format!("/containers/{container}/exec"),
        Some(config),
    );
    assert_eq!(status, 201, "exec create: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_exec_is_started_only_as_it_could_have_been_created() {
    engine();
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let sock = |c: &str| dir.path().join(format!("{c}.sock"));
    let spec = |c: &str| format!("unix://{}?caller={c}", sock(c).display());
    let (spec_a, spec_b) = (spec("execa"), spec("execb"));
    let p = Proxy::start(&["--listen", &spec_a, "--listen", &spec_b]);
    p.wait_for_socket(&sock("execa"));
    p.wait_for_socket(&sock("execb"));
    let (a, b) = (
        sock("execa").display().to_string(),
        sock("execb").display().to_string(),
    );
    let web = unique("relweb");
    let _c = Cleanup(vec![web.clone()]);
    ok(&direct(&["run", "-d", "--name", &web, img, "sleep", "300"]));
    for caller in ["execa", "execb"] {
        trust_create(
            &p,
            &[
                &format!("caller_service={caller}"),
                &format!("target_container={web}"),
                "can_exec=true",
            ],
        );
    }
    let detached = Some(r#"{"Detach":true,"Tty":false}"#);

    // A privileged exec made directly on the daemon: execa may exec into the
    // container, but could not have created this one, so it may not start it.
    let privileged = exec_create(
        "/var/run/docker.sock",
        &web,
        r#"{"Privileged":true,"Cmd":["true"]}"#,
    );
    let (status, body) = http(&a, "POST", &format!("/exec/{privileged}/start"), detached);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("privileged exec is not allowed"), "{body}");
    let (status, body) = http(&a, "GET", &format!("/exec/{privileged}/json"), None);
    assert_eq!(status, 403, "{body}");

    // An exec execa created is execa's alone.
    let mine = exec_create(&a, &web, r#"{"Cmd":["true"]}"#);
    let (status, body) = http(&b, "POST", &format!("/exec/{mine}/start"), detached);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("created by caller execa"), "{body}");
    let (status, body) = http(&a, "POST", &format!("/exec/{mine}/start"), detached);
    assert_eq!(status, 200, "{body}");

    // The docker CLI's exec (create, then start) is unchanged.
    let host_a = format!("unix://{a}");
    ok(&p.docker_at(&host_a, &["exec", &web, "true"]));
}
