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

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

use super::BodyError;

pub use super::schema::schema_for;

/// Deeper nesting is refused (see module docs).
pub const MAX_DEPTH: usize = 128;

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

type FastMap<K> = HashMap<K, usize, BuildHasherDefault<Fnv>>;

/// FNV-1a: field names are short, trusted keys (the schema's own), so a
/// simple fast hash is fine here; keys from the body are only looked up.
#[derive(Default)]
struct Fnv(u64);

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
    fn lookup(&'static self, key: &str) -> Option<usize> {
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

/// Go's `foldName` for one key: ASCII upper-cased; other runes mapped through
/// simple lower- then upper-casing.
pub fn fold_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(simple_upper(simple_lower(c)));
        }
    }
    out
}

/// Unicode simple lowercase mapping (Go's `unicode.ToLower`).
pub(crate) fn simple_lower(c: char) -> char {
    // U+0130's full lowercase is two chars; its simple mapping is 'i'.
    if c == '\u{130}' {
        return 'i';
    }
    single(c.to_lowercase()).unwrap_or(c)
}

/// Unicode simple uppercase mapping (Go's `unicode.ToUpper`).
pub(crate) fn simple_upper(c: char) -> char {
    if let Some(u) = single(c.to_uppercase()) {
        return u;
    }
    // Full uppercase is several chars; the simple mapping exists only for the
    // Greek letters with ypogegrammeni (to their titlecase form); others map to
    // themselves (ß, ŉ, ligatures, ...).
    match c as u32 {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
            char::from_u32(c as u32 + 8).unwrap_or(c)
        }
        0x1FB3 => '\u{1FBC}',
        0x1FC3 => '\u{1FCC}',
        0x1FF3 => '\u{1FFC}',
        _ => c,
    }
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let first = it.next()?;
    if it.next().is_some() {
        None
    } else {
        Some(first)
    }
}

/// The decoded value being built, with Go's memory where it matters.
#[derive(Debug, Clone)]
enum Node {
    /// Not set, or a nil pointer/slice/map. Omitted in structs, `null` elsewhere.
    Nil,
    /// An explicit JSON `null` kept by [`Schema::Generic`].
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    /// A Go struct: the fields set so far, plus unknown keys.
    Struct(Box<StructNode>),
    /// A Go map, or an object of unknown type.
    Obj(Box<Obj>),
    /// A slice: `items[..len]` is visible; `items[len..]` is the rest of the
    /// backing array that a later, longer array would re-expose.
    Seq {
        items: Vec<Node>,
        len: usize,
    },
}

impl Node {
    /// Go's zero value for a freshly exposed slice element or map value.
    fn zero(schema: &Schema) -> Node {
        match schema {
            Schema::Bool => Node::Bool(false),
            Schema::Int(_) | Schema::Uint(_) => Node::Num(Number::from(0u8)),
            Schema::Float(_) => {
                Node::Num(Number::from_f64(0.0).unwrap_or_else(|| Number::from(0u8)))
            }
            Schema::String => Node::Str(String::new()),
            Schema::Struct(st) => Node::Struct(StructNode::new(st)),
            Schema::Array(elem, n) => Node::Seq {
                items: (0..*n).map(|_| Node::zero(elem)).collect(),
                len: *n,
            },
            Schema::Base64
            | Schema::StrSlice
            | Schema::Ptr(_)
            | Schema::Slice(_)
            | Schema::Map(_)
            | Schema::Generic => Node::Nil,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Node::Nil | Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Num(n) => Value::Number(n),
            Node::Str(s) => Value::String(s),
            Node::Struct(st) => {
                let StructNode {
                    schema,
                    mut fields,
                    extra,
                } = *st;
                // Schema order, so the canonical form does not depend on key order.
                fields.sort_unstable_by_key(|(i, _)| *i);
                let extra = extra.map(|e| e.entries).unwrap_or_default();
                let mut map = Map::with_capacity(fields.len() + extra.len());
                for (i, v) in fields {
                    // A struct field that is nil is absent.
                    if !matches!(v, Node::Nil) {
                        map.insert(
                            schema.fields[usize::from(i)].name.to_string(),
                            v.into_value(),
                        );
                    }
                }
                for (k, v) in extra {
                    map.insert(k, v.into_value());
                }
                Value::Object(map)
            }
            Node::Obj(obj) => {
                let mut map = Map::with_capacity(obj.entries.len());
                // A map entry holding nil stays visible as null: the daemon sees the key.
                for (k, v) in obj.entries {
                    map.insert(k, v.into_value());
                }
                Value::Object(map)
            }
            Node::Seq { mut items, len } => {
                items.truncate(len);
                Value::Array(items.into_iter().map(Node::into_value).collect())
            }
        }
    }
}

/// Ordered object entries; a hash index is built only for large objects so a
/// 4 MiB body with 100k keys cannot make lookups quadratic.
#[derive(Debug, Clone, Default)]
struct Obj {
    entries: Vec<(String, Node)>,
    index: Option<HashMap<String, usize>>,
}

/// A struct value being decoded.
#[derive(Debug, Clone)]
struct StructNode {
    schema: &'static StructSchema,
    /// The fields set so far, as (position in `schema.fields`, value). Sparse,
    /// so that a body of many empty objects cannot make us allocate a slot per
    /// schema field for each (memory amplification).
    fields: Vec<(u16, Node)>,
    /// Unknown keys, under their Go fold.
    extra: Option<Box<Obj>>,
}

impl StructNode {
    fn new(schema: &'static StructSchema) -> Box<Self> {
        Box::new(Self {
            schema,
            fields: Vec::new(),
            extra: None,
        })
    }

    /// The slot of field `i`, created unset.
    fn field(&mut self, i: usize) -> &mut Node {
        let i = u16::try_from(i).expect("schemas have fewer than 65536 fields");
        let at = match self.fields.iter().position(|(f, _)| *f == i) {
            Some(at) => at,
            None => {
                self.fields.push((i, Node::Nil));
                self.fields.len() - 1
            }
        };
        &mut self.fields[at].1
    }
}

const INDEX_THRESHOLD: usize = 16;

impl Obj {
    fn position(&mut self, key: &str) -> Option<usize> {
        if let Some(index) = &self.index {
            return index.get(key).copied();
        }
        let found = self.entries.iter().position(|(k, _)| k.as_str() == key);
        if found.is_none() && self.entries.len() >= INDEX_THRESHOLD {
            self.index = Some(
                self.entries
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.to_string(), i))
                    .collect(),
            );
        }
        found
    }

    /// The slot for `key`, created as `Nil` at the end when absent.
    fn slot(&mut self, key: Cow<'_, str>) -> &mut Node {
        let i = match self.position(&key) {
            Some(i) => i,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(key.to_string(), self.entries.len());
                }
                self.entries.push((key.into_owned(), Node::Nil));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }
}

/// A decoding failure, with the path to it filled in while unwinding.
#[derive(Debug)]
enum DecodeError {
    Syntax { offset: usize, msg: String },
    Type { path: Vec<String>, msg: String },
    TooDeep { offset: usize },
}

impl DecodeError {
    fn at(mut self, segment: &str) -> Self {
        if let DecodeError::Type { path, .. } = &mut self {
            path.push(segment.to_string());
        }
        self
    }

