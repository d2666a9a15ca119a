//! portcullis's own services, served behind the same pipeline as proxied
//! Docker calls: the file API, and the file facts the decide stage needs for
//! `docker cp` as well (so both doors are held to one set of rules).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use crate::admin::Admin;
use crate::classify::{BodyRule, Classified, Service};
use crate::decide::{Decision, FileContext};
use crate::files::{
    self, ContainerFs, FileAction, FileChanged, FileError, FileEvents, WriteRequest,
};
use crate::identify::Caller;
use crate::inspect::Inspected;
use crate::pipeline::Gateway;
use crate::reply::{self, ProxyBody};
use crate::resolve::Target;
use crate::stages::{Forwardable, Life};

/// The file API and the admin API.
pub struct Local {
    pub fs: ContainerFs,
    pub events: FileEvents,
    pub admin: Arc<Admin>,
    /// Largest file the read endpoint returns.
    pub max_read: u64,
}

fn file_error(e: FileError) -> (StatusCode, String) {
    (e.status(), e.to_string())
}

fn error_reply(e: FileError) -> Response<ProxyBody> {
    reply::error(e.status(), format!("portcullis: {e}"))
}

/// The write request of `PUT …/files/write`, from exactly the inspected bytes.
fn write_request(inspected: &Inspected) -> Result<WriteRequest, (StatusCode, String)> {
    serde_json::from_slice(&inspected.bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid write request: {e}"),
        )
    })
}

impl Local {
    /// The file a file action touches (normalized, symlinks resolved, mount,
    /// and for docker cp uploads every entry), or `None` for other actions.
    pub async fn file_facts(
        &self,
        request: &Classified,
        target: &Target,
        inspected: &Inspected,
    ) -> Result<Option<FileContext>, (StatusCode, String)> {
        if !request.action.0.starts_with("file.") || !target.exists {
            return Ok(None);
        }
        let Some(container) = target.id.as_deref() else {
            return Ok(None);
        };
        let raw = if request.route.service == Service::Files && request.action.0 == "file.write" {
            write_request(inspected)?.path
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
        let mut context = self
            .fs
            .file_context(container, &path)
            .await
            .map_err(file_error)?;
        if request.route.body == BodyRule::Tar {
            // docker cp upload: every entry, where it really lands, and every link target.
            let upload = files::inspect_upload(&inspected.bytes, &context.resolved_path)
                .map_err(file_error)?;
            let mut entries = self
                .fs
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

    #[allow(clippy::too_many_arguments)]
    async fn serve_files(
        &self,
        gw: &Gateway,
        caller: &Caller,
        request: &Classified,
        target: &Target,
        file: Option<FileContext>,
        work: Forwardable,
        life: &Life,
    ) -> Response<ProxyBody> {
        let (Some(container), Some(file)) = (target.id.as_deref().filter(|_| target.exists), file)
        else {
            let reference = target.reference.clone().unwrap_or_default();
            return reply::error(
                StatusCode::NOT_FOUND,
                format!("No such container: {reference}"),
            );
        };
        let changed = match request.action.0 {
            "file.list" => {
                return match self.fs.list(container, &file.resolved_path).await {
                    Ok(mut listing) => {
                        listing.path = file.path.clone();
                        reply::json(StatusCode::OK, &json!(listing))
                    }
                    Err(e) => error_reply(e),
                }
            }
            "file.read" => {
                return match self
                    .fs
                    .read(container, &file.resolved_path, self.max_read)
                    .await
                {
                    Ok(mut content) => {
                        content.path = file.path.clone();
                        reply::json(StatusCode::OK, &json!(content))
                    }
                    Err(e) => error_reply(e),
                }
            }
            "file.write" => {
                let req = match write_request(&work.inspected) {
                    Ok(r) => r,
                    Err((s, m)) => return reply::error(s, format!("portcullis: {m}")),
                };
                match self.fs.write(container, &req).await {
                    Ok(result) => (FileAction::Write, json!(result)),
                    Err(e) => return error_reply(e),
                }
            }
            "file.delete" => match self.fs.delete(container, &file.path).await {
                Ok(()) => (
                    FileAction::Delete,
                    json!({ "path": file.path, "deleted": true }),
                ),
                Err(e) => return error_reply(e),
            },
            other => {
                return reply::error(
                    StatusCode::NOT_FOUND,
                    format!("portcullis: no file operation {other}"),
                )
            }
        };
        let (action, body) = changed;
        self.events.publish(FileChanged {
            container: target.display(),
            path: file.path.clone(),
            action,
        });
        // The change itself is recorded like any decision.
        let applied = Decision {
            allowed: true,
            reasons: vec![format!("file-changed: {action:?} applied")],
            trust_id: None,
            policy_version: "-".into(),
        };
        let mut record = life.record(
            caller,
            request,
            target,
            Some(&file),
            &work.inspected,
            &applied,
            true,
        );
        record.action = "file.changed".into();
        if let Err(e) = gw.recorder.append(record).await {
            tracing::error!(error = %e, "a file change was applied but its event could not be recorded");
        }
        reply::json(StatusCode::OK, &body)
    }
}

impl Local {
    /// Serve an allowed admin or file API request.
    #[allow(clippy::too_many_arguments)]
    pub async fn serve(
        &self,
        gw: &Gateway,
        caller: &Caller,
        request: &Classified,
        target: &Target,
        file: Option<FileContext>,
        work: Forwardable,
        life: &Life,
    ) -> Response<ProxyBody> {
        match request.route.service {
            Service::Files => {
                self.serve_files(gw, caller, request, target, file, work, life)
                    .await
            }
            _ => self.admin.serve(caller, request, work, life).await,
        }
    }
}
