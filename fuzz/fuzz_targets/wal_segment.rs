//! The audit WAL reader on a damaged or arbitrary segment (see
//! `portcullis::properties::wal_segment`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::properties::wal_segment(data));
