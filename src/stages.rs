//! The stage functions [`crate::pipeline::handle`] calls, one per step, each
//! with narrow inputs and outputs. Kept apart so the pipeline reads as a story.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::classify::{Classified, ClassifyError, ResourceKind};
use crate::decide::facts::referenced_containers;
use crate::decide::{Decision, FileContext, PolicyInput, RequestInfo};
use crate::filter;
use crate::forward;
use crate::identify::Caller;
use crate::inspect::{self, BodyError, Inspected};
use crate::listen::Connection;
use crate::pipeline::Gateway;
use crate::record::AuditRecord;
use crate::reply::{self, BoxError, ProxyBody};
use crate::resolve::{Freshness, Target};

/// What the pipeline knows of a request before it is classified: enough to
/// record it whatever happens next.
pub struct Life {
    pub request_id: String,
    pub method: String,
    /// The request-target exactly as received (path and query).
    pub raw_target: String,
    pub action: String,
    /// The file path a file action names, as sent (kept even when the request
    /// is refused before its path could be normalized).
    pub resource_path: Option<String>,
}

/// A request id unique across restarts: a random per-process prefix and a
/// counter (a random id per request cost a `getrandom` syscall each). The
/// counter is 64-bit: a 32-bit one would repeat ids after about 40 hours at
/// 30k requests a second.
fn next_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix:08x}{n:08x}")
}

impl Life {
    pub fn begin(parts: &http::request::Parts, _conn: &Connection) -> Self {
        Life {
            request_id: next_request_id(),
            method: parts.method.as_str().to_string(),
            raw_target: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            action: String::new(),
            resource_path: None,
        }
    }

    /// Note what the request names once it is classified (and its body read).
    pub fn classified(&mut self, request: &Classified, inspected: Option<&Inspected>) {
        self.action = request.action.0.to_string();
        if !self.action.starts_with("file.") {
            return;
        }
        self.resource_path = request.resource_path().map(str::to_string).or_else(|| {
            let body: Value = serde_json::from_slice(&inspected?.bytes).ok()?;
            body.get("path")?.as_str().map(str::to_string)
        });
    }

    pub fn path_only(&self) -> &str {
        self.raw_target.split('?').next().unwrap_or("/")
    }

    fn base_record(&self, caller: &Caller, decision: &Decision, enforced: bool) -> AuditRecord {
        AuditRecord {
            request_id: self.request_id.clone(),
            caller: caller.name.clone(),
            identified_by: caller.via.summary(),
            action: if self.action.is_empty() {
                "unclassified".into()
            } else {
                self.action.clone()
            },
            method: self.method.clone(),
            path: self.path_only().to_string(),
            allowed: decision.allowed,
            enforced,
            reasons: decision.reasons.clone(),
            trust_id: decision.trust_id.clone(),
            policy_version: decision.policy_version.clone(),
            resource_path: self.resource_path.clone(),
            ..AuditRecord::default()
        }
    }

    /// The record of a request refused before it could be decided.
    pub fn early_record(
        &self,
        caller: &Caller,
        decision: &Decision,
        _enforced: bool,
    ) -> AuditRecord {
        // Structural refusals (bad credential, unknown route, unreadable body)
        // are enforced even in audit-only mode: there is nothing safe to forward.
        self.base_record(caller, decision, true)
    }

    /// The record of a decided request.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        caller: &Caller,
        request: &Classified,
        target: &Target,
        file: Option<&FileContext>,
        inspected: &Inspected,
        decision: &Decision,
        enforced: bool,
    ) -> AuditRecord {
        AuditRecord {
            path: request.path.clone(),
            target_id: target.id.clone(),
            target_name: target.name.clone().or_else(|| target.reference.clone()),
            resource_path: file
                .map(|f| f.path.clone())
                .or_else(|| self.resource_path.clone()),
            body_sha256: inspected.sha256.clone(),
            ..self.base_record(caller, decision, enforced)
        }
    }
}

