//! Trust data compiled for decisions: globs built once per trust revision.
//!
//! Why here and not in Rego: `glob.match` costs several microseconds a call, and
//! a decision may test dozens of patterns. The engine asks these matchers which
//! relationships apply and which patterns match, and hands the answers to the
//! policy as facts (see `policies/README.md`).

use std::collections::HashMap;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{TrustError, TrustRelationship};
use crate::decide::facts::MatchTemplate;

/// What a relationship's `target_container` names.
#[derive(Debug, Clone)]
pub enum TargetPattern {
    /// `*`: every container.
    Any,
    /// An exact container name.
    Exact(String),
    /// A glob over container names, e.g. `web-*` (a one-glob set: the set
    /// picks literal/prefix/suffix strategies before falling back to a regex).
    /// A `broad` glob ([`is_broad`]) matches as written but is reported as a
    /// wildcard, so `strict` restricts it as it restricts `*`.
    Glob { set: GlobSet, broad: bool },
    /// `label:key=value`: containers carrying that label.
    Label { key: String, value: String },
}

impl TargetPattern {
    pub fn parse(target: &str) -> Result<TargetPattern, TrustError> {
        let invalid = |message: &str| TrustError::InvalidValue {
            field: "target_container".into(),
            message: format!("{target:?}: {message}"),
        };
        let target = target.trim();
        if target.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if let Some(selector) = target.strip_prefix("label:") {
            let (key, value) = selector
                .split_once('=')
                .ok_or_else(|| invalid("a label selector is label:key=value"))?;
            if key.is_empty() {
                return Err(invalid("a label selector needs a key"));
            }
            return Ok(TargetPattern::Label {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if target == "*" {
            return Ok(TargetPattern::Any);
        }
        let name = target.trim_start_matches('/');
        if name.contains(['*', '?', '[', '{']) {
            let set = name_globs("target_container", &[name.to_string()])?;
            return Ok(TargetPattern::Glob {
                set,
                broad: is_broad(name),
            });
        }
        Ok(TargetPattern::Exact(name.to_string()))
    }

    /// How a match of this pattern is reported to the policy
    /// (`target_match`): `exact`, `glob`, `label` or `wildcard`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetPattern::Any => "wildcard",
            TargetPattern::Exact(_) => "exact",
            TargetPattern::Glob { broad: true, .. } => "wildcard",
            TargetPattern::Glob { broad: false, .. } => "glob",
            TargetPattern::Label { .. } => "label",
        }
    }

    /// How this pattern matched ([`TargetPattern::kind`]), or `None`. Names
    /// compare without a leading `/`.
    pub fn matches(
        &self,
        name: Option<&str>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<&'static str> {
        let name = name.map(|n| n.trim_start_matches('/'));
        let matched = match self {
            TargetPattern::Any => true,
            TargetPattern::Exact(exact) => name == Some(exact.as_str()),
            TargetPattern::Glob { set, .. } => name.is_some_and(|n| set.is_match(n)),
            TargetPattern::Label { key, value } => labels.get(key) == Some(value),
        };
        matched.then(|| self.kind())
    }
}

/// Whether a name glob is a wildcard in all but spelling: some alternative of
/// it has a `*` and spells out no letter or digit of the names it matches.
///
/// Why by the pattern's text and not by trying names: `??*`, `[!.]*`, `*?` or
/// `*-*` match nearly every name (all compose containers, say), and no list of
/// probe names covers every such spelling. A pattern names containers only
/// through letters or digits it spells out (`web-*`, `*-db`, `*x*`, `[w]eb*`);
/// without a `*` it matches names of a bounded length only (`?`, `db-??`).
pub fn is_broad(pattern: &str) -> bool {
    alternatives(pattern)
        .iter()
        .any(|alt| alt.star && !alt.spelled)
}

/// What one alternative of a glob contains.
#[derive(Clone, Copy, Default)]
struct Alternative {
    /// A `*` (or `**`): it matches names of any length.
    star: bool,
    /// A letter or digit outside `*`, `?` and multi-character classes.
    spelled: bool,
}

/// Every alternative of a glob, `{a,b}` groups expanded (globset does not nest
/// them; a nested `{` is read as one more group, which only adds alternatives).
fn alternatives(pattern: &str) -> Vec<Alternative> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut done = vec![Alternative::default()];
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => done.iter_mut().for_each(|a| a.star = true),
            '?' => {}
            '\\' => {
                i += 1;
                if chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    done.iter_mut().for_each(|a| a.spelled = true);
                }
            }
            '[' => {
                let (members, end) = class(&chars, i);
                if let Some(only) = members {
                    if only.is_ascii_alphanumeric() {
                        done.iter_mut().for_each(|a| a.spelled = true);
                    }
                }
                i = end;
            }
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |p| i + p);
                let inner: String = chars[i + 1..end].iter().collect();
                let branches: Vec<Alternative> = inner.split(',').flat_map(alternatives).collect();
                done = done
                    .iter()
                    .flat_map(|a| {
                        branches.iter().map(move |b| Alternative {
                            star: a.star || b.star,
                            spelled: a.spelled || b.spelled,
                        })
                    })
                    .collect();
                i = end;
            }
            c if c.is_ascii_alphanumeric() => done.iter_mut().for_each(|a| a.spelled = true),
            _ => {}
        }
        i += 1;
    }
    done
}

