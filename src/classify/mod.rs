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

mod action;
mod handler;
pub mod path;
pub mod routes;

pub use action::Action;
pub use handler::{AdminOp, AgentOp, FileOp, Handler};
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
        if self.action.is_file() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: &str, target: &str) -> Result<Classified, ClassifyError> {
        classify(method, target, &VersionRange::default())
    }

    fn ok(method: &str, target: &str) -> Classified {
        c(method, target).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    fn action_and_name(method: &str, target: &str) -> (&'static str, Option<String>) {
        let got = ok(method, target);
        (got.action.as_str(), got.resource.name)
    }

    fn named(action: &'static str, name: &str) -> (&'static str, Option<String>) {
        (action, Some(name.to_owned()))
    }

    #[test]
    fn image_names_are_greedy() {
        assert_eq!(
            action_and_name("GET", "/images/library/ubuntu/json"),
            named("image.inspect", "library/ubuntu")
        );
        assert_eq!(
            action_and_name("GET", "/v1.41/images/reg:5000/a/b:1.0/history"),
            named("image.history", "reg:5000/a/b:1.0")
        );
        assert_eq!(
            action_and_name("DELETE", "/images/a/b/c"),
            named("image.remove", "a/b/c")
        );
        assert_eq!(
            action_and_name("POST", "/images/a/b/push"),
            named("image.push", "a/b")
        );
        // Greedy: the last `/json` ends the name, earlier ones belong to it.
        assert_eq!(
            action_and_name("GET", "/images/x/json/json"),
            named("image.inspect", "x/json")
        );
    }

    #[test]
    fn path_is_percent_decoded_before_matching() {
        // `abc%2Fstart` decodes to `abc/start`: container.start on `abc`.
        assert_eq!(
            action_and_name("POST", "/containers/abc%2Fstart"),
            named("container.start", "abc")
        );
        assert_eq!(
            action_and_name("GET", "/images/library%2Fubuntu/json"),
            named("image.inspect", "library/ubuntu")
        );
        let got = ok("GET", "/containers/we%62-1/json");
        assert_eq!(got.resource.name.as_deref(), Some("web-1"));
        assert_eq!(got.path, "/containers/web-1/json");
        // `+` is literal in a path.
        assert_eq!(
            action_and_name("POST", "/containers/a+b/kill"),
            named("container.kill", "a+b")
        );
    }

    #[test]
    fn malformed_targets_are_refused() {
        for target in [
            "/containers/a%zz/json",
            "/containers/a%2/json",
            "/containers/a%00/json",
            "/containers/a%0A/json",
            "/containers/a b/json",
            "/containers/a#b/json",
            "containers/json",
            "*",
        ] {
            assert!(
                matches!(c("GET", target), Err(ClassifyError::Malformed(_))),
                "{target}: {:?}",
                c("GET", target)
            );
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for target in [
            "//containers/json",
            "/containers//json",
            "/containers/a/../b/json",
            "/containers/a/%2e%2e/b/json",
            "/containers/./a/json",
            "/containers/a%2F..%2Fb/start",
            "/v1.41//info",
            "/info/.",
        ] {
            assert!(
                matches!(c("GET", target), Err(ClassifyError::NonCanonicalPath(_))),
                "{target}: {:?}",
                c("GET", target)
            );
        }
        // A trailing slash survives Clean, so it is canonical (and a route).
        assert_eq!(ok("GET", "/networks/").action.as_str(), "network.list");
    }

    #[test]
    fn version_prefix_range_and_format() {
        let got = ok("GET", "/v1.044/info");
        assert_eq!(got.version, Some(ApiVersion::new(1, 44)));
        assert_eq!(got.path, "/info");
        assert_eq!(ok("GET", "/info").version, None);
        for target in ["/v1.23/info", "/v1.57/info", "/v2.0/info"] {
            assert!(
                matches!(c("GET", target), Err(ClassifyError::UnsupportedVersion(..))),
                "{target}"
            );
        }
        let narrow = VersionRange {
            min: ApiVersion::new(1, 40),
            max: ApiVersion::new(1, 41),
        };
        assert!(classify("GET", "/v1.41/info", &narrow).is_ok());
        assert!(matches!(
            classify("GET", "/v1.42/info", &narrow),
            Err(ClassifyError::UnsupportedVersion(..))
        ));
        for target in [
            "/v1/info",
            "/v1.41.0/info",
            "/v1.x/info",
            "/v.41/info",
            "/v1.41",
            "/V1.41/info",
            "/v1.41x/info",
        ] {
            assert!(
                matches!(c("GET", target), Err(ClassifyError::UnknownRoute { .. })),
                "{target}: {:?}",
                c("GET", target)
            );
        }
        // Versioned and unversioned forms classify alike.
        let (a, b) = (
            ok("POST", "/v1.41/containers/web/start"),
            ok("POST", "/containers/web/start"),
        );
        assert_eq!((a.action, a.resource), (b.action, b.resource));
        // portcullis's own API takes no Docker version prefix.
        assert!(matches!(
            c("GET", "/v1.41/api/v1/trust"),
            Err(ClassifyError::UnknownRoute { .. })
        ));
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(ok("GET", "/_ping").action.as_str(), "system.ping");
        assert_eq!(ok("HEAD", "/_ping").action.as_str(), "system.ping");
        for method in ["get", "Get", "PATCH", "TRACE"] {
            assert!(
                matches!(c(method, "/_ping"), Err(ClassifyError::UnknownRoute { .. })),
                "{method}"
            );
        }
        // HEAD is not GET: only routes registered for HEAD answer it.
        assert!(c("HEAD", "/containers/json").is_err());
    }

    #[test]
    fn query_is_parsed_like_go() {
        let got = ok(
            "GET",
            "/containers/json?all=1&filters=%7B%22a%22%3A1%7D&x=a+b&all=0",
        );
        assert_eq!(
            got.query,
            vec![
                ("all".to_owned(), "1".to_owned()),
                ("filters".to_owned(), "{\"a\":1}".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("all".to_owned(), "0".to_owned()),
            ]
        );
        assert_eq!(got.query_get("all"), Some("1"));
        for target in [
            "/containers/json?all=1;b=2",
            "/containers/json?a=;",
            "/containers/json?a=%zz",
        ] {
            assert!(
                matches!(c("GET", target), Err(ClassifyError::Malformed(_))),
                "{target}"
            );
        }
        // An escaped semicolon is an ordinary character.
        assert_eq!(
            ok("GET", "/containers/json?a=%3B").query_get("a"),
            Some(";")
        );
    }

    #[test]
    fn unknown_routes_are_refused() {
        for (method, target) in [
            ("GET", "/"),
            ("GET", "/containers"),
            ("GET", "/containers/json/"),
            ("POST", "/containers/x/frobnicate"),
            ("GET", "/containers/x/start"),
            ("PUT", "/containers/x"),
            ("GET", "/nodes/a/b"),
            ("GET", "/api/v1/nothing"),
            ("POST", "/api/v1/trust/a/b"),
            ("GET", "/v1.41"),
            ("CONNECT", "/containers/json"),
        ] {
            assert!(
                matches!(c(method, target), Err(ClassifyError::UnknownRoute { .. })),
                "{method} {target}: {:?}",
                c(method, target)
            );
        }
    }

    #[test]
    fn first_registered_route_wins() {
        assert_eq!(
            action_and_name("GET", "/images/get"),
            ("image.export", None)
        );
        assert_eq!(
            action_and_name("GET", "/images/get/get"),
            named("image.export", "get")
        );
        assert_eq!(
            action_and_name("GET", "/containers/json"),
            ("container.list", None)
        );
        assert_eq!(
            action_and_name("GET", "/containers/json/json"),
            named("container.inspect", "json")
        );
        assert_eq!(action_and_name("GET", "/networks/"), ("network.list", None));
        assert_eq!(action_and_name("GET", "/networks"), ("network.list", None));
        assert_eq!(
            action_and_name("GET", "/networks/n1"),
            named("network.inspect", "n1")
        );
        assert_eq!(
            action_and_name("GET", "/api/v1/trust/audit"),
            ("audit.read", None)
        );
        assert_eq!(
            action_and_name("GET", "/api/v1/trust/t-1"),
            named("trust.read", "t-1")
        );
        assert_eq!(
            action_and_name("POST", "/images/create"),
            ("image.pull", None)
        );
        assert_eq!(
            action_and_name("POST", "/containers/prune"),
            ("container.prune", None)
        );
        assert_eq!(
            action_and_name("POST", "/networks/create"),
            ("network.create", None)
        );
        // Checkpoint DELETE is registered before container DELETE …
        let got = ok("DELETE", "/containers/web/checkpoints/cp1");
        assert_eq!(
            (got.action.as_str(), got.resource.name.as_deref()),
            ("checkpoint.remove", Some("web"))
        );
        assert_eq!(got.path_param("checkpoint").as_deref(), Some("cp1"));
        // … but its `{name}` is one segment, so this one falls to container.remove.
        assert_eq!(
            action_and_name("DELETE", "/containers/a/b/checkpoints/c"),
            named("container.remove", "a/b/checkpoints/c")
        );
        assert_eq!(
            action_and_name("GET", "/debug/pprof/cmdline"),
            ("debug.read", None)
        );
        assert_eq!(
            action_and_name("GET", "/debug/pprof/heap"),
            named("debug.read", "heap")
        );
        // OPTIONS answers any path; its variable names no resource.
        assert_eq!(
            action_and_name("OPTIONS", "/containers/web/start"),
            ("system.options", None)
        );
        assert_eq!(action_and_name("OPTIONS", "/"), ("system.options", None));
    }

    fn refined(target: &str, form: &[(&str, &str)]) -> (&'static str, Option<String>) {
        let mut got = ok("POST", target);
        let form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        refine(&mut got, &form);
        (got.action.as_str(), got.resource.name)
    }

    #[test]
    fn query_dependent_actions() {
        assert_eq!(
            action_and_name("POST", "/images/create?fromImage=ubuntu&tag=22.04"),
            named("image.pull", "ubuntu:22.04")
        );
        assert_eq!(
            action_and_name("POST", "/images/create?fromImage=ubuntu:ok&tag=evil"),
            named("image.pull", "ubuntu:evil")
        );
        assert_eq!(
            action_and_name("POST", "/images/create?fromSrc=-&repo=mine&tag=1"),
            named("image.import", "mine:1")
        );
        assert_eq!(
            action_and_name("POST", "/images/create?fromSrc=http://x/y.tar"),
            ("image.import", None)
        );
        // The daemon pulls when fromImage is set, whatever fromSrc says.
        assert_eq!(
            action_and_name("POST", "/images/create?fromSrc=-&fromImage=busybox"),
            named("image.pull", "busybox")
        );
        assert_eq!(
            action_and_name("POST", "/images/create?fromImage="),
            ("image.pull", None)
        );
        assert_eq!(
            action_and_name("POST", "/build?t=app:1&t=app:latest"),
            named("image.build", "app:1")
        );
        assert_eq!(action_and_name("POST", "/build"), ("image.build", None));
        assert_eq!(
            action_and_name("POST", "/commit?container=web-1&repo=snap"),
            named("container.commit", "web-1")
        );
        assert_eq!(
            action_and_name("POST", "/containers/create?name=web-2"),
            named("container.create", "web-2")
        );
        assert_eq!(
            action_and_name("POST", "/containers/create?name="),
            ("container.create", None)
        );
        assert_eq!(
            action_and_name("POST", "/plugins/pull?remote=vieux/sshfs"),
            named("plugin.install", "vieux/sshfs")
        );
        assert_eq!(
            action_and_name("POST", "/plugins/pull?remote=vieux/sshfs&name=fs"),
            named("plugin.install", "fs")
        );
        assert_eq!(
            action_and_name("POST", "/plugins/create?name=p1"),
            named("plugin.create", "p1")
        );

        // A merged form body (body values first) decides, as in the daemon.
        assert_eq!(
            refined(
                "/images/create?fromImage=a",
                &[("fromImage", "b"), ("fromImage", "a")]
            ),
            named("image.pull", "b")
        );
        assert_eq!(
            refined(
                "/images/create?fromImage=a",
                &[("fromSrc", "-"), ("repo", "r")]
            ),
            named("image.import", "r")
        );
        assert_eq!(
            refined("/build?t=a", &[("t", "b"), ("t", "a")]),
            named("image.build", "b")
        );
        // Routes whose action the path fixes are left alone.
        assert_eq!(
            refined("/containers/web/start", &[("name", "x")]),
            named("container.start", "web")
        );
    }

    #[test]
    fn resource_path_for_file_actions() {
        let got = ok(
            "PUT",
            "/containers/web/archive?path=%2Fetc&noOverwriteDirNonDir=1",
        );
        assert_eq!(
            (got.action.as_str(), got.resource_path()),
            ("file.write", Some("/etc"))
        );
        assert_eq!(got.route.body, BodyRule::Tar);
        assert_eq!(
            ok("HEAD", "/containers/web/archive?path=/a+b").resource_path(),
            Some("/a b")
        );
        assert_eq!(ok("GET", "/containers/web/archive").resource_path(), None);
        let files = ok("GET", "/api/v1/containers/web/files/read?path=/var/log/x");
        assert_eq!(
            (files.action.as_str(), files.route.service),
            ("file.read", Service::Files)
        );
        assert_eq!(
            files.resource,
            Resource {
                kind: ResourceKind::Container,
                name: Some("web".into())
            }
        );
        assert_eq!(files.resource_path(), Some("/var/log/x"));
        // Other actions have no resource path even with a `path` parameter.
        assert_eq!(
            ok("GET", "/containers/web/json?path=/x").resource_path(),
            None
        );
    }

    #[test]
    fn flags_and_body_rules() {
        let attach = ok("POST", "/containers/web/attach?stream=1");
        assert!(attach.route.hijack && !attach.route.tunnel && attach.takes_over_connection());
        let start = ok("POST", "/exec/abc/start");
        assert_eq!(
            (start.route.hijack, start.route.body, start.resource.kind),
            (true, BodyRule::Json, ResourceKind::Exec)
        );
        for (method, target) in [
            ("GET", "/containers/web/attach/ws"),
            ("POST", "/session"),
            ("POST", "/grpc"),
        ] {
            let got = ok(method, target);
            assert!(got.route.tunnel && !got.route.hijack, "{target}");
        }
        assert!(!ok("GET", "/containers/web/logs").takes_over_connection());
        assert_eq!(ok("POST", "/containers/create").route.body, BodyRule::Json);
        assert_eq!(ok("POST", "/images/create").route.body, BodyRule::Form);
        assert_eq!(ok("POST", "/build").route.body, BodyRule::Stream);
        assert_eq!(ok("POST", "/images/load").route.body, BodyRule::Stream);
        assert_eq!(ok("POST", "/plugins/create").route.body, BodyRule::Stream);
        assert_eq!(
            ok("POST", "/containers/web/start").route.body,
            BodyRule::Ignored
        );
        assert_eq!(ok("PATCH", "/api/v1/trust/7").route.body, BodyRule::Json);
        assert_eq!(
            ok("PUT", "/api/v1/containers/web/files/write").route.body,
            BodyRule::Json
        );
        let token = ok("DELETE", "/api/v1/callers/ci/tokens/t9");
        assert_eq!(
            (token.action.as_str(), token.resource.name.as_deref()),
            ("caller.write", Some("ci"))
        );
        assert_eq!(token.path_param("id").as_deref(), Some("t9"));
        assert_eq!(token.route.service, Service::Admin);
    }

    /// Not a timed test: prints the cost per classification so a slow matcher
    /// shows up when someone looks (`cargo test -- --nocapture`).
    #[test]
    fn classification_cost_printout() {
        let targets = [
            ("POST", "/v1.41/containers/web-1/start"),
            ("GET", "/images/library/ubuntu:22.04/json"),
            ("GET", "/containers/json?all=1&filters=%7B%7D"),
            ("DELETE", "/containers/a/checkpoints/b"),
            ("OPTIONS", "/anything/at/all"),
        ];
        let rounds = 2_000;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            for (m, t) in targets {
                assert!(c(m, t).is_ok());
            }
        }
        let per = start.elapsed() / (rounds * targets.len() as u32);
        println!("classify: {per:?} per request (debug build)");
    }
}
