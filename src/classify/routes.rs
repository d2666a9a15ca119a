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
    pub action: &'static str,
    pub kind: ResourceKind,
    pub body: BodyRule,
    /// The daemon takes the connection over (attach, exec start).
    pub hijack: bool,
    /// An opaque tunnel (`/session`, `/grpc`, `attach/ws`): refused unless the
    /// policy explicitly allows the action.
    pub tunnel: bool,
    pub service: Service,
}

/// A plain Docker route: no hijack, no tunnel.
const fn d(
    method: &'static str,
    pattern: &'static str,
    action: &'static str,
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
    }
}

/// A portcullis admin API route.
const fn admin(
    method: &'static str,
    pattern: &'static str,
    action: &'static str,
    body: BodyRule,
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
    }
}

/// A portcullis file API route (the resource is the container `{id}`).
const fn files(
    method: &'static str,
    pattern: &'static str,
    action: &'static str,
    body: BodyRule,
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
    }
}

use BodyRule::{Form, Ignored, Json, Stream, Tar};
use ResourceKind as K;

#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    // checkpoint router: registered before the container router, or its DELETE
    // would be taken by `DELETE /containers/{name:.*}`.
    d("GET", "/containers/{name:.*}/checkpoints", "checkpoint.list", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/checkpoints", "checkpoint.create", K::Container, Ignored),
    d("DELETE", "/containers/{name}/checkpoints/{checkpoint}", "checkpoint.remove", K::Container, Ignored),
    // container router
    d("HEAD", "/containers/{name:.*}/archive", "file.stat", K::Container, Ignored),
    d("GET", "/containers/json", "container.list", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/export", "container.export", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/changes", "container.changes", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/json", "container.inspect", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/top", "container.top", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/logs", "container.logs", K::Container, Ignored),
    d("GET", "/containers/{name:.*}/stats", "container.stats", K::Container, Ignored),
    Route {
        tunnel: true,
        ..d(
            "GET",
            "/containers/{name:.*}/attach/ws",
            "container.attach_ws",
            K::Container,
            Ignored,
        )
    },
    d("GET", "/exec/{id:.*}/json", "exec.inspect", K::Exec, Ignored),
    d("GET", "/containers/{name:.*}/archive", "file.read", K::Container, Ignored),
    d("POST", "/containers/create", "container.create", K::Container, Json),
    d("POST", "/containers/{name:.*}/kill", "container.kill", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/pause", "container.pause", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/unpause", "container.unpause", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/restart", "container.restart", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/start", "container.start", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/stop", "container.stop", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/wait", "container.wait", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/resize", "container.resize", K::Container, Ignored),
    Route {
        hijack: true,
        ..d(
            "POST",
            "/containers/{name:.*}/attach",
            "container.attach",
            K::Container,
            Ignored,
        )
    },
    d("POST", "/containers/{name:.*}/exec", "container.exec", K::Container, Json),
    Route {
        hijack: true,
        ..d("POST", "/exec/{name:.*}/start", "exec.start", K::Exec, Json)
    },
    d("POST", "/exec/{name:.*}/resize", "exec.resize", K::Exec, Ignored),
    d("POST", "/containers/{name:.*}/rename", "container.rename", K::Container, Ignored),
    d("POST", "/containers/{name:.*}/update", "container.update", K::Container, Json),
    d("POST", "/containers/prune", "container.prune", K::Container, Ignored),
    d("POST", "/commit", "container.commit", K::Container, Ignored),
    d("PUT", "/containers/{name:.*}/archive", "file.write", K::Container, Tar),
    d("DELETE", "/containers/{name:.*}", "container.remove", K::Container, Ignored),
    // image router
    d("GET", "/images/json", "image.list", K::Image, Ignored),
    d("GET", "/images/search", "image.search", K::Image, Ignored),
    d("GET", "/images/get", "image.export", K::Image, Ignored),
    d("GET", "/images/{name:.*}/get", "image.export", K::Image, Ignored),
    d("GET", "/images/{name:.*}/history", "image.history", K::Image, Ignored),
    d("GET", "/images/{name:.*}/json", "image.inspect", K::Image, Ignored),
    d("GET", "/images/{name:.*}/attestations", "image.inspect", K::Image, Ignored),
    d("POST", "/images/load", "image.load", K::Image, Stream),
    // image.pull or image.import: decided by `refine` from fromImage/fromSrc.
    d("POST", "/images/create", "image.pull", K::Image, Form),
    d("POST", "/images/{name:.*}/push", "image.push", K::Image, Ignored),
    d("POST", "/images/{name:.*}/tag", "image.tag", K::Image, Ignored),
    d("POST", "/images/prune", "image.prune", K::Image, Ignored),
    d("DELETE", "/images/{name:.*}", "image.remove", K::Image, Ignored),
    // system router
    d("OPTIONS", "/{anyroute:.*}", "system.options", K::System, Ignored),
    d("GET", "/_ping", "system.ping", K::System, Ignored),
    d("HEAD", "/_ping", "system.ping", K::System, Ignored),
    d("GET", "/events", "system.events", K::System, Ignored),
    d("GET", "/info", "system.info", K::System, Ignored),
    d("GET", "/version", "system.version", K::System, Ignored),
    d("GET", "/system/df", "system.df", K::System, Ignored),
    d("POST", "/auth", "system.auth", K::System, Ignored),
    // volume router
    d("GET", "/volumes", "volume.list", K::Volume, Ignored),
    d("GET", "/volumes/{name:.*}", "volume.inspect", K::Volume, Ignored),
    d("POST", "/volumes/create", "volume.create", K::Volume, Json),
    d("POST", "/volumes/prune", "volume.prune", K::Volume, Ignored),
    d("PUT", "/volumes/{name:.*}", "volume.update", K::Volume, Ignored),
    d("DELETE", "/volumes/{name:.*}", "volume.remove", K::Volume, Ignored),
    // build router
    d("POST", "/build", "image.build", K::Image, Stream),
    d("POST", "/build/prune", "build.prune", K::Build, Ignored),
    d("POST", "/build/cancel", "build.cancel", K::Build, Ignored),
    // session router
    Route {
        tunnel: true,
        ..d("POST", "/session", "session.open", K::Session, Ignored)
    },
    // swarm router
    d("POST", "/swarm/init", "swarm.init", K::Swarm, Json),
    d("POST", "/swarm/join", "swarm.join", K::Swarm, Json),
    d("POST", "/swarm/leave", "swarm.leave", K::Swarm, Ignored),
    d("GET", "/swarm", "swarm.inspect", K::Swarm, Ignored),
    d("GET", "/swarm/unlockkey", "swarm.unlockkey", K::Swarm, Ignored),
    d("POST", "/swarm/update", "swarm.update", K::Swarm, Json),
    d("POST", "/swarm/unlock", "swarm.unlock", K::Swarm, Ignored),
    d("GET", "/services", "service.list", K::Service, Ignored),
    d("GET", "/services/{id}", "service.inspect", K::Service, Ignored),
    d("POST", "/services/create", "service.create", K::Service, Json),
    d("POST", "/services/{id}/update", "service.update", K::Service, Json),
    d("DELETE", "/services/{id}", "service.remove", K::Service, Ignored),
    d("GET", "/services/{id}/logs", "service.logs", K::Service, Ignored),
    d("GET", "/nodes", "node.list", K::Node, Ignored),
    d("GET", "/nodes/{id}", "node.inspect", K::Node, Ignored),
    d("DELETE", "/nodes/{id}", "node.remove", K::Node, Ignored),
    d("POST", "/nodes/{id}/update", "node.update", K::Node, Json),
    d("GET", "/tasks", "task.list", K::Task, Ignored),
    d("GET", "/tasks/{id}", "task.inspect", K::Task, Ignored),
    d("GET", "/tasks/{id}/logs", "task.logs", K::Task, Ignored),
    d("GET", "/secrets", "secret.list", K::Secret, Ignored),
    d("POST", "/secrets/create", "secret.create", K::Secret, Json),
    d("DELETE", "/secrets/{id}", "secret.remove", K::Secret, Ignored),
    d("GET", "/secrets/{id}", "secret.inspect", K::Secret, Ignored),
    d("POST", "/secrets/{id}/update", "secret.update", K::Secret, Json),
    d("GET", "/configs", "config.list", K::Config, Ignored),
    d("POST", "/configs/create", "config.create", K::Config, Json),
    d("DELETE", "/configs/{id}", "config.remove", K::Config, Ignored),
    d("GET", "/configs/{id}", "config.inspect", K::Config, Ignored),
    d("POST", "/configs/{id}/update", "config.update", K::Config, Json),
    // plugin router
    d("GET", "/plugins", "plugin.list", K::Plugin, Ignored),
    d("GET", "/plugins/{name:.*}/json", "plugin.inspect", K::Plugin, Ignored),
    d("GET", "/plugins/privileges", "plugin.privileges", K::Plugin, Ignored),
    d("DELETE", "/plugins/{name:.*}", "plugin.remove", K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/enable", "plugin.enable", K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/disable", "plugin.disable", K::Plugin, Ignored),
    d("POST", "/plugins/pull", "plugin.install", K::Plugin, Json),
    d("POST", "/plugins/{name:.*}/push", "plugin.push", K::Plugin, Ignored),
    d("POST", "/plugins/{name:.*}/upgrade", "plugin.upgrade", K::Plugin, Json),
    d("POST", "/plugins/{name:.*}/set", "plugin.set", K::Plugin, Json),
    d("POST", "/plugins/create", "plugin.create", K::Plugin, Stream),
    // distribution router
    d("GET", "/distribution/{name:.*}/json", "distribution.inspect", K::Distribution, Ignored),
    // grpc router
    Route {
        tunnel: true,
        ..d("POST", "/grpc", "grpc.open", K::Session, Ignored)
    },
    // network router
    d("GET", "/networks", "network.list", K::Network, Ignored),
    d("GET", "/networks/", "network.list", K::Network, Ignored),
    d("GET", "/networks/{id:.+}", "network.inspect", K::Network, Ignored),
    d("POST", "/networks/create", "network.create", K::Network, Json),
    d("POST", "/networks/{id:.*}/connect", "network.connect", K::Network, Json),
    // The body names the container to disconnect: shown to the policy too.
    d("POST", "/networks/{id:.*}/disconnect", "network.disconnect", K::Network, Json),
    d("POST", "/networks/prune", "network.prune", K::Network, Ignored),
    d("DELETE", "/networks/{id:.*}", "network.remove", K::Network, Ignored),
    // debug router
    d("GET", "/debug/vars", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/cmdline", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/profile", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/symbol", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/trace", "debug.read", K::Debug, Ignored),
    d("GET", "/debug/pprof/{name}", "debug.read", K::Debug, Ignored),
    // portcullis admin API (fixed words before `{id}`: first match wins here too)
    admin("GET", "/api/v1/trust", "trust.read", Ignored),
    admin("POST", "/api/v1/trust", "trust.write", Json),
    admin("GET", "/api/v1/trust/audit", "audit.read", Ignored),
    admin("POST", "/api/v1/trust/check", "trust.check", Json),
    admin("GET", "/api/v1/trust/{id}", "trust.read", Ignored),
    admin("PATCH", "/api/v1/trust/{id}", "trust.write", Json),
    admin("DELETE", "/api/v1/trust/{id}", "trust.write", Ignored),
    admin("GET", "/api/v1/audit/verify", "audit.read", Ignored),
    admin("GET", "/api/v1/callers", "caller.read", Ignored),
    admin("POST", "/api/v1/callers", "caller.write", Json),
    admin("GET", "/api/v1/callers/{name}", "caller.read", Ignored),
    admin("DELETE", "/api/v1/callers/{name}", "caller.write", Ignored),
    admin("POST", "/api/v1/callers/{name}/tokens", "caller.write", Json),
    admin("DELETE", "/api/v1/callers/{name}/tokens/{id}", "caller.write", Ignored),
    admin("GET", "/api/v1/policy", "policy.read", Ignored),
    // portcullis file API
    files("GET", "/api/v1/containers/{id}/files", "file.list", Ignored),
    files("GET", "/api/v1/containers/{id}/files/read", "file.read", Ignored),
    files("PUT", "/api/v1/containers/{id}/files/write", "file.write", Json),
    files("DELETE", "/api/v1/containers/{id}/files", "file.delete", Ignored),
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
        action: Action(route.action),
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
                classified.action = Action("image.pull");
                let tag = form_get_nonempty(form, "tag");
                classified.resource.name = Some(pull_reference(image, tag));
            } else if form_get_nonempty(form, "fromSrc").is_some() {
                classified.action = Action("image.import");
                let tag = form_get_nonempty(form, "tag");
                classified.resource.name =
                    form_get_nonempty(form, "repo").map(|repo| pull_reference(repo, tag));
            } else {
                classified.action = Action("image.pull");
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
