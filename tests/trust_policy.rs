//! Issue: Rego decisions from trust data. A caller pinned to its own socket,
//! trusted only for some actions on `web-*`, drives the real docker CLI.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A writable copy of the shipped `policies/*.rego`, for `--policies DIR`.
fn copy_of_shipped_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut copied = 0;
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rego") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 0, "no policies found in {}", shipped.display());
    dir
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_caller_trusted_for_start_stop_logs_on_web_star() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("webteam", &[]);
    let label = unique("trust");
    let web = unique("web");
    let db = unique("db");
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    for n in [&web, &db] {
        ok(&direct(&[
            "run",
            "-d",
            "--name",
            n,
            "--label",
            &format!("suite={label}"),
            img,
            "sh",
            "-c",
            "echo hello-from-$HOSTNAME; sleep 300",
        ]));
    }
    let id = trust_create(
        &p,
        &[
            "caller_service=webteam",
            "target_container=web-*",
            "can_start=true",
            "can_stop=true",
            "can_logs=true",
        ],
    );

    // Allowed: stop, logs, start.
    ok(&p.docker_at(&host, &["stop", "-t", "1", &web]));
    assert!(ok(&p.docker_at(&host, &["logs", &web])).contains("hello-from-"));
    ok(&p.docker_at(&host, &["start", &web]));

    // Refused, with the reason.
    refused(
        &p.docker_at(&host, &["exec", &web, "ls"]),
        "webteam may not container.exec",
    );
    refused(
        &p.docker_at(&host, &["stop", &db]),
        "webteam may not container.stop",
    );
    refused(
        &p.docker_at(&host, &["run", "--rm", "--privileged", img, "true"]),
        "may not container.create",
    );

    // docker ps -a lists only web-*.
    let filter = format!("label=suite={label}");
    let names = ok(&p.docker_at(
        &host,
        &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
    ));
    assert_eq!(names.trim(), web, "only web-* is visible");
    // And inspecting a container it may not see looks like it does not exist.
    let out = p.docker_at(&host, &["container", "inspect", &db]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("No such"), "{}", stderr(&out));

    // Granting exec takes effect within a second, without a restart.
    ok(&p.cli(&["trust", "update", &id, "--set", "can_exec=true"]));
    assert!(
        within(Duration::from_secs(1), || p
            .docker_at(&host, &["exec", &web, "ls", "/"])
            .status
            .success()),
        "exec granted"
    );

    // When the grant expires, exec is refused again.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ok(&p.cli(&[
        "trust",
        "update",
        &id,
        "--set",
        &format!("expires_at={soon}"),
    ]));
    ok(&p.docker_at(&host, &["exec", &web, "true"]));
    std::thread::sleep(Duration::from_millis(2200));
    // Expired, the relationship grants nothing, not even inspect: the CLI's
    // first call (inspect) already finds no such container.
    let out = p.docker_at(&host, &["exec", &web, "true"]);
    assert!(!out.status.success(), "exec after expiry must fail");
    assert!(
        stderr(&out).contains(&format!("No such container: {web}")),
        "{}",
        stderr(&out)
    );
    refused(
        &p.docker_at(&host, &["stop", &web]),
        "webteam may not container.stop",
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn hardening_refuses_privileged_create_unless_opted_in() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("builder", &[]);
    let id = trust_create(
        &p,
        &[
            "caller_service=builder",
            "target_container=web-*",
            "can_create=true",
            "can_start=true",
            "can_attach=true",
            "can_remove=true",
            &format!("allowed_images=[\"{img}\"]"),
        ],
    );
    let ok_name = unique("web");
    let bad_name = unique("web");
    let other = unique("web");
    let _c = Cleanup(vec![ok_name.clone(), bad_name.clone(), other.clone()]);
    assert_eq!(
        ok(&p.docker_at(
            &host,
            &["run", "--rm", "--name", &ok_name, img, "echo", "made"]
        )),
        "made\n"
    );
    refused(
        &p.docker_at(
            &host,
            &[
                "run",
                "--rm",
                "--name",
                &bad_name,
                "--privileged",
                img,
                "true",
            ],
        ),
        "rivileged",
    );
    refused(
        &p.docker_at(
            &host,
            &[
                "run",
                "--rm",
                "--name",
                &bad_name,
                "-v",
                "/var/run/docker.sock:/s",
                img,
                "true",
            ],
        ),
        "container.create",
    );
    refused(
        &p.docker_at(
            &host,
            &[
                "run", "--rm", "--name", &bad_name, "--pid", "host", img, "true",
            ],
        ),
        "container.create",
    );
    // An image outside allowed_images is refused.
    let out = p.docker_at(&host, &["create", "--name", &other, "some/other:image"]);
    refused(&out, "container.create");
    // Opting in to privileged makes it pass the policy.
    ok(&p.cli(&["trust", "update", &id, "--set", "allow_privileged=true"]));
    assert!(within(Duration::from_secs(1), || {
        let out = p.docker_at(
            &host,
            &["create", "--name", &bad_name, "--privileged", img, "true"],
        );
        out.status.success()
    }));
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_broken_policy_leaves_enforcement_unchanged_and_check_reports_it() {
    engine();
    let img = image();
    let policies = copy_of_shipped_policies();
    let dir_arg = policies.path().to_string_lossy().to_string();
    let (p, host, _dir) = pinned_proxy("webteam", &["--policies", &dir_arg]);
    let web = unique("web");
    let _c = Cleanup(vec![web.clone()]);
    ok(&direct(&["run", "-d", "--name", &web, img, "sleep", "300"]));
    trust_create(
        &p,
        &[
            "caller_service=webteam",
            "target_container=web-*",
            "can_stop=true",
        ],
    );
    refused(
        &p.docker_at(&host, &["exec", &web, "true"]),
        "container.exec",
    );

    // Save a broken policy: enforcement stays as it was.
    std::fs::write(
        policies.path().join("broken.rego"),
        "package portcullis\n\nthis is not rego {\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    refused(
        &p.docker_at(&host, &["exec", &web, "true"]),
        "container.exec",
    );
    let stats = ok(&p.docker_at(&host, &["inspect", "-f", "{{.Name}}", &web]));
    assert_eq!(stats.trim(), format!("/{web}"));
    let status: serde_json::Value = serde_json::from_str(&ok(&p.cli(&["trust", "list"]))).unwrap();
    assert!(status.is_array());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["policy", "check", "--policies", &dir_arg])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "policy check must fail on a broken file"
    );
    assert!(
        stderr(&out).contains("broken.rego:"),
        "names file and line: {}",
        stderr(&out)
    );

    // The admin API reports the error too.
    let status = get(&p.socket, "/api/v1/policy");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        status.contains("broken.rego"),
        "policy status names the broken file: {status}"
    );
}

