//! Inspect: read the bodies that grant power, decode them as the daemon does,
//! and hand the policy a canonical view of exactly the bytes that are forwarded.
//!
//! Why: every authorization bypass of the past came from the checker seeing
//! other bytes than the daemon decoded (chunked bodies skipped, bodies over a
//! size skipped, keys matched with exact case). So the body is read whole up to
//! a bound, decoded with Go's `encoding/json` semantics (case-insensitive keys
//! with Unicode simple folding, last scalar wins, duplicate objects merged), and
//! the same `Bytes` are forwarded.
//!
//! (Skeleton: the inspect helper fills in `gojson` and the rules.)

pub mod gojson;

use bytes::Bytes;
use serde_json::Value;

/// What inspection hands on: the exact bytes to forward and what they mean.
#[derive(Debug, Clone, Default)]
pub struct Inspected {
    /// Exactly the bytes that will be forwarded upstream.
    pub bytes: Bytes,
    /// The body as the daemon decodes it, with canonical key names; `Null` when
    /// the route's body is not inspected or is empty.
    pub canonical: Value,
    /// SHA-256 (hex) of `bytes`, for inspected bodies.
    pub sha256: Option<String>,
    /// Form values merged as Go's `ParseForm` does: body values first, then query.
    pub form: Vec<(String, String)>,
}

/// Why a body is refused. Each maps to a 4xx in Docker's error format.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the inspection limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("chunked or unbounded request body on a route whose body must be inspected; send Content-Length")]
    Unbounded,
    #[error("Content-Type must be {expected}, got {got:?}")]
    ContentType { expected: &'static str, got: String },
    #[error("invalid JSON body: {0}")]
    Json(String),
    #[error("trailing data after the JSON body")]
    TrailingData,
    #[error("invalid form body: {0}")]
    Form(String),
    #[error("error reading request body: {0}")]
    Read(String),
}
