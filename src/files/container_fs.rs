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

use std::collections::{HashMap, VecDeque};
use std::io::Read;

use base64::Engine;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ExecConfig, MountPoint};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::path::{child, file_name, join_segments, normalize_path, parent, segments};
use super::stat::{format_mode, parse_mode, unix_to_rfc3339, FileKind, PathStat};
use super::upload::UploadInspection;
use super::FileError;
use crate::decide::{FileContext, MountInfo};

/// Most symlinks followed while resolving one path (Linux's MAXSYMLINKS).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Most tar entries (the whole subtree) scanned for one listing. The daemon sends
/// every file below the directory, data included; past this the listing is
/// refused rather than returned incomplete.
pub const MAX_LIST_SCAN_ENTRIES: usize = 100_000;

/// Output kept from the delete exec, for error messages.
const MAX_EXEC_OUTPUT: usize = 4096;

/// A path with symlinks resolved inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The normalized requested path.
    pub requested: String,
    /// Every symlink followed, the final one included: the path the daemon reads.
    /// Components below the first missing one are appended as given.
    pub path: String,
    /// Stat of `path`; `None` when it does not exist.
    pub stat: Option<PathStat>,
    /// The deepest existing directory on the way (equals `path`'s parent when only
    /// the last component is missing); where a `createDirs` write is extracted.
    pub deepest_existing: String,
    /// Components below `deepest_existing` that do not exist yet.
    pub missing: Vec<String>,
    /// How many symlinks were followed.
    pub hops: usize,
}

/// One child in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListingEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    pub size: u64,
    /// Unix permissions, e.g. `"0644"`.
    pub mode: String,
    pub modified_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// A directory listing (direct children only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub path: String,
    pub entries: Vec<ListingEntry>,
}

/// A file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    pub path: String,
    pub content: String,
    /// `"utf-8"` when the bytes are valid UTF-8, else `"base64"`.
    pub encoding: String,
    pub size: u64,
    pub mode: String,
    pub modified_at: Option<String>,
}

impl FileContent {
    /// The raw bytes back.
    pub fn bytes(&self) -> Result<Vec<u8>, FileError> {
        decode_content(&self.content, &self.encoding)
    }
}

/// The body of `PUT /api/v1/containers/{id}/files/write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteRequest {
    pub path: String,
    pub content: String,
    /// `"utf-8"` (default) or `"base64"`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Octal permissions, default `"0644"`.
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default)]
    pub create_dirs: bool,
}

fn default_encoding() -> String {
    "utf-8".to_string()
}