/// A GET's whole answer (head and body) as text.
fn get(socket: &Path, path: &str) -> String {
    raw(
        socket,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        std::time::Duration::from_secs(60),
    )
}

#[test]
fn policy_test_passes_on_shipped_policies_and_fails_when_broken() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    for template in ["standard", "strict", "permissive"] {
        let out = std::process::Command::new(bin)
            .args(["policy", "test", "--template", template])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{template}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("PASS"), "{}", stdout(&out));
    }
    let dir = copy_of_shipped_policies();
    let dir_arg = dir.path().to_string_lossy().to_string();
    let out = std::process::Command::new(bin)
        .args(["policy", "test", "--policies", &dir_arg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "copied policies pass: {}",
        stdout(&out)
    );
    // Break one test on purpose.
    std::fs::write(
        dir.path().join("zz_broken_test.rego"),
        "package portcullis_broken_test\n\nimport rego.v1\n\ntest_admin_is_refused if {\n\tdata.portcullis.decision.allowed with input as {\"caller\": {\"admin\": true}}\n\tfalse\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["policy", "test", "--policies", &dir_arg])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a failing test must fail the run: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("test_admin_is_refused"),
        "{}",
        stdout(&out)
    );
}

/// `--network container:X` and `--volumes-from X` are judged by the container
/// the daemon resolves X to. Here the caller may inspect names that look like
/// hex (`[0-9a-f]*`), and X is an id prefix of a container it may not see:
/// the prefix matches the pattern, the container does not.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn container_references_are_judged_by_the_container_the_daemon_picks() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("joiner", &[]);
    trust_create(
        &p,
        &[
            "caller_service=joiner",
            "target_container=[0-9a-f]*",
            "can_create=true",
            "can_remove=true",
            &format!("allowed_images=[\"{img}\"]"),
        ],
    );
    let victim = unique("zz-victim");
    let own = format!("c0ffee-{}", unique("own"));
    let made = unique("c0ffee");
    let _c = Cleanup(vec![victim.clone(), own.clone(), made.clone()]);
    let victim_id = ok(&direct(&["create", "--name", &victim, img, "sleep", "60"]));
    let prefix = &victim_id.trim()[..12];
    ok(&direct(&["create", "--name", &own, img, "sleep", "60"]));
    for how in [
        format!("--network=container:{prefix}"),
        format!("--volumes-from={prefix}"),
    ] {
        refused(
            &p.docker_at(&host, &["create", "--name", &made, &how, img, "true"]),
            &format!("joining or borrowing from container {prefix} is not allowed"),
        );
    }
    // The caller's own container, by name, is fine.
    ok(&p.docker_at(
        &host,
        &[
            "create",
            "--name",
            &made,
            &format!("--volumes-from={own}"),
            img,
            "true",
        ],
    ));
}

