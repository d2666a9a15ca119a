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

use serde_json::{Map, Value};

use super::gojson::{Field, FieldIndex, Schema, StructSchema};

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

// ---- container create / commit ----------------------------------------

static HEALTH_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.HealthConfig",
    fields: &[
        f!("Test", STRS),
        f!("Interval", DURATION),
        f!("Timeout", DURATION),
        f!("StartPeriod", DURATION),
        f!("StartInterval", DURATION),
        f!("Retries", INT),
    ],
};

/// `container.Config` fields, in Go order (flattened by create, whole by commit).
static CONFIG_FIELDS: [Field; 25] = [
    f!("Hostname", STR),
    f!("Domainname", STR),
    f!("User", STR),
    f!("AttachStdin", BOOL),
    f!("AttachStdout", BOOL),
    f!("AttachStderr", BOOL),
    f!("ExposedPorts", SET),
    f!("Tty", BOOL),
    f!("OpenStdin", BOOL),
    f!("StdinOnce", BOOL),
    f!("Env", STRS),
    f!("Cmd", STR_SLICE),
    f!("Healthcheck", Schema::Ptr(&Schema::Struct(&HEALTH_CONFIG))),
    f!("ArgsEscaped", BOOL),
    f!("Image", STR),
    f!("Volumes", SET),
    f!("WorkingDir", STR),
    f!("Entrypoint", STR_SLICE),
    f!("NetworkDisabled", BOOL),
    f!("MacAddress", STR),
    f!("OnBuild", STRS),
    f!("Labels", STR_MAP),
    f!("StopSignal", STR),
    f!("StopTimeout", Schema::Ptr(&Schema::Int(64))),
    f!("Shell", STR_SLICE),
];

/// Concatenate field lists at compile time, for Go's embedded (promoted) structs.
const fn join<const N: usize>(parts: &[&[Field]]) -> [Field; N] {
    let mut out = [Field {
        name: "",
        schema: Schema::Generic,
    }; N];
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(
        n == N,
        "join: field count does not match the declared length"
    );
    out
}

static CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.Config",
    fields: &CONFIG_FIELDS,
};

static WEIGHT_DEVICE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "blkiodev.WeightDevice",
    fields: &[f!("Path", STR), f!("Weight", UINT16)],
};

static THROTTLE_DEVICE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "blkiodev.ThrottleDevice",
    fields: &[f!("Path", STR), f!("Rate", UINT64)],
};

const THROTTLE_DEVICES: Schema = Schema::Slice(&Schema::Ptr(&Schema::Struct(&THROTTLE_DEVICE)));

static DEVICE_MAPPING: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.DeviceMapping",
    fields: &[
        f!("PathOnHost", STR),
        f!("PathInContainer", STR),
        f!("CgroupPermissions", STR),
    ],
};

static DEVICE_REQUEST: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.DeviceRequest",
    fields: &[
        f!("Driver", STR),
        f!("Count", INT),
        f!("DeviceIDs", STRS),
        f!("Capabilities", Schema::Slice(&STRS)),
        f!("Options", STR_MAP),
    ],
};

static ULIMIT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "units.Ulimit",
    fields: &[f!("Name", STR), f!("Hard", INT64), f!("Soft", INT64)],
};

const ULIMITS: Schema = Schema::Slice(&Schema::Ptr(&Schema::Struct(&ULIMIT)));

