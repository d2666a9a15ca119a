//! Which container path each entry of a download comes from ([`DownloadScope`])
//! and the judging that withholds entries and keeps account of them
//! ([`Withholder`]), apart from the byte-level filter that calls it.

use std::collections::HashSet;

use super::{ArchiveEntry, EntryKind};
use crate::classify::path::rooted_clean;

/// Where a download's entries come from in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadScope {
    /// What the daemon names the archive's top entry (`instructions`, `.`, `/`).
    root_name: String,
    /// The requested path, cleaned.
    requested: String,
    /// The requested path with every symlink resolved (what the daemon reads).
    resolved: String,
}

impl DownloadScope {
    /// `raw` is the archive `path` as the client sent it; `requested` and
    /// `resolved` are the decided paths (`FileContext::path`, `resolved_path`).
    pub fn new(raw: &str, requested: &str, resolved: &str) -> Self {
        DownloadScope {
            root_name: archive_root_name(raw),
            requested: requested.to_string(),
            resolved: resolved.to_string(),
        }
    }

    /// An entry's (requested, resolved) container paths, or `None` when its
    /// name is not below the archive's top entry (it is then withheld).
    pub fn paths(&self, name: &str) -> Option<(String, String)> {
        let rest = if self.root_name == "/" {
            name.strip_prefix('/')?.trim_end_matches('/')
        } else {
            let name = name.trim_end_matches('/');
            if name == self.root_name {
                ""
            } else {
                name.strip_prefix(self.root_name.as_str())?
                    .strip_prefix('/')?
            }
        };
        if rest.is_empty() {
            return Some((self.requested.clone(), self.resolved.clone()));
        }
        if rest
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return None;
        }
        let below = |base: &str| {
            if base == "/" {
                format!("/{rest}")
            } else {
                format!("{base}/{rest}")
            }
        };
        Some((below(&self.requested), below(&self.resolved)))
    }
}

/// The name the daemon gives the top entry: `filepath.Base` of the requested
/// path joined under the root, with a trailing `/.` or `/` kept (moby's
/// `PreserveTrailingDotOrSeparator`).
pub fn archive_root_name(raw: &str) -> String {
    let cleaned = rooted_clean(raw);
    let trimmed = raw.trim_end_matches('/');
    let names_current_dir = trimmed == "." || trimmed.ends_with("/.");
    if names_current_dir && cleaned != "." {
        return ".".to_string();
    }
    match cleaned.rsplit('/').next() {
        Some("") | None => "/".to_string(),
        Some(last) => last.to_string(),
    }
}

/// Judges a download's entries with `allowed(requested, resolved)` and keeps
/// account of what it withheld.
pub struct Withholder<A> {
    scope: DownloadScope,
    allowed: A,
    /// Names of withheld entries, for hard links to them.
    withheld_names: HashSet<String>,
    /// Container paths (or names, when unmapped) of withheld entries, the first
    /// [`Withholder::MAX_LISTED`].
    pub withheld: Vec<String>,
    pub withheld_count: usize,
}

impl<A: FnMut(&str, &str) -> bool> Withholder<A> {
    /// Withheld paths listed in the record; the rest are only counted.
    pub const MAX_LISTED: usize = 50;

    pub fn new(scope: DownloadScope, allowed: A) -> Self {
        Withholder {
            scope,
            allowed,
            withheld_names: HashSet::new(),
            withheld: Vec::new(),
            withheld_count: 0,
        }
    }

    /// Whether `entry` may be passed on.
    pub fn judge(&mut self, entry: &ArchiveEntry) -> bool {
        let Some(name) = entry.name.as_deref() else {
            self.withhold("<a name that is not UTF-8>".into(), None);
            return false;
        };
        let Some((requested, resolved)) = self.scope.paths(name) else {
            self.withhold(name.to_string(), Some(name));
            return false;
        };
        let target_withheld = entry.kind == EntryKind::HardLink
            && entry.link_name.as_deref().is_none_or(|l| {
                self.withheld_names.contains(l.trim_end_matches('/'))
                    || self.scope.paths(l).is_none()
            });
        if target_withheld || !(self.allowed)(&requested, &resolved) {
            self.withhold(requested, Some(name));
            return false;
        }
        true
    }

