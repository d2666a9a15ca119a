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
//! name an end-to-end header, see [`crate::forward::check_connection_header`]).
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

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::classify::{BodyRule, Route};

pub use gojson::{decode, Schema};
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

/// Read a request body whole, refusing what cannot be bounded.
///
/// Why so strict: CVE-2024-41110 (chunked bodies and Content-Length 0 hidden
/// from the checker) and CVE-2026-34040 (large bodies skipped). A body without
/// Content-Length (chunked, `Transfer-Encoding`) is refused as
/// [`BodyError::Unbounded`]; a declared length over `limit` is refused before
/// reading; at most one frame past the declared length or the limit is read;
/// a body shorter or longer than declared is a [`BodyError::Read`].
/// Only call this on routes whose body is inspected ([`must_read_body`]).
pub async fn read_bounded<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Data: Buf,
    B::Error: fmt::Display,
{
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(BodyError::Unbounded);
    }
    let declared = match content_length(headers)? {
        Some(n) => n,
        // No length: only a body that is already known to be empty is fine
        // (hyper's `Incoming` for a request without Content-Length or TE).
        None if body.is_end_stream() => return Ok(Bytes::new()),
        None => return Err(BodyError::Unbounded),
    };
    if declared > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let declared = declared as usize;
    let mut body = std::pin::pin!(body);
    let mut single: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        // Trailers carry no body bytes (and cannot come with Content-Length).
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let n = data.remaining();
        if n == 0 {
            continue;
        }
        total = total.saturating_add(n);
        if total > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if total > declared {
            return Err(BodyError::Read(format!(
                "body longer than its Content-Length of {declared} bytes"
            )));
        }
        let chunk = data.copy_to_bytes(n);
        // The common case (one frame) stays zero-copy.
        match (&mut single, &mut joined) {
            (None, None) => single = Some(chunk),
            (Some(first), None) => {
                let mut buf = BytesMut::with_capacity(declared);
                buf.extend_from_slice(first);
                buf.extend_from_slice(&chunk);
                single = None;
                joined = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    if total != declared {
        return Err(BodyError::Read(format!(
            "body ended after {total} of the {declared} bytes its Content-Length declares"
        )));
    }
    Ok(match (single, joined) {
        (_, Some(buf)) => buf.freeze(),
        (Some(b), None) => b,
        (None, None) => Bytes::new(),
    })
}

/// The declared Content-Length; several headers must agree and be plain digits.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, BodyError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let bytes = value.as_bytes();
        let parsed = (!bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                BodyError::Read(format!(
                    "invalid Content-Length {:?}",
                    String::from_utf8_lossy(bytes)
                ))
            })?;
        if found.is_some_and(|f| f != parsed) {
            return Err(BodyError::Read("conflicting Content-Length headers".into()));
        }
        found = Some(parsed);
    }
    Ok(found)
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
                decode(&bytes, schema_for(route.action.as_str()))?
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

fn content_type_error(expected: &'static str, headers: &HeaderMap) -> BodyError {
    let got = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    BodyError::ContentType { expected, got }
}

/// The daemon's `CheckForJSON`: no Content-Type is fine only for an empty
/// body; otherwise the media type must be `application/json`.
fn check_json_content_type(headers: &HeaderMap, empty: bool) -> Result<(), BodyError> {
    let Some(raw) = headers.get(CONTENT_TYPE) else {
        return if empty {
            Ok(())
        } else {
            Err(content_type_error(JSON, headers))
        };
    };
    if raw.as_bytes().is_empty() && empty {
        return Ok(());
    }
    match parse_media_type(raw.as_bytes()) {
        MediaType {
            essence: Some(essence),
            params_ok: true,
        } if essence == JSON => Ok(()),
        _ => Err(content_type_error(JSON, headers)),
    }
}

