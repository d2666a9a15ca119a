//! Issue 5: file endpoints on Docker's archive API, with `docker cp` held to
//! the same path rules. Everything runs through a real `portcullis serve`
//! (Rego policies, trust store, decision log) in front of the real engine,
//! with containers from the busybox fixture.
//!
//! The caller `agent` is pinned to its own socket and may write
//! `/app/config/instructions/*`; the caller `tok` is a bearer-token caller
//! that may write `/app/config/instructions/**` (so a symlink escape is not
//! already refused by the glob alone). Every attempt is then looked up in the
//! decision log through the admin API.

mod common;

use std::io::Write;
use std::path::Path;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const DIR: &str = "/app/config/instructions";
const FILE: &str = "/app/config/instructions/CLAUDE.md";

/// One request with `headers` and `body` over a unix socket.
fn http(
    socket: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    headers
        .iter()
        .fold(request(method, target).body(body), |r, (k, v)| {
            r.header(k, v)
        })
        .send(socket)
}

fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A caller's view of the file API: a socket, plus a bearer token if any.
struct FileClient<'a> {
    socket: &'a Path,
    token: Option<String>,
    container: String,
}

impl FileClient<'_> {
    fn call(&self, method: &str, target: &str, body: &[u8]) -> Answer {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http(self.socket, method, target, &headers, body)
    }

    fn write(&self, request: Value) -> Answer {
        let target = format!("/api/v1/containers/{}/files/write", self.container);
        self.call("PUT", &target, request.to_string().as_bytes())
    }

    fn write_text(&self, path: &str, content: &str) -> Answer {
        self.write(json!({"path": path, "content": content, "encoding": "utf-8", "mode": "0644", "createDirs": false}))
    }

    fn read(&self, raw_query_path: &str) -> Answer {
        self.call(
            "GET",
            &format!(
                "/api/v1/containers/{}/files/read?path={raw_query_path}",
                self.container
            ),
            b"",
        )
    }

    fn list(&self, path: &str) -> Answer {
        self.call(
            "GET",
            &format!(
                "/api/v1/containers/{}/files?path={}",
                self.container,
                q(path)
            ),
            b"",
        )
    }

    fn delete(&self, path: &str) -> Answer {
        self.call(
            "DELETE",
            &format!(
                "/api/v1/containers/{}/files?path={}",
                self.container,
                q(path)
            ),
            b"",
        )
    }
}

/// A proxy with the pinned caller `agent` on its own socket, and a running
/// container holding `/app/config/instructions`.
struct Setup {
    proxy: Proxy,
    agent_socket: std::path::PathBuf,
    container: String,
    _cleanup: Cleanup,
}

impl Setup {
    fn start(prefix: &str) -> Setup {
        let img = image();
        let sockets = tempfile::tempdir().unwrap().keep();
        let agent_socket = sockets.join("agent.sock");
        let spec = format!("unix://{}?caller=agent", agent_socket.display());
        let proxy = Proxy::start(&["--listen", &spec]);
        proxy.wait_for_socket(&agent_socket);
        let container = unique(prefix);
        let cleanup = Cleanup(vec![container.clone()]);
        ok(&direct(&[
            "run", "-d", "--name", &container, img, "sleep", "600",
        ]));
        ok(&direct(&[
            "exec",
            &container,
            "mkdir",
            "-p",
            DIR,
            "/app/config/instructions/sub",
        ]));
        let created = ok(&proxy.cli(&[
            "trust",
            "create",
            "--set",
            "caller_service=agent",
            "--set",
            &format!("target_container={container}"),
            "--set",
            r#"file_write_paths=["/app/config/instructions/*"]"#,
            "--set",
            r#"file_read_paths=["/app/config/instructions","/app/config/instructions/*"]"#,
        ]));
        assert!(
            created.contains("\"id\""),
            "trust create answered: {created}"
        );
        Setup {
            proxy,
            agent_socket,
            container,
            _cleanup: cleanup,
        }
    }

    fn agent(&self) -> FileClient<'_> {
        FileClient {
            socket: &self.agent_socket,
            token: None,
            container: self.container.clone(),
        }
    }

    /// Every record of `caller`, oldest first, through the admin API.
    fn audit(&self, caller: &str) -> Vec<Value> {
        let target = format!("/api/v1/trust/audit?caller={caller}&limit=1000&order=oldest");
        let answer = http(&self.proxy.socket, "GET", &target, &[], b"");
        assert_eq!(answer.status, 200, "audit query: {}", answer.text());
        answer.json()["records"]
            .as_array()
            .expect("records")
            .clone()
    }
}