    fn withhold(&mut self, shown: String, name: Option<&str>) {
        if let Some(name) = name {
            self.withheld_names
                .insert(name.trim_end_matches('/').to_string());
        }
        if self.withheld.len() < Self::MAX_LISTED {
            self.withheld.push(shown);
        }
        self.withheld_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_names_follow_the_daemon() {
        for (raw, want) in [
            ("/app/config/instructions", "instructions"),
            ("/app/config/instructions/", "instructions"),
            ("/app/config/instructions/.", "."),
            ("/app/config/instructions/./", "."),
            ("app/config/instructions", "instructions"),
            ("/app/x/../config/CLAUDE.md", "CLAUDE.md"),
            ("/", "/"),
            ("/etc/..", "/"),
            ("/.", "."),
        ] {
            assert_eq!(archive_root_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn entries_map_below_the_requested_and_resolved_paths() {
        let scope =
            DownloadScope::new("/app/config/link/.", "/app/config/link", "/app/config/real");
        assert_eq!(
            scope.paths("./"),
            Some(("/app/config/link".into(), "/app/config/real".into()))
        );
        assert_eq!(
            scope.paths("./p/deep.txt"),
            Some((
                "/app/config/link/p/deep.txt".into(),
                "/app/config/real/p/deep.txt".into()
            ))
        );
        assert_eq!(scope.paths("other/x"), None);
        assert_eq!(scope.paths("./a/../../etc/shadow"), None);
        let root = DownloadScope::new("/", "/", "/");
        assert_eq!(root.paths("/"), Some(("/".into(), "/".into())));
        assert_eq!(
            root.paths("/etc/shadow"),
            Some(("/etc/shadow".into(), "/etc/shadow".into()))
        );
        // Never mapped one level up, whatever the name looks like.
        assert_eq!(root.paths("etc/shadow"), None);
        let dir = DownloadScope::new("/a/instructions", "/a/instructions", "/a/instructions");
        assert_eq!(dir.paths("instructionsX/y"), None);
    }

    #[test]
    fn the_withholder_keeps_account_and_withholds_links_to_withheld_data() {
        let scope = DownloadScope::new("/app/i", "/app/i", "/app/i");
        let mut w = Withholder::new(scope, |requested: &str, resolved: &str| {
            !requested.contains("secret") && !resolved.contains("secret")
        });
        let entry = |name: &str, kind, link: Option<&str>| ArchiveEntry {
            name: Some(name.into()),
            kind,
            link_name: link.map(str::to_string),
        };
        assert!(w.judge(&entry("i/", EntryKind::Directory, None)));
        assert!(!w.judge(&entry("i/secret.txt", EntryKind::File, None)));
        assert!(!w.judge(&entry(
            "i/alias.txt",
            EntryKind::HardLink,
            Some("i/secret.txt")
        )));
        assert!(w.judge(&entry("i/ok.txt", EntryKind::File, None)));
        assert!(w.judge(&entry("i/ok2.txt", EntryKind::HardLink, Some("i/ok.txt"))));
        // A symlink is judged where it lies, not by its target.
        assert!(w.judge(&entry("i/l", EntryKind::Symlink, Some("/etc/secret"))));
        assert!(!w.judge(&entry("elsewhere", EntryKind::File, None)));
        assert!(!w.judge(&ArchiveEntry {
            name: None,
            kind: EntryKind::File,
            link_name: None
        }));
        assert_eq!(w.withheld_count, 4);
        assert_eq!(w.withheld[0], "/app/i/secret.txt");
        assert_eq!(w.withheld[1], "/app/i/alias.txt");
    }
}
