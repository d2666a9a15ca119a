//! Reading a request body whole, bounded by its Content-Length and the
//! inspection limit, before anything looks at it.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderMap;
use http_body_util::BodyExt;

use super::BodyError;

/// Read a request body whole, refusing what cannot be bounded.
///
/// Why so strict: CVE-2024-41110 (chunked bodies and Content-Length 0 hidden
/// from the checker) and CVE-2026-34040 (large bodies skipped). A body without
/// Content-Length (chunked, `Transfer-Encoding`) is refused as
/// [`BodyError::Unbounded`]; a declared length over `limit` is refused before
/// reading; at most one frame past the declared length or the limit is read;
/// a body shorter or longer than declared is a [`BodyError::Read`].
/// Only call this on routes whose body is inspected ([`must_read_body`](super::must_read_body)).
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
