//! The watchdog (`serve --watchdog`) against the real engine: a container
//! whose healthcheck fails and that opts in with `portcullis.watchdog=restart`
//! is restarted with growing delays, each restart decided for the caller
//! `watchdog` and recorded, until the limit; then it gives up, says so, and
//! restarts nothing more. Without a grant, the restarts are recorded denials.

mod common;

use std::time::Duration;

use common::audit::export;
use common::*;
use serde_json::Value;

/// A tag whose healthcheck always fails, within about a second.
fn unhealthy_image() -> String {
    derived_image(
        "portcullis-test/busybox:unhealthy",
        &[
            "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false",
            r#"CMD ["sleep", "600"]"#,
        ],
    )
}

fn started_at(name: &str) -> String {
    ok(&direct(&["inspect", "-f", "{{.State.StartedAt}}", name]))
        .trim()
        .to_string()
}

fn run_unhealthy(name: &str, opted_in: bool) {
    let image = unhealthy_image();
    let mut args = vec!["run", "-d", "--name", name];
    if opted_in {
        args.extend(["--label", "portcullis.watchdog=restart"]);
    }
    args.push(&image);
    ok(&direct(&args));
}

/// The watchdog's records about `name`: (action, allowed, reasons).
fn watchdog_records(p: &Proxy, name: &str) -> Vec<Value> {
    export(&p.socket)
        .into_iter()
        .filter(|r| r["caller"] == "watchdog" && r["target_name"] == name)
        .collect()
}

fn restarts(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["action"] == "container.restart")
        .collect()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn an_unhealthy_container_is_restarted_with_growing_delays_until_the_limit() {
    engine();
    let watched = unique("pc-watchdog");
    let ignored = unique("pc-unwatched");
    let _cleanup = Cleanup(vec![watched.clone(), ignored.clone()]);
    let p = Proxy::start(&[
        "--watchdog",
        "--watchdog-delay",
        "0.4",
        "--watchdog-max-restarts",
        "3",
        "--watchdog-window",
        "600",
    ]);
    trust_create(
        &p,
        &[
            "caller_service=watchdog",
            "target_container=label:portcullis.watchdog=restart",
            "can_restart=true",
        ],
    );
    run_unhealthy(&watched, true);
    run_unhealthy(&ignored, false);
    let first_start = started_at(&watched);

    // Three restarts, then the record that it gave up.
    let gave_up = within(Duration::from_secs(90), || {
        watchdog_records(&p, &watched)
            .iter()
            .any(|r| r["action"] == "container.watchdog")
    });
    let records = watchdog_records(&p, &watched);
    assert!(gave_up, "no give-up record within 90 s: {records:#?}");
    let restarted = restarts(&records);
    assert_eq!(restarted.len(), 3, "restarts: {restarted:#?}");
    for r in &restarted {
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(
            r["path"],
            format!("/containers/{}/restart", r["target_id"].as_str().unwrap())
        );
        assert_eq!(r["identified_by"], "built-in watchdog");
    }
    // Each waited 1.5 times as long as the one before: 400, 600, 900 ms.
    for (r, delay) in restarted
        .iter()
        .zip(["after 400 ms", "after 600 ms", "after 900 ms"])
    {
        let reasons = r["reasons"].to_string();
        assert!(reasons.contains(delay), "{delay} not in {reasons}");
    }
    let give_up = records
        .iter()
        .find(|r| r["action"] == "container.watchdog")
        .unwrap();
    assert!(
        give_up["reasons"]
            .to_string()
            .contains("gave up after 3 restarts"),
        "{give_up}"
    );
    assert_ne!(
        started_at(&watched),
        first_start,
        "the container was never restarted"
    );

    // It stops trying: no fourth restart while the container stays unhealthy.
    let after = started_at(&watched);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(restarts(&watchdog_records(&p, &watched)).len(), 3);
    assert_eq!(started_at(&watched), after, "restarted after giving up");

    // A container that did not opt in is left alone, unhealthy as it is.
    assert!(
        watchdog_records(&p, &ignored).is_empty(),
        "the watchdog touched a container without the label"
    );
    let health = ok(&direct(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        &ignored,
    ]));
    assert_eq!(health.trim(), "unhealthy");
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn without_a_grant_the_watchdog_is_refused_and_restarts_nothing() {
    engine();
    let watched = unique("pc-watchdog-denied");
    let _cleanup = Cleanup(vec![watched.clone()]);
    let p = Proxy::start(&["--watchdog", "--watchdog-delay", "0.2"]);
    run_unhealthy(&watched, true);
    let first_start = started_at(&watched);
    let refused = within(Duration::from_secs(30), || {
        restarts(&watchdog_records(&p, &watched))
            .iter()
            .any(|r| r["allowed"] == false)
    });
    assert!(refused, "no refused restart recorded");
    let records = watchdog_records(&p, &watched);
    let denied = restarts(&records)[0];
    assert!(
        denied["reasons"]
            .to_string()
            .contains("caller watchdog has no trust relationship"),
        "{denied}"
    );
    assert_eq!(
        started_at(&watched),
        first_start,
        "restarted without a grant"
    );
}
