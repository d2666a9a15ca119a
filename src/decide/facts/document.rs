//! The policy's input document: the facts added to it, as regorus values.
//!
//! Why apart: [`super::compute`] decides what is true; this file decides how
//! it looks to Rego (`input.matches`, `input.refs`, ...) and keeps the
//! pre-built match elements ([`MatchTemplate`]) that make that cheap.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::{compute, Facts, Subject};
use crate::decide::PolicyInput;
use crate::trust::CompiledTrust;

impl Facts<'_> {
    fn now_ns_i64(&self) -> i64 {
        i64::try_from(self.now_ns).unwrap_or(i64::MAX)
    }

    /// Add the facts to a JSON input document: a second, plain builder that
    /// the tests read and compare [`Facts::add_to_value`] against.
    #[cfg(test)]
    fn add_to_json(&self, input: &mut Value) {
        let Value::Object(object) = input else { return };
        let matches = self
            .matches
            .iter()
            .map(|m| {
                let mut fact = match &m.relationship.json {
                    Value::Object(o) => o.clone(),
                    _ => Map::new(),
                };
                fact.insert("trust_id".into(), Value::from(m.relationship.id()));
                fact.insert("target_match".into(), Value::from(m.target_match));
                fact.insert("path_readable".into(), Value::from(m.path_readable));
                fact.insert("path_writable".into(), Value::from(m.path_writable));
                fact.insert(
                    "reads_everything".into(),
                    Value::from(m.relationship.reads_everything()),
                );
                fact.insert("image_allowed".into(), Value::from(m.image_allowed));
                let allowed: Map<String, Value> = m
                    .host_paths_allowed
                    .iter()
                    .map(|(p, a)| (p.clone(), Value::from(*a)))
                    .collect();
                fact.insert("host_paths_allowed".into(), Value::Object(allowed));
                Value::Object(fact)
            })
            .collect();
        object.insert("matches".into(), Value::Array(matches));
        object.insert(
            "image".into(),
            self.image.clone().map(Value::from).unwrap_or(Value::Null),
        );
        object.insert("host_paths".into(), serde_json::json!(self.host_paths));
        let refs: Map<String, Value> = self
            .refs
            .iter()
            .map(|(n, i)| (n.clone(), Value::from(*i)))
            .collect();
        object.insert("refs".into(), Value::Object(refs));
        object.insert(
            "volume_drivers".into(),
            serde_json::json!(self.volume_drivers),
        );
        let volumes: Map<String, Value> = self
            .volumes
            .iter()
            .map(|(n, m)| (n.clone(), Value::from(*m)))
            .collect();
        object.insert("volumes".into(), Value::Object(volumes));
        object.insert("now_ns".into(), Value::from(self.now_ns_i64()));
    }

    /// Add the facts to a regorus input value (an object), sharing each
    /// relationship's pre-built element of `matches` (see [`MatchTemplate`]).
    pub fn add_to_value(&self, input: &mut regorus::Value) -> anyhow::Result<()> {
        use regorus::Value as V;
        let keys = keys();
        let mut matches = Vec::with_capacity(self.matches.len());
        for m in &self.matches {
            let mut fact = m.relationship.match_template.get(
                m.target_match == "caller",
                [m.path_readable, m.path_writable, m.image_allowed],
            );
            debug_assert_eq!(fact[&keys.target_match], V::from(m.target_match));
            if !m.host_paths_allowed.is_empty() {
                fact.as_object_mut()?.insert(
                    keys.host_paths_allowed.clone(),
                    bool_object(&m.host_paths_allowed),
                );
            }
            matches.push(fact);
        }
        let object = input.as_object_mut()?;
        object.insert(keys.matches.clone(), V::from(matches));
        object.insert(
            keys.image.clone(),
            self.image.as_deref().map(V::from).unwrap_or(V::Null),
        );
        let host_paths: Vec<V> = self
            .host_paths
            .iter()
            .map(|p| V::from(p.as_str()))
            .collect();
        object.insert(keys.host_paths.clone(), V::from(host_paths));
        object.insert(keys.refs.clone(), bool_object(&self.refs));
        for (key, value) in self.volume_facts() {
            object.insert(key, value);
        }
        object.insert(keys.now_ns.clone(), V::from(self.now_ns_i64()));
        Ok(())
    }
}

impl Facts<'_> {
    /// `volume_drivers` and `volumes` (see [`crate::volumes`]).
    fn volume_facts(&self) -> [(regorus::Value, regorus::Value); 2] {
        use regorus::Value as V;
        let drivers: Vec<V> = self
            .volume_drivers
            .iter()
            .map(|d| V::from(d.as_str()))
            .collect();
        [
            (V::from("volume_drivers"), V::from(drivers)),
            (V::from("volumes"), bool_object(&self.volumes)),
        ]
    }
}

/// `{name: flag}` as a regorus object.
fn bool_object(entries: &[(String, bool)]) -> regorus::Value {
    let map: BTreeMap<regorus::Value, regorus::Value> = entries
        .iter()
        .map(|(k, on)| (regorus::Value::from(k.as_str()), regorus::Value::Bool(*on)))
        .collect();
    regorus::Value::from(map)
}

