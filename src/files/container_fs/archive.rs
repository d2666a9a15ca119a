//! Tar streaming over the daemon's archive API: list and read parse only tar
//! headers of the streamed `GET .../archive` answer (data is skipped, the
//! stream dropped as soon as the answer is known); write builds the small tar
//! a `PUT .../archive` extracts.

use std::io::Read;

use base64::Engine;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{
    check_container_ref, decode_content, map_docker_error, ContainerFs, FileContent, Listing,
    ListingEntry, WriteRequest, WriteResult,
};
use crate::files::path::{child, file_name, join_segments, normalize_path, parent, segments};
use crate::files::stat::{format_mode, parse_mode, unix_to_rfc3339, FileKind};
use crate::files::FileError;

/// Most tar entries (the whole subtree) scanned for one listing. The daemon sends
/// every file below the directory, data included; past this the listing is
/// refused rather than returned incomplete.
pub const MAX_LIST_SCAN_ENTRIES: usize = 100_000;

impl ContainerFs {
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

    /// Start `GET .../archive` and hand back a blocking reader over the tar. The
    /// first chunk is awaited here so that "no such file" and "no such container"
    /// come back as proper errors rather than as a broken tar.
    async fn archive_reader(
        &self,
        container: &str,
        path: &str,
    ) -> Result<ArchiveReader, FileError> {
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
        let rest = stream.map(|item| item.map_err(|e| std::io::Error::other(e.to_string())));
        let body = futures_util::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed();
        Ok(SyncIoBridge::new(StreamReader::new(body)))
    }
}

fn tar_error(error: std::io::Error) -> FileError {
    FileError::Docker(format!("bad tar from the daemon: {error}"))
}

/// A blocking [`Read`] over the daemon's byte stream, for the `tar` crate. Used
/// only inside `spawn_blocking`; dropping it drops the HTTP response, which stops
/// the transfer early. Daemon errors come back as I/O errors (their message kept).
type ArchiveReader = SyncIoBridge<StreamReader<BoxStream<'static, std::io::Result<Bytes>>, Bytes>>;

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
