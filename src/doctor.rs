//! `portcullis doctor`: check a deployment, one line per check, each failure
//! with what to do about it.
//!
//! Why a command of its own: the ways a socket proxy silently stops
//! protecting anything are outside it (docker.sock left world-writable, a
//! data directory that fills up, a clock that makes every expiry wrong), and
//! an operator should be able to ask about all of them at once. It reads the
//! same flags and config file as `serve`, so it checks the deployment that
//! `serve` would run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::{ListenAddr, ServeConfig, UpstreamAddr};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do, for a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order an operator would fix them.
pub async fn run(config: Result<ServeConfig, String>) -> Vec<Check> {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "config",
                e,
                "correct the config file or flags (portcullis serve --help)",
            )]
        }
    };
    let mut checks = vec![Check::pass("config", "the config and flags parse")];
    let daemon_time = daemon(&config, &mut checks).await;
    if let UpstreamAddr::Unix(path) = &config.upstream {
        checks.push(socket_permissions(path));
    }
    checks.push(data_dir(&config));
    checks.push(chain(&config).await);
    checks.push(policies(&config));
    for spec in &config.listeners {
        checks.push(listener(spec));
    }
    checks.push(clock(daemon_time));
    checks
}

/// The daemon answers, with its version and API range; returns its clock.
async fn daemon(config: &ServeConfig, checks: &mut Vec<Check>) -> Option<SystemTime> {
    use http_body_util::BodyExt;
    let upstream = crate::forward::Upstream::new(config.upstream.clone());
    // A socket that accepts and never answers must not hang the doctor.
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        crate::server::daemon_versions(&upstream),
    )
    .await
    .ok()
    .flatten();
    let Some(range) = answered else {
        checks.push(Check::fail(
            "daemon",
            format!(
                "the Docker daemon at {} does not answer /version",
                config.upstream
            ),
            "start dockerd, or point --upstream (PORTCULLIS_UPSTREAM) at its socket",
        ));
        return None;
    };
    let mut detail = format!("{} answers, API {range}", config.upstream);
    let mut clock = None;
    if let Ok(req) = http::Request::get("/version").body(()) {
        let (parts, _) = req.into_parts();
        if let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_secs(5),
            upstream.send(parts, "/version", crate::reply::empty()),
        )
        .await
        {
            clock = resp
                .headers()
                .get(http::header::DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(httpdate);
            if let Ok(body) = resp.into_body().collect().await {
                let v: serde_json::Value =
                    serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
                if let Some(version) = v.get("Version").and_then(|v| v.as_str()) {
                    detail = format!("{} answers: Docker {version}, API {range}", config.upstream);
                }
            }
        }
    }
    checks.push(Check::pass("daemon", detail));
    clock
}

/// An RFC 7231 date (`Thu, 03 Dec 2026 07:00:00 GMT`).
fn httpdate(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(text, &format).ok()?;
    let secs = dt.assume_utc().unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// Who else reaches docker.sock directly: anyone who does bypasses portcullis.
fn socket_permissions(path: &Path) -> Check {
    const NAME: &str = "docker.sock";
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{}: {e}", path.display()),
                "point --upstream at the daemon's socket",
            )
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten();
    let group_name = group
        .as_ref()
        .map(|g| g.name.clone())
        .unwrap_or_else(|| meta.gid().to_string());
    if mode & 0o006 != 0 {
        return Check::fail(
            NAME,
            format!(
                "{} is mode {mode:o}: every local user reaches the daemon directly, bypassing portcullis",
                path.display()
            ),
            format!("chmod 660 {}", path.display()),
        );
    }
    let members = group
        .map(|g| g.mem)
        .filter(|m| !m.is_empty())
        .map(|m| {
            format!(
                "; members of group {group_name} reach it directly too: {}",
                m.join(", ")
            )
        })
        .unwrap_or_default();
    Check::pass(
        NAME,
        format!(
            "{} is mode {mode:o}, group {group_name}{members}",
            path.display()
        ),
    )
}

/// The data directory exists or can be made, is writable, and has room.
fn data_dir(config: &ServeConfig) -> Check {
    const NAME: &str = "data directory";
    let dir = &config.data_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::fail(
            NAME,
            format!("cannot create {}: {e}", dir.display()),
            "create it, writable by the user portcullis runs as, or choose --data-dir",
        );
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        return Check::fail(
            NAME,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "chown the directory to the user portcullis runs as: {}",
                dir.display()
            ),
        );
    }
    let _ = std::fs::remove_file(&probe);
    // Space an unprivileged writer may use: what `df` shows as available.
    #[allow(clippy::unnecessary_cast)] // the statvfs fields are u64 on 64-bit targets only
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64)
        .map_err(std::io::Error::from);
    match free {
        Ok(free) if free < config.audit_min_free => Check::fail(
            NAME,
            format!(
                "{}: {} MiB free, under the reserve of {} MiB: every request would be refused",
                dir.display(),
                free >> 20,
                config.audit_min_free >> 20
            ),
            "free space on that disk, or move --data-dir",
        ),
        Ok(free) => Check::pass(
            NAME,
            format!("{} is writable, {} MiB free", dir.display(), free >> 20),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot read free space of {}: {e}", dir.display()),
            "check the file system",
        ),
    }
}

