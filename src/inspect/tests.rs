//! Unit tests of body reading and inspection: bounds, content types, form
//! bodies, and which routes read a body.

use super::*;
use crate::classify::{Action, Handler, ResourceKind, Service};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use serde_json::json;

const LIMIT: usize = 4 * 1024 * 1024;

fn route(action: Action, body: BodyRule) -> Route {
    Route {
        method: "POST",
        pattern: "/test",
        action,
        kind: ResourceKind::Container,
        body,
        hijack: false,
        tunnel: false,
        service: Service::Docker,
        handler: Handler::Daemon,
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
    let frames = ["{\"Im", "age\":", "\"x\"}"]
        .map(|s| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(s.as_bytes()))));
    let stream = StreamBody::new(futures_util::stream::iter(frames));
    let got = block_on(read_bounded(stream, &json_headers(13), LIMIT)).unwrap();
    assert_eq!(&got[..], br#"{"Image":"x"}"#);
}

#[test]
fn inspect_json_body() {
    let r = route(Action::CONTAINER_CREATE, BodyRule::Json);
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
    let r = route(Action::CONTAINER_CREATE, BodyRule::Json);
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
    let r = route(Action::CONTAINER_CREATE, BodyRule::Json);
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
    let r = route(Action::IMAGE_PULL, BodyRule::Form);
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
    let r = route(Action::CONTAINER_START, BodyRule::Ignored);
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
    let r = route(Action::IMAGE_PULL, BodyRule::Form);
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
    let r = route(Action::IMAGE_PULL, BodyRule::Form);
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
    assert!(must_read_body(
        &route(Action::CONTAINER_CREATE, BodyRule::Json),
        "POST",
        &json
    )
    .unwrap());
    assert!(must_read_body(&route(Action::IMAGE_BUILD, BodyRule::Stream), "POST", &form).unwrap());
    assert!(!must_read_body(&route(Action::IMAGE_BUILD, BodyRule::Stream), "POST", &json).unwrap());
    assert!(!must_read_body(
        &route(Action::IMAGE_PULL, BodyRule::Form),
        "POST",
        &HeaderMap::new()
    )
    .unwrap());
    assert!(must_read_body(
        &route(Action::CONTAINER_CREATE, BodyRule::Json),
        "POST",
        &form
    )
    .is_err());
    assert!(must_read_body(&route(Action::FILE_WRITE, BodyRule::Tar), "PUT", &form).is_err());
    let err = inspect(
        &route(Action::FILE_WRITE, BodyRule::Tar),
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
        let r = route(Action::CONTAINER_START, rule);
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
