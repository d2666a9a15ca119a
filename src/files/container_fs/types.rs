//! The file API's request and answer shapes (what a resolve, list, read or
//! write gives back, and the body a write takes), apart from the operations so
//! the serialized form is easy to review in one place.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::files::stat::{FileKind, PathStat};
use crate::files::FileError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

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
}