/// `container.Resources` fields (embedded in HostConfig and UpdateConfig).
static RESOURCES_FIELDS: [Field; 31] = [
    f!("CpuShares", INT64),
    f!("Memory", INT64),
    f!("NanoCpus", INT64),
    f!("CgroupParent", STR),
    f!("BlkioWeight", UINT16),
    f!(
        "BlkioWeightDevice",
        Schema::Slice(&Schema::Ptr(&Schema::Struct(&WEIGHT_DEVICE)))
    ),
    f!("BlkioDeviceReadBps", THROTTLE_DEVICES),
    f!("BlkioDeviceWriteBps", THROTTLE_DEVICES),
    f!("BlkioDeviceReadIOps", THROTTLE_DEVICES),
    f!("BlkioDeviceWriteIOps", THROTTLE_DEVICES),
    f!("CpuPeriod", INT64),
    f!("CpuQuota", INT64),
    f!("CpuRealtimePeriod", INT64),
    f!("CpuRealtimeRuntime", INT64),
    f!("CpusetCpus", STR),
    f!("CpusetMems", STR),
    f!("Devices", Schema::Slice(&Schema::Struct(&DEVICE_MAPPING))),
    f!("DeviceCgroupRules", STRS),
    f!(
        "DeviceRequests",
        Schema::Slice(&Schema::Struct(&DEVICE_REQUEST))
    ),
    f!("KernelMemory", INT64),
    f!("KernelMemoryTCP", INT64),
    f!("MemoryReservation", INT64),
    f!("MemorySwap", INT64),
    f!("MemorySwappiness", INT64_PTR),
    f!("OomKillDisable", BOOL_PTR),
    f!("PidsLimit", INT64_PTR),
    f!("Ulimits", ULIMITS),
    f!("CpuCount", INT64),
    f!("CpuPercent", INT64),
    f!("IOMaximumIOps", UINT64),
    f!("IOMaximumBandwidth", UINT64),
];

static LOG_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.LogConfig",
    fields: &[f!("Type", STR), f!("Config", STR_MAP)],
};

static PORT_BINDING: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "nat.PortBinding",
    fields: &[f!("HostIp", STR), f!("HostPort", STR)],
};

static RESTART_POLICY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.RestartPolicy",
    fields: &[f!("Name", STR), f!("MaximumRetryCount", INT)],
};

static BIND_OPTIONS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.BindOptions",
    fields: &[
        f!("Propagation", STR),
        f!("NonRecursive", BOOL),
        f!("CreateMountpoint", BOOL),
        f!("ReadOnlyNonRecursive", BOOL),
        f!("ReadOnlyForceRecursive", BOOL),
    ],
};

static MOUNT_DRIVER: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.Driver",
    fields: &[f!("Name", STR), f!("Options", STR_MAP)],
};

static VOLUME_OPTIONS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.VolumeOptions",
    fields: &[
        f!("NoCopy", BOOL),
        f!("Labels", STR_MAP),
        f!("Subpath", STR),
        f!("DriverConfig", Schema::Ptr(&Schema::Struct(&MOUNT_DRIVER))),
    ],
};

static IMAGE_OPTIONS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.ImageOptions",
    fields: &[f!("Subpath", STR)],
};

static TMPFS_OPTIONS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.TmpfsOptions",
    fields: &[
        f!("SizeBytes", INT64),
        f!("Mode", FILE_MODE),
        f!("Options", Schema::Slice(&STRS)),
    ],
};

static MOUNT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "mount.Mount",
    fields: &[
        f!("Type", STR),
        f!("Source", STR),
        f!("Target", STR),
        f!("ReadOnly", BOOL),
        f!("Consistency", STR),
        f!("BindOptions", Schema::Ptr(&Schema::Struct(&BIND_OPTIONS))),
        f!(
            "VolumeOptions",
            Schema::Ptr(&Schema::Struct(&VOLUME_OPTIONS))
        ),
        f!("ImageOptions", Schema::Ptr(&Schema::Struct(&IMAGE_OPTIONS))),
        f!("TmpfsOptions", Schema::Ptr(&Schema::Struct(&TMPFS_OPTIONS))),
        f!("ClusterOptions", Schema::Ptr(&Schema::Struct(&EMPTY))),
    ],
};

const MOUNTS: Schema = Schema::Slice(&Schema::Struct(&MOUNT));

