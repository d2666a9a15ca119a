//! What a request body names, read the way the daemon reads it: the image,
//! host paths it would mount, and containers it joins or links to.
//!
//! Why apart: these readers know Docker's body shapes, not trust; the
//! volumes and resolve stages use them too, and [`super::compute`] turns
//! their answers into facts.

use serde_json::Value;

use super::{str_at, Subject};
use crate::trust::compiled::clean_path;
use crate::volumes;

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
