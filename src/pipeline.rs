//! A request's life, from top to bottom.
//!
//! listen → identify → classify → inspect → resolve target → decide → record →
//! forward (or serve the admin / file API) → filter.
//!
//! Every request takes this one path, whatever it is: a proxied Docker call, an
//! admin call, a file API call or `docker cp`. A refusal at any stage is
//! recorded like a decision before it is answered; a request whose record
//! cannot be made durable is refused with 503 (no request is served that could
//! not be recorded).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::classify::{self, Classified, Service};
use crate::config::{Limits, Mode};
use crate::decide::{Decide, Decision};
use crate::forward::Upstream;
use crate::identify::{self, Caller, Credentials};
use crate::listen::{Connection, Refused};
use crate::record::AuditRecord;
use crate::reply::{self, ProxyBody};
use crate::resolve::{Freshness, Resolver, Target};
use crate::stages::{self, Forwardable, Life};

/// The record stage as the pipeline needs it: append, durably, and return the
/// record's sequence id, or fail (the request is then refused).
pub trait Record: Send + Sync {
    fn append(&self, record: AuditRecord) -> BoxFuture<'_, Result<u64, String>>;
}

/// Everything the stages share. Built once by `serve`, cloned per worker.
#[derive(Clone)]
pub struct Gateway {
    pub upstream: Upstream,
    pub versions: classify::VersionRange,
    pub admin_uids: Vec<u32>,
    pub credentials: Arc<dyn Credentials>,
    pub decider: Arc<dyn Decide>,
    pub recorder: Arc<dyn Record>,
    pub resolver: Arc<Resolver>,
    pub services: Arc<crate::services::Local>,
    /// Whether a trust relationship's target selector cannot change with a
    /// container's name (`*` or a label selector): see [`crate::resolve`].
    pub selector_is_immutable: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    pub mode: Mode,
    pub limits: Limits,
}

/// One request, start to end. Every answer names the daemon's API version,
/// as the daemon's own answers do: the docker CLI negotiates its version from
/// the `/_ping` answer even when it is a refusal, so an unidentified caller
/// then sees why it is refused rather than `API version 1.50 is outside the
/// supported range`.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    conn: Arc<Connection>,
) -> Response<ProxyBody> {
    let api_version = gw.versions.max.to_string();
    let mut response = handle_request(gw, req, conn).await;
    if !response.headers().contains_key("api-version") {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&api_version) {
            response.headers_mut().insert("api-version", value);
        }
    }
    response
}

