//! The volume create body, with the cluster volume spec.

use super::*;

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

pub(super) static VOLUME_CREATE: StructSchema = StructSchema {
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
