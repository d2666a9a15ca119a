//! The route table: every route the Docker daemon registers, plus portcullis's
//! own admin and file API, each with its canonical action.
//!
//! Why a copy of the daemon's table: a request is only as harmless as the
//! handler the daemon picks for it, so the proxy must pick the same one. Rows
//! are in the daemon's registration order (routers in the order
//! `daemon/command` builds them: checkpoint, container, image, system, volume,
//! build, session, swarm, plugin, distribution, grpc, network, then debug),
//! because gorilla/mux runs the first route that matches, and patterns are the
//! daemon's own (`{name:.*}` is greedy and takes `/`, `{id}` is one segment,
//! `{id:.+}` is non-empty). portcullis's own routes follow; they start with
//! `/api/`, which no daemon route does.
//!
//! Why no regex: patterns use only three parameter forms, so each is compiled
//! once into literals and parameters and matched by a small backtracking
//! matcher (greedy first, like Go's leftmost-first regexp). Rows are bucketed
//! by method and first path segment, so a request is tried against a handful
//! of rows, not all of them.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::handler::{AdminOp, AgentOp, FileOp, Handler};
use super::path::{self, form_get_nonempty};
use super::{Action, Classified, ClassifyError, Resource, ResourceKind, VersionRange};

/// Who serves a classified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Forwarded to the Docker daemon.
    Docker,
    /// portcullis's admin API (`/api/v1/trust`, callers, audit, policy).
    Admin,
    /// portcullis's file API (`/api/v1/containers/{id}/files…`).
    Files,
    /// portcullis's agent controls (`/api/v1/containers/{id}/update-image`,
    /// env, health, stats, logs, `/api/v1/events`).
    Agent,
}

/// How the request body is treated before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// The route takes no body the daemon reads; any body is forwarded as is.
    Ignored,
    /// The body grants power: read it whole (bounded), decode it as the daemon
    /// does, show it to the policy, forward exactly those bytes.
    Json,
    /// `application/x-www-form-urlencoded` may carry parameters that override the
    /// query string (e.g. `images/create`): read and merge it, else like `Ignored`.
    Form,
    /// A tar stream (`PUT /containers/{id}/archive`): its entries are checked.
    Tar,
    /// A large payload the policy does not read (build context, image load):
    /// streamed without buffering.
    Stream,
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    /// The daemon's pattern, e.g. `/containers/{name:.*}/start`.
    pub pattern: &'static str,
    pub action: Action,
    pub kind: ResourceKind,
    pub body: BodyRule,
    /// The daemon takes the connection over (attach, exec start).
    pub hijack: bool,
    /// An opaque tunnel (`/session`, `/grpc`, `attach/ws`): refused unless the
    /// policy explicitly allows the action.
    pub tunnel: bool,
    pub service: Service,
    /// Who serves it (agrees with `service`; a test holds them so).
    pub handler: Handler,
}

/// A plain Docker route: no hijack, no tunnel.
const fn d(
    method: &'static str,
    pattern: &'static str,
    action: Action,
    kind: ResourceKind,
    body: BodyRule,
) -> Route {
    Route {
        method,
        pattern,
        action,
        kind,
        body,
        hijack: false,
        tunnel: false,
        service: Service::Docker,
        handler: Handler::Daemon,
    }
}

/// A portcullis admin API route.
const fn admin(
    method: &'static str,
    pattern: &'static str,
    action: Action,
    body: BodyRule,
    op: AdminOp,
) -> Route {
    Route {
        method,
        pattern,
        action,
        kind: ResourceKind::Admin,
        body,
        hijack: false,
        tunnel: false,
        service: Service::Admin,
        handler: Handler::Admin(op),
    }
}

/// A portcullis file API route (the resource is the container `{id}`).
const fn files(
    method: &'static str,
    pattern: &'static str,
    action: Action,
    body: BodyRule,
    op: FileOp,
) -> Route {
    Route {
        method,
        pattern,
        action,
        kind: ResourceKind::Container,
        body,
        hijack: false,
        tunnel: false,
        service: Service::Files,
        handler: Handler::Files(op),
    }
}

/// An agent control route; `kind` is the container `{id}`, or none (the
/// health summary and the event stream).
const fn agent(
    method: &'static str,
    pattern: &'static str,
    action: Action,
    kind: ResourceKind,
    body: BodyRule,
    op: AgentOp,
) -> Route {
    Route {
        method,
        pattern,
        action,
        kind,
        body,
        hijack: false,
        tunnel: false,
        service: Service::Agent,
        handler: Handler::Agent(op),
    }
}

