//! Inspection of `docker cp` uploads (`PUT /containers/{id}/archive?path=DIR`).
//!
//! The daemon extracts the tar into DIR as root. A policy on DIR alone is not
//! enough: entries may name deep paths, links may point anywhere, and a compressed
//! body makes the daemon run the *container's* decompressor as root
//! (CVE-2026-41567). So before the request is decided, the body is read here and
//! every entry's destination (and every link target) is handed to the policy.
//!
//! Everything unusual is refused rather than interpreted (fail closed): compressed
//! or unparsable archives, absolute names, `..` in names, links that are absolute
//! or leave DIR, device nodes and FIFOs, non-UTF-8 names, a non-directory entry
//! that would replace DIR itself (moby removes the existing path first), and an
//! entry written through a symlink created earlier in the same archive (its real
//! destination would differ from the checked one), and any construct Go's
//! `archive/tar` (the daemon) and the `tar` crate (us) could read differently.
//!
//! Not visible here: symlinks that *already exist* in the container below DIR. The
//! daemon follows them (scoped to the container root). Callers that need exact
//! destinations should resolve each distinct parent directory with
//! [`super::ContainerFs::resolve`].

use std::collections::BTreeSet;

use serde::Serialize;

use super::path::{is_within, join_segments, segments};
use super::FileError;

/// Compression magics the daemon would decompress (moby `DetectCompression`).
const COMPRESSION_MAGICS: &[(&[u8], &str)] = &[
    (&[0x1f, 0x8b], "gzip"),
    (b"BZh", "bzip2"),
    (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz"),
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
];

/// The kind of one upload entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadEntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
}

/// One entry of an upload, with absolute container paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadEntry {
    /// Full normalized destination path (DIR joined with the entry name).
    pub path: String,
    pub kind: UploadEntryKind,
    /// For links: the absolute path the link points to (symlinks resolved against
    /// the entry's directory, hard links against DIR, as the daemon does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// Result of [`inspect_upload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadInspection {
    /// The normalized destination directory.
    pub dest_dir: String,
    /// Entries in archive order (PAX global headers, which the daemon ignores, are
    /// left out).
    pub entries: Vec<UploadEntry>,
}

impl UploadInspection {
    /// Every entry's destination path, for `FileContext.entries`.
    pub fn paths(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.path.clone()).collect()
    }

    /// Every link target (absolute), for the policy to check against the allowed
    /// paths as well.
    pub fn link_targets(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| e.link_target.clone())
            .collect()
    }
}

/// Detect a compressed body by its magic bytes.
pub(crate) fn compression_of(bytes: &[u8]) -> Option<&'static str> {
    COMPRESSION_MAGICS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, name)| *name)
}

