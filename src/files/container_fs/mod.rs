//! File operations inside a container, on the daemon's archive API.
//!
//! Why the archive API: it works without a shell or any tool in the container, on
//! stopped containers too, and it is the same surface `docker cp` uses, so one set
//! of rules covers both. Its limits shape this module:
//!
//! - **Stat** (`HEAD .../archive`) resolves parent symlinks but not the final one;
//!   [`ContainerFs::resolve`] walks the path one component at a time so the policy
//!   sees the path the daemon really touches.
//! - **Read and list** (`GET .../archive`) return a tar of the whole subtree. Only
//!   tar headers are parsed; entry data is skipped while streaming and the stream
//!   is dropped as soon as the answer is known, so listing a large directory or
//!   reading the first bytes of a large file does not buffer it.
//! - **Write** (`PUT .../archive`) extracts a tar into an existing directory. It is
//!   **not atomic**: moby (`pkg/archive.Unpack`) first removes an existing
//!   non-directory at the destination (`os.RemoveAll`), then creates a new file
//!   with `O_CREAT|O_WRONLY` and copies the data into it. A concurrent reader can
//!   therefore see the file missing (ENOENT) or see it partially written; a
//!   process that already had the old file open keeps reading the old content
//!   (it is a new inode); inotify watchers see a delete followed by a create and
//!   writes. A rename-into-place cannot be expressed through the archive API
//!   alone. A single-file bind mount cannot be replaced (the remove fails with
//!   EBUSY) and comes back as an error. We always send `noOverwriteDirNonDir`, so
//!   the daemon never removes a directory to put a file in its place.
//! - **Delete** has no archive operation: it runs the container's own
//!   `rm -f -- PATH` (argv, no shell) as root through exec. That needs a running
//!   container that ships `rm`; otherwise the error says so (409).
//!
//! Time-of-check to time-of-use: [`ContainerFs::resolve`] and the operation are
//! separate daemon calls, so a process inside the container could swap a
//! directory for a symlink in between. Callers should pass the *resolved* path
//! to the operations, which keeps that window to what the container itself can
//! change, and policies should treat containers' own writes as untrusted.
//!
//! The module is split along those seams: `types` (the API's request and
//! answer shapes), `walk` (symlink resolution), `archive` (tar streaming:
//! list, read, write) and `delete` (the exec-based delete). This file keeps
//! the handle itself, stat, mounts and the daemon-error mapping they share.

mod archive;
mod delete;
mod types;
mod walk;

use bollard::errors::Error as BollardError;
use bollard::models::MountPoint;
use bollard::query_parameters::ContainerArchiveInfoOptions;
use bollard::Docker;

pub use archive::MAX_LIST_SCAN_ENTRIES;
pub(crate) use types::decode_content;
pub use types::{FileContent, Listing, ListingEntry, Resolved, WriteRequest, WriteResult};
pub use walk::MAX_SYMLINK_HOPS;

use super::path::normalize_path;
use super::stat::PathStat;
use super::FileError;
use crate::decide::{FileContext, MountInfo};

/// File operations on containers of one daemon.
#[derive(Debug, Clone)]
pub struct ContainerFs {
    docker: Docker,
}

impl ContainerFs {
    pub fn new(docker: Docker) -> Self {
        ContainerFs { docker }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Stat one path (the final symlink is not followed). `None` when it does not
    /// exist; [`FileError::ContainerNotFound`] when the container does not.
    pub async fn stat(&self, container: &str, path: &str) -> Result<Option<PathStat>, FileError> {
        check_container_ref(container)?;
        let path = normalize_path(path)?;
        let options = ContainerArchiveInfoOptions { path: path.clone() };
        match self
            .docker
            .get_container_archive_info(container, Some(options))
            .await
        {
            Ok(raw) => Ok(Some(PathStat::from_parts(
                raw.name,
                raw.size,
                raw.file_mode,
                raw.modification_time.as_deref(),
                &raw.link_target,
            ))),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                // HEAD answers carry no body: ask whether the container exists.
                self.ensure_container_exists(container).await?;
                Ok(None)
            }
            Err(e) => Err(map_docker_error(e, container, &path)),
        }
    }

