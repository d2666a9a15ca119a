//! Does a Docker daemon answer? One probe, used twice: by `build.rs`, which
//! marks the engine tests `ignore`d when none answers (so a run without a
//! daemon reports them as skipped, not passed), and by [`super::engine`],
//! which each engine test calls first. Std only, so `build.rs` can include it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The socket the tests' daemon is expected on: DOCKER_HOST when it names a
/// unix socket, else Docker's default.
pub fn socket() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => Err(format!("DOCKER_HOST={host} is not a unix:// socket")),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// `Ok` when the daemon answers `GET /_ping` with 200 within two seconds;
/// else why not.
pub fn answers() -> Result<(), String> {
    let path = socket()?;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "no Docker daemon answers on {}: {what}: {e}",
            path.display()
        )
    };
    let mut s = UnixStream::connect(&path).map_err(|e| fail("connect", &e))?;
    let limit = Some(Duration::from_secs(2));
    s.set_read_timeout(limit).map_err(|e| fail("timeout", &e))?;
    s.set_write_timeout(limit)
        .map_err(|e| fail("timeout", &e))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| fail("send", &e))?;
    let mut answer = Vec::new();
    // HTTP/1.0: the daemon closes after answering; a timeout keeps what came.
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(fail("GET /_ping", &format!("{status:?}")))
    }
}
