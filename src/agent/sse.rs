//! Logs and events as Server-Sent Events: `GET /api/v1/containers/{id}/logs`
//! and `GET /api/v1/events`.
//!
//! Why SSE: a browser's `EventSource` reconnects by itself and resumes with
//! `Last-Event-ID`, through any HTTP proxy, where Docker's multiplexed log
//! stream and newline-delimited events need a client that knows them.
//!
//! Why a stream and no task: each response body is the daemon's stream mapped
//! to SSE frames (plus heartbeats), polled by the connection that writes it.
//! A stream adds no task or channel of its own (the daemon connection under
//! it runs as bollard's one connection task); when the client goes, hyper
//! drops the body, which drops the daemon's stream and closes its
//! connection. When the daemon ends the log (`follow=false`, the container
//! removed) the body ends. Memory per idle stream is mostly the two HTTP
//! connections' buffers (`cargo bench --bench agent` measures it beside a
//! proxied `docker logs -f`).
//!
//! A log line's `id:` is its timestamp (RFC 3339, nanoseconds, as the daemon
//! writes it): a client resuming with `Last-Event-ID: T` is sent the lines
//! after `T` (the daemon is asked from the second of `T`, and lines at or
//! before `T` are skipped; two lines with the very same nanosecond are one
//! position).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{EventsOptions, LogsOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::{existing_container, Agents, Stages};
use crate::classify::{Action, Classified};
use crate::decide::{self, Decide};
use crate::identify::Caller;
use crate::record::Decided;
use crate::reply::{self, BoxError, ProxyBody};
use crate::resolve::{Freshness, Resolver, Target};

/// The comment an idle stream sends every `heartbeat`.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// One SSE event. `data` is one line (compact JSON has no newline).
pub fn frame(event: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(event.len() + data.len() + 32);
    s.push_str("event: ");
    s.push_str(event);
    s.push('\n');
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `inner`, with a [`HEARTBEAT`] whenever it has been quiet for `every`
/// (never when `every` is zero). Ends when `inner` ends.
pub fn with_heartbeat<S>(inner: S, every: Duration) -> impl Stream<Item = Bytes> + Send
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    Heartbeat {
        inner: Box::pin(inner),
        sleep: (!every.is_zero()).then(|| Box::pin(tokio::time::sleep(every))),
        every,
    }
}

struct Heartbeat<S> {
    inner: Pin<Box<S>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    every: Duration,
}

impl<S: Stream<Item = Bytes>> Stream for Heartbeat<S> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let every = this.every;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                if let Some(sleep) = &mut this.sleep {
                    sleep.as_mut().reset(tokio::time::Instant::now() + every);
                }
                Poll::Ready(item)
            }
            Poll::Pending => {
                let Some(sleep) = &mut this.sleep else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                sleep.as_mut().reset(tokio::time::Instant::now() + every);
                Poll::Ready(Some(Bytes::from_static(HEARTBEAT)))
            }
        }
    }
}

/// A `Send` stream made `Sync` for [`ProxyBody`]: it is only ever polled
/// through `&mut`, so the mutex is never locked.
struct SyncStream<S>(Mutex<Pin<Box<S>>>);

impl<S: Stream> Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        inner.as_mut().poll_next(cx)
    }
}

/// A `text/event-stream` answer of `frames`, with heartbeats.
fn sse<S>(frames: S, heartbeat: Duration) -> Response<ProxyBody>
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let frames = with_heartbeat(
        frames.filter(|b| std::future::ready(!b.is_empty())),
        heartbeat,
    );
    let frames = SyncStream(Mutex::new(Box::pin(frames)));
    let body = StreamBody::new(frames.map(|b| Ok::<_, BoxError>(Frame::data(b))));
    reply::stream("text/event-stream", BodyExt::boxed(body))
}

fn error_frame(message: &str) -> Bytes {
    frame("error", None, &json!({ "message": message }).to_string())
}