/// The status for a request the table cannot classify.
pub fn classify_status(e: &ClassifyError) -> StatusCode {
    match e {
        ClassifyError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn body_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Unbounded => StatusCode::LENGTH_REQUIRED,
        BodyError::ContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Read and decode the body when the route's body grants power (or a form
/// body may override the query); otherwise leave it to stream.
pub async fn inspect(
    gw: &Gateway,
    request: &mut Classified,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<(Inspected, Option<Incoming>), (StatusCode, String)> {
    use crate::classify::BodyRule;
    let refuse = |e: BodyError| (body_status(&e), e.to_string());
    forward::check_connection_header(&parts.headers).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let method = parts.method.as_str();
    // docker cp uploads are read whole too: every entry is checked before any is forwarded.
    let tar = request.route.body == BodyRule::Tar;
    let must_read =
        inspect::must_read_body(request.route, method, &parts.headers).map_err(refuse)? || tar;
    if !must_read {
        let inspected = inspect::inspect(
            request.route,
            method,
            &parts.headers,
            &request.query,
            Bytes::new(),
        )
        .map_err(refuse)?;
        return Ok((inspected, Some(body)));
    }
    let limit = if tar {
        gw.limits.max_archive_inspect
    } else {
        gw.limits.max_body_inspect
    };
    let chunked_upload = tar && !parts.headers.contains_key(header::CONTENT_LENGTH);
    let bytes = if chunked_upload {
        // The docker CLI streams cp uploads chunked; they are bounded by the limit instead.
        read_chunked(body, limit).await.map_err(refuse)?
    } else {
        inspect::read_bounded(body, &parts.headers, limit)
            .await
            .map_err(refuse)?
    };
    let mut inspected =
        inspect::inspect(request.route, method, &parts.headers, &request.query, bytes)
            .map_err(refuse)?;
    if inspected.sha256.is_none() {
        inspected.sha256 = Some(crate::inspect::sha256_hex(&inspected.bytes));
    }
    crate::classify::refine(request, &inspected.form);
    if request.route.hijack && !forward::is_upgrade(&parts.headers) && !detached(&inspected) {
        return Err((
            StatusCode::BAD_REQUEST,
            "attach and exec start need `Connection: Upgrade` and `Upgrade: tcp` through portcullis".into(),
        ));
    }
    Ok((inspected, None))
}

async fn read_chunked(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// `POST /exec/{id}/start` with `{"Detach": true}` does not take the connection over.
fn detached(inspected: &Inspected) -> bool {
    inspected
        .canonical
        .get("Detach")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Resolve the request's target, and for file actions the file it touches.
pub async fn resolve(
    gw: &Gateway,
    request: &Classified,
    inspected: &Inspected,
    freshness: Freshness,
) -> Result<(Target, Option<FileContext>), (StatusCode, String)> {
    let name = request.resource.name.as_deref();
    let unreachable =
        |e: crate::resolve::ResolveError| (StatusCode::BAD_GATEWAY, format!("portcullis: {e}"));
    let name = link_removal_parent(request, inspected).or(name);
    let mut target = match (request.resource.kind, name) {
        (ResourceKind::Container, Some(n)) if request.action.0 != "container.create" => gw
            .resolver
            .container(n, freshness)
            .await
            .map_err(unreachable)?,
        (ResourceKind::Exec, Some(n)) => gw
            .resolver
            .exec_container(n, freshness)
            .await
            .map_err(unreachable)?,
        (kind, n) => Target::none(kind, n),
    };
    if request.action.0 == "container.create" {
        target.image = inspected
            .canonical
            .get("Image")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Always fresh: the decision depends on the referenced names.
        for reference in referenced_containers(request.action.0, &inspected.canonical) {
            let resolved = gw
                .resolver
                .container(&reference, Freshness::Fresh)
                .await
                .map_err(unreachable)?;
            target.referenced.push(resolved);
        }
    }
    if matches!(
        request.action.0,
        "container.create" | "service.create" | "service.update"
    ) {
        // Always fresh: a volume is judged by what the daemon holds now.
        target.volumes = crate::volumes::resolve_mounted(
            gw.resolver.docker(),
            request.action.0,
            &inspected.canonical,
            &target.referenced,
        )
        .await
        .map_err(unreachable)?;
    }
    let file = gw.services.file_facts(request, &target, inspected).await?;
    Ok((target, file))
}

/// `DELETE /containers/{parent}/{alias}?link=1` (`docker rm --link`) removes
/// the link `alias` from `parent`, which the daemon finds by name (moby's
/// `rmLink`): that is the container it changes, and the one decided on.
fn link_removal_parent<'a>(request: &'a Classified, inspected: &Inspected) -> Option<&'a str> {
    if request.action.0 != "container.remove"
        || !crate::classify::path::form_bool(&inspected.form, "link")
    {
        return None;
    }
    let name = request.resource.name.as_deref()?;
    let (parent, _alias) = name.trim_start_matches('/').rsplit_once('/')?;
    Some(parent).filter(|p| !p.is_empty())
}

/// The policy's input for one decision.
pub fn policy_input(
    caller: &Caller,
    request: &Classified,
    target: &Target,
    inspected: &Inspected,
    file: Option<FileContext>,
) -> PolicyInput {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &inspected.form {
        query.entry(k.clone()).or_default().push(v.clone());
    }
    PolicyInput {
        caller: caller.clone(),
        action: request.action.0.to_string(),
        resource: request.resource.clone(),
        target: target.clone(),
        request: RequestInfo {
            method: request.route.method.to_string(),
            path: request.path.clone(),
            query,
            version: request.version.map(|v| v.to_string()),
        },
        body: inspected.canonical.clone(),
        file,
        now: now_rfc3339(),
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Whether a decision made on cached container data must be made again on a
/// fresh look: a denial (the cache may be behind), or an allow that matched a
/// trust selector which depends on the container's name.
pub fn needs_fresh_look(
    gw: &Gateway,
    caller: &Caller,
    target: &Target,
    decision: &Decision,
) -> bool {
    if caller.admin || !target.from_cache {
        return false;
    }
    if !decision.allowed {
        return true;
    }
    match &decision.trust_id {
        Some(id) => !(gw.selector_is_immutable)(id),
        None => true,
    }
}

/// The audit log cannot be written: refuse, in Docker's format.
pub fn log_unavailable(e: &str) -> Response<ProxyBody> {
    tracing::error!(error = %e, "decision log unavailable; refusing requests");
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("portcullis: the decision log cannot be written, so no request is served: {e}"),
    )
}

/// The answer to a denied request.
pub fn refusal(
    gw: &Gateway,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    decision: &Decision,
    id: u64,
) -> Response<ProxyBody> {
    if let Some(absent) = absence_answer(gw, caller, request, target) {
        return absent;
    }
    let reason = if decision.reasons.is_empty() {
        "no policy rule allows it".to_string()
    } else {
        decision.reasons.join("; ")
    };
    let target_name = match (&target.name, &target.reference) {
        (Some(n), _) | (None, Some(n)) => n.clone(),
        _ => request.resource.name.clone().unwrap_or_else(|| "-".into()),
    };
    reply::refusal(
        StatusCode::FORBIDDEN,
        &caller.name,
        request.action.0,
        &target_name,
        &reason,
        &id.to_string(),
    )
}

/// One action for each right a trust relationship can grant on a container
/// (policies/actions.rego `container_rights`).
const CONTAINER_RIGHTS: [&str; 10] = [
    "container.inspect",
    "container.start",
    "container.stop",
    "container.restart",
    "container.remove",
    "container.exec",
    "container.attach",
    "container.logs",
    "container.stats",
    "container.inspect_secrets",
];

/// The rule for refusals about a container (policies/README.md): every
/// refusal is portcullis's, with its decision id, except a lookup
/// (`container.inspect`, which the docker CLI makes before exec, cp, attach,
/// …) by a caller that holds no right at all on the container. That one is
/// told what the daemon tells of a container that does not exist, so a
/// lookup leaks neither a name nor existence. `None`: refuse as usual.
fn absence_answer(
    gw: &Gateway,
    caller: &Caller,
    request: &Classified,
    target: &Target,
) -> Option<Response<ProxyBody>> {
    if request.action.0 != "container.inspect" {
        return None;
    }
    let reference = request.resource.name.as_deref()?;
    let holds_a_right = target.exists
        && CONTAINER_RIGHTS
            .iter()
            .any(|action| gw.may(caller, request, target, action));
    (!holds_a_right).then(|| {
        reply::error(
            StatusCode::NOT_FOUND,
            format!("No such container: {reference}"),
        )
    })
}

/// What is handed to the forward (or local service) stage.
pub struct Forwardable {
    pub parts: http::request::Parts,
    /// The unread body, for routes whose body is streamed.
    pub body: Option<Incoming>,
    pub inspected: Inspected,
    pub client_upgrade: hyper::upgrade::OnUpgrade,
    pub decision_id: u64,
}

impl Forwardable {
    /// The body to send on: exactly the inspected bytes, or the stream.
    pub fn take_body(&mut self) -> ProxyBody {
        use http_body_util::BodyExt;
        match self.body.take() {
            Some(stream) => stream.map_err(|e| Box::new(e) as BoxError).boxed(),
            None => {
                // Exactly the inspected bytes, framed by their length.
                self.parts.headers.remove(header::TRANSFER_ENCODING);
                self.parts
                    .headers
                    .insert(header::CONTENT_LENGTH, self.inspected.bytes.len().into());
                reply::full(self.inspected.bytes.clone())
            }
        }
    }
}

/// Rewrite `/containers/{name}/…` to `/containers/{id}/…` so the daemon acts
/// on exactly the container that was decided on. Only the name segment is
/// replaced: the rest of the path goes on as the client encoded it, since the
/// daemon decodes it itself (a decoded `%253F` would reach it as `?`).
fn pinned_target(request: &Classified, target: &Target, raw_target: &str) -> String {
    let (Some(id), Some(_)) = (&target.id, &request.resource.name) else {
        return raw_target.to_string();
    };
    if request.resource.kind != ResourceKind::Container || !target.exists {
        return raw_target.to_string();
    }
    // A link name (`parent/alias`) spans two segments, and a link removal
    // names the link itself, which no id can stand for: the daemon gets the
    // name as the client wrote it.
    if request
        .resource
        .name
        .as_deref()
        .is_some_and(|n| n.contains('/'))
    {
        return raw_target.to_string();
    }
    let (raw_path, query) = match raw_target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw_target, None),
    };
    // Classification accepted the path: `[/vX.Y]/containers/{name}[/rest]`.
    let unversioned = match request.version {
        Some(_) => raw_path
            .get(1..)
            .and_then(|p| p.find('/'))
            .map_or("", |i| &raw_path[i + 1..]),
        None => raw_path,
    };
    let Some(after) = unversioned.strip_prefix("/containers/") else {
        return raw_target.to_string();
    };
    let rest = after.find('/').map_or("", |i| &after[i..]);
    let version = request
        .version
        .map(|v| format!("/v{v}"))
        .unwrap_or_default();
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{version}/containers/{id}{rest}{query}")
}

/// Forward an allowed request to the daemon and filter what comes back.
pub async fn forward(
    gw: &Arc<Gateway>,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    file: Option<&FileContext>,
    life: &Life,
    mut work: Forwardable,
) -> Response<ProxyBody> {
    let raw = work
        .parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path = pinned_target(request, target, &raw);
    let body = work.take_body();
    let hijack = request.route.hijack;
    let resp = match gw.upstream.send(work.parts, &path, body).await {
        Ok(r) => r,
        Err(e) => return reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}")),
    };
    if hijack || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return forward::relay(Some(work.client_upgrade), resp);
    }
    if !resp.status().is_success() {
        return forward::relay(None, resp);
    }
    match request.action.0 {
        "container.exec" => remember_exec(gw, caller, target, resp).await,
        // docker cp download: each entry is held to the rules (files::download).
        "file.read" if !caller.admin => match file {
            Some(file) => {
                let record = life.record(
                    caller,
                    request,
                    target,
                    Some(file),
                    &work.inspected,
                    &Decision::deny("", "-"),
                    true,
                );
                crate::services::filter_download(
                    gw,
                    caller,
                    request,
                    target,
                    file,
                    &work.inspected,
                    record,
                    resp,
                )
                .await
            }
            None => reply::error(
                StatusCode::BAD_GATEWAY,
                "portcullis: a download whose path was not resolved cannot be filtered",
            ),
        },
        "container.list" if !caller.admin => filter_list(gw, caller, request, resp).await,
        "system.events" if !caller.admin => {
            let (parts, body) = resp.into_parts();
            let (gw2, gw3, caller, request) =
                (gw.clone(), gw.clone(), caller.clone(), request.clone());
            let visible = move |t: &Target| gw2.visible(&caller, &request, t);
            let known = move |id: &str| gw3.cached_target(id);
            Response::from_parts(parts, filter::event_stream(body, visible, known))
        }
        "container.inspect"
            if !caller.admin && !gw.may(caller, request, target, "container.inspect_secrets") =>
        {
            rewrite_body(resp, filter::redact_inspect).await
        }
        _ => forward::relay(None, resp),
    }
}

