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

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const DIR: &str = "/app/config/instructions";
const CLAUDE: &str = "# the agent's instructions\n";
const DEEP: &str = "deep prompt: not for the agent\n";

struct Setup {
    proxy: Proxy,
    agent_host: String,
    agent_socket: PathBuf,
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
            agent_socket,
            container,
            _cleanup: cleanup,
        }
    }

    /// The docker CLI as the agent.
    fn agent(&self, args: &[&str]) -> std::process::Output {
        self.proxy.docker_at(&self.agent_host, args)
    }

    fn exec(&self, script: &str) {
        ok(&direct(&["exec", &self.container, "sh", "-c", script]));
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
    let answer = request(method, target).send(socket);
    (answer.status, answer.head, answer.body)
}

/// The names in a tar stream (as `tar` lists them).
fn tar_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .expect("a tar")
        .map(|e| {
            let e = e.expect("a tar entry");
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect()
}

fn records<'a>(log: &'a [Value], action: &str) -> Vec<&'a Value> {
    log.iter().filter(|r| r["action"] == action).collect()
}

/// Item 2: a directory download leaves out what the agent may not read.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn docker_cp_of_a_directory_leaves_out_what_the_rules_refuse() {
    engine();
    let s = Setup::start("cp-dir");
    let c = &s.container;
    // A link to a refused place, a link inside the tree, and a file larger than
    // the socket buffers (the daemon holds the container's lock while it
    // streams; the filter must not ask it anything meanwhile).
    s.exec(&format!(
        "ln -s /etc {DIR}/etclink && ln -s prompts {DIR}/plink && dd if=/dev/zero of={DIR}/big.bin bs=1024 count=8192"
    ));

    // The file API's rule, applied to docker cp of one file: deep.txt is refused.
    let out = s.agent(&["cp", &format!("{c}:{DIR}/prompts/deep.txt"), "-"]);
    assert!(!out.status.success(), "deep.txt alone was handed out");
    assert!(
        stderr(&out).contains("agent may not file.read"),
        "{}",
        stderr(&out)
    );

    // The directory: CLAUDE.md and the links come, deep.txt does not.
    let dest = tempfile::tempdir().unwrap();
    let out = s.agent(&["cp", &format!("{c}:{DIR}"), dest.path().to_str().unwrap()]);
    assert!(out.status.success(), "docker cp of {DIR}: {}", stderr(&out));
    let got = dest.path().join("instructions");
    assert_eq!(
        std::fs::read_to_string(got.join("CLAUDE.md")).unwrap(),
        CLAUDE
    );
    assert!(
        !got.join("prompts/deep.txt").exists(),
        "prompts/deep.txt left the container through a directory download"
    );
    // A symlink entry is passed on as a link, not followed.
    let link = std::fs::symlink_metadata(got.join("etclink")).expect("etclink copied");
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(got.join("etclink")).unwrap(),
        Path::new("/etc")
    );

    // The same as a tar on stdout.
    let out = s.agent(&["cp", &format!("{c}:{DIR}"), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names = tar_names(&out.stdout);
    assert!(
        names.iter().any(|n| n == "instructions/CLAUDE.md"),
        "{names:?}"
    );
    assert!(names.iter().all(|n| !n.contains("deep.txt")), "{names:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(DEEP.trim()));

    // Through the link, with `/.` (the daemon follows it): deep.txt is reached
    // at plink/deep.txt, which the agent may not read either.
    let out = s.agent(&["cp", &format!("{c}:{DIR}/plink/."), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names = tar_names(&out.stdout);
    assert!(names.iter().all(|n| !n.contains("deep.txt")), "{names:?}");

    // What was withheld is in the decision log.
    let log = s.audit("agent");
    let withheld = records(&log, "file.withheld");
    assert!(
        withheld.iter().any(|r| r["resource_path"] == DIR
            && r["allowed"] == false
            && r["reasons"]
                .to_string()
                .contains("/app/config/instructions/prompts/deep.txt")),
        "no file.withheld record naming deep.txt: {withheld:?}"
    );
}

/// Item 2: a stat (`HEAD …/archive`) of a path the agent may not read says nothing.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_stat_of_a_refused_path_reveals_nothing() {
    engine();
    let s = Setup::start("cp-stat");
    let c = &s.container;
    let stat_of = |path: &str| {
        let target = format!(
            "/containers/{c}/archive?path={}",
            form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        );
        http(&s.agent_socket, "HEAD", &target)
    };
    let (status, head, _) = stat_of(&format!("{DIR}/CLAUDE.md"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-docker-container-path-stat"),
        "{head}"
    );
    for refused in [
        "/etc/shadow",
        &format!("{DIR}/prompts/deep.txt"),
        &format!("{DIR}/prompts/missing"),
    ] {
        let (status, head, _) = stat_of(refused);
        assert_eq!(status, 403, "stat of {refused}: {head}");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("x-docker-container-path-stat"),
            "stat of {refused} answered with its stat: {head}"
        );
    }
    // docker cp -L stats first: it fails with portcullis's refusal.
    let dest = tempfile::tempdir().unwrap();
    let out = s.agent(&[
        "cp",
        "-L",
        &format!("{c}:/etc/shadow"),
        dest.path().to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "docker cp -L of /etc/shadow succeeded"
    );
    assert!(
        stderr(&out).contains("portcullis: agent may not file.read"),
        "{}",
        stderr(&out)
    );
    assert!(!dest.path().join("shadow").exists());
}

/// Item 4: `..` in an archive path is cleaned as the daemon cleans it, then decided.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn docker_cp_paths_with_dotdot_are_decided_on_the_cleaned_path() {
    engine();
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
