//! `/metrics` on its own listener: Prometheus text that a parser reads, whose
//! request counters match the decision log after a scripted docker CLI run.

mod common;

use std::collections::BTreeMap;

use common::*;

/// GET /metrics on the metrics listener: (head, body).
fn scrape(addr: &str) -> (String, String) {
    let answer = request("GET", "/metrics").send_tcp(addr);
    let body = answer.text();
    (answer.head, body)
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn metrics_parse_and_match_the_log() {
    engine();
    let img = image();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let pinned = format!("unix://{}?caller=agent", sock.display());
    let p = Proxy::start(&["--listen", &pinned, "--metrics", &format!("tcp://{addr}")]);
    p.wait_for_socket(&sock);
    let host = format!("unix://{}", sock.display());
    ok(&p.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=agent",
        "--set",
        "target_container=agent-*",
        "--set",
        "can_create=true",
        "--set",
        &format!("allowed_images=[\"{img}\"]"),
    ]));
    let mine = unique("agent");
    let _c = Cleanup(vec![mine.clone()]);
    // A scripted run: allowed and refused requests by the agent.
    ok(&p.docker_at(&host, &["create", "--name", &mine, img, "true"]));
    ok(&p.docker_at(&host, &["ps", "-a"]));
    for _ in 0..3 {
        assert!(!p.docker_at(&host, &["rm", &mine]).status.success());
    }
    assert!(!p
        .docker_at(&host, &["create", "--privileged", img, "true"])
        .status
        .success());

    // What the log says the agent did.
    let records: Vec<serde_json::Value> = serde_json::from_str(&ok(&p.cli(&[
        "audit", "query", "--caller", "agent", "--format", "json", "--limit", "1000",
    ])))
    .unwrap();
    let mut logged: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &records {
        let decision = if r["allowed"] == true {
            "allow"
        } else {
            "deny"
        };
        *logged
            .entry((r["action"].as_str().unwrap().to_string(), decision.into()))
            .or_default() += 1.0;
    }
    assert!(
        logged.contains_key(&("container.remove".into(), "deny".into())),
        "{logged:?}"
    );

    // A connection refused before any request: counted by why.
    raw(
        &p.socket,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        std::time::Duration::from_secs(30),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));

    // An idle connection on the agent's listener, open while we scrape.
    let idle = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (head, body) = scrape(&addr);
    drop(idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let mut counted: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in &parsed.samples {
        if s.metric == "portcullis_requests_total" && s.labels.get("caller") == Some("agent") {
            let v = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            };
            counted.insert(
                (
                    s.labels.get("action").unwrap().to_string(),
                    s.labels.get("decision").unwrap().to_string(),
                ),
                v,
            );
        }
    }
    assert_eq!(counted, logged, "metrics {body}");
    assert!(
        parsed
            .samples
            .iter()
            .any(|s| s.metric == "portcullis_decision_seconds_count"),
        "{body}"
    );
    assert!(body.contains("portcullis_policy_info{version="), "{body}");
    assert!(body.contains("portcullis_open_connections "), "{body}");
    assert!(body.contains("portcullis_upstream_errors_total "), "{body}");
    let h2 = parsed
        .samples
        .iter()
        .find(|s| {
            s.metric == "portcullis_refused_without_request_total"
                && s.labels.get("why") == Some("h2_preface")
        })
        .unwrap_or_else(|| panic!("no h2_preface counter: {body}"));
    assert!(
        matches!(h2.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v >= 1.0),
        "{body}"
    );

    // The log's group commits, lag and disk. The data directory is fresh, so
    // every durable record was appended by this process.
    let value = |metric: &str| {
        let s = parsed
            .samples
            .iter()
            .find(|s| s.metric == metric)
            .unwrap_or_else(|| panic!("no {metric}: {body}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    let appended = value("portcullis_audit_appended_records_total");
    assert!(appended >= records.len() as f64, "{body}");
    assert_eq!(appended, value("portcullis_audit_durable_seq"), "{body}");
    let groups = value("portcullis_audit_group_commits_total");
    assert!(groups >= 1.0 && groups <= appended, "{body}");
    let group_sizes = parsed
        .samples
        .iter()
        .find(|s| s.metric == "portcullis_audit_group_size")
        .unwrap_or_else(|| panic!("no group size histogram: {body}"));
    match &group_sizes.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(all, groups, "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        value("portcullis_audit_durable_lag_records") >= 0.0,
        "{body}"
    );
    assert!(
        value("portcullis_audit_disk_free_bytes") > value("portcullis_audit_disk_reserve_bytes"),
        "{body}"
    );
    assert!(
        parsed
            .samples
            .iter()
            .any(|s| s.metric == "portcullis_audit_append_seconds_count"),
        "{body}"
    );
    let open_on_agent = parsed
        .samples
        .iter()
        .find(|s| {
            s.metric == "portcullis_listener_open_connections"
                && s.labels
                    .get("listener")
                    .is_some_and(|l| l.contains("agent.sock"))
        })
        .unwrap_or_else(|| panic!("no per-listener count for the agent's socket: {body}"));
    assert!(
        matches!(open_on_agent.value, prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) if v >= 1.0),
        "the idle connection is counted: {body}"
    );

    // Nothing else is served there, and the Docker socket has no /metrics.
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&sock)
        .arg("http://d/metrics")
        .output();
    if let Ok(out) = out {
        assert!(
            !stdout(&out).contains("portcullis_requests"),
            "{}",
            stdout(&out)
        );
    }
}

fn counter(body: &str, metric: &str, label: (&str, &str)) -> Option<f64> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).ok()?;
    parsed
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// A hot reload that fails, then one that compiles, are counted by outcome.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn policy_reloads_are_counted() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    ok(
        &std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("init")
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    let policies = dir.path().join("policies");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _p = Proxy::start(&[
        "--policies",
        &policies.to_string_lossy(),
        "--metrics",
        &format!("tcp://{addr}"),
    ]);
    let wait_for = |outcome: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, body) = scrape(&addr);
            let n = counter(
                &body,
                "portcullis_policy_reloads_total",
                ("outcome", outcome),
            );
            if n.is_some_and(|n| n >= 1.0) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{outcome}: {body}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    std::fs::write(policies.join("bad.rego"), "package portcullis\nallow if {").unwrap();
    wait_for("failed");
    std::fs::remove_file(policies.join("bad.rego")).unwrap();
    wait_for("ok");
}