/// A `[...]` class starting at `start`: its one member when it has exactly
/// one (`[w]`), and the index of its closing `]`.
fn class(chars: &[char], start: usize) -> (Option<char>, usize) {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let first = i;
    // A `]` right after `[` or `[!` is a member, as in globset.
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() && chars[i] != ']' {
        i += 1;
    }
    let members = &chars[first..i.min(chars.len())];
    let single = (!negated && members.len() == 1).then(|| members[0]);
    (single, i)
}

fn build_set(
    field: &str,
    patterns: &[String],
    literal_separator: bool,
) -> Result<GlobSet, TrustError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(literal_separator)
            .build()
            .map_err(|e| TrustError::InvalidGlob {
                field: field.to_string(),
                pattern: pattern.clone(),
                message: e.kind().to_string(),
            })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| TrustError::InvalidGlob {
        field: field.to_string(),
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// Path globs: `*` stays within one path component, `**` crosses them.
pub fn path_globs(field: &str, patterns: &[String]) -> Result<GlobSet, TrustError> {
    build_set(field, patterns, true)
}

/// Name globs (images): `*` matches anything, `/` and `:` included.
pub fn name_globs(field: &str, patterns: &[String]) -> Result<GlobSet, TrustError> {
    build_set(field, patterns, false)
}

/// One relationship, ready to match.
#[derive(Debug, Clone)]
pub struct CompiledRelationship {
    pub relationship: TrustRelationship,
    pub target: TargetPattern,
    pub read_paths: GlobSet,
    pub write_paths: GlobSet,
    pub images: GlobSet,
    pub bind_mounts: GlobSet,
    /// `volumes`: existing volumes a create may mount.
    pub volumes: GlobSet,
    /// `expires_at` as unix nanoseconds.
    pub expires_at_ns: Option<i128>,
    /// The relationship as the policy sees it (a JSON object), built once.
    pub json: serde_json::Value,
    /// Its element of `input.matches`, built once per trust revision.
    pub match_template: MatchTemplate,
}

impl CompiledRelationship {
    pub fn compile(relationship: TrustRelationship) -> Result<Self, TrustError> {
        let spec = &relationship.spec;
        let expires_at_ns = match &spec.expires_at {
            Some(s) => Some(super::parse_rfc3339("expires_at", s)?.unix_timestamp_nanos()),
            None => None,
        };
        let mut json = serde_json::to_value(&relationship)
            .map_err(|e| TrustError::Corrupt(format!("relationship {}: {e}", relationship.id)))?;
        // The policy compares a list, whatever form the operator wrote.
        json["allow_host_namespaces"] = serde_json::json!(spec.allow_host_namespaces.allowed());
        let target = TargetPattern::parse(&spec.target_container)?;
        let reads_everything = reads_everything(spec);
        let match_template =
            MatchTemplate::new(&json, &relationship.id, target.kind(), reads_everything);
        Ok(CompiledRelationship {
            target,
            read_paths: path_globs("file_read_paths", &spec.file_read_paths)?,
            write_paths: path_globs("file_write_paths", &spec.file_write_paths)?,
            images: name_globs("allowed_images", &spec.allowed_images)?,
            bind_mounts: path_globs("allow_bind_mounts", &spec.allow_bind_mounts)?,
            volumes: name_globs("volumes", &spec.volumes)?,
            expires_at_ns,
            match_template,
            json,
            relationship,
        })
    }

    pub fn id(&self) -> &str {
        &self.relationship.id
    }

    /// Whether `file_read_paths` covers everything (`/**`).
    pub fn reads_everything(&self) -> bool {
        reads_everything(&self.relationship.spec)
    }

    pub fn is_expired(&self, now_ns: i128) -> bool {
        self.expires_at_ns.is_some_and(|t| t <= now_ns)
    }

    /// Whether an image reference is in `allowed_images`. A reference without
    /// a tag or digest is also tried with `:latest`, the tag the daemon uses.
    pub fn image_allowed(&self, image: &str) -> bool {
        if image.is_empty() {
            return false;
        }
        if self.images.is_match(image) {
            return true;
        }
        let last = image.rsplit('/').next().unwrap_or(image);
        !last.contains(':')
            && !image.contains('@')
            && self.images.is_match(format!("{image}:latest"))
    }

    /// Whether a host path may be bind-mounted. Paths that expose the Docker
    /// socket (the socket itself or a directory holding it) must be listed
    /// literally: a glob like `/**` does not grant the daemon.
    pub fn bind_allowed(&self, host_path: &str) -> bool {
        if exposes_docker_socket(host_path) {
            return self
                .relationship
                .spec
                .allow_bind_mounts
                .iter()
                .any(|p| clean_path(p) == host_path);
        }
        self.bind_mounts.is_match(host_path)
    }
}

fn reads_everything(spec: &super::TrustSpec) -> bool {
    spec.file_read_paths.iter().any(|p| p == "/**" || p == "**")
}

/// Host paths through which a container reaches the daemon's socket: the
/// socket, its parent directories, and anything under `/proc` (where
/// `<pid>/root` is a way into every host path, the socket included).
pub fn exposes_docker_socket(host_path: &str) -> bool {
    const SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];
    if host_path.ends_with(".sock") && host_path.contains("docker") {
        return true;
    }
    if host_path == "/proc" || host_path.starts_with("/proc/") {
        return true;
    }
    SOCKETS.iter().any(|socket| {
        *socket == host_path
            || host_path == "/"
            || socket.starts_with(&format!("{}/", host_path.trim_end_matches('/')))
    })
}

