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

/// Read a body whole, up to `limit` (stub until the inspect module lands).
pub async fn read_bounded<B>(body: B, _headers: &http::HeaderMap, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let collected = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| BodyError::Read(e.to_string()))?;
    Ok(collected.to_bytes())
}

/// Decode a read body (stub until the inspect module lands).
pub fn inspect(
    _route: &crate::classify::Route,
    _method: &str,
    _headers: &http::HeaderMap,
    query: &[(String, String)],
    bytes: Bytes,
) -> Result<Inspected, BodyError> {
    let canonical = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| BodyError::Json(e.to_string()))?
    };
    Ok(Inspected { bytes, canonical, sha256: None, form: query.to_vec() })
}
