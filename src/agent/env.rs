//! `GET /api/v1/containers/{id}/env`: the container's environment as
//! `{name: value}`.
//!
//! Why the same redaction as `docker inspect`: this route is granted by
//! `can_inspect`, and an inspect through portcullis already hides
//! secret-looking values from a caller without `can_see_secrets`; a second
//! way to read the environment must not show more. The rule is the filter
//! stage's own ([`crate::filter::looks_secret`]), not a copy.

use http::{Response, StatusCode};
use serde_json::{Map, Value};

use super::{daemon_error, existing_container, Agents, Stages};
use crate::classify::Action;
use crate::decide;
use crate::filter::{looks_secret, REDACTED};
use crate::record::Decided;
use crate::reply::{self, ProxyBody};

pub async fn get(agents: &Agents, stages: &Stages, req: Decided<'_>) -> Response<ProxyBody> {
    let id = match existing_container(&req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let inspect = match agents.docker.inspect_container(&id, None).await {
        Ok(i) => i,
        Err(e) => return daemon_error(&format!("inspecting container {id}"), e),
    };
    let secrets = req.caller.admin
        || decide::may(
            &*stages.decider,
            req.caller,
            req.request,
            req.target,
            Action::CONTAINER_INSPECT_SECRETS,
        );
    let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
    reply::json(StatusCode::OK, &Value::Object(env_map(&env, secrets)))
}

/// `["K=V", …]` as `{K: V}`, secret-looking values redacted unless `secrets`.
/// A later duplicate wins, as in the process's own environment.
pub fn env_map(env: &[String], secrets: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for item in env {
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        let value = if !secrets && looks_secret(name) {
            REDACTED
        } else {
            value
        };
        out.insert(name.to_string(), Value::String(value.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_unless_allowed() {
        let env: Vec<String> = ["PATH=/bin", "DB_PASS=hunter2", "A=b=c", "EMPTY="]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = env_map(&env, false);
        assert_eq!(m["PATH"], "/bin");
        assert_eq!(m["DB_PASS"], REDACTED);
        assert_eq!(m["A"], "b=c");
        assert_eq!(m["EMPTY"], "");
        assert_eq!(env_map(&env, true)["DB_PASS"], "hunter2");
    }
}
