//! `portcullis init DIR`: a starting point for an operator to edit, written
//! once: a config file, the policies of a template, a trust file and a
//! systemd unit. Nothing that exists is overwritten without `--force`.
//!
//! Why files rather than flags: a deployment that lives in files can be
//! reviewed, versioned and rolled out like any other configuration, and the
//! policies become the operator's own (`--policies DIR`, watched).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::decide::engine::Template;

/// The systemd units shipped in `examples/systemd/`.
pub const SERVICE_UNIT: &str = include_str!("../examples/systemd/portcullis.service");
pub const SOCKET_UNIT: &str = include_str!("../examples/systemd/portcullis.socket");

const TRUST_FILE: &str = "\
# Callers and what they may do, applied at every start (portcullis serve --trust-file).
# A declared (caller, target) pair is created or updated to exactly these fields;
# relationships not declared here are left alone. The fields are in policies/README.md.
callers: []
#  - name: ci
#    uids: [1001]
relationships: []
#  - caller_service: ci
#    target_container: \"ci-*\"
#    can_start: true
#    can_stop: true
";

/// Write the starter files into `dir`; returns the paths written.
pub fn write(dir: &Path, template: &str, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let template: Template = template.parse().map_err(anyhow::Error::msg)?;
    let policies = dir.join("policies");
    let config = format!(
        "# portcullis serve --config {dir}/portcullis.toml\n\
         # Keys are serve's flags (portcullis serve --help); flags and PORTCULLIS_* override them.\n\
         listen = [\"unix:///run/portcullis/portcullis.sock?mode=660\"]\n\
         upstream = \"unix:///var/run/docker.sock\"\n\
         data_dir = \"/var/lib/portcullis\"\n\
         mode = \"enforce\"\n\
         policies = \"{policies}\"\n\
         trust_file = \"{dir}/trust.yaml\"\n",
        dir = dir.display(),
        policies = policies.display(),
    );
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("portcullis.toml"), config),
        (dir.join("trust.yaml"), TRUST_FILE.to_string()),
        (dir.join("portcullis.service"), SERVICE_UNIT.to_string()),
        (dir.join("portcullis.socket"), SOCKET_UNIT.to_string()),
    ];
    for (name, text) in template.files() {
        files.push((policies.join(name), text));
    }
    if !force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "not overwriting {} (use --force to replace them)",
                existing.join(", ")
            );
        }
    }
    let mut written = Vec::new();
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_never_overwrites_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), "strict", false).unwrap();
        assert!(written.iter().any(|p| p.ends_with("portcullis.toml")));
        assert!(written
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "rego")));
        std::fs::write(dir.path().join("trust.yaml"), "mine").unwrap();
        let err = write(dir.path(), "strict", false).unwrap_err().to_string();
        assert!(err.contains("trust.yaml"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("trust.yaml")).unwrap(),
            "mine"
        );
        write(dir.path(), "strict", true).unwrap();
        assert_ne!(
            std::fs::read_to_string(dir.path().join("trust.yaml")).unwrap(),
            "mine"
        );
        assert!(write(dir.path(), "lenient", true).is_err());
    }
}
