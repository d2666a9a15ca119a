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

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Engine};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{facts, Decide, Decision, PolicyInput};
use crate::trust::{CompiledTrust, TrustSnapshot, TrustStore};

/// The rule every policy set must define.
pub const ENTRY_POINT: &str = "data.portcullis.decision";

/// Instruction budget per RVM evaluation (the default 25,000 is tight for a
/// caller with many relationships).
const MAX_INSTRUCTIONS: usize = 2_000_000;

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
        include_str!("../../policies/portcullis.rego"),
    ),
    ("actions.rego", include_str!("../../policies/actions.rego")),
    (
        "hardening.rego",
        include_str!("../../policies/hardening.rego"),
    ),
    (
        "settings.rego",
        include_str!("../../policies/settings.rego"),
    ),
];

const STRICT: (&str, &str) = (
    "templates/strict.rego",
    include_str!("../../policies/templates/strict.rego"),
);
const PERMISSIVE: (&str, &str) = (
    "templates/permissive.rego",
    include_str!("../../policies/templates/permissive.rego"),
);

const TESTLIB: (&str, &str) = (
    "testlib_test.rego",
    include_str!("../../policies/testlib_test.rego"),
);

const STANDARD_TESTS: &[(&str, &str)] = &[
    (
        "portcullis_test.rego",
        include_str!("../../policies/portcullis_test.rego"),
    ),
    (
        "hardening_test.rego",
        include_str!("../../policies/hardening_test.rego"),
    ),
];
const STRICT_TESTS: &[(&str, &str)] = &[(
    "templates/strict_test.rego",
    include_str!("../../policies/templates/strict_test.rego"),
)];
const PERMISSIVE_TESTS: &[(&str, &str)] = &[(
    "templates/permissive_test.rego",
    include_str!("../../policies/templates/permissive_test.rego"),
)];

impl Template {
    /// The policy files of this template: (file name, source).
    pub fn files(self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = COMMON
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        match self {
            Template::Strict => files.push((STRICT.0.into(), STRICT.1.into())),
            Template::Permissive => files.push((PERMISSIVE.0.into(), PERMISSIVE.1.into())),
            Template::Standard => {}
        }
        files
    }

    /// The `*_test.rego` files that test this template.
    pub fn test_files(self) -> Vec<(String, String)> {
        let tests = match self {
            Template::Strict => STRICT_TESTS,
            Template::Standard => STANDARD_TESTS,
            Template::Permissive => PERMISSIVE_TESTS,
        };
        std::iter::once(&TESTLIB)
            .chain(tests)
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
}

/// A policy file that failed to load or compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileError {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Which evaluator runs the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evaluator {
    Rvm,
    Interpreter,
    /// No policy loaded: everything is refused.
    None,
}

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
}

