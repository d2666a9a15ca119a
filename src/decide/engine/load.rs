//! Loading policy sources: the built-in templates and `*.rego` files on disk.
//!
//! Why apart: reading sources is plain file IO with no regorus in it; the
//! compiler ([`super::compile`]) takes whatever this returns.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::compile::CompileError;

/// A built-in policy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Container rights only; dangerous rights need a named target; no tunnels.
    Strict,
    /// The seed semantics with every extension (the default).
    #[default]
    Standard,
    /// Standard, plus read-only system/image/network/volume actions for every
    /// identified caller.
    Permissive,
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Template::Strict),
            "standard" => Ok(Template::Standard),
            "permissive" => Ok(Template::Permissive),
            other => Err(format!(
                "unknown policy template {other:?} (strict, standard, permissive)"
            )),
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Template::Strict => "strict",
            Template::Standard => "standard",
            Template::Permissive => "permissive",
        })
    }
}

const COMMON: &[(&str, &str)] = &[
    (
        "portcullis.rego",
        include_str!("../../../policies/portcullis.rego"),
    ),
    (
        "actions.rego",
        include_str!("../../../policies/actions.rego"),
    ),
    (
        "hardening.rego",
        include_str!("../../../policies/hardening.rego"),
    ),
    (
        "settings.rego",
        include_str!("../../../policies/settings.rego"),
    ),
];

/// Selects the template (`template := "standard"`); every template's settings
/// are in `settings.rego`, so a template is this file with its name.
const SELECTOR: (&str, &str) = (
    "template.rego",
    include_str!("../../../policies/template.rego"),
);
const SELECTED: &str = "template := \"standard\"";

/// Every shipped test: each template's tests select their template
/// (`with data.portcullis.settings.template as T`), so all of them run
/// whichever template is served, as `opa test policies/` runs them.
const TESTS: &[(&str, &str)] = &[
    (
        "testlib_test.rego",
        include_str!("../../../policies/testlib_test.rego"),
    ),
    (
        "portcullis_test.rego",
        include_str!("../../../policies/portcullis_test.rego"),
    ),
    (
        "hardening_test.rego",
        include_str!("../../../policies/hardening_test.rego"),
    ),
    (
        "strict_test.rego",
        include_str!("../../../policies/strict_test.rego"),
    ),
    (
        "permissive_test.rego",
        include_str!("../../../policies/permissive_test.rego"),
    ),
];

impl Template {
    /// The policy files of this template: (file name, source). The same files
    /// as `policies/` but for the tests, with this template selected.
    pub fn files(self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = COMMON
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        let selector = SELECTOR
            .1
            .replacen(SELECTED, &format!("template := \"{self}\""), 1);
        files.push((SELECTOR.0.to_string(), selector));
        files
    }

    /// The shipped `*_test.rego` files (every template's tests).
    pub fn test_files(self) -> Vec<(String, String)> {
        TESTS
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }
}

/// Where the policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Embedded(Template),
    /// Every `*.rego` directly in the directory, except `*_test.rego`.
    Dir(PathBuf),
    /// The policies of an OPA bundle, read (and verified) once at start:
    /// the archive on disk is not read again.
    Bundle {
        path: PathBuf,
        revision: String,
        files: Vec<(String, String)>,
    },
}

/// Read the policy files of a source.
pub fn read_source(source: &PolicySource) -> Result<Vec<(String, String)>, Vec<CompileError>> {
    match source {
        PolicySource::Embedded(template) => Ok(template.files()),
        PolicySource::Dir(dir) => read_dir(dir, false),
        PolicySource::Bundle { path, files, .. } => Ok(files
            .iter()
            .map(|(name, text)| (format!("{}/{name}", path.display()), text.clone()))
            .collect()),
    }
}

/// `*.rego` files directly in `dir`, sorted; with or without `*_test.rego`.
pub fn read_dir(dir: &Path, with_tests: bool) -> Result<Vec<(String, String)>, Vec<CompileError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![CompileError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read policy directory: {e}"),
        }]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && name.ends_with(".rego") && (with_tests || !name.ends_with("_test.rego"))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path.display().to_string(), text)),
            Err(e) => errors.push(CompileError {
                file: path.display().to_string(),
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `policies/template.rego` holds the line each template rewrites, and
    /// the embedded files are exactly the served files of `policies/`.
    #[test]
    fn each_template_selects_itself() {
        assert_eq!(SELECTOR.1.matches(SELECTED).count(), 1, "{}", SELECTOR.1);
        for template in [Template::Strict, Template::Standard, Template::Permissive] {
            let files = template.files();
            let selector = &files.iter().find(|(n, _)| n == "template.rego").unwrap().1;
            assert!(
                selector.contains(&format!("\ntemplate := \"{template}\"\n")),
                "{selector}"
            );
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut shipped: Vec<String> = read_dir(&dir, false)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap().to_string())
            .collect();
        let mut embedded: Vec<String> = Template::Standard
            .files()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        shipped.sort();
        embedded.sort();
        assert_eq!(shipped, embedded);
        let mut tests: Vec<String> = read_dir(&dir, true)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap().to_string())
            .filter(|n| n.ends_with("_test.rego"))
            .collect();
        tests.sort();
        let mut embedded: Vec<String> = TESTS.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(tests, embedded);
    }
}
