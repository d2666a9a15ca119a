//! Every log line about a request carries its request id and its decision id
//! (the record's seq), in JSON and in text: an operator goes from a log line
//! to the record with `portcullis audit query --request-id`.

mod common;

use common::*;

/// A daemon that is not there: the forward fails after the decision is
/// recorded, and says so in a log line.
fn serve_without_daemon(format: &str) -> (Serve, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on: connections to it are refused.
    let gone = dir.path().join("no-daemon.sock");
    drop(std::os::unix::net::UnixListener::bind(&gone).unwrap());
    let serve = ServeCmd::at(
        &dir.path().join("p.sock"),
        &dir.path().join("data"),
        &dir.path().join("serve.log"),
    )
    .upstream(&gone)
    .args(&["--log-format", format])
    .start();
    (serve, dir)
}

fn line_about_the_daemon(log: &str) -> String {
    log.lines()
        .rfind(|l| l.contains("a request could not be forwarded"))
        .unwrap_or_else(|| panic!("no line about the unreachable daemon in:\n{log}"))
        .to_string()
}

/// The record the ids name: same request id, seq = decision id.
fn assert_ids_name_the_record(p: &Serve, request_id: &str, decision: u64) {
    let out = p.cli(&[
        "audit",
        "query",
        "--request-id",
        request_id,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["seq"], decision, "{records:?}");
    assert_eq!(records[0]["path"], "/_ping", "{records:?}");
}

#[test]
fn json_log_lines_name_the_request_and_its_decision() {
    let (p, _dir) = serve_without_daemon("json");
    let answer = request("GET", "/_ping").send(&p.socket);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let line = line_about_the_daemon(&p.log());
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let span = &v["span"];
    let request_id = span["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id: {line}"));
    let decision = span["decision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no decision id: {line}"));
    assert_ids_name_the_record(&p, request_id, decision);
}

#[test]
fn text_log_lines_name_the_request_and_its_decision() {
    let (p, _dir) = serve_without_daemon("text");
    let answer = request("GET", "/_ping").send(&p.socket);
    assert_eq!(answer.status, 502, "{}", answer.text());
    let line = line_about_the_daemon(&p.log());
    // `request{id=… decision=…}: …`
    let field = |name: &str| {
        let start = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name}= in: {line}"))
            + name.len()
            + 1;
        line[start..]
            .split([' ', '}'])
            .next()
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    let decision: u64 = field("decision").parse().unwrap();
    assert_ids_name_the_record(&p, &field("id"), decision);
}
