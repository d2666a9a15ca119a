//! The `docker cp` upload checker on arbitrary tar bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::properties::upload(data, "/app"));
