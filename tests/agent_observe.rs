//! Issue 12, the observing half of the agent controls: env read, health,
//! stats, logs and events as Server-Sent Events. Everything runs through a
//! real `portcullis serve` in front of the real engine, as the pinned caller
//! `watcher`, whose trust names `{prefix}-web-*` (and, in some tests,
//! `{prefix}-ro-*` with fewer rights); `{prefix}-db-*` is someone else's.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REDACTED: &str = "<redacted by portcullis>";

/// A proxy, the caller `watcher`'s socket, and this test's name prefix.
struct Setup {
    proxy: Proxy,
    watcher: PathBuf,
    prefix: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(extra: &[&str], trusts: &[&[&str]]) -> Setup {
        let prefix = unique("obs");
        let (proxy, host, dir) = pinned_proxy("watcher", extra);
        let watcher = PathBuf::from(host.strip_prefix("unix://").unwrap());
        for t in trusts {
            let mut sets = vec!["caller_service=watcher".to_string()];
            sets.extend(t.iter().map(|s| s.replace("{p}", &prefix)));
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            trust_create(&proxy, &sets);
        }
        Setup {
            proxy,
            watcher,
            prefix,
            _dir: dir,
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn admin(&self) -> &Path {
        &self.proxy.socket
    }
}

fn get(socket: &Path, target: &str) -> Answer {
    request("GET", target).send(socket)
}

#[track_caller]
fn get_json(socket: &Path, target: &str) -> Value {
    let a = get(socket, target);
    assert_eq!(a.status, 200, "GET {target}: {}", a.text());
    a.json()
}

/// `docker run -d` straight at the daemon; removed by the returned guard's owner.
fn run(name: &str, args: &[&str]) {
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    ok(&direct(&all));
}

/// The fixture with a HEALTHCHECK that passes every second (built offline, once).
fn healthcheck_image() -> &'static str {
    const TAG: &str = "portcullis-test/busybox:healthcheck";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        derived_image(
            TAG,
            &[
                "HEALTHCHECK --interval=1s --timeout=2s CMD true",
                r#"CMD ["sleep", "600"]"#,
            ],
        );
    });
    TAG
}

/// One SSE answer read as it arrives (the chunked framing undone).
struct Sse {
    stream: UnixStream,
    raw: Vec<u8>,
    /// The de-chunked body so far.
    body: String,
    pub head: String,
    done: bool,
}

impl Sse {
    fn open(socket: &Path, target: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = UnixStream::connect(socket).unwrap();
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: portcullis\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut s = Sse {
            stream,
            raw: Vec::new(),
            body: String::new(),
            head: String::new(),
            done: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.head.is_empty() {
            assert!(Instant::now() < deadline, "no answer head");
            s.read_some();
            if let Some(i) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                s.head = String::from_utf8_lossy(&s.raw[..i]).into_owned();
                s.raw.drain(..i + 4);
            }
        }
        s
    }

    fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) => self.done = true,
            Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => self.done = true,
        }
        if !self.head.is_empty() {
            self.dechunk();
        }
    }

    fn dechunk(&mut self) {
        while let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..i]).unwrap(), 16)
                .expect("chunk size");
            if size == 0 {
                self.done = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < i + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[i + 2..i + 2 + size].to_vec();
            self.body.push_str(&String::from_utf8_lossy(&chunk));
            self.raw.drain(..i + 2 + size + 2);
        }
    }

    /// Read until `f(body)` holds or `limit` passes; whether it held.
    fn until(&mut self, limit: Duration, f: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if f(&self.body) {
                return true;
            }
            if self.done || Instant::now() > deadline {
                return false;
            }
            self.read_some();
        }
    }

    /// Read to the end of the answer (within `limit`).
    fn until_end(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.done && Instant::now() < deadline {
            self.read_some();
        }
        self.done
    }

    /// The events so far: (event, id, data) of each complete one.
    fn events(&self) -> Vec<(String, Option<String>, Value)> {
        parse_events(&self.body)
    }
}

