//! Issue 18, items 2 and 4: what `docker cp` may take out of a container.
//!
//! The caller `agent` (pinned to its own socket) may read `/app/config/*` and
//! `/app/config/instructions/*`, nothing deeper. The container holds
//! `/app/config/instructions/{CLAUDE.md, prompts/deep.txt}`: a directory
//! download must leave `prompts/deep.txt` out, a stat must not describe a path
//! the agent may not read, and a path with `..` is decided on the path the
//! daemon really reads (Go's `path.Join("/", path)`).
//!
//! Everything runs through a real `portcullis serve` in front of the real
//! engine, with the real docker CLI and the busybox fixture.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const DIR: &str = "/app/config/instructions";
const CLAUDE: &str = "# the agent's instructions\n";
const DEEP: &str = "deep prompt: not for the agent\n";

struct Setup {
    proxy: Proxy,
    agent_host: String,
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
        // The tree is made directly on the daemon, not through portcullis.
        let script = format!(
            "mkdir -p {DIR}/prompts && printf %s \"$1\" > {DIR}/CLAUDE.md && printf %s \"$2\" > {DIR}/prompts/deep.txt"
        );
        ok(&direct(&[
            "exec", &container, "sh", "-c", &script, "sh", CLAUDE, DEEP,
        ]));
        let created = ok(&proxy.cli(&[
            "trust",
            "create",
            "--set",
            "caller_service=agent",
            "--set",
            &format!("target_container={container}"),
            "--set",
            r#"file_read_paths=["/app/config/*","/app/config/instructions/*"]"#,
        ]));
        assert!(created.contains("\"id\""), "trust create: {created}");
        Setup {
            agent_host: format!("unix://{}", agent_socket.display()),
            proxy,
            container,
            _cleanup: cleanup,
        }
    }

    /// The docker CLI as the agent.
    fn agent(&self, args: &[&str]) -> std::process::Output {
        self.proxy.docker_at(&self.agent_host, args)
    }

    /// Every record of `caller`, oldest first, through the admin API.
    fn audit(&self, caller: &str) -> Vec<Value> {
        let target = format!("/api/v1/trust/audit?caller={caller}&limit=1000&order=oldest");
        let (status, _, body) = http(&self.proxy.socket, "GET", &target);
        assert_eq!(
            status,
            200,
            "audit query: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).expect("audit JSON");
        v["records"].as_array().expect("records").clone()
    }
}

/// One HTTP/1.1 request without a body over a unix socket: status, head, body.
fn http(socket: &Path, method: &str, target: &str) -> (u16, String, Vec<u8>) {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head =
        format!("{method} {target} HTTP/1.1\r\nHost: portcullis\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, raw[split + 4..].to_vec())
}

/// Item 4: `..` in an archive path is cleaned as the daemon cleans it, then decided.
#[test]
fn docker_cp_paths_with_dotdot_are_decided_on_the_cleaned_path() {
    if !engine() {
        return;
    }
    let s = Setup::start("cp-dotdot");
    let c = &s.container;
    let out = s.agent(&["cp", &format!("{c}:{DIR}/../instructions/CLAUDE.md"), "-"]);
    assert!(
        out.status.success(),
        "allowed path with '..': {}",
        stderr(&out)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive
        .entries()
        .unwrap()
        .next()
        .expect("one entry")
        .unwrap();
    assert_eq!(&*entry.path_bytes(), b"CLAUDE.md");
    let mut content = String::new();
    entry.read_to_string(&mut content).unwrap();
    assert_eq!(content, CLAUDE);

    // Climbing out is decided on where it lands: refused by the policy (403),
    // not by the path's spelling.
    let out = s.agent(&["cp", &format!("{c}:{DIR}/../../../etc/shadow"), "-"]);
    assert!(
        !out.status.success(),
        "/etc/shadow through '..' was handed out"
    );
    assert!(
        stderr(&out).contains("agent may not file.read"),
        "{}",
        stderr(&out)
    );
    let log = s.audit("agent");
    let read = |path: &str| {
        log.iter()
            .filter(|r| r["action"] == "file.read" && r["resource_path"] == path)
            .map(|r| r["allowed"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(read(&format!("{DIR}/CLAUDE.md")), vec![Value::Bool(true)]);
    assert_eq!(read("/etc/shadow"), vec![Value::Bool(false)]);
}
