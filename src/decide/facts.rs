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
//!   (`container:X` namespaces, `VolumesFrom`, `Links`) mapped to whether the caller
//!   may inspect them.
//! - `input.now_ns`: `input.now` as unix nanoseconds.
//!
//! The facts are computed from a [`Subject`]: the few fields of the input they
//! read, borrowed either from a typed [`super::PolicyInput`] (serving) or from
//! its JSON form (`policy eval`, a hand-written input), so both go through
//! exactly the same code.
//!
//! Why the match elements are pre-built: an element of `input.matches` is the
//! whole relationship (thirty-odd fields) plus its facts. Each relationship
//! keeps that object ready ([`MatchTemplate`]) for every combination of its
//! boolean per-request facts, built the first time a request needs it; a
//! request shares it as is. Only `host_paths_allowed` (a create's binds) costs
//! a copy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use super::{FileContext, PolicyInput};
use crate::trust::compiled::clean_path;
use crate::trust::{CompiledRelationship, CompiledTrust};
use crate::volumes::{self, MountedVolume};

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

/// The file a file action touches, as the facts read it.
pub struct FileView<'a> {
    path: Option<&'a str>,
    resolved_path: Option<&'a str>,
    /// Upload entries; `None` for an entry that is not a string (never matches).
    entries: Vec<Option<&'a str>>,
}

/// A container the body names, as the resolve stage found it
/// (`target.referenced`): `name` is `None` when it does not exist.
pub struct ReferencedView<'a> {
    reference: &'a str,
    name: Option<&'a str>,
    labels: Cow<'a, BTreeMap<String, String>>,
}

/// The fields of the input the facts depend on.
pub struct Subject<'a> {
    action: &'a str,
    caller: &'a str,
    resource_name: Option<&'a str>,
    target_name: Option<&'a str>,
    target_reference: Option<&'a str>,
    target_labels: Cow<'a, BTreeMap<String, String>>,
    body: &'a Value,
    file: Option<FileView<'a>>,
    referenced: Vec<ReferencedView<'a>>,
    /// The volumes a create mounts (`target.volumes`).
    volumes: Cow<'a, [MountedVolume]>,
}

static NULL: Value = Value::Null;

impl<'a> Subject<'a> {
    /// From a typed input (serving).
    pub fn from_input(input: &'a PolicyInput) -> Self {
        Subject {
            action: &input.action,
            caller: &input.caller.name,
            resource_name: input.resource.name.as_deref(),
            target_name: input.target.name.as_deref(),
            target_reference: input.target.reference.as_deref(),
            target_labels: Cow::Borrowed(&input.target.labels),
            body: &input.body,
            file: input.file.as_ref().map(|f: &FileContext| FileView {
                path: Some(&f.path),
                resolved_path: Some(&f.resolved_path),
                entries: f.entries.iter().map(|e| Some(e.as_str())).collect(),
            }),
            referenced: input
                .target
                .referenced
                .iter()
                .filter_map(|t| {
                    Some(ReferencedView {
                        reference: t.reference.as_deref()?,
                        name: t.name.as_deref().filter(|_| t.exists),
                        labels: Cow::Borrowed(&t.labels),
                    })
                })
                .collect(),
            volumes: Cow::Borrowed(&input.target.volumes),
        }
    }

    /// From the JSON form of an input (`policy eval`, tests); missing or
    /// mistyped fields read as absent.
    pub fn from_json(input: &'a Value) -> Self {
        let target = input.get("target").unwrap_or(&NULL);
        let file = input
            .get("file")
            .filter(|f| !f.is_null())
            .map(|f| FileView {
                path: f.get("path").and_then(Value::as_str),
                resolved_path: f.get("resolved_path").and_then(Value::as_str),
                entries: f
                    .get("entries")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(Value::as_str)
                    .collect(),
            });
        Subject {
            action: input.get("action").and_then(Value::as_str).unwrap_or(""),
            caller: str_at(input, &["caller", "name"]).unwrap_or(""),
            resource_name: str_at(input, &["resource", "name"]),
            target_name: str_at(target, &["name"]),
            target_reference: str_at(target, &["reference"]),
            target_labels: Cow::Owned(labels_of(target.get("labels"))),
            body: input.get("body").unwrap_or(&NULL),
            file,
            referenced: target
                .get("referenced")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(ReferencedView {
                        reference: str_at(t, &["reference"])?,
                        name: str_at(t, &["name"])
                            .filter(|_| t.get("exists") == Some(&Value::Bool(true))),
                        labels: Cow::Owned(labels_of(t.get("labels"))),
                    })
                })
                .collect(),
            volumes: Cow::Owned(
                target
                    .get("volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| serde_json::from_value(v.clone()).ok())
                    .collect(),
            ),
        }
    }
}

