//! The Go-JSON decoder with every body schema.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::properties::go_json(data));