/// `container.HostConfig`'s own fields (Resources is embedded between
/// Isolation and Mounts in Go; order only matters for fold collisions, and
/// there are none: tested).
static HOST_CONFIG_OWN: [Field; 41] = [
    f!("Binds", STRS),
    f!("ContainerIDFile", STR),
    f!("LogConfig", Schema::Struct(&LOG_CONFIG)),
    f!("NetworkMode", STR),
    f!(
        "PortBindings",
        Schema::Map(&Schema::Slice(&Schema::Struct(&PORT_BINDING)))
    ),
    f!("RestartPolicy", Schema::Struct(&RESTART_POLICY)),
    f!("AutoRemove", BOOL),
    f!("VolumeDriver", STR),
    f!("VolumesFrom", STRS),
    f!("ConsoleSize", Schema::Array(&UINT, 2)),
    f!("Annotations", STR_MAP),
    f!("CapAdd", STR_SLICE),
    f!("CapDrop", STR_SLICE),
    // API 1.40 (daemon 19.03): the full capability set; harmless to show if unknown.
    f!("Capabilities", STRS),
    f!("CgroupnsMode", STR),
    f!("Dns", STRS),
    f!("DnsOptions", STRS),
    f!("DnsSearch", STRS),
    f!("ExtraHosts", STRS),
    f!("GroupAdd", STRS),
    f!("IpcMode", STR),
    f!("Cgroup", STR),
    f!("Links", STRS),
    f!("OomScoreAdj", INT),
    f!("PidMode", STR),
    f!("Privileged", BOOL),
    f!("PublishAllPorts", BOOL),
    f!("ReadonlyRootfs", BOOL),
    f!("SecurityOpt", STRS),
    f!("StorageOpt", STR_MAP),
    f!("Tmpfs", STR_MAP),
    f!("UTSMode", STR),
    f!("UsernsMode", STR),
    f!("ShmSize", INT64),
    f!("Sysctls", STR_MAP),
    f!("Runtime", STR),
    f!("Isolation", STR),
    f!("Mounts", MOUNTS),
    f!("MaskedPaths", STRS),
    f!("ReadonlyPaths", STRS),
    f!("Init", BOOL_PTR),
];

static HOST_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.HostConfig",
    fields: &join::<72>(&[&HOST_CONFIG_OWN, &RESOURCES_FIELDS]),
};

static ENDPOINT_IPAM_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.EndpointIPAMConfig",
    fields: &[
        f!("IPv4Address", STR),
        f!("IPv6Address", STR),
        f!("LinkLocalIPs", STRS),
    ],
};

static ENDPOINT_SETTINGS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.EndpointSettings",
    fields: &[
        f!(
            "IPAMConfig",
            Schema::Ptr(&Schema::Struct(&ENDPOINT_IPAM_CONFIG))
        ),
        f!("Links", STRS),
        f!("Aliases", STRS),
        f!("DriverOpts", STR_MAP),
        f!("GwPriority", INT),
        f!("NetworkID", STR),
        f!("EndpointID", STR),
        f!("Gateway", STR),
        f!("IPAddress", STR),
        f!("IPPrefixLen", INT),
        f!("IPv6Gateway", STR),
        f!("GlobalIPv6Address", STR),
        f!("GlobalIPv6PrefixLen", INT),
        f!("MacAddress", STR),
        f!("DNSNames", STRS),
    ],
};

static NETWORKING_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.NetworkingConfig",
    fields: &[f!(
        "EndpointsConfig",
        Schema::Map(&Schema::Ptr(&Schema::Struct(&ENDPOINT_SETTINGS))),
    )],
};

/// The wrapper's own fields. Daemons up to 20.10 decode create bodies into
/// `runconfig.ContainerConfigWrapper`, which also embeds a deprecated
/// `*container.HostConfig` (and a `Cpuset` string) at the TOP level; see
/// [`apply_legacy_create_wrapper`].
static CREATE_OWN: [Field; 3] = [
    f!("HostConfig", Schema::Ptr(&Schema::Struct(&HOST_CONFIG))),
    f!("Cpuset", STR),
    f!(
        "NetworkingConfig",
        Schema::Ptr(&Schema::Struct(&NETWORKING_CONFIG))
    ),
];

static CREATE_REQUEST: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.CreateRequest",
    fields: &join::<100>(&[
        &CONFIG_FIELDS,
        &CREATE_OWN,
        &HOST_CONFIG_OWN,
        &RESOURCES_FIELDS,
    ]),
};

static UPDATE_OWN: [Field; 1] = [f!("RestartPolicy", Schema::Struct(&RESTART_POLICY))];

static UPDATE_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.UpdateConfig",
    fields: &join::<32>(&[&RESOURCES_FIELDS, &UPDATE_OWN]),
};

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

// ---- exec ---------------------------------------------------------------

static EXEC_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.ExecOptions",
    fields: &[
        f!("User", STR),
        f!("Privileged", BOOL),
        f!("Tty", BOOL),
        f!("ConsoleSize", Schema::Ptr(&Schema::Array(&UINT, 2))),
        f!("AttachStdin", BOOL),
        f!("AttachStderr", BOOL),
        f!("AttachStdout", BOOL),
        f!("Detach", BOOL),
        f!("DetachKeys", STR),
        f!("Env", STRS),
        f!("WorkingDir", STR),
        f!("Cmd", STR_SLICE),
    ],
};

