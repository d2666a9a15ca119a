//! What a request body names, read the way the daemon reads it: the image,
//! host paths it would mount, and containers it joins or links to.
//!
//! Why apart: these readers know Docker's body shapes, not trust; the
//! volumes and resolve stages use them too, and [`super::compute`] turns
//! their answers into facts.

use serde_json::Value;

use super::{str_at, Subject};
use crate::classify::Action;
use crate::trust::compiled::clean_path;
use crate::volumes;

/// The image a request is about, if any.
pub fn requested_image(subject: &Subject) -> Option<String> {
    let body = subject.body;
    match subject.action {
        Some(Action::CONTAINER_CREATE) => str_at(body, &["Image"]).map(str::to_string),
        Some(Action::IMAGE_PULL) => subject.resource_name.map(str::to_string),
        // `{image, tag}`, as the agent controls' update reads it (`agent::update`).
        Some(Action::CONTAINER_UPDATE_IMAGE) => update_image_reference(body),
        Some(Action::SERVICE_CREATE | Action::SERVICE_UPDATE) => {
            str_at(body, &["TaskTemplate", "ContainerSpec", "Image"]).map(str::to_string)
        }
        _ => None,
    }
}

/// The image an update-image body (`{image, tag}`) asks for: `image:tag`, or
/// `image` alone when no tag is given. The policy judges this reference and
/// the update runs exactly it (`agent::update`), so the two cannot differ.
pub fn update_image_reference(body: &Value) -> Option<String> {
    let image = str_at(body, &["image"]).filter(|i| !i.is_empty())?;
    match str_at(body, &["tag"]).filter(|t| !t.is_empty()) {
        Some(tag) => Some(format!("{image}:{tag}")),
        None => Some(image.to_string()),
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
pub fn host_paths(action: Option<Action>, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match action {
        Some(Action::CONTAINER_CREATE) => {
            let host_config = body.get("HostConfig").unwrap_or(&Value::Null);
            // Sources without a leading `/` are named volumes.
            out.extend(
                bind_sources(host_config)
                    .filter(|s| s.starts_with('/'))
                    .map(clean_path),
            );
            push_mounts(host_config.get("Mounts"), &mut out);
        }
        Some(Action::SERVICE_CREATE | Action::SERVICE_UPDATE) => {
            push_mounts(service_mounts(body), &mut out)
        }
        Some(Action::VOLUME_CREATE) => {
            out.extend(volumes::json_option_host_paths(body.get("DriverOpts")));
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}
