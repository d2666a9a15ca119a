//! The daemon's Go types for the request bodies that grant power, as
//! [`Schema`]s for [`super::gojson::decode`].
//!
//! Why hand-written: the decoder must know, per field, what Go does with
//! `null`, duplicate objects and arrays (value struct vs pointer vs slice vs
//! map), and which fields are `strslice.StrSlice`. Field names are the JSON
//! names Go uses (the tag, else the Go field name), checked against
//! `shared/docker-api/swagger.yaml` (API 1.56) and moby's `api/types`.
//! Embedded structs (`CreateRequest` embeds `*Config`, `HostConfig` embeds
//! `Resources`, `network.CreateRequest` embeds `CreateOptions`) are flattened,
//! as Go promotes their fields. Fields the schema lacks are still shown to the
//! policy (see the `gojson` module docs), so an omission fails safe.
//!
//! Known simplifications: `nat.Port` map keys (PortBindings, ExposedPorts) are
//! exact strings, as in daemon 20.10 (newer daemons parse them as `80/tcp`, so
//! `80` and `80/tcp` may collide there); `netip` addresses are plain strings;
//! `swarm/runtime.PluginSpec` uses its lowercase protobuf JSON tags.
//!
//! Layout: this file holds the shared vocabulary (scalar schemas, the `f!`
//! macro), the plugin body and the action table; `container.rs`, `service.rs`,
//! `network.rs` and `volume.rs` hold the daemon's types per area, and
//! `legacy.rs` the daemon's post-decode step for create bodies.

use super::gojson::{Field, FieldIndex, Schema, StructSchema};
use crate::classify::Action;

const BOOL: Schema = Schema::Bool;
const INT: Schema = Schema::Int(64);
const INT64: Schema = Schema::Int(64);
const UINT: Schema = Schema::Uint(64);
const UINT16: Schema = Schema::Uint(16);
const UINT32: Schema = Schema::Uint(32);
const UINT64: Schema = Schema::Uint(64);
const STR: Schema = Schema::String;
const STRS: Schema = Schema::Slice(&Schema::String);
const STR_SLICE: Schema = Schema::StrSlice;
const STR_MAP: Schema = Schema::Map(&Schema::String);
/// `map[string]struct{}` (Volumes, ExposedPorts).
const SET: Schema = Schema::Map(&Schema::Struct(&EMPTY));
const BOOL_PTR: Schema = Schema::Ptr(&Schema::Bool);
const INT64_PTR: Schema = Schema::Ptr(&Schema::Int(64));
const UINT64_PTR: Schema = Schema::Ptr(&Schema::Uint(64));
/// `time.Duration` is an int64 of nanoseconds.
const DURATION: Schema = Schema::Int(64);
const DURATION_PTR: Schema = Schema::Ptr(&Schema::Int(64));
/// `os.FileMode` is a uint32.
const FILE_MODE: Schema = Schema::Uint(32);

/// A field as a struct literal, so nested `&Schema` temporaries get 'static
/// lifetime extension inside the static initializers.
macro_rules! f {
    ($name:literal, $schema:expr $(,)?) => {
        Field {
            name: $name,
            schema: $schema,
        }
    };
}

static EMPTY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "struct {}",
    fields: &[],
};

/// Permissive decoding for routes without a schema (see [`Schema::Generic`]).
pub static GENERIC: Schema = Schema::Generic;

// Declared after `f!` and the shared constants, which the files use.
mod container;
mod legacy;
mod network;
mod service;
mod volume;

use container::{CONFIG, CREATE_REQUEST, EXEC_CONFIG, EXEC_START, UPDATE_CONFIG};
use network::{NETWORK_CONNECT, NETWORK_CREATE, NETWORK_DISCONNECT};
use service::SERVICE_SPEC;
use volume::VOLUME_CREATE;

pub use legacy::apply_legacy_create_wrapper;
pub(crate) use legacy::post_decode;

// ---- plugins ----------------------------------------------------------------

static PLUGIN_PRIVILEGE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "types.PluginPrivilege",
    fields: &[f!("Name", STR), f!("Description", STR), f!("Value", STRS)],
};

// ---- portcullis's agent controls (not the daemon's) -------------------------------

/// `POST /api/v1/containers/{id}/update-image`: `{image, tag, preserveVolumes,
/// preserveNetworks}`, under these names (the policy's `input.body` and
/// `agent::update` read them so).
static UPDATE_IMAGE_BODY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "portcullis.UpdateImage",
    fields: &[
        f!("image", STR),
        f!("tag", STR),
        f!("preserveVolumes", BOOL_PTR),
        f!("preserveNetworks", BOOL_PTR),
    ],
};