static EXEC_START: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.ExecStartOptions",
    fields: &[
        f!("Detach", BOOL),
        f!("Tty", BOOL),
        f!("ConsoleSize", Schema::Ptr(&Schema::Array(&UINT, 2))),
    ],
};

// ---- services -------------------------------------------------------------

static CREDENTIAL_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.CredentialSpec",
    fields: &[f!("Config", STR), f!("File", STR), f!("Registry", STR)],
};

static SELINUX_CONTEXT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.SELinuxContext",
    fields: &[
        f!("Disable", BOOL),
        f!("User", STR),
        f!("Role", STR),
        f!("Type", STR),
        f!("Level", STR),
    ],
};

static SECCOMP_OPTS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.SeccompOpts",
    fields: &[f!("Mode", STR), f!("Profile", Schema::Base64)],
};

static APPARMOR_OPTS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.AppArmorOpts",
    fields: &[f!("Mode", STR)],
};

static PRIVILEGES: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Privileges",
    fields: &[
        f!(
            "CredentialSpec",
            Schema::Ptr(&Schema::Struct(&CREDENTIAL_SPEC))
        ),
        f!(
            "SELinuxContext",
            Schema::Ptr(&Schema::Struct(&SELINUX_CONTEXT))
        ),
        f!("Seccomp", Schema::Ptr(&Schema::Struct(&SECCOMP_OPTS))),
        f!("AppArmor", Schema::Ptr(&Schema::Struct(&APPARMOR_OPTS))),
        f!("NoNewPrivileges", BOOL),
    ],
};

static DNS_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.DNSConfig",
    fields: &[
        f!("Nameservers", STRS),
        f!("Search", STRS),
        f!("Options", STRS),
    ],
};

static FILE_TARGET: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.SecretReferenceFileTarget",
    fields: &[
        f!("Name", STR),
        f!("UID", STR),
        f!("GID", STR),
        f!("Mode", FILE_MODE),
    ],
};

static SECRET_REFERENCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.SecretReference",
    fields: &[
        f!("File", Schema::Ptr(&Schema::Struct(&FILE_TARGET))),
        f!("SecretID", STR),
        f!("SecretName", STR),
    ],
};

static CONFIG_REFERENCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ConfigReference",
    fields: &[
        f!("File", Schema::Ptr(&Schema::Struct(&FILE_TARGET))),
        f!("Runtime", Schema::Ptr(&Schema::Struct(&EMPTY))),
        f!("ConfigID", STR),
        f!("ConfigName", STR),
    ],
};

static CONTAINER_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ContainerSpec",
    fields: &[
        f!("Image", STR),
        f!("Labels", STR_MAP),
        f!("Command", STRS),
        f!("Args", STRS),
        f!("Hostname", STR),
        f!("Env", STRS),
        f!("Dir", STR),
        f!("User", STR),
        f!("Groups", STRS),
        f!("Privileges", Schema::Ptr(&Schema::Struct(&PRIVILEGES))),
        f!("Init", BOOL_PTR),
        f!("StopSignal", STR),
        f!("TTY", BOOL),
        f!("OpenStdin", BOOL),
        f!("ReadOnly", BOOL),
        f!("Mounts", MOUNTS),
        f!("StopGracePeriod", DURATION_PTR),
        f!("Healthcheck", Schema::Ptr(&Schema::Struct(&HEALTH_CONFIG))),
        f!("Hosts", STRS),
        f!("DNSConfig", Schema::Ptr(&Schema::Struct(&DNS_CONFIG))),
        f!(
            "Secrets",
            Schema::Slice(&Schema::Ptr(&Schema::Struct(&SECRET_REFERENCE)))
        ),
        f!(
            "Configs",
            Schema::Slice(&Schema::Ptr(&Schema::Struct(&CONFIG_REFERENCE)))
        ),
        f!("Isolation", STR),
        f!("Sysctls", STR_MAP),
        f!("CapabilityAdd", STRS),
        f!("CapabilityDrop", STRS),
        f!("Ulimits", ULIMITS),
        f!("OomScoreAdj", INT64),
    ],
};