use Action as A;
use AdminOp as Op;
use AgentOp as G;
use BodyRule::{Form, Ignored, Json, Stream, Tar};
use FileOp as F;
use ResourceKind as K;

#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    // checkpoint router: registered before the container router, or its DELETE
    // would be taken by `DELETE /containers/{name:.*}`.
    d("GET", "/containers/{name:.*}/checkpoints", A::CHECKPOINT_LIST, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/checkpoints", A::CHECKPOINT_CREATE, K::Container, Ignored),
    d("DELETE", "/containers/{name}/checkpoints/{checkpoint}", A::CHECKPOINT_REMOVE, K::Container, Ignored),
    // container router
    d("HEAD", "/containers/{name:.*}/archive", A::FILE_STAT, K::Container, Ignored),
    d("GET", "/containers/json", A::CONTAINER_LIST, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/export", A::CONTAINER_EXPORT, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/changes", A::CONTAINER_CHANGES, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/json", A::CONTAINER_INSPECT, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/top", A::CONTAINER_TOP, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/logs", A::CONTAINER_LOGS, K::Container, Ignored),
    d("GET", "/containers/{name:.*}/stats", A::CONTAINER_STATS, K::Container, Ignored),
    Route {
        tunnel: true,
        ..d(
            "GET",
            "/containers/{name:.*}/attach/ws",
            A::CONTAINER_ATTACH_WS,
            K::Container,
            Ignored,
        )
    },
    d("GET", "/exec/{id:.*}/json", A::EXEC_INSPECT, K::Exec, Ignored),
    d("GET", "/containers/{name:.*}/archive", A::FILE_READ, K::Container, Ignored),
    d("POST", "/containers/create", A::CONTAINER_CREATE, K::Container, Json),
    d("POST", "/containers/{name:.*}/kill", A::CONTAINER_KILL, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/pause", A::CONTAINER_PAUSE, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/unpause", A::CONTAINER_UNPAUSE, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/restart", A::CONTAINER_RESTART, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/start", A::CONTAINER_START, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/stop", A::CONTAINER_STOP, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/wait", A::CONTAINER_WAIT, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/resize", A::CONTAINER_RESIZE, K::Container, Ignored),
    Route {
        hijack: true,
        ..d(
            "POST",
            "/containers/{name:.*}/attach",
            A::CONTAINER_ATTACH,
            K::Container,
            Ignored,
        )
    },
    d("POST", "/containers/{name:.*}/exec", A::CONTAINER_EXEC, K::Container, Json),
    Route {
        hijack: true,
        ..d("POST", "/exec/{name:.*}/start", A::EXEC_START, K::Exec, Json)
    },
    d("POST", "/exec/{name:.*}/resize", A::EXEC_RESIZE, K::Exec, Ignored),
    d("POST", "/containers/{name:.*}/rename", A::CONTAINER_RENAME, K::Container, Ignored),
    d("POST", "/containers/{name:.*}/update", A::CONTAINER_UPDATE, K::Container, Json),
    d("POST", "/containers/prune", A::CONTAINER_PRUNE, K::Container, Ignored),
    d("POST", "/commit", A::CONTAINER_COMMIT, K::Container, Ignored),
    d("PUT", "/containers/{name:.*}/archive", A::FILE_WRITE, K::Container, Tar),
    d("DELETE", "/containers/{name:.*}", A::CONTAINER_REMOVE, K::Container, Ignored),
    // image router
    d("GET", "/images/json", A::IMAGE_LIST, K::Image, Ignored),
    d("GET", "/images/search", A::IMAGE_SEARCH, K::Image, Ignored),
    d("GET", "/images/get", A::IMAGE_EXPORT, K::Image, Ignored),
    d("GET", "/images/{name:.*}/get", A::IMAGE_EXPORT, K::Image, Ignored),
    d("GET", "/images/{name:.*}/history", A::IMAGE_HISTORY, K::Image, Ignored),
    d("GET", "/images/{name:.*}/json", A::IMAGE_INSPECT, K::Image, Ignored),
    d("GET", "/images/{name:.*}/attestations", A::IMAGE_INSPECT, K::Image, Ignored),
    d("POST", "/images/load", A::IMAGE_LOAD, K::Image, Stream),
    // image.pull or image.import: decided by `refine` from fromImage/fromSrc.
    d("POST", "/images/create", A::IMAGE_PULL, K::Image, Form),
    d("POST", "/images/{name:.*}/push", A::IMAGE_PUSH, K::Image, Ignored),
    d("POST", "/images/{name:.*}/tag", A::IMAGE_TAG, K::Image, Ignored),
    d("POST", "/images/prune", A::IMAGE_PRUNE, K::Image, Ignored),
    d("DELETE", "/images/{name:.*}", A::IMAGE_REMOVE, K::Image, Ignored),
    // system router
    d("OPTIONS", "/{anyroute:.*}", A::SYSTEM_OPTIONS, K::System, Ignored),
    d("GET", "/_ping", A::SYSTEM_PING, K::System, Ignored),
    d("HEAD", "/_ping", A::SYSTEM_PING, K::System, Ignored),
    d("GET", "/events", A::SYSTEM_EVENTS, K::System, Ignored),
    d("GET", "/info", A::SYSTEM_INFO, K::System, Ignored),
    d("GET", "/version", A::SYSTEM_VERSION, K::System, Ignored),
    d("GET", "/system/df", A::SYSTEM_DF, K::System, Ignored),
    d("POST", "/auth", A::SYSTEM_AUTH, K::System, Ignored),
    // volume router
    d("GET", "/volumes", A::VOLUME_LIST, K::Volume, Ignored),
    d("GET", "/volumes/{name:.*}", A::VOLUME_INSPECT, K::Volume, Ignored),
    d("POST", "/volumes/create", A::VOLUME_CREATE, K::Volume, Json),
    d("POST", "/volumes/prune", A::VOLUME_PRUNE, K::Volume, Ignored),
    d("PUT", "/volumes/{name:.*}", A::VOLUME_UPDATE, K::Volume, Ignored),
    d("DELETE", "/volumes/{name:.*}", A::VOLUME_REMOVE, K::Volume, Ignored),
    // build router
    d("POST", "/build", A::IMAGE_BUILD, K::Image, Stream),
    d("POST", "/build/prune", A::BUILD_PRUNE, K::Build, Ignored),
    d("POST", "/build/cancel", A::BUILD_CANCEL, K::Build, Ignored),
    // session router
    Route {
        tunnel: true,
        ..d("POST", "/session", A::SESSION_OPEN, K::Session, Ignored)
    },
    // swarm router
    d("POST", "/swarm/init", A::SWARM_INIT, K::Swarm, Json),
    d("POST", "/swarm/join", A::SWARM_JOIN, K::Swarm, Json),
    d("POST", "/swarm/leave", A::SWARM_LEAVE, K::Swarm, Ignored),
    d("GET", "/swarm", A::SWARM_INSPECT, K::Swarm, Ignored),
    d("GET", "/swarm/unlockkey", A::SWARM_UNLOCKKEY, K::Swarm, Ignored),
    d("POST", "/swarm/update", A::SWARM_UPDATE, K::Swarm, Json),
    d("POST", "/swarm/unlock", A::SWARM_UNLOCK, K::Swarm, Ignored),
    d("GET", "/services", A::SERVICE_LIST, K::Service, Ignored),
    d("GET", "/services/{id}", A::SERVICE_INSPECT, K::Service, Ignored),
    d("POST", "/services/create", A::SERVICE_CREATE, K::Service, Json),
    d("POST", "/services/{id}/update", A::SERVICE_UPDATE, K::Service, Json),
    d("DELETE", "/services/{id}", A::SERVICE_REMOVE, K::Service, Ignored),
    d("GET", "/services/{id}/logs", A::SERVICE_LOGS, K::Service, Ignored),
    d("GET", "/nodes", A::NODE_LIST, K::Node, Ignored),
    d("GET", "/nodes/{id}", A::NODE_INSPECT, K::Node, Ignored),
    d("DELETE", "/nodes/{id}", A::NODE_REMOVE, K::Node, Ignored),
    d("POST", "/nodes/{id}/update", A::NODE_UPDATE, K::Node, Json),
    d("GET", "/tasks", A::TASK_LIST, K::Task, Ignored),
    d("GET", "/tasks/{id}", A::TASK_INSPECT, K::Task, Ignored),
    d("GET", "/tasks/{id}/logs", A::TASK_LOGS, K::Task, Ignored),
    d("GET", "/secrets", A::SECRET_LIST, K::Secret, Ignored),
    d("POST", "/secrets/create", A::SECRET_CREATE, K::Secret, Json),
    d("DELETE", "/secrets/{id}", A::SECRET_REMOVE, K::Secret, Ignored),
    d("GET", "/secrets/{id}", A::SECRET_INSPECT, K::Secret, Ignored),
    d("POST", "/secrets/{id}/update", A::SECRET_UPDATE, K::Secret, Json),
    d("GET", "/configs", A::CONFIG_LIST, K::Config, Ignored),
    d("POST", "/configs/create", A::CONFIG_CREATE, K::Config, Json),
    d("DELETE", "/configs/{id}", A::CONFIG_REMOVE, K::Config, Ignored),
    d("GET", "/configs/{id}", A::CONFIG_INSPECT, K::Config, Ignored),
    d("POST", "/configs/{id}/update", A::CONFIG_UPDATE, K::Config, Json),
    // plugin router
    d("GET", "/plugins", A::PLUGIN_LIST, K::Plugin, Ignored),
    d("GET", "/plugins/{name:.*}/json", A::PLUGIN_INSPECT, K::Plugin, Ignored),
    d("GET", "/plugins/privileges", A::PLUGIN_PRIVILEGES, K::Plugin, Ignored),
    d("DELETE", "/plugins/{name:.*}", A::PLUGIN_REMOVE, K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/enable", A::PLUGIN_ENABLE, K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/disable", A::PLUGIN_DISABLE, K::Plugin, Ignored),
    d("POST", "/plugins/pull", A::PLUGIN_INSTALL, K::Plugin, Json),
    d("POST", "/plugins/{name:.*}/push", A::PLUGIN_PUSH, K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/upgrade", A::PLUGIN_UPGRADE, K::Plugin, Json),
    d("POST", "/plugins/{name:.*}/set", A::PLUGIN_SET, K::Plugin, Json),
    d("POST", "/plugins/create", A::PLUGIN_CREATE, K::Plugin, Stream),
    // distribution router
    d("GET", "/distribution/{name:.*}/json", A::DISTRIBUTION_INSPECT, K::Distribution, Ignored),
    // grpc router
    Route {
        tunnel: true,
        ..d("POST", "/grpc", A::GRPC_OPEN, K::Session, Ignored)
    },
    // network router
    d("GET", "/networks", A::NETWORK_LIST, K::Network, Ignored),
    d("GET", "/networks/", A::NETWORK_LIST, K::Network, Ignored),
    d("GET", "/networks/{id:.+}", A::NETWORK_INSPECT, K::Network, Ignored),
    d("POST", "/networks/create", A::NETWORK_CREATE, K::Network, Json),
    d("POST", "/networks/{id:.*}/connect", A::NETWORK_CONNECT, K::Network, Json),
    // The body names the container to disconnect: shown to the policy too.
    d("POST", "/networks/{id:.*}/disconnect", A::NETWORK_DISCONNECT, K::Network, Json),
    d("POST", "/networks/prune", A::NETWORK_PRUNE, K::Network, Ignored),
    d("DELETE", "/networks/{id:.*}", A::NETWORK_REMOVE, K::Network, Ignored),
    // debug router
    d("GET", "/debug/vars", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/cmdline", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/profile", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/symbol", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/trace", A::DEBUG_READ, K::Debug, Ignored),
    d("GET", "/debug/pprof/{name}", A::DEBUG_READ, K::Debug, Ignored),
    // portcullis admin API (fixed words before `{id}`: first match wins here too)
    admin("GET", "/api/v1/trust", A::TRUST_READ, Ignored, Op::TrustList),
    admin("POST", "/api/v1/trust", A::TRUST_WRITE, Json, Op::TrustCreate),
    admin("GET", "/api/v1/trust/audit", A::AUDIT_READ, Ignored, Op::AuditQuery),
    admin("POST", "/api/v1/trust/check", A::TRUST_CHECK, Json, Op::TrustCheck),
    admin("GET", "/api/v1/trust/{id}", A::TRUST_READ, Ignored, Op::TrustGet),
    admin("PATCH", "/api/v1/trust/{id}", A::TRUST_WRITE, Json, Op::TrustPatch),
    admin("DELETE", "/api/v1/trust/{id}", A::TRUST_WRITE, Ignored, Op::TrustDelete),
    admin("GET", "/api/v1/audit/verify", A::AUDIT_READ, Ignored, Op::AuditVerify),
    admin("GET", "/api/v1/audit/stream", A::AUDIT_READ, Ignored, Op::AuditStream),
    admin("GET", "/api/v1/callers", A::CALLER_READ, Ignored, Op::CallerList),
    admin("POST", "/api/v1/callers", A::CALLER_WRITE, Json, Op::CallerCreate),
    admin("GET", "/api/v1/callers/{name}", A::CALLER_READ, Ignored, Op::CallerGet),
    admin("DELETE", "/api/v1/callers/{name}", A::CALLER_WRITE, Ignored, Op::CallerDelete),
    admin("POST", "/api/v1/callers/{name}/tokens", A::CALLER_WRITE, Json, Op::TokenIssue),
    admin("DELETE", "/api/v1/callers/{name}/tokens/{id}", A::CALLER_WRITE, Ignored, Op::TokenRevoke),
    admin("GET", "/api/v1/policy", A::POLICY_READ, Ignored, Op::PolicyStatus),
    // portcullis file API
    files("GET", "/api/v1/containers/{id}/files", A::FILE_LIST, Ignored, F::List),
    files("GET", "/api/v1/containers/{id}/files/read", A::FILE_READ, Ignored, F::Read),
    files("PUT", "/api/v1/containers/{id}/files/write", A::FILE_WRITE, Json, F::Write),
    files("DELETE", "/api/v1/containers/{id}/files", A::FILE_DELETE, Ignored, F::Delete),
    // agent controls
    agent("GET", "/api/v1/containers/health", A::CONTAINER_HEALTH_SUMMARY, K::Container, Ignored, G::HealthSummary),
    agent("POST", "/api/v1/containers/{id}/update-image", A::CONTAINER_UPDATE_IMAGE, K::Container, Json, G::UpdateImage),
    agent("GET", "/api/v1/containers/{id}/env", A::CONTAINER_ENV_READ, K::Container, Ignored, G::EnvGet),
    agent("PATCH", "/api/v1/containers/{id}/env", A::CONTAINER_ENV_UPDATE, K::Container, Json, G::EnvPatch),
    agent("GET", "/api/v1/containers/{id}/health", A::CONTAINER_HEALTH, K::Container, Ignored, G::Health),
    agent("GET", "/api/v1/containers/{id}/stats", A::CONTAINER_STATS, K::Container, Ignored, G::Stats),
    agent("GET", "/api/v1/containers/{id}/logs", A::CONTAINER_LOGS, K::Container, Ignored, G::Logs),
    agent("GET", "/api/v1/events", A::SYSTEM_EVENTS, K::System, Ignored, G::Events),
];

/// The route variable that names no resource (`OPTIONS /{anyroute:.*}`).
const ANY_ROUTE_PARAM: &str = "anyroute";

/// The most variables any pattern has (`/containers/{name}/checkpoints/{checkpoint}`).
const MAX_PARAMS: usize = 2;

/// What a route variable matches, after gorilla/mux's regexp for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    /// `{x:.*}`: anything, `/` included, possibly empty.
    Any,
    /// `{x:.+}`: anything, `/` included, not empty.
    NonEmpty,
    /// `{x}`: gorilla/mux's default `[^/]+`, one non-empty segment.
    Segment,
}

#[derive(Debug, Clone)]
enum Token {
    Literal(&'static str),
    Param { name: &'static str, kind: ParamKind },
}

/// A pattern split into literals and variables.
#[derive(Debug)]
struct Compiled {
    tokens: Vec<Token>,
    /// `None` for a first segment that is a variable (matches any segment).
    first_segment: Option<&'static str>,
}

/// Variable captures as byte ranges into the matched path.
type Captures = [(usize, usize); MAX_PARAMS];

impl Compiled {
    fn new(pattern: &'static str) -> Self {
        assert!(
            pattern.starts_with('/'),
            "route pattern {pattern:?} must start with /"
        );
        let mut tokens = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let close = rest
                        .find('}')
                        .unwrap_or_else(|| panic!("unclosed variable in {pattern:?}"));
                    let inner = &rest[1..close];
                    let (name, kind) = match inner.split_once(':') {
                        None => (inner, ParamKind::Segment),
                        Some((n, ".*")) => (n, ParamKind::Any),
                        Some((n, ".+")) => (n, ParamKind::NonEmpty),
                        Some((_, re)) => {
                            panic!("unsupported variable regexp {re:?} in {pattern:?}")
                        }
                    };
                    tokens.push(Token::Param { name, kind });
                    rest = &rest[close + 1..];
                }
                Some(i) => {
                    tokens.push(Token::Literal(&rest[..i]));
                    rest = &rest[i..];
                }
                None => {
                    tokens.push(Token::Literal(rest));
                    rest = "";
                }
            }
        }
        let params = tokens
            .iter()
            .filter(|t| matches!(t, Token::Param { .. }))
            .count();
        assert!(params <= MAX_PARAMS, "too many variables in {pattern:?}");
        let first = first_segment(pattern);
        let first_segment = (!first.contains('{')).then_some(first);
        Self {
            tokens,
            first_segment,
        }
    }

    /// Match the whole of `path`, filling `caps`; returns the number of captures.
    fn matches(&self, path: &str, caps: &mut Captures) -> Option<usize> {
        match_tokens(&self.tokens, path, 0, caps, 0)
    }

    fn param_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tokens.iter().filter_map(|t| match t {
            Token::Param { name, .. } => Some(*name),
            Token::Literal(_) => None,
        })
    }
}