/// The image a request is about, if any.
pub fn requested_image(subject: &Subject) -> Option<String> {
    let body = subject.body;
    match subject.action {
        "container.create" => str_at(body, &["Image"]).map(str::to_string),
        "image.pull" => subject.resource_name.map(str::to_string),
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
        out.extend(volumes::json_option_host_paths(
            mount
                .get("VolumeOptions")
                .and_then(|o| o.get("DriverConfig"))
                .and_then(|c| c.get("Options")),
        ));
    }
}

/// The sources of a create's `HostConfig.Binds` (`SOURCE:DEST[:MODE]`): a
/// host path when it starts with `/`, else a volume name (empty: anonymous).
pub fn bind_sources(host_config: &Value) -> impl Iterator<Item = &str> {
    host_config
        .get("Binds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|bind| bind.split(':').next().unwrap_or(""))
}

/// A service spec's container mounts (`TaskTemplate.ContainerSpec.Mounts`).
pub fn service_mounts(body: &Value) -> Option<&Value> {
    body.get("TaskTemplate")
        .and_then(|t| t.get("ContainerSpec"))
        .and_then(|c| c.get("Mounts"))
}

/// Host paths the request body would mount into a container.
pub fn host_paths(action: &str, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match action {
        "container.create" => {
            let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
            // Sources without a leading `/` are named volumes.
            out.extend(
                bind_sources(host_config)
                    .filter(|s| s.starts_with('/'))
                    .map(clean_path),
            );
            push_mounts(host_config.get("Mounts"), &mut out);
        }
        "service.create" | "service.update" => push_mounts(service_mounts(body), &mut out),
        "volume.create" => {
            out.extend(volumes::json_option_host_paths(body.get("DriverOpts")));
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Containers a create body joins (namespaces), borrows volumes from, or links to.
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
    // A link (`name:alias`) hands the new container the linked one's
    // environment (its secrets) and a network alias: it borrows as much.
    for link in host_config
        .get("Links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        out.push(link_container(link).to_string());
    }
    out.sort();
    out.dedup();
    out
}

/// The container a `Links` entry names: the part before `:alias` (the
/// daemon's `opts.ParseLink`), without its leading `/`.
fn link_container(link: &str) -> &str {
    let name = link.split_once(':').map_or(link, |(name, _alias)| name);
    name.trim_start_matches('/')
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
fn target_identity<'s>(
    subject: &'s Subject,
) -> (Option<&'s str>, Cow<'s, BTreeMap<String, String>>) {
    let name = subject
        .target_name
        .or(subject.resource_name)
        .or(subject.target_reference)
        .map(|n| n.trim_start_matches('/'));
    let mut labels = Cow::Borrowed(subject.target_labels.as_ref());
    if subject.action == "container.create" {
        // A container being created carries the labels of its body.
        let body_labels = labels_of(subject.body.get("Labels"));
        if !body_labels.is_empty() {
            let labels = labels.to_mut();
            for (k, v) in body_labels {
                labels.entry(k).or_insert(v);
            }
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
fn path_allowed(set: &globset::GlobSet, file: &FileView) -> bool {
    let Some(path) = file.path else {
        return false;
    };
    let resolved = file.resolved_path.unwrap_or(path);
    if file.entries.is_empty() {
        set.is_match(path) && set.is_match(resolved)
    } else {
        file.entries
            .iter()
            .all(|e| e.is_some_and(|e| set.is_match(e)))
    }
}

/// The facts about one applicable relationship.
pub struct MatchFact<'a> {
    pub relationship: &'a CompiledRelationship,
    pub target_match: &'static str,
    pub path_readable: bool,
    pub path_writable: bool,
    pub image_allowed: bool,
    pub host_paths_allowed: Vec<(String, bool)>,
}

/// Everything computed for one decision.
pub struct Facts<'a> {
    pub matches: Vec<MatchFact<'a>>,
    pub image: Option<String>,
    pub host_paths: Vec<String>,
    pub refs: Vec<(String, bool)>,
    /// Volume plugins (and `local:<type>` network file systems) the request uses.
    pub volume_drivers: Vec<String>,
    /// Existing volumes mounted by name, and whether the caller may mount them.
    pub volumes: Vec<(String, bool)>,
    pub now_ns: i128,
}

fn match_fact<'a>(
    rel: &'a CompiledRelationship,
    target_match: &'static str,
    file: Option<&FileView>,
    action: &str,
    image: Option<&str>,
    host_paths: &[String],
) -> MatchFact<'a> {
    // Only the side the action needs is matched: globs are the costly part.
    let reading = matches!(action, "file.read" | "file.list" | "file.stat");
    // A stat is granted by either side (actions.rego).
    let writing = matches!(action, "file.write" | "file.delete" | "file.stat");
    MatchFact {
        relationship: rel,
        target_match,
        path_readable: reading && file.is_some_and(|f| path_allowed(&rel.read_paths, f)),
        path_writable: writing && file.is_some_and(|f| path_allowed(&rel.write_paths, f)),
        image_allowed: image.is_some_and(|i| rel.image_allowed(i)),
        host_paths_allowed: host_paths
            .iter()
            .map(|p| (p.clone(), rel.bind_allowed(p)))
            .collect(),
    }
}

/// Compute the facts for a request.
pub fn compute<'a>(subject: &Subject, trust: &'a CompiledTrust, now_ns: i128) -> Facts<'a> {
    let action = subject.action;
    let caller = subject.caller;
    let body = subject.body;
    let image = requested_image(subject);
    let mut host_paths = host_paths(action, body);
    // A volume mounted by name is a bind of the host paths its options name.
    if !subject.volumes.is_empty() {
        host_paths.extend(subject.volumes.iter().flat_map(MountedVolume::host_paths));
        host_paths.sort();
        host_paths.dedup();
    }
    let volume_drivers = volumes::needed_drivers(action, body, &subject.volumes);
    let refs = referenced_containers(action, body);
    let file = subject.file.as_ref();
    let targeted = is_container_targeted(action);
    let no_labels = BTreeMap::new();
    let (name, labels) = if targeted {
        target_identity(subject)
    } else {
        (None, Cow::Borrowed(&no_labels))
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
                r.target.matches(name, &labels).map(|how| (how, *r))
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

    // A reference is judged by the container the daemon resolves it to (an
    // id prefix can pick a container whose name no pattern would match), and
    // one the resolve stage did not find is not inspectable.
    let refs = refs
        .into_iter()
        .map(|reference| {
            let resolved = subject
                .referenced
                .iter()
                .find(|r| r.reference == reference)
                .and_then(|r| Some((r.name?, &r.labels)));
            let inspectable = resolved.is_some_and(|(name, labels)| {
                relationships.iter().any(|r| {
                    r.relationship.spec.can_inspect
                        && r.target.matches(Some(name), labels).is_some()
                })
            });
            (reference, inspectable)
        })
        .collect();
    let volumes = subject
        .volumes
        .iter()
        .filter_map(|v| {
            let granted = |name: &str| relationships.iter().any(|r| r.volumes.is_match(name));
            Some((v.name.clone(), volumes::mountable(v, caller, granted)?))
        })
        .collect();
    Facts {
        matches,
        image,
        host_paths,
        refs,
        volume_drivers,
        volumes,
        now_ns,
    }
}

impl Facts<'_> {
    fn now_ns_i64(&self) -> i64 {
        i64::try_from(self.now_ns).unwrap_or(i64::MAX)
    }

    /// Add the facts to a JSON input document: a second, plain builder that
    /// the tests read and compare [`Facts::add_to_value`] against.
    #[cfg(test)]
    fn add_to_json(&self, input: &mut Value) {
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
                fact.insert(
                    "reads_everything".into(),
                    Value::from(m.relationship.reads_everything()),
                );
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
        object.insert("host_paths".into(), serde_json::json!(self.host_paths));
        let refs: Map<String, Value> = self
            .refs
            .iter()
            .map(|(n, i)| (n.clone(), Value::from(*i)))
            .collect();
        object.insert("refs".into(), Value::Object(refs));
        object.insert(
            "volume_drivers".into(),
            serde_json::json!(self.volume_drivers),
        );
        let volumes: Map<String, Value> = self
            .volumes
            .iter()
            .map(|(n, m)| (n.clone(), Value::from(*m)))
            .collect();
        object.insert("volumes".into(), Value::Object(volumes));
        object.insert("now_ns".into(), Value::from(self.now_ns_i64()));
    }

    /// Add the facts to a regorus input value (an object), sharing each
    /// relationship's pre-built element of `matches` (see [`MatchTemplate`]).
    pub fn add_to_value(&self, input: &mut regorus::Value) -> anyhow::Result<()> {
        use regorus::Value as V;
        let keys = keys();
        let mut matches = Vec::with_capacity(self.matches.len());
        for m in &self.matches {
            let mut fact = m.relationship.match_template.get(
                m.target_match == "caller",
                [m.path_readable, m.path_writable, m.image_allowed],
            );
            debug_assert_eq!(fact[&keys.target_match], V::from(m.target_match));
            if !m.host_paths_allowed.is_empty() {
                fact.as_object_mut()?.insert(
                    keys.host_paths_allowed.clone(),
                    bool_object(&m.host_paths_allowed),
                );
            }
            matches.push(fact);
        }
        let object = input.as_object_mut()?;
        object.insert(keys.matches.clone(), V::from(matches));
        object.insert(
            keys.image.clone(),
            self.image.as_deref().map(V::from).unwrap_or(V::Null),
        );
        let host_paths: Vec<V> = self
            .host_paths
            .iter()
            .map(|p| V::from(p.as_str()))
            .collect();
        object.insert(keys.host_paths.clone(), V::from(host_paths));
        object.insert(keys.refs.clone(), bool_object(&self.refs));
        for (key, value) in self.volume_facts() {
            object.insert(key, value);
        }
        object.insert(keys.now_ns.clone(), V::from(self.now_ns_i64()));
        Ok(())
    }
}

