//! Resolve: which concrete object a resource reference names.
//!
//! A container reference may be a full id, a unique id prefix, or a name with
//! or without its leading `/`. The daemon's own resolution is the truth, so a
//! *fresh* resolution is a container inspect through bollard. A cache fed by the
//! daemon's events stream spares that inspect on the common path.
//!
//! Why the cache cannot grant what a fresh look would refuse: an id's labels,
//! image and mounts never change; only its name does (rename), and a name can
//! move to another id (recreate). So the pipeline trusts a cached answer only
//! when the decision does not depend on a name: a denial, or an allow matched
//! by a name-based trust selector, is decided again on a fresh inspect. And
//! the forwarded request is pinned to the resolved id, so the daemon acts on
//! exactly the container that was decided on.

mod exec_creators;
mod stage;

pub use exec_creators::{ExecCreators, EXEC_CREATORS_CAPACITY};
pub use stage::{file_write_request, referenced_containers, target};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;

use crate::classify::ResourceKind;

/// A bind or volume mount a file path falls in (file actions only).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MountInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub destination: String,
    pub rw: bool,
}

/// The file a file action touches.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileContext {
    /// The normalized requested path.
    pub path: String,
    /// The path with symlinks resolved inside the container (what the daemon touches).
    pub resolved_path: String,
    /// The mount the resolved path falls in, if any (binds reach the host).
    pub mount: Option<MountInfo>,
    /// For archive uploads: every entry's full destination path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<String>,
}

/// The object a request acts on, as the policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The reference as the client wrote it (`web-1`, `3f2a…`, `/web-1`).
    pub reference: Option<String>,
    /// The canonical id, when the object exists.
    pub id: Option<String>,
    /// The canonical name without a leading `/`.
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// For containers: the image it was created from.
    pub image: Option<String>,
    /// Whether the reference resolved to an existing object.
    pub exists: bool,
    #[serde(skip)]
    pub kind: Option<ResourceKind>,
    /// For containers: their mounts (the file API needs them).
    #[serde(skip)]
    pub mounts: Vec<MountInfo>,
    /// Whether this answer came from the cache (see the module docs).
    #[serde(skip)]
    pub from_cache: bool,
    /// For a create: the containers its body joins or borrows from
    /// (`container:<ref>` namespaces, `VolumesFrom`, `Links`), each resolved afresh by
    /// the daemon, so trust is matched against the container the daemon will
    /// use (a name, or whatever an id prefix happens to pick).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referenced: Vec<Target>,
    /// For a create: the volumes it mounts by name or borrows, as the daemon
    /// holds them at decision time (see [`crate::volumes`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volumes::MountedVolume>,
}

impl Target {
    /// A target that names no particular object (list, create, system routes).
    pub fn none(kind: ResourceKind, reference: Option<&str>) -> Self {
        Target {
            reference: reference.map(str::to_string),
            name: reference.map(str::to_string),
            kind: Some(kind),
            ..Target::default()
        }
    }

    /// How a refusal names the target: `web-1`, else the reference, else the kind.
    pub fn display(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.reference.clone())
            .unwrap_or_else(|| "-".into())
    }
}

/// What the cache knows of one container; all but the name is immutable.
#[derive(Debug, Clone)]
struct Cached {
    name: String,
    labels: BTreeMap<String, String>,
    image: String,
    mounts: Vec<MountInfo>,
}

#[derive(Default)]
struct Cache {
    by_id: HashMap<String, Cached>,
    /// exec id -> container id, learnt from exec create responses.
    execs: HashMap<String, String>,
}

/// Why resolution failed (the daemon could not be asked). A refusal.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {reference}: {message}")]
pub struct ResolveError {
    pub reference: String,
    pub message: String,
}

/// Resolves references against the daemon, with the events-fed cache.
pub struct Resolver {
    docker: Docker,
    cache: RwLock<Cache>,
    /// True while the events stream is connected and the cache was listed after it.
    synced: AtomicBool,
    /// Who created each exec instance (see [`crate::execs`]).
    pub exec_creators: ExecCreators,
}

/// Whether a cached answer may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Cached,
    Fresh,
}

