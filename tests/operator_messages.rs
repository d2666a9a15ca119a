//! What an operator reads: the start line, the admin CLI's errors, and the log
//! file, as a new user meets them.

mod common;

use common::*;

/// The start line spells the mode as the flag does, and a log written to a
/// file carries no colour codes.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn the_start_line_and_log_file_are_plain() {
    engine();
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("bad.rego"),
        "package portcullis\nallow if {",
    )
    .unwrap();
    let policies = broken.path().to_string_lossy().to_string();
    let p = Proxy::start(&["--mode", "audit-only", "--policies", &policies]);
    // The socket answers a moment before the start line is written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !p.log().contains("forwarding to") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = p.log();
    assert!(log.contains("mode audit-only"), "start line: {log}");
    assert!(
        log.contains("ERROR"),
        "the broken policy is reported: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

/// The admin CLI's errors: the server's message once, without a second
/// `portcullis:` prefix, and a missing caller names the step that adds it.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn admin_errors_say_it_once_and_say_what_to_do() {
    engine();
    let p = Proxy::start(&[]);
    let out = p.cli(&["caller", "token", "dashboard"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("portcullis:").count(), 1, "{err}");
    assert!(
        err.contains("portcullis caller add dashboard"),
        "no hint: {err}"
    );
    ok(&p.cli(&["caller", "add", "dashboard"]));
    ok(&p.cli(&["caller", "token", "dashboard"]));
}

/// With no server on the socket, the admin CLI names portcullis, once, and
/// what to check, not "the Docker daemon".
#[test]
fn admin_commands_without_a_server_name_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}", dir.path().join("none.sock").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env("PORTCULLIS_HOST", &socket)
        .args(["trust", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("Docker daemon"), "{err}");
    assert!(err.contains("portcullis serve"), "{err}");
    assert_eq!(err.matches("client error").count(), 0, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// `completions bash` is a script bash loads and completes the verbs with;
/// `man` renders as a man page.
#[test]
fn completions_and_man_page() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let script = format!(
        "source <({bin} completions bash); COMP_WORDS=(portcullis au); COMP_CWORD=1; \
         COMP_LINE='portcullis au'; COMP_POINT=13; _portcullis portcullis au portcullis; \
         echo \"${{COMPREPLY[@]}}\""
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "audit");
    for shell in ["zsh", "fish"] {
        let out = std::process::Command::new(bin)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(ok(&out).contains("serve"), "{shell}");
    }
    let man = std::process::Command::new(bin).arg("man").output().unwrap();
    let page = ok(&man);
    assert!(page.contains(".TH portcullis 1"), "{page}");
    assert!(page.contains("serve"), "{page}");
}

/// `--log-format json`: every log line is one JSON object with a level and a
/// message, for log collectors.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn json_log_lines_parse() {
    engine();
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("bad.rego"),
        "package portcullis\nallow if {",
    )
    .unwrap();
    let policies = broken.path().to_string_lossy().to_string();
    let p = Proxy::start(&["--log-format", "json", "--policies", &policies]);
    let log = p.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "ERROR" && l["message"].is_string()),
        "{log}"
    );
}
