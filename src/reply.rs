//! Replies portcullis writes itself, in Docker's error format.
//!
//! Why the format matters: the docker CLI prints `Error response from daemon:
//! <message>` only for `{"message": …}` with `Content-Type: application/json`;
//! anything else reaches the user as a raw body or a bare status.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every response of the proxy uses.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("static response parts are valid")
}

/// A streamed answer (`content_type`: NDJSON, Server-Sent Events) that no
/// cache or buffering proxy (nginx and friends) holds back.
pub fn stream(content_type: &'static str, body: ProxyBody) -> Response<ProxyBody> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    resp
}

/// `{"message": …}` with the given status, as the daemon writes errors.
pub fn error(status: StatusCode, message: impl AsRef<str>) -> Response<ProxyBody> {
    json(status, &serde_json::json!({ "message": message.as_ref() }))
}

/// The refusal the docker CLI shows as `Error response from daemon: portcullis: …`.
pub fn refusal(
    status: StatusCode,
    caller: &str,
    action: &str,
    target: &str,
    reason: &str,
    decision_id: &str,
) -> Response<ProxyBody> {
    error(
        status,
        format!(
            "portcullis: {caller} may not {action} {target}: {reason} (decision {decision_id})"
        ),
    )
}
