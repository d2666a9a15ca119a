//! Classify: which action on which resource a request asks for.
//!
//! Why one table: proxies that match loose prefixes (`/containers` ⇒ allowed)
//! also let through exec and kill. Here every route the daemon registers is a
//! row in [`routes::ROUTES`], matched the way the daemon's router matches it
//! (see `shared/docker-api/NOTES.md`): optional version prefix, percent-decoded
//! path, `path.Clean` canonical form, greedy image names, case-sensitive
//! methods, first registered route wins. Anything the table does not know is
//! refused by the caller of [`classify`].
//!
//! Why refuse rather than normalise: the daemon answers a non-canonical path
//! with a redirect and a bad query with 400, so refusing them costs a real
//! client nothing, while "fixing" them would make the proxy judge one request
//! and the daemon possibly serve another.
//!
//! Some actions depend on parameters, not on the path (`images/create` pulls
//! or imports, `/build` names its image in `t`). [`classify`] settles them from
//! the query; the pipeline calls [`refine`] again once a form body is merged,
//! because the daemon lets body values override the query.

pub mod path;
pub mod routes;

use std::fmt;

pub use path::{ApiVersion, VersionRange};
pub use routes::{pull_reference, refine, BodyRule, Route, Service, ROUTES};

/// The kind of object a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Container,
    /// An exec instance; [`crate::resolve`] maps it back to its container.
    Exec,
    Image,
    Network,
    Volume,
    Service,
    Task,
    Node,
    Secret,
    Config,
    Plugin,
    Swarm,
    Build,
    Session,
    Distribution,
    System,
    Debug,
    /// portcullis's own admin objects (trust relationships, callers, audit, policy).
    Admin,
}

/// The resource a request names: its kind and, when the route names one, the
/// reference exactly as the daemon will decode it (e.g. `web-1`, `library/ubuntu:22.04`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: Option<String>,
}

/// A canonical action name such as `container.exec` or `file.write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Action(pub &'static str);

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What [`classify`] returns for a request the table knows.
#[derive(Debug, Clone)]
pub struct Classified {
    pub route: &'static Route,
    pub action: Action,
    pub resource: Resource,
    /// The `/vX.Y` prefix, if the client sent one.
    pub version: Option<ApiVersion>,
    /// The percent-decoded path without the version prefix, e.g. `/containers/web-1/start`.
    pub path: String,
    /// Query parameters, decoded, in order. Form bodies are merged in later
    /// by [`crate::inspect`] (body values take precedence, as in Go's ParseForm).
    pub query: Vec<(String, String)>,
}

impl Classified {
    /// The first value of a query parameter, as Go's `r.Form.Get` returns it
    /// (see [`path::form_get`]).
    pub fn query_get(&self, key: &str) -> Option<&str> {
        path::form_get(&self.query, key)
    }

    /// The in-container path a file action names: query `path` for the archive
    /// routes (`file.stat`, `file.read`, `file.write`) and the file API. `None`
    /// for other actions, or when absent (the file API's PUT carries its path in
    /// the body; the pipeline takes it from there).
    pub fn resource_path(&self) -> Option<&str> {
        if self.action.0.starts_with("file.") {
            self.query_get("path")
        } else {
            None
        }
    }

    /// The value of a route variable by the pattern's name for it, e.g.
    /// `checkpoint` for `DELETE /containers/{name}/checkpoints/{checkpoint}` or
    /// `id` for `DELETE /api/v1/callers/{name}/tokens/{id}`.
    pub fn path_param(&self, name: &str) -> Option<String> {
        routes::path_param(self.route, &self.path, name)
    }

    /// Whether the route takes the connection over or tunnels an opaque
    /// protocol (the forward stage must not treat it as one request/response).
    pub fn takes_over_connection(&self) -> bool {
        self.route.hijack || self.route.tunnel
    }
}

/// Why a request could not be classified. Every variant is a refusal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClassifyError {
    #[error("unknown route {method} {path}")]
    UnknownRoute { method: String, path: String },
    #[error("non-canonical path {0:?}: the daemon would redirect it, portcullis refuses it")]
    NonCanonicalPath(String),
    #[error("API version {0} is outside the supported range {1}")]
    UnsupportedVersion(String, String),
    #[error("malformed request target: {0}")]
    Malformed(String),
}

/// Classify one request from its method and raw request-target (path and query,
/// exactly as received).
pub fn classify(
    method: &str,
    path_and_query: &str,
    versions: &VersionRange,
) -> Result<Classified, ClassifyError> {
    routes::classify(method, path_and_query, versions)
}