impl Facts<'_> {
    /// `volume_drivers` and `volumes` (see [`crate::volumes`]).
    fn volume_facts(&self) -> [(regorus::Value, regorus::Value); 2] {
        use regorus::Value as V;
        let drivers: Vec<V> = self
            .volume_drivers
            .iter()
            .map(|d| V::from(d.as_str()))
            .collect();
        [
            (V::from("volume_drivers"), V::from(drivers)),
            (V::from("volumes"), bool_object(&self.volumes)),
        ]
    }
}

/// `{name: flag}` as a regorus object.
fn bool_object(entries: &[(String, bool)]) -> regorus::Value {
    let map: BTreeMap<regorus::Value, regorus::Value> = entries
        .iter()
        .map(|(k, on)| (regorus::Value::from(k.as_str()), regorus::Value::Bool(*on)))
        .collect();
    regorus::Value::from(map)
}

/// The keys the facts add, allocated once.
struct Keys {
    matches: regorus::Value,
    image: regorus::Value,
    host_paths: regorus::Value,
    refs: regorus::Value,
    now_ns: regorus::Value,
    target_match: regorus::Value,
    path_readable: regorus::Value,
    path_writable: regorus::Value,
    image_allowed: regorus::Value,
    host_paths_allowed: regorus::Value,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = regorus::Value::from;
        Keys {
            matches: k("matches"),
            image: k("image"),
            host_paths: k("host_paths"),
            refs: k("refs"),
            now_ns: k("now_ns"),
            target_match: k("target_match"),
            path_readable: k("path_readable"),
            path_writable: k("path_writable"),
            image_allowed: k("image_allowed"),
            host_paths_allowed: k("host_paths_allowed"),
        }
    })
}