fn mount_infos(mounts: Option<Vec<bollard::models::MountPoint>>) -> Vec<MountInfo> {
    mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| MountInfo {
            kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
            source: m.source.unwrap_or_default(),
            destination: m.destination.unwrap_or_default(),
            rw: m.rw.unwrap_or(false),
        })
        .collect()
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Resolver {
    pub fn new(docker: Docker) -> Arc<Self> {
        Arc::new(Resolver {
            docker,
            cache: RwLock::new(Cache::default()),
            synced: AtomicBool::new(false),
            exec_creators: Default::default(),
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Keep the cache fed from the daemon's events stream, reconnecting forever.
    pub fn spawn_event_feed(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.follow_events().await {
                    tracing::debug!(error = %e, "container events feed interrupted; retrying");
                }
                me.synced.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn follow_events(&self) -> Result<(), bollard::errors::Error> {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let options = bollard::query_parameters::EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        // Subscribe before listing so no change falls between the two.
        let mut events = Box::pin(self.docker.events(Some(options)));
        let list = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = self.docker.list_containers(Some(list)).await?;
        {
            let mut cache = self.cache.write().expect("cache lock");
            cache.by_id.clear();
            for c in containers {
                let (Some(id), Some(names)) = (c.id, c.names) else {
                    continue;
                };
                let name = own_name(names.iter().map(String::as_str)).unwrap_or_default();
                let mounts = mount_infos(c.mounts);
                cache.by_id.insert(
                    id,
                    Cached {
                        name,
                        labels: c.labels.unwrap_or_default().into_iter().collect(),
                        image: c.image.unwrap_or_default(),
                        mounts,
                    },
                );
            }
        }
        self.synced.store(true, Ordering::SeqCst);
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(id) = event.actor.and_then(|a| a.id) else {
                continue;
            };
            match event.action.as_deref() {
                Some("destroy") => {
                    let mut cache = self.cache.write().expect("cache lock");
                    cache.by_id.remove(&id);
                    cache.execs.retain(|_, c| c != &id);
                }
                Some("create") | Some("rename") => {
                    // Names move: drop what we knew, learn it again from the daemon.
                    self.cache.write().expect("cache lock").by_id.remove(&id);
                    let _ = self.inspect(&id).await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn cached_lookup(&self, reference: &str) -> Option<Target> {
        if !self.synced.load(Ordering::SeqCst) {
            return None;
        }
        let cache = self.cache.read().expect("cache lock");
        let name = reference.strip_prefix('/').unwrap_or(reference);
        let (id, c) = if is_full_id(reference) {
            cache.by_id.get_key_value(reference)?
        } else {
            // Names are unique among containers.
            cache.by_id.iter().find(|(_, c)| c.name == name)?
        };
        Some(Target {
            reference: Some(reference.to_string()),
            id: Some(id.clone()),
            name: Some(c.name.clone()),
            labels: c.labels.clone(),
            image: Some(c.image.clone()),
            exists: true,
            kind: Some(ResourceKind::Container),
            mounts: c.mounts.clone(),
            from_cache: true,
            referenced: Vec::new(),
            volumes: Vec::new(),
        })
    }

    /// Ask the daemon (its own full-id / name / unique-prefix rules) and update the cache.
    async fn inspect(&self, reference: &str) -> Result<Target, ResolveError> {
        match self.docker.inspect_container(reference, None).await {
            Ok(c) => {
                let id = c.id.unwrap_or_default();
                let name = c
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                let config = c.config.unwrap_or_default();
                let labels: BTreeMap<String, String> =
                    config.labels.unwrap_or_default().into_iter().collect();
                let image = config.image.unwrap_or_default();
                let mounts = mount_infos(c.mounts);
                self.cache.write().expect("cache lock").by_id.insert(
                    id.clone(),
                    Cached {
                        name: name.clone(),
                        labels: labels.clone(),
                        image: image.clone(),
                        mounts: mounts.clone(),
                    },
                );
                Ok(Target {
                    reference: Some(reference.to_string()),
                    id: Some(id),
                    name: Some(name),
                    labels,
                    image: Some(image),
                    exists: true,
                    kind: Some(ResourceKind::Container),
                    mounts,
                    from_cache: false,
                    referenced: Vec::new(),
                    volumes: Vec::new(),
                })
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(Target {
                reference: Some(reference.to_string()),
                kind: Some(ResourceKind::Container),
                ..Target::default()
            }),
            Err(e) => Err(ResolveError {
                reference: reference.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Resolve a container reference.
    pub async fn container(
        &self,
        reference: &str,
        freshness: Freshness,
    ) -> Result<Target, ResolveError> {
        if freshness == Freshness::Cached {
            if let Some(t) = self.cached_lookup(reference) {
                return Ok(t);
            }
        }
        self.inspect(reference).await
    }

    /// Remember which container an exec belongs to (from the exec create response).
    pub fn remember_exec(&self, exec_id: &str, container_id: &str) {
        self.cache
            .write()
            .expect("cache lock")
            .execs
            .insert(exec_id.to_string(), container_id.to_string());
    }

    /// The container an exec instance runs in: remembered, else asked of the daemon.
    pub async fn exec_container(
        &self,
        exec_id: &str,
        freshness: Freshness,
    ) -> Result<Target, ResolveError> {
        let known = self
            .cache
            .read()
            .expect("cache lock")
            .execs
            .get(exec_id)
            .cloned();
        let container_id = match known {
            Some(id) => id,
            None => match self.docker.inspect_exec(exec_id).await {
                Ok(e) => match e.container_id {
                    Some(id) => {
                        self.remember_exec(exec_id, &id);
                        id
                    }
                    None => return Ok(Target::none(ResourceKind::Exec, Some(exec_id))),
                },
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(Target::none(ResourceKind::Exec, Some(exec_id))),
                Err(e) => {
                    return Err(ResolveError {
                        reference: exec_id.to_string(),
                        message: e.to_string(),
                    })
                }
            },
        };
        let mut target = self.container(&container_id, freshness).await?;
        target.reference = Some(exec_id.to_string());
        Ok(target)
    }

    /// Every cached container, for filtering lists and events.
    pub fn cached(&self, id: &str) -> Option<Target> {
        if is_full_id(id) {
            self.cached_lookup(id)
        } else {
            None
        }
    }
}

/// A container's own name among the `Names` the daemon lists for it, without
/// its leading `/`. A linked container is also listed as `/owner/alias`, in
/// whatever order the daemon's index keeps; that alias is the owner's choice,
/// so it must never be what a caller's name patterns match.
pub fn own_name<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    names
        .into_iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .find(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ids_are_64_lowercase_hex() {
        assert!(is_full_id(&"a".repeat(64)));
        assert!(!is_full_id(&"A".repeat(64)));
        assert!(!is_full_id("web-1"));
        assert!(!is_full_id(&"a".repeat(12)));
    }

    #[test]
    fn display_prefers_the_canonical_name() {
        let t = Target {
            reference: Some("3f2a".into()),
            name: Some("web-1".into()),
            ..Target::default()
        };
        assert_eq!(t.display(), "web-1");
        assert_eq!(Target::none(ResourceKind::Image, None).display(), "-");
    }
}
