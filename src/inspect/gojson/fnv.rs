//! The hasher for the schema field-name tables in [`super::types::FieldIndex`]:
//! a small, fast FNV-1a 64 over trusted keys (the schemas' own field names).

use std::hash::Hasher;

/// FNV-1a: field names are short, trusted keys (the schema's own), so a
/// simple fast hash is fine here; keys from the body are only looked up.
#[derive(Default)]
pub(super) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