static PLUGIN_PRIVILEGE_LOWER: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "runtime.PluginPrivilege",
    fields: &[f!("name", STR), f!("description", STR), f!("value", STRS)],
};

static PLUGIN_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "runtime.PluginSpec",
    fields: &[
        f!("name", STR),
        f!("remote", STR),
        f!(
            "privileges",
            Schema::Slice(&Schema::Ptr(&Schema::Struct(&PLUGIN_PRIVILEGE_LOWER)))
        ),
        f!("disabled", BOOL),
        f!("env", STRS),
    ],
};

static NETWORK_ATTACHMENT_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.NetworkAttachmentSpec",
    fields: &[f!("ContainerID", STR)],
};

static NAMED_GENERIC_RESOURCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.NamedGenericResource",
    fields: &[f!("Kind", STR), f!("Value", STR)],
};

static DISCRETE_GENERIC_RESOURCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.DiscreteGenericResource",
    fields: &[f!("Kind", STR), f!("Value", INT64)],
};

static GENERIC_RESOURCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.GenericResource",
    fields: &[
        f!(
            "NamedResourceSpec",
            Schema::Ptr(&Schema::Struct(&NAMED_GENERIC_RESOURCE))
        ),
        f!(
            "DiscreteResourceSpec",
            Schema::Ptr(&Schema::Struct(&DISCRETE_GENERIC_RESOURCE))
        ),
    ],
};

static LIMIT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Limit",
    fields: &[
        f!("NanoCPUs", INT64),
        f!("MemoryBytes", INT64),
        f!("Pids", INT64),
    ],
};

static SWARM_RESOURCES: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Resources",
    fields: &[
        f!("NanoCPUs", INT64),
        f!("MemoryBytes", INT64),
        f!(
            "GenericResources",
            Schema::Slice(&Schema::Struct(&GENERIC_RESOURCE))
        ),
    ],
};

static RESOURCE_REQUIREMENTS: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ResourceRequirements",
    fields: &[
        f!("Limits", Schema::Ptr(&Schema::Struct(&LIMIT))),
        f!(
            "Reservations",
            Schema::Ptr(&Schema::Struct(&SWARM_RESOURCES))
        ),
        f!("SwapBytes", INT64_PTR),
        f!("MemorySwappiness", INT64_PTR),
    ],
};

static SWARM_RESTART_POLICY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.RestartPolicy",
    fields: &[
        f!("Condition", STR),
        f!("Delay", DURATION_PTR),
        f!("MaxAttempts", UINT64_PTR),
        f!("Window", DURATION_PTR),
    ],
};

static SPREAD_OVER: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.SpreadOver",
    fields: &[f!("SpreadDescriptor", STR)],
};

static PLACEMENT_PREFERENCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.PlacementPreference",
    fields: &[f!("Spread", Schema::Ptr(&Schema::Struct(&SPREAD_OVER)))],
};

static PLATFORM: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Platform",
    fields: &[f!("Architecture", STR), f!("OS", STR)],
};

static PLACEMENT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Placement",
    fields: &[
        f!("Constraints", STRS),
        f!(
            "Preferences",
            Schema::Slice(&Schema::Struct(&PLACEMENT_PREFERENCE))
        ),
        f!("MaxReplicas", UINT64),
        f!("Platforms", Schema::Slice(&Schema::Struct(&PLATFORM))),
    ],
};

static NETWORK_ATTACHMENT_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.NetworkAttachmentConfig",
    fields: &[
        f!("Target", STR),
        f!("Aliases", STRS),
        f!("DriverOpts", STR_MAP),
    ],
};

const NETWORK_ATTACHMENTS: Schema = Schema::Slice(&Schema::Struct(&NETWORK_ATTACHMENT_CONFIG));

static SWARM_DRIVER: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.Driver",
    fields: &[f!("Name", STR), f!("Options", STR_MAP)],
};