/// Inspect an upload body destined for `dest_dir` (normalized here).
pub fn inspect_upload(bytes: &[u8], dest_dir: &str) -> Result<UploadInspection, FileError> {
    let dest_dir = super::normalize_path(dest_dir)?;
    if let Some(kind) = compression_of(bytes) {
        return Err(FileError::BadRequest(format!(
            "compressed archives are refused (CVE-2026-41567): body is {kind}; send an uncompressed tar"
        )));
    }
    let dest_segments: Vec<String> = segments(&dest_dir).into_iter().map(String::from).collect();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| bad_archive(format!("cannot read tar: {e}")))?;
    let mut result = Vec::new();
    let mut symlinks_in_archive: BTreeSet<String> = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_archive(format!("cannot read tar entry: {e}")))?;
        refuse_parser_differentials(&mut entry)?;
        let header = entry.header();
        let entry_type = header.entry_type();
        if entry_type.is_pax_global_extensions() {
            continue; // moby ignores global PAX headers
        }
        let name_bytes = entry.path_bytes();
        let name = std::str::from_utf8(&name_bytes)
            .map_err(|_| bad_archive("entry name is not UTF-8".to_string()))?
            .to_string();
        let kind = if entry_type.is_file() {
            UploadEntryKind::File
        } else if entry_type.is_dir() {
            UploadEntryKind::Directory
        } else if entry_type.is_symlink() {
            UploadEntryKind::Symlink
        } else if entry_type.is_hard_link() {
            UploadEntryKind::HardLink
        } else {
            return Err(bad_archive(format!(
                "entry {name:?} has type {:?}; only files, directories and links are accepted",
                entry_type
            )));
        };
        let relative = archive_relative_segments(&name)?;
        if relative.is_empty() && kind != UploadEntryKind::Directory {
            // moby would remove the destination directory to put this entry there.
            return Err(bad_archive(format!(
                "entry {name:?} would replace the destination directory itself"
            )));
        }
        let mut full = dest_segments.clone();
        full.extend(relative.iter().cloned());
        let path = join_segments(&full);
        if let Some(link) = symlinks_in_archive
            .iter()
            .find(|link| path != **link && is_within(&path, link))
        {
            return Err(bad_archive(format!(
                "entry {name:?} would be written through the symlink {link} created by the same archive"
            )));
        }

        let link_target = match kind {
            UploadEntryKind::Symlink | UploadEntryKind::HardLink => {
                let target_bytes = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad_archive(format!("link {name:?} has no target")))?;
                let target = std::str::from_utf8(&target_bytes)
                    .map_err(|_| bad_archive(format!("link target of {name:?} is not UTF-8")))?;
                if target.is_empty() || target.contains('\0') {
                    return Err(bad_archive(format!("link {name:?} has an empty target")));
                }
                if target.starts_with('/') {
                    return Err(bad_archive(format!(
                        "link {name:?} has an absolute target {target:?}; only relative targets inside {dest_dir} are accepted"
                    )));
                }
                // A symlink is relative to its own directory; a hard link name is
                // relative to the extraction root.
                let base: Vec<String> = if kind == UploadEntryKind::Symlink {
                    relative[..relative.len().saturating_sub(1)].to_vec()
                } else {
                    Vec::new()
                };
                let inside = resolve_inside_root(base, target).ok_or_else(|| {
                    bad_archive(format!(
                        "link {name:?} -> {target:?} points outside the destination {dest_dir}"
                    ))
                })?;
                let mut absolute = dest_segments.clone();
                absolute.extend(inside);
                Some(join_segments(&absolute))
            }
            _ => None,
        };
        if kind == UploadEntryKind::Symlink {
            symlinks_in_archive.insert(path.clone());
        }
        result.push(UploadEntry {
            path,
            kind,
            link_target,
        });
    }
    Ok(UploadInspection {
        dest_dir,
        entries: result,
    })
}

