//! Inspect: read the bodies that grant power, decode them as the daemon does,
//! and hand the policy a canonical view of exactly the bytes that are forwarded.
//!
//! Why: every authorization bypass of the past came from the checker seeing
//! other bytes than the daemon decoded (chunked bodies skipped, bodies over a
//! size skipped, keys matched with exact case). So the body is read whole up to
//! a bound, decoded with Go's `encoding/json` semantics (case-insensitive keys,
//! last scalar wins, duplicate objects merged; non-ASCII spellings of field
//! names, which Go versions fold differently, refused), and the same `Bytes`
//! are forwarded, with the headers they were read by (`Connection` may not
//! name an end-to-end header, see [`check_connection_header`]).
//!
//! Where the rules come from (the daemon's `httputils`):
//! * a non-empty JSON body needs `Content-Type: application/json` (media type
//!   compared after Go's `mime.ParseMediaType` lower-casing; parameters such as
//!   `charset` allowed); a present but different content type is refused even
//!   for an empty body (`CheckForJSON`); Content-Length 0 is an empty body;
//! * for POST, PUT and PATCH with `application/x-www-form-urlencoded`, Go's
//!   `ParseForm` reads the body on EVERY route and its values take precedence
//!   over the query string; so the caller must read the body whenever
//!   [`must_read_body`] says so, and [`Inspected::form`] lists body pairs first;
//! * bodies are never re-serialized: the policy sees the decoding of exactly
//!   the bytes that are forwarded.
//!
//! Media-type parameters that Go would reject or treat specially (malformed,
//! duplicated, RFC 2231 `*` continuations) are refused whenever the media type
//! matters (JSON routes, form bodies), because Go's answer there depends on
//! details we would rather not have to match.
//!
//! Use from the pipeline, after classify:
//! 1. `if must_read_body(route, method, headers)?` then
//!    `bytes = read_bounded(body, headers, limit).await?`, else leave the body
//!    to stream and pass `Bytes::new()`;
//! 2. `inspected = inspect(route, method, headers, &classified.query, bytes)?`;
//! 3. read parameters with `classify::path::form_get(&inspected.form, key)`
//!    (never from the raw query), show `inspected.canonical` to the policy,
//!    record `inspected.sha256`, forward `inspected.bytes` unchanged (with its
//!    Content-Length) when the body was read.
//!
//! The canonical view (see [`gojson`]): known fields under their Go names in
//! schema order, nil or never-set fields absent, `strslice` fields (Cmd,
//! Entrypoint, CapAdd, ...) always arrays, unknown keys kept under Go's fold
//! of the key (upper-case ASCII, e.g. `FOOBAR`). Actions without a schema
//! ([`schema_for`]) decode permissively with every key folded that way.

pub mod gojson;

pub mod schema;
mod stage;

mod media_type;
mod read;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::classify::{BodyRule, Route};
use media_type::{check_json_content_type, content_type_error, is_form_body};

pub use gojson::{decode, Schema};
pub use read::read_bounded;
pub use schema::schema_for;
pub use stage::{check_connection_header, is_upgrade, request};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

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

/// Whether the caller must read the body (with [`read_bounded`]) before
/// [`inspect`]: JSON routes always, any route when Go's `ParseForm` would
/// read a form body. Refuses early what [`inspect`] would refuse anyway
/// (a form body on a JSON or tar route).
pub fn must_read_body(route: &Route, method: &str, headers: &HeaderMap) -> Result<bool, BodyError> {
    let form = is_form_body(method, headers)?;
    match route.body {
        BodyRule::Json if form => Err(content_type_error(JSON, headers)),
        BodyRule::Tar if form => Err(content_type_error("application/x-tar", headers)),
        BodyRule::Json => Ok(true),
        _ => Ok(form),
    }
}

/// Decode and describe a body read by [`read_bounded`] (or an empty `Bytes`
/// when [`must_read_body`] said no), for the route it was sent to.
pub fn inspect(
    route: &Route,
    method: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
    bytes: Bytes,
) -> Result<Inspected, BodyError> {
    let form_body = is_form_body(method, headers)?;
    match route.body {
        BodyRule::Json => {
            check_json_content_type(headers, bytes.is_empty())?;
            let canonical = if bytes.is_empty() {
                Value::Null
            } else {
                decode(&bytes, schema_for(route.action))?
            };
            let sha256 = Some(sha256_hex(&bytes));
            Ok(Inspected {
                bytes,
                canonical,
                sha256,
                form: query.to_vec(),
            })
        }
        BodyRule::Tar if form_body => Err(content_type_error("application/x-tar", headers)),
        _ if form_body => {
            let mut form = parse_go_query(&bytes)?;
            form.extend_from_slice(query);
            let sha256 = Some(sha256_hex(&bytes));
            Ok(Inspected {
                bytes,
                canonical: Value::Null,
                sha256,
                form,
            })
        }
        _ => Ok(Inspected {
            bytes,
            canonical: Value::Null,
            sha256: None,
            form: query.to_vec(),
        }),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Go's `url.ParseQuery` over a form body: `&`-separated, `;` is an error,
/// `+` is a space, bad `%` escapes are errors. Non-UTF-8 results are refused
/// (the policy could not see them as strings).
pub fn parse_go_query(body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError::Form("form body is not valid UTF-8".into()))?;
    // The same parser as the query string: one reading of Go's ParseQuery.
    crate::classify::path::parse_query(text).map_err(|e| BodyError::Form(e.to_string()))
}
