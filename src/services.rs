//! portcullis's own services, served behind the same pipeline as proxied
//! Docker calls: the file API here, the admin API in [`crate::admin`].
//!
//! Why each handler takes a [`Permit`]: only the record stage makes one, after
//! the request was decided and durably recorded, so no handler can be reached
//! by a path that skipped either.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use crate::admin::Admin;
use crate::classify::{Action, FileOp};
use crate::decide::Decision;
use crate::files::{ContainerFs, FileAction, FileChanged, FileError, FileEvents};
use crate::record::{Decided, Permit, Record};
use crate::reply::{self, ProxyBody};
use crate::resolve::file_write_request;

/// The file API and the admin API.
pub struct Local {
    pub fs: ContainerFs,
    pub events: FileEvents,
    pub admin: Arc<Admin>,
    /// Largest file the read endpoint returns.
    pub max_read: u64,
}

fn error_reply(e: FileError) -> Response<ProxyBody> {
    reply::error(e.status(), format!("portcullis: {e}"))
}

impl Local {
    /// Serve a permitted file API request; a change it makes is recorded
    /// (`file.changed`) through `recorder`.
    pub async fn serve_files(
        &self,
        op: FileOp,
        permit: Permit,
        recorder: &dyn Record,
        req: Decided<'_>,
    ) -> Response<ProxyBody> {
        let (target, inspected) = (req.target, req.inspected);
        let (Some(container), Some(file)) =
            (target.id.as_deref().filter(|_| target.exists), req.file)
        else {
            let reference = target.reference.clone().unwrap_or_default();
            return reply::error(
                StatusCode::NOT_FOUND,
                format!("No such container: {reference}"),
            );
        };
        let (action, body) = match op {
            FileOp::List => {
                return match self.fs.list(container, &file.resolved_path).await {
                    Ok(mut listing) => {
                        listing.path = file.path.clone();
                        reply::json(StatusCode::OK, &json!(listing))
                    }
                    Err(e) => error_reply(e),
                }
            }
            FileOp::Read => {
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
            FileOp::Write => {
                let req = match file_write_request(inspected) {
                    Ok(r) => r,
                    Err((s, m)) => return reply::error(s, format!("portcullis: {m}")),
                };
                match self.fs.write(container, &req).await {
                    Ok(result) => (FileAction::Write, json!(result)),
                    Err(e) => return error_reply(e),
                }
            }
            FileOp::Delete => match self.fs.delete(container, &file.path).await {
                Ok(()) => (
                    FileAction::Delete,
                    json!({ "path": file.path, "deleted": true }),
                ),
                Err(e) => return error_reply(e),
            },
        };
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
        let mut record = req.record(&applied, true);
        record.action = Action::FILE_CHANGED.to_string();
        if let Err(e) = recorder.append(record).await {
            // The change cannot be undone, but it must not pass unseen: the
            // caller is told it happened and was not recorded (a 500, and
            // `portcullis_record_failures_total` counts it).
            tracing::error!(error = %e, decision = permit.decision_id(), "a file change was applied but its record could not be written");
            return reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "portcullis: the {action:?} of {} was applied, but it could not be recorded: {e}",
                    file.path
                ),
            );
        }
        reply::json(StatusCode::OK, &body)
    }
}