fn default_mode() -> String {
    "0644".to_string()
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResult {
    /// The normalized requested path.
    pub path: String,
    /// Where the file was written (parent symlinks resolved).
    pub resolved_path: String,
    pub size: u64,
    pub mode: String,
    /// False when an existing file was replaced.
    pub created: bool,
    /// Directories created on the way (with `createDirs`).
    pub created_dirs: Vec<String>,
}

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

    /// Resolve symlinks along `path` inside the container, one component at a
    /// time (relative and absolute targets, `..` handled physically, at most
    /// [`MAX_SYMLINK_HOPS`] links).
    pub async fn resolve(&self, container: &str, path: &str) -> Result<Resolved, FileError> {
        check_container_ref(container)?;
        resolve_with(path, |candidate| async move {
            self.stat(container, &candidate).await
        })
        .await
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

    /// Where each entry of an inspected `docker cp` upload really lands: the
    /// daemon follows symlinks that already exist in the container below the
    /// destination (but not an entry's own final component, which it replaces).
    /// Each distinct parent directory is resolved once; the result is in entry
    /// order, for `FileContext.entries` next to the lexical paths. Pass an
    /// inspection made against the *resolved* destination directory (the daemon
    /// resolves the whole destination path).
    pub async fn resolve_upload(
        &self,
        container: &str,
        inspection: &UploadInspection,
    ) -> Result<Vec<String>, FileError> {
        check_container_ref(container)?;
        let mut resolved_dirs: HashMap<String, String> = HashMap::new();
        let mut out = Vec::with_capacity(inspection.entries.len());
        for entry in &inspection.entries {
            let Some(name) = file_name(&entry.path) else {
                out.push(entry.path.clone());
                continue;
            };
            let dir = parent(&entry.path);
            if entry.path == inspection.dest_dir {
                // The destination itself (a `./` entry).
                out.push(entry.path.clone());
                continue;
            }
            let resolved_dir = match resolved_dirs.get(&dir) {
                Some(done) => done.clone(),
                None => {
                    let resolved = self.resolve(container, &dir).await?;
                    if resolved.stat.as_ref().is_some_and(|s| !s.is_dir()) {
                        return Err(FileError::Conflict(format!(
                            "upload entry {} needs {} to be a directory",
                            entry.path, resolved.path
                        )));
                    }
                    resolved_dirs.insert(dir.clone(), resolved.path.clone());
                    resolved.path
                }
            };
            out.push(child(&resolved_dir, name));
        }
        Ok(out)
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

    /// List the direct children of a directory. A symlink is not followed (409);
    /// pass [`Resolved::path`].
    pub async fn list(&self, container: &str, dir: &str) -> Result<Listing, FileError> {
        check_container_ref(container)?;
        let dir = normalize_path(dir)?;
        let reader = self.archive_reader(container, &dir).await?;
        let dir_for_task = dir.clone();
        let entries = tokio::task::spawn_blocking(move || {
            list_tar(reader, &dir_for_task, MAX_LIST_SCAN_ENTRIES)
        })
        .await
        .map_err(|e| FileError::Docker(format!("listing task failed: {e}")))??;
        Ok(Listing { path: dir, entries })
    }

    /// Read a regular file, up to `max_bytes` (400 "file larger than limit" above
    /// it). A symlink is not followed (409); pass [`Resolved::path`].
    pub async fn read(
        &self,
        container: &str,
        file: &str,
        max_bytes: u64,
    ) -> Result<FileContent, FileError> {
        check_container_ref(container)?;
        let file = normalize_path(file)?;
        let reader = self.archive_reader(container, &file).await?;
        let file_for_task = file.clone();
        let (header, data) = tokio::task::spawn_blocking(move || {
            read_first_entry(reader, &file_for_task, max_bytes)
        })
        .await
        .map_err(|e| FileError::Docker(format!("read task failed: {e}")))??;
        let (content, encoding) = match String::from_utf8(data) {
            Ok(text) => (text, "utf-8"),
            Err(not_utf8) => (
                base64::engine::general_purpose::STANDARD.encode(not_utf8.as_bytes()),
                "base64",
            ),
        };
        Ok(FileContent {
            path: file,
            content,
            encoding: encoding.to_string(),
            size: header.size,
            mode: header.mode,
            modified_at: header.modified_at,
        })
    }

    /// Write one file (see the module docs for what a concurrent reader may see).
    ///
    /// The parent is resolved (symlinks followed) and must be a directory (409) and
    /// exist (404) unless `create_dirs`, in which case the missing directories
    /// (mode 0755) travel in the same tar, extracted at the deepest existing one.
    /// The target may not be a directory or a symlink (409). The file is owned
    /// by root, as `docker cp` (without `-a`) leaves it: learning the old owner
    /// would cost a second archive download of the whole file.
    pub async fn write(
        &self,
        container: &str,
        request: &WriteRequest,
    ) -> Result<WriteResult, FileError> {
        check_container_ref(container)?;
        let path = normalize_path(&request.path)?;
        let name = file_name(&path)
            .ok_or_else(|| FileError::BadPath("cannot write to /".into()))?
            .to_string();
        let content = decode_content(&request.content, &request.encoding)?;
        let mode = parse_mode(&request.mode)?;

        let parent_dir = self.resolve(container, &parent(&path)).await?;
        match &parent_dir.stat {
            Some(stat) if stat.is_dir() => {}
            Some(_) => {
                return Err(FileError::Conflict(format!(
                    "parent of {path} is not a directory: {}",
                    parent_dir.path
                )))
            }
            None if !request.create_dirs => {
                return Err(FileError::NotFound(format!(
                    "parent directory {} does not exist (set createDirs to create it)",
                    parent_dir.requested
                )))
            }
            None => {}
        }
        let resolved_path = child(&parent_dir.path, &name);
        let existing = if parent_dir.stat.is_some() {
            self.stat(container, &resolved_path).await?
        } else {
            None
        };
        let owner = match &existing {
            None => (0, 0),
            Some(stat) => match stat.kind {
                FileKind::File => (0, 0),
                FileKind::Directory => {
                    return Err(FileError::Conflict(format!(
                        "{path} is a directory; only files can be written"
                    )))
                }
                FileKind::Symlink => {
                    return Err(FileError::Conflict(format!(
                        "{path} is a symbolic link to {}; write to the target instead",
                        stat.link_target.as_deref().unwrap_or("?")
                    )))
                }
                FileKind::Other => {
                    return Err(FileError::Conflict(format!("{path} is not a regular file")))
                }
            },
        };

        let extract_at = parent_dir.deepest_existing.clone();
        let mut builder = tar::Builder::new(Vec::new());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut relative: Vec<String> = Vec::new();
        let mut created_dirs = Vec::new();
        for dir in &parent_dir.missing {
            relative.push(dir.clone());
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_mtime(now);
            header.set_uid(0);
            header.set_gid(0);
            builder
                .append_data(&mut header, relative.join("/"), std::io::empty())
                .map_err(|e| FileError::BadRequest(format!("cannot build tar: {e}")))?;
            let mut full = segments(&extract_at)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            full.extend(relative.iter().cloned());
            created_dirs.push(join_segments(&full));
        }
        relative.push(name.clone());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_size(content.len() as u64);
        header.set_mtime(now);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        builder
            .append_data(&mut header, relative.join("/"), content.as_slice())
            .map_err(|e| FileError::BadRequest(format!("cannot build tar: {e}")))?;
        let tar_bytes = builder
            .into_inner()
            .map_err(|e| FileError::BadRequest(format!("cannot build tar: {e}")))?;

        let options = UploadToContainerOptions {
            path: extract_at.clone(),
            no_overwrite_dir_non_dir: Some("true".to_string()),
            copy_uidgid: None,
        };
        self.docker
            .upload_to_container(
                container,
                Some(options),
                bollard::body_full(Bytes::from(tar_bytes)),
            )
            .await
            .map_err(|e| map_docker_error(e, container, &extract_at))?;
        Ok(WriteResult {
            path,
            // Equals extract_at + the created directories + the name.
            resolved_path,
            size: content.len() as u64,
            mode: format_mode(mode),
            created: existing.is_none(),
            created_dirs,
        })
    }

    /// Delete one file (or symlink) with the container's own `rm -f -- PATH`, run
    /// as root through exec (no shell). 404 when the path does not exist, 409 for
    /// a directory, a container that is not running, or one without `rm`.
    pub async fn delete(&self, container: &str, file: &str) -> Result<(), FileError> {
        check_container_ref(container)?;
        let file = normalize_path(file)?;
        match self.stat(container, &file).await? {
            None => return Err(FileError::NotFound(file)),
            Some(stat) if stat.is_dir() => {
                return Err(FileError::Conflict(format!(
                    "{file} is a directory; only files can be deleted"
                )))
            }
            Some(_) => {}
        }
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| map_docker_error(e, container, &file))?;
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) || state.paused == Some(true) {
            return Err(FileError::Conflict(
                "container is not running; delete needs the container's own rm".to_string(),
            ));
        }
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    cmd: Some(vec![
                        "rm".to_string(),
                        "-f".to_string(),
                        "--".to_string(),
                        file.clone(),
                    ]),
                    user: Some("0".to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(false),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError {
                    status_code: 409, ..
                } => FileError::Conflict(
                    "container is not running; delete needs the container's own rm".to_string(),
                ),
                other => map_docker_error(other, container, &file),
            })?;
        let mut output = Vec::new();
        match self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| map_docker_error(e, container, &file))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(item) = stream.next().await {
                    let item = item.map_err(|e| FileError::Docker(format!("exec output: {e}")))?;
                    let bytes = item.into_bytes();
                    let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            StartExecResults::Detached => {}
        }
        let exit_code = self.exec_exit_code(&exec.id).await?;
        let output = String::from_utf8_lossy(&output).trim().to_string();
        match exit_code {
            0 => {}
            126 | 127 => {
                return Err(FileError::Conflict(format!(
                    "the container has no usable rm (exit {exit_code}); delete needs the container's own rm: {output}"
                )))
            }
            code => {
                return Err(FileError::Docker(format!(
                    "rm -f -- {file} exited with {code}: {output}"
                )))
            }
        }
        // rm -f exits 0 in more cases than "removed"; make sure it is gone.
        if self.stat(container, &file).await?.is_some() {
            return Err(FileError::Docker(format!(
                "{file} still exists after rm: {output}"
            )));
        }
        Ok(())
    }

    /// Wait (briefly) for the exec to be reported finished and return its code.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<i64, FileError> {
        for _ in 0..50 {
            let inspect = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| FileError::Docker(format!("exec inspect: {e}")))?;
            if inspect.running != Some(true) {
                return inspect.exit_code.ok_or_else(|| {
                    FileError::Docker("exec finished without an exit code".to_string())
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(FileError::Docker(
            "rm did not finish within 5 seconds".to_string(),
        ))
    }

    async fn ensure_container_exists(&self, container: &str) -> Result<(), FileError> {
        match self.docker.inspect_container(container, None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(map_docker_error(e, container, "/")),
        }
    }

    /// Start `GET .../archive` and hand back a blocking reader over the tar. The
    /// first chunk is awaited here so that "no such file" and "no such container"
    /// come back as proper errors rather than as a broken tar.
    async fn archive_reader(
        &self,
        container: &str,
        path: &str,
    ) -> Result<BlockingStreamReader, FileError> {
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = Box::pin(
            self.docker
                .download_from_container(container, Some(options)),
        );
        let first = match stream.next().await {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return Err(map_docker_error(e, container, path)),
            None => Bytes::new(),
        };
        Ok(BlockingStreamReader {
            stream,
            current: first,
            handle: tokio::runtime::Handle::current(),
        })
    }
}

/// The resolution walk of [`ContainerFs::resolve`], over any stat function (so the
/// walk itself can be tested without a daemon).
pub(crate) async fn resolve_with<F, Fut>(path: &str, mut stat: F) -> Result<Resolved, FileError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<PathStat>, FileError>>,
{
    let requested = normalize_path(path)?;
    let mut pending: VecDeque<String> =
        segments(&requested).into_iter().map(String::from).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0usize;
    let mut last_stat: Option<PathStat> = None;
    while let Some(segment) = pending.pop_front() {
        match segment.as_str() {
            "" | "." => continue,
            ".." => {
                // `done` holds only resolved directories, so this is physical.
                done.pop();
                last_stat = None;
                continue;
            }
            _ => {}
        }
        let mut candidate = done.clone();
        candidate.push(segment.clone());
        let candidate_path = join_segments(&candidate);
        let Some(stat) = stat(candidate_path.clone()).await? else {
            let deepest_existing = join_segments(&done);
            let mut missing = vec![segment];
            missing.extend(pending.drain(..).filter(|s| !s.is_empty() && s != "."));
            if missing.iter().any(|s| s == "..") {
                // Only reachable through a link target; its meaning below a
                // missing directory is undefined, so refuse.
                return Err(FileError::BadPath(format!(
                    "{requested}: a symlink target climbs out of a missing directory"
                )));
            }
            let mut full = done.clone();
            full.extend(missing.iter().cloned());
            return Ok(Resolved {
                requested,
                path: join_segments(&full),
                stat: None,
                deepest_existing,
                missing,
                hops,
            });
        };
        match stat.kind {
            FileKind::Symlink => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(FileError::BadPath(format!(
                        "{requested}: too many levels of symbolic links (more than {MAX_SYMLINK_HOPS})"
                    )));
                }
                let target = stat.link_target.clone().ok_or_else(|| {
                    FileError::Docker(format!(
                        "{candidate_path} is a symlink but the daemon gave no target"
                    ))
                })?;
                if target.starts_with('/') {
                    done.clear();
                }
                for part in target.split('/').rev() {
                    pending.push_front(part.to_string());
                }
                last_stat = None;
            }
            FileKind::Directory => {
                done.push(segment);
                last_stat = Some(stat);
            }
            FileKind::File | FileKind::Other => {
                done.push(segment);
                if pending.iter().any(|s| !s.is_empty() && s != ".") {
                    return Err(FileError::Conflict(format!(
                        "{requested}: {} is not a directory",
                        join_segments(&done)
                    )));
                }
                last_stat = Some(stat);
            }
        }
    }
    let resolved = join_segments(&done);
    let stat = match last_stat {
        Some(stat) => Some(stat),
        // `/`, or a path that ended on `..`: stat what we reached.
        None => stat(resolved.clone()).await?,
    };
    Ok(Resolved {
        requested,
        deepest_existing: if stat.as_ref().is_some_and(PathStat::is_dir) {
            resolved.clone()
        } else {
            parent(&resolved)
        },
        path: resolved,
        stat,
        missing: Vec::new(),
        hops,
    })
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