/// Lexical cleanup of an absolute path: Go's `path.Clean` of the path taken
/// under the root (no `.`/`..`/empty components, no trailing slash).
pub fn clean_path(path: &str) -> String {
    crate::classify::path::rooted_clean(path)
}

/// The whole trust table compiled, indexed by caller so a decision never scans
/// other callers' relationships.
#[derive(Debug, Clone)]
pub struct CompiledTrust {
    pub revision: u64,
    pub by_caller: HashMap<String, Vec<Arc<CompiledRelationship>>>,
    /// `data.trust` for the policy: `{revision, by_caller: {caller: [rel...]}}`.
    pub data: serde_json::Value,
    /// Every relationship's expiry (unix ns), sorted: when decisions may change
    /// with nothing else changing (the decision memo lives no longer).
    pub expiries: Vec<i128>,
}

impl Default for CompiledTrust {
    /// No relationships (every non-admin request is refused).
    fn default() -> Self {
        CompiledTrust {
            revision: 0,
            by_caller: HashMap::new(),
            data: serde_json::json!({"trust": {"revision": 0, "by_caller": {}}}),
            expiries: Vec::new(),
        }
    }
}

impl CompiledTrust {
    pub fn build(revision: u64, relationships: Vec<TrustRelationship>) -> Result<Self, TrustError> {
        let mut by_caller: HashMap<String, Vec<Arc<CompiledRelationship>>> = HashMap::new();
        for relationship in relationships {
            let compiled = CompiledRelationship::compile(relationship)?;
            by_caller
                .entry(compiled.relationship.spec.caller_service.clone())
                .or_default()
                .push(Arc::new(compiled));
        }
        let mut index = serde_json::Map::new();
        for (caller, rels) in &by_caller {
            index.insert(
                caller.clone(),
                serde_json::Value::Array(rels.iter().map(|r| r.json.clone()).collect()),
            );
        }
        let data = serde_json::json!({"trust": {"revision": revision, "by_caller": index}});
        let mut expiries: Vec<i128> = by_caller
            .values()
            .flatten()
            .filter_map(|r| r.expires_at_ns)
            .collect();
        expiries.sort_unstable();
        Ok(CompiledTrust {
            revision,
            by_caller,
            data,
            expiries,
        })
    }

    /// The span of time around `now_ns` in which no relationship expires:
    /// from the last expiry at or before it (`None`: since ever) to the first
    /// one after it (`None`: for ever). Within it the set of live
    /// relationships stays as it is at `now_ns`.
    pub fn expiry_span(&self, now_ns: i128) -> (Option<i128>, Option<i128>) {
        let i = self.expiries.partition_point(|t| *t <= now_ns);
        let from = i.checked_sub(1).map(|j| self.expiries[j]);
        (from, self.expiries.get(i).copied())
    }

