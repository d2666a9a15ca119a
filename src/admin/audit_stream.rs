//! `GET /api/v1/audit/stream`: the decision log as JSON Lines, each record with
//! its chain hash and its predecessor's ([`crate::record::ChainedRecord`]), from
//! a seq on; with `follow=true` it stays open and sends records as they are
//! appended.
//!
//! Why one streamed request: `audit tail --follow` used to poll the query API
//! three times a second, and every poll was decided and recorded as an
//! `audit.read`, burying the records it was there to show. A stream is decided
//! and recorded once. `audit export` uses it too (one record, not one per page),
//! and gets the hashes that make the file verify on its own.
//!
//! How nothing is missed: the handler subscribes to the log's broadcast of
//! appended records BEFORE it reads the store, then sends everything from `from`
//! on out of the store (the catch-up). After that each broadcast, or a `Lagged`
//! (a follower that fell behind), is only a wake-up: the records after the last
//! one sent are read from the store again, where every acknowledged record is
//! (the read waits for the applier), with its hash. A record appended between the
//! subscription and the catch-up is in the store read or wakes the follower, and
//! seqs at or below the last one sent are never sent twice.
//!
//! Parameters: `from` (seq, default 1, or the next record when following),
//! `last` (start with the newest N records instead), `follow` (`true`|`false`).
//! Unknown or repeated parameters are refused, as in the query API. A store
//! error after the answer started is sent as a last line `{"error": "portcullis: …"}`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::record::{AuditLog, AuditRecord};
use crate::reply::{self, BoxError, ProxyBody};

/// Lines are sent in chunks of about this many bytes during a catch-up.
const CHUNK_BYTES: usize = 64 * 1024;

/// Where a stream starts and whether it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    pub start: Start,
    pub follow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The default: seq 1 (export), or the next record (follow).
    Default,
    From(u64),
    Last(u64),
}

impl StreamParams {
    pub fn from_query_pairs(pairs: &[(String, String)]) -> Result<StreamParams, String> {
        let mut p = StreamParams {
            start: Start::Default,
            follow: false,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            if seen.contains(&k.as_str()) {
                return Err(format!("audit stream parameter {k}: given more than once"));
            }
            seen.push(k);
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("audit stream parameter {k}: {v:?} is not a number"))
            };
            match k.as_str() {
                "from" | "last" if p.start != Start::Default => {
                    return Err("audit stream parameters from and last exclude each other".into())
                }
                "from" => p.start = Start::From(num()?),
                "last" => p.start = Start::Last(num()?),
                "follow" => {
                    p.follow = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(format!(
                                "audit stream parameter follow: {v:?} is not true or false"
                            ))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "audit stream parameter {other}: unknown (expected from, last, follow)"
                    ))
                }
            }
        }
        Ok(p)
    }

    /// The first seq to send, given the log's head.
    fn first_seq(&self, head: u64) -> u64 {
        match self.start {
            Start::From(s) => s.max(1),
            Start::Last(n) => head.saturating_sub(n) + 1,
            Start::Default if self.follow => head + 1,
            Start::Default => 1,
        }
    }
}

/// The streamed answer. Subscribes before anything is read (see the module docs).
pub fn respond(log: &AuditLog, params: StreamParams) -> Response<ProxyBody> {
    let events = log.subscribe();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(log.clone(), params, events, tx));
    let body = http_body_util::BodyExt::boxed(ChannelBody(rx));
    reply::stream("application/x-ndjson", body)
}

/// A bad parameter, in Docker's error format.
pub fn bad_request(message: String) -> Response<ProxyBody> {
    reply::error(StatusCode::BAD_REQUEST, format!("portcullis: {message}"))
}

async fn run(
    log: AuditLog,
    params: StreamParams,
    mut events: broadcast::Receiver<AuditRecord>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut next = params.first_seq(log.head().0);
    match send_from(&log, next, &tx).await {
        Some(n) => next = n,
        None => return,
    }
    if !params.follow {
        return;
    }
    // The highest seq announced. A record is announced when it is appended
    // and readable a moment later, once applied: until the store has caught
    // up with the announcement, look again every 20 ms (else the last records
    // of a burst would wait for the next append to be shown).
    let mut announced = 0u64;
    loop {
        let behind = next <= announced;
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)), if behind => {}
            event = events.recv() => match event {
                Ok(rec) if rec.seq < next => continue,
                Ok(rec) => announced = announced.max(rec.seq),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    announced = announced.max(log.head().0);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
        match send_from(&log, next, &tx).await {
            Some(n) => next = n,
            None => return,
        }
    }
}

/// Send every stored record from `from` on; the seq after the last one sent, or
/// None when the stream is over (the client left, or an error line was sent).
async fn send_from(log: &AuditLog, from: u64, tx: &mpsc::Sender<Bytes>) -> Option<u64> {
    let (log, tx) = (log.clone(), tx.clone());
    tokio::task::spawn_blocking(move || {
        let mut next = from;
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        for item in log.export_chained(from) {
            match item {
                Ok(line) => {
                    next = line.record.seq + 1;
                    // Plain strings, numbers and bools: serializing cannot fail.
                    serde_json::to_writer(&mut chunk, &line).ok()?;
                    chunk.push(b'\n');
                    if chunk.len() >= CHUNK_BYTES {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                        tx.blocking_send(Bytes::from(full)).ok()?;
                    }
                }
                Err(e) => {
                    let msg =
                        json!({ "error": format!("portcullis: audit stream at seq {next}: {e}") });
                    chunk.extend_from_slice(msg.to_string().as_bytes());
                    chunk.push(b'\n');
                    let _ = tx.blocking_send(Bytes::from(chunk));
                    return None;
                }
            }
        }
        if !chunk.is_empty() {
            tx.blocking_send(Bytes::from(chunk)).ok()?;
        }
        Some(next)
    })
    .await
    .ok()
    .flatten()
}

/// A response body fed by a channel; ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &[(&str, &str)]) -> Result<StreamParams, String> {
        let pairs: Vec<(String, String)> = p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StreamParams::from_query_pairs(&pairs)
    }

    #[test]
    fn parameters_choose_the_first_seq() {
        assert_eq!(parse(&[]).unwrap().first_seq(50), 1);
        assert_eq!(parse(&[("follow", "true")]).unwrap().first_seq(50), 51);
        assert_eq!(parse(&[("from", "7")]).unwrap().first_seq(50), 7);
        assert_eq!(
            parse(&[("last", "10"), ("follow", "true")])
                .unwrap()
                .first_seq(50),
            41
        );
        assert_eq!(parse(&[("last", "100")]).unwrap().first_seq(50), 1);
        for bad in [
            &[("from", "x")][..],
            &[("from", "1"), ("last", "2")],
            &[("follow", "maybe")],
            &[("colour", "red")],
            &[("from", "1"), ("from", "2")],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
