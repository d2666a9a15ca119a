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
    /// The database under the trust store and the log: flushed at shutdown.
    pub db: sled::Db,
}

pub fn assemble(config: &ServeConfig, resolver: Arc<Resolver>) -> anyhow::Result<Parts> {
    let db = crate::record::open_sled(&config.data_dir).context("opening the database")?;
    let store = crate::record::without_panic(&config.data_dir, || TrustStore::open(&db))?
        .context("opening the trust store")?;

    let source = policy_source(config.policies.as_deref(), &config.template)?;
    let engine = Arc::new(PolicyEngine::load(source));
    engine.set_memo(config.decision_memo);
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
        db,
    })
}