/// The records of one attempt: action and resource path.
fn records<'a>(log: &'a [Value], action: &str, path: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|r| r["action"] == action && r["resource_path"] == path)
        .collect()
}

/// Exactly the expected decision was recorded for (action, path).
#[track_caller]
fn assert_logged(log: &[Value], action: &str, path: &str, allowed: bool) {
    let found = records(log, action, path);
    assert!(
        found.iter().any(|r| r["allowed"] == allowed),
        "no {action} record for {path} with allowed={allowed}; records for it: {found:?}"
    );
    if !allowed {
        assert!(
            found.iter().all(|r| r["allowed"] == false),
            "a refused {action} of {path} was also recorded as allowed: {found:?}"
        );
    }
}

fn in_container(container: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec", container];
    all.extend_from_slice(args);
    direct(&all)
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn write_read_list_delete_round_trip_is_recorded() {
    engine();
    let s = Setup::start("files-rt");
    let agent = s.agent();

    // UTF-8 content, written and read back byte for byte.
    let text = "# Instructions\nBe nice. ünïcødé ✓\n";
    let w = agent.write_text(FILE, text);
    assert_eq!(w.status, 200, "utf-8 write: {}", w.text());
    assert_eq!(w.json()["size"], text.len());
    assert_eq!(
        ok(&in_container(&s.container, &["cat", FILE])),
        text,
        "the container holds what was written"
    );
    let r = agent.read(&q(FILE));
    assert_eq!(r.status, 200, "read: {}", r.text());
    let content = r.json();
    assert_eq!(content["encoding"], "utf-8");
    assert_eq!(content["content"], text);
    assert_eq!(content["size"], text.len());

    // Binary content (not UTF-8) as base64, with a mode.
    let binary: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0x00, 0x80]).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&binary);
    let w = agent.write(json!({"path": FILE, "content": encoded, "encoding": "base64", "mode": "0600", "createDirs": false}));
    assert_eq!(w.status, 200, "binary write: {}", w.text());
    let r = agent.read(&q(FILE));
    assert_eq!(r.status, 200, "binary read: {}", r.text());
    let content = r.json();
    assert_eq!(content["encoding"], "base64");
    let back = base64::engine::general_purpose::STANDARD
        .decode(content["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(back, binary, "binary bytes came back changed");

    // The listing shows the file with its size and mode.
    let l = agent.list(DIR);
    assert_eq!(l.status, 200, "list: {}", l.text());
    let listing = l.json();
    assert_eq!(listing["path"], DIR);
    let entry = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CLAUDE.md")
        .unwrap_or_else(|| panic!("CLAUDE.md missing from {listing}"));
    assert_eq!(entry["size"], binary.len());
    assert_eq!(entry["mode"], "0600");
    assert_eq!(entry["type"], "file");

    // Delete, then it is gone.
    let d = agent.delete(FILE);
    assert_eq!(d.status, 200, "delete: {}", d.text());
    assert!(
        !in_container(&s.container, &["test", "-e", FILE])
            .status
            .success(),
        "the file survived delete"
    );
    let gone = agent.read(&q(FILE));
    assert_eq!(gone.status, 404, "read after delete: {}", gone.text());
    assert!(gone.message().contains(FILE), "{}", gone.message());

    let log = s.audit("agent");
    assert_logged(&log, "file.write", FILE, true);
    assert_logged(&log, "file.read", FILE, true);
    assert_logged(&log, "file.list", DIR, true);
    assert_logged(&log, "file.delete", FILE, true);
    // Two writes and one delete were applied: three file.changed records.
    let changed = records(&log, "file.changed", FILE);
    assert_eq!(changed.len(), 3, "file.changed records: {changed:?}");
    assert!(changed.iter().all(|r| r["allowed"] == true));
    assert_eq!(
        changed.iter().filter(|r| r["method"] == "DELETE").count(),
        1,
        "one file.changed record for the delete: {changed:?}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn escapes_are_refused_and_errors_have_clear_shapes() {
    engine();
    let s = Setup::start("files-esc");
    let agent = s.agent();
    let passwd_before = ok(&in_container(&s.container, &["cat", "/etc/passwd"]));

    // Outside the write paths.
    let w = agent.write_text("/etc/passwd", "root::0:0::/:/bin/sh\n");
    assert_eq!(w.status, 403, "/etc/passwd: {}", w.text());
    assert!(
        w.message().contains("agent may not file.write"),
        "{}",
        w.message()
    );

    // `..` is refused, never resolved.
    let dotdot = "/app/config/instructions/../../../etc/passwd";
    let w = agent.write_text(dotdot, "x\n");
    assert_eq!(w.status, 400, "dot-dot: {}", w.text());
    assert!(w.message().contains(".."), "{}", w.message());

    // Through a symlink to /etc made inside the container.
    ok(&in_container(
        &s.container,
        &["ln", "-s", "/etc", "/app/config/instructions/link"],
    ));
    let w = agent.write_text("/app/config/instructions/link", "x\n");
    assert!(
        w.status == 403 || w.status == 409,
        "write to the link: {}",
        w.text()
    );
    let w = agent.write_text("/app/config/instructions/link/passwd", "x\n");
    assert_eq!(w.status, 403, "write through the link: {}", w.text());
    assert_eq!(
        ok(&in_container(&s.container, &["cat", "/etc/passwd"])),
        passwd_before,
        "/etc/passwd changed"
    );
    assert!(
        in_container(
            &s.container,
            &["test", "-L", "/app/config/instructions/link"]
        )
        .status
        .success(),
        "the link was replaced"
    );

    // Error shapes: 404 missing, 400 relative / `..` / NUL, 409 directory for a file.
    let missing = "/app/config/instructions/nothing-here.md";
    let r = agent.read(&q(missing));
    assert_eq!(r.status, 404, "missing: {}", r.text());
    assert!(r.message().contains("nothing-here.md"), "{}", r.message());
    let r = agent.read("app%2Fconfig%2Finstructions%2FCLAUDE.md");
    assert_eq!(r.status, 400, "relative: {}", r.text());
    assert!(r.message().contains("absolute"), "{}", r.message());
    let r = agent.read(&q("/app/config/instructions/../instructions/CLAUDE.md"));
    assert_eq!(r.status, 400, "dot-dot read: {}", r.text());
    assert!(r.message().contains(".."), "{}", r.message());
    let r = agent.read("%2Fapp%2Fconfig%2Finstructions%2Fa%00b");
    assert_eq!(r.status, 400, "NUL: {}", r.text());
    assert!(r.message().contains("NUL"), "{}", r.message());
    let r = agent.read(&q(DIR));
    assert_eq!(r.status, 409, "read of a directory: {}", r.text());
    assert!(!r.message().is_empty());
    let w = agent.write_text("/app/config/instructions/sub", "x\n");
    assert_eq!(w.status, 409, "write over a directory: {}", w.text());
    assert!(w.message().contains("directory"), "{}", w.message());

    // A token caller with `**`: the glob alone would allow link/passwd, the
    // resolved path (/etc/passwd) does not.
    let added = ok(&s.proxy.cli(&["caller", "add", "tok"]));
    assert!(added.contains("tok"), "{added}");
    let issued: Value =
        serde_json::from_str(&ok(&s.proxy.cli(&["caller", "token", "tok"]))).unwrap();
    let token = issued["token"].as_str().expect("token").to_string();
    ok(&s.proxy.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=tok",
        "--set",
        &format!("target_container={}", s.container),
        "--set",
        r#"file_write_paths=["/app/config/instructions/**"]"#,
        "--set",
        r#"file_read_paths=["/app/config/instructions/**"]"#,
    ]));
    let tok = FileClient {
        socket: &s.proxy.socket,
        token: Some(token),
        container: s.container.clone(),
    };
    let w = tok.write_text("/app/config/instructions/link/passwd", "x\n");
    assert_eq!(w.status, 403, "token write through the link: {}", w.text());
    assert!(
        w.message().contains("tok may not file.write"),
        "{}",
        w.message()
    );
    let w = tok.write_text("/app/config/instructions/token.md", "from a token\n");
    assert_eq!(w.status, 200, "token write: {}", w.text());
    let r = tok.read(&q("/app/config/instructions/token.md"));
    assert_eq!(
        (r.status, r.json()["content"].clone()),
        (200, json!("from a token\n"))
    );
    assert_eq!(
        ok(&in_container(&s.container, &["cat", "/etc/passwd"])),
        passwd_before,
        "/etc/passwd changed"
    );

    let log = s.audit("agent");
    assert_logged(&log, "file.write", "/etc/passwd", false);
    assert_logged(&log, "file.write", "/app/config/instructions/link", false);
    assert_logged(
        &log,
        "file.write",
        "/app/config/instructions/link/passwd",
        false,
    );
    assert_logged(&log, "file.read", missing, true);
    assert_logged(&log, "file.read", DIR, true);
    assert_logged(&log, "file.write", "/app/config/instructions/sub", true);
    // Refused before a decision (the path is invalid): still recorded, as a denial.
    let early: Vec<&Value> = log
        .iter()
        .filter(|r| r["allowed"] == false && r["reasons"].to_string().contains(".."))
        .collect();
    assert!(
        early.len() >= 2,
        "the `..` attempts are not in the log: {log:?}"
    );
    assert!(
        log.iter().all(|r| r["action"] != "file.changed"),
        "agent changed nothing, yet file.changed was recorded"
    );

    let log = s.audit("tok");
    assert_logged(
        &log,
        "file.write",
        "/app/config/instructions/link/passwd",
        false,
    );
    assert_logged(
        &log,
        "file.write",
        "/app/config/instructions/token.md",
        true,
    );
    assert_eq!(
        records(&log, "file.changed", "/app/config/instructions/token.md").len(),
        1
    );
    let refused = records(&log, "file.write", "/app/config/instructions/link/passwd");
    assert!(
        refused
            .iter()
            .all(|r| r["identified_by"].as_str().unwrap_or("").contains("token")),
        "{refused:?}"
    );
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn docker_cp_is_held_to_the_same_rules() {
    engine();
    let s = Setup::start("files-cp");
    let agent_host = format!("unix://{}", s.agent_socket.display());
    let local = s.proxy.dir.path().join("x");
    std::fs::write(&local, b"copied by docker cp\n").unwrap();
    let local = local.to_str().unwrap();
    let c = &s.container;

    // Into /etc/: refused, nothing lands. The CLI stats the destination first;
    // that stat is refused too (it would describe /etc), and the CLI takes any
    // failed stat for absence, so it stops with its own message.
    let out = s
        .proxy
        .docker_at(&agent_host, &["cp", local, &format!("{c}:/etc/")]);
    assert!(
        !out.status.success(),
        "docker cp into /etc/ was allowed: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("no such directory"),
        "stderr: {}",
        stderr(&out)
    );
    // Without the trailing slash the CLI uploads into / as `etc`: portcullis refuses.
    let out = s
        .proxy
        .docker_at(&agent_host, &["cp", local, &format!("{c}:/etc")]);
    assert!(!out.status.success(), "docker cp onto /etc was allowed");
    assert!(
        stderr(&out).contains("agent may not file.write"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(
        !in_container(c, &["test", "-e", "/etc/x"]).status.success(),
        "/etc/x was written"
    );

    // Into a symlink to /etc inside the directory: refused.
    ok(&in_container(
        c,
        &["ln", "-s", "/etc", "/app/config/instructions/link"],
    ));
    let out = s.proxy.docker_at(
        &agent_host,
        &["cp", local, &format!("{c}:/app/config/instructions/link/")],
    );
    assert!(
        !out.status.success(),
        "docker cp through the link was allowed"
    );
    assert!(
        !in_container(c, &["test", "-e", "/etc/x"]).status.success(),
        "/etc/x was written through the link"
    );

    // Out of /etc (not readable): refused.
    let dest = s.proxy.dir.path().join("shadow-copy");
    let out = s.proxy.docker_at(
        &agent_host,
        &["cp", &format!("{c}:/etc/shadow"), dest.to_str().unwrap()],
    );
    assert!(
        !out.status.success(),
        "docker cp of /etc/shadow was allowed"
    );
    assert!(
        stderr(&out).contains("agent may not"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!dest.exists(), "/etc/shadow was copied out");

    // An uncompressed upload whose symlink entry points at /etc/shadow: the
    // link target is checked like an entry, so it is refused.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder
        .append_link(&mut header, "shadow-link", "/etc/shadow")
        .unwrap();
    let link_tar = builder.into_inner().unwrap();
    let target = format!("/containers/{c}/archive?path={}", q(DIR));
    let a = http(
        &s.agent_socket,
        "PUT",
        &target,
        &[("Content-Type", "application/x-tar")],
        &link_tar,
    );
    // Refused before the policy sees it: an absolute link target is structural.
    assert_eq!(a.status, 400, "symlink entry to /etc/shadow: {}", a.text());
    assert!(
        a.message().contains("agent may not file.write") && a.message().contains("absolute target"),
        "{}",
        a.message()
    );
    assert!(
        !in_container(c, &["test", "-L", "/app/config/instructions/shadow-link"])
            .status
            .success(),
        "the symlink entry was extracted"
    );

    // A gzip-compressed upload: refused with a clear message.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "zipped.md", &b"zip\n"[..])
        .unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    let mut gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    gz.stdin.take().unwrap().write_all(&tar_bytes).unwrap();
    let gzipped = gz.wait_with_output().unwrap().stdout;
    assert_eq!(&gzipped[..2], &[0x1f, 0x8b], "gzip output");
    let target = format!("/containers/{c}/archive?path={}", q(DIR));
    let a = http(
        &s.agent_socket,
        "PUT",
        &target,
        &[("Content-Type", "application/x-tar")],
        &gzipped,
    );
    assert!(
        a.status == 400 || a.status == 403,
        "gzip upload: {} {}",
        a.status,
        a.text()
    );
    let msg = a.message();
    assert!(
        msg.contains("compressed") && msg.contains("CVE"),
        "gzip refusal message: {msg}"
    );
    assert!(
        !in_container(c, &["test", "-e", "/app/config/instructions/zipped.md"])
            .status
            .success()
    );

    let log = s.audit("agent");
    assert_logged(&log, "file.stat", "/etc", false);
    assert_logged(&log, "file.write", "/", false);
    // The stat of the link is refused (it resolves to /etc), so no upload follows.
    assert_logged(&log, "file.stat", "/app/config/instructions/link", false);
    assert_logged(&log, "file.read", "/etc/shadow", false);
    let gz_records: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["method"] == "PUT"
                && r["allowed"] == false
                && r["reasons"].to_string().contains("compressed")
        })
        .collect();
    assert_eq!(gz_records.len(), 1, "the gzip upload's record: {log:?}");
    assert_eq!(gz_records[0]["action"], "file.write", "{:?}", gz_records[0]);
}

/// `docker cp ./x C:/app/config/instructions/` with write access to
/// `/app/config/instructions/*` only: the upload writes `/app/config/instructions/x`
/// and nothing else, so it must be allowed.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn docker_cp_into_the_allowed_directory() {
    engine();
    let s = Setup::start("files-cpok");
    let agent_host = format!("unix://{}", s.agent_socket.display());
    let local = s.proxy.dir.path().join("x");
    std::fs::write(&local, b"copied by docker cp\n").unwrap();
    let c = &s.container;
    let out = s.proxy.docker_at(
        &agent_host,
        &["cp", local.to_str().unwrap(), &format!("{c}:{DIR}/")],
    );
    assert!(
        out.status.success(),
        "docker cp into {DIR}/ was refused: {}",
        stderr(&out)
    );
    assert_eq!(
        ok(&in_container(c, &["cat", "/app/config/instructions/x"])),
        "copied by docker cp\n"
    );
    // And back out through the proxy.
    let back = s.proxy.dir.path().join("back");
    let out = s.proxy.docker_at(
        &agent_host,
        &[
            "cp",
            &format!("{c}:/app/config/instructions/x"),
            back.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "docker cp out of {DIR} was refused: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"copied by docker cp\n");

    let log = s.audit("agent");
    assert_logged(&log, "file.write", DIR, true);
    assert_logged(&log, "file.read", "/app/config/instructions/x", true);
}

/// Attempts refused before a decision (an invalid path, a compressed upload)
/// must still carry the path they named in the decision log.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn refused_before_decision_attempts_carry_their_path() {
    engine();
    let s = Setup::start("files-early");
    let dotdot = "/app/config/instructions/../../../etc/passwd";
    let w = s.agent().write_text(dotdot, "x\n");
    assert_eq!(w.status, 400, "{}", w.text());
    let target = format!("/containers/{}/archive?path={}", s.container, q(DIR));
    let a = http(
        &s.agent_socket,
        "PUT",
        &target,
        &[("Content-Type", "application/x-tar")],
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0],
    );
    assert_eq!(a.status, 400, "{}", a.text());
    let log = s.audit("agent");
    assert_logged(&log, "file.write", dotdot, false);
    assert_logged(&log, "file.write", DIR, false);
}
