//! examples/compose with docker-compose, as an operator runs it: portcullis
//! alone mounts docker.sock; the agent stand-in reaches Docker only through
//! its pinned socket. It lists its own containers, is refused someone
//! else's, and the refusal is in the log.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn the_compose_example_confines_the_agent() {
    engine();
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but docker-compose is missing"
        );
        eprintln!("SKIP: no docker-compose");
        return;
    }
    let img = image();
    let portcullis = portcullis_image();
    let agent_image = docker_cli_image();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose");
    let project = unique("pcx").replace('-', "");
    let gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap();
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .current_dir(&example)
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .env("COMPOSE_PROJECT_NAME", &project)
            .env("PORTCULLIS_IMAGE", portcullis)
            .env("AGENT_IMAGE", agent_image)
            .env("DOCKER_GID", gid.to_string())
            .args(args)
            .output()
            .unwrap()
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "-v", "--remove-orphans"]);
        }
    }
    let _down = Down(&compose);
    let mine = "agent-worker";
    let theirs = unique("someone-else");
    let _c = Cleanup(vec![mine.to_string(), theirs.clone()]);
    let _ = direct(&["rm", "-f", mine]);
    ok(&direct(&["run", "-d", "--name", mine, img, "sleep", "120"]));
    ok(&direct(&[
        "run", "-d", "--name", &theirs, img, "sleep", "120",
    ]));

    ok(&compose(&["up", "-d"]));
    // `up` waits for portcullis to be healthy before it starts the agent.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ps = loop {
        let out = compose(&[
            "exec",
            "-T",
            "agent",
            "docker",
            "ps",
            "--format",
            "{{.Names}}",
        ]);
        if out.status.success() {
            break stdout(&out);
        }
        assert!(
            Instant::now() < deadline,
            "the agent never got through: {} {}",
            stderr(&out),
            stdout(&compose(&["logs"]))
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ps.lines().any(|n| n == mine), "{ps}");
    assert!(ps.lines().any(|n| n == "agent-stand-in"), "{ps}");
    assert!(!ps.lines().any(|n| n == theirs), "{ps}");
    assert!(!ps.lines().any(|n| n.contains("portcullis")), "{ps}");

    let refused = compose(&["exec", "-T", "agent", "docker", "stop", &theirs]);
    assert!(!refused.status.success());
    let said = format!("{}{}", stdout(&refused), stderr(&refused));
    assert!(said.contains("portcullis: agent may not"), "{said}");

    let log = compose(&[
        "exec",
        "-T",
        "portcullis",
        "portcullis",
        "audit",
        "query",
        "--decision",
        "deny",
        "--caller",
        "agent",
        "--format",
        "json",
    ]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&ok(&log)).unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "container.stop" && r["target_name"] == theirs.as_str()),
        "{records:?}"
    );
}
