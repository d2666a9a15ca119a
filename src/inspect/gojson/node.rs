//! The value being decoded, with the memory Go keeps where it matters:
//! struct fields set so far, map entries, and a slice's backing array beyond
//! its visible length (see the module docs of [`super`]). Converted to a
//! `serde_json::Value` once decoding is done.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::types::{Schema, StructSchema};

/// The decoded value being built, with Go's memory where it matters.
#[derive(Debug, Clone)]
pub(super) enum Node {
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
    pub(super) fn zero(schema: &Schema) -> Node {
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

    pub(super) fn into_value(self) -> Value {
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
pub(super) struct Obj {
    entries: Vec<(String, Node)>,
    index: Option<HashMap<String, usize>>,
}

/// A struct value being decoded.
#[derive(Debug, Clone)]
pub(super) struct StructNode {
    pub(super) schema: &'static StructSchema,
    /// The fields set so far, as (position in `schema.fields`, value). Sparse,
    /// so that a body of many empty objects cannot make us allocate a slot per
    /// schema field for each (memory amplification).
    fields: Vec<(u16, Node)>,
    /// Unknown keys, under their Go fold.
    pub(super) extra: Option<Box<Obj>>,
}

impl StructNode {
    pub(super) fn new(schema: &'static StructSchema) -> Box<Self> {
        Box::new(Self {
            schema,
            fields: Vec::new(),
            extra: None,
        })
    }

    /// The slot of field `i`, created unset.
    pub(super) fn field(&mut self, i: usize) -> &mut Node {
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
    pub(super) fn slot(&mut self, key: Cow<'_, str>) -> &mut Node {
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
