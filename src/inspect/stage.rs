//! The inspect step of the pipeline: read the body when the route's body
//! grants power (or a form body may override the query), decode it as the
//! daemon would, and hand on exactly those bytes; otherwise leave it to stream.
//!
//! Why apart from `mod.rs`: that file holds the decoding rules; this one the
//! step's limits, its refusal statuses and the body-reading choices.

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{must_read_body, read_bounded, sha256_hex, BodyError, Inspected};
use crate::classify::{BodyRule, Classified};
use crate::config::Limits;

/// Whether the client asked for `Connection: Upgrade` (attach, exec start).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Refuse a `Connection` header that names anything but hop-by-hop headers.
///
/// Why: a proxy must drop the headers `Connection` names (`strip_hop_by_hop`),
/// so `Connection: Content-Type` would have the daemon read a body without the
/// content type the decision was made with (a form body it then ignores, and a
/// query that says something else). Clients name only these; anything else is
/// refused rather than forwarded differently from how it was decided.
pub fn check_connection_header(headers: &HeaderMap) -> Result<(), String> {
    const HOP_BY_HOP: [&str; 7] = [
        "close",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "http2-settings",
    ];
    for value in headers.get_all(header::CONNECTION) {
        let value = value
            .to_str()
            .map_err(|_| "the Connection header is not ASCII".to_string())?;
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !HOP_BY_HOP.iter().any(|h| token.eq_ignore_ascii_case(h)) {
                return Err(format!(
                    "the Connection header names {token:?}: a proxy would have to drop that header after deciding on it, so the request is refused"
                ));
            }
        }
    }
    Ok(())
}

fn body_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Unbounded => StatusCode::LENGTH_REQUIRED,
        BodyError::ContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Inspect one classified request: the inspected body, and the body still to
/// stream (`None` once read). A form body may change the action
/// ([`crate::classify::refine`]). Errors are the refusal's status and reason.
pub async fn request(
    request: &mut Classified,
    parts: &http::request::Parts,
    body: Incoming,
    limits: &Limits,
) -> Result<(Inspected, Option<Incoming>), (StatusCode, String)> {
    let refuse = |e: BodyError| (body_status(&e), e.to_string());
    check_connection_header(&parts.headers).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let method = parts.method.as_str();
    // docker cp uploads are read whole too: every entry is checked before any is forwarded.
    let tar = request.route.body == BodyRule::Tar;
    let must_read = must_read_body(request.route, method, &parts.headers).map_err(refuse)? || tar;
    if !must_read {
        let inspected = super::inspect(
            request.route,
            method,
            &parts.headers,
            &request.query,
            Bytes::new(),
        )
        .map_err(refuse)?;
        return Ok((inspected, Some(body)));
    }
    let limit = if tar {
        limits.max_archive_inspect
    } else {
        limits.max_body_inspect
    };
    let chunked_upload = tar && !parts.headers.contains_key(header::CONTENT_LENGTH);
    let bytes = if chunked_upload {
        // The docker CLI streams cp uploads chunked; they are bounded by the limit instead.
        read_chunked(body, limit).await.map_err(refuse)?
    } else {
        read_bounded(body, &parts.headers, limit)
            .await
            .map_err(refuse)?
    };
    let mut inspected =
        super::inspect(request.route, method, &parts.headers, &request.query, bytes)
            .map_err(refuse)?;
    if inspected.sha256.is_none() {
        inspected.sha256 = Some(sha256_hex(&inspected.bytes));
    }
    crate::classify::refine(request, &inspected.form);
    if request.route.hijack && !is_upgrade(&parts.headers) && !detached(&inspected) {
        return Err((
            StatusCode::BAD_REQUEST,
            "attach and exec start need `Connection: Upgrade` and `Upgrade: tcp` through portcullis".into(),
        ));
    }
    Ok((inspected, None))
}

async fn read_chunked(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// `POST /exec/{id}/start` with `{"Detach": true}` does not take the connection over.
fn detached(inspected: &Inspected) -> bool {
    inspected
        .canonical
        .get("Detach")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_may_name_only_hop_by_hop_headers() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static(v));
            h
        };
        for ok in ["close", "Upgrade", "keep-alive, TE", "upgrade,close"] {
            assert!(check_connection_header(&with(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "Content-Type",
            "close, content-type",
            "Transfer-Encoding",
            "X-Registry-Auth",
        ] {
            let err = check_connection_header(&with(bad)).unwrap_err();
            assert!(err.contains("Connection header names"), "{bad}: {err}");
        }
        assert!(check_connection_header(&HeaderMap::new()).is_ok());
    }
}