fn bad_request(message: String) -> Response<ProxyBody> {
    reply::error(StatusCode::BAD_REQUEST, message)
}

fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// `since` as the daemon's `LogsOptions` takes it (whole seconds): a Unix
/// time (fractions dropped) or RFC 3339.
fn since_seconds(s: &str) -> Option<i32> {
    let whole = s.split('.').next().unwrap_or(s);
    if let Ok(n) = whole.parse::<i64>() {
        return i32::try_from(n).ok();
    }
    parse_rfc3339(s).and_then(|t| i32::try_from(t.unix_timestamp()).ok())
}

/// The log query: `tail` (a number or `all`), `follow`, `since`, `stdout`,
/// `stderr` (both by default). `timestamps` is accepted and always on: the
/// time is the event's `timestamp` and `id`.
pub struct LogQuery {
    pub options: LogsOptions,
    /// Lines at or before this are skipped (`Last-Event-ID`).
    pub after: Option<OffsetDateTime>,
}

pub fn log_query(request: &Classified, headers: &HeaderMap) -> Result<LogQuery, String> {
    let truthy = |v: &str| matches!(v, "1" | "true" | "True" | "TRUE" | "yes");
    let mut o = LogsOptions {
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: "all".to_string(),
        ..Default::default()
    };
    for (k, v) in &request.query {
        match k.as_str() {
            "tail" => {
                if v != "all" && v.parse::<u64>().is_err() {
                    return Err(format!(
                        "portcullis: tail must be a number or all, not {v:?}"
                    ));
                }
                o.tail = v.clone();
            }
            "follow" => o.follow = truthy(v),
            "stdout" => o.stdout = truthy(v),
            "stderr" => o.stderr = truthy(v),
            "since" => {
                o.since = since_seconds(v).ok_or_else(|| {
                    format!("portcullis: since must be a Unix time or RFC 3339, not {v:?}")
                })?
            }
            _ => {}
        }
    }
    let after = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let text = v.to_str().unwrap_or("");
            let t = parse_rfc3339(text).ok_or_else(|| {
                format!("portcullis: Last-Event-ID must be a log line's timestamp, not {text:?}")
            })?;
            // Resume: everything after the last line seen, whatever the tail.
            let secs = i32::try_from(t.unix_timestamp()).map_err(|e| e.to_string())?;
            o.since = o.since.max(secs);
            o.tail = "all".to_string();
            Some(t)
        }
    };
    Ok(LogQuery { options: o, after })
}

/// SSE frames for one piece of the daemon's log stream: each line an event
/// `log` with `id: <timestamp>` and `{timestamp, stream, message}`.
pub fn log_frames(output: &LogOutput, after: Option<OffsetDateTime>) -> Bytes {
    let (stream, message) = match output {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { .. } => return Bytes::new(),
    };
    let mut out = String::new();
    let text = String::from_utf8_lossy(message);
    for line in text.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (timestamp, message) = line.split_once(' ').unwrap_or((line, ""));
        if let Some(after) = after {
            match parse_rfc3339(timestamp) {
                Some(t) if t <= after => continue,
                _ => {}
            }
        }
        let data = json!({"timestamp": timestamp, "stream": stream, "message": message});
        out.push_str(
            std::str::from_utf8(&frame("log", Some(timestamp), &data.to_string())).unwrap_or(""),
        );
    }
    Bytes::from(out)
}

