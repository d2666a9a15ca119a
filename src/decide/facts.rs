//! Facts the Rust side computes before the policy runs.
//!
//! Why: Rego's `glob.match` costs microseconds a call and a decision may need
//! dozens (target patterns, file globs, image patterns, bind allowlists). Here
//! the compiled [`CompiledTrust`] answers those questions once, and the policy
//! reads plain booleans. Every fact is documented in `policies/README.md`:
//!
//! - `input.matches`: the caller's unexpired relationships that apply to this
//!   request, most specific first (exact, glob, label, wildcard), each the
//!   relationship's own fields plus `trust_id`, `target_match`,
//!   `path_readable`, `path_writable`, `reads_everything`, `image_allowed`
//!   and `host_paths_allowed`.
//! - `input.image`: the image the request names (create, pull, service).
//! - `input.host_paths`: host paths the body would mount (binds, bind mounts,
//!   volume driver `device` options), cleaned.
//! - `input.refs`: containers the body joins or borrows from
//!   (`container:X` namespaces, `VolumesFrom`) mapped to whether the caller
//!   may inspect them.
//! - `input.now_ns`: `input.now` as unix nanoseconds.
//!
//! The functions work on the JSON form of [`super::PolicyInput`] so that
//! `policy eval` can feed a hand-written input through exactly the same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::trust::compiled::clean_path;
use crate::trust::{CompiledRelationship, CompiledTrust};