/// Anchored match of `tokens` against `path[pos..]`. Variables try their longest
/// extent first, which gives the captures Go's leftmost-first regexp gives.
fn match_tokens(
    tokens: &[Token],
    path: &str,
    pos: usize,
    caps: &mut Captures,
    n: usize,
) -> Option<usize> {
    let Some((token, rest)) = tokens.split_first() else {
        return (pos == path.len()).then_some(n);
    };
    let remaining = &path[pos..];
    match token {
        Token::Literal(lit) => {
            if remaining.starts_with(lit) {
                match_tokens(rest, path, pos + lit.len(), caps, n)
            } else {
                None
            }
        }
        Token::Param { kind, .. } => {
            let min = if *kind == ParamKind::Any { 0 } else { 1 };
            let max = match kind {
                ParamKind::Segment => remaining.find('/').unwrap_or(remaining.len()),
                ParamKind::Any | ParamKind::NonEmpty => remaining.len(),
            };
            // Fast path for the common shape `…{x}/suffix`: the variable is
            // exactly what lies between prefix and suffix.
            if let [Token::Literal(suffix)] = rest {
                if !remaining.ends_with(suffix) || remaining.len() < suffix.len() + min {
                    return None;
                }
                let len = remaining.len() - suffix.len();
                if len > max {
                    return None;
                }
                caps[n] = (pos, pos + len);
                return Some(n + 1);
            }
            for len in (min..=max).rev() {
                if !path.is_char_boundary(pos + len) {
                    continue;
                }
                caps[n] = (pos, pos + len);
                if let Some(found) = match_tokens(rest, path, pos + len, caps, n + 1) {
                    return Some(found);
                }
            }
            None
        }
    }
}