/// The whole chain: offline when no server holds the data directory, else
/// through the running server's admin API.
async fn chain(config: &ServeConfig) -> Check {
    const NAME: &str = "decision log";
    if !config.data_dir.join("db").exists() && !config.data_dir.join("conf").exists() {
        return Check::pass(NAME, "empty (no log yet)");
    }
    let report = match crate::record::verify_offline(&config.data_dir) {
        Ok(r) => serde_json::to_value(r).unwrap_or_default(),
        Err(e) if e.to_string().contains("is portcullis running") => {
            match through_server(config).await {
                Ok(v) => v,
                Err(e) => {
                    return Check::fail(
                        NAME,
                        format!("the log is held by a running server that does not answer: {e}"),
                        "check that server, or stop it and run doctor again",
                    )
                }
            }
        }
        Err(e) => {
            return Check::fail(
                NAME,
                e.to_string(),
                "run `portcullis audit verify --data-dir DIR` and keep the evidence",
            )
        }
    };
    match report.get("broken").filter(|b| !b.is_null()) {
        Some(b) => Check::fail(
            NAME,
            format!("the hash chain is broken: {b}"),
            "keep a copy of the data directory as evidence; see `portcullis audit verify`",
        ),
        None => Check::pass(
            NAME,
            format!(
                "the whole chain verifies ({} records)",
                report
                    .get("records")
                    .or_else(|| report.get("checked"))
                    .cloned()
                    .unwrap_or_default()
            ),
        ),
    }
}

async fn through_server(config: &ServeConfig) -> anyhow::Result<serde_json::Value> {
    let socket = config
        .listeners
        .iter()
        .find_map(|l| match &l.addr {
            ListenAddr::Unix(p) if l.caller.is_none() => Some(p.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no unpinned unix listener to ask"))?;
    let client = crate::admin::cli::AdminClient::new(&crate::admin::cli::ServerArgs {
        host: Some(UpstreamAddr::Unix(socket)),
        token: None,
    });
    client
        .call(http::Method::GET, "/api/v1/audit/verify", None)
        .await
}

fn policies(config: &ServeConfig) -> Check {
    const NAME: &str = "policies";
    let source = match crate::assemble::policy_source(config.policies.as_deref(), &config.template)
    {
        Ok(s) => s,
        Err(e) => return Check::fail(NAME, e.to_string(), "choose strict, standard or permissive"),
    };
    match crate::decide::policy_check(&source) {
        Ok(report) => Check::pass(
            NAME,
            format!(
                "{} files compile (version {})",
                report.files.len(),
                report.policy_hash
            ),
        ),
        Err(errors) => Check::fail(
            NAME,
            // One line: the compiler's messages span several.
            errors
                .iter()
                .map(|e| {
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("; "),
            "fix the policy (portcullis policy check); until then every request is refused",
        ),
    }
}

/// A listener's address, and for a unix socket that exists: its mode and owner.
fn listener(spec: &crate::config::ListenerSpec) -> Check {
    const NAME: &str = "listener";
    let pinned = spec
        .caller
        .as_deref()
        .map(|c| format!(", pinned to caller {c}"))
        .unwrap_or_default();
    match &spec.addr {
        ListenAddr::Unix(path) => match std::fs::metadata(path) {
            Ok(meta) => {
                let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| meta.uid().to_string());
                Check::pass(
                    NAME,
                    format!(
                        "{} is mode {:o}, owner {owner}{pinned}",
                        spec.label(),
                        meta.permissions().mode() & 0o777
                    ),
                )
            }
            Err(_) => Check::pass(NAME, format!("{} (not bound now){pinned}", spec.label())),
        },
        _ => Check::pass(NAME, format!("{}{pinned}", spec.label())),
    }
}

/// Expiry dates and record times are only as right as the clock: it must
/// be after this build's year and agree with the daemon's within a minute.
fn clock(daemon: Option<SystemTime>) -> Check {
    const NAME: &str = "clock";
    let now = SystemTime::now();
    let floor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01
    if now < floor {
        return Check::fail(
            NAME,
            "the system clock is before 2025",
            "set the clock (timedatectl, NTP)",
        );
    }
    match daemon {
        Some(theirs) => {
            let skew = now
                .duration_since(theirs)
                .or_else(|_| theirs.duration_since(now))
                .unwrap_or_default();
            if skew > Duration::from_secs(60) {
                Check::fail(
                    NAME,
                    format!("{} s apart from the daemon's clock", skew.as_secs()),
                    "synchronise the clocks (NTP)",
                )
            } else {
                Check::pass(
                    NAME,
                    format!("agrees with the daemon's within {} s", skew.as_secs()),
                )
            }
        }
        None => Check::pass(NAME, "plausible (the daemon's clock was not read)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let t = httpdate("Thu, 03 Dec 2026 07:00:00 GMT").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_796_281_200);
        assert!(httpdate("yesterday").is_none());
    }

    #[test]
    fn a_world_writable_socket_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c = socket_permissions(&path);
        assert!(!c.ok, "{c:?}");
        assert!(c.fix.unwrap().contains("chmod 660"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        assert!(socket_permissions(&path).ok);
    }
}
