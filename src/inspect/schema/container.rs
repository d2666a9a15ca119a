//! The daemon's container types: `container.CreateRequest` (Config, HostConfig
//! with its embedded Resources, NetworkingConfig), commit and update bodies,
//! and the exec bodies.

use super::*;

// ---- container create / commit ----------------------------------------

pub(super) static HEALTH_CONFIG: StructSchema = StructSchema {
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

pub(super) static CONFIG: StructSchema = StructSchema {
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

pub(super) const ULIMITS: Schema = Schema::Slice(&Schema::Ptr(&Schema::Struct(&ULIMIT)));

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

pub(super) const MOUNTS: Schema = Schema::Slice(&Schema::Struct(&MOUNT));

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

pub(super) static HOST_CONFIG: StructSchema = StructSchema {
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

pub(super) static ENDPOINT_SETTINGS: StructSchema = StructSchema {
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

pub(super) static CREATE_REQUEST: StructSchema = StructSchema {
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

pub(super) static UPDATE_CONFIG: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.UpdateConfig",
    fields: &join::<32>(&[&RESOURCES_FIELDS, &UPDATE_OWN]),
};

// ---- exec ---------------------------------------------------------------

pub(super) static EXEC_CONFIG: StructSchema = StructSchema {
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

pub(super) static EXEC_START: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "container.ExecStartOptions",
    fields: &[
        f!("Detach", BOOL),
        f!("Tty", BOOL),
        f!("ConsoleSize", Schema::Ptr(&Schema::Array(&UINT, 2))),
    ],
};