/// Actions whose target is the container the request names; anything else
/// (images, networks, system, ...) is granted per caller, whatever the target.
fn is_container_targeted(action: &str) -> bool {
    !matches!(action, "container.list" | "container.prune")
        && (action.starts_with("container.")
            || action.starts_with("exec.")
            || action.starts_with("file.")
            || action.starts_with("checkpoint."))
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

/// The image a request is about, if any.
pub fn requested_image(input: &Value) -> Option<String> {
    let action = input.get("action")?.as_str()?;
    let body = input.get("body").unwrap_or(&Value::Null);
    match action {
        "container.create" => str_at(body, &["Image"]).map(str::to_string),
        "image.pull" => str_at(input, &["resource", "name"]).map(str::to_string),
        "service.create" | "service.update" => {
            str_at(body, &["TaskTemplate", "ContainerSpec", "Image"]).map(str::to_string)
        }
        _ => None,
    }
}

fn push_mounts(mounts: Option<&Value>, out: &mut Vec<String>) {
    for mount in mounts.and_then(Value::as_array).into_iter().flatten() {
        let kind = mount.get("Type").and_then(Value::as_str).unwrap_or("");
        if kind.eq_ignore_ascii_case("bind") {
            // A bind with no source is refused by the daemon; an empty or
            // relative source is still reported so the policy sees it.
            let source = mount.get("Source").and_then(Value::as_str).unwrap_or("");
            out.push(clean_path(source));
        }
        if let Some(device) = str_at(
            mount,
            &["VolumeOptions", "DriverConfig", "Options", "device"],
        ) {
            if device.starts_with('/') {
                out.push(clean_path(device));
            }
        }
    }
}

/// Host paths the request body would mount into a container.
pub fn host_paths(action: &str, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match action {
        "container.create" => {
            let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
            for bind in host_config
                .get("Binds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let source = bind.split(':').next().unwrap_or("");
                // Sources without a leading `/` are named volumes.
                if source.starts_with('/') {
                    out.push(clean_path(source));
                }
            }
            push_mounts(host_config.get("Mounts"), &mut out);
        }
        "service.create" | "service.update" => {
            push_mounts(
                body.get("TaskTemplate")
                    .and_then(|t| t.get("ContainerSpec"))
                    .and_then(|c| c.get("Mounts")),
                &mut out,
            );
        }
        "volume.create" => {
            if let Some(device) = str_at(body, &["DriverOpts", "device"]) {
                if device.starts_with('/') {
                    out.push(clean_path(device));
                }
            }
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Containers a create body joins (namespaces) or borrows volumes from.
pub fn referenced_containers(action: &str, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if action != "container.create" {
        return out;
    }
    let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
    for field in ["NetworkMode", "PidMode", "IpcMode"] {
        if let Some(mode) = host_config.get(field).and_then(Value::as_str) {
            if let Some(name) = mode.strip_prefix("container:") {
                out.push(name.trim_start_matches('/').to_string());
            }
        }
    }
    for from in host_config
        .get("VolumesFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let name = from.split(':').next().unwrap_or("");
        out.push(name.trim_start_matches('/').to_string());
    }
    out.sort();
    out.dedup();
    out
}

fn labels_of(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The target name and labels used to match relationships.
fn target_identity(input: &Value) -> (Option<String>, BTreeMap<String, String>) {
    let target = input.get("target").unwrap_or(&Value::Null);
    let name = str_at(target, &["name"])
        .or_else(|| str_at(input, &["resource", "name"]))
        .or_else(|| str_at(target, &["reference"]))
        .map(|n| n.trim_start_matches('/').to_string());
    let mut labels = labels_of(target.get("labels"));
    if input.get("action").and_then(Value::as_str) == Some("container.create") {
        // A container being created carries the labels of its body.
        for (k, v) in labels_of(input.get("body").and_then(|b| b.get("Labels"))) {
            labels.entry(k).or_insert(v);
        }
    }
    (name, labels)
}

fn specificity(kind: &str) -> u8 {
    match kind {
        "exact" => 0,
        "glob" => 1,
        "label" => 2,
        "wildcard" => 3,
        _ => 4,
    }
}

/// Whether a file action's path matches a glob set. The requested and the
/// resolved path must both match: a symlink must not carry a permitted path
/// somewhere else. An upload (`docker cp` into a container) writes exactly its
/// entries, so every entry (where it lands, and every link target) must match
/// instead; the destination directory itself is not written.
fn path_allowed(set: &globset::GlobSet, file: &Value) -> bool {
    let Some(path) = file.get("path").and_then(Value::as_str) else {
        return false;
    };
    let resolved = file
        .get("resolved_path")
        .and_then(Value::as_str)
        .unwrap_or(path);
    match file
        .get("entries")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        Some(entries) => entries
            .iter()
            .all(|e| e.as_str().is_some_and(|e| set.is_match(e))),
        None => set.is_match(path) && set.is_match(resolved),
    }
}

/// The facts about one applicable relationship.
pub struct MatchFact<'a> {
    pub relationship: &'a CompiledRelationship,
    pub target_match: &'static str,
    pub path_readable: bool,
    pub path_writable: bool,
    pub reads_everything: bool,
    pub image_allowed: bool,
    pub host_paths_allowed: Vec<(String, bool)>,
}

/// Everything computed for one decision.
pub struct Facts<'a> {
    pub matches: Vec<MatchFact<'a>>,
    pub image: Option<String>,
    pub host_paths: Vec<String>,
    pub refs: Vec<(String, bool)>,
    pub now_ns: i128,
}

fn match_fact<'a>(
    rel: &'a CompiledRelationship,
    target_match: &'static str,
    file: Option<&Value>,
    action: &str,
    image: Option<&str>,
    host_paths: &[String],
) -> MatchFact<'a> {
    let file = file.filter(|f| !f.is_null());
    // Only the side the action needs is matched: globs are the costly part.
    let reading = matches!(action, "file.read" | "file.list" | "file.stat");
    let writing = matches!(action, "file.write" | "file.delete");
    MatchFact {
        relationship: rel,
        target_match,
        path_readable: reading && file.is_some_and(|f| path_allowed(&rel.read_paths, f)),
        path_writable: writing && file.is_some_and(|f| path_allowed(&rel.write_paths, f)),
        reads_everything: rel
            .relationship
            .spec
            .file_read_paths
            .iter()
            .any(|p| p == "/**" || p == "**"),
        image_allowed: image.is_some_and(|i| rel.image_allowed(i)),
        host_paths_allowed: host_paths
            .iter()
            .map(|p| (p.clone(), rel.bind_allowed(p)))
            .collect(),
    }
}

/// Compute the facts for an input document (the JSON of a [`super::PolicyInput`]).
pub fn compute<'a>(input: &Value, trust: &'a CompiledTrust, now_ns: i128) -> Facts<'a> {
    let action = input.get("action").and_then(Value::as_str).unwrap_or("");
    let caller = str_at(input, &["caller", "name"]).unwrap_or("");
    let body = input.get("body").unwrap_or(&Value::Null);
    let image = requested_image(input);
    let host_paths = host_paths(action, body);
    let refs = referenced_containers(action, body);
    let file = input.get("file");
    let targeted = is_container_targeted(action);
    let (name, labels) = if targeted {
        target_identity(input)
    } else {
        (None, BTreeMap::new())
    };

    let relationships: Vec<&Arc<CompiledRelationship>> = trust
        .for_caller(caller)
        .iter()
        .filter(|r| !r.is_expired(now_ns))
        .collect();
    let mut matched: Vec<(&'static str, &Arc<CompiledRelationship>)> = relationships
        .iter()
        .filter_map(|r| {
            if targeted {
                r.target
                    .matches(name.as_deref(), &labels)
                    .map(|how| (how, *r))
            } else {
                Some(("caller", *r))
            }
        })
        .collect();
    matched.sort_by(|(a, x), (b, y)| {
        specificity(a)
            .cmp(&specificity(b))
            .then_with(|| x.id().cmp(y.id()))
    });
    let matches = matched
        .iter()
        .map(|(how, r)| match_fact(r, how, file, action, image.as_deref(), &host_paths))
        .collect();

    let no_labels = BTreeMap::new();
    let refs = refs
        .into_iter()
        .map(|name| {
            let inspectable = relationships.iter().any(|r| {
                r.relationship.spec.can_inspect
                    && r.target.matches(Some(&name), &no_labels).is_some()
            });
            (name, inspectable)
        })
        .collect();
    Facts {
        matches,
        image,
        host_paths,
        refs,
        now_ns,
    }
}

