//! A whole request head, parsed as hyper parses it (httparse), through
//! identify and classify. The first byte picks the peer's uid.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&who, head)) = data.split_first() else {
        return;
    };
    let uid = [0, 1000, 1001][who as usize % 3];
    let mut parsed = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut parsed);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return;
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            return; // hyper answers 400 before any stage runs
        };
        headers.append(name, value);
    }
    portcullis::properties::request_head(method, target, &headers, uid);
});