    pub fn for_caller(&self, caller: &str) -> &[Arc<CompiledRelationship>] {
        self.by_caller.get(caller).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::TrustSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn rel(extra: serde_json::Value) -> CompiledRelationship {
        let mut body = json!({"caller_service": "ci", "target_container": "web-*"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let spec = TrustSpec::from_json(&body).unwrap();
        CompiledRelationship::compile(TrustRelationship {
            id: "r1".into(),
            spec,
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-01T00:00:00Z".into(),
        })
        .unwrap()
    }

    #[test]
    fn target_patterns() {
        let labels: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
        let none = BTreeMap::new();
        let glob = TargetPattern::parse("web-*").unwrap();
        assert_eq!(glob.matches(Some("/web-1"), &none), Some("glob"));
        assert_eq!(glob.matches(Some("db-1"), &none), None);
        assert_eq!(glob.matches(None, &none), None);
        let label = TargetPattern::parse("label:tier=web").unwrap();
        assert_eq!(label.matches(Some("x"), &labels), Some("label"));
        assert_eq!(label.matches(Some("x"), &none), None);
        assert_eq!(
            TargetPattern::parse("*").unwrap().matches(None, &none),
            Some("wildcard")
        );
        for every in [
            "/*",
            "**",
            "?*",
            "[a-zA-Z0-9]*",
            "{*,x}",
            "/**",
            "??*",
            "[!.]*",
            "*?",
            "*-*",
            "[0-9a-f]*",
            "{web,*}-*",
        ] {
            assert_eq!(
                TargetPattern::parse(every).unwrap().kind(),
                "wildcard",
                "{every}"
            );
        }
        for some in [
            "web-*",
            "*-web",
            "?",
            "*x*",
            "[w]eb-*",
            "{web,db}-*",
            "db-??",
            "\\x*",
            "[!w]eb*",
        ] {
            assert_eq!(TargetPattern::parse(some).unwrap().kind(), "glob", "{some}");
        }
        assert_eq!(
            TargetPattern::parse("db")
                .unwrap()
                .matches(Some("db"), &none),
            Some("exact")
        );
    }

    #[test]
    fn path_globs_stay_in_one_component() {
        let r = rel(json!({"file_read_paths": ["/app/config/*", "/data/**"]}));
        assert!(r.read_paths.is_match("/app/config/a.yml"));
        assert!(!r.read_paths.is_match("/app/config/sub/a.yml"));
        assert!(r.read_paths.is_match("/data/x/y/z"));
        assert!(!r.read_paths.is_match("/etc/passwd"));
    }

    #[test]
    fn images_with_implicit_latest() {
        let r = rel(json!({"allowed_images": ["armory-agent:v2.*", "busybox:latest"]}));
        assert!(r.image_allowed("armory-agent:v2.3"));
        assert!(!r.image_allowed("armory-agent:v3.0"));
        assert!(r.image_allowed("busybox"));
        assert!(!r.image_allowed("alpine"));
        assert!(!r.image_allowed(""));
    }

    #[test]
    fn docker_socket_needs_a_literal_entry() {
        let broad = rel(json!({"allow_bind_mounts": ["/**"]}));
        assert!(broad.bind_allowed("/srv/data"));
        assert!(!broad.bind_allowed("/var/run/docker.sock"));
        assert!(!broad.bind_allowed("/var/run"));
        assert!(!broad.bind_allowed("/"));
        // /proc/<pid>/root reaches every host path, the socket included.
        assert!(!broad.bind_allowed("/proc/1/root/run"));
        assert!(!broad.bind_allowed("/proc"));
        assert!(broad.bind_allowed("/procfs-backup"));
        let literal = rel(json!({"allow_bind_mounts": ["/var/run/docker.sock"]}));
        assert!(literal.bind_allowed("/var/run/docker.sock"));
        assert!(!literal.bind_allowed("/run/docker.sock"));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(clean_path("//var//run/"), "/var/run");
    }

    #[test]
    fn expiry() {
        let r = rel(json!({"expires_at": "2020-01-01T00:00:00Z"}));
        assert!(r.is_expired(time::OffsetDateTime::now_utc().unix_timestamp_nanos()));
        let r = rel(json!({}));
        assert!(!r.is_expired(i128::MAX));
    }
}
