//! Volumes: what a volume mounted by name really gives the container.
//!
//! Why: a named volume can be a host bind in disguise. An administrator's
//! `docker volume create -o type=none -o o=bind -o device=/ hostroot` makes
//! `-v hostroot:/h` mount the host's root, and the create body shows only a
//! harmless-looking name. So a volume mounted by name (`Binds`, `Mounts` of
//! type `volume`, the volumes of a `VolumesFrom` container, a service's
//! mounts) is judged by what the daemon holds under that name at decision
//! time (`GET /volumes/{name}`): its driver and its options. A name the daemon
//! does not know is created empty by the daemon, and is judged as that.
//!
//! What the options of the `local` driver mean (moby `volume/local`: `type`,
//! `o`, `device`; the kernel's `mount(2)`):
//! - `o` containing `bind`/`rbind` (or `type` none/bind): `device` is a host
//!   path, whatever the type;
//! - a network file system type (nfs, cifs, ...): `device` is remote; such a
//!   volume needs the same right as a volume plugin (`local:<type>` in
//!   `allow_volume_drivers`);
//! - `tmpfs`/`ramfs`: memory, nothing of the host;
//! - `proc`/`sysfs`/...: the daemon's view of the kernel, judged as a bind of
//!   `/proc`, `/sys`, ...;
//! - overlay: `lowerdir`, `upperdir`, `workdir` (in `o`) are host paths;
//! - any other type (ext4, xfs, ...): `device` is a host block device;
//! - any value in `o` that starts with `/` is a host path too.
//!
//! A relative host path depends on the daemon's working directory, which
//! portcullis cannot know: it is judged as `/` (the whole host), which only a
//! literal `/` in `allow_bind_mounts` grants.
//!
//! Any driver other than `local` is a plugin, which runs with host privileges
//! and may mount anything: it needs `allow_volume_drivers`.
//!
//! Volumes are also a resource of their own (another container's data lives
//! in them): see [`CREATOR_LABEL`] and `input.volumes` in policies/README.md.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;

use crate::classify::{Action, Classified};
use crate::identify::Caller;
use crate::inspect::{BodyError, Inspected};
use crate::resolve::{ResolveError, Target};
use crate::trust::compiled::clean_path;

/// The label portcullis puts on a volume created through it: the caller who
/// created it (see [`stamp_creator`]).
pub const CREATOR_LABEL: &str = "portcullis.creator";

/// How a request reaches a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    /// Mounted by name: `Binds`, `Mounts` of type `volume`, service mounts.
    Name,
    /// A volume of a `VolumesFrom` container.
    VolumesFrom,
    /// A bind mount of a `VolumesFrom` container: `name` is its host path.
    VolumesFromBind,
}

/// A volume a request mounts, as the daemon holds it at decision time
/// (`input.target.volumes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountedVolume {
    pub name: String,
    pub via: Via,
    /// Whether the daemon holds a volume of that name (else it is created empty).
    pub exists: bool,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The caller that created it through portcullis ([`CREATOR_LABEL`]).
    pub creator: Option<String>,
    /// Names of the containers that use it.
    pub used_by: Vec<String>,
}

