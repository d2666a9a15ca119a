//! Issue 12: update-image and the env patch, through a real `portcullis serve`
//! in front of the real engine, by non-admin callers pinned to their own
//! sockets.
//!
//! The images are tags built offline from the busybox fixture: `v1` (CMD
//! sleep), `v2` (a new label), `exits` (CMD false) and `unhealthy` (a
//! healthcheck that fails). The old container is made without a command of
//! its own, so the new image's CMD is the one that runs. The proxy is started
//! with `--update-timeout 5` so that rollbacks are quick.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use futures_util::future::BoxFuture;
use portcullis::agent::update::carry::Carry;
use portcullis::agent::update::recreate::{self, Ctx, Job, Outcome};
use portcullis::record::{AuditRecord, Record};
use serde_json::{json, Value};

const REPO: &str = "portcullis-test/update";

/// The test tags, built once per test binary.
fn tags() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let v1 = format!("{REPO}:v1");
        derived_image(&v1, &[r#"CMD ["sleep", "600"]"#, "LABEL v=1"]);
        derived_image_from(&v1, &format!("{REPO}:v2"), &["LABEL v=2"]);
        derived_image_from(&v1, &format!("{REPO}:exits"), &[r#"CMD ["false"]"#]);
        let sick = "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false";
        derived_image_from(&v1, &format!("{REPO}:unhealthy"), &[sick]);
        let slow = "HEALTHCHECK --interval=60s --start-period=60s CMD true";
        derived_image_from(&v1, &format!("{REPO}:slow"), &[slow]);
        derived_image_from(&v1, "portcullis-test/not-allowed:v1", &["LABEL v=x"]);
    });
}

/// Removes, pass or fail, every container whose name starts with the test's
/// name (the temporary ones of an update too), with their anonymous volumes,
/// then the test's network and named volume.
struct Leftovers {
    name: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let ids = stdout(&direct(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name={}", self.name),
        ]));
        for id in ids.split_whitespace() {
            let _ = direct(&["rm", "-f", "-v", id]);
        }
        let _ = direct(&["network", "rm", &self.name]);
        let _ = direct(&["network", "rm", &format!("{}-b", self.name)]);
        let _ = direct(&["volume", "rm", "-f", &self.name]);
    }
}

/// A proxy with two pinned callers: `agent` (may update image and env, for
/// images `portcullis-test/update:*`) and `imager` (may update the image
/// only); a running container on a network of its own with an alias, a named
/// volume and an anonymous one, both holding data.
struct Setup {
    proxy: Proxy,
    agent: PathBuf,
    imager: PathBuf,
    name: String,
    old_id: String,
    _leftovers: Leftovers,
    _sockets: tempfile::TempDir,
}

impl Setup {
    fn start(prefix: &str) -> Setup {
        tags();
        let sockets = tempfile::tempdir().unwrap();
        let agent = sockets.path().join("agent.sock");
        let imager = sockets.path().join("imager.sock");
        let spec = |p: &Path, c: &str| format!("unix://{}?caller={c}", p.display());
        let (a, i) = (spec(&agent, "agent"), spec(&imager, "imager"));
        let proxy = Proxy::start(&["--listen", &a, "--listen", &i, "--update-timeout", "5"]);
        proxy.wait_for_socket(&agent);
        proxy.wait_for_socket(&imager);
        let name = unique(prefix);
        let leftovers = Leftovers { name: name.clone() };
        ok(&direct(&["network", "create", &name]));
        ok(&direct(&["volume", "create", &name]));
        let volume = format!("{name}:/data");
        let v1 = format!("{REPO}:v1");
        ok(&direct(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &name,
            "--network-alias",
            "web",
            "-v",
            &volume,
            "-v",
            "/cache",
            "-e",
            "MODE=prod",
            "-e",
            "DROPME=1",
            "--label",
            "team=a",
            "--stop-timeout",
            "1",
            &v1,
        ]));
        let write = "echo kept > /data/f && echo anon > /cache/f";
        ok(&direct(&["exec", &name, "sh", "-c", write]));
        let old_id = inspect(&name)["Id"].as_str().unwrap().to_string();
        let target = format!("target_container={name}");
        let images = format!(r#"allowed_images=["{REPO}:*"]"#);
        trust_create(
            &proxy,
            &[
                "caller_service=agent",
                &target,
                "can_update_image=true",
                "can_update_env=true",
                &images,
            ],
        );
        trust_create(
            &proxy,
            &[
                "caller_service=imager",
                &target,
                "can_update_image=true",
                &images,
            ],
        );
        Setup {
            proxy,
            agent,
            imager,
            name,
            old_id,
            _leftovers: leftovers,
            _sockets: sockets,
        }
    }

