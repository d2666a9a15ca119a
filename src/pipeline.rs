//! A request's life, from top to bottom.
//!
//! listen → identify → classify → inspect → resolve target → decide → record →
//! forward (or serve the admin / file API) → filter.
//!
//! Every request takes this one path, whatever it is: a proxied Docker call, an
//! admin call, a file API call or `docker cp`. A refusal at any stage is
//! recorded like a decision before it is answered; a request whose record
//! cannot be made durable is refused with 503 (no request is served that could
//! not be recorded). Each stage gets only what it needs from the [`Gateway`];
//! none imports this module.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::field::Empty;
use tracing::Instrument;

use crate::classify::{self, Handler};
use crate::decide::{self, Decision, PolicyInput};
use crate::filter;
use crate::forward::{self, Forwardable, Forwarded};
use crate::gateway::Gateway;
use crate::identify::{self, Caller};
use crate::listen::{Connection, Refused};
use crate::record::{self, Decided, Life, Recorded};
use crate::refuse;
use crate::reply::ProxyBody;
use crate::resolve::{self, Freshness};
use crate::{execs, inspect, volumes};

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
    // Every log line about this request carries its request id and, once it
    // is recorded, its decision id (the record's seq): `audit query` finds it.
    let span = tracing::info_span!("request", id = Empty, decision = Empty);
    let mut response = handle_request(&gw, req, &conn).instrument(span).await;
    if !response.headers().contains_key("api-version") {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&api_version) {
            response.headers_mut().insert("api-version", value);
        }
    }
    response
}

async fn handle_request(
    gw: &Gateway,
    mut req: Request<Incoming>,
    conn: &Connection,
) -> Response<ProxyBody> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let mut life = Life::begin(&parts);
    tracing::Span::current().record("id", life.request_id.as_str());
    let recorder = &*gw.recorder;

    // Identify: who is calling. The credential header is removed here.
    let creds = &*gw.credentials;
    let caller = match identify::identify(conn, &mut parts.headers, &gw.admin_uids, creds) {
        Ok(caller) => caller,
        Err(e) => {
            let caller = Caller::unidentified(&conn.listener);
            let status = StatusCode::UNAUTHORIZED;
            return refuse::early(recorder, &life, &caller, status, &e.to_string()).await;
        }
    };
    // A refusal before a decision: recorded as a denial, then answered.
    macro_rules! refuse_early {
        ($status:expr, $reason:expr) => {
            return Box::pin(refuse::early(recorder, &life, &caller, $status, &$reason)).await
        };
    }

    // Classify: which action on which resource, by the daemon's own routing.
    let method = parts.method.as_str();
    let mut request = match classify::classify(method, &life.raw_target, &gw.versions) {
        Ok(c) => c,
        Err(e) => refuse_early!(refuse::classify_status(&e), e.to_string()),
    };
    life.classified(&request, None);

    // Inspect: read the bodies that grant power; these exact bytes are forwarded.
    // (Stages with large futures are boxed: a request's future is moved into
    // a box per request, and 10 KiB of it was a tenth of a request's cost.)
    let (mut inspected, body) =
        match Box::pin(inspect::request(&mut request, &parts, body, &gw.limits)).await {
            Ok(pair) => pair,
            Err((status, e)) => refuse_early!(status, e),
        };
    // A volume made through portcullis carries its creator (see `volumes`),
    // and no other caller's name.
    let headers = &mut parts.headers;
    if let Err((status, e)) = volumes::hold_creator(&caller, &request, headers, &mut inspected) {
        refuse_early!(status, e);
    }
    life.classified(&request, Some(&inspected));

    // Resolve the target, then decide; a cached answer that a name could have
    // changed is checked again on a fresh look (see `resolve`).
    let (fs, immutable) = (&gw.services.fs, &*gw.selector_is_immutable);
    let mut freshness = Freshness::Cached;
    let (target, file, decision) = loop {
        let resolved = Box::pin(resolve::target(
            &gw.resolver,
            fs,
            &request,
            &inspected,
            freshness,
        ))
        .await;
        let (target, file) = match resolved {
            Ok(t) => t,
            Err((status, e)) => refuse_early!(status, e),
        };
        let input = PolicyInput::of(&caller, &request, &target, &inspected, file.clone());
        let decision = gw.decider.decide(&input);
        if freshness == Freshness::Cached
            && decide::needs_fresh_look(immutable, &caller, &target, &decision)
        {
            freshness = Freshness::Fresh;
            continue;
        }
        break (target, file, decision);
    };
    let (resolver, decider) = (&*gw.resolver, &*gw.decider);
    let decision =
        execs::second_look(resolver, decider, &caller, &request, &target, decision).await;

    // Record: durable before anything is forwarded or refused. Only a
    // recorded, servable decision gives the `Permit` every handler requires.
    let (caller, request, target, life) = (&caller, &request, &target, &life);
    let file = file.as_ref();
    let (inspected, bytes) = (&inspected, inspected.bytes.clone());
    let decided = Decided {
        caller,
        request,
        target,
        file,
        inspected,
        life,
    };
    let record = decided.record(&decision, gw.enforced());
    let permit = match record::record_decision(recorder, record).await {
        Ok(Recorded::Permit(permit)) => {
            tracing::Span::current().record("decision", permit.decision_id());
            permit
        }
        Ok(Recorded::Refused { decision_id: id }) => {
            tracing::Span::current().record("decision", id);
            return refuse::denied(decider, caller, request, target, &decision, id);
        }
        Err(e) => return record::log_unavailable(&e),
    };

    // Forward to the daemon, or serve portcullis's own APIs, by the handler
    // the route names; then filter what the daemon answered.
    match request.route.handler {
        Handler::Daemon => {
            let work = Forwardable {
                parts,
                body,
                bytes,
                client_upgrade,
                permit,
            };
            match forward::forward(&gw.daemon, request, target, work).await {
                Forwarded::Answer(answer) => filter::respond(gw.filter(), decided, answer).await,
                Forwarded::Done(response) => response,
            }
        }
        // portcullis's own handlers are boxed too, for the same reason.
        Handler::Admin(op) => {
            let stages = (decider, recorder);
            Box::pin(gw.services.admin.serve(op, permit, stages, decided)).await
        }
        Handler::Files(op) => {
            Box::pin(gw.services.serve_files(op, permit, recorder, decided)).await
        }
        Handler::Agent(op) => {
            let stages = gw.agent_stages();
            let headers = &parts.headers;
            Box::pin(gw.agents.serve(op, permit, &stages, decided, headers)).await
        }
    }
}

/// Record a connection refused before a request could be parsed (an HTTP/2
/// preface, a malformed or oversized head) as a denial: the caller is who the
/// connection itself identifies (listener, peer), the action a marker.
pub async fn record_refused_connection(gw: &Gateway, conn: &Connection, refused: Refused) {
    let creds = &*gw.credentials;
    let caller = identify::identify(conn, &mut http::HeaderMap::new(), &gw.admin_uids, creds)
        .unwrap_or_else(|_| Caller::unidentified(&conn.listener));
    let life = Life::refused_connection(refused.action());
    let record = life.early_record(&caller, &Decision::deny(refused.reason(), "-"));
    if let Err(e) = gw.recorder.append(record).await {
        tracing::error!(error = %e, action = refused.action(), "a refused connection could not be recorded");
    }
}
