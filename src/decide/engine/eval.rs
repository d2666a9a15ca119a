//! Evaluating a decision: the per-thread VMs (or interpreter clones), the
//! input document, and reading the policy's answer into a [`Decision`].
//!
//! Why apart: this is the hot path of every request; it only reads the
//! engine's current state, which loading and compiling replace as a whole.

use std::cell::RefCell;

use regorus::rvm::RegoVM;
use regorus::Engine;

use super::compile::{Compiled, ENTRY_POINT};
use super::{memo, Current, PolicyEngine};
use crate::decide::{facts, Decide, Decision, PolicyInput};

/// Instruction budget per RVM evaluation (the default 25,000 is tight for a
/// caller with many relationships).
const MAX_INSTRUCTIONS: usize = 2_000_000;

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

impl PolicyEngine {
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
                    crate::decide::failclosed::reset();
                    let result = vm.execute();
                    // The VM took a failing built-in for a failing rule body:
                    // refuse, as the interpreter does (see `failclosed`).
                    if let Some(error) = crate::decide::failclosed::take_error() {
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
}

/// `input.now` as unix nanoseconds (the current time when absent).
fn now_ns(now: Option<&str>) -> Result<i128, crate::trust::TrustError> {
    match now {
        Some(n) => Ok(crate::trust::parse_rfc3339("now", n)?.unix_timestamp_nanos()),
        None => Ok(time::OffsetDateTime::now_utc().unix_timestamp_nanos()),
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
    /// the way): the same document `decide_json` builds from its JSON. A
    /// decision made for the same input under the same policy and trust is
    /// reused where that is provably the same decision (see `memo`).
    fn decide(&self, input: &PolicyInput) -> Decision {
        let current = self.current();
        let now_ns = match now_ns(Some(&input.now)) {
            Ok(t) => t,
            Err(e) => return Decision::deny(format!("malformed input: {e}"), &current.version),
        };
        let memo = self.memo_on() && current.policy.memo_off.is_none();
        let scope = memo::Scope {
            engine_id: self.id,
            policy_generation: current.policy.generation,
            trust_generation: current.trust.generation,
        };
        let key = if memo { memo::key(input) } else { None };
        if let Some(hit) = key.as_deref().and_then(|k| memo::get(scope, k, now_ns)) {
            return hit;
        }
        let value = match facts::policy_value(input, &current.trust.trust, now_ns) {
            Ok(value) => value,
            Err(e) => {
                return Decision::deny(
                    format!("unserializable policy input: {e}"),
                    &current.version,
                )
            }
        };
        match self.evaluate(&current, value) {
            Ok(result) => {
                let decision = to_decision(&result, &current.version);
                if let Some(key) = key {
                    let span = current.trust.trust.expiry_span(now_ns);
                    memo::put(scope, key, &decision, span);
                }
                decision
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy evaluation failed; denying");
                Decision::deny(format!("policy evaluation failed: {e}"), &current.version)
            }
        }
    }
}