impl Facts<'_> {
    fn now_ns_i64(&self) -> i64 {
        i64::try_from(self.now_ns).unwrap_or(i64::MAX)
    }

    /// Add the facts to a JSON input document.
    pub fn add_to_json(&self, input: &mut Value) {
        let Value::Object(object) = input else { return };
        let matches = self
            .matches
            .iter()
            .map(|m| {
                let mut fact = match &m.relationship.json {
                    Value::Object(o) => o.clone(),
                    _ => Map::new(),
                };
                fact.insert("trust_id".into(), Value::from(m.relationship.id()));
                fact.insert("target_match".into(), Value::from(m.target_match));
                fact.insert("path_readable".into(), Value::from(m.path_readable));
                fact.insert("path_writable".into(), Value::from(m.path_writable));
                fact.insert("reads_everything".into(), Value::from(m.reads_everything));
                fact.insert("image_allowed".into(), Value::from(m.image_allowed));
                let allowed: Map<String, Value> = m
                    .host_paths_allowed
                    .iter()
                    .map(|(p, a)| (p.clone(), Value::from(*a)))
                    .collect();
                fact.insert("host_paths_allowed".into(), Value::Object(allowed));
                Value::Object(fact)
            })
            .collect();
        object.insert("matches".into(), Value::Array(matches));
        object.insert(
            "image".into(),
            self.image.clone().map(Value::from).unwrap_or(Value::Null),
        );
        object.insert("host_paths".into(), json!(self.host_paths));
        let refs: Map<String, Value> = self
            .refs
            .iter()
            .map(|(n, i)| (n.clone(), Value::from(*i)))
            .collect();
        object.insert("refs".into(), Value::Object(refs));
        object.insert("now_ns".into(), Value::from(self.now_ns_i64()));
    }

    /// Add the facts to a regorus input value, reusing each relationship's
    /// pre-converted value (converting JSON is the costly step).
    pub fn add_to_value(&self, input: &mut regorus::Value) -> anyhow::Result<()> {
        use regorus::Value as V;
        let mut matches = Vec::with_capacity(self.matches.len());
        for m in &self.matches {
            let mut fact = m.relationship.value.clone();
            let object = fact.as_object_mut()?;
            object.insert(V::from("trust_id"), V::from(m.relationship.id()));
            object.insert(V::from("target_match"), V::from(m.target_match));
            object.insert(V::from("path_readable"), V::from(m.path_readable));
            object.insert(V::from("path_writable"), V::from(m.path_writable));
            object.insert(V::from("reads_everything"), V::from(m.reads_everything));
            object.insert(V::from("image_allowed"), V::from(m.image_allowed));
            let allowed: BTreeMap<V, V> = m
                .host_paths_allowed
                .iter()
                .map(|(p, a)| (V::from(p.as_str()), V::from(*a)))
                .collect();
            object.insert(V::from("host_paths_allowed"), V::from(allowed));
            matches.push(fact);
        }
        let object = input.as_object_mut()?;
        object.insert(V::from("matches"), V::from(matches));
        object.insert(
            V::from("image"),
            self.image.as_deref().map(V::from).unwrap_or(V::Null),
        );
        let host_paths: Vec<V> = self
            .host_paths
            .iter()
            .map(|p| V::from(p.as_str()))
            .collect();
        object.insert(V::from("host_paths"), V::from(host_paths));
        let refs: BTreeMap<V, V> = self
            .refs
            .iter()
            .map(|(n, i)| (V::from(n.as_str()), V::from(*i)))
            .collect();
        object.insert(V::from("refs"), V::from(refs));
        object.insert(V::from("now_ns"), V::from(self.now_ns_i64()));
        Ok(())
    }
}

/// Add the precomputed facts to a JSON input document (`policy eval`, tests).
pub fn enrich(input: &mut Value, trust: &CompiledTrust, now_ns: i128) {
    let facts = compute(input, trust, now_ns);
    facts.add_to_json(input);
}

