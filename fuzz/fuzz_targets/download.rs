//! The `docker cp` download filter on arbitrary tar bytes, cut into chunks
//! (see `portcullis::properties::download`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::properties::download(data));
