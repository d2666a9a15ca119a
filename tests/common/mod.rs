//! What the integration tests share, written once: the Docker daemon skip
//! rule ([`engine`], with `build.rs`), the serve harness ([`serve`]), the raw
//! HTTP client ([`client`]), the fixture upstream ([`fixture`]), the docker
//! side ([`docker`]) and what the decision-log tests share ([`audit`]). Each
//! test file says `mod common;` and `use common::*;` (or names what it uses).
//!
//! Engine tests are marked
//! `#[cfg_attr(no_docker, ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock")]`
//! and call [`engine`] first: without a daemon `cargo test` reports them as
//! ignored, with that reason (build.rs sets `no_docker`), except under
//! `CI=true`, where they run and fail.
#![allow(dead_code, unused_imports)] // each test binary uses a part

pub mod audit;
pub mod client;
pub mod daemon;
pub mod docker;
pub mod fixture;
pub mod serve;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use client::{raw, request, Answer};
pub use docker::*;
pub use fixture::FixtureUpstream;
pub use serve::*;

/// The first line of every engine test. The test runs only if the build
/// found a daemon (or under `CI=true`, or `--ignored`), so if none answers
/// now it fails, saying why, rather than pass without having run.
#[track_caller]
pub fn engine() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = UP.get_or_init(daemon::answers) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and {why}");
        }
        panic!(
            "{why}. Engine tests need one; start it, or rebuild (touch build.rs) \
             and they are reported as ignored"
        );
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    h.finish() as u32
}

/// A proxy with an admin socket and a socket pinned to `caller`: the proxy,
/// the pinned socket's DOCKER_HOST, and the folder that holds it.
pub fn pinned_proxy(caller: &str, extra: &[&str]) -> (Proxy, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join(format!("{caller}.sock"));
    let spec = format!("unix://{}?caller={caller}", sock.display());
    let mut args = vec!["--listen", spec.as_str()];
    args.extend_from_slice(extra);
    let p = Proxy::start(&args);
    p.wait_for_socket(&sock);
    (p, format!("unix://{}", sock.display()), dir)
}

/// `portcullis trust create --set …` through the proxy; the new id.
pub fn trust_create(p: &Proxy, sets: &[&str]) -> String {
    let mut args = vec!["trust", "create"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let out = ok(&p.cli(&args));
    let v: serde_json::Value = serde_json::from_str(&out).expect("trust create prints JSON");
    v["id"].as_str().expect("an id").to_string()
}

/// Ask `f` again every 50 ms until it says yes or `limit` has passed: for
/// changes (trust, policy) that take effect within a bound, not at once.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