/// Would Go's `ParseForm` parse this request's body as a form? (POST, PUT or
/// PATCH with the form media type.) A form media type with odd parameters is
/// refused: Go still parses the body then, and we prefer not to guess.
fn is_form_body(method: &str, headers: &HeaderMap) -> Result<bool, BodyError> {
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        return Ok(false);
    }
    // Go's Header.Get: the first value.
    let Some(raw) = headers.get(CONTENT_TYPE) else {
        return Ok(false);
    };
    match parse_media_type(raw.as_bytes()) {
        MediaType {
            essence: Some(essence),
            params_ok,
        } if essence == FORM => {
            if params_ok {
                Ok(true)
            } else {
                Err(content_type_error(FORM, headers))
            }
        }
        _ => Ok(false),
    }
}

/// The result of Go's `mime.ParseMediaType` as far as we use it.
#[derive(Debug, PartialEq, Eq)]
struct MediaType {
    /// The lower-cased media type; `None` when Go returns "" (no valid type).
    essence: Option<String>,
    /// Parameters are well-formed, unique and without `*` continuations.
    params_ok: bool,
}

fn parse_media_type(raw: &[u8]) -> MediaType {
    // Go lower-cases per rune with simple mappings; invalid UTF-8 becomes
    // U+FFFD, which is no token character, so such a type is invalid.
    let text = String::from_utf8_lossy(raw);
    let (base, params) = match text.find(';') {
        Some(i) => (&text[..i], &text[i..]),
        None => (&text[..], ""),
    };
    let lowered: String = base.chars().map(gojson::simple_lower).collect();
    let essence = lowered.trim_matches(char::is_whitespace);
    if !valid_disposition(essence) {
        return MediaType {
            essence: None,
            params_ok: false,
        };
    }
    MediaType {
        essence: Some(essence.to_string()),
        params_ok: media_params_ok(params),
    }
}

