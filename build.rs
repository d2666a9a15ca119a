//! Marks the engine tests skipped when no Docker daemon answers.
//!
//! libtest decides `#[ignore]` at compile time and has no way for a running
//! test to say "skipped", so a test that returns early without a daemon shows
//! as passed. Instead this script probes the daemon (the same probe as
//! `tests/common/daemon.rs`) and, when none answers, sets `cfg(no_docker)`; the
//! engine tests carry `#[cfg_attr(no_docker, ignore = "…")]`, so `cargo test`
//! lists them as ignored, with the reason. Under `CI=true` the cfg is never set:
//! there the engine tests run, and fail if no daemon answers.
//!
//! The result is cached by cargo until CI or DOCKER_HOST change, or the socket
//! does (a daemon that starts or restarts recreates it), so a daemon started
//! later is seen. The product build does not read the cfg.

#[path = "tests/common/daemon.rs"]
mod daemon;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tests/common/daemon.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=DOCKER_HOST");
    if let Ok(socket) = daemon::socket() {
        // A missing path would make cargo rerun this (and rebuild the crate)
        // on every build, so while the socket is absent watch the folder it
        // will appear in, unless that is the root (cargo scans it whole).
        let watch = match socket.parent() {
            _ if socket.exists() => Some(socket.as_path()),
            Some(dir) if dir.exists() && dir.parent().is_some() => Some(dir),
            _ => None,
        };
        if let Some(path) = watch {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        return;
    }
    // Quietly: the ignore reason says it where it matters, in the test run.
    if daemon::answers().is_err() {
        println!("cargo:rustc-cfg=no_docker");
    }
}