/// The daemon reads the tar with Go's `archive/tar`; this module with the `tar`
/// crate. Where the two could read the same bytes differently, the archive is
/// refused, so the paths checked here are the paths the daemon extracts:
/// - duplicate PAX keys (Go keeps the last, the `tar` crate the first);
/// - a PAX `path`/`linkpath` overridden by a GNU long name/link;
/// - PAX `GNU.sparse.*` records (Go renames and reshapes sparse files);
/// - STAR headers (`tar\0` trailer: Go reads a shorter name prefix).
fn refuse_parser_differentials<R: std::io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<(), FileError> {
    let header_bytes = entry.header().as_bytes();
    if entry.header().as_ustar().is_some() && header_bytes[508..512] == *b"tar\0" {
        return Err(bad_archive(
            "STAR-format headers are not accepted".to_string(),
        ));
    }
    let records: Vec<(Vec<u8>, Vec<u8>)> = match entry
        .pax_extensions()
        .map_err(|e| bad_archive(format!("cannot read PAX header: {e}")))?
    {
        None => return Ok(()),
        Some(extensions) => extensions
            .map(|ext| {
                ext.map(|ext| (ext.key_bytes().to_vec(), ext.value_bytes().to_vec()))
                    .map_err(|e| bad_archive(format!("malformed PAX record: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut seen = BTreeSet::new();
    for (key, value) in &records {
        let key_text = String::from_utf8_lossy(key);
        if !seen.insert(key.clone()) {
            return Err(bad_archive(format!("duplicate PAX record {key_text:?}")));
        }
        if key.starts_with(b"GNU.sparse") {
            return Err(bad_archive("sparse files are not accepted".to_string()));
        }
        let disagrees = match key.as_slice() {
            b"path" => *entry.path_bytes() != **value,
            b"linkpath" => entry.link_name_bytes().as_deref() != Some(value.as_slice()),
            _ => false,
        };
        if disagrees {
            return Err(bad_archive(format!(
                "PAX {key_text:?} and a GNU long name disagree"
            )));
        }
    }
    Ok(())
}

fn bad_archive(message: String) -> FileError {
    FileError::BadRequest(format!("archive refused: {message}"))
}

/// An entry name as segments relative to the extraction root; absolute names and
/// `..` are refused.
fn archive_relative_segments(name: &str) -> Result<Vec<String>, FileError> {
    if name.starts_with('/') {
        return Err(bad_archive(format!("entry {name:?} has an absolute name")));
    }
    if name.contains('\0') {
        return Err(bad_archive(format!("entry {name:?} contains NUL")));
    }
    let mut out = Vec::new();
    for segment in name.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                return Err(bad_archive(format!(
                    "entry {name:?} contains a '..' component"
                )))
            }
            other => out.push(other.to_string()),
        }
    }
    Ok(out)
}

/// Apply a relative link target to `base` (segments below the extraction root);
/// `None` when `..` climbs above the root.
fn resolve_inside_root(mut base: Vec<String>, target: &str) -> Option<Vec<String>> {
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                base.pop()?;
            }
            other => base.push(other.to_string()),
        }
    }
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    /// Build a tar with raw header names (the `tar` crate's safe setters refuse
    /// `..` and absolute names, which is exactly what we need to test).
    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut header = tar::Header::new_ustar();
            {
                let raw = header.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn refused(bytes: &[u8], dest: &str) -> String {
        let err = inspect_upload(bytes, dest).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        err.to_string()
    }

    #[test]
    fn lists_every_destination_and_link_target() {
        let bytes = tar_of(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("sub/", tar::EntryType::Directory, "", b""),
            ("sub/a.txt", tar::EntryType::Regular, "", b"hello"),
            ("sub/rel", tar::EntryType::Symlink, "../top.txt", b""),
            ("hard", tar::EntryType::Link, "sub/a.txt", b""),
        ]);
        let inspection = inspect_upload(&bytes, "/app//config/").unwrap();
        assert_eq!(inspection.dest_dir, "/app/config");
        assert_eq!(
            inspection.paths(),
            vec![
                "/app/config",
                "/app/config/sub",
                "/app/config/sub/a.txt",
                "/app/config/sub/rel",
                "/app/config/hard"
            ]
        );
        assert_eq!(
            inspection.link_targets(),
            vec!["/app/config/top.txt", "/app/config/sub/a.txt"]
        );
        assert_eq!(inspection.entries[3].kind, UploadEntryKind::Symlink);
        assert_eq!(inspection.entries[4].kind, UploadEntryKind::HardLink);
    }

    #[test]
    fn refuses_compressed_archives() {
        let cases: &[&[u8]] = &[
            &[0x1f, 0x8b, 0x08, 0, 0],
            b"BZh91AY&SY",
            &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0],
            &[0x28, 0xb5, 0x2f, 0xfd, 0, 0],
        ];
        for body in cases {
            let msg = refused(body, "/tmp");
            assert!(
                msg.contains("compressed archives are refused (CVE-2026-41567)"),
                "{msg}"
            );
        }
    }

    #[test]
    fn refuses_absolute_and_dotdot_names() {
        let abs = tar_of(&[("/etc/passwd", tar::EntryType::Regular, "", b"x")]);
        assert!(refused(&abs, "/tmp").contains("absolute name"));
        let up = tar_of(&[("a/../../etc/passwd", tar::EntryType::Regular, "", b"x")]);
        assert!(refused(&up, "/tmp").contains("'..'"));
    }

    #[test]
    fn refuses_escaping_or_absolute_links() {
        let abs_sym = tar_of(&[("l", tar::EntryType::Symlink, "/etc", b"")]);
        assert!(refused(&abs_sym, "/app").contains("absolute target"));
        let abs_hard = tar_of(&[("h", tar::EntryType::Link, "/etc/shadow", b"")]);
        assert!(refused(&abs_hard, "/app").contains("absolute target"));
        let escaping_sym = tar_of(&[("d/l", tar::EntryType::Symlink, "../../etc", b"")]);
        assert!(refused(&escaping_sym, "/app").contains("outside the destination"));
        let escaping_hard = tar_of(&[("h", tar::EntryType::Link, "../etc/shadow", b"")]);
        assert!(refused(&escaping_hard, "/app").contains("outside the destination"));
    }

    #[test]
    fn refuses_writing_through_an_archive_symlink() {
        let bytes = tar_of(&[
            ("d", tar::EntryType::Symlink, "sub", b""),
            ("d/x", tar::EntryType::Regular, "", b"x"),
        ]);
        assert!(refused(&bytes, "/app").contains("through the symlink"));
    }

    #[test]
    fn refuses_devices_garbage_and_replacing_dest() {
        let dev = tar_of(&[("null", tar::EntryType::Char, "", b"")]);
        assert!(refused(&dev, "/app").contains("only files"));
        let fifo = tar_of(&[("p", tar::EntryType::Fifo, "", b"")]);
        assert!(refused(&fifo, "/app").contains("only files"));
        let replace = tar_of(&[(".", tar::EntryType::Regular, "", b"x")]);
        assert!(refused(&replace, "/app").contains("destination directory itself"));
        let garbage = vec![0x41u8; 1024];
        assert!(refused(&garbage, "/app").contains("archive refused"));
        assert!(refused(b"", "relative").contains("absolute"));
    }

    /// A PAX extension header block for the next entry.
    fn pax_block(records: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = format!(" {key}={value}\n");
            // The length prefix counts itself.
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        let mut header = tar::Header::new_ustar();
        header.set_path("PaxHeader").unwrap();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_size(data.len() as u64);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn plain_entry(name: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, &b""[..]).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn pax_paths_are_honoured_and_differentials_refused() {
        let mut ok = pax_block(&[("path", "long/pax/name.txt")]);
        ok.extend(plain_entry("short"));
        assert_eq!(
            inspect_upload(&ok, "/app").unwrap().paths(),
            ["/app/long/pax/name.txt"]
        );

        let mut dup = pax_block(&[("path", "ok.txt"), ("path", "other.txt")]);
        dup.extend(plain_entry("short"));
        assert!(refused(&dup, "/app").contains("duplicate PAX record"));

        let mut sparse = pax_block(&[("GNU.sparse.name", "elsewhere")]);
        sparse.extend(plain_entry("short"));
        assert!(refused(&sparse, "/app").contains("sparse"));

        let mut both = pax_block(&[("path", "checked.txt")]);
        let long_name = b"extracted-instead.txt\0";
        let mut long = tar::Header::new_gnu();
        long.set_path("././@LongLink").unwrap();
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_size(long_name.len() as u64);
        long.set_cksum();
        both.extend_from_slice(long.as_bytes());
        let mut data = long_name.to_vec();
        data.resize(512, 0);
        both.extend(data);
        both.extend(plain_entry("short"));
        assert!(refused(&both, "/app").contains("disagree"));

        let mut star = plain_entry("x");
        star[508..512].copy_from_slice(b"tar\0");
        let mut header = tar::Header::from_byte_slice(&star[..512]).clone();
        header.set_cksum();
        star[..512].copy_from_slice(header.as_bytes());
        assert!(refused(&star, "/app").contains("STAR"));
    }

    #[test]
    fn gnu_long_names_are_followed() {
        let long = format!("{}/file.txt", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        builder.append_data(&mut header, &long, &b"x"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let inspection = inspect_upload(&bytes, "/").unwrap();
        assert_eq!(inspection.paths(), vec![format!("/{long}")]);
    }
}