/// Convert JSON for regorus directly: regorus's own `From<serde_json::Value>`
/// goes through serde and costs tens of microseconds for a small document.
pub fn json_to_value(json: &Value) -> regorus::Value {
    use regorus::Value as V;
    match json {
        Value::Null => V::Null,
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::from(i)
            } else if let Some(u) = n.as_u64() {
                V::from(u)
            } else {
                V::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => V::from(s.as_str()),
        Value::Array(a) => V::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        Value::Object(o) => V::from(
            o.iter()
                .map(|(k, v)| (V::from(k.as_str()), json_to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// The input document for regorus, facts included.
pub fn to_policy_value(
    input: &Value,
    trust: &CompiledTrust,
    now_ns: i128,
) -> anyhow::Result<regorus::Value> {
    let facts = compute(input, trust, now_ns);
    if !input.is_object() {
        anyhow::bail!("the input document must be a JSON object");
    }
    let mut value = json_to_value(input);
    facts.add_to_value(&mut value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{TrustRelationship, TrustSpec};

    fn trust(specs: &[Value]) -> CompiledTrust {
        let rels = specs
            .iter()
            .enumerate()
            .map(|(i, s)| TrustRelationship {
                id: format!("r{i}"),
                spec: TrustSpec::from_json(s).unwrap(),
                created_at: "2024-01-01T00:00:00Z".into(),
                updated_at: "2024-01-01T00:00:00Z".into(),
            })
            .collect();
        CompiledTrust::build(1, rels).unwrap()
    }

    #[test]
    fn matches_are_filtered_by_target_and_expiry_and_ordered() {
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "*"}),
            json!({"caller_service": "ci", "target_container": "web-1", "file_read_paths": ["/app/*"]}),
            json!({"caller_service": "ci", "target_container": "db"}),
            json!({"caller_service": "ci", "target_container": "web-*", "expires_at": "2001-01-01T00:00:00Z"}),
            json!({"caller_service": "other", "target_container": "*"}),
        ]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "file.read",
            "target": {"name": "web-1", "labels": {}},
            "file": {"path": "/app/x", "resolved_path": "/app/x"}, "body": null});
        enrich(
            &mut input,
            &t,
            time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
        );
        let ids: Vec<&str> = input["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["trust_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["r1", "r0"]);
        assert_eq!(input["matches"][0]["path_readable"], true);
        assert_eq!(input["matches"][0]["target_match"], "exact");
        assert_eq!(input["matches"][1]["path_readable"], false);
    }

    #[test]
    fn symlinks_and_entries_must_match_too() {
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "w", "file_write_paths": ["/app/**"]}),
        ]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "file.write", "target": {"name": "w"},
            "file": {"path": "/app/link", "resolved_path": "/etc/shadow"}});
        enrich(&mut input, &t, 0);
        assert_eq!(input["matches"][0]["path_writable"], false);
        let mut input = json!({"caller": {"name": "ci"}, "action": "file.write", "target": {"name": "w"},
            "file": {"path": "/app", "resolved_path": "/app", "entries": ["/app/a", "/etc/cron.d/x"]}});
        enrich(&mut input, &t, 0);
        assert_eq!(input["matches"][0]["path_writable"], false);
    }

    #[test]
    fn body_facts() {
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
            "allowed_images": ["busybox:*"], "allow_bind_mounts": ["/srv/**"]}),
        ]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
            "resource": {"kind": "container", "name": "web-9"}, "target": {"labels": {}},
            "body": {"Image": "busybox", "HostConfig": {
                "Binds": ["/srv/data/../data:/d", "named:/n", "/var/run/docker.sock:/s"],
                "Mounts": [{"Type": "bind", "Source": "/etc"}],
                "NetworkMode": "container:db", "VolumesFrom": ["web-2:ro"]}}});
        enrich(&mut input, &t, 0);
        assert_eq!(input["image"], "busybox");
        assert_eq!(
            input["host_paths"],
            json!(["/etc", "/srv/data", "/var/run/docker.sock"])
        );
        let m = &input["matches"][0];
        assert_eq!(m["image_allowed"], true);
        assert_eq!(
            m["host_paths_allowed"],
            json!({"/etc": false, "/srv/data": true, "/var/run/docker.sock": false})
        );
        assert_eq!(input["refs"], json!({"db": false, "web-2": true}));
    }

    #[test]
    fn direct_conversion_matches_regorus() {
        let doc = json!({"a": [1, -2, 3.5, u64::MAX, null, true, "s"], "b": {"c": {}}, "big": 1735689600000000000i64});
        assert_eq!(json_to_value(&doc), regorus::Value::from(doc.clone()));
    }

    #[test]
    fn non_container_actions_match_every_relationship_of_the_caller() {
        let t = trust(&[json!({"caller_service": "ci", "target_container": "web"})]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "image.list", "target": {}});
        enrich(&mut input, &t, 0);
        assert_eq!(input["matches"][0]["target_match"], "caller");
    }
}