static TASK_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.TaskSpec",
    fields: &[
        f!(
            "ContainerSpec",
            Schema::Ptr(&Schema::Struct(&CONTAINER_SPEC))
        ),
        f!("PluginSpec", Schema::Ptr(&Schema::Struct(&PLUGIN_SPEC))),
        f!(
            "NetworkAttachmentSpec",
            Schema::Ptr(&Schema::Struct(&NETWORK_ATTACHMENT_SPEC))
        ),
        f!(
            "Resources",
            Schema::Ptr(&Schema::Struct(&RESOURCE_REQUIREMENTS))
        ),
        f!(
            "RestartPolicy",
            Schema::Ptr(&Schema::Struct(&SWARM_RESTART_POLICY))
        ),
        f!("Placement", Schema::Ptr(&Schema::Struct(&PLACEMENT))),
        f!("Networks", NETWORK_ATTACHMENTS),
        f!("LogDriver", Schema::Ptr(&Schema::Struct(&SWARM_DRIVER))),
        f!("ForceUpdate", UINT64),
        f!("Runtime", STR),
    ],
};

static REPLICATED_SERVICE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ReplicatedService",
    fields: &[f!("Replicas", UINT64_PTR)],
};

static REPLICATED_JOB: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ReplicatedJob",
    fields: &[
        f!("MaxConcurrent", UINT64_PTR),
        f!("TotalCompletions", UINT64_PTR),
    ],
};

static SERVICE_MODE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ServiceMode",
    fields: &[
        f!(
            "Replicated",
            Schema::Ptr(&Schema::Struct(&REPLICATED_SERVICE))
        ),
        f!("Global", Schema::Ptr(&Schema::Struct(&EMPTY))),
        f!(
            "ReplicatedJob",
            Schema::Ptr(&Schema::Struct(&REPLICATED_JOB))
        ),
        f!("GlobalJob", Schema::Ptr(&Schema::Struct(&EMPTY))),
    ],
};

static SWARM_UPDATE_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.UpdateConfig",
    fields: &[
        f!("Parallelism", UINT64),
        f!("Delay", DURATION),
        f!("FailureAction", STR),
        f!("Monitor", DURATION),
        f!("MaxFailureRatio", Schema::Float(32)),
        f!("Order", STR),
    ],
};

static PORT_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.PortConfig",
    fields: &[
        f!("Name", STR),
        f!("Protocol", STR),
        f!("TargetPort", UINT32),
        f!("PublishedPort", UINT32),
        f!("PublishMode", STR),
    ],
};

static ENDPOINT_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.EndpointSpec",
    fields: &[
        f!("Mode", STR),
        f!("Ports", Schema::Slice(&Schema::Struct(&PORT_CONFIG))),
    ],
};

static SERVICE_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "swarm.ServiceSpec",
    fields: &[
        // Embedded swarm.Annotations.
        f!("Name", STR),
        f!("Labels", STR_MAP),
        f!("TaskTemplate", Schema::Struct(&TASK_SPEC)),
        f!("Mode", Schema::Struct(&SERVICE_MODE)),
        f!(
            "UpdateConfig",
            Schema::Ptr(&Schema::Struct(&SWARM_UPDATE_CONFIG))
        ),
        f!(
            "RollbackConfig",
            Schema::Ptr(&Schema::Struct(&SWARM_UPDATE_CONFIG))
        ),
        f!("Networks", NETWORK_ATTACHMENTS),
        f!("EndpointSpec", Schema::Ptr(&Schema::Struct(&ENDPOINT_SPEC))),
    ],
};

// ---- plugins ----------------------------------------------------------------

static PLUGIN_PRIVILEGE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "types.PluginPrivilege",
    fields: &[f!("Name", STR), f!("Description", STR), f!("Value", STRS)],
};

// ---- networks -----------------------------------------------------------------

static IPAM_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.IPAMConfig",
    fields: &[
        f!("Subnet", STR),
        f!("IPRange", STR),
        f!("Gateway", STR),
        f!("AuxiliaryAddresses", STR_MAP),
    ],
};

static IPAM: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.IPAM",
    fields: &[
        f!("Driver", STR),
        f!("Options", STR_MAP),
        f!("Config", Schema::Slice(&Schema::Struct(&IPAM_CONFIG))),
    ],
};

static NETWORK_CONFIG_REFERENCE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.ConfigReference",
    fields: &[f!("Network", STR)],
};

