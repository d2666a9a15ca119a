//! Path handling for container paths.
//!
//! [`normalize_path`] checks a path a caller sent to the *file API*. It rejects
//! `..` instead of resolving it, because a policy glob like `/app/config/**`
//! must see exactly the path that will be touched, and the file API promises
//! plain absolute paths. (`..` inside a symlink target the *container* holds is
//! real and is handled physically by `ContainerFs::resolve`.)
//!
//! [`archive_path`] reads the `path` of the daemon's archive routes (`docker cp`)
//! the way the daemon reads it: Go's `path.Join("/", path)`, so `..` is lexical
//! and a relative path is taken under the root. The decision is made on that
//! cleaned path, which is the one the daemon touches.
//!
//! Both clean with [`crate::classify::path::go_clean`], the one implementation
//! of Go's `path.Clean` in portcullis.

use super::FileError;
use crate::classify::path::{go_clean, rooted_clean};

/// Normalize a caller-supplied absolute container path.
///
/// Requires a leading `/`; rejects NUL bytes and any `..` segment; collapses
/// duplicate slashes and `.` segments; strips a trailing slash (except for `/`).
pub fn normalize_path(raw: &str) -> Result<String, FileError> {
    check_non_empty_without_nul(raw)?;
    if !raw.starts_with('/') {
        return Err(FileError::BadPath(format!(
            "path must be absolute (start with '/'): {raw:?}"
        )));
    }
    if raw.split('/').any(|segment| segment == "..") {
        return Err(FileError::BadPath(format!(
            "path may not contain '..' segments: {raw:?}"
        )));
    }
    Ok(go_clean(raw))
}

/// The path an archive request (`HEAD`/`GET`/`PUT /containers/{id}/archive`)
/// names, as the daemon cleans it before it resolves anything: `path` joined
/// under the root. Empty and NUL are refused (the daemon refuses them too).
pub fn archive_path(raw: &str) -> Result<String, FileError> {
    check_non_empty_without_nul(raw)?;
    Ok(rooted_clean(raw))
}

fn check_non_empty_without_nul(raw: &str) -> Result<(), FileError> {
    if raw.is_empty() {
        return Err(FileError::BadPath("path is empty".into()));
    }
    if raw.contains('\0') {
        return Err(FileError::BadPath("path contains a NUL byte".into()));
    }
    Ok(())
}

/// Split a normalized path into its segments (none for `/`).
pub(crate) fn segments(normalized: &str) -> Vec<&str> {
    normalized.split('/').filter(|s| !s.is_empty()).collect()
}

/// Build an absolute path from segments.
pub(crate) fn join_segments<S: AsRef<str>>(segments: &[S]) -> String {
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(segment.as_ref());
    }
    out
}

/// Parent directory of a normalized path (`/` is its own parent).
pub(crate) fn parent(normalized: &str) -> String {
    let segs = segments(normalized);
    if segs.is_empty() {
        return "/".to_string();
    }
    join_segments(&segs[..segs.len() - 1])
}

/// `dir/name` for a normalized `dir` and a single segment `name`.
pub(crate) fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Last segment of a normalized path (`None` for `/`).
pub(crate) fn file_name(normalized: &str) -> Option<&str> {
    segments(normalized).last().copied()
}

/// True when `path` is `dir` or lies under it (both normalized).
pub(crate) fn is_within(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return true;
    }
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn normalizes_duplicate_slashes_dots_and_trailing_slash() {
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("//").unwrap(), "/");
        assert_eq!(
            normalize_path("/app//config/./x/").unwrap(),
            "/app/config/x"
        );
        assert_eq!(normalize_path("/./a/.").unwrap(), "/a");
        assert_eq!(normalize_path("/a/b...c/..d").unwrap(), "/a/b...c/..d");
    }

    #[test]
    fn rejects_relative_dotdot_nul_and_empty() {
        for bad in ["", "app/x", "./x", "/a/../b", "/..", "/a/..", "/a\0b"] {
            let err = normalize_path(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert!(normalize_path("/a/../b")
            .unwrap_err()
            .to_string()
            .contains(".."));
        assert!(normalize_path("x")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(normalize_path("/a\0")
            .unwrap_err()
            .to_string()
            .contains("NUL"));
    }

    #[test]
    fn archive_paths_are_cleaned_as_the_daemon_cleans_them() {
        assert_eq!(
            archive_path("/app/config/instructions/../instructions/CLAUDE.md").unwrap(),
            "/app/config/instructions/CLAUDE.md"
        );
        assert_eq!(
            archive_path("/app/x/../../../etc/shadow").unwrap(),
            "/etc/shadow"
        );
        assert_eq!(archive_path("app/config/").unwrap(), "/app/config");
        assert_eq!(archive_path("/app/config/.").unwrap(), "/app/config");
        assert_eq!(archive_path("/..").unwrap(), "/");
        assert!(archive_path("").is_err());
        assert!(archive_path("/a\0b").is_err());
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(file_name("/a/b"), Some("b"));
        assert_eq!(file_name("/"), None);
    }

    #[test]
    fn within() {
        assert!(is_within("/app/x", "/app"));
        assert!(is_within("/app", "/app"));
        assert!(!is_within("/apple", "/app"));
        assert!(is_within("/anything", "/"));
    }
}
