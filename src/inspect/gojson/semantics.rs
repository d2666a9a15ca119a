//! Go's decoding semantics on top of the lexer: which JSON kind each Go type
//! accepts, `null` per type, struct field lookup by fold, merging into
//! existing structs, fresh map values, slices reusing their backing array,
//! fixed arrays, and the permissive mode for unknown types.

use std::borrow::Cow;

use serde_json::Number;

use super::error::{DecodeError, Res};
use super::fold::fold_name;
use super::lexer::{Kind, Parser};
use super::node::{Node, StructNode};
use super::types::{Schema, StructSchema};

impl<'a> Parser<'a> {
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
    pub(super) fn value(&mut self, schema: &Schema, slot: &mut Node) -> Res<()> {
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