    /// The container's mounts, from inspect.
    pub async fn mounts(&self, container: &str) -> Result<Vec<MountPoint>, FileError> {
        check_container_ref(container)?;
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| map_docker_error(e, container, "/"))?;
        Ok(inspect.mounts.unwrap_or_default())
    }

    /// Everything the policy needs about one file action: the normalized path, the
    /// resolved path and the mount it falls in.
    pub async fn file_context(
        &self,
        container: &str,
        path: &str,
    ) -> Result<FileContext, FileError> {
        let resolved = self.resolve(container, path).await?;
        let mounts = self.mounts(container).await?;
        Ok(FileContext {
            mount: mount_for(&mounts, &resolved.path),
            path: resolved.requested,
            resolved_path: resolved.path,
            entries: Vec::new(),
        })
    }

    async fn ensure_container_exists(&self, container: &str) -> Result<(), FileError> {
        match self.docker.inspect_container(container, None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(map_docker_error(e, container, "/")),
        }
    }
}

/// The mount `resolved_path` falls in: the one with the longest destination that
/// is the path or a parent of it. Unknown `RW` counts as writable (the worst case).
pub fn mount_for(mounts: &[MountPoint], resolved_path: &str) -> Option<MountInfo> {
    mounts
        .iter()
        .filter_map(|mount| {
            let destination = normalize_path(mount.destination.as_deref()?).ok()?;
            super::path::is_within(resolved_path, &destination).then_some((destination, mount))
        })
        .max_by_key(|(destination, _)| destination.len())
        .map(|(destination, mount)| MountInfo {
            kind: mount.typ.clone().unwrap_or_else(|| "unknown".to_string()),
            source: mount
                .source
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| mount.name.clone())
                .unwrap_or_default(),
            destination,
            rw: mount.rw.unwrap_or(true),
        })
}

/// [`mount_for`] over the mounts a resolved target already carries
/// (`Target::mounts`), for when the daemon cannot be asked: while it streams a
/// container's archive it holds the container's lock, so an inspect would wait
/// for the end of that very stream.
pub fn mount_info_for(mounts: &[MountInfo], resolved_path: &str) -> Option<MountInfo> {
    mounts
        .iter()
        .filter_map(|mount| {
            let destination = normalize_path(&mount.destination).ok()?;
            super::path::is_within(resolved_path, &destination).then_some((destination, mount))
        })
        .max_by_key(|(destination, _)| destination.len())
        .map(|(destination, mount)| MountInfo {
            destination,
            ..mount.clone()
        })
}

/// Container names and ids go into the request path unescaped by bollard, so only
/// Docker's own name alphabet is accepted (no leading `/`: it would double the
/// slash in the daemon path).
fn check_container_ref(container: &str) -> Result<(), FileError> {
    let name = container;
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(FileError::BadRequest(format!(
            "invalid container name or id: {container:?}"
        )))
    }
}

fn map_docker_error(error: BollardError, container: &str, path: &str) -> FileError {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 if message.contains("No such container") => {
                FileError::ContainerNotFound(container.to_string())
            }
            404 => FileError::NotFound(path.to_string()),
            // Read-only rootfs/volume, "cannot overwrite directory", bad state.
            400 | 403 | 409 => FileError::Conflict(format!("{path}: {message}")),
            code => FileError::Docker(format!("{path}: daemon answered {code}: {message}")),
        },
        other => FileError::Docker(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn mount(kind: &str, source: &str, destination: &str, rw: Option<bool>) -> MountPoint {
        MountPoint {
            typ: Some(kind.to_string()),
            source: Some(source.to_string()),
            destination: Some(destination.to_string()),
            rw,
            ..Default::default()
        }
    }

    #[test]
    fn mount_for_picks_the_longest_destination() {
        let mounts = vec![
            mount(
                "volume",
                "/var/lib/docker/volumes/app/_data",
                "/app",
                Some(true),
            ),
            mount("bind", "/srv/config", "/app/config", Some(false)),
            mount("tmpfs", "", "/app/configx", None),
        ];
        let found = mount_for(&mounts, "/app/config/instructions/CLAUDE.md").unwrap();
        assert_eq!(found.kind, "bind");
        assert_eq!(found.source, "/srv/config");
        assert!(!found.rw);
        assert_eq!(mount_for(&mounts, "/app/other").unwrap().kind, "volume");
        let tmpfs = mount_for(&mounts, "/app/configx/a").unwrap();
        assert_eq!(tmpfs.kind, "tmpfs");
        assert!(tmpfs.rw, "unknown RW counts as writable");
        assert_eq!(mount_for(&mounts, "/etc/passwd"), None);
    }

    #[test]
    fn container_refs_are_checked() {
        for good in ["armory-ideation", "abc123", "named_one.x"] {
            assert!(check_container_ref(good).is_ok(), "{good}");
        }
        for bad in ["", "/leading", "a/b", "../x", "a?b", "-a", "a b", "a%2fb"] {
            assert_eq!(
                check_container_ref(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
