//! Build the stages that hold state (trust store, policy engine, decision log,
//! file and admin services) over one sled database in the data directory.

use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::admin::Admin;
use crate::config::ServeConfig;
use crate::decide::engine::{PolicyEngine, PolicySource, PolicyWatcher, Template};
use crate::files::{ContainerFs, FileEvents};
use crate::identify::Credentials;
use crate::record::{AuditLog, AuditOptions, AuditRecord, Record};
use crate::resolve::Resolver;
use crate::services::Local;
use crate::trust::store::TrustStore;

impl Credentials for TrustStore {
    fn caller_for_uid(&self, uid: u32) -> Option<String> {
        // A store error identifies nobody: fail closed.
        TrustStore::caller_for_uid(self, uid).ok().flatten()
    }
    fn verify_token(&self, secret: &str) -> Option<(String, String)> {
        TrustStore::verify_token(self, secret)
    }
}

impl Record for AuditLog {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>> {
        async move {
            AuditLog::append(self, record)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

/// Where the policies come from: `--policies DIR`, else the embedded template.
pub fn policy_source(
    dir: Option<&std::path::Path>,
    template: &str,
) -> anyhow::Result<PolicySource> {
    Ok(match dir {
        Some(d) => PolicySource::Dir(d.to_path_buf()),
        None => PolicySource::Embedded(template.parse::<Template>().map_err(anyhow::Error::msg)?),
    })
}

/// The stateful parts of a running server.
pub struct Parts {
    pub credentials: Arc<dyn Credentials>,
    pub decider: Arc<PolicyEngine>,
    pub recorder: Arc<AuditLog>,
    pub services: Arc<Local>,
    pub agents: Arc<crate::agent::Agents>,
    pub selector_is_immutable: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Keeps the policy directory watch alive.
    pub watcher: Option<PolicyWatcher>,
    /// What `--trust-file` changed, one line each, to be recorded.
    pub trust_file_changes: Vec<String>,
    /// What the trust of `--bundle` changed, one line each, to be recorded.
    pub bundle_changes: Vec<String>,
    /// The database under the trust store and the log: flushed at shutdown.
    pub db: sled::Db,
}

pub fn assemble(config: &ServeConfig, resolver: Arc<Resolver>) -> anyhow::Result<Parts> {
    let db = crate::record::open_sled(&config.data_dir).context("opening the database")?;
    let store = crate::record::without_panic(&config.data_dir, || TrustStore::open(&db))?
        .context("opening the trust store")?;

    let bundle = match &config.bundle {
        Some(path) => Some(read_bundle(
            path,
            config.bundle_verification_key.as_deref(),
        )?),
        None => None,
    };
    let source = match (&bundle, &config.bundle) {
        (Some(b), Some(path)) => PolicySource::Bundle {
            path: path.clone(),
            revision: b.revision.clone(),
            files: b.policies.clone(),
        },
        _ => policy_source(config.policies.as_deref(), &config.template)?,
    };
    let engine = Arc::new(PolicyEngine::load(source));
    engine.set_memo(config.decision_memo);
    if let (Some(errors), Some(path)) = (engine.last_error(), &config.bundle) {
        // A bad bundle never starts: the fleet keeps its previous servers.
        let why = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        anyhow::bail!(
            "portcullis: bundle {} refused: its policies do not compile: {why}",
            path.display()
        );
    }
    if let Some(errors) = engine.last_error() {
        for e in errors {
            tracing::error!(%e, "policy did not compile; every request is refused until it does");
        }
    }
    // Trust declared in a file: applied before the engine loads trust.
    let trust_file_changes = match &config.trust_file {
        Some(path) => crate::config_file::TrustFile::load(path)?
            .apply(&store)
            .with_context(|| format!("applying the trust file {}", path.display()))?,
        None => Vec::new(),
    };
    // The bundle's trust, applied after the trust file, the same way.
    let bundle_changes = match &bundle {
        Some(b) => match &b.trust {
            Some(trust) => {
                let file = crate::config_file::TrustFile::from_value(trust.clone())
                    .context("portcullis: bundle data.json portcullis.trust")?;
                validate_all(&file).context("portcullis: bundle data.json portcullis.trust")?;
                file.apply(&store)
                    .context("portcullis: applying the bundle's trust")?
                    .into_iter()
                    .map(|c| format!("bundle revision {:?}: {c}", b.revision))
                    .collect()
            }
            None => Vec::new(),
        },
        None => Vec::new(),
    };

    engine
        .attach_trust(store.clone())
        .context("loading trust data")?;
    let watcher = match &config.policies {
        Some(dir) => Some(
            engine
                .watch(dir.clone())
                .with_context(|| format!("watching {}", dir.display()))?,
        ),
        None => None,
    };

    let log = Arc::new(
        crate::record::without_panic(&config.data_dir, || {
            AuditLog::open(
                &db,
                AuditOptions {
                    allow_broken_chain: config.allow_broken_chain,
                    verify_tail: if config.verify_full {
                        0
                    } else {
                        crate::record::STARTUP_VERIFY_TAIL
                    },
                    min_free_bytes: config.audit_min_free,
                    fsync: if config.audit_fsync {
                        crate::record::AuditFsync::EveryBatch
                    } else {
                        crate::record::AuditFsync::Never
                    },
                    data_dir: Some(config.data_dir.clone()),
                    ..AuditOptions::default()
                },
            )
        })?
        .context("opening the decision log")?,
    );

    let fs = ContainerFs::new(resolver.docker().clone());
    let admin = Arc::new(Admin {
        store: store.clone(),
        engine: engine.clone(),
        log: (*log).clone(),
        resolver: resolver.clone(),
        fs: fs.clone(),
    });
    let file_events = FileEvents::default();
    let agents = Arc::new(crate::agent::Agents::new(
        resolver.docker().clone(),
        file_events.clone(),
        config.agent.clone(),
    ));
    let services = Arc::new(Local {
        fs,
        events: file_events,
        admin,
        max_read: config.limits.max_body_inspect as u64,
    });
    let selectors = store.clone();
    let selector_is_immutable = Arc::new(move |trust_id: &str| {
        selectors
            .get(trust_id)
            .map(|r| {
                r.spec.target_container == "*" || r.spec.target_container.starts_with("label:")
            })
            .unwrap_or(false)
    });
    Ok(Parts {
        credentials: Arc::new(store),
        decider: engine,
        recorder: log,
        services,
        agents,
        selector_is_immutable,
        watcher,
        trust_file_changes,
        bundle_changes,
        db,
    })
}

/// Read and verify `--bundle`; any fault refuses the start, with why.
fn read_bundle(
    path: &std::path::Path,
    key: Option<&std::path::Path>,
) -> anyhow::Result<crate::decide::bundle::Bundle> {
    let key = key.map(crate::decide::bundle::read_key).transpose()?;
    let bundle = crate::decide::bundle::read(path, key.as_ref())
        .map_err(|e| anyhow::anyhow!("portcullis: bundle {} refused: {e:#}", path.display()))?;
    tracing::info!(
        bundle = %path.display(),
        revision = %bundle.revision,
        verified = bundle.verified,
        policies = bundle.policies.len(),
        "bundle loaded"
    );
    Ok(bundle)
}

/// Every declared relationship parses and validates, before any is applied.
fn validate_all(file: &crate::config_file::TrustFile) -> anyhow::Result<()> {
    for (n, declared) in file.relationships.iter().enumerate() {
        let spec = crate::trust::TrustSpec::from_json(declared)
            .with_context(|| format!("relationship #{}", n + 1))?;
        spec.validate()
            .with_context(|| format!("relationship #{}", n + 1))?;
    }
    Ok(())
}

/// Record the trust changes that `--trust-file` and then `--bundle` made at
/// start (in the order they were applied), like the admin calls they replace:
/// caller `config`, identified by the file.
pub async fn record_config_changes(config: &ServeConfig, parts: &Parts) -> anyhow::Result<()> {
    let sources = [
        ("trust file", &config.trust_file, &parts.trust_file_changes),
        ("bundle", &config.bundle, &parts.bundle_changes),
    ];
    for (what, path, changes) in sources {
        let Some(path) = path else { continue };
        for change in changes {
            let record = AuditRecord {
                caller: "config".into(),
                identified_by: format!("{what} {}", path.display()),
                action: crate::classify::Action::TRUST_WRITE.to_string(),
                method: "-".into(),
                path: path.display().to_string(),
                allowed: true,
                enforced: true,
                reasons: vec![change.clone()],
                ..Default::default()
            };
            Record::append(&*parts.recorder, record)
                .await
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("recording a change made by the {what}"))?;
        }
    }
    Ok(())
}