    fn into_body_error(self) -> BodyError {
        match self {
            DecodeError::Syntax { offset, msg } => {
                BodyError::Json(format!("{msg} at byte offset {offset}"))
            }
            DecodeError::Type { mut path, msg } => {
                path.reverse();
                if path.is_empty() {
                    BodyError::Json(msg)
                } else {
                    BodyError::Json(format!("{msg} (field {})", path.join(".")))
                }
            }
            DecodeError::TooDeep { offset } => BodyError::Json(format!(
                "JSON nested deeper than {MAX_DEPTH} levels at byte offset {offset}"
            )),
        }
    }
}

type Res<T> = Result<T, DecodeError>;

/// What kind of JSON value starts at the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn go_name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn syntax<T>(&self, msg: impl Into<String>) -> Res<T> {
        Err(DecodeError::Syntax {
            offset: self.pos,
            msg: msg.into(),
        })
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skip whitespace and classify the next value.
    fn kind(&mut self) -> Res<Kind> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(c) => self.syntax(format!(
                "invalid character {:?} looking for beginning of value",
                *c as char
            )),
            None => self.syntax("unexpected end of JSON input"),
        }
    }

    fn literal(&mut self, word: &'static str) -> Res<()> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            self.syntax(format!("invalid literal, expected {word}"))
        }
    }

    fn bool(&mut self) -> Res<bool> {
        if self.s[self.pos] == b't' {
            self.literal("true").map(|_| true)
        } else {
            self.literal("false").map(|_| false)
        }
    }

    /// A number literal in JSON's (and Go's scanner's) grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Res<&'a str> {
        let start = self.pos;
        let s = self.s;
        let mut i = self.pos;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = s.get(i) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return self.syntax("invalid number");
            }
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(s.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return self.syntax("invalid number: digit expected after decimal point");
            }
            while let Some(b'0'..=b'9') = s.get(i) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = s.get(i) {
                i += 1;
            }
            if !matches!(s.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return self.syntax("invalid number: digit expected in exponent");
            }
            while let Some(b'0'..=b'9') = s.get(i) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    /// A string, unescaped with Go's rules (a lone or invalid surrogate escape
    /// becomes U+FFFD, as Go's `unquote` does). Borrowed when there is no escape.
    fn string(&mut self) -> Res<Cow<'a, str>> {
        debug_assert_eq!(self.s[self.pos], b'"');
        self.pos += 1;
        let start = self.pos;
        // Fast path: scan to the closing quote; fall back on the first escape.
        loop {
            match self.s.get(self.pos) {
                Some(b'"') => {
                    let out = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(out));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => return self.syntax("invalid control character in string"),
                Some(_) => self.pos += 1,
                None => return self.syntax("unexpected end of JSON input in string"),
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            let run_start = self.pos;
            while let Some(c) = self.s.get(self.pos) {
                if *c == b'"' || *c == b'\\' || *c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.s.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&esc) = self.s.get(self.pos) else {
                        return self.syntax("unexpected end of JSON input in string escape");
                    };
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let c = if (0xD800..0xE000).contains(&first) {
                                // Go: take a following \uXXXX only if it completes
                                // a valid pair; otherwise U+FFFD and leave it.
                                let pair = if first < 0xDC00
                                    && self.s.get(self.pos) == Some(&b'\\')
                                    && self.s.get(self.pos + 1) == Some(&b'u')
                                {
                                    let save = self.pos;
                                    self.pos += 2;
                                    match self.hex4() {
                                        Ok(second) if (0xDC00..0xE000).contains(&second) => {
                                            char::from_u32(
                                                0x10000
                                                    + ((first - 0xD800) << 10)
                                                    + (second - 0xDC00),
                                            )
                                        }
                                        _ => {
                                            self.pos = save;
                                            None
                                        }
                                    }
                                } else {
                                    None
                                };
                                pair.unwrap_or('\u{FFFD}')
                            } else {
                                char::from_u32(first).unwrap_or('\u{FFFD}')
                            };
                            out.push(c);
                        }
                        _ => {
                            self.pos -= 1;
                            return self.syntax("invalid escape in string");
                        }
                    }
                }
                Some(_) => return self.syntax("invalid control character in string"),
                None => return self.syntax("unexpected end of JSON input in string"),
            }
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        let Some(digits) = self.s.get(self.pos..self.pos + 4) else {
            return self.syntax("invalid \\u escape");
        };
        let mut v = 0u32;
        for d in digits {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.syntax("invalid \\u escape"),
            };
            v = v * 16 + u32::from(x);
        }
        self.pos += 4;
        Ok(v)
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: self.pos });
        }
        Ok(())
    }

    /// After `{` or `[`: true if the container is empty (consumes the closer).
    fn open(&mut self, close: u8) -> Res<bool> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&close) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After a member or element: true if the container continues.
    fn next(&mut self, close: u8) -> Res<bool> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if *c == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(_) => self.syntax(format!("expected ',' or '{}'", close as char)),
            None => self.syntax("unexpected end of JSON input"),
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Res<Cow<'a, str>> {
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'"') {
            return self.syntax("expected string for object key");
        }
        let key = self.string()?;
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b':') {
            return self.syntax("expected ':' after object key");
        }
        self.pos += 1;
        Ok(key)
    }

    /// A key that Go matches to struct fields by folding. A non-ASCII key that
    /// folds to an ASCII name (`Bindſ`, `NetworKMode`, `Prıvileged`) is
    /// refused: Go before 1.21 (daemon 20.10) folds only the long s and the
    /// Kelvin sign, later Go also the dotted and dotless i, so daemons disagree
    /// on whether such a key sets the field; and because the last duplicate
    /// wins, whichever reading we chose, a second key could hide the value the
    /// daemon uses. No client writes field names this way.
    fn struct_key(&mut self) -> Res<Cow<'a, str>> {
        let key = self.key()?;
        if !key.is_ascii() {
            let folded = fold_name(&key);
            if folded.is_ascii() {
                return Err(DecodeError::Type {
                    path: Vec::new(),
                    msg: format!(
                        "key {key:?} spells {folded:?} with non-ASCII letters, which daemons built with different Go versions read differently; refused"
                    ),
                });
            }
        }
        Ok(key)
    }

    fn mismatch<T>(&self, found: Kind, want: &str) -> Res<T> {
        Err(DecodeError::Type {
            path: Vec::new(),
            msg: format!(
                "cannot unmarshal {} into Go value of type {want}",
                found.go_name()
            ),
        })
    }

    /// Decode the next value into `slot` per `schema`.
    fn value(&mut self, schema: &Schema, slot: &mut Node) -> Res<()> {
        let kind = self.kind()?;
        if kind == Kind::Null {
            self.literal("null")?;
            match schema {
                Schema::Ptr(_)
                | Schema::Slice(_)
                | Schema::Map(_)
                | Schema::StrSlice
                | Schema::Base64 => *slot = Node::Nil,
                // Unknown type: keep what was there (fail-safe); show the key.
                Schema::Generic => {
                    if matches!(slot, Node::Nil) {
                        *slot = Node::Null;
                    }
                }
                // Go ignores null for scalars, structs and fixed arrays.
                Schema::Bool
                | Schema::Int(_)
                | Schema::Uint(_)
                | Schema::Float(_)
                | Schema::String
                | Schema::Struct(_)
                | Schema::Array(..) => {}
            }
            return Ok(());
        }
        match schema {
            Schema::Bool => match kind {
                Kind::Bool => *slot = Node::Bool(self.bool()?),
                other => return self.mismatch(other, "bool"),
            },
            Schema::Int(bits) => match kind {
                Kind::Number => {
                    let lit = self.number()?;
                    let n: i64 = lit.parse().map_err(|_| int_error(lit, "int", *bits))?;
                    if *bits < 64 {
                        let max = (1i64 << (bits - 1)) - 1;
                        if n > max || n < -max - 1 {
                            return Err(int_error(lit, "int", *bits));
                        }
                    }
                    *slot = Node::Num(Number::from(n));
                }
                other => return self.mismatch(other, &format!("int{bits}")),
            },
            Schema::Uint(bits) => match kind {
                Kind::Number => {
                    let lit = self.number()?;
                    let n: u64 = lit.parse().map_err(|_| int_error(lit, "uint", *bits))?;
                    if *bits < 64 && n >> bits != 0 {
                        return Err(int_error(lit, "uint", *bits));
                    }
                    *slot = Node::Num(Number::from(n));
                }
                other => return self.mismatch(other, &format!("uint{bits}")),
            },
            Schema::Float(bits) => {
                match kind {
                    Kind::Number => {
                        let lit = self.number()?;
                        let f = if *bits == 32 {
                            lit.parse::<f32>().map(f64::from).ok()
                        } else {
                            lit.parse::<f64>().ok()
                        };
                        let n = f.and_then(Number::from_f64).ok_or_else(|| DecodeError::Type {
                        path: Vec::new(),
                        msg: format!("cannot unmarshal number {lit} into Go value of type float{bits}"),
                    })?;
                        *slot = Node::Num(n);
                    }
                    other => return self.mismatch(other, &format!("float{bits}")),
                }
            }
            Schema::String => match kind {
                Kind::String => *slot = Node::Str(self.string()?.into_owned()),
                other => return self.mismatch(other, "string"),
            },
            Schema::Base64 => match kind {
                Kind::String => {
                    let s = self.string()?;
                    if !valid_go_base64(&s) {
                        return Err(DecodeError::Type {
                            path: Vec::new(),
                            msg: "illegal base64 data in []byte field".into(),
                        });
                    }
                    *slot = Node::Str(s.into_owned());
                }
                other => return self.mismatch(other, "[]uint8"),
            },
            Schema::StrSlice => match kind {
                Kind::String => {
                    let s = self.string()?.into_owned();
                    *slot = Node::Seq {
                        items: vec![Node::Str(s)],
                        len: 1,
                    };
                }
                Kind::Array => {
                    // UnmarshalJSON decodes into a fresh []string and replaces.
                    let mut fresh = Node::Nil;
                    self.slice(&Schema::String, &mut fresh)?;
                    *slot = fresh;
                }
                other => return self.mismatch(other, "strslice.StrSlice"),
            },
            Schema::Struct(st) => match kind {
                Kind::Object => self.object_struct(st, slot)?,
                other => return self.mismatch(other, st.go_type),
            },
            // A nil pointer is allocated as the zero pointee, then decoded into;
            // a `Nil` slot already acts as that zero value.
            Schema::Ptr(inner) => self.value(inner, slot)?,
            Schema::Slice(elem) => match kind {
                Kind::Array => self.slice(elem, slot)?,
                other => return self.mismatch(other, "slice"),
            },
            Schema::Array(elem, n) => match kind {
                Kind::Array => self.fixed_array(elem, *n, slot)?,
                other => return self.mismatch(other, "array"),
            },
            Schema::Map(elem) => match kind {
                Kind::Object => self.object_map(elem, slot)?,
                other => return self.mismatch(other, "map"),
            },
            Schema::Generic => self.generic(kind, slot)?,
        }
        Ok(())
    }

    fn object_struct(&mut self, st: &'static StructSchema, slot: &mut Node) -> Res<()> {
        if !matches!(slot, Node::Struct(node) if std::ptr::eq(node.schema, st)) {
            *slot = Node::Struct(StructNode::new(st));
        }
        let Node::Struct(node) = slot else {
            unreachable!()
        };
        if self.open(b'}')? {
            return Ok(());
        }
        loop {
            let key = self.struct_key()?;
            match st.lookup(&key) {
                Some(i) => {
                    let field = &st.fields[i];
                    let target = node.field(i);
                    self.value(&field.schema, target)
                        .map_err(|e| e.at(field.name))?;
                }
                None => {
                    let target = node
                        .extra
                        .get_or_insert_with(Box::default)
                        .slot(Cow::Owned(fold_name(&key)));
                    self.value(&Schema::Generic, target)?;
                }
            }
            if !self.next(b'}')? {
                return Ok(());
            }
        }
    }

    fn object_map(&mut self, elem: &Schema, slot: &mut Node) -> Res<()> {
        if !matches!(slot, Node::Obj(_)) {
            *slot = Node::Obj(Box::default());
        }
        let Node::Obj(obj) = slot else { unreachable!() };
        if self.open(b'}')? {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            // Each value decodes into a fresh zero element, then replaces.
            let mut fresh = Node::zero(elem);
            self.value(elem, &mut fresh).map_err(|e| e.at(&key))?;
            *obj.slot(key) = fresh;
            if !self.next(b'}')? {
                return Ok(());
            }
        }
    }

    /// Go's `array()` for a slice: decode element i into backing element i,
    /// exposing old backing elements, then truncate; `[]` drops the backing.
    fn slice(&mut self, elem: &Schema, slot: &mut Node) -> Res<()> {
        if !matches!(slot, Node::Seq { .. }) {
            *slot = Node::Seq {
                items: Vec::new(),
                len: 0,
            };
        }
        let Node::Seq { items, len } = slot else {
            unreachable!()
        };
        if self.open(b']')? {
            *items = Vec::new();
            *len = 0;
            return Ok(());
        }
        let mut i = 0;
        loop {
            if i == items.len() {
                items.push(Node::zero(elem));
            }
            self.value(elem, &mut items[i])
                .map_err(|e| e.at(&i.to_string()))?;
            i += 1;
            if !self.next(b']')? {
                break;
            }
        }
        *len = i;
        Ok(())
    }

    /// Go's `array()` for a fixed-size array: extra elements are parsed and
    /// dropped, missing ones are zeroed, present ones decode in place.
    fn fixed_array(&mut self, elem: &Schema, n: usize, slot: &mut Node) -> Res<()> {
        if !matches!(slot, Node::Seq { .. }) {
            *slot = Node::Seq {
                items: (0..n).map(|_| Node::zero(elem)).collect(),
                len: n,
            };
        }
        let Node::Seq { items, len } = slot else {
            unreachable!()
        };
        let mut i = 0;
        if !self.open(b']')? {
            loop {
                if i < n {
                    self.value(elem, &mut items[i])
                        .map_err(|e| e.at(&i.to_string()))?;
                } else {
                    let mut discard = Node::Nil;
                    self.value(&Schema::Generic, &mut discard)?;
                }
                i += 1;
                if !self.next(b']')? {
                    break;
                }
            }
        }
        for item in items.iter_mut().skip(i) {
            *item = Node::zero(elem);
        }
        *len = n;
        Ok(())
    }

    /// Permissive decoding for unknown types (see [`Schema::Generic`]).
    fn generic(&mut self, kind: Kind, slot: &mut Node) -> Res<()> {
        match kind {
            Kind::Object => {
                if !matches!(slot, Node::Obj(_)) {
                    *slot = Node::Obj(Box::default());
                }
                let Node::Obj(obj) = slot else { unreachable!() };
                if self.open(b'}')? {
                    return Ok(());
                }
                loop {
                    let key = self.struct_key()?;
                    let target = obj.slot(Cow::Owned(fold_name(&key)));
                    self.value(&Schema::Generic, target)?;
                    if !self.next(b'}')? {
                        return Ok(());
                    }
                }
            }
            Kind::Array => {
                let mut items = Vec::new();
                if !self.open(b']')? {
                    loop {
                        let mut item = Node::Nil;
                        self.value(&Schema::Generic, &mut item)?;
                        items.push(item);
                        if !self.next(b']')? {
                            break;
                        }
                    }
                }
                let len = items.len();
                *slot = Node::Seq { items, len };
            }
            Kind::String => *slot = Node::Str(self.string()?.into_owned()),
            Kind::Number => {
                let lit = self.number()?;
                *slot = Node::Num(generic_number(lit).ok_or_else(|| DecodeError::Type {
                    path: Vec::new(),
                    msg: format!("cannot unmarshal number {lit} into Go value of type float64"),
                })?);
            }
            Kind::Bool => *slot = Node::Bool(self.bool()?),
            Kind::Null => self.value(&Schema::Generic, slot)?,
        }
        Ok(())
    }
}

