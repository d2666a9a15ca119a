//! What is refused before a request exists (HTTP/2 prior knowledge, a head
//! too large or malformed, a header timeout, connection limits): the
//! counters, the recordable kinds, and the hand-written answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::Connection;

/// Refusals made before a request exists: counted here (they become
/// metrics). Those of a connection that sent something are also recorded
/// ([`Refused`]); the rest are only counted. README.md lists which.
#[derive(Debug, Default)]
pub struct Refusals {
    /// An HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`).
    pub h2_preface: AtomicU64,
    /// A request head over `--max-header-bytes` (431).
    pub head_too_large: AtomicU64,
    /// A head hyper could not parse: a malformed request line, header or
    /// `Transfer-Encoding`, too many headers (400).
    pub malformed_head: AtomicU64,
    /// A head not complete within `--header-read-timeout`.
    pub header_timeout: AtomicU64,
    /// A connection over `--max-connections` (503).
    pub busy: AtomicU64,
    /// A connection over `--max-connections-per-caller` (503).
    pub caller_busy: AtomicU64,
}

impl Refusals {
    /// Each counter by name, for logs now and metrics later.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("h2_preface", get(&self.h2_preface)),
            ("head_too_large", get(&self.head_too_large)),
            ("malformed_head", get(&self.malformed_head)),
            ("header_timeout", get(&self.header_timeout)),
            ("busy", get(&self.busy)),
            ("caller_busy", get(&self.caller_busy)),
        ]
    }
}

/// A connection refused before hyper could hand over a request, but after it
/// sent something: the connection identifies a caller, so a record can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    H2Preface,
    HeadTooLarge,
    MalformedHead,
}

impl Refused {
    /// The record's action: no route was ever read, so a marker.
    pub fn action(self) -> &'static str {
        match self {
            Refused::H2Preface => "http.h2_preface",
            Refused::HeadTooLarge => "http.head_too_large",
            Refused::MalformedHead => "http.malformed",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refused::H2Preface => "HTTP/2 prior knowledge (h2c) is refused",
            Refused::HeadTooLarge => "the request head is larger than --max-header-bytes",
            Refused::MalformedHead => "the request head is not valid HTTP/1.1",
        }
    }
}

/// Records a [`Refused`] connection (the pipeline's record stage).
pub type RefusalRecorder =
    Arc<dyn Fn(Arc<Connection>, Refused) -> BoxFuture<'static, ()> + Send + Sync>;

/// Count what hyper refused before a request existed (it has answered
/// 431 or 400 itself).
pub(super) fn count_refused_head(e: &hyper::Error, refusals: &Refusals) -> Option<Refused> {
    if e.is_parse_too_large() {
        refusals.head_too_large.fetch_add(1, Ordering::Relaxed);
        Some(Refused::HeadTooLarge)
    } else if e.is_parse() {
        refusals.malformed_head.fetch_add(1, Ordering::Relaxed);
        Some(Refused::MalformedHead)
    } else {
        if e.is_timeout() {
            refusals.header_timeout.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

/// A complete HTTP/1.1 error response written by hand, for refusals that happen
/// before hyper owns the connection.
pub(super) fn raw_error(status: u16, reason: &str, message: &str) -> String {
    let body = serde_json::json!({ "message": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
