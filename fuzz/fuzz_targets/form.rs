//! Go's `url.ParseQuery` on form bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::properties::form(data));
