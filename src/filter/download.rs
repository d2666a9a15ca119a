//! A `docker cp` download, filtered entry by entry.
//!
//! Why here: the daemon's tar is passed on as it streams, each entry held to
//! the rules as a read of its own path (see [`crate::files::download`]); what
//! is left out is recorded once the stream ends.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::response::Context;
use crate::classify::Action;
use crate::decide::{FileContext, PolicyInput};
use crate::files;
use crate::record::{AuditRecord, Decided, Record};
use crate::reply::{self, BoxError, ProxyBody};

/// A `docker cp` download (`GET /containers/{id}/archive`) the daemon answered:
/// pass its tar on entry by entry, each held to the rules as a read of its own
/// path (see [`files::download`]). What is left out is recorded once the
/// stream ends, in a `file.withheld` record (in audit-only mode nothing is left
/// out, and the record says what would have been).
pub(super) async fn filter(
    cx: Context<'_>,
    req: &Decided<'_>,
    file: &FileContext,
    mut withheld_record: AuditRecord,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    use files::download::{DownloadScope, TarFilter, Withholder};

    let (request, target) = (req.request, req.target);
    let enforced = cx.enforced;
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
    let mut input = PolicyInput::of(req.caller, request, target, req.inspected, None);
    let decider = cx.decider.clone();
    let allowed = move |requested: &str, resolved: &str| {
        input.file = Some(FileContext {
            path: requested.to_string(),
            resolved_path: resolved.to_string(),
            mount: files::mount_info_for(&mounts, resolved),
            entries: Vec::new(),
        });
        decider.decide(&input).allowed
    };
    withheld_record.action = Action::FILE_WITHHELD.to_string();
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
        recorder: cx.recorder.clone(),
        done: false,
    };
    // The body streams after the handler returned: keep the request's span.
    let span = tracing::Span::current();
    let frames = futures_util::stream::unfold(download, move |d| {
        tracing::Instrument::instrument(d.next_frame(), span.clone())
    });
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)))
}

/// One filtered download in flight.
struct Download<A> {
    chunks: BodyDataStream<Incoming>,
    filter: files::download::TarFilter,
    withholder: files::download::Withholder<A>,
    enforced: bool,
    record: Option<AuditRecord>,
    recorder: Arc<dyn Record>,
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
