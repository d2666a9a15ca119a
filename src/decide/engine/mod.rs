//! The policy engine: regorus over the trust data, hot-reloadable.
//!
//! Why a compiled VM per thread: the RVM (`regorus::rvm`) evaluates a compiled
//! program several times faster than the tree-walking interpreter, but a VM is
//! mutable state. Each worker thread keeps its own VM (or interpreter clone) and
//! rebuilds it only when the policy or the trust data changed. Policies the RVM
//! compiler rejects (`with`, `print`, ...) run on the interpreter instead.
//!
//! Why an atomic swap: a reload compiles off to the side and replaces one `Arc`;
//! a decision in flight finishes on the state it started with, and a policy
//! that does not compile never replaces a working one.
//!
//! Layout: `load` reads sources (templates, files), `compile` turns them
//! into a `compile::LoadedPolicy`, `eval` runs decisions on per-thread
//! evaluators, `watch` reloads on file changes; this file holds the engine
//! handle and its atomically swapped state.

mod compile;
mod eval;
mod load;
mod memo;
mod memo_key;
#[cfg(test)]
mod tests;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use super::facts;
use crate::trust::{CompiledTrust, TrustSnapshot, TrustStore};
use compile::{compile_for, LoadedPolicy};

pub(crate) use compile::{compile, engine_with};
pub use compile::{CompileError, Evaluator, ENTRY_POINT};
pub use load::{read_dir, read_source, PolicySource, Template};
pub use watch::PolicyWatcher;

/// What `GET /api/v1/policy` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub source: String,
    pub version: String,
    pub policy_hash: String,
    pub trust_revision: u64,
    pub evaluator: Evaluator,
    /// Why the RVM was not used, when the interpreter runs.
    pub rvm_rejection: Option<String>,
    pub files: Vec<String>,
    /// The last reload's compile errors (the previous policy stays in force).
    pub last_error: Option<String>,
    /// Whether decisions are reused for repeated inputs, and if not, why.
    pub memo: String,
}

/// The trust data as the engine uses it.
pub(crate) struct TrustState {
    generation: u64,
    trust: CompiledTrust,
    data: regorus::Value,
}

struct Current {
    policy: Arc<LoadedPolicy>,
    trust: Arc<TrustState>,
    /// Policy hash + trust revision, recorded with every decision.
    version: String,
}

impl Current {
    fn new(policy: Arc<LoadedPolicy>, trust: Arc<TrustState>) -> Current {
        let version = format!("{}-t{}", policy.hash, trust.trust.revision);
        Current {
            policy,
            trust,
            version,
        }
    }

    fn version(&self) -> String {
        self.version.clone()
    }
}

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// The decision engine: `Decide` over the current policy and trust data.
pub struct PolicyEngine {
    id: u64,
    source: RwLock<PolicySource>,
    current: RwLock<Arc<Current>>,
    last_error: RwLock<Option<Vec<CompileError>>>,
    store: RwLock<Option<TrustStore>>,
    interpreter_only: bool,
    /// Serializes reloads (never decisions).
    reload_lock: Mutex<()>,
    /// Reloads that compiled and took effect, and reloads that failed.
    pub reloads: ReloadCounts,
    /// Whether decisions may be reused (`memo`); on by default.
    memo: std::sync::atomic::AtomicBool,
}

/// How many policy reloads succeeded and failed (for `/metrics`).
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

impl PolicyEngine {
    /// Load a policy source. Never fails: if nothing compiles, the engine
    /// refuses everything and `last_error()` says why.
    pub fn load(source: PolicySource) -> PolicyEngine {
        Self::load_with(source, false)
    }

    /// Like [`PolicyEngine::load`], always on the interpreter (benchmarks,
    /// cross-checking the RVM).
    pub fn load_interpreted(source: PolicySource) -> PolicyEngine {
        Self::load_with(source, true)
    }

