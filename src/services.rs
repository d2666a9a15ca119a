//! portcullis's own services, served behind the same pipeline as proxied
//! Docker calls: the file API, and the file facts the decide stage needs for
//! `docker cp` as well (so both doors are held to one set of rules).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
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
use crate::record::AuditRecord;
use crate::reply::{self, BoxError, ProxyBody};
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

/// A `docker cp` download (`GET /containers/{id}/archive`) the daemon answered:
/// pass its tar on entry by entry, each held to the rules as a read of its own
/// path (see [`files::download`]). What is left out is recorded once the
/// stream ends, in a `file.withheld` record (in audit-only mode nothing is left
/// out, and the record says what would have been).
#[allow(clippy::too_many_arguments)]
pub async fn filter_download(
    gw: &Arc<Gateway>,
    caller: &Caller,
    request: &Classified,
    target: &Target,
    file: &FileContext,
    inspected: &Inspected,
    mut withheld_record: AuditRecord,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    use files::download::{DownloadScope, TarFilter, Withholder};

    let enforced = gw.mode == crate::config::Mode::Enforce;
    let Some(raw) = request.resource_path() else {
        return reply::error(
            StatusCode::BAD_GATEWAY,
            "portcullis: a download without a path cannot be filtered",
        );
    };
    // Entries below the requested path may lie in other mounts than it does.
    // They are taken from the target: the daemon is not asked now, since it
    // holds the container's lock until this archive has been read.
    let mounts = target.mounts.clone();
    let mut input = crate::stages::policy_input(caller, request, target, inspected, None);
    let decider = gw.decider.clone();
    let allowed = move |requested: &str, resolved: &str| {
        input.file = Some(FileContext {
            path: requested.to_string(),
            resolved_path: resolved.to_string(),
            mount: files::mount_info_for(&mounts, resolved),
            entries: Vec::new(),
        });
        decider.decide(&input).allowed
    };
    withheld_record.action = "file.withheld".into();
    withheld_record.allowed = false;
    withheld_record.enforced = enforced;
    let (mut parts, body) = resp.into_parts();
    // The filtered archive is shorter: its length is not the daemon's.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let download = Download {
        chunks: body.into_data_stream(),
        filter: TarFilter::new(),
        withholder: Withholder::new(
            DownloadScope::new(raw, &file.path, &file.resolved_path),
            allowed,
        ),
        enforced,
        record: Some(withheld_record),
        recorder: gw.recorder.clone(),
        done: false,
    };
    let frames = futures_util::stream::unfold(download, Download::next_frame);
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)))
}

/// One filtered download in flight.
struct Download<A> {
    chunks: BodyDataStream<Incoming>,
    filter: files::download::TarFilter,
    withholder: files::download::Withholder<A>,
    enforced: bool,
    record: Option<AuditRecord>,
    recorder: Arc<dyn crate::pipeline::Record>,
    done: bool,
}

type DownloadFrame = Result<Frame<Bytes>, BoxError>;

impl<A: FnMut(&str, &str) -> bool> Download<A> {
    async fn next_frame(mut self) -> Option<(DownloadFrame, Self)> {
        if self.done {
            return None;
        }
        loop {
            let failure = match self.chunks.next().await {
                Some(Ok(chunk)) => {
                    let mut out = BytesMut::new();
                    let enforced = self.enforced;
                    let withholder = &mut self.withholder;
                    let mut judge =
                        |e: &files::download::ArchiveEntry| withholder.judge(e) || !enforced;
                    match self.filter.push(&chunk, &mut out, &mut judge) {
                        // Empty frames are skipped: nothing to send yet.
                        Ok(()) if out.is_empty() => continue,
                        Ok(()) => return Some((Ok(Frame::data(out.freeze())), self)),
                        Err(e) => e.to_string(),
                    }
                }
                Some(Err(e)) => format!("reading the daemon's archive: {e}"),
                None => match self.filter.finish() {
                    Ok(()) => {
                        self.done = true;
                        self.write_record(None).await;
                        return None;
                    }
                    Err(e) => e.to_string(),
                },
            };
            // Cut the download off: the client sees a failed copy.
            self.done = true;
            self.write_record(Some(&failure)).await;
            tracing::warn!(error = %failure, "a docker cp download was cut off");
            let error: BoxError = format!("portcullis: {failure}").into();
            return Some((Err(error), self));
        }
    }

    /// Record what was withheld (and why the stream was cut off, if it was).
    async fn write_record(&mut self, failure: Option<&str>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let w = &self.withholder;
        if w.withheld_count == 0 && failure.is_none() {
            return;
        }
        let verb = if self.enforced {
            "withheld"
        } else {
            "would have withheld"
        };
        let more = w.withheld_count.saturating_sub(w.withheld.len());
        let mut reason = format!(
            "{verb} {} entries the rules refuse: {}",
            w.withheld_count,
            w.withheld.join(", ")
        );
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        record.reasons = vec![reason];
        if let Some(failure) = failure {
            record
                .reasons
                .push(format!("the download was cut off: {failure}"));
        }
        // Appended on a task of its own (its future is not `Sync`, a body's must
        // be); the stream waits for it, so the record is durable before the end.
        let recorder = self.recorder.clone();
        let appended = tokio::spawn(async move { recorder.append(record).await }).await;
        match appended {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a download's withheld entries could not be recorded")
            }
            Err(e) => {
                tracing::error!(error = %e, "a download's withheld entries could not be recorded")
            }
        }
    }
}