/// The first segment of a path: `containers` for `/containers/x/json`.
fn first_segment(path: &str) -> &str {
    let body = path.strip_prefix('/').unwrap_or(path);
    body.split('/').next().unwrap_or("")
}

/// Route rows bucketed by method, then first segment, indices in table order.
#[derive(Debug, Default)]
struct MethodIndex {
    by_segment: HashMap<&'static str, Vec<usize>>,
    /// Rows whose first segment is a variable; they are candidates for every path.
    any_segment: Vec<usize>,
}

#[derive(Debug)]
struct Index {
    compiled: Vec<Compiled>,
    methods: HashMap<&'static str, MethodIndex>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let compiled: Vec<Compiled> = ROUTES.iter().map(|r| Compiled::new(r.pattern)).collect();
        let mut methods: HashMap<&'static str, MethodIndex> = HashMap::new();
        for (i, (route, c)) in ROUTES.iter().zip(&compiled).enumerate() {
            let m = methods.entry(route.method).or_default();
            match c.first_segment {
                Some(seg) => m.by_segment.entry(seg).or_default().push(i),
                None => m.any_segment.push(i),
            }
        }
        Index { compiled, methods }
    })
}

/// Which row serves `method path`: the first in table order that matches.
fn find_route(method: &str, path: &str, caps: &mut Captures) -> Option<(usize, usize)> {
    let idx = index();
    let m = idx.methods.get(method)?;
    let by_segment: &[usize] = m
        .by_segment
        .get(first_segment(path))
        .map_or(&[], Vec::as_slice);
    // Merge the two ordered candidate lists so table order decides.
    let (mut a, mut b) = (
        by_segment.iter().peekable(),
        m.any_segment.iter().peekable(),
    );
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) if x < y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => return None,
        };
        let i = *next.expect("peeked");
        if let Some(n) = idx.compiled[i].matches(path, caps) {
            return Some((i, n));
        }
    }
}