/// `PATCH /api/v1/containers/{id}/env`: `{set: {NAME: value}, unset: [NAME]}`.
static ENV_PATCH_BODY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "portcullis.EnvPatch",
    fields: &[f!("set", STR_MAP), f!("unset", STRS)],
};

// ---- the table ---------------------------------------------------------------------

pub static CONTAINER_CREATE: Schema = Schema::Ptr(&Schema::Struct(&CREATE_REQUEST));
pub static CONTAINER_COMMIT: Schema = Schema::Ptr(&Schema::Struct(&CONFIG));
pub static CONTAINER_UPDATE: Schema = Schema::Ptr(&Schema::Struct(&UPDATE_CONFIG));
pub static EXEC_CREATE: Schema = Schema::Ptr(&Schema::Struct(&EXEC_CONFIG));
pub static EXEC_START_SCHEMA: Schema = Schema::Ptr(&Schema::Struct(&EXEC_START));
pub static SERVICE: Schema = Schema::Ptr(&Schema::Struct(&SERVICE_SPEC));
pub static PLUGIN_PRIVILEGES: Schema = Schema::Slice(&Schema::Struct(&PLUGIN_PRIVILEGE));
pub static PLUGIN_SET: Schema = Schema::Slice(&Schema::String);
pub static NETWORK_CREATE_SCHEMA: Schema = Schema::Ptr(&Schema::Struct(&NETWORK_CREATE));
pub static NETWORK_CONNECT_SCHEMA: Schema = Schema::Ptr(&Schema::Struct(&NETWORK_CONNECT));
pub static NETWORK_DISCONNECT_SCHEMA: Schema = Schema::Ptr(&Schema::Struct(&NETWORK_DISCONNECT));
pub static VOLUME_CREATE_SCHEMA: Schema = Schema::Ptr(&Schema::Struct(&VOLUME_CREATE));
pub static UPDATE_IMAGE: Schema = Schema::Ptr(&Schema::Struct(&UPDATE_IMAGE_BODY));
pub static ENV_PATCH: Schema = Schema::Ptr(&Schema::Struct(&ENV_PATCH_BODY));

/// The schema of the JSON body for an action (names from ACTIONS.md); the
/// permissive [`GENERIC`] schema for every other action.
pub fn schema_for(action: Action) -> &'static Schema {
    match action {
        Action::CONTAINER_CREATE => &CONTAINER_CREATE,
        // API < 1.24 only: daemons up to 20.10 (min API 1.12) still apply a
        // HostConfig sent with start, decoded through the same wrapper type.
        Action::CONTAINER_START => &CONTAINER_CREATE,
        Action::CONTAINER_COMMIT => &CONTAINER_COMMIT,
        Action::CONTAINER_UPDATE => &CONTAINER_UPDATE,
        Action::CONTAINER_EXEC => &EXEC_CREATE,
        Action::EXEC_START => &EXEC_START_SCHEMA,
        Action::SERVICE_CREATE | Action::SERVICE_UPDATE => &SERVICE,
        Action::PLUGIN_INSTALL | Action::PLUGIN_UPGRADE => &PLUGIN_PRIVILEGES,
        Action::PLUGIN_SET => &PLUGIN_SET,
        Action::NETWORK_CREATE => &NETWORK_CREATE_SCHEMA,
        Action::NETWORK_CONNECT => &NETWORK_CONNECT_SCHEMA,
        Action::NETWORK_DISCONNECT => &NETWORK_DISCONNECT_SCHEMA,
        Action::VOLUME_CREATE => &VOLUME_CREATE_SCHEMA,
        Action::CONTAINER_UPDATE_IMAGE => &UPDATE_IMAGE,
        Action::CONTAINER_ENV_UPDATE => &ENV_PATCH,
        _ => &GENERIC,
    }
}

/// Every named schema, for tests that walk them.
#[cfg(any(test, fuzzing))]
pub(crate) fn all_named() -> [&'static Schema; 12] {
    [
        &CONTAINER_CREATE,
        &CONTAINER_COMMIT,
        &CONTAINER_UPDATE,
        &EXEC_CREATE,
        &EXEC_START_SCHEMA,
        &SERVICE,
        &PLUGIN_PRIVILEGES,
        &PLUGIN_SET,
        &NETWORK_CREATE_SCHEMA,
        &NETWORK_CONNECT_SCHEMA,
        &NETWORK_DISCONNECT_SCHEMA,
        &VOLUME_CREATE_SCHEMA,
    ]
}
