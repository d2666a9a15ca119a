//! What the decision-log acceptance tests (audit_acceptance, audit_under_load)
//! share: a `portcullis serve` on a data dir the test chooses (so it can be
//! killed and restarted on the same one), the offline CLI, export and verify,
//! plain HTTP tagged as the tests' load, and fixture upstreams on a runtime.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use super::{cli_at, ok, request, stdout, FixtureUpstream, ServeCmd};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// User-Agent of the load these tests generate: the counting upstream counts only
/// these, because the proxy's own container-event feed also calls the upstream
/// (`/events` and `/containers/json` about once a second) and is never recorded.
pub const LOAD_AGENT: &str = "portcullis-acceptance-load";

/// `portcullis serve` on a data dir we choose (so it can be killed and
/// restarted on the same one), forwarding to `upstream`.
pub fn serve_on(
    admin: &Path,
    data: &Path,
    upstream: &Path,
    extra: &[String],
    log: &Path,
) -> ServeCmd {
    ServeCmd::at(admin, data, log)
        .upstream(upstream)
        .args(extra)
}

pub fn cli_offline(args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("PORTCULLIS_HOST")
        .args(args)
        .output()
        .expect("run portcullis")
}

/// One HTTP/1.1 request tagged as the tests' load: (status, body).
pub fn http(socket: &Path, method: &str, path: &str) -> (u16, String) {
    let answer = request(method, path)
        .header("User-Agent", LOAD_AGENT)
        .timeout(Duration::from_secs(30))
        .send(socket);
    (answer.status, answer.text())
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every record, oldest first, through `portcullis audit export`.
pub fn export(socket: &Path) -> Vec<Value> {
    let out = cli_at(socket, &["audit", "export"]);
    ok(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(json_of)
        .collect()
}

/// `portcullis audit verify` (online or offline): (exit success, report).
pub fn verify(out: &Output) -> (bool, Value) {
    (out.status.success(), json_of(&stdout(out)))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The fixture upstream, served by `rt`.
pub fn fixture(rt: &tokio::runtime::Runtime, socket: &Path) -> FixtureUpstream {
    rt.block_on(async { FixtureUpstream::start(socket) })
        .expect("start fixture upstream")
}

/// The fixture upstream counting, at arrival, the requests of the tests'
/// load (tagged by [`LOAD_AGENT`]) apart from the proxy's own.
pub fn counting_upstream(rt: &tokio::runtime::Runtime, socket: &Path) -> FixtureUpstream {
    rt.block_on(async { FixtureUpstream::start_tagged(socket, Some(LOAD_AGENT)) })
        .expect("start counting upstream")
}
