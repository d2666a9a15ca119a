//! Which caller created each exec instance through portcullis.
//!
//! Why the resolver keeps it: `exec start` names only the exec id, and its
//! creator is part of what the exec resolves to (see [`crate::execs`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many exec creators are remembered.
pub const EXEC_CREATORS_CAPACITY: usize = 16_384;

/// Exec id → the caller that created it through portcullis.
#[derive(Default)]
pub struct ExecCreators {
    inner: Mutex<Creators>,
}

#[derive(Default)]
struct Creators {
    by_exec: HashMap<String, String>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<String>,
}

impl ExecCreators {
    pub fn remember(&self, exec_id: &str, caller: &str) {
        let mut c = self.inner.lock().expect("exec creators lock");
        if c.by_exec
            .insert(exec_id.to_string(), caller.to_string())
            .is_none()
        {
            c.order.push_back(exec_id.to_string());
        }
        while c.order.len() > EXEC_CREATORS_CAPACITY {
            if let Some(old) = c.order.pop_front() {
                c.by_exec.remove(&old);
            }
        }
    }

    pub fn creator(&self, exec_id: &str) -> Option<String> {
        let c = self.inner.lock().expect("exec creators lock");
        c.by_exec.get(exec_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creators_are_bounded_and_forget_the_oldest() {
        let creators = ExecCreators::default();
        for i in 0..EXEC_CREATORS_CAPACITY + 2 {
            creators.remember(&format!("e{i}"), "ci");
        }
        assert_eq!(creators.creator("e0"), None);
        assert_eq!(creators.creator("e1"), None);
        assert_eq!(creators.creator("e2").as_deref(), Some("ci"));
        assert_eq!(
            creators
                .creator(&format!("e{}", EXEC_CREATORS_CAPACITY + 1))
                .as_deref(),
            Some("ci")
        );
    }
}
