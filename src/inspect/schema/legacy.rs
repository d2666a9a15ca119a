//! The daemon's extra step after decoding a create body: up to 20.10, HostConfig
//! fields at the top level of the body also count (`getHostConfig()`).

use serde_json::{Map, Value};

use super::container::{CREATE_REQUEST, HOST_CONFIG};
use super::*;

/// What `getHostConfig()` copies from the top-level HostConfig into the inner
/// one when the inner value is zero (moby runconfig, up to 20.10).
const LEGACY_COPIED: [&str; 5] = [
    "Memory",
    "MemorySwap",
    "CpuShares",
    "CpusetCpus",
    "VolumeDriver",
];

/// Post-decode step for a schema, where the daemon does more than decode.
pub(crate) fn post_decode(schema: &Schema, value: &mut Value) {
    if let Schema::Ptr(Schema::Struct(st)) | Schema::Struct(st) = schema {
        if std::ptr::eq(*st, &CREATE_REQUEST) {
            apply_legacy_create_wrapper(value);
        }
    }
}

/// Make `HostConfig` the host config a 20.10 daemon actually uses.
///
/// Why: up to 20.10, HostConfig fields may also sit at the top level of a
/// create body (`{"Image":"x","Privileged":true,"Binds":["/:/host"]}`), and
/// `getHostConfig()` uses them when there is no inner `HostConfig`; with an
/// inner one it still copies Memory, MemorySwap, CpuShares, CpusetCpus and
/// VolumeDriver when the inner value is zero, and `Cpuset` into CpusetCpus.
/// A policy reading `HostConfig` would miss all of that. The top-level fields
/// also stay where they were, so nothing is hidden. Newer daemons ignore the
/// top-level fields: there this view can only show more than the daemon uses
/// (policies that REQUIRE a resource limit should read it from an inner
/// `HostConfig` that is present in the body).
pub fn apply_legacy_create_wrapper(value: &mut Value) {
    let Value::Object(top) = value else { return };
    let legacy: Map<String, Value> = HOST_CONFIG
        .fields
        .iter()
        .filter_map(|f| top.get(f.name).map(|v| (f.name.to_string(), v.clone())))
        .collect();
    match top.get_mut("HostConfig") {
        Some(Value::Object(inner)) => {
            for name in LEGACY_COPIED {
                if let Some(v) = legacy.get(name) {
                    if !is_go_zero(Some(v)) && is_go_zero(inner.get(name)) {
                        inner.insert(name.to_string(), v.clone());
                    }
                }
            }
        }
        _ if !legacy.is_empty() => {
            top.insert("HostConfig".to_string(), Value::Object(legacy));
        }
        _ => {}
    }
    let cpuset = top.get("Cpuset").filter(|v| !is_go_zero(Some(v))).cloned();
    if let (Some(cpuset), Some(Value::Object(hc))) = (cpuset, top.get_mut("HostConfig")) {
        if is_go_zero(hc.get("CpusetCpus")) {
            hc.insert("CpusetCpus".to_string(), cpuset);
        }
    }
}

/// Go's zero value test for the scalars copied above (absent counts as zero).
fn is_go_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(_) => false,
    }
}