/// A relationship as an element of `input.matches`, once per trust revision:
/// its JSON fields plus the facts that do not depend on the request
/// (`trust_id`, `target_match`, `reads_everything`), with the boolean
/// per-request facts (`path_readable`, `path_writable`, `image_allowed`) in
/// each of their eight combinations, each built on first use.
/// `host_paths_allowed` is `{}`; [`Facts::add_to_value`] fills it in a copy.
#[derive(Debug, Clone)]
pub struct MatchTemplate {
    /// Indexed by "granted per caller" (`target_match: "caller"`) or not.
    base: [regorus::Value; 2],
    variants: [[OnceLock<regorus::Value>; 8]; 2],
}

impl MatchTemplate {
    /// The template of a relationship (its JSON object and id) whose target
    /// pattern matches as `target_match` (`exact`, `glob`, ...).
    pub fn new(json: &Value, id: &str, target_match: &'static str, reads_everything: bool) -> Self {
        let base = |target_match: &str| {
            let mut fact = match json {
                Value::Object(o) => o.clone(),
                _ => Map::new(),
            };
            fact.insert("trust_id".into(), Value::from(id));
            fact.insert("target_match".into(), Value::from(target_match));
            fact.insert("path_readable".into(), Value::from(false));
            fact.insert("path_writable".into(), Value::from(false));
            fact.insert("reads_everything".into(), Value::from(reads_everything));
            fact.insert("image_allowed".into(), Value::from(false));
            fact.insert("host_paths_allowed".into(), Value::Object(Map::new()));
            json_to_value(&Value::Object(fact))
        };
        MatchTemplate {
            base: [base(target_match), base("caller")],
            variants: Default::default(),
        }
    }

