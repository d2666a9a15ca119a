//! The resolve step of the pipeline: the request's target and, for file
//! actions, the file it touches.
//!
//! Why apart from `mod.rs`: that file is the resolver (cache, fresh looks,
//! the events feed); this one is what the pipeline asks of it per request.

use http::StatusCode;
use serde_json::Value;

use super::{FileContext, Freshness, ResolveError, Resolver, Target};
use crate::classify::{Action, BodyRule, Classified, FileOp, Handler, ResourceKind, Service};
use crate::files::{self, ContainerFs, FileError, WriteRequest};
use crate::inspect::Inspected;

/// The resolve step of the pipeline: the request's target, looked up
/// `freshness`-ly, and for file actions the file it touches. Errors are the
/// refusal's status and reason.
pub async fn target(
    resolver: &Resolver,
    fs: &ContainerFs,
    request: &Classified,
    inspected: &Inspected,
    freshness: Freshness,
) -> Result<(Target, Option<FileContext>), (StatusCode, String)> {
    let name = request.resource.name.as_deref();
    let unreachable = |e: ResolveError| (StatusCode::BAD_GATEWAY, format!("portcullis: {e}"));
    let name = link_removal_parent(request, inspected).or(name);
    let creates = request.action == Action::CONTAINER_CREATE;
    let mut target = match (request.resource.kind, name) {
        (ResourceKind::Container, Some(n)) if !creates => resolver
            .container(n, freshness)
            .await
            .map_err(unreachable)?,
        (ResourceKind::Exec, Some(n)) => resolver
            .exec_container(n, freshness)
            .await
            .map_err(unreachable)?,
        (kind, n) => Target::none(kind, n),
    };
    if creates {
        target.image = inspected
            .canonical
            .get("Image")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Always fresh: the decision depends on the referenced names.
        for reference in referenced_containers(request.action, &inspected.canonical) {
            let resolved = resolver
                .container(&reference, Freshness::Fresh)
                .await
                .map_err(unreachable)?;
            target.referenced.push(resolved);
        }
    }
    if matches!(
        request.action,
        Action::CONTAINER_CREATE | Action::SERVICE_CREATE | Action::SERVICE_UPDATE
    ) {
        // Always fresh: a volume is judged by what the daemon holds now.
        target.volumes = crate::volumes::resolve_mounted(
            resolver.docker(),
            request.action,
            &inspected.canonical,
            &target.referenced,
        )
        .await
        .map_err(unreachable)?;
    }
    let file = file_context(fs, request, &target, inspected).await?;
    Ok((target, file))
}

/// Containers a create body joins (namespaces), borrows volumes from, or links to.
pub fn referenced_containers(action: Action, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if action != Action::CONTAINER_CREATE {
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

/// `DELETE /containers/{parent}/{alias}?link=1` (`docker rm --link`) removes
/// the link `alias` from `parent`, which the daemon finds by name (moby's
/// `rmLink`): that is the container it changes, and the one decided on.
fn link_removal_parent<'a>(request: &'a Classified, inspected: &Inspected) -> Option<&'a str> {
    if request.action != Action::CONTAINER_REMOVE
        || !crate::classify::path::form_bool(&inspected.form, "link")
    {
        return None;
    }
    let name = request.resource.name.as_deref()?;
    let (parent, _alias) = name.trim_start_matches('/').rsplit_once('/')?;
    Some(parent).filter(|p| !p.is_empty())
}

/// The write request of `PUT …/files/write`, from exactly the inspected bytes.
pub fn file_write_request(inspected: &Inspected) -> Result<WriteRequest, (StatusCode, String)> {
    serde_json::from_slice(&inspected.bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid write request: {e}"),
        )
    })
}

/// The file a file action touches (normalized, symlinks resolved, mount,
/// and for docker cp uploads every entry), or `None` for other actions: for
/// the file API and `docker cp` alike, so both doors are held to one set of
/// rules.
async fn file_context(
    fs: &ContainerFs,
    request: &Classified,
    target: &Target,
    inspected: &Inspected,
) -> Result<Option<FileContext>, (StatusCode, String)> {
    let file_error = |e: FileError| (e.status(), e.to_string());
    if !request.action.is_file() || !target.exists {
        return Ok(None);
    }
    let Some(container) = target.id.as_deref() else {
        return Ok(None);
    };
    let raw = if request.route.handler == Handler::Files(FileOp::Write) {
        file_write_request(inspected)?.path
    } else {
        request.resource_path().map(str::to_string).ok_or((
            StatusCode::BAD_REQUEST,
            "the path parameter is required".to_string(),
        ))?
    };
    // The daemon's archive routes clean `..` lexically; the file API refuses it.
    let path = if request.route.service == Service::Docker {
        files::archive_path(&raw)
    } else {
        files::normalize_path(&raw)
    }
    .map_err(file_error)?;
    let mut context = fs
        .file_context(container, &path)
        .await
        .map_err(file_error)?;
    if request.route.body == BodyRule::Tar {
        // docker cp upload: every entry, where it really lands, and every link target.
        let upload =
            files::inspect_upload(&inspected.bytes, &context.resolved_path).map_err(file_error)?;
        let mut entries = fs
            .resolve_upload(container, &upload)
            .await
            .map_err(file_error)?;
        entries.extend(upload.paths());
        entries.extend(upload.link_targets());
        entries.sort();
        entries.dedup();
        context.entries = entries;
    }
    Ok(Some(context))
}
