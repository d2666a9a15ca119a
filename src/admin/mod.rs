//! The admin API: trust relationships, callers and their tokens, the decision
//! log and the policy status.
//!
//! Why it lives behind the pipeline: an admin call is identified, classified
//! (`trust.read`, `trust.write`, `caller.write`, `audit.read` …), decided by the
//! same policy and recorded before it runs, exactly like a Docker call. By
//! default only the administrator may make these calls.

// A handler's early exit *is* its response, so errors are responses.
#![allow(clippy::result_large_err)]

pub mod audit_stream;
pub mod cli;

use std::sync::Arc;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::classify::{Action, AdminOp, Classified, Resource, ResourceKind};
use crate::decide::engine::PolicyEngine;
use crate::decide::{Decide, FileContext, PolicyInput, RequestInfo};
use crate::files::ContainerFs;
use crate::identify::{Caller, Identification};
use crate::inspect::Inspected;
use crate::record::{log_unavailable, AuditFilter, AuditLog, Decided, Life, Permit, Record};
use crate::reply::{self, ProxyBody};
use crate::resolve::{Freshness, Resolver, Target};
use crate::trust::store::TrustStore;
use crate::trust::TrustError;

/// The admin API's state.
pub struct Admin {
    pub store: TrustStore,
    pub engine: Arc<PolicyEngine>,
    pub log: AuditLog,
    pub resolver: Arc<Resolver>,
    pub fs: ContainerFs,
}

fn trust_error(e: TrustError) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply::error(status, format!("portcullis: {e}"))
}

fn bad_request(message: impl std::fmt::Display) -> Response<ProxyBody> {
    reply::error(StatusCode::BAD_REQUEST, format!("portcullis: {message}"))
}

/// The JSON body of an admin write, from exactly the inspected bytes.
fn body_json(inspected: &Inspected) -> Result<Value, Response<ProxyBody>> {
    if inspected.bytes.is_empty() {
        return Err(bad_request("a JSON body is required"));
    }
    serde_json::from_slice(&inspected.bytes)
        .map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

/// `POST /api/v1/trust/check`, the seed's shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckRequest {
    caller: String,
    target: String,
    action: String,
    #[serde(default)]
    resource_path: Option<String>,
    /// Also say which rules produced the decision (`policy eval --explain`);
    /// `"full"` lists every rule defined for the input.
    #[serde(default)]
    explain: Option<Value>,
}

impl Admin {
    /// After every trust write: decisions see the change at once.
    fn trust_changed(&self) -> Result<(), Response<ProxyBody>> {
        self.engine.reload_trust().map_err(trust_error)
    }