    /// The element with these facts: `[path_readable, path_writable, image_allowed]`.
    pub fn get(&self, by_caller: bool, flags: [bool; 3]) -> regorus::Value {
        let index = flags
            .iter()
            .enumerate()
            .fold(0, |acc, (bit, on)| acc | (usize::from(*on) << bit));
        let side = usize::from(by_caller);
        if index == 0 {
            return self.base[side].clone();
        }
        self.variants[side][index]
            .get_or_init(|| {
                let keys = keys();
                let mut fact = self.base[side].clone();
                if let Ok(object) = fact.as_object_mut() {
                    let names = [
                        &keys.path_readable,
                        &keys.path_writable,
                        &keys.image_allowed,
                    ];
                    for (name, on) in names.into_iter().zip(flags) {
                        object.insert(name.clone(), regorus::Value::Bool(on));
                    }
                }
                fact
            })
            .clone()
    }
}

/// Add the precomputed facts to a JSON input document, with the test-only
/// builder (serving and `policy eval` build regorus values directly).
#[cfg(test)]
fn enrich(input: &mut Value, trust: &CompiledTrust, now_ns: i128) {
    let facts = compute(&Subject::from_json(input), trust, now_ns);
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

/// The input document for regorus from its JSON form, facts included.
pub fn to_policy_value(
    input: &Value,
    trust: &CompiledTrust,
    now_ns: i128,
) -> anyhow::Result<regorus::Value> {
    if !input.is_object() {
        anyhow::bail!("the input document must be a JSON object");
    }
    let facts = compute(&Subject::from_json(input), trust, now_ns);
    let mut value = json_to_value(input);
    facts.add_to_value(&mut value)?;
    Ok(value)
}

/// The input document for regorus from a typed input, facts included: the
/// same document as [`to_policy_value`] of its JSON, without the JSON.
pub fn policy_value(
    input: &PolicyInput,
    trust: &CompiledTrust,
    now_ns: i128,
) -> anyhow::Result<regorus::Value> {
    let facts = compute(&Subject::from_input(input), trust, now_ns);
    let mut value = super::value::to_value(input)?;
    facts.add_to_value(&mut value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{TrustRelationship, TrustSpec};
    use serde_json::json;

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
        // Unresolved references (no `target.referenced`) are never inspectable.
        assert_eq!(input["refs"], json!({"db": false, "web-2": false}));
        input["target"]["referenced"] = json!([
            {"reference": "db", "name": "db", "exists": true, "labels": {}},
            {"reference": "web-2", "name": "web-2", "exists": true, "labels": {}},
        ]);
        enrich(&mut input, &t, 0);
        assert_eq!(input["refs"], json!({"db": false, "web-2": true}));
    }

    /// A link borrows the linked container's environment: it is a reference
    /// to that container, named without its alias and leading `/`.
    #[test]
    fn links_reference_the_linked_container() {
        let body = json!({"Image": "busybox", "HostConfig": {
            "Links": ["db:database", "/cache:c", "plain"]}});
        assert_eq!(
            referenced_containers("container.create", &body),
            ["cache", "db", "plain"]
        );
    }

    /// A reference is judged by the container it resolves to: an id prefix
    /// that a name pattern happens to match grants nothing, and a label
    /// selector can grant a reference by the container's labels.
    #[test]
    fn references_are_judged_by_the_resolved_container() {
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "[0-9a-f]*"}),
            json!({"caller_service": "ci", "target_container": "label:team=ci"}),
        ]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
            "target": {"labels": {}, "referenced": [
                {"reference": "3f2a", "id": "3f2a77", "name": "zz-victim", "exists": true, "labels": {}},
                {"reference": "c0ffee", "id": "c0ffee11", "name": "c0ffee", "exists": true, "labels": {}},
                {"reference": "tools", "name": "tools", "exists": true, "labels": {"team": "ci"}},
                {"reference": "abc", "exists": false, "labels": {}},
            ]},
            "body": {"HostConfig": {"NetworkMode": "container:3f2a",
                "VolumesFrom": ["c0ffee", "/tools:ro", "abc"]}}});
        enrich(&mut input, &t, 0);
        assert_eq!(
            input["refs"],
            json!({"3f2a": false, "c0ffee": true, "tools": true, "abc": false})
        );
    }

    #[test]
    fn every_template_variant_is_the_relationship_with_its_facts() {
        let t = trust(&[json!({"caller_service": "ci", "target_container": "web-*"})]);
        let rel = &t.for_caller("ci")[0];
        for by_caller in [false, true] {
            for bits in 0..8u8 {
                let flags = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
                let mut expected = rel.json.clone();
                expected["trust_id"] = json!(rel.id());
                expected["target_match"] = json!(if by_caller { "caller" } else { "glob" });
                expected["path_readable"] = json!(flags[0]);
                expected["path_writable"] = json!(flags[1]);
                expected["image_allowed"] = json!(flags[2]);
                expected["reads_everything"] = json!(false);
                expected["host_paths_allowed"] = json!({});
                let got = rel.match_template.get(by_caller, flags);
                assert_eq!(got, json_to_value(&expected), "{by_caller} {flags:?}");
                // Built once: the second request shares the first one's object.
                let again = rel.match_template.get(by_caller, flags);
                match (&got, &again) {
                    (regorus::Value::Object(a), regorus::Value::Object(b)) => {
                        assert!(Arc::ptr_eq(a, b), "rebuilt: {by_caller} {flags:?}")
                    }
                    _ => panic!("not objects"),
                }
            }
        }
    }

    /// Serving builds the document from the typed input; `policy eval` from
    /// its JSON. Both must give the policy the same document, and the same as
    /// the plain-JSON builder the other tests read.
    #[test]
    fn typed_and_json_inputs_give_the_same_document() {
        use crate::classify::{Resource, ResourceKind};
        use crate::decide::{FileContext, MountInfo, RequestInfo};
        use crate::identify::{Caller, Identification};
        use crate::resolve::Target;
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "*", "file_write_paths": ["/app/**"]}),
            json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
                "allowed_images": ["busybox:*"], "allow_bind_mounts": ["/srv/**"]}),
            json!({"caller_service": "ci", "target_container": "label:tier=web"}),
        ]);
        let base = PolicyInput {
            caller: Caller {
                name: "ci".into(),
                admin: false,
                identified: true,
                via: Identification::PeerCredentials {
                    uid: 1000,
                    gid: 1000,
                    pid: None,
                },
            },
            action: "file.write".into(),
            resource: Resource {
                kind: ResourceKind::Container,
                name: Some("/web-1".into()),
            },
            target: Target {
                reference: Some("web-1".into()),
                name: Some("web-1".into()),
                labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
                exists: true,
                ..Target::default()
            },
            request: RequestInfo {
                method: "PUT".into(),
                path: "/containers/web-1/archive".into(),
                query: BTreeMap::from([("path".to_string(), vec!["/app".to_string()])]),
                version: Some("1.41".into()),
            },
            body: Value::Null,
            file: Some(FileContext {
                path: "/app/a".into(),
                resolved_path: "/app/a".into(),
                mount: Some(MountInfo {
                    kind: "bind".into(),
                    source: "/srv".into(),
                    destination: "/app".into(),
                    rw: true,
                }),
                entries: vec!["/app/a".into(), "/app/b".into()],
            }),
            now: "2025-01-01T00:00:00Z".into(),
        };
        let mut create = base.clone();
        create.action = "container.create".into();
        create.file = None;
        create.body = json!({"Image": "busybox", "Labels": {"tier": "db", "x": "y"},
            "HostConfig": {"Binds": ["/srv/a:/a", "/etc:/e"], "NetworkMode": "container:db",
                "VolumesFrom": ["web-2"]}});
        create.target.referenced = vec![
            Target {
                reference: Some("db".into()),
                name: Some("db".into()),
                exists: true,
                ..Target::default()
            },
            Target {
                reference: Some("web-2".into()),
                id: Some("feed".into()),
                name: Some("web-2".into()),
                labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
                exists: true,
                ..Target::default()
            },
        ];
        create.target.volumes = vec![crate::volumes::MountedVolume {
            name: "hostroot".into(),
            exists: true,
            driver: "local".into(),
            options: BTreeMap::from([
                ("type".to_string(), "none".to_string()),
                ("o".to_string(), "bind".to_string()),
                ("device".to_string(), "/".to_string()),
            ]),
            creator: Some("ci".into()),
            used_by: vec!["web-3".into()],
            ..Default::default()
        }];
        let mut list = base.clone();
        list.action = "image.list".into();
        for input in [base, create, list] {
            let json = serde_json::to_value(&input).unwrap();
            let from_json = to_policy_value(&json, &t, 7).unwrap();
            let typed = policy_value(&input, &t, 7).unwrap();
            assert_eq!(typed, from_json, "{}", input.action);
            let mut enriched = json.clone();
            enrich(&mut enriched, &t, 7);
            assert_eq!(typed, json_to_value(&enriched), "{}", input.action);
        }
    }

    /// A volume mounted by name brings its host paths, its driver and its
    /// owner into the facts; a new name or a borrowed volume only its paths.
    #[test]
    fn volume_facts() {
        let t = trust(&[
            json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
            "volumes": ["shared-*"]}),
        ]);
        let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
            "resource": {"kind": "container", "name": "web-9"},
            "target": {"labels": {}, "volumes": [
                {"name": "hostroot", "via": "name", "exists": true, "driver": "local",
                 "options": {"type": "none", "o": "bind", "device": "/"}},
                {"name": "mine", "via": "name", "exists": true, "driver": "local", "creator": "ci"},
                {"name": "shared-1", "via": "name", "exists": true, "driver": "local"},
                {"name": "nfs", "via": "name", "exists": true, "driver": "local",
                 "options": {"type": "nfs", "o": "addr=1.2.3.4", "device": ":/x"}},
                {"name": "plug", "via": "name", "exists": true, "driver": "rexray"},
                {"name": "new", "via": "name", "exists": false},
                {"name": "borrowed", "via": "volumes_from", "exists": true, "driver": "local",
                 "options": {"type": "overlay", "o": "lowerdir=/etc:/usr,upperdir=/srv/u,workdir=/srv/w"}},
                {"name": "/srv/../data", "via": "volumes_from_bind"}]},
            "body": {"Image": "busybox", "HostConfig": {"VolumeDriver": "flocker",
                "Mounts": [{"Type": "volume", "Source": "x", "VolumeOptions": {"DriverConfig":
                    {"Name": "local", "Options": {"type": "ext4", "device": "/dev/sda1"}}}}]}}});
        enrich(&mut input, &t, 0);
        assert_eq!(
            input["host_paths"],
            json!([
                "/",
                "/data",
                "/dev/sda1",
                "/etc",
                "/srv/u",
                "/srv/w",
                "/usr"
            ])
        );
        assert_eq!(
            input["volume_drivers"],
            json!(["flocker", "local:nfs", "rexray"])
        );
        assert_eq!(
            input["volumes"],
            json!({"hostroot": false, "mine": true, "shared-1": true, "nfs": false, "plug": false})
        );
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
