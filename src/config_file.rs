//! The config file, and trust data declared in a file.
//!
//! `serve --config FILE` (else `/etc/portcullis/portcullis.toml` when it
//! exists) holds what the serve flags hold, under the flags' own names
//! (`listen`, `data_dir`, `max_connections`, `tls_cert`, …; `-` or `_`).
//! Why the flags' names and not a schema of its own: one vocabulary to learn,
//! and a flag added later is a config key at once. Precedence is the usual
//! one: a flag, then its `PORTCULLIS_*` variable, then the file, then the
//! built-in default. An unknown key is an error, never ignored.
//!
//! `--trust-file FILE` (JSON, or YAML by its extension) declares callers and
//! trust relationships, applied at start idempotently: a declared pair
//! (caller, target) is created, or updated to exactly the declared fields;
//! relationships that are not declared are left alone. Each change is
//! recorded in the decision log like an admin call, by the caller `config`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::{Cli, Command};
use crate::trust::store::TrustStore;
use crate::trust::TrustSpec;

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/portcullis/portcullis.toml";

/// Parse the command line; for `serve`, the config file's values become the
/// defaults beneath the flags and their environment variables.
pub fn parse_cli(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let first = Cli::try_parse_from(args.clone())?;
    // `doctor` checks the deployment `serve` would run, so it reads the same file.
    let (serve, subcommand) = match &first.command {
        Command::Serve(serve) => (serve, "serve"),
        Command::Doctor { serve, .. } => (serve, "doctor"),
        _ => return Ok(first),
    };
    let path = match &serve.config {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok(first),
    };
    let with_file = file_defaults(Cli::command(), subcommand, &path).map_err(|e| {
        Cli::command().error(clap::error::ErrorKind::InvalidValue, format!("{e:#}"))
    })?;
    let matches = with_file.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// `command` with `serve`'s defaults taken from the TOML file at `path`.
fn file_defaults(
    command: clap::Command,
    subcommand: &str,
    path: &Path,
) -> anyhow::Result<clap::Command> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    let serve = command
        .find_subcommand(subcommand)
        .expect("serve and doctor are subcommands")
        .clone();
    let mut defaults: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in &table {
        let id = key.replace('-', "_");
        let Some(arg) = serve.get_arguments().find(|a| a.get_id() == id.as_str()) else {
            bail!(
                "config file {}: unknown key {key:?} (the keys are serve's flags: {})",
                path.display(),
                serve
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| *l != "config" && *l != "help")
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if id == "config" {
            bail!(
                "config file {}: `config` cannot name another file",
                path.display()
            );
        }
        let many = matches!(arg.get_action(), ArgAction::Append);
        let values = match value {
            toml::Value::Array(items) if many => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("config key {key:?}: a list of strings or numbers"))?,
            toml::Value::Array(_) => bail!("config key {key:?} takes one value, not a list"),
            other => vec![scalar(other)
                .with_context(|| format!("config key {key:?}: a string, number or boolean"))?],
        };
        defaults.push((id, values));
    }
    Ok(command.mut_subcommand(subcommand, |mut serve| {
        for (id, values) in defaults {
            serve = serve.mut_arg(id, |arg| {
                arg.default_values(values.into_iter().map(clap::builder::Str::from))
            });
        }
        serve
    }))
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A declared caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCaller {
    pub name: String,
    #[serde(default)]
    pub uids: Vec<u32>,
}

/// The trust file: `{callers: [...], relationships: [...]}`, or just the
/// list of relationships.
#[derive(Debug, Default)]
pub struct TrustFile {
    pub callers: Vec<DeclaredCaller>,
    pub relationships: Vec<Value>,
}

impl TrustFile {
    pub fn load(path: &Path) -> anyhow::Result<TrustFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the trust file {}", path.display()))?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        let value: Value = if yaml {
            serde_yaml_ng::from_str(&text)
                .with_context(|| format!("trust file {} (YAML)", path.display()))?
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("trust file {} (JSON)", path.display()))?
        };
        Self::from_value(value).with_context(|| format!("trust file {}", path.display()))
    }

    pub fn from_value(value: Value) -> anyhow::Result<TrustFile> {
        match value {
            Value::Array(relationships) => Ok(TrustFile {
                callers: Vec::new(),
                relationships,
            }),
            Value::Object(mut map) => {
                let callers = match map.remove("callers") {
                    Some(v) => serde_json::from_value(v).context("callers")?,
                    None => Vec::new(),
                };
                let relationships = match map.remove("relationships") {
                    Some(Value::Array(r)) => r,
                    Some(_) => bail!("relationships: a list"),
                    None => Vec::new(),
                };
                if let Some(key) = map.keys().next() {
                    bail!("unknown key {key:?}: callers or relationships");
                }
                Ok(TrustFile {
                    callers,
                    relationships,
                })
            }
            _ => bail!("a list of relationships, or {{callers, relationships}}"),
        }
    }

    /// Apply to `store`; returns one line per change made (empty when the
    /// store already says what the file says).
    pub fn apply(&self, store: &TrustStore) -> anyhow::Result<Vec<String>> {
        let mut changes = Vec::new();
        for caller in &self.callers {
            match store.get_caller(&caller.name) {
                Ok(existing) if existing.uids == caller.uids => {}
                Ok(_) => {
                    store.delete_caller(&caller.name)?;
                    store.create_caller(&caller.name, caller.uids.clone())?;
                    changes.push(format!(
                        "caller {} uids set to {:?}",
                        caller.name, caller.uids
                    ));
                }
                Err(_) => {
                    store.create_caller(&caller.name, caller.uids.clone())?;
                    changes.push(format!("caller {} added", caller.name));
                }
            }
        }
        let existing = store.list()?;
        for (n, declared) in self.relationships.iter().enumerate() {
            let spec = TrustSpec::from_json(declared)
                .with_context(|| format!("relationship #{} of the trust file", n + 1))?;
            spec.validate()
                .with_context(|| format!("relationship #{} of the trust file", n + 1))?;
            let spec = spec.normalized();
            let same_pair = existing.iter().find(|r| {
                r.spec.caller_service == spec.caller_service
                    && r.spec.target_container == spec.target_container
            });
            match same_pair {
                Some(r) if r.spec == spec => {}
                Some(r) => {
                    let full = serde_json::to_value(&spec)?;
                    store.patch(&r.id, &full)?;
                    changes.push(format!(
                        "trust {} ({} -> {}) updated",
                        r.id, spec.caller_service, spec.target_container
                    ));
                }
                None => {
                    let created = store.create(spec)?;
                    changes.push(format!(
                        "trust {} ({} -> {}) created",
                        created.id, created.spec.caller_service, created.spec.target_container
                    ));
                }
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_file_sits_between_env_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "listen = [\"unix:///tmp/a.sock\", \"unix:///tmp/b.sock?caller=traefik\"]\n\
             data-dir = \"/srv/pc\"\nmax_connections = 7\nmode = \"audit-only\"\n\
             audit_fsync = true\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let cli = parse_cli(os(&["portcullis", "serve", "--config", f])).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.listen[1].caller.as_deref(), Some("traefik"));
        assert_eq!(s.data_dir.as_deref(), Some(Path::new("/srv/pc")));
        assert_eq!(s.max_connections, 7);
        assert!(s.audit_fsync);
        assert_eq!(s.mode, crate::config::Mode::AuditOnly);
        // A flag wins over the file.
        let cli = parse_cli(os(&[
            "portcullis",
            "serve",
            "--config",
            f,
            "--max-connections",
            "9",
        ]))
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.max_connections, 9);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        for (text, says) in [
            ("max_conections = 3\n", "unknown key \"max_conections\""),
            ("max_connections = [1, 2]\n", "takes one value"),
            ("max_connections = \"many\"\n", "many"),
            ("[tls]\ncert = \"x\"\n", "unknown key \"tls\""),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = parse_cli(os(&[
                "portcullis",
                "serve",
                "--config",
                file.to_str().unwrap(),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn trust_files_apply_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = TrustStore::open(&db).unwrap();
        let yaml = dir.path().join("trust.yaml");
        std::fs::write(
            &yaml,
            "callers:\n  - name: ci\n    uids: [1001]\nrelationships:\n  - caller_service: ci\n    target_container: ci-*\n    can_exec: true\n",
        )
        .unwrap();
        let file = TrustFile::load(&yaml).unwrap();
        assert_eq!(file.apply(&store).unwrap().len(), 2);
        assert!(
            file.apply(&store).unwrap().is_empty(),
            "applied twice, changed twice"
        );
        assert_eq!(store.caller_for_uid(1001).unwrap().as_deref(), Some("ci"));
        // A changed declaration updates the pair to exactly the declared fields.
        let json = dir.path().join("trust.json");
        std::fs::write(
            &json,
            r#"[{"caller_service":"ci","target_container":"ci-*","can_stop":true}]"#,
        )
        .unwrap();
        let changes = TrustFile::load(&json).unwrap().apply(&store).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let all = store.list().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].spec.can_stop && !all[0].spec.can_exec);
        std::fs::write(
            &json,
            r#"[{"caller_service":"ci","target_container":"x","can_fly":true}]"#,
        )
        .unwrap();
        assert!(TrustFile::load(&json).unwrap().apply(&store).is_err());
    }
}