fn route_index(route: &Route) -> Option<usize> {
    ROUTES.iter().position(|r| std::ptr::eq(r, route))
}

/// The value of route variable `name` (e.g. `checkpoint`, `id`) in `path`,
/// matched against `route`'s pattern.
pub(super) fn path_param(route: &Route, path: &str, name: &str) -> Option<String> {
    let compiled = &index().compiled[route_index(route)?];
    let mut caps = Captures::default();
    let n = compiled.matches(path, &mut caps)?;
    compiled
        .param_names()
        .take(n)
        .zip(caps)
        .find(|(p, _)| *p == name)
        .map(|(_, (s, e))| path[s..e].to_owned())
}

pub(super) fn classify(
    method: &str,
    path_and_query: &str,
    versions: &VersionRange,
) -> Result<Classified, ClassifyError> {
    let malformed = |m: String| ClassifyError::Malformed(format!("{m} in {path_and_query:?}"));
    // Raw bytes Go's URL parser refuses (controls, space), non-ASCII (never
    // sent unescaped by clients) and `#` (Go keeps it in the path, other
    // parsers cut a fragment there: refuse the ambiguity).
    if let Some(c) = path_and_query
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '#')
    {
        return Err(malformed(format!(
            "character {c:?} not allowed in a request target"
        )));
    }
    let (raw_path, raw_query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if !raw_path.starts_with('/') {
        return Err(malformed("request target is not an absolute path".into()));
    }
    let decoded = path::decode_path(raw_path).map_err(|e| malformed(e.to_string()))?;
    if !path::is_canonical(&decoded) {
        return Err(ClassifyError::NonCanonicalPath(decoded));
    }
    let unknown = || ClassifyError::UnknownRoute {
        method: method.to_owned(),
        path: decoded.clone(),
    };
    let (version, route_path) = path::split_version(&decoded).map_err(|_| unknown())?;

    let mut caps = Captures::default();
    let (i, n) = find_route(method, route_path, &mut caps).ok_or_else(unknown)?;
    let route = &ROUTES[i];
    // portcullis's own API has its own `/api/v1` versioning; a Docker version
    // prefix in front of it is a second spelling no client needs.
    if version.is_some() && route.service != Service::Docker {
        return Err(unknown());
    }
    if let Some(v) = version {
        if !versions.contains(v) {
            return Err(ClassifyError::UnsupportedVersion(
                v.to_string(),
                versions.to_string(),
            ));
        }
    }
    let query = path::parse_query(raw_query).map_err(|e| malformed(e.to_string()))?;

    let compiled = &index().compiled[i];
    let name = compiled
        .param_names()
        .zip(caps.iter().take(n))
        .find(|(p, _)| *p != ANY_ROUTE_PARAM)
        .map(|(_, &(s, e))| route_path[s..e].to_owned());
    let mut classified = Classified {
        route,
        action: route.action,
        resource: Resource {
            kind: route.kind,
            name,
        },
        version,
        path: route_path.to_owned(),
        query,
    };
    let query = std::mem::take(&mut classified.query);
    refine(&mut classified, &query);
    classified.query = query;
    Ok(classified)
}