fn is_token_char(c: char) -> bool {
    c > ' ' && c < '\u{7f}' && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Go's `consumeToken`: the longest prefix of token characters.
fn take_token(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// Go's `checkMediaTypeDisposition`: `token` or `token/token`.
fn valid_disposition(s: &str) -> bool {
    let (kind, rest) = take_token(s);
    if kind.is_empty() {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return false;
    };
    let (subtype, rest) = take_token(rest);
    !subtype.is_empty() && rest.is_empty()
}

/// Go's parameter loop, strict: any parse failure, duplicate name or RFC 2231
/// continuation makes the parameters not OK (a trailing `;` is fine).
fn media_params_ok(mut rest: &str) -> bool {
    let mut seen: Vec<String> = Vec::new();
    loop {
        rest = rest.trim_start_matches(char::is_whitespace);
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix(';') else {
            return false;
        };
        let after = after.trim_start_matches(char::is_whitespace);
        if after.is_empty() {
            return true;
        }
        let (name, after) = take_token(after);
        if name.is_empty() || name.contains('*') {
            return false;
        }
        let name = name.to_ascii_lowercase();
        let after = after.trim_start_matches(char::is_whitespace);
        let Some(after) = after.strip_prefix('=') else {
            return false;
        };
        let after = after.trim_start_matches(char::is_whitespace);
        let Some(after) = skip_param_value(after) else {
            return false;
        };
        if seen.contains(&name) {
            return false;
        }
        seen.push(name);
        rest = after;
    }
}

/// A token or a quoted string (no CR/LF inside); returns what follows.
fn skip_param_value(s: &str) -> Option<&str> {
    if let Some(quoted) = s.strip_prefix('"') {
        let bytes = quoted.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => return Some(&quoted[i + 1..]),
                b'\\'
                    if i + 1 < bytes.len()
                        && "()<>@,;:\\\"/[]?=".contains(bytes[i + 1] as char) =>
                {
                    i += 2
                }
                b'\r' | b'\n' => return None,
                _ => i += 1,
            }
        }
        None
    } else {
        let (token, rest) = take_token(s);
        (!token.is_empty()).then_some(rest)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{ResourceKind, Service};
    use bytes::Bytes;
    use http::HeaderValue;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;
    use serde_json::json;

    const LIMIT: usize = 4 * 1024 * 1024;

    fn route(action: &'static str, body: BodyRule) -> Route {
        Route {
            method: "POST",
            pattern: "/test",
            action: crate::classify::Action::from_name(action).expect("a known action"),
            kind: ResourceKind::Container,
            body,
            hijack: false,
            tunnel: false,
            service: Service::Docker,
            handler: crate::classify::Handler::Daemon,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    fn json_headers(len: usize) -> HeaderMap {
        headers(&[
            ("content-type", "application/json"),
            ("content-length", &len.to_string()),
        ])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn read(body: impl Into<Bytes>, h: &HeaderMap, limit: usize) -> Result<Bytes, BodyError> {
        block_on(read_bounded(Full::new(body.into()), h, limit))
    }

    #[test]
    fn read_bounded_returns_the_exact_bytes() {
        let body = Bytes::from_static(br#"{"Image":"x"}"#);
        let got = read(body.clone(), &json_headers(body.len()), LIMIT).unwrap();
        assert_eq!(got, body);
        // Zero-copy for a single frame.
        assert_eq!(got.as_ptr(), body.as_ptr());
    }

    #[test]
    fn read_bounded_refuses_too_large() {
        let big = vec![b' '; 5 * 1024 * 1024];
        let err = read(big.clone(), &json_headers(big.len()), LIMIT).unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: LIMIT }), "{err}");
        // A lying Content-Length does not help: past the limit the bytes are
        // TooLarge, below it they are a length mismatch.
        let err = read(big.clone(), &json_headers(100), LIMIT).unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
        let err = read(&b"{} "[..], &json_headers(2), LIMIT).unwrap_err();
        assert!(matches!(err, BodyError::Read(_)), "{err}");
        let frames = (0..6).map(|_| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b' '; 1024 * 1024])))
        });
        let stream = StreamBody::new(futures_util::stream::iter(frames));
        let err = block_on(read_bounded(stream, &json_headers(LIMIT), LIMIT)).unwrap_err();
        assert!(
            matches!(err, BodyError::TooLarge { .. } | BodyError::Read(_)),
            "{err}"
        );
    }

    #[test]
    fn read_bounded_refuses_unbounded_bodies() {
        // No Content-Length with a body present (chunked).
        let err = read(
            &b"{}"[..],
            &headers(&[("content-type", "application/json")]),
            LIMIT,
        )
        .unwrap_err();
        assert!(matches!(err, BodyError::Unbounded), "{err}");
        let err = read(
            &b"{}"[..],
            &headers(&[("transfer-encoding", "chunked"), ("content-length", "2")]),
            LIMIT,
        )
        .unwrap_err();
        assert!(matches!(err, BodyError::Unbounded), "{err}");
        // No Content-Length and no body: empty, fine.
        assert_eq!(
            read(Bytes::new(), &HeaderMap::new(), LIMIT).unwrap(),
            Bytes::new()
        );
    }

    #[test]
    fn read_bounded_checks_content_length() {
        assert_eq!(
            read(Bytes::new(), &json_headers(0), LIMIT).unwrap(),
            Bytes::new()
        );
        // Content-Length 0 but bytes arrive: mismatch.
        assert!(matches!(
            read(&b"{}"[..], &json_headers(0), LIMIT),
            Err(BodyError::Read(_))
        ));
        // Shorter than declared.
        assert!(matches!(
            read(&b"{}"[..], &json_headers(3), LIMIT),
            Err(BodyError::Read(_))
        ));
        // Garbage or conflicting lengths.
        for bad in [
            &[("content-length", "+2")][..],
            &[("content-length", "2"), ("content-length", "3")][..],
        ] {
            assert!(matches!(
                read(&b"{}"[..], &headers(bad), LIMIT),
                Err(BodyError::Read(_))
            ));
        }
        // Several frames are joined in order.
        let frames = ["{\"Im", "age\":", "\"x\"}"].map(|s| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(s.as_bytes())))
        });
        let stream = StreamBody::new(futures_util::stream::iter(frames));
        let got = block_on(read_bounded(stream, &json_headers(13), LIMIT)).unwrap();
        assert_eq!(&got[..], br#"{"Image":"x"}"#);
    }

    #[test]
    fn inspect_json_body() {
        let r = route("container.create", BodyRule::Json);
        let body = Bytes::from_static(br#"{"hostconfig":{"privileged":true}}"#);
        let query = vec![("name".to_string(), "web".to_string())];
        let out = inspect(&r, "POST", &json_headers(body.len()), &query, body.clone()).unwrap();
        assert_eq!(out.canonical, json!({"HostConfig": {"Privileged": true}}));
        assert_eq!(out.bytes, body);
        assert_eq!(
            out.bytes.as_ptr(),
            body.as_ptr(),
            "bytes must be forwarded as received"
        );
        assert_eq!(
            out.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&body)).as_str())
        );
        assert_eq!(out.form, query);
        // Known digest of "{}".
        let out = inspect(&r, "POST", &json_headers(2), &[], Bytes::from_static(b"{}")).unwrap();
        assert_eq!(
            out.sha256.as_deref(),
            Some("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        );
    }

    #[test]
    fn inspect_json_content_types() {
        let r = route("container.create", BodyRule::Json);
        let body = Bytes::from_static(b"{}");
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            " application/json ;charset=\"utf-8\";",
        ] {
            let h = headers(&[("content-type", ok)]);
            assert!(inspect(&r, "POST", &h, &[], body.clone()).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset",
            "application/json; a=1; a=2",
            "application/jsonx",
            "application/json/x",
            "",
        ] {
            let h = headers(&[("content-type", bad)]);
            let err = inspect(&r, "POST", &h, &[], body.clone()).unwrap_err();
            assert!(matches!(err, BodyError::ContentType { .. }), "{bad}: {err}");
        }
        // No content type with a body: refused, like CheckForJSON.
        let err = inspect(&r, "POST", &HeaderMap::new(), &[], body.clone()).unwrap_err();
        assert!(matches!(err, BodyError::ContentType { .. }), "{err}");
        // Empty body: Null, with or without the JSON content type; a wrong one is refused.
        let out = inspect(&r, "POST", &HeaderMap::new(), &[], Bytes::new()).unwrap();
        assert_eq!(out.canonical, Value::Null);
        let out = inspect(&r, "POST", &json_headers(0), &[], Bytes::new()).unwrap();
        assert_eq!(out.canonical, Value::Null);
        assert!(out.sha256.is_some());
        let h = headers(&[("content-type", "text/plain")]);
        assert!(inspect(&r, "POST", &h, &[], Bytes::new()).is_err());
    }

    #[test]
    fn inspect_json_refusals() {
        let r = route("container.create", BodyRule::Json);
        let h = headers(&[("content-type", "application/json")]);
        let err = inspect(&r, "POST", &h, &[], Bytes::from_static(b"{}{}")).unwrap_err();
        assert!(matches!(err, BodyError::TrailingData), "{err}");
        let err = inspect(
            &r,
            "POST",
            &h,
            &[],
            Bytes::from_static(br#"{"HostConfig":{"Privileged":"true"}}"#),
        )
        .unwrap_err();
        assert!(matches!(err, BodyError::Json(_)), "{err}");
        assert!(inspect(&r, "POST", &h, &[], Bytes::from_static(b"{} ")).is_ok());
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn form_body_takes_precedence_over_query() {
        let r = route("image.pull", BodyRule::Form);
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let query = q(&[("fromImage", "allowed"), ("tag", "1")]);
        let out = inspect(
            &r,
            "POST",
            &h,
            &query,
            Bytes::from_static(b"fromImage=evil%2Fimage&x=a+b"),
        )
        .unwrap();
        assert_eq!(
            crate::classify::path::form_get(&out.form, "fromImage"),
            Some("evil/image")
        );
        assert_eq!(crate::classify::path::form_get(&out.form, "tag"), Some("1"));
        assert_eq!(crate::classify::path::form_get(&out.form, "x"), Some("a b"));
        assert_eq!(out.canonical, Value::Null);
        assert!(out.sha256.is_some());
        // Any route, any of POST/PUT/PATCH: Go's ParseForm reads the body.
        let r = route("container.start", BodyRule::Ignored);
        let out = inspect(&r, "PUT", &h, &[], Bytes::from_static(b"a=1")).unwrap();
        assert_eq!(out.form, q(&[("a", "1")]));
        // Not for GET, nor for another content type.
        let out = inspect(&r, "GET", &h, &query, Bytes::from_static(b"fromImage=evil")).unwrap();
        assert_eq!(out.form, query);
        let plain = headers(&[("content-type", "text/plain")]);
        let out = inspect(
            &r,
            "POST",
            &plain,
            &query,
            Bytes::from_static(b"fromImage=evil"),
        )
        .unwrap();
        assert_eq!(out.form, query);
        assert!(out.sha256.is_none());
    }

    /// Checked against dockerd 20.10.24 with `POST /images/create?fromImage=Q`
    /// and body `fromImage=B`: the daemon pulled B for the plain, the U+0130 and
    /// the `; charset` variants, Q for `text/plain` and duplicated parameters;
    /// a `;` in the body gave 400 "invalid semicolon separator in query".
    #[test]
    fn form_media_type_read_like_go() {
        let r = route("image.pull", BodyRule::Form);
        // Go lower-cases with unicode.ToLower: U+0130 becomes 'i'.
        for ct in [
            "Application/X-WWW-Form-Urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "appl\u{130}cation/x-www-form-urlencoded",
        ] {
            let h = headers(&[("content-type", ct)]);
            let out = inspect(&r, "POST", &h, &[], Bytes::from_static(b"fromImage=b")).unwrap();
            assert_eq!(out.form, q(&[("fromImage", "b")]), "{ct}");
        }
        // Malformed parameters: Go still parses the body; we refuse.
        for ct in [
            "application/x-www-form-urlencoded; charset",
            "application/x-www-form-urlencoded; a=1; a=2",
        ] {
            let h = headers(&[("content-type", ct)]);
            let err = inspect(&r, "POST", &h, &[], Bytes::from_static(b"fromImage=b")).unwrap_err();
            assert!(matches!(err, BodyError::ContentType { .. }), "{ct}: {err}");
        }
    }

    #[test]
    fn form_errors_refused() {
        let r = route("image.pull", BodyRule::Form);
        let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        for body in [&b"fromImage=a;fromImage=b"[..], b"a=%zz", b"a=%4", b"a=%ff"] {
            let err = inspect(&r, "POST", &h, &[], Bytes::copy_from_slice(body)).unwrap_err();
            assert!(matches!(err, BodyError::Form(_)), "{body:?}: {err}");
        }
        assert_eq!(
            parse_go_query(b"&&a&b=&=c").unwrap(),
            q(&[("a", ""), ("b", ""), ("", "c")])
        );
    }

    #[test]
    fn must_read_body_follows_go() {
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let json = headers(&[("content-type", "application/json")]);
        assert!(must_read_body(&route("container.create", BodyRule::Json), "POST", &json).unwrap());
        assert!(must_read_body(&route("image.build", BodyRule::Stream), "POST", &form).unwrap());
        assert!(!must_read_body(&route("image.build", BodyRule::Stream), "POST", &json).unwrap());
        assert!(!must_read_body(
            &route("image.pull", BodyRule::Form),
            "POST",
            &HeaderMap::new()
        )
        .unwrap());
        assert!(must_read_body(&route("container.create", BodyRule::Json), "POST", &form).is_err());
        assert!(must_read_body(&route("file.write", BodyRule::Tar), "PUT", &form).is_err());
        let err = inspect(
            &route("file.write", BodyRule::Tar),
            "PUT",
            &form,
            &[],
            Bytes::from_static(b"path=/etc"),
        )
        .unwrap_err();
        assert!(matches!(err, BodyError::ContentType { .. }), "{err}");
    }

    #[test]
    fn other_rules_are_not_decoded() {
        for rule in [BodyRule::Ignored, BodyRule::Stream, BodyRule::Tar] {
            let r = route("container.start", rule);
            let out = inspect(
                &r,
                "POST",
                &json_headers(5),
                &[],
                Bytes::from_static(b"{{{{{"),
            )
            .unwrap();
            assert_eq!(out.canonical, Value::Null);
            assert!(out.sha256.is_none());
            assert_eq!(&out.bytes[..], b"{{{{{");
        }
    }
}
