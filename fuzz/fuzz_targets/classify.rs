//! The route classifier, with its path and query decoding: `METHOD TARGET`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
    portcullis::properties::classifier(method, target);
});
