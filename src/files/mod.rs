//! The file API: read, write, list and delete files inside containers, and the
//! checks `docker cp` uploads need.
//!
//! Why this module exists: the file API (`/api/v1/containers/{id}/files...`) and the
//! daemon's archive routes go through the same pipeline as every other request
//! (identify, classify, resolve, decide, record, forward). This module supplies the
//! file-specific pieces that pipeline calls:
//!
//! - [`normalize_path`]: the path a policy sees for the file API. Rejects instead
//!   of resolving `..`. [`archive_path`]: the path of a `docker cp` request, cleaned
//!   as the daemon cleans it (`..` is lexical there).
//! - [`ContainerFs::resolve`]: the path the daemon will really touch, with symlinks
//!   inside the container followed (a rule on the requested path alone can be
//!   escaped through a symlinked parent), and [`mount_for`] for the mount it falls
//!   in (bind mounts reach the host). Both go into `decide::FileContext`.
//! - [`ContainerFs`]: the operations, built only on the daemon's archive API (plus
//!   the container's own `rm` for delete, which the archive API cannot do).
//! - [`inspect_upload`]: every destination path and link target of a `docker cp`
//!   tar, so the policy can check each entry; compressed tars are refused
//!   (CVE-2026-41567: the daemon would run the container's decompressor as root).
//! - [`download`]: `docker cp` downloads filtered entry by entry (a tar stream
//!   filter), so a directory download hands out only what the rules allow.
//! - [`FileEvents`]: a broadcast of successful writes and deletes.
//!
//! Errors are [`FileError`], each with the HTTP status the API answers with.

mod container_fs;
pub mod download;
mod events;
mod path;
mod stat;
mod upload;

pub use container_fs::{
    mount_for, mount_info_for, ContainerFs, FileContent, Listing, ListingEntry, Resolved,
    WriteRequest, WriteResult, MAX_LIST_SCAN_ENTRIES, MAX_SYMLINK_HOPS,
};
pub use events::{FileAction, FileChanged, FileEvents};
pub use path::{archive_path, normalize_path};
pub use stat::{decode_stat_header, format_mode, parse_mode, FileKind, PathStat};
pub use upload::{inspect_upload, UploadEntry, UploadEntryKind, UploadInspection};

use http::StatusCode;

/// Everything that can go wrong in the file API, each mapped to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A caller path that is not absolute, holds `..` or NUL, ... (400)
    #[error("invalid path: {0}")]
    BadPath(String),
    /// Bad encoding, mode, archive, ... (400)
    #[error("{0}")]
    BadRequest(String),
    /// The file is over the caller's size limit (400).
    #[error("file larger than limit: {size} bytes > {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// The path does not exist in the container (404).
    #[error("no such file or directory in container: {0}")]
    NotFound(String),
    /// The container does not exist (404).
    #[error("no such container: {0}")]
    ContainerNotFound(String),
    /// The path exists but is the wrong kind, or the container is in the wrong
    /// state (409).
    #[error("{0}")]
    Conflict(String),
    /// The daemon failed or answered something unexpected (502).
    #[error("docker error: {0}")]
    Docker(String),
}

impl FileError {
    /// The HTTP status the file API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            FileError::BadPath(_) | FileError::BadRequest(_) | FileError::TooLarge { .. } => {
                StatusCode::BAD_REQUEST
            }
            FileError::NotFound(_) | FileError::ContainerNotFound(_) => StatusCode::NOT_FOUND,
            FileError::Conflict(_) => StatusCode::CONFLICT,
            FileError::Docker(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            FileError::BadPath("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            FileError::TooLarge { size: 2, limit: 1 }.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            FileError::TooLarge { size: 2, limit: 1 }.to_string(),
            "file larger than limit: 2 bytes > 1 bytes"
        );
        assert_eq!(
            FileError::NotFound("/x".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            FileError::ContainerNotFound("c".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            FileError::Conflict("d".into()).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            FileError::Docker("e".into()).status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
