//! The admin API: trust relationships, callers and their tokens, the decision
//! log and the policy status.
//!
//! Why it lives behind the pipeline: an admin call is identified, classified
//! (`trust.read`, `trust.write`, `caller.write`, `audit.read` …), decided by the
//! same policy and recorded before it runs, exactly like a Docker call. By
//! default only the administrator may make these calls.

// A handler's early exit *is* its response, so errors are responses.
#![allow(clippy::result_large_err)]

pub mod cli;

use std::sync::Arc;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::classify::{Classified, Resource, ResourceKind};
use crate::decide::engine::PolicyEngine;
use crate::decide::{Decide, FileContext, PolicyInput, RequestInfo};
use crate::files::ContainerFs;
use crate::identify::{Caller, Identification};
use crate::record::{AuditFilter, AuditLog, AuditRecord};
use crate::reply::{self, ProxyBody};
use crate::resolve::{Freshness, Resolver, Target};
use crate::stages::{Forwardable, Life};
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
fn body_json(work: &Forwardable) -> Result<Value, Response<ProxyBody>> {
    if work.inspected.bytes.is_empty() {
        return Err(bad_request("a JSON body is required"));
    }
    serde_json::from_slice(&work.inspected.bytes)
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
}

impl Admin {
    /// After every trust write: decisions see the change at once.
    fn trust_changed(&self) -> Result<(), Response<ProxyBody>> {
        self.engine.reload_trust().map_err(trust_error)
    }

    /// Serve one allowed admin request.
    pub async fn serve(
        &self,
        caller: &Caller,
        request: &Classified,
        work: Forwardable,
        life: &Life,
    ) -> Response<ProxyBody> {
        let id = request.resource.name.clone().unwrap_or_default();
        let ok = |v: Value| reply::json(StatusCode::OK, &v);
        let method = request.route.method;
        let pattern = request.route.pattern;
        match (method, pattern) {
            ("GET", "/api/v1/trust") => match self.store.list() {
                Ok(list) => ok(json!(list)),
                Err(e) => trust_error(e),
            },
            ("POST", "/api/v1/trust") => {
                let body = match body_json(&work) {
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
            ("GET", "/api/v1/trust/audit") => self.audit_query(request),
            ("POST", "/api/v1/trust/check") => match body_json(&work) {
                Ok(body) => self.check(caller, body, life).await,
                Err(r) => r,
            },
            ("GET", "/api/v1/audit/verify") => match self.log.verify() {
                Ok(report) => ok(json!(report)),
                Err(e) => reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("portcullis: {e}"),
                ),
            },
            ("GET", "/api/v1/policy") => ok(json!(self.engine.status())),
            ("GET", "/api/v1/callers") => match self.store.list_callers() {
                Ok(list) => ok(json!(list)),
                Err(e) => trust_error(e),
            },
            ("POST", "/api/v1/callers") => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewCaller {
                    name: String,
                    #[serde(default)]
                    uids: Vec<u32>,
                }
                let body = match body_json(&work) {
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
            ("GET", p) if p.starts_with("/api/v1/callers/") => match self.store.get_caller(&id) {
                Ok(c) => ok(json!(c)),
                Err(e) => trust_error(e),
            },
            ("DELETE", "/api/v1/callers/{name}") => match self.store.delete_caller(&id) {
                Ok(()) => ok(json!({ "name": id, "deleted": true })),
                Err(e) => trust_error(e),
            },
            ("POST", p) if p.ends_with("/tokens") => match self.store.issue_token(&id) {
                // The secret is shown this once; only its hash is kept.
                Ok((token_id, token)) => reply::json(
                    StatusCode::CREATED,
                    &json!({ "caller": id, "token_id": token_id, "token": token }),
                ),
                Err(e) => trust_error(e),
            },
            ("DELETE", p) if p.contains("/tokens/") => {
                let token_id = request.path_param("id").unwrap_or_default();
                match self.store.revoke_token(&id, &token_id) {
                    Ok(()) => ok(json!({ "caller": id, "token_id": token_id, "revoked": true })),
                    Err(e) => trust_error(e),
                }
            }
            ("GET", _) => match self.store.get(&id) {
                Ok(rel) => ok(json!(rel)),
                Err(e) => trust_error(e),
            },
            ("PATCH", _) => {
                let body = match body_json(&work) {
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
            ("DELETE", _) => match self.store.delete(&id) {
                Ok(rel) => match self.trust_changed() {
                    Ok(()) => ok(json!(rel)),
                    Err(r) => r,
                },
                Err(e) => trust_error(e),
            },
            _ => reply::error(
                StatusCode::NOT_FOUND,
                format!("portcullis: no admin route {method} {pattern}"),
            ),
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

    /// Decide a hypothetical request for another caller, and record that decision.
    async fn check(&self, asker: &Caller, body: Value, life: &Life) -> Response<ProxyBody> {
        let check: CheckRequest = match serde_json::from_value(body) {
            Ok(c) => c,
            Err(e) => return bad_request(format!("invalid check request: {e}")),
        };
        let kind = if check.action.starts_with("container.") || check.action.starts_with("file.") {
            ResourceKind::Container
        } else {
            ResourceKind::System
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
        let input = PolicyInput {
            caller: subject.clone(),
            action: check.action.clone(),
            resource: Resource {
                kind,
                name: Some(check.target.clone()),
            },
            target: target.clone(),
            request: RequestInfo {
                method: "CHECK".into(),
                path: "/api/v1/trust/check".into(),
                query: Default::default(),
                version: None,
            },
            body: Value::Null,
            file: file.clone(),
            now: crate::stages::now_rfc3339(),
        };
        let decision = self.engine.decide(&input);
        let record = AuditRecord {
            request_id: life.request_id.clone(),
            caller: subject.name.clone(),
            identified_by: subject.via.summary(),
            action: check.action.clone(),
            target_id: target.id.clone(),
            target_name: target.name.clone(),
            resource_path: file.as_ref().map(|f| f.path.clone()),
            method: "CHECK".into(),
            path: "/api/v1/trust/check".into(),
            allowed: decision.allowed,
            enforced: false,
            reasons: decision.reasons.clone(),
            trust_id: decision.trust_id.clone(),
            policy_version: decision.policy_version.clone(),
            ..AuditRecord::default()
        };
        let audit_id = match self.log.append(record).await {
            Ok(seq) => seq,
            Err(e) => return crate::stages::log_unavailable(&e.to_string()),
        };
        reply::json(
            StatusCode::OK,
            &json!({
                "allowed": decision.allowed,
                "trustId": decision.trust_id,
                "reason": decision.reasons.join("; "),
                "reasons": decision.reasons,
                "auditId": audit_id.to_string(),
            }),
        )
    }
}