async fn handle_request(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
    conn: Arc<Connection>,
) -> Response<ProxyBody> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let mut life = Life::begin(&parts, &conn);

    // Identify: who is calling. The credential header is removed here.
    let caller =
        match identify::identify(&conn, &mut parts.headers, &gw.admin_uids, &*gw.credentials) {
            Ok(caller) => caller,
            Err(e) => {
                let caller = Caller::unidentified(&conn.listener);
                return gw
                    .refuse_early(&life, &caller, StatusCode::UNAUTHORIZED, &e.to_string())
                    .await;
            }
        };

    // Classify: which action on which resource, by the daemon's own routing.
    let mut request: Classified =
        match classify::classify(parts.method.as_str(), &life.raw_target, &gw.versions) {
            Ok(c) => c,
            Err(e) => {
                return gw
                    .refuse_early(&life, &caller, stages::classify_status(&e), &e.to_string())
                    .await
            }
        };
    life.classified(&request, None);

    // Inspect: read the bodies that grant power; these exact bytes are forwarded.
    let (mut inspected, body) = match stages::inspect(&gw, &mut request, &parts, body).await {
        Ok(pair) => pair,
        Err((status, e)) => return gw.refuse_early(&life, &caller, status, &e).await,
    };
    // A volume made through portcullis carries its creator (see `volumes`),
    // and no other caller's name.
    if let Some(why) = crate::volumes::forged_creator(&caller, &request, &inspected.canonical) {
        return gw
            .refuse_early(&life, &caller, StatusCode::FORBIDDEN, &why)
            .await;
    }
    if let Err(e) =
        crate::volumes::stamp_creator(&caller, &request, &mut parts.headers, &mut inspected)
    {
        // Our own re-encoding failed to inspect: a bug, refused.
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        return gw
            .refuse_early(&life, &caller, status, &e.to_string())
            .await;
    }
    life.classified(&request, Some(&inspected));

    // Resolve the target, then decide; a cached answer that a name could have
    // changed is checked again on a fresh look (see `resolve`).
    let mut freshness = Freshness::Cached;
    let (target, file, decision) = loop {
        let (target, file) = match stages::resolve(&gw, &request, &inspected, freshness).await {
            Ok(t) => t,
            Err((status, e)) => return gw.refuse_early(&life, &caller, status, &e).await,
        };
        let input = stages::policy_input(&caller, &request, &target, &inspected, file.clone());
        let decision = gw.decider.decide(&input);
        if freshness == Freshness::Cached
            && stages::needs_fresh_look(&gw, &caller, &target, &decision)
        {
            freshness = Freshness::Fresh;
            continue;
        }
        break (target, file, decision);
    };
    let decision = crate::execs::second_look(&gw, &caller, &request, &target, decision).await;

    // Record: durable before anything is forwarded or refused.
    let enforced = gw.mode == Mode::Enforce;
    let record = life.record(
        &caller,
        &request,
        &target,
        file.as_ref(),
        &inspected,
        &decision,
        enforced,
    );
    let decision_id = match gw.recorder.append(record).await {
        Ok(seq) => seq,
        Err(e) => return stages::log_unavailable(&e),
    };

    if !decision.allowed && enforced {
        return stages::refusal(&gw, &caller, &request, &target, &decision, decision_id);
    }

    // Forward to the daemon, or serve portcullis's own APIs; then filter.
    let work = Forwardable {
        parts,
        body,
        inspected,
        client_upgrade,
        decision_id,
    };
    match request.route.service {
        Service::Docker => {
            stages::forward(&gw, &caller, &request, &target, file.as_ref(), &life, work).await
        }
        Service::Admin | Service::Files => {
            gw.services
                .serve(&gw, &caller, &request, &target, file, work, &life)
                .await
        }
    }
}

impl Gateway {
    /// A refusal before a decision could be made (bad credential, unknown
    /// route, unreadable body): recorded as a denial, then answered.
    async fn refuse_early(
        &self,
        life: &Life,
        caller: &Caller,
        status: StatusCode,
        reason: &str,
    ) -> Response<ProxyBody> {
        let decision = Decision::deny(reason, "-");
        let record = life.early_record(caller, &decision, self.mode == Mode::Enforce);
        let id = match self.recorder.append(record).await {
            Ok(seq) => seq.to_string(),
            Err(e) => return stages::log_unavailable(&e),
        };
        let what = if life.action.is_empty() {
            format!("{} {}", life.method, life.path_only())
        } else {
            life.action.clone()
        };
        reply::error(
            status,
            format!(
                "portcullis: {} may not {what}: {reason} (decision {id})",
                caller.name
            ),
        )
    }

    /// The `Target` the decide stage would see for a cached container id.
    pub fn cached_target(&self, id: &str) -> Option<Target> {
        self.resolver.cached(id)
    }
}

/// Record a connection refused before a request could be parsed (an HTTP/2
/// preface, a malformed or oversized head) as a denial: the caller is who the
/// connection itself identifies (listener, peer), the action a marker.
pub async fn record_refused_connection(gw: &Gateway, conn: &Connection, refused: Refused) {
    let caller = identify::identify(
        conn,
        &mut http::HeaderMap::new(),
        &gw.admin_uids,
        &*gw.credentials,
    )
    .unwrap_or_else(|_| Caller::unidentified(&conn.listener));
    let (parts, ()) = Request::new(()).into_parts();
    let mut life = Life::begin(&parts, conn);
    life.method = String::new();
    life.raw_target = String::new();
    life.action = refused.action().to_string();
    let record = life.early_record(&caller, &Decision::deny(refused.reason(), "-"), true);
    if let Err(e) = gw.recorder.append(record).await {
        tracing::error!(error = %e, action = refused.action(), "a refused connection could not be recorded");
    }
}