    fn load_with(source: PolicySource, interpreter_only: bool) -> PolicyEngine {
        let trust = Arc::new(trust_state(CompiledTrust::default()));
        let (policy, error) = match read_source(&source)
            .and_then(|f| compile_for(f, next_generation(), interpreter_only))
        {
            Ok(p) => (p, None),
            Err(errors) => {
                let why = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(errors = %why, "no policy could be loaded; every request is refused");
                (LoadedPolicy::nothing(next_generation(), why), Some(errors))
            }
        };
        PolicyEngine {
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            source: RwLock::new(source),
            current: RwLock::new(Arc::new(Current::new(Arc::new(policy), trust))),
            last_error: RwLock::new(error),
            store: RwLock::new(None),
            interpreter_only,
            reload_lock: Mutex::new(()),
            reloads: ReloadCounts::default(),
            memo: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Take trust data from `store` (now and on every `reload_trust`).
    pub fn attach_trust(&self, store: TrustStore) -> Result<(), crate::trust::TrustError> {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
        self.reload_trust()
    }

    /// Re-read the trust store (call after each trust write). Compiles the
    /// globs once; decisions keep running on the old data meanwhile.
    pub fn reload_trust(&self) -> Result<(), crate::trust::TrustError> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(store) = store else { return Ok(()) };
        self.set_trust(store.snapshot()?)
    }

    /// Use this trust snapshot (tests, `policy eval`).
    pub fn set_trust(&self, snapshot: TrustSnapshot) -> Result<(), crate::trust::TrustError> {
        let compiled = CompiledTrust::build(snapshot.revision, snapshot.relationships)?;
        let state = Arc::new(trust_state(compiled));
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(Current::new(current.policy.clone(), state));
        Ok(())
    }

    /// Re-read and recompile the policy source. On failure the previous policy
    /// stays in force and the errors are returned (and kept for `last_error`).
    pub fn reload_policies(&self) -> Result<(), Vec<CompileError>> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match read_source(&source)
            .and_then(|f| compile_for(f, next_generation(), self.interpreter_only))
        {
            Ok(policy) => {
                tracing::info!(hash = %policy.hash, evaluator = ?policy.evaluator(), "policies reloaded");
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *current = Arc::new(Current::new(Arc::new(policy), current.trust.clone()));
                *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = None;
                self.reloads
                    .ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(errors) => {
                self.reloads
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for e in &errors {
                    tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
                }
                *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = Some(errors.clone());
                Err(errors)
            }
        }
    }

    /// Switch to another source (e.g. a template chosen at runtime) and load it.
    pub fn set_source(&self, source: PolicySource) -> Result<(), Vec<CompileError>> {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = source;
        self.reload_policies()
    }

    /// The compile errors of the last load or reload, if it failed.
    pub fn last_error(&self) -> Option<Vec<CompileError>> {
        self.last_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The policy source in force.
    pub fn source(&self) -> PolicySource {
        self.source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The trust data in force, as a snapshot (from the store when one is
    /// attached, else none).
    pub fn trust_snapshot(&self) -> Result<TrustSnapshot, crate::trust::TrustError> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner()).clone();
        match store {
            Some(store) => store.snapshot(),
            None => Ok(TrustSnapshot {
                revision: 0,
                relationships: Vec::new(),
            }),
        }
    }

    /// Reuse decisions for inputs decided before (the default), or not
    /// (`serve --no-decision-memo`, and the tests that compare the two).
    pub fn set_memo(&self, on: bool) {
        self.memo.store(on, Ordering::Relaxed);
    }

    fn memo_on(&self) -> bool {
        self.memo.load(Ordering::Relaxed)
    }

    /// Policy hash + trust revision, as recorded with each decision.
    pub fn version(&self) -> String {
        self.current().version()
    }

    pub fn evaluator(&self) -> Evaluator {
        self.current().policy.evaluator()
    }

    pub fn status(&self) -> PolicyStatus {
        let current = self.current();
        let source = match &*self.source.read().unwrap_or_else(|e| e.into_inner()) {
            PolicySource::Embedded(t) => format!("embedded:{t}"),
            PolicySource::Dir(d) => d.display().to_string(),
            PolicySource::Bundle { path, revision, .. } => {
                format!("bundle:{}@{revision}", path.display())
            }
        };
        PolicyStatus {
            source,
            version: current.version(),
            policy_hash: current.policy.hash.clone(),
            trust_revision: current.trust.trust.revision,
            evaluator: current.policy.evaluator(),
            rvm_rejection: current.policy.rvm_rejection.clone(),
            files: current.policy.files.clone(),
            memo: match (&current.policy.memo_off, self.memo_on()) {
                (_, false) => "off (--no-decision-memo)".into(),
                (Some(why), true) => format!("off: {why}"),
                (None, true) => "on".into(),
            },
            last_error: self.last_error().map(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    }
}

fn trust_state(trust: CompiledTrust) -> TrustState {
    let data = facts::json_to_value(&trust.data);
    TrustState {
        generation: next_generation(),
        trust,
        data,
    }
}
