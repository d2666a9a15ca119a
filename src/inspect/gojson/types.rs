//! The shape of a Go type as decoding sees it ([`Schema`], [`StructSchema`]),
//! and Go's field lookup by exact then folded name. The schemas themselves
//! (the daemon's types) are data, in `inspect/schema/`.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::fold::fold_name;

/// The shape of a Go type, as far as decoding cares.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    Bool,
    /// A signed integer of `bits` bits (Go `int` is 64).
    Int(u8),
    /// An unsigned integer of `bits` bits.
    Uint(u8),
    /// A float of 32 or 64 bits.
    Float(u8),
    String,
    /// `[]byte`: a base64 (standard alphabet) string; kept as the string.
    Base64,
    /// `strslice.StrSlice` (Cmd, Entrypoint, Shell, CapAdd, CapDrop): a string or
    /// an array of strings, always replaced wholesale by its `UnmarshalJSON`.
    /// Canonical form: an array of strings.
    StrSlice,
    /// A value struct: objects merge into it, `null` is a no-op.
    Struct(&'static StructSchema),
    /// A pointer: `null` resets to nil, anything else decodes into the pointee.
    Ptr(&'static Schema),
    /// A slice: `null` resets, arrays reuse the backing array (see module docs).
    Slice(&'static Schema),
    /// A fixed-size Go array (`[2]uint`): extra elements ignored, missing zeroed.
    Array(&'static Schema, usize),
    /// `map[string]T`: exact keys, entries replaced wholesale; `null` resets.
    Map(&'static Schema),
    /// Unknown type: strict JSON, every object key folded, objects merge,
    /// arrays and scalars replace, `null` keeps the previous value.
    Generic,
}

/// A Go struct: its JSON field names in Go's field order (embedded structs
/// flattened, as Go promotes their fields).
#[derive(Debug)]
pub struct StructSchema {
    pub go_type: &'static str,
    pub fields: &'static [Field],
    /// Built on first use: exact and folded names to field positions.
    pub index: FieldIndex,
}

/// Name lookup tables for a struct with many fields (HostConfig has 72).
#[derive(Debug, Default)]
pub struct FieldIndex(OnceLock<(FastMap<&'static str>, FastMap<String>)>);

/// FNV-1a 64 (the `fnv` crate): field names are short, trusted keys (the
/// schema's own), so a simple fast hash is fine here; keys from the body are
/// only looked up.
pub(super) type FastMap<K> = HashMap<K, usize, fnv::FnvBuildHasher>;

impl FieldIndex {
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }
}

/// Below this many fields a linear scan beats hashing.
const LINEAR_FIELDS: usize = 8;

/// One struct field: its JSON name (tag or Go name) and type.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub schema: Schema,
}

impl StructSchema {
    /// Go's lookup: exact name first, then the first field (in order) whose
    /// folded name equals the key's fold.
    pub(super) fn lookup(&'static self, key: &str) -> Option<usize> {
        let fields: &'static [Field] = self.fields;
        if fields.len() <= LINEAR_FIELDS {
            if let Some(i) = fields.iter().position(|f| f.name == key) {
                return Some(i);
            }
            if key.is_ascii() {
                // Field names are ASCII, so for an ASCII key Go's fold equality
                // is exactly ASCII case-insensitive equality. No allocation.
                return fields.iter().position(|f| f.name.eq_ignore_ascii_case(key));
            }
            let folded = fold_name(key);
            return fields
                .iter()
                .position(|f| f.name.to_ascii_uppercase() == folded);
        }
        let (exact, folded) = self.index.0.get_or_init(|| {
            let exact = fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name, i))
                .collect();
            let mut folded = FastMap::default();
            for (i, f) in fields.iter().enumerate() {
                // Go: the first field with a given fold wins.
                folded.entry(f.name.to_ascii_uppercase()).or_insert(i);
            }
            (exact, folded)
        });
        if let Some(i) = exact.get(key) {
            return Some(*i);
        }
        if key.is_ascii() && key.len() <= 64 {
            let mut buf = [0u8; 64];
            let upper = &mut buf[..key.len()];
            upper.copy_from_slice(key.as_bytes());
            upper.make_ascii_uppercase();
            let upper = std::str::from_utf8(upper).ok()?;
            return folded.get(upper).copied();
        }
        folded.get(&fold_name(key)).copied()
    }
}