/// Set the action and resource name where they depend on parameters rather
/// than on the path, from `form`: the query, or (called again by the pipeline
/// once a form body is merged) the merged form, body values first. Routes
/// whose action the path alone fixes are left as they are, so calling it twice
/// is harmless.
pub fn refine(classified: &mut Classified, form: &[(String, String)]) {
    let route = classified.route;
    let owned = |v: Option<&str>| v.map(str::to_owned);
    match (route.method, route.pattern) {
        ("POST", "/images/create") => {
            // The daemon pulls when fromImage is non-empty, else imports.
            if let Some(image) = form_get_nonempty(form, "fromImage") {
                classified.action = A::IMAGE_PULL;
                let tag = form_get_nonempty(form, "tag");
                classified.resource.name = Some(pull_reference(image, tag));
            } else if form_get_nonempty(form, "fromSrc").is_some() {
                classified.action = A::IMAGE_IMPORT;
                let tag = form_get_nonempty(form, "tag");
                classified.resource.name =
                    form_get_nonempty(form, "repo").map(|repo| pull_reference(repo, tag));
            } else {
                classified.action = A::IMAGE_PULL;
                classified.resource.name = None;
            }
        }
        ("POST", "/build") => classified.resource.name = owned(form_get_nonempty(form, "t")),
        ("POST", "/commit") => {
            classified.resource.name = owned(form_get_nonempty(form, "container"))
        }
        ("POST", "/containers/create") | ("POST", "/plugins/create") => {
            classified.resource.name = owned(form_get_nonempty(form, "name"))
        }
        ("POST", "/plugins/pull") => {
            classified.resource.name =
                owned(form_get_nonempty(form, "name").or_else(|| form_get_nonempty(form, "remote")))
        }
        _ => {}
    }
}

