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

/// Whether a path (and, for uploads, every entry) matches a glob set. The
/// requested and the resolved path must both match: a symlink must not carry a
/// permitted path somewhere else.
fn path_allowed(set: &globset::GlobSet, file: &Value) -> bool {
    let Some(path) = file.get("path").and_then(Value::as_str) else {
        return false;
    };
    let resolved = file
        .get("resolved_path")
        .and_then(Value::as_str)
        .unwrap_or(path);
    set.is_match(path)
        && set.is_match(resolved)
        && file
            .get("entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|e| e.as_str().is_some_and(|e| set.is_match(e)))
}

fn match_fact(
    rel: &CompiledRelationship,
    target_match: &str,
    file: Option<&Value>,
    image: Option<&str>,
    host_paths: &[String],
) -> Value {
    let mut fact = match &rel.json {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    fact.insert("trust_id".into(), Value::from(rel.id()));
    fact.insert("target_match".into(), Value::from(target_match));
    let (readable, writable) = match file {
        Some(f) if !f.is_null() => (
            path_allowed(&rel.read_paths, f),
            path_allowed(&rel.write_paths, f),
        ),
        _ => (false, false),
    };
    fact.insert("path_readable".into(), Value::from(readable));
    fact.insert("path_writable".into(), Value::from(writable));
    fact.insert(
        "reads_everything".into(),
        Value::from(
            rel.relationship
                .spec
                .file_read_paths
                .iter()
                .any(|p| p == "/**" || p == "**"),
        ),
    );
    fact.insert(
        "image_allowed".into(),
        Value::from(image.is_some_and(|i| rel.image_allowed(i))),
    );
    let allowed: Map<String, Value> = host_paths
        .iter()
        .map(|p| (p.clone(), Value::from(rel.bind_allowed(p))))
        .collect();
    fact.insert("host_paths_allowed".into(), Value::Object(allowed));
    Value::Object(fact)
}

/// Add the precomputed facts to an input document (the JSON of a
/// [`super::PolicyInput`]). `now_ns` is the decision time.
pub fn enrich(input: &mut Value, trust: &CompiledTrust, now_ns: i128) {
    let action = input
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let caller = str_at(input, &["caller", "name"]).unwrap_or("").to_string();
    let body = input.get("body").cloned().unwrap_or(Value::Null);
    let image = requested_image(input);
    let host_paths = host_paths(&action, &body);
    let refs = referenced_containers(&action, &body);
    let file = input.get("file").cloned();
    let (name, labels) = target_identity(input);

    let relationships: Vec<&Arc<CompiledRelationship>> = trust
        .for_caller(&caller)
        .iter()
        .filter(|r| !r.is_expired(now_ns))
        .collect();
    let targeted = is_container_targeted(&action);
    let mut matched: Vec<(&str, &Arc<CompiledRelationship>)> = relationships
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
    matched.sort_by_key(|(how, r)| (specificity(how), r.id().to_string()));
    let matches: Vec<Value> = matched
        .iter()
        .map(|(how, r)| match_fact(r, how, file.as_ref(), image.as_deref(), &host_paths))
        .collect();

    let no_labels = BTreeMap::new();
    let refs: Map<String, Value> = refs
        .into_iter()
        .map(|name| {
            let inspectable = relationships.iter().any(|r| {
                r.relationship.spec.can_inspect
                    && r.target.matches(Some(&name), &no_labels).is_some()
            });
            (name, Value::from(inspectable))
        })
        .collect();

    if let Value::Object(object) = input {
        object.insert("matches".into(), Value::Array(matches));
        object.insert(
            "image".into(),
            image.map(Value::from).unwrap_or(Value::Null),
        );
        object.insert("host_paths".into(), json!(host_paths));
        object.insert("refs".into(), Value::Object(refs));
        // Nanoseconds fit an f64 only approximately; a string-free integer is
        // what `time.parse_rfc3339_ns` compares against.
        object.insert(
            "now_ns".into(),
            Value::from(i64::try_from(now_ns).unwrap_or(i64::MAX)),
        );
    }
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
    fn non_container_actions_match_every_relationship_of_the_caller() {
        let t = trust(&[json!({"caller_service": "ci", "target_container": "web"})]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "image.list", "target": {}});
        enrich(&mut input, &t, 0);
        assert_eq!(input["matches"][0]["target_match"], "caller");
    }
}