static NETWORK_CREATE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.CreateRequest",
    fields: &[
        f!("Name", STR),
        f!("Driver", STR),
        f!("Scope", STR),
        f!("EnableIPv4", BOOL_PTR),
        f!("EnableIPv6", BOOL_PTR),
        f!("IPAM", Schema::Ptr(&Schema::Struct(&IPAM))),
        f!("Internal", BOOL),
        f!("Attachable", BOOL),
        f!("Ingress", BOOL),
        f!("ConfigOnly", BOOL),
        f!(
            "ConfigFrom",
            Schema::Ptr(&Schema::Struct(&NETWORK_CONFIG_REFERENCE))
        ),
        f!("Options", STR_MAP),
        f!("Labels", STR_MAP),
        f!("CheckDuplicate", BOOL),
    ],
};

static NETWORK_CONNECT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.ConnectRequest",
    fields: &[
        f!("Container", STR),
        f!(
            "EndpointConfig",
            Schema::Ptr(&Schema::Struct(&ENDPOINT_SETTINGS))
        ),
    ],
};

static NETWORK_DISCONNECT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.DisconnectRequest",
    fields: &[f!("Container", STR), f!("Force", BOOL)],
};

// ---- volumes -------------------------------------------------------------------

static TYPE_MOUNT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.TypeMount",
    fields: &[f!("FsType", STR), f!("MountFlags", STRS)],
};

static ACCESS_MODE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.AccessMode",
    fields: &[
        f!("Scope", STR),
        f!("Sharing", STR),
        f!("MountVolume", Schema::Ptr(&Schema::Struct(&TYPE_MOUNT))),
        f!("BlockVolume", Schema::Ptr(&Schema::Struct(&EMPTY))),
    ],
};

static TOPOLOGY: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.Topology",
    fields: &[f!("Segments", STR_MAP)],
};

static TOPOLOGY_REQUIREMENT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.TopologyRequirement",
    fields: &[
        f!("Requisite", Schema::Slice(&Schema::Struct(&TOPOLOGY))),
        f!("Preferred", Schema::Slice(&Schema::Struct(&TOPOLOGY))),
    ],
};

static CAPACITY_RANGE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.CapacityRange",
    fields: &[f!("RequiredBytes", INT64), f!("LimitBytes", INT64)],
};

static VOLUME_SECRET: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.Secret",
    fields: &[f!("Key", STR), f!("Secret", STR)],
};

static CLUSTER_VOLUME_SPEC: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.ClusterVolumeSpec",
    fields: &[
        f!("Group", STR),
        f!("AccessMode", Schema::Ptr(&Schema::Struct(&ACCESS_MODE))),
        f!(
            "AccessibilityRequirements",
            Schema::Ptr(&Schema::Struct(&TOPOLOGY_REQUIREMENT))
        ),
        f!(
            "CapacityRange",
            Schema::Ptr(&Schema::Struct(&CAPACITY_RANGE))
        ),
        f!("Secrets", Schema::Slice(&Schema::Struct(&VOLUME_SECRET))),
        f!("Availability", STR),
    ],
};

static VOLUME_CREATE: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "volume.CreateOptions",
    fields: &[
        f!(
            "ClusterVolumeSpec",
            Schema::Ptr(&Schema::Struct(&CLUSTER_VOLUME_SPEC))
        ),
        f!("Driver", STR),
        f!("DriverOpts", STR_MAP),
        f!("Labels", STR_MAP),
        f!("Name", STR),
    ],
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

/// The schema of the JSON body for an action (names from ACTIONS.md); the
/// permissive [`GENERIC`] schema for every other action.
pub fn schema_for(action: &str) -> &'static Schema {
    match action {
        "container.create" => &CONTAINER_CREATE,
        // API < 1.24 only: daemons up to 20.10 (min API 1.12) still apply a
        // HostConfig sent with start, decoded through the same wrapper type.
        "container.start" => &CONTAINER_CREATE,
        "container.commit" => &CONTAINER_COMMIT,
        "container.update" => &CONTAINER_UPDATE,
        "container.exec" => &EXEC_CREATE,
        "exec.start" => &EXEC_START_SCHEMA,
        "service.create" | "service.update" => &SERVICE,
        "plugin.install" | "plugin.upgrade" => &PLUGIN_PRIVILEGES,
        "plugin.set" => &PLUGIN_SET,
        "network.create" => &NETWORK_CREATE_SCHEMA,
        "network.connect" => &NETWORK_CONNECT_SCHEMA,
        "network.disconnect" => &NETWORK_DISCONNECT_SCHEMA,
        "volume.create" => &VOLUME_CREATE_SCHEMA,
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