/// The reference the daemon pulls for `fromImage=image&tag=tag`.
///
/// The daemon trims one trailing `:` (`pull -a` sends `name:`), then a `tag`
/// parameter REPLACES any tag in the image (`reference.WithTag`), and a digest
/// passed as `tag` replaces tag and digest (`WithDigest(TrimNamed(ref))`). So
/// `fromImage=ok:1.0&tag=evil` pulls `ok:evil`, and that is the name the
/// policy must see. Names are not normalised (`ubuntu` stays `ubuntu`).
pub fn pull_reference(image: &str, tag: Option<&str>) -> String {
    let image = image.strip_suffix(':').unwrap_or(image);
    let Some(tag) = tag else {
        return image.to_owned();
    };
    let (named, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    let repository = match named[last_slash..].find(':') {
        Some(colon) => &named[..last_slash + colon],
        None => named,
    };
    if tag.contains(':') {
        // `algorithm:hex`: the daemon treats it as a digest.
        format!("{repository}@{tag}")
    } else {
        match digest {
            Some(d) => format!("{repository}:{tag}@{d}"),
            None => format!("{repository}:{tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_agree_with_services() {
        for r in ROUTES {
            let service = match r.handler {
                Handler::Daemon => Service::Docker,
                Handler::Admin(_) => Service::Admin,
                Handler::Files(_) => Service::Files,
                Handler::Agent(_) => Service::Agent,
            };
            assert_eq!(service, r.service, "{} {}", r.method, r.pattern);
        }
    }

    #[test]
    fn every_pattern_compiles_and_rows_are_unique() {
        let idx = index();
        assert_eq!(idx.compiled.len(), ROUTES.len());
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.pattern)),
                "duplicate row {} {}",
                r.method,
                r.pattern
            );
        }
    }

    #[test]
    fn matcher_semantics() {
        let mut caps = Captures::default();
        let greedy = Compiled::new("/images/{name:.*}/json");
        assert_eq!(greedy.matches("/images/a/b/json/json", &mut caps), Some(1));
        assert_eq!(caps[0], (8, 16)); // "a/b/json"
        assert_eq!(greedy.matches("/images//json", &mut caps), Some(1));
        assert_eq!(greedy.matches("/images/json", &mut caps), None);
        let segment = Compiled::new("/containers/{name}/checkpoints/{checkpoint}");
        assert_eq!(
            segment.matches("/containers/a/checkpoints/b", &mut caps),
            Some(2)
        );
        assert_eq!(
            segment.matches("/containers/a/b/checkpoints/c", &mut caps),
            None
        );
        assert_eq!(
            segment.matches("/containers/a/checkpoints/b/c", &mut caps),
            None
        );
        let nonempty = Compiled::new("/networks/{id:.+}");
        assert_eq!(nonempty.matches("/networks/", &mut caps), None);
        assert_eq!(nonempty.matches("/networks/a/b", &mut caps), Some(1));
        let any = Compiled::new("/volumes/{name:.*}");
        assert_eq!(any.matches("/volumes/", &mut caps), Some(1));
        assert_eq!(caps[0], (9, 9));
    }

    #[test]
    fn pull_reference_follows_the_daemon() {
        assert_eq!(pull_reference("ubuntu", None), "ubuntu");
        assert_eq!(pull_reference("ubuntu", Some("22.04")), "ubuntu:22.04");
        assert_eq!(pull_reference("ubuntu:", Some("22.04")), "ubuntu:22.04");
        assert_eq!(pull_reference("ubuntu:ok", Some("evil")), "ubuntu:evil");
        assert_eq!(pull_reference("reg:5000/a/b", Some("1")), "reg:5000/a/b:1");
        assert_eq!(
            pull_reference("reg:5000/a/b:2", Some("1")),
            "reg:5000/a/b:1"
        );
        assert_eq!(pull_reference("a@sha256:00", Some("1")), "a:1@sha256:00");
        assert_eq!(pull_reference("a:1", Some("sha256:ff")), "a@sha256:ff");
        assert_eq!(pull_reference("a:1@sha256:00", None), "a:1@sha256:00");
    }
}
