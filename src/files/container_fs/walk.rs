//! The symlink walk: the path the daemon will really touch, resolved one
//! component at a time inside the container (the archive API's stat does not
//! follow a final symlink), for single paths and for every entry of an upload.

use std::collections::{HashMap, VecDeque};

use super::{check_container_ref, ContainerFs, Resolved};
use crate::files::path::{child, file_name, join_segments, normalize_path, parent, segments};
use crate::files::stat::{FileKind, PathStat};
use crate::files::upload::UploadInspection;
use crate::files::FileError;

/// Most symlinks followed while resolving one path (Linux's MAXSYMLINKS).
pub const MAX_SYMLINK_HOPS: usize = 40;

impl ContainerFs {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

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
}