    fn update(&self, socket: &Path, body: Value) -> Answer {
        call(
            socket,
            "POST",
            &format!("/api/v1/containers/{}/update-image", self.name),
            body,
        )
    }

    fn patch_env(&self, socket: &Path, body: Value) -> Answer {
        call(
            socket,
            "PATCH",
            &format!("/api/v1/containers/{}/env", self.name),
            body,
        )
    }

    /// Every record of `caller`, oldest first, through the admin API.
    fn audit(&self, caller: &str) -> Vec<Value> {
        let target = format!("/api/v1/trust/audit?caller={caller}&limit=1000&order=oldest");
        let answer = request("GET", &target).send(&self.proxy.socket);
        assert_eq!(answer.status, 200, "audit query: {}", answer.text());
        answer.json()["records"]
            .as_array()
            .expect("records")
            .clone()
    }

    /// The step records of the update whose decision has `request_id`.
    fn steps(&self, caller: &str, request_id: &str) -> Vec<String> {
        self.audit(caller)
            .iter()
            .filter(|r| r["action"] == "container.update_step" && r["request_id"] == request_id)
            .map(|r| r["reasons"][0].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The last decision of `action` by `caller`.
    fn last_decision(&self, caller: &str, action: &str) -> Value {
        self.audit(caller)
            .into_iter()
            .rfind(|r| r["action"] == action)
            .unwrap_or_else(|| panic!("no {action} record for {caller}"))
    }

    /// The old container runs under its own name with its own id, and no
    /// temporary container is left.
    #[track_caller]
    fn assert_old_restored(&self) {
        let c = inspect(&self.name);
        assert_eq!(
            c["Id"],
            self.old_id.as_str(),
            "the old container is back: {c}"
        );
        assert_eq!(c["State"]["Running"], true, "{}", c["State"]);
        let all = stdout(&direct(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name={}", self.name),
        ]));
        assert_eq!(
            all.split_whitespace().collect::<Vec<_>>(),
            vec![self.name.as_str()],
            "leftover containers"
        );
        assert_eq!(exec(&self.name, "cat /data/f /cache/f"), "kept\nanon\n");
    }
}

fn call(socket: &Path, method: &str, target: &str, body: Value) -> Answer {
    request(method, target)
        .header("Content-Type", "application/json")
        .body(body.to_string().as_bytes())
        .timeout(Duration::from_secs(90))
        .send(socket)
}

fn inspect(name: &str) -> Value {
    let out = ok(&direct(&["inspect", name]));
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn exec(name: &str, script: &str) -> String {
    ok(&direct(&["exec", name, "sh", "-c", script]))
}

fn env_of(c: &Value) -> Vec<String> {
    c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn update_to_a_good_tag_keeps_name_config_data_and_aliases() {
    engine();
    let s = Setup::start("upd-good");
    // A second network, joined with a static address.
    let second = format!("{}-b", s.name);
    let ip = (0..20)
        .find_map(|i| {
            let net = (std::process::id() as usize + i * 7) % 250;
            let subnet = format!("10.213.{net}.0/24");
            let made = direct(&["network", "create", "--subnet", &subnet, &second]);
            made.status.success().then(|| format!("10.213.{net}.7"))
        })
        .expect("a free subnet for the second network");
    ok(&direct(&[
        "update",
        "--restart",
        "unless-stopped",
        "--cpu-shares",
        "512",
        &s.name,
    ]));
    ok(&direct(&[
        "network", "connect", "--ip", &ip, "--alias", "web-b", &second, &s.name,
    ]));
    let answer = s.update(
        &s.agent,
        json!({"image": REPO, "tag": "v2", "preserveVolumes": true, "preserveNetworks": true}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["status"], "running");
    assert_eq!(body["image"], format!("{REPO}:v2"));
    assert_eq!(body["oldContainerId"], s.old_id.as_str());
    let new_id = body["newContainerId"].as_str().unwrap().to_string();
    assert_ne!(new_id, s.old_id);

    let c = inspect(&s.name);
    assert_eq!(
        c["Id"],
        new_id.as_str(),
        "the new container has the old name"
    );
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["Config"]["Image"], format!("{REPO}:v2"));
    assert!(
        env_of(&c).contains(&"MODE=prod".to_string()),
        "{:?}",
        env_of(&c)
    );
    assert_eq!(c["Config"]["Labels"]["team"], "a");
    assert_eq!(
        c["Config"]["Labels"]["v"], "2",
        "the new image's label applies"
    );
    assert_eq!(c["Config"]["Cmd"], json!(["sleep", "600"]));
    let aliases = &c["NetworkSettings"]["Networks"][s.name.as_str()]["Aliases"];
    assert!(
        aliases.as_array().unwrap().contains(&json!("web")),
        "aliases: {aliases}"
    );
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["CpuShares"], 512);
    let b = &c["NetworkSettings"]["Networks"][second.as_str()];
    assert_eq!(b["IPAMConfig"]["IPv4Address"], ip.as_str(), "{b}");
    assert_eq!(b["IPAddress"], ip.as_str(), "{b}");
    assert!(
        b["Aliases"].as_array().unwrap().contains(&json!("web-b")),
        "{b}"
    );
    assert_eq!(
        exec(&s.name, "cat /data/f /cache/f"),
        "kept\nanon\n",
        "volume data survives"
    );
    assert!(
        !direct(&["inspect", &s.old_id]).status.success(),
        "the old container is removed"
    );

    // Every step is recorded under the decision's request id.
    let decision = s.last_decision("agent", "container.update_image");
    let request_id = decision["request_id"].as_str().unwrap();
    let steps = s.steps("agent", request_id);
    let seq = decision["seq"].as_u64().unwrap();
    for (i, what) in [
        "image",
        "create new container",
        "connect new container",
        "stop old container",
        "start new container",
        "ready",
        "remove old container",
        "rename new container",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            steps
                .iter()
                .any(|r| r.contains(what) && r.contains(&format!("decided in record {seq}"))),
            "no step {i} ({what}) in {steps:#?}"
        );
    }
    assert!(steps.iter().all(|r| !r.contains("roll back")), "{steps:#?}");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_image_that_exits_at_once_rolls_back() {
    engine();
    let s = Setup::start("upd-exits");
    let answer = s.update(&s.agent, json!({"image": REPO, "tag": "exits"}));
    assert_eq!(answer.status, 502, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], "rolled-back");
    assert_eq!(body["rolledBack"], true);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("exited with code 1 before it was ready"),
        "{error}"
    );
    s.assert_old_restored();
    let decision = s.last_decision("agent", "container.update_image");
    let steps = s.steps("agent", decision["request_id"].as_str().unwrap());
    assert!(
        steps.iter().any(
            |r| r.contains("roll back (the new container exited with code 1")
                && r.contains("remove new container")
        ),
        "{steps:#?}"
    );
    assert!(
        steps.iter().any(|r| r.contains("start old container")),
        "{steps:#?}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_unhealthy_image_rolls_back_and_a_second_update_meanwhile_is_refused() {
    engine();
    let s = Setup::start("upd-sick");
    let (socket, name) = (s.agent.clone(), s.name.clone());
    let first = std::thread::spawn(move || {
        call(
            &socket,
            "POST",
            &format!("/api/v1/containers/{name}/update-image"),
            json!({"image": format!("{REPO}:unhealthy")}),
        )
    });
    // Once the new container exists, the update is in progress.
    let temp = format!("{}-update-", s.name);
    let started = within(Duration::from_secs(30), || {
        stdout(&direct(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name={temp}"),
        ]))
        .contains(&temp)
    });
    assert!(started, "the first update never created its container");
    let second = s.update(&s.agent, json!({"image": REPO, "tag": "v2"}));
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(
        second.message().contains("already in progress"),
        "{}",
        second.text()
    );