/// The keys the facts add, allocated once.
struct Keys {
    matches: regorus::Value,
    image: regorus::Value,
    host_paths: regorus::Value,
    refs: regorus::Value,
    now_ns: regorus::Value,
    target_match: regorus::Value,
    path_readable: regorus::Value,
    path_writable: regorus::Value,
    image_allowed: regorus::Value,
    host_paths_allowed: regorus::Value,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = regorus::Value::from;
        Keys {
            matches: k("matches"),
            image: k("image"),
            host_paths: k("host_paths"),
            refs: k("refs"),
            now_ns: k("now_ns"),
            target_match: k("target_match"),
            path_readable: k("path_readable"),
            path_writable: k("path_writable"),
            image_allowed: k("image_allowed"),
            host_paths_allowed: k("host_paths_allowed"),
        }
    })
}

/// A relationship as an element of `input.matches`, once per trust revision:
/// its JSON fields plus the facts that do not depend on the request
/// (`trust_id`, `target_match`, `reads_everything`), with the boolean
/// per-request facts (`path_readable`, `path_writable`, `image_allowed`) in
/// each of their eight combinations, each built on first use.
/// `host_paths_allowed` is `{}`; [`Facts::add_to_value`] fills it in a copy.
#[derive(Debug, Clone)]
pub struct MatchTemplate {
    /// Indexed by "granted per caller" (`target_match: "caller"`) or not.
    base: [regorus::Value; 2],
    variants: [[OnceLock<regorus::Value>; 8]; 2],
}

impl MatchTemplate {
    /// The template of a relationship (its JSON object and id) whose target
    /// pattern matches as `target_match` (`exact`, `glob`, ...).
    pub fn new(json: &Value, id: &str, target_match: &'static str, reads_everything: bool) -> Self {
        let base = |target_match: &str| {
            let mut fact = match json {
                Value::Object(o) => o.clone(),
                _ => Map::new(),
            };
            fact.insert("trust_id".into(), Value::from(id));
            fact.insert("target_match".into(), Value::from(target_match));
            fact.insert("path_readable".into(), Value::from(false));
            fact.insert("path_writable".into(), Value::from(false));
            fact.insert("reads_everything".into(), Value::from(reads_everything));
            fact.insert("image_allowed".into(), Value::from(false));
            fact.insert("host_paths_allowed".into(), Value::Object(Map::new()));
            json_to_value(&Value::Object(fact))
        };
        MatchTemplate {
            base: [base(target_match), base("caller")],
            variants: Default::default(),
        }
    }

    /// The element with these facts: `[path_readable, path_writable, image_allowed]`.
    pub fn get(&self, by_caller: bool, flags: [bool; 3]) -> regorus::Value {
        let index = flags
            .iter()
            .enumerate()
            .fold(0, |acc, (bit, on)| acc | (usize::from(*on) << bit));
        let side = usize::from(by_caller);
        if index == 0 {
            return self.base[side].clone();
        }
        self.variants[side][index]
            .get_or_init(|| {
                let keys = keys();
                let mut fact = self.base[side].clone();
                if let Ok(object) = fact.as_object_mut() {
                    let names = [
                        &keys.path_readable,
                        &keys.path_writable,
                        &keys.image_allowed,
                    ];
                    for (name, on) in names.into_iter().zip(flags) {
                        object.insert(name.clone(), regorus::Value::Bool(on));
                    }
                }
                fact
            })
            .clone()
    }
}

/// Add the precomputed facts to a JSON input document, with the test-only
/// builder (serving and `policy eval` build regorus values directly).
#[cfg(test)]
pub(super) fn enrich(input: &mut Value, trust: &CompiledTrust, now_ns: i128) {
    let facts = compute(&Subject::from_json(input), trust, now_ns);
    facts.add_to_json(input);
}

/// Convert JSON for regorus directly: regorus's own `From<serde_json::Value>`
/// goes through serde and costs tens of microseconds for a small document.
pub fn json_to_value(json: &Value) -> regorus::Value {
    use regorus::Value as V;
    match json {
        Value::Null => V::Null,
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::from(i)
            } else if let Some(u) = n.as_u64() {
                V::from(u)
            } else {
                V::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => V::from(s.as_str()),
        Value::Array(a) => V::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        Value::Object(o) => V::from(
            o.iter()
                .map(|(k, v)| (V::from(k.as_str()), json_to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// The input document for regorus from its JSON form, facts included.
pub fn to_policy_value(
    input: &Value,
    trust: &CompiledTrust,
    now_ns: i128,
) -> anyhow::Result<regorus::Value> {
    if !input.is_object() {
        anyhow::bail!("the input document must be a JSON object");
    }
    let facts = compute(&Subject::from_json(input), trust, now_ns);
    let mut value = json_to_value(input);
    facts.add_to_value(&mut value)?;
    Ok(value)
}

/// The input document for regorus from a typed input, facts included: the
/// same document as [`to_policy_value`] of its JSON, without the JSON.
pub fn policy_value(
    input: &PolicyInput,
    trust: &CompiledTrust,
    now_ns: i128,
) -> anyhow::Result<regorus::Value> {
    let facts = compute(&Subject::from_input(input), trust, now_ns);
    let mut value = crate::decide::value::to_value(input)?;
    facts.add_to_value(&mut value)?;
    Ok(value)
}