fn parse_events(body: &str) -> Vec<(String, Option<String>, Value)> {
    let mut out = Vec::new();
    let complete = match body.rfind("\n\n") {
        Some(i) => &body[..i + 2],
        None => return out,
    };
    for block in complete.split("\n\n") {
        let (mut event, mut id, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).expect("data is JSON"));
            }
        }
        if let (Some(e), Some(d)) = (event, data) {
            out.push((e, id, d));
        }
    }
    out
}

fn logs_of(events: &[(String, Option<String>, Value)]) -> Vec<(String, Value)> {
    events
        .iter()
        .filter(|(e, _, _)| e == "log")
        .map(|(_, id, d)| (id.clone().expect("a log event has an id"), d.clone()))
        .collect()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn env_shows_plain_values_and_redacts_secrets() {
    engine();
    let img = image();
    let s = Setup::start(&[], &[&["target_container={p}-web-*"]]);
    let (web, db) = (s.name("web-1"), s.name("db-1"));
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    let env = [
        "-e",
        "PLAIN=visible",
        "-e",
        "DB_PASSWORD=hunter2",
        "-e",
        "GH_API_KEY=k3y",
        "-e",
        "SMTP_PASS=pa55",
        "-e",
        "AWS_SECRET_ACCESS_KEY=aws",
    ];
    for n in [&web, &db] {
        let mut args = env.to_vec();
        args.extend([img, "sleep", "300"]);
        run(n, &args);
    }
    let path = format!("/api/v1/containers/{web}/env");
    let v = get_json(&s.watcher, &path);
    assert_eq!(v["PLAIN"], "visible", "{v}");
    assert!(v["PATH"].is_string(), "the image's own variables too: {v}");
    for k in [
        "DB_PASSWORD",
        "GH_API_KEY",
        "SMTP_PASS",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert_eq!(v[k], REDACTED, "{k} is redacted: {v}");
    }
    assert!(!v.to_string().contains("hunter2"), "{v}");

    let admin = get_json(s.admin(), &path);
    assert_eq!(
        admin["DB_PASSWORD"], "hunter2",
        "the administrator sees all: {admin}"
    );
    assert_eq!(admin["SMTP_PASS"], "pa55");

    // Someone else's container: refused, in Docker's error shape.
    let other = get(&s.watcher, &format!("/api/v1/containers/{db}/env"));
    assert_eq!(other.status, 403, "{}", other.text());
    assert!(
        other.message().starts_with("portcullis: "),
        "{}",
        other.text()
    );
    let missing = get(
        s.admin(),
        &format!("/api/v1/containers/{}/env", s.name("nope")),
    );
    assert_eq!(missing.status, 404, "{}", missing.text());

    // can_see_secrets lifts the redaction.
    let list: Value = serde_json::from_str(&ok(&s.proxy.cli(&["trust", "list"]))).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    ok(&s
        .proxy
        .cli(&["trust", "update", &id, "--set", "can_see_secrets=true"]));
    assert!(
        within(Duration::from_secs(10), || {
            get_json(&s.watcher, &path)["DB_PASSWORD"] == "hunter2"
        }),
        "can_see_secrets shows the values: {}",
        get(&s.watcher, &path).text()
    );
}

/// Every field of a summary entry, with its type.
#[track_caller]
fn assert_entry_shape(c: &Value, with_resources: bool) {
    assert!(c["id"].as_str().is_some_and(|s| s.len() == 64), "id: {c}");
    for k in ["name", "image", "status", "health"] {
        assert!(c[k].is_string(), "{k}: {c}");
    }
    assert!(
        matches!(
            c["health"].as_str().unwrap(),
            "healthy" | "unhealthy" | "starting" | "none"
        ),
        "{c}"
    );
    let uptime = c["uptime"].as_str().expect("uptime");
    assert!(
        uptime.ends_with('s') && uptime.chars().next().unwrap().is_ascii_digit(),
        "uptime like 2h30m15s: {uptime}"
    );
    assert!(c["labels"].is_object(), "{c}");
    assert!(c.get("lastHealthCheck").is_some(), "{c}");
    if with_resources {
        let r = &c["resources"];
        for k in [
            "cpuPercent",
            "memoryUsageMB",
            "memoryLimitMB",
            "memoryPercent",
            "networkRxMB",
            "networkTxMB",
            "blockReadMB",
            "blockWriteMB",
        ] {
            assert!(r[k].is_number(), "{k}: {r}");
        }
        assert!(r["pids"].as_u64().is_some_and(|n| n >= 1), "pids: {r}");
        assert!(r["memoryLimitMB"].as_f64().unwrap() > 0.0, "{r}");
    } else {
        assert!(
            c["resources"].is_null(),
            "no stats right, no resources: {c}"
        );
    }
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn health_summary_detail_and_stats() {
    engine();
    let img = image();
    let hc = healthcheck_image();
    let s = Setup::start(
        &[],
        &[
            &["target_container={p}-web-*"],
            &["target_container={p}-ro-*", "can_stats=false"],
        ],
    );
    let (web1, web2, ro, db) = (
        s.name("web-1"),
        s.name("web-2"),
        s.name("ro-1"),
        s.name("db-1"),
    );
    let _c = Cleanup(vec![web1.clone(), web2.clone(), ro.clone(), db.clone()]);
    run(&web1, &["--label", "tier=web", "--label", "team=a", hc]);
    run(&web2, &["--label", "tier=api", img, "sleep", "300"]);
    run(&ro, &[img, "sleep", "300"]);
    run(&db, &["--label", "tier=web", img, "sleep", "300"]);

    // The healthcheck runs every second: wait for a logged, healthy check.
    let detail_path = format!("/api/v1/containers/{web1}/health");
    assert!(
        within(Duration::from_secs(30), || {
            let v = get_json(&s.watcher, &detail_path);
            v["health"] == "healthy" && v["log"].as_array().is_some_and(|l| !l.is_empty())
        }),
        "web-1 never became healthy: {}",
        get(&s.watcher, &detail_path).text()
    );

    let v = get_json(&s.watcher, "/api/v1/containers/health");
    assert!(v["timestamp"].is_string(), "{v}");
    let list = v["containers"].as_array().expect("containers");
    assert_eq!(v["total"].as_u64(), Some(list.len() as u64), "{v}");
    assert!(v["healthy"].is_u64() && v["unhealthy"].is_u64(), "{v}");
    let find = |n: &str| list.iter().find(|c| c["name"] == n).cloned();
    let e1 = find(&web1).expect("web-1 is listed");
    assert_entry_shape(&e1, true);
    assert_eq!(e1["health"], "healthy");
    assert_eq!(e1["labels"], json!({"team": "a", "tier": "web"}));
    assert!(e1["lastHealthCheck"].is_string(), "{e1}");
    assert_entry_shape(&find(&web2).expect("web-2 is listed"), true);
    assert_eq!(find(&web2).unwrap()["health"], "none");
    assert_entry_shape(&find(&ro).expect("ro-1 is listed"), false);
    assert!(
        find(&db).is_none(),
        "someone else's container is absent: {v}"
    );
    assert!(
        list.iter()
            .all(|c| c["name"].as_str().unwrap().starts_with(&s.prefix)),
        "only what the caller may inspect: {v}"
    );

    // The administrator sees them all.
    let all = get_json(s.admin(), "/api/v1/containers/health");
    assert!(all.to_string().contains(&db), "{all}");

    // Label filters: all must match; a key alone means "has it".
    let names = |target: &str| -> Vec<String> {
        let v = get_json(&s.watcher, target);
        v["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("/api/v1/containers/health?label=tier=web"),
        vec![web1.clone()]
    );
    let mut tiered = names("/api/v1/containers/health?label=tier");
    tiered.sort();
    assert_eq!(tiered, vec![web1.clone(), web2.clone()]);
    assert_eq!(
        names("/api/v1/containers/health?label=tier=web&label=team=b"),
        Vec::<String>::new()
    );

    // A stopped container is listed only with all=true.
    ok(&direct(&["stop", "-t", "0", &web2]));
    assert!(!names("/api/v1/containers/health").contains(&web2));
    let stopped = get_json(&s.watcher, "/api/v1/containers/health?all=true");
    let e2 = stopped["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == web2.as_str())
        .cloned()
        .expect("all=true lists a stopped container");
    assert_eq!(e2["status"], "exited");
    assert!(e2["uptime"].is_null(), "{e2}");

    // One container's detail: the healthcheck and its log.
    let d = get_json(&s.watcher, &detail_path);
    assert_entry_shape(&d, true);
    assert_eq!(
        d["healthcheck"]["test"],
        json!(["CMD-SHELL", "true"]),
        "{d}"
    );
    assert_eq!(d["healthcheck"]["interval"], 1_000_000_000u64, "{d}");
    let entry = &d["log"][0];
    for k in ["start", "end", "output"] {
        assert!(entry[k].is_string(), "{k}: {d}");
    }
    assert_eq!(entry["exitCode"], 0, "{d}");
    assert_eq!(d["failingStreak"], 0);
    assert_eq!(d["restartCount"], 0);
    let ro_detail = get_json(&s.watcher, &format!("/api/v1/containers/{ro}/health"));
    assert!(ro_detail["resources"].is_null(), "{ro_detail}");
    assert!(ro_detail["healthcheck"].is_null(), "{ro_detail}");
    let refused = get(&s.watcher, &format!("/api/v1/containers/{db}/health"));
    assert_eq!(refused.status, 403, "{}", refused.text());

    // Stats: one snapshot; refused without can_stats.
    let st = get_json(&s.watcher, &format!("/api/v1/containers/{web1}/stats"));
    assert_eq!(st["name"], web1.as_str());
    assert!(st["id"].is_string() && st["timestamp"].is_string(), "{st}");
    assert!(
        st["resources"]["memoryUsageMB"].as_f64().unwrap() > 0.0,
        "{st}"
    );
    assert!(st["resources"]["cpuPercent"].is_number(), "{st}");
    let refused = get(&s.watcher, &format!("/api/v1/containers/{ro}/stats"));
    assert_eq!(refused.status, 403, "{}", refused.text());
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn logs_stream_live_lines_with_streams_tail_resume_and_heartbeats() {
    engine();
    let img = image();
    let s = Setup::start(
        &["--sse-heartbeat", "1"],
        &[
            &["target_container={p}-web-*"],
            &["target_container={p}-ro-*", "can_logs=false"],
        ],
    );
    let (chatty, quiet, ro) = (s.name("web-chatty"), s.name("web-quiet"), s.name("ro-1"));
    let tty = s.name("web-tty");
    let _c = Cleanup(vec![chatty.clone(), quiet.clone(), ro.clone(), tty.clone()]);
    let script = "i=0; while true; do i=$((i+1)); echo out $i; echo err $i >&2; sleep 0.5; done";
    run(&chatty, &[img, "sh", "-c", script]);
    run(&quiet, &[img, "sleep", "300"]);
    run(&ro, &[img, "sleep", "300"]);
    let logs = format!("/api/v1/containers/{chatty}/logs");
    let number = |d: &Value| -> u64 {
        d["message"]
            .as_str()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };

    // Wait for a few lines, then note the last one written so far.
    assert!(within(Duration::from_secs(20), || {
        let mut sse = Sse::open(&s.watcher, &format!("{logs}?tail=all"), &[]);
        sse.until_end(Duration::from_secs(10));
        logs_of(&sse.events()).len() >= 8
    }));
    let mut before = Sse::open(&s.watcher, &format!("{logs}?tail=1"), &[]);
    assert!(
        before.until_end(Duration::from_secs(10)),
        "a non-follow stream ends"
    );
    assert_eq!(before.status(), 200);
    assert!(
        before
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        before.head
    );
    let last = logs_of(&before.events());
    assert_eq!(last.len(), 1, "tail=1: {}", before.body);
    let seen = number(&last[0].1);

    // follow=true: a line written after the stream opened arrives.
    let mut live = Sse::open(&s.watcher, &format!("{logs}?tail=0&follow=true"), &[]);
    assert!(
        live.until(Duration::from_secs(10), |b| {
            logs_of(&parse_events(b))
                .iter()
                .any(|(_, d)| number(d) > seen + 1)
        }),
        "no new line on the live stream: {}",
        live.body
    );
    for (id, d) in logs_of(&live.events()) {
        let m = d["message"].as_str().unwrap();
        let want = if m.starts_with("err") {
            "stderr"
        } else {
            "stdout"
        };
        assert_eq!(d["stream"], want, "{d}");
        assert_eq!(d["timestamp"].as_str(), Some(id.as_str()));
    }
    drop(live);

    // tail=N without follow: N lines, then the end.
    let mut tail = Sse::open(&s.watcher, &format!("{logs}?tail=3"), &[]);
    assert!(tail.until_end(Duration::from_secs(10)));
    assert_eq!(logs_of(&tail.events()).len(), 3, "{}", tail.body);

    // Last-Event-ID: resume after the line with that id, not at it.
    let mut all = Sse::open(&s.watcher, &format!("{logs}?tail=all"), &[]);
    assert!(all.until_end(Duration::from_secs(10)));
    let all = logs_of(&all.events());
    assert!(all.len() >= 8, "{all:?}");
    let (resume_id, _) = all[3].clone();
    let mut resumed = Sse::open(
        &s.watcher,
        &format!("{logs}?tail=2"),
        &[("Last-Event-ID", &resume_id)],
    );
    assert!(resumed.until_end(Duration::from_secs(10)));
    let resumed = logs_of(&resumed.events());
    assert_eq!(
        resumed.first().map(|r| &r.0),
        Some(&all[4].0),
        "resumes at the next line"
    );
    assert!(resumed.len() > 2, "a resume ignores tail: {resumed:?}");
    assert!(
        resumed
            .iter()
            .all(|(id, _)| id.as_str() > resume_id.as_str()),
        "nothing at or before the resume point: {resumed:?}"
    );
    let bad = get(&s.watcher, &format!("{logs}?tail=x"));
    assert_eq!(bad.status, 400, "{}", bad.text());

    // An idle stream gets heartbeats (--sse-heartbeat 1).
    let mut idle = Sse::open(
        &s.watcher,
        &format!("/api/v1/containers/{quiet}/logs?follow=true"),
        &[],
    );
    assert!(
        idle.until(Duration::from_secs(5), |b| b.contains(": heartbeat\n\n")),
        "no heartbeat: {:?}",
        idle.body
    );

    // A client that goes takes its daemon connection with it.
    let files = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let pid = s.proxy.pid();
    let before = files(pid);
    let extra: Vec<Sse> = (0..5)
        .map(|_| {
            Sse::open(
                &s.watcher,
                &format!("/api/v1/containers/{quiet}/logs?follow=true"),
                &[],
            )
        })
        .collect();
    assert!(
        within(Duration::from_secs(5), || files(pid) >= before + 10),
        "5 streams hold a client and a daemon connection each: {} -> {}",
        before,
        files(pid)
    );
    drop(extra);
    assert!(
        within(Duration::from_secs(5), || files(pid) <= before),
        "the streams' connections outlived their clients: {} -> {}",
        before,
        files(pid)
    );

    // The container goes: its followed log ends.
    ok(&direct(&["rm", "-f", &quiet]));
    assert!(
        idle.until_end(Duration::from_secs(10)),
        "the stream ends with the container"
    );

    // A TTY container has one stream: stdout, its lines without the `\r`.
    run(
        &tty,
        &["-t", img, "sh", "-c", "echo tty-line >&2; sleep 300"],
    );
    let tty_logs = format!("/api/v1/containers/{tty}/logs?follow=true");
    let mut t = Sse::open(&s.watcher, &tty_logs, &[]);
    assert!(
        t.until(Duration::from_secs(10), |b| !logs_of(&parse_events(b))
            .is_empty()),
        "no line from the TTY container: {}",
        t.body
    );
    let line = &logs_of(&t.events())[0].1;
    assert_eq!(line["stream"], "stdout", "{line}");
    assert_eq!(line["message"], "tty-line", "{line}");

    // Without can_logs: refused.
    let refused = get(&s.watcher, &format!("/api/v1/containers/{ro}/logs"));
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.message().starts_with("portcullis: "),
        "{}",
        refused.text()
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn events_show_only_visible_containers() {
    engine();
    let img = image();
    let s = Setup::start(
        &["--sse-heartbeat", "1"],
        &[&[
            "target_container={p}-web-*",
            r#"resources={"system":{"read":true}}"#,
        ]],
    );
    let (web, db) = (s.name("web-ev"), s.name("db-ev"));
    let _c = Cleanup(vec![web.clone(), db.clone()]);
    let mut sse = Sse::open(&s.watcher, "/api/v1/events", &[]);
    assert_eq!(sse.status(), 200, "{}", sse.head);
    // The invisible container first: by the time the visible one's last
    // event arrives, the other's would have.
    run(&db, &[img, "sleep", "300"]);
    run(&web, &[img, "sleep", "300"]);
    let write = |name: &str, path: &str| {
        let body = json!({"path": path, "content": "hi", "encoding": "utf-8", "mode": "0644", "createDirs": false});
        let a = request("PUT", &format!("/api/v1/containers/{name}/files/write"))
            .header("Content-Type", "application/json")
            .body(body.to_string().as_bytes())
            .send(s.admin());
        assert_eq!(a.status, 200, "file write: {}", a.text());
    };
    write(&db, "/tmp/db.txt");
    write(&web, "/tmp/web.txt");
    // An env patch by the administrator: its env-update events reach the
    // watcher for the container it may see, and only for that one.
    for name in [&db, &web] {
        let a = request("PATCH", &format!("/api/v1/containers/{name}/env"))
            .header("Content-Type", "application/json")
            .body(br#"{"set": {"EVENTS_TEST": "1"}}"#)
            .timeout(Duration::from_secs(60))
            .send(s.admin());
        assert_eq!(a.status, 200, "env patch: {}", a.text());
    }
    ok(&direct(&["stop", "-t", "0", &db]));
    ok(&direct(&["stop", "-t", "0", &web]));
    let stopped = |b: &str| {
        parse_events(b)
            .iter()
            .any(|(e, _, d)| e == "container" && d["name"] == web.as_str() && d["action"] == "stop")
    };
    assert!(
        sse.until(Duration::from_secs(20), stopped),
        "the visible container's stop never arrived: {}",
        sse.body
    );
    let events = sse.events();
    let actions: Vec<&str> = events
        .iter()
        .filter(|(e, _, d)| e == "container" && d["name"] == web.as_str())
        .map(|(_, _, d)| d["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"start"), "{actions:?}");
    let start = events
        .iter()
        .find(|(e, _, d)| e == "container" && d["action"] == "start")
        .unwrap();
    assert!(
        start.2["id"].is_string() && start.2["time"].is_string(),
        "{start:?}"
    );
    assert_eq!(start.2["image"], img);
    assert!(
        events
            .iter()
            .any(|(e, _, d)| e == "file-changed" && d["path"] == "/tmp/web.txt"),
        "portcullis's own file event: {}",
        sse.body
    );
    let env_updates: Vec<&Value> = events
        .iter()
        .filter(|(e, _, _)| e == "env-update")
        .map(|(_, _, d)| d)
        .collect();
    assert!(
        env_updates.iter().any(|d| d["container"] == web.as_str()
            && d["status"] == "running"
            && d["names"] == json!(["EVENTS_TEST"])),
        "the env patch's events: {env_updates:?}"
    );
    assert!(
        !sse.body.contains(&db) && !sse.body.contains("/tmp/db.txt"),
        "nothing of the invisible container: {}",
        sse.body
    );
}
