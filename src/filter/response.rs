//! The filter step of the pipeline: given the daemon's successful answer to
//! an allowed request, pass on what the caller may see of it.
//!
//! Why a step of its own: the pipeline names it (`forward → filter`), so it
//! is called by [`crate::pipeline`] after forwarding, not hidden inside it.
//! Each filter asks the decide stage what the caller may see; none decides
//! by itself.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::classify::Action;
use crate::decide::{self, Decide, Decision};
use crate::identify::Caller;
use crate::record::{Decided, Record};
use crate::reply::{self, ProxyBody};
use crate::resolve::{Resolver, Target};

/// What the filters need: the decide stage (who may see what), the resolver
/// (names of containers an event names by id only; the creators of execs),
/// and the record stage (what a download withheld).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub decider: &'a Arc<dyn Decide>,
    pub resolver: &'a Arc<Resolver>,
    pub recorder: &'a Arc<dyn Record>,
    /// Enforce mode: a download's refused entries are left out (in audit-only
    /// mode they are recorded as what would have been).
    pub enforced: bool,
}

/// Filter the daemon's successful answer to an allowed request.
pub async fn respond(
    cx: Context<'_>,
    req: Decided<'_>,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let Decided {
        caller,
        request,
        target,
        ..
    } = req;
    let may = |t: &Target, action: Action| decide::may(&**cx.decider, caller, request, t, action);
    match request.action {
        Action::CONTAINER_EXEC => remember_exec(cx.resolver, caller, target, resp).await,
        // docker cp download: each entry is held to the rules (files::download).
        Action::FILE_READ if !caller.admin => match req.file {
            Some(file) => {
                let record = req.record(&Decision::deny("", "-"), true);
                super::download::filter(cx, &req, file, record, resp).await
            }
            None => reply::error(
                StatusCode::BAD_GATEWAY,
                "portcullis: a download whose path was not resolved cannot be filtered",
            ),
        },
        Action::CONTAINER_LIST if !caller.admin => {
            let (parts, body) = match collect_or_502(resp).await {
                Ok(p) => p,
                Err(r) => return r,
            };
            match super::container_list(&body, &|t| may(t, Action::CONTAINER_INSPECT)) {
                Ok(b) => with_body(parts, Bytes::from(b)),
                Err(e) => reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}")),
            }
        }
        Action::SYSTEM_EVENTS if !caller.admin => {
            let (parts, body) = resp.into_parts();
            let (decider, resolver) = (cx.decider.clone(), cx.resolver.clone());
            let (caller, request) = (caller.clone(), request.clone());
            let visible = move |t: &Target| {
                decide::may(&*decider, &caller, &request, t, Action::CONTAINER_INSPECT)
            };
            let known = move |id: &str| resolver.cached(id);
            Response::from_parts(parts, super::event_stream(body, visible, known))
        }
        Action::CONTAINER_INSPECT
            if !caller.admin && !may(target, Action::CONTAINER_INSPECT_SECRETS) =>
        {
            rewrite_body(resp, super::redact_inspect).await
        }
        _ => crate::forward::relay(None, resp),
    }
}

async fn collect_or_502(
    resp: Response<Incoming>,
) -> Result<(http::response::Parts, Bytes), Response<ProxyBody>> {
    let (parts, body) = resp.into_parts();
    match crate::forward::collect(body, 64 * 1024 * 1024).await {
        Ok(b) => Ok((parts, b)),
        Err(e) => Err(reply::error(
            StatusCode::BAD_GATEWAY,
            format!("portcullis: reading the daemon's answer: {e}"),
        )),
    }
}

fn with_body(mut parts: http::response::Parts, bytes: Bytes) -> Response<ProxyBody> {
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, reply::full(bytes))
}

async fn rewrite_body(
    resp: Response<Incoming>,
    f: fn(&[u8]) -> Result<Bytes, String>,
) -> Response<ProxyBody> {
    let (parts, body) = match collect_or_502(resp).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match f(&body) {
        Ok(b) => with_body(parts, b),
        // Fail closed: an answer we cannot filter is not passed on.
        Err(e) => reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}")),
    }
}

/// Exec create answers `{"Id": …}`: remember which container the exec runs in,
/// so exec start and resize are decided against it.
async fn remember_exec(
    resolver: &Resolver,
    caller: &Caller,
    target: &Target,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = match collect_or_502(resp).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let (Ok(v), Some(cid)) = (serde_json::from_slice::<Value>(&body), &target.id) {
        if let Some(exec_id) = v.get("Id").and_then(Value::as_str) {
            resolver.remember_exec(exec_id, cid);
            resolver.exec_creators.remember(exec_id, &caller.name);
        }
    }
    with_body(parts, body)
}
