//! What the daemon says about one path: the `X-Docker-Container-Path-Stat` header.
//!
//! The header is base64 of `{name,size,mode,mtime,linkTarget}` where `mode` is a Go
//! `os.FileMode`: the type lives in the high bits (directory = bit 31, symlink =
//! bit 27, ...), the Unix permissions in the low 9 bits (plus setuid/setgid/sticky
//! as bits 23/22/20, not the Unix positions).

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::FileError;

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;
const GO_MODE_IRREGULAR: u32 = 1 << 19;

/// The kind of filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// Devices, pipes, sockets: never read or written by the file API.
    Other,
}

/// A decoded path stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathStat {
    /// Base name as the daemon reports it.
    pub name: String,
    pub size: i64,
    pub kind: FileKind,
    /// Unix permission bits plus setuid/setgid/sticky at their Unix positions.
    pub permissions: u32,
    /// The raw Go `os.FileMode`.
    pub go_mode: u32,
    /// RFC 3339 (UTC), when the daemon gave a parsable time.
    pub modified_at: Option<String>,
    /// For a symlink: the daemon's target (moby reports it already resolved to an
    /// absolute path inside the container; a relative one is handled too).
    pub link_target: Option<String>,
}

impl PathStat {
    /// Build from the raw fields of the stat JSON.
    pub fn from_parts(
        name: String,
        size: i64,
        go_mode: u32,
        mtime: Option<&str>,
        link_target: &str,
    ) -> Self {
        PathStat {
            name,
            size,
            kind: kind_from_go_mode(go_mode),
            permissions: unix_permissions_from_go_mode(go_mode),
            go_mode,
            modified_at: mtime.and_then(to_rfc3339_utc),
            link_target: (!link_target.is_empty()).then(|| link_target.to_string()),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// Permissions as the API shows them, e.g. `"0644"`.
    pub fn mode_string(&self) -> String {
        format_mode(self.permissions)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPathStat {
    name: String,
    size: i64,
    mode: u32,
    #[serde(default)]
    mtime: Option<String>,
    #[serde(default)]
    link_target: String,
}

/// Decode an `X-Docker-Container-Path-Stat` header value.
pub fn decode_stat_header(value: &str) -> Result<PathStat, FileError> {
    let json = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| FileError::Docker(format!("path stat header is not base64: {e}")))?;
    let raw: RawPathStat = serde_json::from_slice(&json).map_err(|e| {
        FileError::Docker(format!("path stat header is not the expected JSON: {e}"))
    })?;
    Ok(PathStat::from_parts(
        raw.name,
        raw.size,
        raw.mode,
        raw.mtime.as_deref(),
        &raw.link_target,
    ))
}

/// The object type encoded in a Go `os.FileMode`.
pub fn kind_from_go_mode(mode: u32) -> FileKind {
    if mode & GO_MODE_DIR != 0 {
        FileKind::Directory
    } else if mode & GO_MODE_SYMLINK != 0 {
        FileKind::Symlink
    } else if mode
        & (GO_MODE_DEVICE
            | GO_MODE_NAMED_PIPE
            | GO_MODE_SOCKET
            | GO_MODE_CHAR_DEVICE
            | GO_MODE_IRREGULAR)
        != 0
    {
        FileKind::Other
    } else {
        FileKind::File
    }
}

/// Unix permission bits (with setuid 0o4000, setgid 0o2000, sticky 0o1000) from a
/// Go `os.FileMode`, whose special bits sit elsewhere.
pub fn unix_permissions_from_go_mode(mode: u32) -> u32 {
    let mut perms = mode & 0o777;
    if mode & GO_MODE_SETUID != 0 {
        perms |= 0o4000;
    }
    if mode & GO_MODE_SETGID != 0 {
        perms |= 0o2000;
    }
    if mode & GO_MODE_STICKY != 0 {
        perms |= 0o1000;
    }
    perms
}

/// `0o644` -> `"0644"`.
pub fn format_mode(permissions: u32) -> String {
    format!("{:04o}", permissions & 0o7777)
}

/// Parse an API mode string like `"0644"` or `"755"`. Only permission bits are
/// accepted: setuid/setgid/sticky would let a file writer plant privilege
/// escalation inside the container, so they are refused (fail closed).
pub fn parse_mode(text: &str) -> Result<u32, FileError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(FileError::BadRequest(format!(
            "mode must be octal permission bits like \"0644\", got {text:?}"
        )));
    }
    let value = u32::from_str_radix(digits, 8)
        .map_err(|e| FileError::BadRequest(format!("mode {text:?} is not octal: {e}")))?;
    if value & !0o777 != 0 {
        return Err(FileError::BadRequest(format!(
            "mode {text:?} carries setuid/setgid/sticky bits, which the file API refuses"
        )));
    }
    Ok(value)
}

/// Re-format a daemon time (Go RFC 3339 with nanoseconds and any offset) as RFC 3339 UTC.
pub(crate) fn to_rfc3339_utc(text: &str) -> Option<String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    parsed.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// Unix seconds (as in a tar header) to RFC 3339 UTC.
pub(crate) fn unix_to_rfc3339(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn header_for(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    #[test]
    fn decodes_a_directory() {
        // Go: os.ModeDir | 0755 = 2147484141
        let header = header_for(
            r#"{"name":"config","size":4096,"mode":2147484141,"mtime":"2026-01-31T10:30:00.123456789+01:00","linkTarget":""}"#,
        );
        let stat = decode_stat_header(&header).unwrap();
        assert_eq!(stat.kind, FileKind::Directory);
        assert_eq!(stat.permissions, 0o755);
        assert_eq!(stat.mode_string(), "0755");
        assert_eq!(
            stat.modified_at.as_deref(),
            Some("2026-01-31T09:30:00.123456789Z")
        );
        assert_eq!(stat.link_target, None);
        assert!(stat.is_dir());
    }

    #[test]
    fn decodes_a_symlink_and_a_file() {
        // os.ModeSymlink | 0777 = 134218239
        let link = decode_stat_header(&header_for(
            r#"{"name":"link","size":4,"mode":134218239,"mtime":"2026-01-31T10:30:00Z","linkTarget":"/etc"}"#,
        ))
        .unwrap();
        assert_eq!(link.kind, FileKind::Symlink);
        assert_eq!(link.link_target.as_deref(), Some("/etc"));
        assert_eq!(link.permissions, 0o777);

        let file = decode_stat_header(&header_for(
            r#"{"name":"CLAUDE.md","size":12,"mode":420,"mtime":"2026-01-31T10:30:00Z","linkTarget":""}"#,
        ))
        .unwrap();
        assert_eq!(file.kind, FileKind::File);
        assert_eq!(file.mode_string(), "0644");
        assert_eq!(file.size, 12);
    }

    #[test]
    fn special_bits_move_to_unix_positions() {
        // setuid | 0755
        let mode = (1 << 23) | 0o755;
        assert_eq!(unix_permissions_from_go_mode(mode), 0o4755);
        assert_eq!(kind_from_go_mode(mode), FileKind::File);
        // ModeDevice | ModeCharDevice | 0666 (/dev/null)
        assert_eq!(
            kind_from_go_mode((1 << 26) | (1 << 21) | 0o666),
            FileKind::Other
        );
        assert_eq!(kind_from_go_mode(1 << 25), FileKind::Other);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(decode_stat_header("%%%").is_err());
        assert!(decode_stat_header(&header_for("{\"name\":1}")).is_err());
        assert_eq!(
            decode_stat_header("%%%").unwrap_err().status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn parses_modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        for bad in ["", "0x1", "888", "4755", "07777", "12345", "-1", "rw-"] {
            assert_eq!(
                parse_mode(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn times() {
        assert_eq!(unix_to_rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(to_rfc3339_utc("not a time"), None);
    }
}
