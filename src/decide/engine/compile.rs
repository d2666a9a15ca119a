//! Compiling a policy set: parse every file, run the static checks, compile
//! the entry point, then try the RVM and fall back to the interpreter.
//!
//! Why apart: compiling happens off to the side of serving (at load and on
//! reload); what it produces, [`LoadedPolicy`], is what the engine swaps in.

use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;
use regorus::{CompiledPolicy, Engine};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The rule every policy set must define.
pub const ENTRY_POINT: &str = "data.portcullis.decision";

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

pub(super) enum Compiled {
    Rvm {
        program: Arc<Program>,
        policy: CompiledPolicy,
    },
    Interpreter(Box<Engine>),
    Nothing(String),
}

/// A compiled policy set.
pub(crate) struct LoadedPolicy {
    pub(super) generation: u64,
    pub(crate) hash: String,
    pub(crate) files: Vec<String>,
    pub(super) compiled: Compiled,
    pub(crate) rvm_rejection: Option<String>,
    /// Why a decision may not be reused for the same input (see
    /// `lint::memo_unsafe`); `None`: the memo is on.
    pub(crate) memo_off: Option<String>,
}

impl LoadedPolicy {
    pub(super) fn nothing(generation: u64, why: String) -> LoadedPolicy {
        LoadedPolicy {
            generation,
            hash: "none".into(),
            files: Vec::new(),
            compiled: Compiled::Nothing(why),
            rvm_rejection: None,
            memo_off: Some("no policy".into()),
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

pub(super) fn compile_for(
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
    let static_errors = crate::decide::lint::check(engine.get_modules());
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
    let rvm_unsafe = crate::decide::lint::rvm_unsafe(engine.get_modules());
    let memo_off = crate::decide::lint::memo_unsafe(engine.get_modules());
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
                crate::decide::failclosed::wrap_builtins(unique)?;
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
        memo_off,
    })
}
