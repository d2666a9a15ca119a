//! Serialize straight into a [`regorus::Value`].
//!
//! Why: the policy input used to be serialized to `serde_json::Value` and then
//! converted node by node, allocating every string and map twice. Serializing
//! with serde directly into regorus's value keeps exactly the shape serde gives
//! the JSON (field names, renames, enum tags, skipped fields) at a fraction of
//! the cost. Objects come out sorted (regorus objects are ordered maps) and
//! numbers as `serde_json` would store them, so the result equals
//! `regorus::Value::from(serde_json::to_value(x))` (a unit test checks).

use std::collections::BTreeMap;

use regorus::Value;
use serde::ser::{self, Serialize};

/// Why a value could not be serialized (e.g. a map with a non-scalar key).
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Serialize `value` into a regorus value.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    value.serialize(Serializer)
}

/// Integers as `serde_json` keeps them: signed when they fit.
fn unsigned(v: u64) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::from(i),
        Err(_) => Value::from(v),
    }
}

/// Non-finite floats become `null`, as in `serde_json`.
fn float(v: f64) -> Value {
    if v.is_finite() {
        Value::from(v)
    } else {
        Value::Null
    }
}

struct Serializer;

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Variant<Seq>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Variant<Map>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(Value::from(i64::from(v)))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(float(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::from(v.to_string().as_str()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(Value::from(
            v.iter()
                .map(|b| Value::from(i64::from(*b)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        let mut map = BTreeMap::new();
        map.insert(Value::from(variant), value.serialize(Serializer)?);
        Ok(Value::from(map))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len)))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Seq>, Error> {
        Ok(Variant {
            name: variant,
            inner: Seq(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map, Error> {
        Ok(Map::default())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Map, Error> {
        Ok(Map::default())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<Map>, Error> {
        Ok(Variant {
            name: variant,
            inner: Map::default(),
        })
    }
}

struct Seq(Vec<Value>);

impl ser::SerializeSeq for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.0.push(value.serialize(Serializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.0))
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeSeq::end(self)
    }
}

#[derive(Default)]
struct Map {
    entries: BTreeMap<Value, Value>,
    key: Option<Value>,
}

/// Map keys as JSON has them: strings; numbers and booleans as their text.
fn key_of(key: Value) -> Result<Value, Error> {
    match key {
        Value::String(_) => Ok(key),
        Value::Number(_) | Value::Bool(_) => Ok(Value::from(key.to_string().as_str())),
        other => Err(Error(format!("map key must be a string, not {other}"))),
    }
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key_of(key.serialize(Serializer)?)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("map value without a key".into()))?;
        self.entries.insert(key, value.serialize(Serializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::from(self.entries))
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.entries
            .insert(Value::from(key), value.serialize(Serializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        ser::SerializeMap::end(self)
    }
}

/// `{variant: inner}`, serde's external enum tagging.
struct Variant<T> {
    name: &'static str,
    inner: T,
}

impl<T> Variant<T> {
    fn wrap(name: &'static str, inner: Value) -> Value {
        let mut map = BTreeMap::new();
        map.insert(Value::from(name), inner);
        Value::from(map)
    }
}

impl ser::SerializeTupleVariant for Variant<Seq> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(&mut self.inner, value)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Self::wrap(self.name, ser::SerializeSeq::end(self.inner)?))
    }
}

impl ser::SerializeStructVariant for Variant<Map> {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Self::wrap(self.name, ser::SerializeMap::end(self.inner)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_json<T: Serialize>(x: &T) {
        let json = serde_json::to_value(x).unwrap();
        assert_eq!(to_value(x).unwrap(), Value::from(json.clone()), "{json}");
    }

    #[test]
    fn matches_the_json_route() {
        same_as_json(
            &json!({"a": [1, -2, 3.5, u64::MAX, null, true, "s"], "b": {"c": {}}, "z": {"y": 1, "x": 2}}),
        );
        same_as_json(&BTreeMap::from([(1u8, "one"), (2, "two")]));
        same_as_json(&(1u8, 'c', f64::NAN, Some(2i16), None::<u8>));
        #[derive(serde::Serialize)]
        #[serde(tag = "source", rename_all = "snake_case")]
        enum Tagged {
            PeerCredentials { uid: u32, pid: Option<i32> },
            Unidentified,
        }
        same_as_json(&Tagged::PeerCredentials {
            uid: 0,
            pid: Some(-1),
        });
        same_as_json(&Tagged::Unidentified);
        #[derive(serde::Serialize)]
        enum External {
            Unit,
            New(u8),
            Tuple(u8, String),
            Struct {
                #[serde(skip_serializing_if = "Vec::is_empty")]
                v: Vec<u8>,
                w: bool,
            },
        }
        for e in [
            External::Unit,
            External::New(1),
            External::Tuple(1, "x".into()),
            External::Struct { v: vec![], w: true },
        ] {
            same_as_json(&e);
        }
    }
}
