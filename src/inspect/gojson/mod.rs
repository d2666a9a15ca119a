//! Decode JSON the way Go's `encoding/json` decodes it into the daemon's types.
//!
//! Why: a policy is only as good as its view of the body. The daemon decodes
//! with Go's `encoding/json`, which differs from a plain JSON parser in ways an
//! attacker can use to make a checker see other values than the daemon:
//!
//! * struct keys match field names case-insensitively (after an exact match
//!   fails) with Go's `foldName`: ASCII upper-casing and, for other runes,
//!   `unicode.ToUpper(unicode.ToLower(r))` with simple mappings. So `privileged`
//!   and `PRIVILEGED` set real fields. Non-ASCII spellings of ASCII names are
//!   where Go versions differ: before 1.21 (daemon 20.10) only the long s
//!   (`Bindſ`) and the Kelvin sign (`NetworKMode`) fold, later also the dotted
//!   and dotless i (`Prıvileged`). With last-wins duplicates, any reading we
//!   picked could be made to hide the value some daemon uses
//!   (`{"Privileged":true,"Prıvileged":false}`), so such keys are refused.
//! * duplicate keys: a scalar field takes the last value; an object decodes INTO
//!   the existing struct or map (merge); an array decodes element `i` into the
//!   existing element `i` of the slice's backing array and then truncates, so a
//!   later, longer array re-exposes (and merges into) old elements. Modelled by
//!   `Node::Seq`, which keeps the backing elements beyond the visible length.
//! * `null` is a no-op for bool, number, string, struct and fixed-array targets
//!   (the previous value stays!) and resets pointers, slices and maps to nil.
//! * map keys are exact (no folding); a duplicate map key replaces the entry
//!   wholesale, because Go decodes each map value into a fresh zero element
//!   (`mapElem.SetZero()` in decode.go `object()`), so map entries never merge.
//! * type mismatches are errors (the daemon answers 400), so we refuse them.
//!
//! Unknown keys in a struct: Go skips them, so they never reach the daemon's
//! logic. We still KEEP them in the canonical output, under Go's fold of the key
//! (e.g. `fooBar` becomes `FOOBAR`), decoded permissively (see [`Schema::Generic`]).
//! Why keep rather than drop: if our schema lacks a field the daemon knows (a
//! newer API version, an oversight), dropping it would hide power from the
//! policy; keeping it, under a key every case variant folds to, lets a policy
//! deny unknown keys or look for them, and case variants merge the way Go would
//! merge them if the field existed. Unknown keys never collide with known field
//! names: any key folding to a known field's name IS that field.
//!
//! Refused outright (fail closed): invalid UTF-8 anywhere in the body (Go would
//! silently replace it with U+FFFD), nesting deeper than [`MAX_DEPTH`] (Go allows
//! 10000; no Docker body nests past 20, and deep recursion would risk our stack),
//! trailing non-whitespace after the first value (daemon 20.10 silently ignores
//! it, newer daemons refuse most of it; refusing means the policy never has to
//! guess which value counts).
//!
//! Design: one recursive-descent pass over the bytes, driven by a static
//! [`Schema`], building a small `Node` tree (needed for the backing-array
//! model), converted to a `serde_json::Value` at the end. No intermediate
//! generic JSON tree, keys borrowed where no escapes occur.
//!
//! Layout: `types.rs` (what a Go type looks like to the decoder), `lexer.rs`
//! (JSON tokens in Go's grammar), `semantics.rs` (Go's decoding and merge
//! rules), `node.rs` (the value being built, with Go's memory), `fold.rs`
//! (Go's key folding), and `error.rs`.

mod error;
mod fold;
mod lexer;
mod node;
#[cfg(test)]
mod schema_tests;
mod semantics;
#[cfg(test)]
mod tests;
mod types;

use serde_json::Value;

use super::BodyError;
use lexer::Parser;
use node::Node;

pub use super::schema::schema_for;
pub use fold::fold_name;
pub(crate) use fold::simple_lower;
pub use types::{Field, FieldIndex, Schema, StructSchema};

/// Deeper nesting is refused (see module docs).
pub const MAX_DEPTH: usize = 128;

/// Decode `bytes` (one JSON value, optional surrounding whitespace) as the
/// daemon would decode it into the type `schema` describes, returning the
/// canonical view: known fields under their canonical names, unknown struct
/// keys under their Go fold, nil pointers/slices/maps and untouched fields absent.
pub fn decode(bytes: &[u8], schema: &Schema) -> Result<Value, BodyError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| BodyError::Json(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut parser = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    let mut root = Node::Nil;
    parser.skip_ws();
    if parser.pos == parser.s.len() {
        return Err(BodyError::Json("unexpected end of JSON input".into()));
    }
    parser
        .value(schema, &mut root)
        .map_err(|e| e.into_body_error())?;
    parser.skip_ws();
    if parser.pos != parser.s.len() {
        return Err(BodyError::TrailingData);
    }
    let mut value = root.into_value();
    super::schema::post_decode(schema, &mut value);
    Ok(value)
}