fn int_error(lit: &str, base: &str, bits: u8) -> DecodeError {
    DecodeError::Type {
        path: Vec::new(),
        msg: format!("cannot unmarshal number {lit} into Go value of type {base}{bits}"),
    }
}

/// A number of unknown type: exact as an integer when it is one, else a
/// float64 (what Go's `interface{}` decoding yields); out of range is an error.
fn generic_number(lit: &str) -> Option<Number> {
    if let Ok(i) = lit.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = lit.parse::<u64>() {
        return Some(Number::from(u));
    }
    lit.parse::<f64>().ok().and_then(Number::from_f64)
}

/// Go's `base64.StdEncoding.DecodeString` acceptance (padding required; `\r`
/// and `\n` ignored).
fn valid_go_base64(s: &str) -> bool {
    use base64::Engine;
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::schema::{self, CONTAINER_CREATE, GENERIC};
    use serde_json::json;

    fn create(body: &str) -> Value {
        decode(body.as_bytes(), &CONTAINER_CREATE).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn create_err(body: &str) -> BodyError {
        match decode(body.as_bytes(), &CONTAINER_CREATE) {
            Ok(v) => panic!("{body} decoded to {v}, expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn duplicate_host_configs_merge() {
        let v = create(r#"{"HostConfig":{"Privileged":false},"HostConfig":{"Binds":["/:/host"]}}"#);
        assert_eq!(
            v["HostConfig"],
            json!({"Privileged": false, "Binds": ["/:/host"]})
        );
        let v = create(r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Binds":["/:/host"]}}"#);
        assert_eq!(v["HostConfig"]["Privileged"], json!(true));
    }

    #[test]
    fn keys_fold_to_canonical_names() {
        let v = create(r#"{"hostconfig":{"privileged":true}}"#);
        assert_eq!(v, json!({"HostConfig": {"Privileged": true}}));
        let v = create(r#"{"HostConfig":{"PRIVILEGED":true}}"#);
        assert_eq!(v["HostConfig"]["Privileged"], json!(true));
        // Non-ASCII spellings of field names are refused, escaped or not:
        // Go versions disagree on them (see the module docs).
        for body in [
            r#"{"HostConfig":{"Bind\u017f":["/:/h"]}}"#,
            "{\"HostConfig\":{\"Bind\u{17f}\":[\"/:/h\"]}}",
            "{\"HostConfig\":{\"Networ\u{212a}Mode\":\"host\"}}",
            "{\"HostConfig\":{\"Privileged\":true,\"Pr\u{131}vileged\":false}}",
            "{\"\u{130}mage\":\"alpine\"}",
            // In a part of the body we have no schema for, too.
            "{\"HostConfig\":{\"Future\":{\"Pr\u{131}v\":true}}}",
        ] {
            let err = decode(body.as_bytes(), &CONTAINER_CREATE).unwrap_err();
            assert!(err.to_string().contains("non-ASCII"), "{body}: {err}");
        }
        // Non-ASCII keys that spell no ASCII name are ordinary unknown keys.
        let v = create("{\"HostConfig\":{\"\u{e9}t\u{e9}\":1}}");
        assert_eq!(v["HostConfig"]["\u{c9}T\u{c9}"], json!(1));
        // An escaped key is unescaped before matching.
        let v = create(r#"{"HostConfig":{"Privil\u0065ged":true}}"#);
        assert_eq!(v["HostConfig"]["Privileged"], json!(true));
    }

    /// Daemons up to 20.10 read HostConfig fields at the top level too.
    #[test]
    fn legacy_top_level_host_config() {
        let v =
            create(r#"{"Image":"x","privileged":true,"Binds":["/:/host"],"NetworkMode":"host"}"#);
        assert_eq!(
            v["HostConfig"],
            json!({"Binds": ["/:/host"], "NetworkMode": "host", "Privileged": true})
        );
        assert_eq!(
            v["Privileged"],
            json!(true),
            "top-level fields stay visible"
        );
        // With an inner HostConfig, the inner one is used...
        let v = create(r#"{"Privileged":true,"HostConfig":{"Binds":[]}}"#);
        assert_eq!(v["HostConfig"], json!({"Binds": []}));
        // ...except five fields copied in when the inner value is zero.
        let v = create(
            r#"{"Memory":100,"VolumeDriver":"evil","CpuShares":5,"HostConfig":{"Memory":0,"CpuShares":7},"Cpuset":"0-1"}"#,
        );
        assert_eq!(
            v["HostConfig"],
            json!({"Memory": 100, "CpuShares": 7, "VolumeDriver": "evil", "CpusetCpus": "0-1"})
        );
        // Type checked like the inner fields.
        assert!(matches!(
            create_err(r#"{"Privileged":"yes"}"#),
            BodyError::Json(_)
        ));
        // Nothing at the top level: nothing added.
        assert_eq!(create(r#"{"Image":"x"}"#), json!({"Image": "x"}));
        assert_eq!(create(r#"{"Cpuset":"1"}"#), json!({"Cpuset": "1"}));
    }

    #[test]
    fn last_scalar_wins_across_spellings() {
        assert_eq!(create(r#"{"image":"a","Image":"b"}"#)["Image"], json!("b"));
        assert_eq!(create(r#"{"Image":"b","IMAGE":"a"}"#)["Image"], json!("a"));
        let v = create(r#"{"HostConfig":{"Privileged":false,"privileged":true}}"#);
        assert_eq!(v["HostConfig"]["Privileged"], json!(true));
    }

    #[test]
    fn null_keeps_scalars_and_resets_pointers() {
        let v = create(r#"{"HostConfig":{"Privileged":true,"Privileged":null}}"#);
        assert_eq!(v["HostConfig"]["Privileged"], json!(true));
        let v = create(
            r#"{"Image":"x","Image":null,"HostConfig":{"LogConfig":{"Type":"none"},"LogConfig":null}}"#,
        );
        assert_eq!(v["Image"], json!("x"));
        assert_eq!(v["HostConfig"]["LogConfig"], json!({"Type": "none"}));
        // Pointers, slices and maps are reset to nil (absent).
        let v = create(
            r#"{"HostConfig":{"Init":true,"Init":null,"Binds":["/a:/a"],"Binds":null,"Sysctls":{"a":"1"},"Sysctls":null}}"#,
        );
        assert_eq!(v["HostConfig"], json!({}));
        // A nil HostConfig pointer is re-allocated fresh: no merge with the old one.
        let v = create(
            r#"{"HostConfig":{"Privileged":true},"HostConfig":null,"HostConfig":{"Binds":[]}}"#,
        );
        assert_eq!(v["HostConfig"], json!({"Binds": []}));
        // A null-only scalar never appears.
        assert_eq!(create(r#"{"User":null}"#), json!({}));
    }

    #[test]
    fn trailing_data_refused() {
        assert!(matches!(create_err("{}{}"), BodyError::TrailingData));
        assert!(matches!(create_err("{} x"), BodyError::TrailingData));
        assert!(matches!(create_err("{}}"), BodyError::TrailingData));
        assert_eq!(create("{} "), json!({}));
        assert_eq!(create(" \t\r\n{}\n"), json!({}));
    }

    #[test]
    fn map_keys_are_exact_and_entries_replace() {
        let v = create(r#"{"Labels":{"Owner":"a","owner":"b","OWNER":"c"}}"#);
        assert_eq!(
            v["Labels"],
            json!({"Owner": "a", "owner": "b", "OWNER": "c"})
        );
        // Duplicate Labels objects merge their keys; a duplicate key replaces.
        let v = create(r#"{"Labels":{"a":"1","b":"2"},"labels":{"b":"3","c":"4"}}"#);
        assert_eq!(v["Labels"], json!({"a": "1", "b": "3", "c": "4"}));
        // null in a map[string]string stores the zero value "".
        assert_eq!(
            create(r#"{"Labels":{"a":"1","a":null}}"#)["Labels"],
            json!({"a": ""})
        );
        // Map values are fresh zero elements: a duplicate endpoint does NOT merge.
        let v = create(
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["x"]},"n":{"DriverOpts":{"k":"v"}}}}}"#,
        );
        assert_eq!(
            v["NetworkingConfig"]["EndpointsConfig"],
            json!({"n": {"DriverOpts": {"k": "v"}}})
        );
        // Struct keys inside map values still fold.
        let v = create(
            r#"{"NetworkingConfig":{"EndpointsConfig":{"Net":{"driveropts":{"com.docker.network.endpoint.sysctls":"x"}}}}}"#,
        );
        assert_eq!(
            v["NetworkingConfig"]["EndpointsConfig"]["Net"]["DriverOpts"],
            json!({"com.docker.network.endpoint.sysctls": "x"})
        );
    }

    #[test]
    fn arrays_reuse_the_backing_array() {
        // Element i decodes into the old element i (struct fields merge), the
        // slice is truncated, and a later longer array re-exposes old elements.
        let v = create(
            r#"{"HostConfig":{
                "Mounts":[{"Type":"volume","Target":"/a"},{"Type":"bind","Source":"/","Target":"/host"},{"Target":"/c"}],
                "Mounts":[{"Target":"/x"}],
                "Mounts":[{"ReadOnly":true},{"ReadOnly":false}]}}"#,
        );
        assert_eq!(
            v["HostConfig"]["Mounts"],
            json!([
                {"Type": "volume", "Target": "/x", "ReadOnly": true},
                {"Type": "bind", "Source": "/", "Target": "/host", "ReadOnly": false}
            ])
        );
        // Scalars: null keeps the re-exposed old element.
        let v = create(
            r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":["/c:/c"],"Binds":["/d:/d",null]}}"#,
        );
        assert_eq!(v["HostConfig"]["Binds"], json!(["/d:/d", "/:/host"]));
        // An empty array drops the backing array: new elements start at zero.
        let v = create(
            r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":[],"Binds":["/c:/c",null]}}"#,
        );
        assert_eq!(v["HostConfig"]["Binds"], json!(["/c:/c", ""]));
        // So does null.
        let v = create(
            r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":null,"Binds":["/c:/c",null]}}"#,
        );
        assert_eq!(v["HostConfig"]["Binds"], json!(["/c:/c", ""]));
        // Pointer elements: merge into the old pointee, null makes them nil.
        let v = create(
            r#"{"HostConfig":{"Ulimits":[{"Name":"nofile","Hard":10}],"Ulimits":[{"Soft":5},null]}}"#,
        );
        assert_eq!(
            v["HostConfig"]["Ulimits"],
            json!([{"Name": "nofile", "Hard": 10, "Soft": 5}, null])
        );
    }

    #[test]
    fn strslice_accepts_string_and_replaces_wholesale() {
        let v = create(r#"{"HostConfig":{"CapAdd":"SYS_ADMIN"}}"#);
        assert_eq!(v["HostConfig"]["CapAdd"], json!(["SYS_ADMIN"]));
        // StrSlice's UnmarshalJSON decodes into a fresh slice: no backing reuse.
        let v = create(r#"{"Cmd":["a","b"],"Cmd":["c"],"Cmd":["d",null]}"#);
        assert_eq!(v["Cmd"], json!(["d", ""]));
        assert_eq!(create(r#"{"Cmd":["a"],"Cmd":null}"#), json!({}));
        assert!(matches!(
            create_err(r#"{"Cmd":{"a":1}}"#),
            BodyError::Json(_)
        ));
        assert!(matches!(create_err(r#"{"Cmd":[1]}"#), BodyError::Json(_)));
    }

    #[test]
    fn type_mismatches_refused() {
        for body in [
            r#"{"HostConfig":{"Privileged":"true"}}"#,
            r#"{"HostConfig":{"Privileged":1}}"#,
            r#"{"HostConfig":{"Binds":"/:/host"}}"#,
            r#"{"HostConfig":{"Binds":[1]}}"#,
            r#"{"HostConfig":{"BlkioWeight":70000}}"#,
            r#"{"HostConfig":{"Memory":1.5}}"#,
            r#"{"HostConfig":{"Memory":1e3}}"#,
            r#"{"HostConfig":{"Memory":"1"}}"#,
            r#"{"HostConfig":{"Memory":99999999999999999999}}"#,
            r#"{"HostConfig":{"IOMaximumIOps":-1}}"#,
            r#"{"HostConfig":{"ConsoleSize":[-1,2]}}"#,
            r#"{"HostConfig":{"LogConfig":"json-file"}}"#,
            r#"{"HostConfig":{"Sysctls":{"a":1}}}"#,
            r#"{"HostConfig":[]}"#,
            r#"{"Image":["a"]}"#,
            r#"{"ExposedPorts":{"80/tcp":1}}"#,
            r#"[]"#,
            r#""x""#,
        ] {
            let err = create_err(body);
            assert!(matches!(err, BodyError::Json(_)), "{body}: {err}");
        }
        // The error names the field.
        let msg = create_err(r#"{"HostConfig":{"privileged":"yes"}}"#).to_string();
        assert!(msg.contains("HostConfig.Privileged"), "{msg}");
        // In range values are fine.
        let v = create(r#"{"HostConfig":{"BlkioWeight":65535,"Memory":-1,"CpuShares":0}}"#);
        assert_eq!(v["HostConfig"]["BlkioWeight"], json!(65535));
        assert_eq!(v["HostConfig"]["Memory"], json!(-1));
    }

    #[test]
    fn syntax_errors_refused() {
        for body in [
            "",
            "  ",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            "[1,]",
            "01",
            "-",
            "1.",
            "1e",
            "tru",
            "nul",
            r#"{'a':1}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            "\u{feff}{}",
            "{\"a\":NaN}",
        ] {
            let err = decode(body.as_bytes(), &GENERIC).expect_err(body);
            assert!(
                matches!(err, BodyError::Json(_) | BodyError::TrailingData),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn invalid_utf8_refused_and_surrogates_like_go() {
        let err = decode(b"{\"Image\":\"\xff\"}", &CONTAINER_CREATE).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        // A lone surrogate becomes U+FFFD, as Go's unquote does.
        assert_eq!(
            create(r#"{"Image":"a\ud800b"}"#)["Image"],
            json!("a\u{fffd}b")
        );
        // A high surrogate followed by a non-surrogate escape keeps the escape.
        assert_eq!(
            create(r#"{"Image":"\ud800\u0041"}"#)["Image"],
            json!("\u{fffd}A")
        );
        assert_eq!(
            create(r#"{"Image":"\ud83d\ude00"}"#)["Image"],
            json!("\u{1f600}")
        );
    }

    #[test]
    fn unknown_keys_kept_under_their_fold() {
        let v = create(
            r#"{"fooBar":1,"FOOBAR":{"x":1},"foobar":{"Y":2},"HostConfig":{"Whatever":true}}"#,
        );
        assert_eq!(v["FOOBAR"], json!({"X": 1, "Y": 2}));
        assert_eq!(v["HostConfig"]["WHATEVER"], json!(true));
        // Unknown values are not type checked (Go skips them), only parsed.
        let v = create(r#"{"Config":{"Privileged":"yes"}}"#);
        assert_eq!(v["CONFIG"], json!({"PRIVILEGED": "yes"}));
        // null keeps an unknown key's previous value.
        assert_eq!(create(r#"{"x":1,"x":null}"#)["X"], json!(1));
        assert_eq!(create(r#"{"x":null}"#)["X"], json!(null));
    }

    #[test]
    fn generic_mode_folds_all_keys_and_merges() {
        let v = decode(
            br#"{"Spec":{"a":1},"spec":{"B":[1,{"c":2}]},"n":1.5,"n":-3}"#,
            &GENERIC,
        )
        .unwrap();
        assert_eq!(v, json!({"SPEC": {"A": 1, "B": [1, {"C": 2}]}, "N": -3}));
        // Arrays are replaced, not merged, when the type is unknown.
        let v = decode(br#"{"a":[1,2,3],"a":[4]}"#, &GENERIC).unwrap();
        assert_eq!(v, json!({"A": [4]}));
        assert!(decode(b"{\"a\":1e400}", &GENERIC).is_err());
        assert_eq!(decode(b"null", &GENERIC).unwrap(), json!(null));
    }

    #[test]
    fn fixed_arrays_like_go() {
        let v = create(r#"{"HostConfig":{"ConsoleSize":[5,6],"ConsoleSize":[null]}}"#);
        assert_eq!(v["HostConfig"]["ConsoleSize"], json!([5, 0]));
        let v = create(r#"{"HostConfig":{"ConsoleSize":[1,2,"ignored"]}}"#);
        assert_eq!(v["HostConfig"]["ConsoleSize"], json!([1, 2]));
        let v = create(r#"{"HostConfig":{"ConsoleSize":[1,2],"ConsoleSize":null}}"#);
        assert_eq!(v["HostConfig"]["ConsoleSize"], json!([1, 2]));
        let v = decode(br#"{"ConsoleSize":[3]}"#, schema_for("exec.start")).unwrap();
        assert_eq!(v["ConsoleSize"], json!([3, 0]));
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = decode(deep.as_bytes(), &GENERIC).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(decode(ok.as_bytes(), &GENERIC).is_ok());
    }

    #[test]
    fn many_keys_stay_correct_with_the_index() {
        let mut body = String::from("{\"Labels\":{");
        for i in 0..200 {
            body.push_str(&format!("\"k{i}\":\"{i}\","));
        }
        body.push_str("\"k7\":\"last\"}}");
        let v = create(&body);
        let labels = v["Labels"].as_object().unwrap();
        assert_eq!(labels.len(), 200);
        assert_eq!(labels["k7"], json!("last"));
        assert_eq!(labels["k199"], json!("199"));
    }

    #[test]
    fn other_schemas() {
        let v = decode(
            br#"{"cmd":"sh","privileged":true,"ENV":["A=1"],"consolesize":[1,2]}"#,
            schema_for("container.exec"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"Cmd": ["sh"], "Privileged": true, "Env": ["A=1"], "ConsoleSize": [1, 2]})
        );
        let v = decode(
            br#"{"TaskTemplate":{"ContainerSpec":{"Image":"x","privileges":{"seccomp":{"mode":"unconfined"}},"capabilityadd":["ALL"]}},"taskTemplate":{"PluginSpec":{"Remote":"r"}}}"#,
            schema_for("service.update"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"TaskTemplate": {
                "ContainerSpec": {"Image": "x", "Privileges": {"Seccomp": {"Mode": "unconfined"}}, "CapabilityAdd": ["ALL"]},
                "PluginSpec": {"remote": "r"}}})
        );
        assert!(decode(
            br#"{"TaskTemplate":{"ContainerSpec":{"Privileges":{"Seccomp":{"Profile":"!!"}}}}}"#,
            schema_for("service.create")
        )
        .is_err());
        let v = decode(
            br#"[{"name":"network","Value":["host"]},{"Name":"mount","value":["/var/lib"]}]"#,
            schema_for("plugin.install"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!([{"Name": "network", "Value": ["host"]}, {"Name": "mount", "Value": ["/var/lib"]}])
        );
        assert_eq!(
            decode(br#"["A=1","B=2"]"#, schema_for("plugin.set")).unwrap(),
            json!(["A=1", "B=2"])
        );
        assert!(decode(br#"{"A":"1"}"#, schema_for("plugin.set")).is_err());
        let v = decode(
            br#"{"name":"n","driver":"bridge","options":{"com.docker.network.bridge.name":"docker0"},"IPAM":{"config":[{"subnet":"10.0.0.0/8"}]}}"#,
            schema_for("network.create"),
        )
        .unwrap();
        assert_eq!(
            v["Options"],
            json!({"com.docker.network.bridge.name": "docker0"})
        );
        assert_eq!(v["IPAM"]["Config"], json!([{"Subnet": "10.0.0.0/8"}]));
        let v = decode(
            br#"{"container":"c","endpointconfig":{"driveropts":{"com.docker.network.endpoint.sysctls":"net.ipv4.ip_forward=1"}}}"#,
            schema_for("network.connect"),
        )
        .unwrap();
        assert_eq!(
            v["EndpointConfig"]["DriverOpts"]["com.docker.network.endpoint.sysctls"],
            json!("net.ipv4.ip_forward=1")
        );
        let v = decode(
            br#"{"name":"v","driver":"local","driveropts":{"o":"bind","device":"/etc","type":"none"}}"#,
            schema_for("volume.create"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"Name": "v", "Driver": "local", "DriverOpts": {"o": "bind", "device": "/etc", "type": "none"}})
        );
        let v = decode(
            br#"{"memory":1024,"restartpolicy":{"name":"always"}}"#,
            schema_for("container.update"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"Memory": 1024, "RestartPolicy": {"Name": "always"}})
        );
        assert!(std::ptr::eq(schema_for("container.list"), &GENERIC));
        // Legacy start bodies (API < 1.24) use the create wrapper.
        let v = decode(
            br#"{"privileged":true,"Binds":["/:/h"]}"#,
            schema_for("container.start"),
        )
        .unwrap();
        assert_eq!(
            v["HostConfig"],
            json!({"Binds": ["/:/h"], "Privileged": true})
        );
    }

    #[test]
    fn create_sees_every_power_field() {
        let body = br#"{"Image":"busybox","User":"0:0","Env":["A=1"],"Cmd":["sh"],"Entrypoint":"sh","Labels":{"a":"b"},
          "WorkingDir":"/","Volumes":{"/v":{}},"ExposedPorts":{"80/tcp":{}},"Hostname":"h","Domainname":"d","Tty":true,
          "OpenStdin":true,"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"StopSignal":"SIGTERM",
          "Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Retries":3},
          "HostConfig":{"Privileged":true,"CapAdd":["ALL"],"CapDrop":["NET_RAW"],"SecurityOpt":["seccomp=unconfined"],
            "MaskedPaths":[],"ReadonlyPaths":[],"UsernsMode":"host","Runtime":"runc","Binds":["/:/host"],
            "Mounts":[{"Type":"volume","Source":"v","Target":"/v","ReadOnly":false,"BindOptions":{"Propagation":"rshared"},
              "VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"o":"bind","device":"/etc"}}},
              "TmpfsOptions":{"SizeBytes":1,"Mode":448}}],
            "VolumesFrom":["other"],"VolumeDriver":"local","Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}],
            "DeviceCgroupRules":["a *:* rwm"],"DeviceRequests":[{"Driver":"nvidia","Count":-1,"Capabilities":[["gpu"]]}],
            "NetworkMode":"host","PidMode":"host","IpcMode":"host","UTSMode":"host","CgroupnsMode":"host","Cgroup":"host",
            "CgroupParent":"/","Sysctls":{"kernel.x":"1"},"GroupAdd":["0"],"Init":true,"LogConfig":{"Type":"json-file","Config":{"max-size":"1m"}},
            "PortBindings":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"80"}]},"RestartPolicy":{"Name":"always","MaximumRetryCount":0},
            "AutoRemove":true,"ExtraHosts":["a:1.2.3.4"],"Dns":["8.8.8.8"],"DnsOptions":[],"DnsSearch":[],
            "Memory":1,"CpuShares":2,"NanoCpus":3,"PidsLimit":-1,"Ulimits":[{"Name":"nofile","Soft":1,"Hard":2}]},
          "NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"10.0.0.2"},"Links":[],"Aliases":["a"],
            "DriverOpts":{"k":"v"},"NetworkID":"n"}}}}"#;
        let v = decode(body, &CONTAINER_CREATE).unwrap();
        // No key was unknown: every one is a known field (unknown ones would be upper-cased).
        fn no_unknown(v: &Value, path: &str) {
            if let Value::Object(m) = v {
                for (k, x) in m {
                    let in_map = [
                        "Labels",
                        "Volumes",
                        "ExposedPorts",
                        "Options",
                        "Config",
                        "Sysctls",
                        "PortBindings",
                        "EndpointsConfig",
                        "DriverOpts",
                    ]
                    .iter()
                    .any(|m| path.ends_with(m));
                    assert!(
                        in_map || k.chars().any(|c| c.is_ascii_lowercase()) || k.len() <= 4,
                        "unknown key {path}.{k}"
                    );
                    no_unknown(x, &format!("{path}.{k}"));
                }
            } else if let Value::Array(a) = v {
                for x in a {
                    no_unknown(x, path);
                }
            }
        }
        no_unknown(&v, "");
        assert_eq!(
            v["HostConfig"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]["Options"]["device"],
            json!("/etc")
        );
        assert_eq!(v["Entrypoint"], json!(["sh"]));
        assert_eq!(v["HostConfig"]["PidsLimit"], json!(-1));
    }

    /// Every struct's field names are ASCII (the lookup relies on it) and no
    /// two fold alike (so Go's field order never matters).
    #[test]
    fn schemas_are_well_formed() {
        fn walk(s: &Schema, seen: &mut Vec<&'static str>) {
            match s {
                Schema::Struct(st) => {
                    if seen.contains(&st.go_type) {
                        return;
                    }
                    seen.push(st.go_type);
                    for (i, f) in st.fields.iter().enumerate() {
                        assert!(
                            f.name.is_ascii() && !f.name.is_empty(),
                            "{}: {}",
                            st.go_type,
                            f.name
                        );
                        for g in &st.fields[i + 1..] {
                            assert!(
                                !f.name.eq_ignore_ascii_case(g.name),
                                "{}: {} vs {}",
                                st.go_type,
                                f.name,
                                g.name
                            );
                        }
                        walk(&f.schema, seen);
                    }
                }
                Schema::Ptr(i) | Schema::Slice(i) | Schema::Map(i) | Schema::Array(i, _) => {
                    walk(i, seen)
                }
                _ => {}
            }
        }
        let mut seen = Vec::new();
        for s in schema::all_named() {
            walk(s, &mut seen);
        }
        assert!(seen.len() > 40, "walked only {} structs", seen.len());
    }

    static SMALL_COLLIDING: StructSchema = StructSchema {
        index: FieldIndex::new(),
        go_type: "test.Small",
        fields: &[
            Field {
                name: "ab",
                schema: Schema::String,
            },
            Field {
                name: "AB",
                schema: Schema::String,
            },
        ],
    };
    static LARGE_COLLIDING: StructSchema = StructSchema {
        index: FieldIndex::new(),
        go_type: "test.Large",
        fields: &[
            Field {
                name: "f1",
                schema: Schema::Bool,
            },
            Field {
                name: "f2",
                schema: Schema::Bool,
            },
            Field {
                name: "f3",
                schema: Schema::Bool,
            },
            Field {
                name: "f4",
                schema: Schema::Bool,
            },
            Field {
                name: "f5",
                schema: Schema::Bool,
            },
            Field {
                name: "f6",
                schema: Schema::Bool,
            },
            Field {
                name: "f7",
                schema: Schema::Bool,
            },
            Field {
                name: "f8",
                schema: Schema::Bool,
            },
            Field {
                name: "ab",
                schema: Schema::String,
            },
            Field {
                name: "AB",
                schema: Schema::String,
            },
        ],
    };

    /// Go: an exact name match wins; otherwise the FIRST field whose fold
    /// matches. Checked on both lookup paths (linear and hashed).
    #[test]
    fn exact_match_first_then_first_fold() {
        for st in [&SMALL_COLLIDING, &LARGE_COLLIDING] {
            let schema = Schema::Struct(st);
            let v = decode(br#"{"AB":"exact-upper","ab":"exact-lower"}"#, &schema).unwrap();
            assert_eq!(v["AB"], json!("exact-upper"), "{}", st.go_type);
            assert_eq!(v["ab"], json!("exact-lower"), "{}", st.go_type);
            let v = decode(br#"{"Ab":"folded"}"#, &schema).unwrap();
            assert_eq!(v, json!({"ab": "folded"}), "{}", st.go_type);
            assert!(st.lookup("zz").is_none());
        }
        // Non-ASCII spellings are refused on the linear path too
        // (DeviceMapping has 3 fields).
        let body = "{\"HostConfig\":{\"Devices\":[{\"PathOnHo\u{17f}t\":\"/dev/mem\"}]}}";
        assert!(decode(body.as_bytes(), &CONTAINER_CREATE).is_err());
    }

    #[test]
    fn many_empty_objects_decode() {
        // Sparse struct nodes: 100k empty mounts are cheap and all visible.
        let body = format!(
            r#"{{"HostConfig":{{"Mounts":[{}{{"Type":"bind","Source":"/"}}]}}}}"#,
            "{},".repeat(100_000)
        );
        let v = create(&body);
        let mounts = v["HostConfig"]["Mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 100_001);
        assert_eq!(mounts[100_000], json!({"Type": "bind", "Source": "/"}));
    }

    #[test]
    fn fold_matches_go() {
        assert_eq!(fold_name("Bind\u{17f}"), "BINDS");
        assert_eq!(fold_name("networ\u{212a}mode"), "NETWORKMODE");
        assert_eq!(fold_name("\u{130}mage"), "IMAGE");
        assert_eq!(fold_name("\u{131}"), "I");
        assert_eq!(fold_name("stra\u{df}e"), "STRA\u{df}E");
        assert_eq!(fold_name("\u{1f80}"), fold_name("\u{1f88}"));
        assert_eq!(fold_name("\u{3c3}"), fold_name("\u{3c2}"));
    }

    /// Drop Go zero values (false, 0, "", null, "default" network mode) from
    /// objects, so "omitted" and "zero" compare equal.
    fn strip_zero(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, x)| {
                        !matches!(x, Value::Null | Value::Bool(false))
                            && x.as_str() != Some("")
                            && x.as_f64() != Some(0.0)
                            && !(k.as_str() == "NetworkMode" && x.as_str() == Some("default"))
                            && !(k.as_str() == "ConsoleSize" && **x == json!([0, 0]))
                    })
                    .map(|(k, x)| (k.clone(), strip_zero(x)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip_zero).collect()),
            other => other.clone(),
        }
    }

    /// Bodies sent to a real daemon (see `daemon_cases.json`): our canonical
    /// view must show what the daemon stored, or refuse, or (documented cases)
    /// show more than the daemon uses.
    #[test]
    fn matches_recorded_daemon_behaviour() {
        let recorded: Value = serde_json::from_str(include_str!("daemon_cases.json")).unwrap();
        let cases = recorded["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let body = case["body"].as_str().unwrap();
            let ours = decode(body.as_bytes(), &CONTAINER_CREATE);
            let daemon = &case["daemon"];
            match case["expect"].as_str().unwrap() {
                "match" => {
                    let ours = ours.unwrap_or_else(|e| panic!("{body}: {e}"));
                    let theirs = strip_zero(&daemon["HostConfig"]);
                    let mine = strip_zero(ours.get("HostConfig").unwrap_or(&json!({})));
                    for (k, v) in theirs.as_object().unwrap() {
                        assert_eq!(mine.get(k), Some(v), "{body}: HostConfig.{k}");
                    }
                    for (k, v) in mine.as_object().unwrap() {
                        if let Some(d) = daemon["HostConfig"].get(k) {
                            assert_eq!(&strip_zero(d), v, "{body}: HostConfig.{k}");
                        }
                    }
                    if let Some(labels) = ours.get("Labels") {
                        assert_eq!(labels, &daemon["Labels"], "{body}");
                    }
                    if let Some(cmd) = ours.get("Cmd") {
                        assert_eq!(cmd, &daemon["Cmd"], "{body}");
                    }
                }
                "refused" | "we_refuse" => assert!(ours.is_err(), "{body} should be refused"),
                "daemon_validation_refused" => {
                    assert!(daemon.get("refused").is_some());
                    assert!(
                        ours.is_ok(),
                        "decoding is fine; the daemon's validation refused it"
                    );
                }
                other => panic!("unknown expectation {other}"),
            }
        }
    }

    /// Print the canonical view of each line of the file named by
    /// `GOJSON_BODIES` (for comparing with what a real daemon stored).
    #[test]
    #[ignore]
    fn decode_file() {
        let path = std::env::var("GOJSON_BODIES").expect("set GOJSON_BODIES");
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            match decode(line.as_bytes(), &CONTAINER_CREATE) {
                Ok(v) => println!("CANON {n} {v}"),
                Err(e) => println!("CANON {n} ERROR {e}"),
            }
        }
    }

    /// A typical 2 KiB create body; prints the per-decode time. Run with
    /// `cargo test --release --lib perf -- --ignored --nocapture` for the real figure.
    #[test]
    #[ignore]
    fn perf_typical_create() {
        let body = typical_create_body();
        assert!(body.len() > 1500 && body.len() < 3000, "{}", body.len());
        let n = 2000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(decode(body.as_bytes(), &CONTAINER_CREATE).unwrap());
        }
        let per = start.elapsed() / n;
        println!("{} bytes: {per:?} per decode", body.len());
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut parser = Parser {
                s: body.as_bytes(),
                text: &body,
                pos: 0,
                depth: 0,
            };
            let mut root = Node::Nil;
            parser.value(&CONTAINER_CREATE, &mut root).unwrap();
            std::hint::black_box(root);
        }
        println!("parse only: {:?} per decode", start.elapsed() / n);
    }

    pub(crate) fn typical_create_body() -> String {
        let mut env = String::new();
        for i in 0..20 {
            env.push_str(&format!("\"VAR_{i}=value-{i}-abcdefgh\","));
        }
        env.pop();
        format!(
            r#"{{"Hostname":"","Domainname":"","User":"1000:1000","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,
"ExposedPorts":{{"8080/tcp":{{}}}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":[{env}],
"Cmd":["/bin/sh","-c","exec my-server --port 8080"],"Image":"registry.example.com/team/app:1.2.3","Volumes":{{"/data":{{}}}},
"WorkingDir":"/app","Entrypoint":null,"OnBuild":null,"Labels":{{"com.example.team":"platform","com.example.app":"app"}},
"HostConfig":{{"Binds":["/srv/app/data:/data:rw"],"ContainerIDFile":"","LogConfig":{{"Type":"json-file","Config":{{"max-size":"10m"}}}},
"NetworkMode":"bridge","PortBindings":{{"8080/tcp":[{{"HostIp":"127.0.0.1","HostPort":"18080"}}]}},
"RestartPolicy":{{"Name":"unless-stopped","MaximumRetryCount":0}},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,
"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":["NET_RAW"],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],
"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,
"PublishAllPorts":false,"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"UTSMode":"","UsernsMode":"","ShmSize":0,
"Isolation":"","CpuShares":0,"Memory":536870912,"NanoCpus":1000000000,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],
"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],
"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,
"OomKillDisable":null,"PidsLimit":256,"Ulimits":[{{"Name":"nofile","Hard":65536,"Soft":65536}}],
"Mounts":[{{"Type":"tmpfs","Target":"/tmp","TmpfsOptions":{{"SizeBytes":67108864}}}}],"MaskedPaths":null,"ReadonlyPaths":null}},
"NetworkingConfig":{{"EndpointsConfig":{{"bridge":{{"Aliases":["app"]}}}}}}}}"#
        )
    }
}