impl Gateway {
    /// Whether the caller may perform `action` on `target` (for filters).
    pub fn may(
        &self,
        caller: &Caller,
        request: &Classified,
        target: &Target,
        action: &'static str,
    ) -> bool {
        let mut input = policy_input(caller, request, target, &Inspected::default(), None);
        input.action = action.to_string();
        input.body = Value::Null;
        self.decider.decide(&input).allowed
    }

    /// Whether the caller may see a container at all.
    pub fn visible(&self, caller: &Caller, request: &Classified, target: &Target) -> bool {
        self.may(caller, request, target, "container.inspect")
    }
}

async fn collect_or_502(
    resp: Response<Incoming>,
) -> Result<(http::response::Parts, Bytes), Response<ProxyBody>> {
    let (parts, body) = resp.into_parts();
    match forward::collect(body, 64 * 1024 * 1024).await {
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

async fn filter_list(
    gw: &Gateway,
    caller: &Caller,
    request: &Classified,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = match collect_or_502(resp).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match filter::container_list(&body, &|t| gw.visible(caller, request, t)) {
        Ok(b) => with_body(parts, Bytes::from(b)),
        Err(e) => reply::error(StatusCode::BAD_GATEWAY, format!("portcullis: {e}")),
    }
}

/// Exec create answers `{"Id": …}`: remember which container the exec runs in,
/// so exec start and resize are decided against it.
async fn remember_exec(
    gw: &Gateway,
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
            gw.resolver.remember_exec(exec_id, cid);
            gw.resolver.exec_creators.remember(exec_id, &caller.name);
        }
    }
    with_body(parts, body)
}

