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

//!
//! Layout: this file reads the `Subject` and computes the `Facts`;
//! `body` reads what a request body names; `document` builds the input
//! document regorus evaluates.

mod body;
mod document;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{FileContext, PolicyInput};
use crate::classify::Action;
use crate::trust::{CompiledRelationship, CompiledTrust};
use crate::volumes::{self, MountedVolume};

pub use body::{bind_sources, host_paths, requested_image, service_mounts, update_image_reference};
// Read by the resolve stage, which resolves the containers a create names.
pub use crate::resolve::referenced_containers;
pub use document::{json_to_value, policy_value, to_policy_value, MatchTemplate};

/// Actions whose target is the container the request names; anything else
/// (images, networks, system, ...) is granted per caller, whatever the target.
fn is_container_targeted(name: &str, action: Option<Action>) -> bool {
    // By family, so that an action name `policy eval` is given but no route
    // has is judged as before.
    !matches!(
        action,
        Some(Action::CONTAINER_LIST | Action::CONTAINER_PRUNE | Action::CONTAINER_HEALTH_SUMMARY)
    ) && (name.starts_with("container.")
        || name.starts_with("exec.")
        || name.starts_with("file.")
        || name.starts_with("checkpoint."))
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
    /// The action as the input names it, and the [`Action`] it is, if any.
    action_name: &'a str,
    action: Option<Action>,
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
            action_name: input.action.as_str(),
            action: Some(input.action),
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
        let action_name = input.get("action").and_then(Value::as_str).unwrap_or("");
        Subject {
            action_name,
            action: Action::from_name(action_name),
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
    if subject.action == Some(Action::CONTAINER_CREATE) {
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
    action: Option<Action>,
    image: Option<&str>,
    host_paths: &[String],
) -> MatchFact<'a> {
    // Only the side the action needs is matched: globs are the costly part.
    let reading = matches!(
        action,
        Some(Action::FILE_READ | Action::FILE_LIST | Action::FILE_STAT)
    );
    // A stat is granted by either side (actions.rego).
    let writing = matches!(
        action,
        Some(Action::FILE_WRITE | Action::FILE_DELETE | Action::FILE_STAT)
    );
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
    let refs = action.map_or_else(Vec::new, |a| referenced_containers(a, body));
    let file = subject.file.as_ref();
    let targeted = is_container_targeted(subject.action_name, action);
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
