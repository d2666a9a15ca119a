//! The decision memo: a decision reused for an input it was made for.
//!
//! Why: dashboards and CI poll the same requests again and again, and the
//! policy's answer to the same input, policy and trust is the same answer.
//! The memo reuses a decision only where it is provably the same decision:
//! - the key is the whole policy input but its time, under the policy
//!   generation and the trust generation it was made with (a reload of either
//!   starts an empty memo);
//! - an entry holds only between the expiries of relationships around the
//!   time it was made (an expiry is the only way the time changes a decision
//!   of a policy the memo is on for; the span's start matters when the clock
//!   steps back);
//! - the memo is off for a policy that reads the time other than against an
//!   expiry, reads the whole input, or calls a built-in that is not
//!   deterministic (`lint::memo_unsafe`), and a failed evaluation is never kept.
//!
//! One memo per worker thread, like the evaluators: no lock on the hot path.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;

use crate::classify::{Action, Resource};
use crate::decide::{Decision, FileContext, PolicyInput, RequestInfo};
use crate::identify::Caller;
use crate::resolve::Target;

/// Entries per thread and engine; a full memo starts over (polling traffic
/// refills it with what it asks again).
const CAPACITY: usize = 4096;

/// The input but its time: what a decision is a function of, with the
/// policy and the trust.
#[derive(Serialize)]
struct Key<'a> {
    caller: &'a Caller,
    action: Action,
    resource: &'a Resource,
    target: &'a Target,
    request: &'a RequestInfo,
    body: &'a serde_json::Value,
    file: &'a Option<FileContext>,
}

/// The memo key of `input`: everything but `now`, in the memo's own
/// self-delimiting encoding (`memo_key`).
pub(super) fn key(input: &PolicyInput) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    super::memo_key::encode(
        &Key {
            caller: &input.caller,
            action: input.action,
            resource: &input.resource,
            target: &input.target,
            request: &input.request,
            body: &input.body,
            file: &input.file,
        },
        &mut out,
    )
    .ok()?;
    Some(out)
}

struct Memo {
    engine_id: u64,
    policy_generation: u64,
    trust_generation: u64,
    entries: HashMap<Vec<u8>, (Decision, Span)>,
}

thread_local! {
    static MEMOS: RefCell<Vec<Memo>> = const { RefCell::new(Vec::new()) };
}

/// When an entry holds: from the last expiry at or before the decision
/// (inclusive) to the next one (exclusive); `None`: unbounded.
pub(super) type Span = (Option<i128>, Option<i128>);

/// Which memo: the engine, and the generations of its policy and trust.
#[derive(Clone, Copy)]
pub(super) struct Scope {
    pub engine_id: u64,
    pub policy_generation: u64,
    pub trust_generation: u64,
}

fn with_memo<R>(scope: Scope, f: impl FnOnce(&mut Memo) -> R) -> R {
    MEMOS.with(|cell| {
        let mut memos = cell.borrow_mut();
        let i = match memos.iter().position(|m| m.engine_id == scope.engine_id) {
            Some(i) => i,
            None => {
                if memos.len() >= 8 {
                    memos.remove(0);
                }
                memos.push(Memo {
                    engine_id: scope.engine_id,
                    policy_generation: scope.policy_generation,
                    trust_generation: scope.trust_generation,
                    entries: HashMap::new(),
                });
                memos.len() - 1
            }
        };
        let memo = &mut memos[i];
        if memo.policy_generation != scope.policy_generation
            || memo.trust_generation != scope.trust_generation
        {
            memo.entries.clear();
            memo.policy_generation = scope.policy_generation;
            memo.trust_generation = scope.trust_generation;
        }
        f(memo)
    })
}

/// The decision made for `key` in this scope, if it still holds at `now_ns`.
pub(super) fn get(scope: Scope, key: &[u8], now_ns: i128) -> Option<Decision> {
    with_memo(scope, |memo| match memo.entries.get(key) {
        Some((decision, (from, until)))
            if from.is_none_or(|f| f <= now_ns) && until.is_none_or(|u| now_ns < u) =>
        {
            Some(decision.clone())
        }
        _ => None,
    })
}

/// Keep `decision` for `key`, holding within `span`.
pub(super) fn put(scope: Scope, key: Vec<u8>, decision: &Decision, span: Span) {
    with_memo(scope, |memo| {
        if memo.entries.len() >= CAPACITY {
            memo.entries.clear();
        }
        memo.entries.insert(key, (decision.clone(), span));
    })
}