pub async fn logs(
    agents: &Agents,
    _stages: &Stages,
    req: Decided<'_>,
    headers: &HeaderMap,
) -> Response<ProxyBody> {
    let id = match existing_container(&req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let q = match log_query(req.request, headers) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let after = q.after;
    let frames = agents
        .docker
        .logs(&id, Some(q.options))
        .map(move |r| match r {
            Ok(out) => Ok(log_frames(&out, after)),
            Err(e) => Err(error_frame(&format!(
                "portcullis: reading the logs of {id}: {e}"
            ))),
        });
    sse(end_after_error(frames), agents.settings.heartbeat)
}

/// `Ok` frames, then the first `Err` frame, then the end.
fn end_after_error<S>(s: S) -> impl Stream<Item = Bytes> + Send
where
    S: Stream<Item = Result<Bytes, Bytes>> + Send,
{
    s.scan(false, |failed, r| {
        if *failed {
            return std::future::ready(None);
        }
        std::future::ready(Some(match r {
            Ok(b) => b,
            Err(b) => {
                *failed = true;
                b
            }
        }))
    })
}

/// Who is watching: what an event stream asks the decide stage for each event.
struct Watcher {
    decider: Arc<dyn Decide>,
    resolver: Arc<Resolver>,
    caller: Caller,
    request: Classified,
}

impl Watcher {
    fn sees(&self, t: &Target) -> bool {
        self.caller.admin
            || decide::may(
                &*self.decider,
                &self.caller,
                &self.request,
                t,
                Action::CONTAINER_INSPECT,
            )
    }

    /// The container an event names, by id (then by name); `None` (not
    /// shown) when it can no longer be found.
    async fn find(&self, refs: &[&str]) -> Option<Target> {
        for r in refs.iter().filter(|r| !r.is_empty()) {
            if let Some(t) = self.resolver.cached(r) {
                return Some(t);
            }
            if let Ok(t) = self.resolver.container(r, Freshness::Cached).await {
                if t.exists {
                    return Some(t);
                }
            }
        }
        None
    }

    /// Whether the caller may see the container `refs` names.
    async fn sees_container(&self, refs: &[&str]) -> bool {
        if self.caller.admin {
            return true;
        }
        match self.find(refs).await {
            Some(t) => self.sees(&t),
            // Fail closed: what cannot be placed is not shown.
            None => false,
        }
    }
}

/// A daemon container event as an SSE `container` event, if the caller may
/// see it.
fn container_event(w: &Watcher, ev: &bollard::models::EventMessage) -> Bytes {
    let Ok(v) = serde_json::to_value(ev) else {
        return Bytes::new();
    };
    let Some(mut t) = crate::filter::target_of_event(&v) else {
        return Bytes::new();
    };
    if t.name.is_none() {
        if let Some(known) = t.id.as_deref().and_then(|id| w.resolver.cached(id)) {
            t = known;
        }
    }
    if !w.sees(&t) {
        return Bytes::new();
    }
    let time = ev
        .time_nano
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    let mut data = json!({
        "id": t.id,
        "name": t.name,
        "action": ev.action,
        "time": time,
        "image": t.image,
    });
    if !t.labels.is_empty() {
        data["labels"] = json!(t.labels);
    }
    frame("container", None, &data.to_string())
}

/// A broadcast receiver as a stream of frames: `f` makes an event's frame
/// (empty: not shown); a receiver that fell behind says how much it missed.
fn broadcast_frames<T, F, Fut>(
    rx: broadcast::Receiver<T>,
    source: &'static str,
    f: F,
) -> impl Stream<Item = Bytes> + Send
where
    T: Clone + Send + 'static,
    F: Fn(T) -> Fut + Send + 'static,
    Fut: Future<Output = Bytes> + Send,
{
    futures_util::stream::unfold((rx, f), move |(mut rx, f)| async move {
        let out = match rx.recv().await {
            Ok(ev) => f(ev).await,
            Err(broadcast::error::RecvError::Lagged(n)) => frame(
                "lagged",
                None,
                &json!({"source": source, "missed": n}).to_string(),
            ),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((out, (rx, f)))
    })
}

pub async fn events(agents: &Agents, stages: &Stages, req: Decided<'_>) -> Response<ProxyBody> {
    let w = Arc::new(Watcher {
        decider: stages.decider.clone(),
        resolver: stages.resolver.clone(),
        caller: req.caller.clone(),
        request: req.request.clone(),
    });
    // Subscribed before the answer starts: nothing published after is lost.
    let (agent_rx, file_rx) = (agents.events.subscribe(), agents.file_events.subscribe());
    let filters =
        std::collections::HashMap::from([("type".to_string(), vec!["container".to_string()])]);
    let opts = EventsOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let wd = w.clone();
    // The daemon's stream ends the answer (a daemon restart: the client
    // reconnects); portcullis's own events ride along.
    let daemon = agents.docker.events(Some(opts)).map(move |r| match r {
        Ok(ev) => Ok(container_event(&wd, &ev)),
        Err(e) => Err(error_frame(&format!(
            "portcullis: reading the daemon's events: {e}"
        ))),
    });
    let daemon = end_after_error(daemon)
        .map(Some)
        .chain(futures_util::stream::once(std::future::ready(None)));
    let wa = w.clone();
    let agent = broadcast_frames(agent_rx, "agent", move |ev: super::AgentEvent| {
        let w = wa.clone();
        async move {
            let (id, name) = ev.container();
            if !w.sees_container(&[id, name]).await {
                return Bytes::new();
            }
            match serde_json::to_string(&ev) {
                Ok(data) => frame(ev.name(), None, &data),
                Err(_) => Bytes::new(),
            }
        }
    });
    let wf = w.clone();
    let files = broadcast_frames(file_rx, "files", move |ev: crate::files::FileChanged| {
        let w = wf.clone();
        async move {
            if !w.sees_container(&[&ev.container]).await {
                return Bytes::new();
            }
            match serde_json::to_string(&ev) {
                Ok(data) => frame("file-changed", None, &data),
                Err(_) => Bytes::new(),
            }
        }
    });
    let ours = futures_util::stream::select(agent, files).map(Some);
    let all = futures_util::stream::select(daemon, ours)
        .take_while(|x| std::future::ready(x.is_some()))
        .filter_map(std::future::ready);
    sse(all, agents.settings.heartbeat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_become_events_with_their_time_as_id() {
        let out = LogOutput::StdErr {
            message: Bytes::from_static(b"2026-01-31T10:44:55.000000001Z oops\n"),
        };
        let text = String::from_utf8(log_frames(&out, None).to_vec()).unwrap();
        assert_eq!(
            text,
            "event: log\nid: 2026-01-31T10:44:55.000000001Z\ndata: {\"timestamp\":\"2026-01-31T10:44:55.000000001Z\",\"stream\":\"stderr\",\"message\":\"oops\"}\n\n"
        );
        let after = parse_rfc3339("2026-01-31T10:44:55.000000001Z");
        assert!(
            log_frames(&out, after).is_empty(),
            "at the resume point: skipped"
        );
        let before = parse_rfc3339("2026-01-31T10:44:55Z");
        assert!(!log_frames(&out, before).is_empty());
        let tty = LogOutput::Console {
            message: Bytes::from_static(b"2026-01-31T10:44:56.5Z a b\r\n"),
        };
        let text = String::from_utf8(log_frames(&tty, None).to_vec()).unwrap();
        assert!(
            text.contains("\"stream\":\"stdout\",\"message\":\"a b\""),
            "{text}"
        );
    }

    #[test]
    fn since_takes_unix_or_rfc3339() {
        assert_eq!(since_seconds("1700000000"), Some(1_700_000_000));
        assert_eq!(since_seconds("1700000000.75"), Some(1_700_000_000));
        assert_eq!(since_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(since_seconds("yesterday"), None);
    }

    #[tokio::test]
    async fn idle_streams_send_heartbeats_and_end_with_their_source() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let inner =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            );
        let mut s = Box::pin(with_heartbeat(inner, Duration::from_millis(20)));
        assert_eq!(s.next().await.unwrap(), Bytes::from_static(HEARTBEAT));
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(s.next().await.unwrap(), Bytes::from_static(b"x"));
        drop(tx);
        assert!(s.next().await.is_none());
    }
}