    let answer = first.join().unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["status"], "rolled-back");
    assert!(
        body["error"].as_str().unwrap().contains("unhealthy"),
        "{body}"
    );
    s.assert_old_restored();
    // The lock is released: the next update runs.
    let again = s.update(&s.agent, json!({"image": REPO, "tag": "v2"}));
    assert_eq!(again.status, 200, "{}", again.text());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_new_container_not_healthy_in_time_rolls_back() {
    engine();
    let s = Setup::start("upd-slow");
    let started = std::time::Instant::now();
    let answer = s.update(&s.agent, json!({"image": REPO, "tag": "slow"}));
    assert_eq!(answer.status, 502, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["status"], "rolled-back");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("was not healthy within 5.0 s"), "{error}");
    // --update-timeout 5, not the healthcheck's 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    s.assert_old_restored();
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn env_patch_changes_a_variable_and_keeps_the_data() {
    engine();
    let s = Setup::start("upd-env");
    let answer = s.patch_env(
        &s.agent,
        json!({"set": {"MODE": "dev"}, "unset": ["DROPME"]}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["set"], json!(["MODE"]));
    assert_eq!(body["unset"], json!(["DROPME"]));
    let c = inspect(&s.name);
    assert_eq!(c["Id"], body["newContainerId"]);
    assert_ne!(c["Id"], s.old_id.as_str());
    let env = env_of(&c);
    assert!(env.contains(&"MODE=dev".to_string()), "{env:?}");
    assert!(
        !env.iter()
            .any(|e| e.starts_with("MODE=prod") || e.starts_with("DROPME")),
        "{env:?}"
    );
    assert_eq!(c["Config"]["Image"], format!("{REPO}:v1"), "the same image");
    assert_eq!(exec(&s.name, "cat /data/f /cache/f"), "kept\nanon\n");
    assert_eq!(exec(&s.name, "echo $MODE"), "dev\n");

    // A bad patch is refused before anything happens.
    let bad = s.patch_env(&s.agent, json!({"set": {"A": "1"}, "unset": ["A"]}));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.message().starts_with("portcullis: "), "{}", bad.text());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn callers_without_the_right_or_the_image_are_refused() {
    engine();
    let s = Setup::start("upd-deny");
    // No can_update_env: refused, with the decision's id.
    let refused = s.patch_env(&s.imager, json!({"set": {"MODE": "dev"}}));
    assert_eq!(refused.status, 403, "{}", refused.text());
    let message = refused.message();
    let decision = s.last_decision("imager", "container.env_update");
    assert_eq!(decision["allowed"], false);
    let id = format!("(decision {})", decision["seq"]);
    assert!(
        message.starts_with("portcullis: imager may not container.env_update"),
        "{message}"
    );
    assert!(message.contains(&id), "{message} should name {id}");
    // can_update_image, but an image outside allowed_images.
    let refused = s.update(
        &s.imager,
        json!({"image": "portcullis-test/not-allowed", "tag": "v1"}),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.message().contains("container.update_image"),
        "{}",
        refused.text()
    );
    // Nothing changed.
    assert_eq!(inspect(&s.name)["Id"], s.old_id.as_str());
    // The same caller may update to an allowed image.
    let allowed = s.update(&s.imager, json!({"image": format!("{REPO}:v2")}));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_image_that_cannot_be_pulled_changes_nothing() {
    engine();
    let s = Setup::start("upd-pull");
    // Allowed by the glob, absent here, and no registry answers.
    let answer = s.update(&s.agent, json!({"image": REPO, "tag": "missing"}));
    assert!(answer.status >= 400, "{}", answer.text());
    let message = answer.message();
    assert!(
        message.starts_with(&format!("portcullis: the image {REPO}:missing is not present and could not be pulled, so nothing was changed")),
        "{message}"
    );
    s.assert_old_restored();
    let decision = s.last_decision("agent", "container.update_image");
    let steps = s.steps("agent", decision["request_id"].as_str().unwrap());
    assert_eq!(steps.len(), 1, "only the pull was attempted: {steps:#?}");
    assert!(
        steps[0].contains(&format!("pull image {REPO}:missing")),
        "{steps:#?}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_stopped_container_is_recreated_and_left_stopped() {
    engine();
    let s = Setup::start("upd-stopped");
    ok(&direct(&["stop", &s.name]));
    let answer = s.update(
        &s.agent,
        json!({"image": format!("{REPO}:v2"), "preserveNetworks": false}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], "created");
    let c = inspect(&s.name);
    assert_ne!(c["Id"], s.old_id.as_str());
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(c["Config"]["Labels"]["v"], "2");
    let networks = c["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(
        !networks.contains_key(&s.name),
        "preserveNetworks false: {networks:?}"
    );
    // Its volumes are still the old ones.
    ok(&direct(&["start", &s.name]));
    assert_eq!(exec(&s.name, "cat /data/f /cache/f"), "kept\nanon\n");
}

/// A decision log that refuses its `fail_at`-th append (from 1) and keeps
/// the reasons of every append.
struct FlakyLog {
    fail_at: usize,
    seen: Mutex<Vec<String>>,
}

impl Record for FlakyLog {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
        let mut seen = self.seen.lock().unwrap();
        seen.push(record.reasons.join("; "));
        let n = seen.len();
        let answer = if n == self.fail_at {
            Err("disk full".to_string())
        } else {
            Ok(n as u64)
        };
        Box::pin(async move { answer })
    }
}

/// The recreate with a log that fails at step `fail_at`: the outcome and
/// the reasons appended.
fn recreate_with_flaky_log(name: &str, fail_at: usize) -> (Outcome, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_unix(
            "/var/run/docker.sock",
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let old = docker.inspect_container(name, None).await.unwrap();
        let log = std::sync::Arc::new(FlakyLog {
            fail_at,
            seen: Mutex::new(Vec::new()),
        });
        let ctx = Ctx {
            docker,
            recorder: log.clone(),
            base: AuditRecord::default(),
            decision_id: 7,
            ready_timeout: Duration::from_secs(5),
        };
        let job = Job {
            old,
            image: format!("{REPO}:v2"),
            carry: Carry {
                volumes: true,
                networks: true,
            },
            env: None,
            what: "update",
        };
        let outcome = recreate::run(&ctx, job).await;
        let seen = log.seen.lock().unwrap().clone();
        (outcome, seen)
    })
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_step_that_cannot_be_recorded_is_not_taken() {
    engine();
    let s = Setup::start("upd-unrecorded");
    // Step 1 (the image) unrecorded: nothing happens at all.
    let (outcome, seen) = recreate_with_flaky_log(&s.name, 1);
    match outcome {
        Outcome::NothingChanged { status, message } => {
            assert_eq!(status, 503);
            assert!(
                message.contains("could not be recorded: disk full"),
                "{message}"
            );
        }
        other => panic!("expected nothing changed, got {other:?}"),
    }
    assert_eq!(seen.len(), 1, "{seen:#?}");
    s.assert_old_restored();
    // Step 4 (start the new container) unrecorded, after the old one was
    // stopped (step 3); then step 6 (remove the old one), after the new one
    // ran: each time the new one is never kept and the old one runs again.
    for fail_at in [4, 6] {
        let (outcome, seen) = recreate_with_flaky_log(&s.name, fail_at);
        match outcome {
            Outcome::RolledBack { error, .. } => {
                assert!(
                    error.contains("could not be recorded: disk full"),
                    "{error}"
                )
            }
            other => panic!("step {fail_at}: expected a rollback, got {other:?}"),
        }
        assert!(
            seen[..fail_at]
                .iter()
                .all(|r| r.contains("decided in record 7")),
            "{seen:#?}"
        );
        let after = &seen[fail_at..];
        assert!(
            after
                .iter()
                .any(|r| r.contains("roll back") && r.contains("remove new container")),
            "{seen:#?}"
        );
        assert!(
            after
                .iter()
                .any(|r| r.contains("roll back") && r.contains("start old container")),
            "{seen:#?}"
        );
        assert!(!seen.iter().any(|r| r.contains("rename")), "{seen:#?}");
        s.assert_old_restored();
    }
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_container_started_with_rm_is_not_updated() {
    engine();
    let s = Setup::start("upd-rm");
    ok(&direct(&["rm", "-f", &s.name]));
    let v1 = format!("{REPO}:v1");
    ok(&direct(&["run", "-d", "--rm", "--name", &s.name, &v1]));
    let id = inspect(&s.name)["Id"].as_str().unwrap().to_string();
    let answer = s.update(&s.agent, json!({"image": REPO, "tag": "v2"}));
    assert_eq!(answer.status, 409, "{}", answer.text());
    assert!(answer.message().contains("--rm"), "{}", answer.text());
    let c = inspect(&s.name);
    assert_eq!(
        (c["Id"].as_str(), &c["State"]["Running"]),
        (Some(id.as_str()), &json!(true))
    );
}
