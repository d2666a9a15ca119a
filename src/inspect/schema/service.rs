//! The swarm service types: `swarm.ServiceSpec` and the task, container,
//! placement, resource and endpoint specs inside it.

use super::container::{HEALTH_CONFIG, MOUNTS, ULIMITS};
use super::*;

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

pub(super) static SERVICE_SPEC: StructSchema = StructSchema {
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