impl MountedVolume {
    fn unknown(name: &str, via: Via) -> Self {
        MountedVolume {
            name: name.to_string(),
            via,
            exists: false,
            driver: String::new(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            creator: None,
            used_by: Vec::new(),
        }
    }

    /// Host paths this volume mounts.
    pub fn host_paths(&self) -> Vec<String> {
        match self.via {
            Via::VolumesFromBind => vec![host_path(&self.name)],
            _ if !self.exists || !is_local(&self.driver) => Vec::new(),
            _ => option_host_paths(self.options.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }

    /// The right beyond a plain volume this one needs, if any (see [`plugin_need`]).
    pub fn plugin_need(&self) -> Option<String> {
        if !self.exists || self.via == Via::VolumesFromBind {
            return None;
        }
        plugin_need(
            &self.driver,
            self.options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

fn is_local(driver: &str) -> bool {
    driver.is_empty() || driver == "local"
}

/// A host path as the policy sees it: cleaned; a relative one as `/` (see
/// the module docs).
fn host_path(path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        "/".to_string()
    }
}

/// Network file systems: the `device` is on another machine.
const REMOTE_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
];

/// File systems made of memory: nothing of the host.
const MEMORY_TYPES: &[&str] = &["tmpfs", "ramfs"];

/// Kernel file systems and the host path whose powers they give.
const KERNEL_TYPES: &[(&str, &str)] = &[
    ("proc", "/proc"),
    ("sysfs", "/sys"),
    ("devtmpfs", "/dev"),
    ("devpts", "/dev/pts"),
    ("cgroup", "/sys/fs/cgroup"),
    ("cgroup2", "/sys/fs/cgroup"),
    ("securityfs", "/sys/kernel/security"),
    ("debugfs", "/sys/kernel/debug"),
    ("tracefs", "/sys/kernel/tracing"),
    ("bpf", "/sys/fs/bpf"),
    ("mqueue", "/dev/mqueue"),
];

/// `o` option keys whose values are host paths (`:`-separated lists).
const PATH_OPTIONS: &[&str] = &["lowerdir", "upperdir", "workdir", "datadir"];

/// The parts of `local` driver options that matter: `type`, `device`, the
/// items of `o`. Keys are matched as the driver matches them (exactly).
struct LocalOptions<'a> {
    kind: &'a str,
    device: Option<&'a str>,
    items: Vec<&'a str>,
}

fn local_options<'a>(options: impl Iterator<Item = (&'a str, &'a str)>) -> LocalOptions<'a> {
    let mut parsed = LocalOptions {
        kind: "",
        device: None,
        items: Vec::new(),
    };
    for (key, value) in options {
        match key {
            "type" => parsed.kind = value,
            "device" => parsed.device = Some(value),
            "o" => parsed.items.extend(value.split(',')),
            _ => {}
        }
    }
    parsed
}

/// Host paths that `local` driver options mount.
pub fn option_host_paths<'a>(options: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let opts = local_options(options);
    let mut out = Vec::new();
    let kind = opts.kind.trim().to_ascii_lowercase();
    let bind = matches!(kind.as_str(), "none" | "bind" | "rbind")
        || opts
            .items
            .iter()
            .any(|i| matches!(i.trim(), "bind" | "rbind"));
    if let Some(device) = opts.device.filter(|d| !d.is_empty()) {
        if bind {
            out.push(host_path(device));
        } else if let Some((_, path)) = KERNEL_TYPES.iter().find(|(t, _)| *t == kind) {
            out.push(path.to_string());
        } else if REMOTE_TYPES.contains(&kind.as_str())
            || MEMORY_TYPES.contains(&kind.as_str())
            || kind == "overlay"
        {
            // Remote: a right of its own (plugin_need). Memory: nothing.
            // Overlay: its device is ignored; its paths are in `o`.
        } else {
            // ext4, xfs, ... (or no type): the device is a host block device.
            out.push(host_path(device));
        }
    } else if let Some((_, path)) = KERNEL_TYPES.iter().find(|(t, _)| *t == kind) {
        out.push(path.to_string());
    }
    for item in &opts.items {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if PATH_OPTIONS.contains(&key) {
            out.extend(value.split(':').filter(|p| !p.is_empty()).map(host_path));
        } else if value.starts_with('/') {
            out.push(host_path(value));
        }
    }
    out
}

/// The right a volume with this driver and options needs beyond a plain
/// volume: the driver's name for a plugin, `local:<type>` for a network file
/// system of the local driver; `None` for a local volume (its host paths are
/// judged as binds).
pub fn plugin_need<'a>(
    driver: &str,
    options: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    if !is_local(driver) {
        return Some(driver.to_string());
    }
    let opts = local_options(options);
    let kind = opts.kind.trim().to_ascii_lowercase();
    let bind = opts
        .items
        .iter()
        .any(|i| matches!(i.trim(), "bind" | "rbind"));
    (!bind && REMOTE_TYPES.contains(&kind.as_str())).then(|| format!("local:{kind}"))
}

/// `{Name, Options}` of a volume's driver config (`DriverConfig` of a mount).
fn driver_config_need(config: Option<&Value>) -> Option<String> {
    let config = config?;
    let options = config.get("Options").and_then(Value::as_object);
    plugin_need(
        str_at(config, &["Name"]).unwrap_or(""),
        options
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
    )
}

fn push_mount_needs(mounts: Option<&Value>, out: &mut Vec<String>) {
    for mount in mounts.and_then(Value::as_array).into_iter().flatten() {
        out.extend(driver_config_need(
            mount
                .get("VolumeOptions")
                .and_then(|o| o.get("DriverConfig")),
        ));
    }
}

/// Volume drivers (plugins, and `local:<type>` network file systems) a
/// request would use: the driver of a `volume.create`, a create's
/// `VolumeDriver` and mount driver configs, and the existing volumes it
/// mounts (`volumes`).
pub fn needed_drivers(
    action: Option<Action>,
    body: &Value,
    volumes: &[MountedVolume],
) -> Vec<String> {
    let mut out: Vec<String> = volumes
        .iter()
        .filter_map(MountedVolume::plugin_need)
        .collect();
    match action {
        Some(Action::VOLUME_CREATE) => {
            out.extend(driver_config_need(Some(&serde_json::json!({
                "Name": body.get("Driver").cloned().unwrap_or(Value::Null),
                "Options": body.get("DriverOpts").cloned().unwrap_or(Value::Null),
            }))));
        }
        Some(Action::CONTAINER_CREATE) => {
            let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
            // The driver of the volumes the create makes (named or anonymous).
            if let Some(driver) = str_at(host_config, &["VolumeDriver"]) {
                out.extend(plugin_need(driver, std::iter::empty()));
            }
            push_mount_needs(host_config.get("Mounts"), &mut out);
        }
        Some(Action::SERVICE_CREATE | Action::SERVICE_UPDATE) => {
            push_mount_needs(crate::decide::facts::service_mounts(body), &mut out)
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Host paths in a JSON object of driver options (`DriverOpts`,
/// `DriverConfig.Options`); non-string values are ignored, as the daemon
/// refuses them.
pub fn json_option_host_paths(options: Option<&Value>) -> Vec<String> {
    option_host_paths(
        options
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
    )
}

/// Whether a caller may mount an existing volume: it created it through
/// portcullis, or one of its relationships lists it in `volumes`. `None` for
/// a volume that needs no such right (not yet existing: created empty, for
/// this caller; or borrowed through `VolumesFrom`, which needs rights on the
/// container instead).
pub fn mountable(
    volume: &MountedVolume,
    caller: &str,
    granted_by_trust: impl Fn(&str) -> bool,
) -> Option<bool> {
    if !volume.exists || volume.via != Via::Name {
        return None;
    }
    Some(volume.creator.as_deref() == Some(caller) || granted_by_trust(&volume.name))
}

/// Label a volume made through portcullis with its creator ([`CREATOR_LABEL`]),
/// so that the caller may mount it later (and no one else, by default).
///
/// Why rewrite the body here, although bodies are otherwise forwarded byte for
/// byte: the label is what makes "volumes it created" checkable at any later
/// decision, and from the daemon's own state, without a second store. It is
/// done before anything is decided or recorded, by re-encoding the canonical
/// body (which the daemon decodes to the same request) and inspecting the new
/// bytes again: the policy, the record and the daemon see one body. A label
/// the client sets itself under that key is overwritten, so no caller can make
/// a volume pass for someone else's.
pub fn stamp_creator(
    caller: &Caller,
    request: &Classified,
    headers: &mut HeaderMap,
    inspected: &mut Inspected,
) -> Result<(), BodyError> {
    if request.action != Action::VOLUME_CREATE || !caller.identified {
        return Ok(());
    }
    let mut body = match &inspected.canonical {
        Value::Null => Value::Object(serde_json::Map::new()),
        // The daemon refuses any other body; let it say so.
        Value::Object(_) => inspected.canonical.clone(),
        _ => return Ok(()),
    };
    let labels = body
        .as_object_mut()
        .expect("an object")
        .entry("Labels")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if labels.is_null() {
        *labels = Value::Object(serde_json::Map::new());
    }
    let Some(labels) = labels.as_object_mut() else {
        return Ok(());
    };
    labels.insert(CREATOR_LABEL.into(), Value::from(caller.name.as_str()));
    let bytes = serde_json::to_vec(&body).map_err(|e| BodyError::Read(e.to_string()))?;
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    *inspected = crate::inspect::inspect(
        request.route,
        request.route.method,
        headers,
        &request.query,
        bytes.into(),
    )?;
    Ok(())
}

/// The inspect step's volume rule: refuse a body that names another caller
/// as a volume's creator ([`forged_creator`]), then label a `volume.create`
/// with its caller ([`stamp_creator`]). Errors are the refusal's status and
/// reason.
pub fn hold_creator(
    caller: &Caller,
    request: &Classified,
    headers: &mut HeaderMap,
    inspected: &mut Inspected,
) -> Result<(), (http::StatusCode, String)> {
    if let Some(why) = forged_creator(caller, request, &inspected.canonical) {
        return Err((http::StatusCode::FORBIDDEN, why));
    }
    // Our own re-encoding failing to inspect is a bug: refused.
    stamp_creator(caller, request, headers, inspected)
        .map_err(|e| (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A container or service create whose volume mounts label a volume with
/// someone else's [`CREATOR_LABEL`]: the daemon applies `VolumeOptions.Labels`
/// when it makes the volume, so without this check a caller could create a
/// volume that passes for another caller's. The reason for the refusal, or
/// `None`. (Label keys are exact in Go's maps: no other spelling reaches it.)
pub fn forged_creator(caller: &Caller, request: &Classified, body: &Value) -> Option<String> {
    let mounts = match request.action {
        Action::CONTAINER_CREATE => body.get("HostConfig").and_then(|h| h.get("Mounts")),
        Action::SERVICE_CREATE | Action::SERVICE_UPDATE => {
            crate::decide::facts::service_mounts(body)
        }
        _ => return None,
    };
    for mount in mounts.and_then(Value::as_array).into_iter().flatten() {
        let label = mount
            .get("VolumeOptions")
            .and_then(|o| o.get("Labels"))
            .and_then(|l| l.get(CREATOR_LABEL));
        match label {
            None | Some(Value::Null) => {}
            Some(v) if v.as_str() == Some(caller.name.as_str()) && caller.identified => {}
            Some(v) => {
                return Some(format!(
                    "a volume mount labels its volume {CREATOR_LABEL}={v}: only portcullis sets \
                     that label, to the caller who creates the volume"
                ))
            }
        }
    }
    None
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

/// `Mounts` entries of type `volume` with a name.
fn push_volume_mounts(mounts: Option<&Value>, out: &mut Vec<String>) {
    for mount in mounts.and_then(Value::as_array).into_iter().flatten() {
        let kind = mount.get("Type").and_then(Value::as_str).unwrap_or("");
        if kind.eq_ignore_ascii_case("volume") {
            if let Some(name) = mount.get("Source").and_then(Value::as_str) {
                if !name.is_empty() {
                    out.push(name.to_string());
                }
            }
        }
    }
}

/// Volumes a create body mounts by name. (`Binds` sources without a leading
/// `/` are volume names; an empty one is anonymous.)
pub fn mounted_names(action: Action, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match action {
        Action::CONTAINER_CREATE => {
            let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
            out.extend(
                crate::decide::facts::bind_sources(host_config)
                    .filter(|s| !s.is_empty() && !s.starts_with('/'))
                    .map(str::to_string),
            );
            push_volume_mounts(host_config.get("Mounts"), &mut out);
        }
        Action::SERVICE_CREATE | Action::SERVICE_UPDATE => {
            push_volume_mounts(crate::decide::facts::service_mounts(body), &mut out)
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a create body names `VolumesFrom` containers.
fn borrows_volumes(action: Action, body: &Value) -> bool {
    action == Action::CONTAINER_CREATE
        && body
            .get("HostConfig")
            .and_then(|h| h.get("VolumesFrom"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn unreachable(reference: &str, e: bollard::errors::Error) -> ResolveError {
    ResolveError {
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

/// Look a volume up on the daemon, with the containers that use it.
pub async fn inspect(docker: &Docker, name: &str, via: Via) -> Result<MountedVolume, ResolveError> {
    // The name goes into the path: encode it so it names exactly one volume.
    let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC).to_string();
    let volume = match docker.inspect_volume(&encoded).await {
        Ok(v) => v,
        Err(e) if not_found(&e) => return Ok(MountedVolume::unknown(name, via)),
        Err(e) => return Err(unreachable(name, e)),
    };
    let filters = HashMap::from([("volume".to_string(), vec![volume.name.clone()])]);
    let list = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let used_by = docker
        .list_containers(Some(list))
        .await
        .map_err(|e| unreachable(name, e))?
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    let labels: BTreeMap<String, String> = volume.labels.into_iter().collect();
    Ok(MountedVolume {
        name: name.to_string(),
        via,
        exists: true,
        driver: volume.driver,
        options: volume.options.into_iter().collect(),
        creator: labels.get(CREATOR_LABEL).cloned(),
        labels,
        used_by,
    })
}

/// Every volume a create mounts, looked up afresh: the names it mounts, and
/// the volumes and binds of its `VolumesFrom` containers (already resolved in
/// `referenced`). Asks the daemon only when the body names a volume.
pub async fn resolve_mounted(
    docker: &Docker,
    action: Action,
    body: &Value,
    referenced: &[Target],
) -> Result<Vec<MountedVolume>, ResolveError> {
    let mut out = Vec::new();
    for name in mounted_names(action, body) {
        out.push(inspect(docker, &name, Via::Name).await?);
    }
    if borrows_volumes(action, body) {
        for id in referenced
            .iter()
            .filter(|t| t.exists)
            .filter_map(|t| t.id.as_deref())
        {
            let container = match docker.inspect_container(id, None).await {
                Ok(c) => c,
                // Gone since it was resolved: the daemon will refuse the create.
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(unreachable(id, e)),
            };
            for mount in container.mounts.unwrap_or_default() {
                let kind = mount.typ.map(|t| t.to_string()).unwrap_or_default();
                match (kind.as_str(), mount.name, mount.source) {
                    ("volume", Some(name), _) => {
                        out.push(inspect(docker, &name, Via::VolumesFrom).await?)
                    }
                    ("bind", _, Some(source)) => {
                        out.push(MountedVolume::unknown(&source, Via::VolumesFromBind))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(options: &[(&str, &str)]) -> Vec<String> {
        option_host_paths(options.iter().copied())
    }

    #[test]
    fn binds_in_any_spelling_are_host_paths() {
        assert_eq!(
            paths(&[("type", "none"), ("o", "bind"), ("device", "/")]),
            ["/"]
        );
        assert_eq!(
            paths(&[
                ("type", "ext4"),
                ("o", "ro,rbind"),
                ("device", "/etc/../srv")
            ]),
            ["/srv"]
        );
        // A relative device depends on the daemon's working directory.
        assert_eq!(
            paths(&[("type", "none"), ("o", "bind"), ("device", "etc")]),
            ["/"]
        );
        // A block device is a host path.
        assert_eq!(
            paths(&[("type", "ext4"), ("device", "/dev/sda1")]),
            ["/dev/sda1"]
        );
        assert_eq!(paths(&[("type", "proc"), ("device", "proc")]), ["/proc"]);
    }

    #[test]
    fn overlay_directories_and_path_values_are_host_paths() {
        let got = paths(&[
            ("type", "overlay"),
            ("device", "overlay"),
            (
                "o",
                "lowerdir=/etc:/var/lib,upperdir=/srv/up,workdir=work,loop=/dev/loop0",
            ),
        ]);
        assert_eq!(got, ["/etc", "/var/lib", "/srv/up", "/", "/dev/loop0"]);
    }

    #[test]
    fn memory_and_remote_volumes_mount_no_host_path() {
        assert!(paths(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]).is_empty());
        let nfs = [
            ("type", "nfs"),
            ("o", "addr=10.0.0.1,rw"),
            ("device", ":/export"),
        ];
        assert!(paths(&nfs).is_empty());
        assert_eq!(
            plugin_need("local", nfs.iter().copied()).as_deref(),
            Some("local:nfs")
        );
        assert_eq!(plugin_need("", [].into_iter()), None);
        assert_eq!(
            plugin_need("rexray", [].into_iter()).as_deref(),
            Some("rexray")
        );
        // A bind is a bind, whatever the type says.
        let bind = [("type", "nfs"), ("o", "bind"), ("device", "/root")];
        assert_eq!(paths(&bind), ["/root"]);
        assert_eq!(plugin_need("local", bind.iter().copied()), None);
    }

    #[test]
    fn names_mounted_by_a_create() {
        let body = json!({"HostConfig": {
            "Binds": ["hostroot:/h", "/srv:/s", ":/anon", "data:/d:ro"],
            "Mounts": [{"Type": "volume", "Source": "m1"}, {"Type": "volume", "Source": ""},
                {"Type": "bind", "Source": "/x"}]}});
        assert_eq!(
            mounted_names(Action::CONTAINER_CREATE, &body),
            ["data", "hostroot", "m1"]
        );
        let service = json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [
            {"Type": "volume", "Source": "svc"}]}}});
        assert_eq!(mounted_names(Action::SERVICE_CREATE, &service), ["svc"]);
        assert!(mounted_names(Action::CONTAINER_START, &body).is_empty());
    }
}