#[cfg(test)]
mod tests {
    use super::{next_request_id, pinned_target};
    use crate::classify::{classify, ResourceKind, VersionRange};
    use crate::resolve::Target;

    #[test]
    fn pinning_replaces_the_name_and_keeps_the_rest_as_encoded() {
        let target = Target {
            id: Some("c0ffee".into()),
            name: Some("web".into()),
            exists: true,
            kind: Some(ResourceKind::Container),
            ..Target::default()
        };
        for (raw, pinned) in [
            (
                "/v1.41/containers/web/json",
                "/v1.41/containers/c0ffee/json",
            ),
            (
                "/containers/web/json?size=1",
                "/containers/c0ffee/json?size=1",
            ),
            ("/v1.41/containers/web", "/v1.41/containers/c0ffee"),
            (
                "/v1.41/containers/web/checkpoints/a%253Fb",
                "/v1.41/containers/c0ffee/checkpoints/a%253Fb",
            ),
            (
                "/containers/w%65b/archive?path=/a%20b",
                "/containers/c0ffee/archive?path=/a%20b",
            ),
        ] {
            let method = if raw.contains("checkpoints") || raw.ends_with("/web") {
                "DELETE"
            } else {
                "GET"
            };
            let request = classify(method, raw, &VersionRange::default())
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(pinned_target(&request, &target, raw), pinned, "{raw}");
        }
    }

    #[test]
    fn link_names_go_on_as_written() {
        let target = Target {
            id: Some("c0ffee".into()),
            name: Some("db".into()),
            exists: true,
            kind: Some(ResourceKind::Container),
            ..Target::default()
        };
        for (method, raw) in [
            ("GET", "/v1.41/containers/web/db/json"),
            ("DELETE", "/v1.41/containers/web/db?link=1"),
        ] {
            let request = classify(method, raw, &VersionRange::default()).unwrap();
            assert_eq!(pinned_target(&request, &target, raw), raw);
        }
    }

    #[test]
    fn request_ids_share_the_process_prefix_and_never_repeat() {
        let ids: Vec<String> = (0..1000).map(|_| next_request_id()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids
            .iter()
            .all(|id| id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit())));
        assert!(ids.iter().all(|id| id[..8] == ids[0][..8]));
    }
}