fn tar_error(error: std::io::Error) -> FileError {
    FileError::Docker(format!("bad tar from the daemon: {error}"))
}

pub(crate) fn decode_content(content: &str, encoding: &str) -> Result<Vec<u8>, FileError> {
    match encoding.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Ok(content.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|e| FileError::BadRequest(format!("content is not valid base64: {e}"))),
        other => Err(FileError::BadRequest(format!(
            "encoding must be \"utf-8\" or \"base64\", got {other:?}"
        ))),
    }
}

/// A blocking [`Read`] over the daemon's byte stream, for the `tar` crate. Used
/// only inside `spawn_blocking`; dropping it drops the HTTP response, which stops
/// the transfer early.
struct BlockingStreamReader {
    stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BollardError>> + Send>>,
    current: Bytes,
    handle: tokio::runtime::Handle,
}

impl Read for BlockingStreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Header facts of a tar entry in API form.
#[derive(Debug)]
struct EntryFacts {
    kind: FileKind,
    size: u64,
    mode: String,
    modified_at: Option<String>,
    link_target: Option<String>,
}

fn entry_facts(header: &tar::Header) -> Result<EntryFacts, FileError> {
    let entry_type = header.entry_type();
    let kind = if entry_type.is_dir() {
        FileKind::Directory
    } else if entry_type.is_symlink() {
        FileKind::Symlink
    } else if entry_type.is_file() || entry_type.is_hard_link() {
        FileKind::File
    } else {
        FileKind::Other
    };
    let link_target = if kind == FileKind::Symlink {
        header
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    Ok(EntryFacts {
        kind,
        size: header.size().map_err(tar_error)?,
        mode: format_mode(header.mode().map_err(tar_error)?),
        modified_at: header.mtime().ok().and_then(unix_to_rfc3339),
        link_target,
    })
}

/// Segments of a tar entry name, ignoring `.` and empty parts.
fn name_segments(name: &str) -> Vec<&str> {
    name.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

fn list_tar(
    reader: impl Read,
    dir: &str,
    max_scanned: usize,
) -> Result<Vec<ListingEntry>, FileError> {
    let mut archive = tar::Archive::new(reader);
    let mut root: Option<Vec<String>> = None;
    let mut out = Vec::new();
    for (scanned, entry) in archive.entries().map_err(tar_error)?.enumerate() {
        if scanned >= max_scanned {
            return Err(FileError::Conflict(format!(
                "{dir} has more than {max_scanned} entries below it; too large to list through the archive API"
            )));
        }
        let entry = entry.map_err(tar_error)?;
        let name_bytes = entry.path_bytes();
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        let facts = entry_facts(entry.header())?;
        let segs: Vec<String> = name_segments(&name).into_iter().map(String::from).collect();
        let Some(root_segs) = &root else {
            match facts.kind {
                FileKind::Directory => {}
                FileKind::Symlink => {
                    return Err(FileError::Conflict(format!(
                        "{dir} is a symbolic link to {}; list the resolved path",
                        facts.link_target.as_deref().unwrap_or("?")
                    )))
                }
                _ => return Err(FileError::Conflict(format!("{dir} is not a directory"))),
            }
            root = Some(segs);
            continue;
        };
        // Direct children only: one segment below the root entry. Deeper entries'
        // data is skipped by the tar reader without being kept.
        if segs.len() == root_segs.len() + 1 && segs.starts_with(root_segs) {
            out.push(ListingEntry {
                name: segs[segs.len() - 1].clone(),
                kind: facts.kind,
                size: if facts.kind == FileKind::Directory {
                    0
                } else {
                    facts.size
                },
                mode: facts.mode,
                modified_at: facts.modified_at,
                link_target: facts.link_target,
            });
        }
    }
    if root.is_none() {
        return Err(FileError::Docker(format!("empty archive for {dir}")));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_first_entry(
    reader: impl Read,
    file: &str,
    max_bytes: u64,
) -> Result<(EntryFacts, Vec<u8>), FileError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(tar_error)?;
    let entry = entries
        .next()
        .ok_or_else(|| FileError::Docker(format!("empty archive for {file}")))?
        .map_err(tar_error)?;
    let facts = entry_facts(entry.header())?;
    match facts.kind {
        FileKind::File if entry.header().entry_type().is_file() => {}
        FileKind::Directory => {
            return Err(FileError::Conflict(format!(
                "{file} is a directory; list it instead"
            )))
        }
        FileKind::Symlink => {
            return Err(FileError::Conflict(format!(
                "{file} is a symbolic link to {}; read the resolved path",
                facts.link_target.as_deref().unwrap_or("?")
            )))
        }
        _ => return Err(FileError::Conflict(format!("{file} is not a regular file"))),
    }
    if facts.size > max_bytes {
        return Err(FileError::TooLarge {
            size: facts.size,
            limit: max_bytes,
        });
    }
    let mut data = Vec::with_capacity(facts.size as usize);
    entry
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(tar_error)?;
    if data.len() as u64 > max_bytes {
        return Err(FileError::TooLarge {
            size: data.len() as u64,
            limit: max_bytes,
        });
    }
    Ok((facts, data))
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

    /// An in-memory container filesystem: path -> (kind, link target).
    fn fake_fs(entries: &[(&str, FileKind, &str)]) -> std::collections::HashMap<String, PathStat> {
        entries
            .iter()
            .map(|(path, kind, target)| {
                let go_mode = match kind {
                    FileKind::Directory => (1 << 31) | 0o755,
                    FileKind::Symlink => (1 << 27) | 0o777,
                    _ => 0o644,
                };
                let stat = PathStat::from_parts(
                    file_name(path).unwrap_or("/").to_string(),
                    0,
                    go_mode,
                    None,
                    target,
                );
                (path.to_string(), stat)
            })
            .collect()
    }

    fn resolve_in(
        fs: &std::collections::HashMap<String, PathStat>,
        path: &str,
    ) -> Result<Resolved, FileError> {
        let lookups = std::cell::Cell::new(0usize);
        let result = futures_util::FutureExt::now_or_never(resolve_with(path, |p| {
            lookups.set(lookups.get() + 1);
            let found = fs.get(&p).cloned();
            async move { Ok(found) }
        }))
        .expect("fake stat never waits");
        assert!(lookups.get() < 200, "bounded number of stats");
        result
    }

    #[test]
    fn resolve_follows_relative_links_physically() {
        let fs = fake_fs(&[
            ("/", FileKind::Directory, ""),
            ("/a", FileKind::Directory, ""),
            ("/a/l1", FileKind::Symlink, "sub/l2"),
            ("/a/sub", FileKind::Directory, ""),
            ("/a/sub/l2", FileKind::Symlink, "../../data"),
            ("/data", FileKind::Directory, ""),
            ("/data/cfg.md", FileKind::File, ""),
            ("/app", FileKind::Directory, ""),
            ("/app/cfg", FileKind::Symlink, "/data/cfg.md"),
        ]);
        let r = resolve_in(&fs, "/a/l1/cfg.md").unwrap();
        assert_eq!(r.path, "/data/cfg.md");
        assert_eq!(r.hops, 2);
        assert_eq!(r.stat.as_ref().unwrap().kind, FileKind::File);
        assert_eq!(r.deepest_existing, "/data");

        // A final symlink is followed too.
        let r = resolve_in(&fs, "/app/cfg").unwrap();
        assert_eq!(r.path, "/data/cfg.md");
        assert_eq!(r.requested, "/app/cfg");

        // Missing tails are kept below the resolved prefix.
        let r = resolve_in(&fs, "/a/l1/new/file").unwrap();
        assert_eq!(r.path, "/data/new/file");
        assert_eq!(r.deepest_existing, "/data");
        assert_eq!(r.missing, ["new", "file"]);
        assert_eq!(r.stat, None);

        let r = resolve_in(&fs, "/").unwrap();
        assert_eq!(r.path, "/");
        assert!(r.stat.unwrap().is_dir());
    }

    #[test]
    fn resolve_refuses_loops_files_as_dirs_and_dotdot_below_missing() {
        let fs = fake_fs(&[
            ("/", FileKind::Directory, ""),
            ("/l1", FileKind::Symlink, "/l2"),
            ("/l2", FileKind::Symlink, "l1"),
            ("/etc", FileKind::Directory, ""),
            ("/etc/passwd", FileKind::File, ""),
            ("/odd", FileKind::Symlink, "missing/../etc"),
        ]);
        let err = resolve_in(&fs, "/l1/x").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("too many levels"), "{err}");
        let err = resolve_in(&fs, "/etc/passwd/x").unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        let err = resolve_in(&fs, "/odd/passwd").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resolve_in(&fs, "/etc/../x").unwrap_err().status(),
            StatusCode::BAD_REQUEST,
            "caller paths may not hold .."
        );
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

    #[test]
    fn content_encodings() {
        assert_eq!(
            decode_content("héllo", "utf-8").unwrap(),
            "héllo".as_bytes()
        );
        assert_eq!(decode_content("AAH/", "base64").unwrap(), vec![0, 1, 255]);
        assert_eq!(
            decode_content("!!", "base64").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            decode_content("x", "latin1").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn write_request_json_shape() {
        let req: WriteRequest = serde_json::from_str(
            r#"{"path":"/app/x","content":"hi","encoding":"utf-8","mode":"0600","createDirs":true}"#,
        )
        .unwrap();
        assert!(req.create_dirs);
        assert_eq!(req.mode, "0600");
        let defaults: WriteRequest =
            serde_json::from_str(r#"{"path":"/app/x","content":"hi"}"#).unwrap();
        assert_eq!(defaults.encoding, "utf-8");
        assert_eq!(defaults.mode, "0644");
        assert!(!defaults.create_dirs);
        assert!(
            serde_json::from_str::<WriteRequest>(r#"{"path":"/x","content":"","bogus":1}"#)
                .is_err()
        );
    }

    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            header.set_mtime(1_769_855_400);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, name, data).unwrap();
        };
        add("instructions/", tar::EntryType::Directory, 0o755, b"", "");
        add(
            "instructions/CLAUDE.md",
            tar::EntryType::Regular,
            0o644,
            b"# hi",
            "",
        );
        add(
            "instructions/prompts/",
            tar::EntryType::Directory,
            0o750,
            b"",
            "",
        );
        add(
            "instructions/prompts/deep.md",
            tar::EntryType::Regular,
            0o600,
            &[7; 2000],
            "",
        );
        add(
            "instructions/link",
            tar::EntryType::Symlink,
            0o777,
            b"",
            "/etc",
        );
        builder.into_inner().unwrap()
    }

    #[test]
    fn listing_keeps_direct_children_only() {
        let entries = list_tar(&sample_tar()[..], "/app/instructions", 100).unwrap();
        let err = list_tar(&sample_tar()[..], "/app/instructions", 4).unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert!(err.to_string().contains("more than 4 entries"), "{err}");
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["CLAUDE.md", "link", "prompts"]);
        assert_eq!(entries[0].kind, FileKind::File);
        assert_eq!(entries[0].size, 4);
        assert_eq!(entries[0].mode, "0644");
        assert_eq!(
            entries[0].modified_at.as_deref(),
            Some("2026-01-31T10:30:00Z")
        );
        assert_eq!(entries[1].kind, FileKind::Symlink);
        assert_eq!(entries[1].link_target.as_deref(), Some("/etc"));
        assert_eq!(entries[2].kind, FileKind::Directory);
        assert_eq!(entries[2].mode, "0750");
        let json = serde_json::to_value(&entries[1]).unwrap();
        assert_eq!(json["type"], "symlink");
        assert_eq!(json["linkTarget"], "/etc");
    }

    #[test]
    fn reading_a_directory_tar_is_a_conflict_and_limits_apply() {
        let err = read_first_entry(&sample_tar()[..], "/app/instructions", 100).unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(10);
        header.set_mode(0o640);
        builder
            .append_data(&mut header, "f", &b"0123456789"[..])
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let (facts, data) = read_first_entry(&bytes[..], "/f", 10).unwrap();
        assert_eq!(data, b"0123456789");
        assert_eq!(facts.mode, "0640");
        let err = read_first_entry(&bytes[..], "/f", 9).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("file larger than limit"));
    }
}
