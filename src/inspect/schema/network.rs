//! The network bodies: create (with its embedded CreateOptions and IPAM),
//! connect and disconnect.

use super::container::ENDPOINT_SETTINGS;
use super::*;

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

pub(super) static NETWORK_CREATE: StructSchema = StructSchema {
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

pub(super) static NETWORK_CONNECT: StructSchema = StructSchema {
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

pub(super) static NETWORK_DISCONNECT: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "network.DisconnectRequest",
    fields: &[f!("Container", STR), f!("Force", BOOL)],
};