/// Policies that parse but that OPA's compiler rejects. Each used to pass
/// `policy check` and hot-reload, then deny every request or drop its rule.
const STATICALLY_BROKEN: &[(&str, &str)] = &[
    (
        "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startswith(input.image, 5)\n}\n",
        "mine.rego:5:33: startswith: argument 2 must be a string, got a number",
    ),
    (
        "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startswith(input.image)\n}\n",
        "mine.rego:5:9: startswith takes 2 arguments, got 1",
    ),
    (
        "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startwith(input.image, \"r/\")\n}\n",
        "mine.rego:5:9: unknown function startwith",
    ),
    (
        "package portcullis\nimport rego.v1\n\ndangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tinput.action == \"image.pull\"\n}\n",
        "mine.rego:4:1: conflicting rules: data.portcullis.dangers",
    ),
    (
        "package portcullis\nimport rego.v1\n\ndecision := {\"allowed\": true, \"reasons\": [\"mine\"], \"trust_id\": null} if {\n\tinput.action == \"image.pull\"\n}\n",
        "mine.rego:4:1: conflicting rules: complete rule data.portcullis.decision",
    ),
];

#[test]
fn policy_check_rejects_what_opa_rejects_with_file_line_and_column() {
    for (text, want) in STATICALLY_BROKEN {
        let dir = copy_of_shipped_policies();
        std::fs::write(dir.path().join("mine.rego"), text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["policy", "check", "--policies"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{want}: {}", stdout(&out));
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
}

/// The same policies saved into a served `--policies` directory: the reload
/// is refused, the previous policy stays in force (the caller keeps its
/// rights) and the admin API names the place.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_hot_reload_that_fails_static_checks_keeps_the_previous_policy() {
    engine();
    let img = image();
    let policies = copy_of_shipped_policies();
    let dir_arg = policies.path().to_string_lossy().to_string();
    let (p, host, _dir) = pinned_proxy("webteam", &["--policies", &dir_arg]);
    let web = unique("web");
    let _c = Cleanup(vec![web.clone()]);
    ok(&direct(&["run", "-d", "--name", &web, img, "sleep", "300"]));
    trust_create(&p, &["caller_service=webteam", "target_container=web-*"]);
    let inspect = || p.docker_at(&host, &["inspect", "-f", "{{.Name}}", &web]);
    assert_eq!(ok(&inspect()).trim(), format!("/{web}"));
    for (text, want) in STATICALLY_BROKEN {
        std::fs::write(policies.path().join("mine.rego"), text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            let status = get(&p.socket, "/api/v1/policy");
            if status.contains(want) || Instant::now() > deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.contains(want), "{want}: {status}");
        assert_eq!(ok(&inspect()).trim(), format!("/{web}"), "{want}");
        std::fs::remove_file(policies.path().join("mine.rego")).unwrap();
    }
}

/// Under `strict`, a glob that matches nearly every name (`??*`, `[!.]*`,
/// `*?`, `*-*`) grants no more than `*`: exec needs a pattern that spells out
/// the names it grants.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn strict_treats_near_universal_globs_as_wildcards() {
    engine();
    let img = image();
    let (p, host, _dir) = pinned_proxy("ops", &["--template", "strict"]);
    let name = unique("svc-web");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&["run", "-d", "--name", &name, img, "sleep", "60"]));
    let mut ids = Vec::new();
    for broad in ["??*", "[!.]*", "*?", "*-*"] {
        ids.push(trust_create(
            &p,
            &[
                "caller_service=ops",
                &format!("target_container={broad}"),
                "can_exec=true",
            ],
        ));
        refused(
            &p.docker_at(&host, &["exec", &name, "true"]),
            "wildcard targets cannot grant it",
        );
        ok(&p.cli(&["trust", "delete", ids.last().unwrap()]));
    }
    // A pattern that spells out the names it grants does grant exec.
    trust_create(
        &p,
        &[
            "caller_service=ops",
            "target_container=svc-*",
            "can_exec=true",
        ],
    );
    ok(&p.docker_at(&host, &["exec", &name, "true"]));
}