    /// Serve one permitted admin request, by the handler its route names.
    /// `trust/check` decides and records through `decider` and `recorder`,
    /// the same decide and record stages as every request.
    pub async fn serve(
        &self,
        op: AdminOp,
        _permit: Permit,
        stages: (&dyn Decide, &dyn Record),
        req: Decided<'_>,
    ) -> Response<ProxyBody> {
        let request = req.request;
        let id = request.resource.name.clone().unwrap_or_default();
        let ok = |v: Value| reply::json(StatusCode::OK, &v);
        let body = || body_json(req.inspected);
        match op {
            AdminOp::TrustList => match self.store.list() {
                Ok(list) => ok(json!(list)),
                Err(e) => trust_error(e),
            },
            AdminOp::TrustCreate => {
                let body = match body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                match self.store.create_json(&body) {
                    Ok(rel) => match self.trust_changed() {
                        Ok(()) => reply::json(StatusCode::CREATED, &json!(rel)),
                        Err(r) => r,
                    },
                    Err(e) => trust_error(e),
                }
            }
            AdminOp::AuditQuery => self.audit_query(request),
            AdminOp::TrustCheck => match body() {
                Ok(body) => self.check(stages, req.caller, body, req.life).await,
                Err(r) => r,
            },
            AdminOp::AuditStream => {
                match audit_stream::StreamParams::from_query_pairs(&request.query) {
                    Ok(params) => audit_stream::respond(&self.log, params),
                    Err(e) => audit_stream::bad_request(e),
                }
            }
            AdminOp::AuditVerify => match self.log.verify() {
                Ok(report) => ok(json!(report)),
                Err(e) => reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("portcullis: {e}"),
                ),
            },
            AdminOp::PolicyStatus => ok(json!(self.engine.status())),
            AdminOp::CallerList => match self.store.list_callers() {
                Ok(list) => ok(json!(list)),
                Err(e) => trust_error(e),
            },
            AdminOp::CallerCreate => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewCaller {
                    name: String,
                    #[serde(default)]
                    uids: Vec<u32>,
                }
                let body = match body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let new: NewCaller = match serde_json::from_value(body) {
                    Ok(n) => n,
                    Err(e) => return bad_request(format!("invalid caller: {e}")),
                };
                match self.store.create_caller(&new.name, new.uids) {
                    Ok(c) => reply::json(StatusCode::CREATED, &json!(c)),
                    Err(e) => trust_error(e),
                }
            }
            AdminOp::CallerGet => match self.store.get_caller(&id) {
                Ok(c) => ok(json!(c)),
                Err(e) => trust_error(e),
            },
            AdminOp::CallerDelete => match self.store.delete_caller(&id) {
                Ok(()) => ok(json!({ "name": id, "deleted": true })),
                Err(e) => trust_error(e),
            },
            AdminOp::TokenIssue => match self.store.issue_token(&id) {
                // The secret is shown this once; only its hash is kept.
                Ok((token_id, token)) => reply::json(
                    StatusCode::CREATED,
                    &json!({ "caller": id, "token_id": token_id, "token": token }),
                ),
                Err(e) => trust_error(e),
            },
            AdminOp::TokenRevoke => {
                let token_id = request.path_param("id").unwrap_or_default();
                match self.store.revoke_token(&id, &token_id) {
                    Ok(()) => ok(json!({ "caller": id, "token_id": token_id, "revoked": true })),
                    Err(e) => trust_error(e),
                }
            }
            AdminOp::TrustGet => match self.store.get(&id) {
                Ok(rel) => ok(json!(rel)),
                Err(e) => trust_error(e),
            },
            AdminOp::TrustPatch => {
                let body = match body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                match self.store.patch(&id, &body) {
                    Ok(rel) => match self.trust_changed() {
                        Ok(()) => ok(json!(rel)),
                        Err(r) => r,
                    },
                    Err(e) => trust_error(e),
                }
            }
            AdminOp::TrustDelete => match self.store.delete(&id) {
                Ok(rel) => match self.trust_changed() {
                    Ok(()) => ok(json!(rel)),
                    Err(r) => r,
                },
                Err(e) => trust_error(e),
            },
        }
    }

    fn audit_query(&self, request: &Classified) -> Response<ProxyBody> {
        let filter = match AuditFilter::from_query_pairs(&request.query) {
            Ok(f) => f,
            Err(e) => return bad_request(e),
        };
        match self.log.query(&filter) {
            Ok(page) => reply::json(StatusCode::OK, &json!(page)),
            Err(e) => reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("portcullis: {e}"),
            ),
        }
    }

    /// Decide a hypothetical request for another caller, and record that
    /// decision: the decide stage's input, the record stage's append.
    async fn check(
        &self,
        (decider, recorder): (&dyn Decide, &dyn Record),
        asker: &Caller,
        body: Value,
        life: &Life,
    ) -> Response<ProxyBody> {
        let check: CheckRequest = match serde_json::from_value(body) {
            Ok(c) => c,
            Err(e) => return bad_request(format!("invalid check request: {e}")),
        };
        let full = match &check.explain {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(false),
            Some(Value::String(s)) if s == "full" => Some(true),
            Some(other) => {
                return bad_request(format!(
                    "explain: expected true, false or \"full\", not {other}"
                ))
            }
        };
        let Some(action) = Action::from_name(&check.action) else {
            return bad_request(format!("unknown action {:?}", check.action));
        };
        let kind = match action.family() {
            "container" | "file" => ResourceKind::Container,
            _ => ResourceKind::System,
        };
        let mut target = match kind {
            ResourceKind::Container => match self
                .resolver
                .container(&check.target, Freshness::Fresh)
                .await
            {
                Ok(t) => t,
                Err(e) => return reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}")),
            },
            _ => Target::none(kind, Some(&check.target)),
        };
        if !target.exists {
            // A container that does not exist yet is judged by the name asked about.
            target.name = Some(check.target.trim_start_matches('/').to_string());
        }
        let file = match &check.resource_path {
            None => None,
            Some(raw) => {
                let path = match crate::files::normalize_path(raw) {
                    Ok(p) => p,
                    Err(e) => return bad_request(e),
                };
                match target.id.as_deref().filter(|_| target.exists) {
                    Some(id) => match self.fs.file_context(id, &path).await {
                        Ok(ctx) => Some(ctx),
                        Err(e) => return reply::error(e.status(), format!("portcullis: {e}")),
                    },
                    None => Some(FileContext {
                        path: path.clone(),
                        resolved_path: path,
                        mount: None,
                        entries: Vec::new(),
                    }),
                }
            }
        };
        let subject = Caller {
            name: check.caller.clone(),
            admin: false,
            identified: true,
            via: Identification::Listener {
                listener: format!("trust/check by {}", asker.name),
            },
        };
        let resource = Resource {
            kind,
            name: Some(check.target.clone()),
        };
        let request = RequestInfo {
            method: "CHECK".into(),
            path: "/api/v1/trust/check".into(),
            query: Default::default(),
            version: None,
        };
        let input = PolicyInput::new(
            &subject,
            action,
            resource,
            &target,
            request,
            Value::Null,
            file.clone(),
        );
        let decision = decider.decide(&input);
        let record = life.what_if_record(&subject, action, &target, file.as_ref(), &decision);
        let audit_id = match recorder.append(record).await {
            Ok(seq) => seq,
            Err(e) => return log_unavailable(&e),
        };
        let mut answer = json!({
            "allowed": decision.allowed,
            "trustId": decision.trust_id,
            "reason": decision.reasons.join("; "),
            "reasons": decision.reasons,
            "auditId": audit_id.to_string(),
        });
        if let Some(full) = full {
            match crate::decide::tools::explain_decision(&self.engine, &input, decision, full) {
                Ok(e) => answer["explain"] = json!(e),
                Err(e) => {
                    return reply::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("portcullis: explaining the decision: {e:#}"),
                    )
                }
            }
        }
        reply::json(StatusCode::OK, &answer)
    }
}