/// Read the policy files of a source.
pub fn read_source(source: &PolicySource) -> Result<Vec<(String, String)>, Vec<CompileError>> {
    match source {
        PolicySource::Embedded(template) => Ok(template.files()),
        PolicySource::Dir(dir) => read_dir(dir, false),
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

/// regorus reports `--> file:line:col` in its messages.
fn position_of(message: &str, file: &str) -> Option<(u32, Option<u32>)> {
    let rest = message.split(file).nth(1)?;
    let rest = rest.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let line = parts.next()?.trim().parse().ok()?;
    let column = parts.next().and_then(|c| {
        let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    Some((line, column))
}

fn to_compile_error(file: &str, error: &anyhow::Error) -> CompileError {
    let message = format!("{error:#}");
    let position = position_of(&message, file);
    CompileError {
        file: file.to_string(),
        line: position.map(|(line, _)| line),
        column: position.and_then(|(_, column)| column),
        message,
    }
}

/// Load files into a fresh interpreter, reporting every file's errors.
pub(crate) fn engine_with(files: &[(String, String)]) -> Result<Engine, Vec<CompileError>> {
    let mut engine = Engine::new();
    engine.set_gather_prints(true);
    let mut errors = Vec::new();
    for (name, text) in files {
        if let Err(e) = engine.add_policy(name.clone(), text.clone()) {
            errors.push(to_compile_error(name, &e));
        }
    }
    if errors.is_empty() {
        Ok(engine)
    } else {
        Err(errors)
    }
}

fn source_hash(files: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in files {
        let short = name.rsplit('/').next().unwrap_or(name);
        hasher.update(short.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..6])
}

enum Compiled {
    Rvm {
        program: Arc<Program>,
        policy: CompiledPolicy,
    },
    Interpreter(Box<Engine>),
    Nothing(String),
}

/// A compiled policy set.
pub(crate) struct LoadedPolicy {
    generation: u64,
    pub(crate) hash: String,
    pub(crate) files: Vec<String>,
    compiled: Compiled,
    pub(crate) rvm_rejection: Option<String>,
}

impl LoadedPolicy {
    fn nothing(generation: u64, why: String) -> LoadedPolicy {
        LoadedPolicy {
            generation,
            hash: "none".into(),
            files: Vec::new(),
            compiled: Compiled::Nothing(why),
            rvm_rejection: None,
        }
    }

    pub(crate) fn evaluator(&self) -> Evaluator {
        match self.compiled {
            Compiled::Rvm { .. } => Evaluator::Rvm,
            Compiled::Interpreter(_) => Evaluator::Interpreter,
            Compiled::Nothing(_) => Evaluator::None,
        }
    }
}

/// Compile a policy set: parse every file, compile the entry point, then try
/// the RVM and fall back to the interpreter.
pub(crate) fn compile(
    files: Vec<(String, String)>,
    generation: u64,
) -> Result<LoadedPolicy, Vec<CompileError>> {
    compile_for(files, generation, false)
}

fn compile_for(
    files: Vec<(String, String)>,
    generation: u64,
    interpreter_only: bool,
) -> Result<LoadedPolicy, Vec<CompileError>> {
    if files.is_empty() {
        return Err(vec![CompileError {
            file: "(policies)".into(),
            line: None,
            column: None,
            message: "no policy files (*.rego) found".into(),
        }]);
    }
    let mut engine = engine_with(&files)?;
    // What OPA's compiler rejects and regorus lets through (see `lint`).
    let static_errors = super::lint::check(engine.get_modules());
    if !static_errors.is_empty() {
        return Err(static_errors);
    }
    let entry: regorus::Rc<str> = ENTRY_POINT.into();
    let policy = engine.compile_with_entrypoint(&entry).map_err(|e| {
        let message = format!("{e:#}");
        let file = files
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| message.contains(*n))
            .unwrap_or("(policies)")
            .to_string();
        let position = position_of(&message, &file);
        vec![CompileError {
            line: position.map(|(line, _)| line),
            column: position.and_then(|(_, column)| column),
            file,
            message,
        }]
    })?;
    let hash = source_hash(&files);
    let names = files.iter().map(|(n, _)| n.clone()).collect();
    let rvm_unsafe = super::lint::rvm_unsafe(engine.get_modules());
    let rvm = if interpreter_only {
        Err(anyhow::anyhow!("interpreter requested"))
    } else if let Some(why) = rvm_unsafe {
        Err(anyhow::anyhow!(why))
    } else {
        Compiler::compile_from_policy(&policy, &[ENTRY_POINT])
            .map_err(anyhow::Error::from)
            .and_then(|mut program| {
                let unique = Arc::get_mut(&mut program)
                    .ok_or_else(|| anyhow::anyhow!("the compiled program is shared"))?;
                super::failclosed::wrap_builtins(unique)?;
                Ok(program)
            })
    };
    let (compiled, rvm_rejection) = match rvm {
        Ok(program) => (Compiled::Rvm { program, policy }, None),
        Err(e) => {
            tracing::info!(error = %e, "policy not supported by the RVM; using the interpreter");
            (Compiled::Interpreter(Box::new(engine)), Some(e.to_string()))
        }
    };
    Ok(LoadedPolicy {
        generation,
        hash,
        files: names,
        compiled,
        rvm_rejection,
    })
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

enum Exec {
    Vm(Box<RegoVM>),
    Interpreter(Box<Engine>),
}

struct Worker {
    engine_id: u64,
    policy_generation: u64,
    trust_generation: u64,
    exec: Exec,
}

thread_local! {
    // One evaluator per engine per thread; rebuilt when the policy or trust
    // generation changes.
    static WORKERS: RefCell<Vec<Worker>> = const { RefCell::new(Vec::new()) };
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
        };
        PolicyStatus {
            source,
            version: current.version(),
            policy_hash: current.policy.hash.clone(),
            trust_revision: current.trust.trust.revision,
            evaluator: current.policy.evaluator(),
            rvm_rejection: current.policy.rvm_rejection.clone(),
            files: current.policy.files.clone(),
            last_error: self.last_error().map(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        }
    }

    /// Evaluate a JSON input document (the JSON of a [`PolicyInput`]); the
    /// facts are added here. Used by `policy eval` and tests; serving goes
    /// through [`Decide::decide`], which builds the same document directly.
    pub fn decide_json(&self, input: serde_json::Value) -> Decision {
        let current = self.current();
        let version = &current.version;
        let now = input.get("now").and_then(|n| n.as_str());
        let now_ns = match now_ns(now) {
            Ok(t) => t,
            Err(e) => return Decision::deny(format!("malformed input: {e}"), version),
        };
        let value = match facts::to_policy_value(&input, &current.trust.trust, now_ns) {
            Ok(v) => v,
            Err(e) => return Decision::deny(format!("malformed input: {e}"), version),
        };
        self.decide_value(&current, value)
    }

    fn decide_value(&self, current: &Current, input: regorus::Value) -> Decision {
        match self.evaluate(current, input) {
            Ok(result) => to_decision(&result, &current.version),
            Err(e) => {
                tracing::warn!(error = %e, "policy evaluation failed; denying");
                Decision::deny(format!("policy evaluation failed: {e}"), &current.version)
            }
        }
    }

    fn evaluate(&self, current: &Current, input: regorus::Value) -> anyhow::Result<regorus::Value> {
        if let Compiled::Nothing(why) = &current.policy.compiled {
            anyhow::bail!("no policy is loaded ({why}); every request is refused");
        }
        WORKERS.with(|cell| {
            let mut workers = cell.borrow_mut();
            let position = workers.iter().position(|w| w.engine_id == self.id);
            let stale =
                position.is_some_and(|i| workers[i].policy_generation != current.policy.generation);
            if stale || position.is_none() {
                if let Some(i) = position {
                    workers.swap_remove(i);
                }
                if workers.len() >= 8 {
                    workers.remove(0);
                }
                workers.push(new_worker(self.id, current)?);
            }
            let index = workers
                .iter()
                .position(|w| w.engine_id == self.id)
                .ok_or_else(|| anyhow::anyhow!("worker vanished"))?;
            let worker = &mut workers[index];
            if worker.trust_generation != current.trust.generation {
                match &mut worker.exec {
                    Exec::Vm(vm) => vm.set_data(current.trust.data.clone())?,
                    Exec::Interpreter(engine) => {
                        engine.clear_data();
                        engine.add_data(current.trust.data.clone())?;
                    }
                }
                worker.trust_generation = current.trust.generation;
            }
            match &mut worker.exec {
                Exec::Vm(vm) => {
                    vm.set_input(input);
                    super::failclosed::reset();
                    let result = vm.execute();
                    // The VM took a failing built-in for a failing rule body:
                    // refuse, as the interpreter does (see `failclosed`).
                    if let Some(error) = super::failclosed::take_error() {
                        anyhow::bail!("{error}");
                    }
                    Ok(result?)
                }
                Exec::Interpreter(engine) => {
                    engine.set_input(input);
                    engine.eval_rule(ENTRY_POINT.to_string())
                }
            }
        })
    }

    /// Reload the policies whenever a `.rego` file in `dir` changes (debounced
    /// by 150 ms). The watch stops when the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, dir: PathBuf) -> notify::Result<PolicyWatcher> {
        use notify::{RecursiveMode, Watcher};
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    let relevant = event
                        .paths
                        .iter()
                        .any(|p| p.extension().and_then(|e| e.to_str()) == Some("rego"))
                        || event.paths.is_empty();
                    if relevant && !matches!(event.kind, notify::EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let engine: Weak<PolicyEngine> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Debounce: wait for 150 ms of quiet.
                    while rx.recv_timeout(Duration::from_millis(150)).is_ok() {}
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    let _ = engine.reload_policies();
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(PolicyWatcher {
            _watcher: watcher,
            _thread: thread,
        })
    }
}

/// Keeps a directory watch alive.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
    _thread: std::thread::JoinHandle<()>,
}

/// `input.now` as unix nanoseconds (the current time when absent).
fn now_ns(now: Option<&str>) -> Result<i128, crate::trust::TrustError> {
    match now {
        Some(n) => Ok(crate::trust::parse_rfc3339("now", n)?.unix_timestamp_nanos()),
        None => Ok(time::OffsetDateTime::now_utc().unix_timestamp_nanos()),
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

fn new_worker(engine_id: u64, current: &Current) -> anyhow::Result<Worker> {
    let exec = match &current.policy.compiled {
        Compiled::Rvm { program, policy } => {
            let mut vm = RegoVM::new_with_policy(policy.clone());
            vm.load_program(program.clone());
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            Exec::Vm(Box::new(vm))
        }
        Compiled::Interpreter(engine) => Exec::Interpreter(engine.clone()),
        Compiled::Nothing(why) => anyhow::bail!("no policy is loaded ({why})"),
    };
    Ok(Worker {
        engine_id,
        policy_generation: current.policy.generation,
        // Forces the data to be set on first use.
        trust_generation: 0,
        exec,
    })
}

/// Read `{allowed, reasons, trust_id}`; anything else is a deny.
pub(crate) fn to_decision(result: &regorus::Value, version: &str) -> Decision {
    use regorus::Value as V;
    if *result == V::Undefined {
        return Decision::deny(
            format!("the policy did not define {ENTRY_POINT}; refusing"),
            version,
        );
    }
    let field = |name: &str| match result {
        V::Object(o) => o.get(&V::from(name)),
        _ => None,
    };
    let allowed = match field("allowed") {
        Some(V::Bool(b)) => Some(*b),
        _ => None,
    };
    let reasons: Option<Vec<String>> = match field("reasons") {
        Some(V::Array(a)) => Some(
            a.iter()
                .map(|r| match r {
                    V::String(s) => s.to_string(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                })
                .collect(),
        ),
        _ => None,
    };
    let trust_id = match field("trust_id") {
        Some(V::String(s)) => Some(s.to_string()),
        _ => None,
    };
    match (allowed, reasons) {
        (Some(allowed), Some(reasons)) => Decision {
            allowed,
            reasons,
            trust_id,
            policy_version: version.to_string(),
        },
        _ => {
            let json = serde_json::to_string(result).unwrap_or_else(|e| e.to_string());
            Decision::deny(
                format!("malformed decision {json} (expected {{allowed: bool, reasons: [string], trust_id}}); refusing"),
                version,
            )
        }
    }
}

impl Decide for PolicyEngine {
    /// Builds the regorus input straight from the typed input (no JSON on
    /// the way): the same document `decide_json` builds from its JSON.
    fn decide(&self, input: &PolicyInput) -> Decision {
        let current = self.current();
        let now_ns = match now_ns(Some(&input.now)) {
            Ok(t) => t,
            Err(e) => return Decision::deny(format!("malformed input: {e}"), &current.version),
        };
        match facts::policy_value(input, &current.trust.trust, now_ns) {
            Ok(value) => self.decide_value(&current, value),
            Err(e) => Decision::deny(
                format!("unserializable policy input: {e}"),
                &current.version,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn input(caller: &str, action: &str, target: &str) -> serde_json::Value {
        json!({
            "caller": {"name": caller, "admin": false, "identified": true, "via": {"source": "token", "token_id": "t"}},
            "action": action,
            "resource": {"kind": "container", "name": target},
            "target": {"reference": target, "id": "abc", "name": target, "labels": {}, "image": "busybox", "exists": true},
            "request": {"method": "POST", "path": "/", "query": {}, "version": null},
            "body": null,
            "file": null,
            "now": "2025-01-01T00:00:00Z",
        })
    }

    fn engines(specs: &[serde_json::Value]) -> Vec<PolicyEngine> {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = TrustStore::open(&db).unwrap();
        for spec in specs {
            store.create_json(spec).unwrap();
        }
        let rvm = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
        let interp = PolicyEngine::load_interpreted(PolicySource::Embedded(Template::Standard));
        rvm.attach_trust(store.clone()).unwrap();
        interp.attach_trust(store).unwrap();
        assert_eq!(rvm.evaluator(), Evaluator::Rvm);
        assert_eq!(interp.evaluator(), Evaluator::Interpreter);
        vec![rvm, interp]
    }

    /// Decide on both evaluators; they must agree.
    fn decide(engines: &[PolicyEngine], input: serde_json::Value) -> Decision {
        let a = engines[0].decide_json(input.clone());
        let b = engines[1].decide_json(input);
        assert_eq!(a, b, "RVM and interpreter disagree");
        a
    }

    /// Decide on both evaluators where a built-in fails: both must refuse
    /// for that reason (the wording of the error differs).
    fn decide_failing(engines: &[PolicyEngine], input: serde_json::Value) -> Decision {
        let a = engines[0].decide_json(input.clone());
        let b = engines[1].decide_json(input);
        for d in [&a, &b] {
            assert!(
                !d.allowed && d.reasons[0].starts_with("policy evaluation failed"),
                "RVM {a:?}\ninterpreter {b:?}"
            );
        }
        a
    }

    fn rel(caller: &str, target: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut v = json!({"caller_service": caller, "target_container": target});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn seed_rights_on_both_evaluators() {
        let e = engines(&[rel("ci", "web-*", json!({"can_restart": true}))]);
        let d = decide(&e, input("ci", "container.restart", "web-1"));
        assert!(d.allowed, "{d:?}");
        assert!(d.trust_id.is_some());
        assert!(
            d.reasons[0].contains("allowed by trust relationship"),
            "{d:?}"
        );
        let d = decide(&e, input("ci", "container.exec", "web-1"));
        assert!(!d.allowed);
        assert!(d.reasons[0].contains("needs can_exec"), "{d:?}");
        let d = decide(&e, input("ci", "container.logs", "web-1"));
        assert!(d.allowed, "default can_logs");
        let d = decide(&e, input("ci", "container.restart", "db"));
        assert!(!d.allowed);
        assert!(
            d.reasons[0].contains("no trust relationship for db"),
            "{d:?}"
        );
        let d = decide(&e, input("other", "container.inspect", "web-1"));
        assert!(!d.allowed);
    }

    #[test]
    fn admin_and_unidentified() {
        let e = engines(&[]);
        let mut admin = input("root", "container.prune", "");
        admin["caller"]["admin"] = json!(true);
        assert!(decide(&e, admin).allowed);
        let mut anon = input("unidentified(x)", "system.ping", "");
        anon["caller"]["identified"] = json!(false);
        let d = decide(&e, anon);
        assert!(!d.allowed);
        assert!(d.reasons[0].contains("not identified"));
        let d = decide(&e, input("ci", "no.such.action", "x"));
        assert!(!d.allowed);
        assert!(d.reasons[0].contains("not known"), "{d:?}");
    }

    #[test]
    fn files_and_hardening() {
        let e = engines(&[rel(
            "ci",
            "web-1",
            json!({"file_write_paths": ["/app/config/*"], "can_create": true, "allowed_images": ["busybox:*"]}),
        )]);
        let mut w = input("ci", "file.write", "web-1");
        w["file"] =
            json!({"path": "/app/config/a", "resolved_path": "/app/config/a", "mount": null});
        assert!(decide(&e, w.clone()).allowed);
        w["file"]["resolved_path"] = json!("/etc/passwd");
        assert!(!decide(&e, w.clone()).allowed);
        w["file"] = json!({"path": "/app/config/a", "resolved_path": "/app/config/a",
            "mount": {"type": "bind", "source": "/srv/x", "destination": "/app/config", "rw": true}});
        let d = decide(&e, w);
        assert!(!d.allowed);
        assert!(d.reasons[0].contains("bind mount /srv/x"), "{d:?}");

        let mut c = input("ci", "container.create", "web-1");
        c["body"] = json!({"Image": "busybox", "HostConfig": {"Privileged": true}});
        let d = decide(&e, c.clone());
        assert!(!d.allowed);
        assert_eq!(d.reasons, vec!["privileged containers are not allowed for caller ci (no trust relationship opts in)"]);
        c["body"] = json!({"Image": "alpine"});
        assert!(!decide(&e, c.clone()).allowed);
        c["body"] = json!({"Image": "busybox:1"});
        assert!(decide(&e, c).allowed);
    }

    #[test]
    fn expired_relationships_grant_nothing() {
        let e = engines(&[rel(
            "ci",
            "web",
            json!({"expires_at": "2024-06-01T00:00:00Z"}),
        )]);
        let mut i = input("ci", "container.inspect", "web");
        i["now"] = json!("2024-05-01T00:00:00Z");
        assert!(decide(&e, i.clone()).allowed);
        i["now"] = json!("2024-07-01T00:00:00Z");
        assert!(!decide(&e, i).allowed);
    }

    const ALLOW_ALL: &str = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"custom\"], \"trust_id\": null}\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn interpreter_fallback_for_with_and_print() {
        let with_policy = "package portcullis\nimport rego.v1\nflag := input.flag\ndecision := {\"allowed\": x, \"reasons\": [\"w\"], \"trust_id\": null} if {\n  x := flag with input.flag as true\n}\n";
        let print_policy = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"p\"], \"trust_id\": null} if {\n  print(\"hello\")\n}\n";
        for (policy, reason) in [(with_policy, "w"), (print_policy, "p")] {
            let dir = dir_with(&[("p.rego", policy)]);
            let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
            assert_eq!(engine.last_error(), None);
            assert_eq!(engine.evaluator(), Evaluator::Interpreter);
            assert!(engine.status().rvm_rejection.is_some());
            let d = engine.decide_json(input("ci", "container.inspect", "x"));
            assert!(d.allowed, "{d:?}");
            assert_eq!(d.reasons, vec![reason]);
        }
    }

    #[test]
    fn broken_policy_keeps_the_previous_one() {
        let dir = dir_with(&[("p.rego", ALLOW_ALL)]);
        let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        let before = engine.version();
        assert!(
            engine
                .decide_json(input("ci", "container.inspect", "x"))
                .allowed
        );
        std::fs::write(
            dir.path().join("p.rego"),
            "package portcullis\ndecision := {\n",
        )
        .unwrap();
        let errors = engine.reload_policies().unwrap_err();
        assert!(errors[0].file.ends_with("p.rego"));
        assert!(engine.last_error().is_some());
        assert!(engine.status().last_error.is_some());
        assert_eq!(engine.version(), before);
        assert!(
            engine
                .decide_json(input("ci", "container.inspect", "x"))
                .allowed
        );
        // A fixed policy replaces it and clears the error.
        std::fs::write(
            dir.path().join("p.rego"),
            ALLOW_ALL.replace("true", "false"),
        )
        .unwrap();
        engine.reload_policies().unwrap();
        assert_eq!(engine.last_error(), None);
        assert_ne!(engine.version(), before);
        assert!(
            !engine
                .decide_json(input("ci", "container.inspect", "x"))
                .allowed
        );
    }

    #[test]
    fn no_loadable_policy_denies_everything() {
        let empty = tempfile::tempdir().unwrap();
        let engine = PolicyEngine::load(PolicySource::Dir(empty.path().into()));
        assert!(engine.last_error().is_some());
        assert_eq!(engine.evaluator(), Evaluator::None);
        let mut admin = input("root", "system.ping", "");
        admin["caller"]["admin"] = json!(true);
        let d = engine.decide_json(admin);
        assert!(!d.allowed);
        assert!(d.reasons[0].contains("no policy is loaded"), "{d:?}");
        // Only test files: still nothing to serve.
        let tests_only = dir_with(&[("a_test.rego", ALLOW_ALL)]);
        let engine = PolicyEngine::load(PolicySource::Dir(tests_only.path().into()));
        assert!(!engine.decide_json(input("ci", "system.ping", "")).allowed);
        // A policy without the entry point refuses too.
        let other = dir_with(&[("p.rego", "package other\nx := 1\n")]);
        let engine = PolicyEngine::load(PolicySource::Dir(other.path().into()));
        assert!(!engine.decide_json(input("ci", "system.ping", "")).allowed);
    }

    #[test]
    fn evaluation_errors_fail_closed() {
        let policy = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"x\"], \"trust_id\": null} if {\n  x := 1 / input.zero\n  x > 0\n}\n";
        let malformed = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": \"yes\"}\n";
        for text in [policy, malformed] {
            let dir = dir_with(&[("p.rego", text)]);
            let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
            let mut i = input("ci", "system.ping", "");
            i["zero"] = json!(0);
            let d = engine.decide_json(i);
            assert!(!d.allowed, "{d:?}");
        }
        let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
        let mut bad_time = input("ci", "system.ping", "");
        bad_time["now"] = json!("yesterday");
        assert!(!engine.decide_json(bad_time).allowed);
    }

    #[test]
    fn trust_reload_changes_decisions_and_version() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = TrustStore::open(&db).unwrap();
        let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
        engine.attach_trust(store.clone()).unwrap();
        assert!(
            !engine
                .decide_json(input("ci", "container.start", "web"))
                .allowed
        );
        let v0 = engine.version();
        let r = store
            .create_json(
                &json!({"caller_service": "ci", "target_container": "web", "can_start": true}),
            )
            .unwrap();
        engine.reload_trust().unwrap();
        assert!(
            engine
                .decide_json(input("ci", "container.start", "web"))
                .allowed
        );
        assert_ne!(engine.version(), v0);
        assert!(engine.version().ends_with("-t1"));
        store.patch(&r.id, &json!({"can_start": false})).unwrap();
        engine.reload_trust().unwrap();
        assert!(
            !engine
                .decide_json(input("ci", "container.start", "web"))
                .allowed
        );
    }

    #[test]
    fn watch_reloads_within_a_second() {
        let dir = dir_with(&[("p.rego", ALLOW_ALL)]);
        let engine = Arc::new(PolicyEngine::load(PolicySource::Dir(dir.path().into())));
        let _watcher = engine.watch(dir.path().into()).unwrap();
        let before = engine.version();
        std::fs::write(
            dir.path().join("p.rego"),
            ALLOW_ALL.replace("true", "false"),
        )
        .unwrap();
        let start = std::time::Instant::now();
        while engine.version() == before && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "reload took {:?}",
            start.elapsed()
        );
        assert!(
            !engine
                .decide_json(input("ci", "container.inspect", "x"))
                .allowed
        );
    }

    #[test]
    fn decisions_continue_during_reloads() {
        let engine = Arc::new(PolicyEngine::load(PolicySource::Embedded(
            Template::Standard,
        )));
        engine
            .set_trust(TrustSnapshot {
                revision: 1,
                relationships: vec![crate::trust::TrustRelationship {
                    id: "r".into(),
                    spec: crate::trust::TrustSpec::from_json(
                        &json!({"caller_service": "ci", "target_container": "*"}),
                    )
                    .unwrap(),
                    created_at: "2024-01-01T00:00:00Z".into(),
                    updated_at: "2024-01-01T00:00:00Z".into(),
                }],
            })
            .unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    (0..100).all(|_| {
                        engine
                            .decide_json(input("ci", "container.inspect", "x"))
                            .allowed
                    })
                })
            })
            .collect();
        for _ in 0..5 {
            engine.reload_policies().unwrap();
        }
        for w in workers {
            assert!(w.join().unwrap());
        }
    }

    #[test]
    fn templates_load_on_the_rvm() {
        for t in [Template::Strict, Template::Standard, Template::Permissive] {
            let engine = PolicyEngine::load(PolicySource::Embedded(t));
            assert_eq!(
                engine.evaluator(),
                Evaluator::Rvm,
                "{t}: {:?}",
                engine.status().rvm_rejection
            );
        }
        let strict = PolicyEngine::load(PolicySource::Embedded(Template::Strict));
        let permissive = PolicyEngine::load(PolicySource::Embedded(Template::Permissive));
        let mut image_list = input("ci", "image.list", "");
        image_list["resource"] = json!({"kind": "image", "name": null});
        assert!(permissive.decide_json(image_list.clone()).allowed);
        assert!(!strict.decide_json(image_list).allowed);
    }

    /// The hardening rules run on the RVM in production but are unit-tested in
    /// Rego on the interpreter: check both agree on every rule.
    #[test]
    fn hardening_agrees_on_both_evaluators() {
        let e = engines(&[
            rel(
                "ci",
                "web-*",
                json!({"can_create": true, "allowed_images": ["busybox*"], "can_exec": true,
                "allow_bind_mounts": ["/srv/**"], "file_write_paths": ["/srv/**"], "resources": {"networks": {"write": true}, "plugins": {"write": true},
                "swarm": {"write": true}, "volumes": {"write": true}}}),
            ),
            rel("ci", "db", json!({"can_inspect": false})),
            rel(
                "ops",
                "*",
                json!({"can_create": true, "allowed_images": ["*"], "allow_privileged": true,
                "allow_host_namespaces": true, "allow_cap_add": ["ALL"], "allow_unconfined": true, "allow_devices": true,
                "allow_bind_mounts": ["/var/run/docker.sock", "/**"], "allow_sysctls": true, "allow_privileged_exec": true,
                "allow_plugins": true, "can_exec": true, "resources": {"networks": {"write": true}, "plugins": {"write": true}}}),
            ),
        ]);
        let hcs = [
            (json!({}), true),
            (json!({"Privileged": true}), false),
            (json!({"NetworkMode": "host"}), false),
            (json!({"PidMode": "host"}), false),
            (json!({"IpcMode": "host"}), false),
            (json!({"UTSMode": "host"}), false),
            (json!({"UsernsMode": "host"}), false),
            (json!({"CgroupnsMode": "host"}), false),
            (json!({"NetworkMode": "container:db"}), false),
            (json!({"NetworkMode": "container:web-2"}), true),
            (json!({"VolumesFrom": ["db:ro"]}), false),
            (json!({"CapAdd": ["SYS_ADMIN"]}), false),
            (json!({"CapAdd": ["CHOWN", "cap_kill"]}), true),
            (json!({"CapAdd": ["ALL"]}), false),
            (json!({"SecurityOpt": ["seccomp:unconfined"]}), false),
            (json!({"SecurityOpt": ["label=disable"]}), false),
            (json!({"SecurityOpt": ["no-new-privileges"]}), true),
            (json!({"MaskedPaths": []}), false),
            (json!({"ReadonlyPaths": []}), false),
            (json!({"SecurityOpt": ["seccomp=/tmp/profile.json"]}), false),
            (json!({"CapAdd": ["sys_admin"]}), false),
            (json!({"Devices": [{"PathOnHost": "/dev/kmsg"}]}), false),
            (json!({"DeviceRequests": [{"Count": -1}]}), false),
            (json!({"DeviceCgroupRules": ["a *:* rwm"]}), false),
            (json!({"Binds": ["/srv/app:/app"]}), true),
            (json!({"Binds": ["/etc:/etc"]}), false),
            (
                json!({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
                false,
            ),
            // `/` holds the socket: even `/**` does not grant it (checked below).
            (json!({"Mounts": [{"Type": "bind", "Source": "/"}]}), false),
            (
                json!({"Mounts": [{"Type": "volume", "Source": "v", "VolumeOptions": {"DriverConfig": {"Options": {"o": "bind", "device": "/root"}}}}]}),
                false,
            ),
            (json!({"Sysctls": {"kernel.msgmax": "1"}}), false),
        ];
        for (hc, expected) in hcs {
            for caller in ["ci", "ops"] {
                let mut i = input(caller, "container.create", "web-1");
                i["body"] = json!({"Image": "busybox", "HostConfig": hc});
                // As the resolve stage finds the referenced containers.
                i["target"]["referenced"] = json!([
                    {"reference": "db", "id": "d0", "name": "db", "exists": true, "labels": {}},
                    {"reference": "web-2", "id": "w2", "name": "web-2", "exists": true, "labels": {}},
                ]);
                let d = decide(&e, i);
                let root_bind = hc.to_string().contains(r#""Source":"/""#);
                let want = expected || (caller == "ops" && !root_bind);
                assert_eq!(d.allowed, want, "{caller} {hc}: {d:?}");
                if !d.allowed {
                    let who = format!("caller {caller}");
                    assert!(d.reasons.iter().all(|r| r.contains(&who)), "{d:?}");
                }
            }
        }
        let mut endpoint = input("ci", "container.create", "web-1");
        endpoint["body"] = json!({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"n": {"DriverOpts": {"com.docker.network.endpoint.sysctls": "x=1"}}}}});
        assert!(!decide(&e, endpoint).allowed);
        let mut exec = input("ci", "container.exec", "web-1");
        exec["body"] = json!({"Cmd": ["id"], "Privileged": true});
        assert!(!decide(&e, exec.clone()).allowed);
        exec["caller"]["name"] = json!("ops");
        assert!(decide(&e, exec).allowed);
        for action in ["plugin.install", "plugin.set", "plugin.upgrade"] {
            assert!(!decide(&e, input("ci", action, "p")).allowed);
            assert!(decide(&e, input("ops", action, "p")).allowed);
        }
        let mut connect = input("ci", "network.connect", "n");
        connect["body"] = json!({"Container": "web-1", "EndpointConfig": {"DriverOpts": {"com.docker.network.endpoint.sysctls": "x=1"}}});
        assert!(!decide(&e, connect).allowed);
        let mut service = input("ci", "service.create", "s");
        service["body"] = json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Mounts": [{"Type": "bind", "Source": "/etc"}]}}});
        assert!(!decide(&e, service).allowed);
        // The service hardening rules, one at a time, on both evaluators.
        for (spec, why) in [
            (
                json!({"CapabilityAdd": ["CAP_SYS_ADMIN"]}),
                "capability SYS_ADMIN",
            ),
            (
                json!({"Privileges": {"Seccomp": {"Mode": "unconfined"}}}),
                "seccomp",
            ),
            (
                json!({"Privileges": {"AppArmor": {"Mode": "disabled"}}}),
                "AppArmor",
            ),
            (json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}), "sysctls"),
        ] {
            let mut service = input("ci", "service.create", "s");
            let mut container_spec = json!({"Image": "busybox"});
            for (k, v) in spec.as_object().unwrap() {
                container_spec[k] = v.clone();
            }
            service["body"] = json!({"TaskTemplate": {"ContainerSpec": container_spec}});
            let d = decide(&e, service.clone());
            assert!(!d.allowed && d.reasons[0].contains(why), "{spec}: {d:?}");
            service["caller"]["name"] = json!("ops");
            assert!(!decide(&e, service).allowed, "ops has no swarm rights");
        }
        let mut service = input("ci", "service.create", "s");
        service["body"] = json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox",
            "CapabilityAdd": ["CHOWN"]}}});
        assert!(decide(&e, service).allowed);
        // A write inside a bind mount of the host needs allow_bind_writes.
        let mut write = input("ci", "file.write", "web-1");
        write["file"] = json!({"path": "/srv/a", "resolved_path": "/srv/a",
            "mount": {"type": "bind", "source": "/srv", "destination": "/srv", "rw": true}});
        let d = decide(&e, write.clone());
        assert!(
            !d.allowed && d.reasons[0].contains("inside bind mount /srv"),
            "{d:?}"
        );
        write["file"]["mount"]["type"] = json!("volume");
        assert!(decide(&e, write).allowed);
        let mut volume = input("ci", "volume.create", "v");
        volume["body"] = json!({"DriverOpts": {"device": "/srv/x", "o": "bind"}});
        assert!(decide(&e, volume.clone()).allowed);
        volume["body"] = json!({"DriverOpts": {"device": "/etc", "o": "bind"}});
        assert!(!decide(&e, volume).allowed);
    }

    /// A built-in that fails (a timestamp past 2262, `count(null)`) is an
    /// error on both evaluators, so a deny rule cannot turn into an allow on
    /// the RVM while the interpreter refuses.
    #[test]
    fn builtin_errors_deny_on_both_evaluators() {
        // The shipped policy: an expiry that `time.parse_rfc3339_ns` cannot
        // represent must not leave the relationship live on the RVM.
        let e = engines(&[rel(
            "ci",
            "web",
            json!({"expires_at": "2300-01-01T00:00:00Z"}),
        )]);
        let d = decide_failing(&e, input("ci", "container.inspect", "web"));
        assert!(d.reasons[0].contains("time.parse_rfc3339_ns"), "{d:?}");

        // A custom deny rule over a built-in that fails on a null list.
        let policy = "package portcullis\nimport rego.v1\n\nrefused if count(input.body.list) > 0\n\nrefused if time.parse_rfc3339_ns(input.body.until) < input.now_ns\n\ndecision := {\"allowed\": false, \"reasons\": [\"refused\"], \"trust_id\": null} if refused\n\nelse := {\"allowed\": true, \"reasons\": [\"ok\"], \"trust_id\": null}\n";
        let dir = dir_with(&[("p.rego", policy)]);
        let rvm = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        let interp = PolicyEngine::load_interpreted(PolicySource::Dir(dir.path().into()));
        assert_eq!(rvm.evaluator(), Evaluator::Rvm, "{:?}", rvm.status());
        let e = [rvm, interp];
        let mut i = input("ci", "container.inspect", "web");
        i["body"] = json!({"list": [], "until": "2030-01-01T00:00:00Z"});
        assert!(decide(&e, i.clone()).allowed);
        i["body"]["list"] = json!(["x"]);
        assert!(!decide(&e, i.clone()).allowed);
        for body in [
            json!({"list": null, "until": "2030-01-01T00:00:00Z"}),
            json!({"list": [], "until": "2300-01-01T00:00:00Z"}),
            json!({"list": [], "until": 5}),
        ] {
            i["body"] = body.clone();
            decide_failing(&e, i.clone());
        }

        // The RVM leaves `x / 0` undefined (not an error it could report): a
        // policy dividing by what may be zero runs on the interpreter.
        let division = "package portcullis\nimport rego.v1\n\nrefused if 100 / input.body.n > 1\n\ndecision := {\"allowed\": false, \"reasons\": [\"refused\"], \"trust_id\": null} if refused\n\nelse := {\"allowed\": true, \"reasons\": [\"ok\"], \"trust_id\": null}\n";
        let dir = dir_with(&[("p.rego", division)]);
        let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        assert_eq!(engine.evaluator(), Evaluator::Interpreter);
        let why = engine.status().rvm_rejection.unwrap();
        assert!(why.contains("p.rego:4:") && why.contains("`/`"), "{why}");
        i["body"] = json!({"n": 1000});
        assert!(engine.decide_json(i.clone()).allowed);
        i["body"] = json!({"n": 0});
        let d = engine.decide_json(i);
        assert!(
            !d.allowed && d.reasons[0].contains("divide by zero"),
            "{d:?}"
        );
    }

    /// `request_dangers` is documented for any action: a rule refusing pulls
    /// from outside a registry must refuse them, on both evaluators.
    #[test]
    fn request_dangers_apply_to_every_action() {
        let registry_rule = "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": input.image, \"msg\": sprintf(\"pulling %s from outside registry.local is not allowed\", [input.image]), \"why\": \"site rule\"} if {\n\tinput.action == \"image.pull\"\n\tnot startswith(input.image, \"registry.local/\")\n}\n";
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in Template::Standard.files() {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("registry.rego"), registry_rule).unwrap();
        let snapshot = TrustSnapshot {
            revision: 1,
            relationships: vec![crate::trust::TrustRelationship {
                id: "r".into(),
                spec: crate::trust::TrustSpec::from_json(&json!({
                    "caller_service": "ci", "target_container": "*",
                    "can_pull": true, "allowed_images": ["*"]}))
                .unwrap(),
                created_at: "2024-01-01T00:00:00Z".into(),
                updated_at: "2024-01-01T00:00:00Z".into(),
            }],
        };
        let e = [
            PolicyEngine::load(PolicySource::Dir(dir.path().into())),
            PolicyEngine::load_interpreted(PolicySource::Dir(dir.path().into())),
        ];
        assert_eq!(e[0].evaluator(), Evaluator::Rvm, "{:?}", e[0].status());
        for engine in &e {
            engine.set_trust(snapshot.clone()).unwrap();
        }
        let pull = |image: &str| {
            let mut i = input("ci", "image.pull", image);
            i["resource"] = json!({"kind": "image", "name": image});
            i["target"] = json!({"reference": image, "exists": false, "labels": {}});
            i
        };
        assert!(decide(&e, pull("registry.local/app:1")).allowed);
        let d = decide(&e, pull("docker.io/library/busybox:latest"));
        assert!(!d.allowed, "{d:?}");
        assert_eq!(
            d.reasons,
            vec!["pulling docker.io/library/busybox:latest from outside registry.local is not allowed for caller ci (site rule)"]
        );
    }

    /// What `policy check` rejects statically, startup refuses to serve and a
    /// hot reload refuses to swap in: the previous policy stays in force.
    #[test]
    fn static_errors_block_startup_and_reload() {
        use crate::decide::tools::tests::{standard_with, REJECTED};
        let dir = standard_with(&[]);
        let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        engine
            .set_trust(TrustSnapshot {
                revision: 1,
                relationships: vec![crate::trust::TrustRelationship {
                    id: "r".into(),
                    spec: crate::trust::TrustSpec::from_json(
                        &json!({"caller_service": "ci", "target_container": "web"}),
                    )
                    .unwrap(),
                    created_at: "2024-01-01T00:00:00Z".into(),
                    updated_at: "2024-01-01T00:00:00Z".into(),
                }],
            })
            .unwrap();
        let before = engine.version();
        let inspect = || input("ci", "container.inspect", "web");
        assert!(engine.decide_json(inspect()).allowed);
        for (text, file, line, column, message) in REJECTED {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            let errors = engine.reload_policies().expect_err(message);
            let where_ = format!("{file}:{line}:{column}: ");
            assert!(
                errors.iter().any(|e| e.to_string().contains(&where_)),
                "{where_}: {errors:?}"
            );
            assert_eq!(engine.version(), before, "{message}");
            assert_eq!(engine.evaluator(), Evaluator::Rvm);
            assert!(engine.decide_json(inspect()).allowed, "{message}");
            assert!(engine.status().last_error.unwrap().contains(message));
            // At startup there is no previous policy: nothing is served.
            let fresh = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
            assert_eq!(fresh.evaluator(), Evaluator::None, "{message}");
            assert!(!fresh.decide_json(inspect()).allowed);
            std::fs::remove_file(&path).unwrap();
        }
        engine.reload_policies().unwrap();
        assert_eq!(engine.last_error(), None);
    }

    #[test]
    fn default_policy_runs_on_the_rvm() {
        let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
        assert_eq!(engine.last_error(), None);
        let status = engine.status();
        assert_eq!(
            status.evaluator,
            Evaluator::Rvm,
            "{:?}",
            status.rvm_rejection
        );
    }
}
