//! `portcullis container …` against the real engine, through a running
//! server, as an operator or a script uses it: each command is a request on
//! the caller's socket, decided and recorded like any other.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Tags of the fixture image: one that runs, one whose container exits at once.
fn tags() -> (String, String) {
    let good = derived_image(
        "portcullis-test/cli:good",
        &[r#"CMD ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.3; done"]"#],
    );
    let bad = derived_image("portcullis-test/cli:bad", &[r#"CMD ["false"]"#]);
    (good, bad)
}

/// A proxy, a socket pinned to caller `ops` with the agent rights on `name`,
/// and the container, started from the good tag.
fn setup(name: &str) -> (Proxy, std::path::PathBuf, tempfile::TempDir) {
    let (good, _) = tags();
    let (p, _host, dir) = pinned_proxy("ops", &[]);
    let socket = dir.path().join("ops.sock");
    trust_create(
        &p,
        &[
            "caller_service=ops",
            &format!("target_container={name}"),
            "can_update_image=true",
            "can_update_env=true",
            "can_logs=true",
            "allowed_images=[\"portcullis-test/cli:*\"]",
        ],
    );
    ok(&direct(&[
        "run", "-d", "--name", name, "-e", "MODE=one", &good,
    ]));
    (p, socket, dir)
}

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", stdout(out), stderr(out)))
}

fn id_of(name: &str) -> String {
    ok(&direct(&["inspect", "-f", "{{.Id}}", name]))
        .trim()
        .to_string()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn update_image_and_env_from_the_command_line() {
    engine();
    let name = unique("pc-cli");
    let _cleanup = Cleanup(vec![name.clone()]);
    let (_p, socket, _dir) = setup(&name);
    let (good, bad) = tags();
    let old = id_of(&name);

    // A tag whose container exits at once: rolled back, exit 1, and says so.
    let (image, tag) = bad.split_once(':').unwrap();
    let out = cli_at(
        &socket,
        &[
            "container",
            "update-image",
            &name,
            "--image",
            image,
            "--tag",
            tag,
        ],
    );
    assert!(
        !out.status.success(),
        "a rolled-back update exited 0: {}",
        stdout(&out)
    );
    let answer = json_out(&out);
    assert_eq!(answer["rolledBack"], true, "{answer}");
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(
        id_of(&name),
        old,
        "the old container is not back under its name"
    );

    // The good tag again: a new container under the same name.
    let out = cli_at(
        &socket,
        &["container", "update-image", &name, "--image", &good],
    );
    let answer = json_out(&out);
    assert!(out.status.success(), "{answer} / {}", stderr(&out));
    assert_eq!(answer["success"], true);
    assert_eq!(answer["oldContainerId"], old.as_str());
    let new = id_of(&name);
    assert_ne!(new, old);
    assert_eq!(answer["newContainerId"], new.as_str());

    // An env change: recreated with MODE=two, and the command says so.
    let out = cli_at(&socket, &["container", "env", &name, "--set", "MODE=two"]);
    let answer = json_out(&out);
    assert!(out.status.success(), "{answer} / {}", stderr(&out));
    let env = ok(&direct(&["inspect", "-f", "{{json .Config.Env}}", &name]));
    let after_env = id_of(&name);
    assert!(
        env.contains("MODE=two") && !env.contains("MODE=one"),
        "{env}"
    );

    // A refusal is an error with the server's message and a non-zero exit.
    let out = cli_at(
        &socket,
        &["container", "update-image", &name, "--image", IMAGE],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("allowed_images"), "{}", stderr(&out));
    assert_eq!(
        id_of(&name),
        after_env,
        "a refused update changed the container"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn logs_follow_prints_lines_as_the_container_writes_them() {
    engine();
    let name = unique("pc-cli-logs");
    let _cleanup = Cleanup(vec![name.clone()]);
    let (_p, socket, _dir) = setup(&name);
    // --tail: the last lines only, then the end.
    let out = cli_at(&socket, &["container", "logs", &name, "--tail", "2"]);
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 2 && !lines.is_empty(), "{text:?}");
    assert!(lines.iter().all(|l| l.starts_with("line-")), "{text:?}");

    // -f: a line written after the command started arrives while it runs.
    let mut child = Command::new(BIN)
        .env("PORTCULLIS_HOST", format!("unix://{}", socket.display()))
        .args(["container", "logs", &name, "-f", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis container logs -f");
    let started = Instant::now();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).expect("a line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("line-"), "{first:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the first followed line took {:?}",
        started.elapsed()
    );
}
