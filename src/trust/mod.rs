//! Trust data: who may do what to which container, and the callers' credentials.
//!
//! Why a table of relationships rather than roles: the seed (section 3.1) grants
//! rights per (caller service, target container) pair, so an operator can say
//! "armory-server may restart armory-ideation and write its instructions" without
//! inventing a role for it. One relationship per pair; the target is a name, `*`,
//! a glob (`web-*`) or a label selector (`label:key=value`).
//!
//! The model is validated before anything is stored ([`TrustError`] says why a
//! write was refused, and nothing changes), and compiled once per trust revision
//! ([`compiled`]) so a decision never compiles a glob.

pub mod compiled;
pub mod store;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use compiled::{CompiledRelationship, CompiledTrust, TargetPattern};
pub use store::{CallerRecord, TokenRecord, TrustSnapshot, TrustStore};

/// Read and write rights on one family of non-container resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// list / inspect / history-style actions.
    pub read: bool,
    /// create / remove / prune / push-style actions.
    pub write: bool,
}

/// Rights on resources that are not containers. Granted per caller: every
/// relationship of the caller contributes, whatever its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceRights {
    pub images: Access,
    pub networks: Access,
    pub volumes: Access,
    /// `system.info`, `system.events`, `system.df` (read); `system.auth` (write).
    /// `system.ping` and `system.version` need only some relationship.
    pub system: Access,
    /// Swarm, services, tasks, nodes, secrets, configs.
    pub swarm: Access,
    /// Plugins (install, set and upgrade also need `allow_plugins`).
    pub plugins: Access,
}

/// Host namespaces a relationship opts into: `true` (all), `false`, or a list
/// of `network`, `pid`, `ipc`, `uts`, `userns`, `cgroupns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HostNamespaces {
    All(bool),
    Only(Vec<String>),
}

impl Default for HostNamespaces {
    fn default() -> Self {
        HostNamespaces::All(false)
    }
}

/// The namespaces a container can share with the host.
pub const HOST_NAMESPACES: &[&str] = &["network", "pid", "ipc", "uts", "userns", "cgroupns"];

/// Tunnels a relationship may open.
pub const TUNNELS: &[&str] = &["session", "grpc", "attach_ws"];

impl HostNamespaces {
    /// The explicit list of namespaces allowed.
    pub fn allowed(&self) -> Vec<String> {
        match self {
            HostNamespaces::All(true) => HOST_NAMESPACES.iter().map(|s| s.to_string()).collect(),
            HostNamespaces::All(false) => Vec::new(),
            HostNamespaces::Only(list) => list.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The fields an operator writes (POST body; PATCH bodies are partial).
///
/// Defaults follow the seed: inspect, logs and stats on, everything else off.
///
/// A relationship as `portcullis trust create` or `POST /api/v1/trust` takes it:
/// the CI runner may start, stop and exec into its own `ci-*` containers, read
/// their `/app` tree, write only under `/app/tmp`, and create them from one
/// image, until the end of 2027.
///
/// ```
/// use portcullis::trust::TrustSpec;
///
/// let spec = TrustSpec::from_json(&serde_json::json!({
///     "caller_service": "ci-runner",
///     "target_container": "ci-*",
///     "can_start": true,
///     "can_stop": true,
///     "can_exec": true,
///     "can_create": true,
///     "allowed_images": ["busybox:latest"],
///     "file_read_paths": ["/app/**"],
///     "file_write_paths": ["/app/tmp/**"],
///     "expires_at": "2027-12-31T23:59:59Z"
/// }))
/// .unwrap();
/// assert!(spec.can_exec && spec.can_inspect && !spec.can_remove);
///
/// // Unknown fields are refused, naming the field: a typo never grants or
/// // silently drops a right.
/// let typo = serde_json::json!({
///     "caller_service": "ci-runner",
///     "target_container": "ci-*",
///     "can_exce": true
/// });
/// assert!(TrustSpec::from_json(&typo).unwrap_err().to_string().contains("can_exce"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    pub caller_service: String,
    pub target_container: String,
    #[serde(default = "yes")]
    pub can_inspect: bool,
    #[serde(default)]
    pub can_start: bool,
    #[serde(default)]
    pub can_stop: bool,
    #[serde(default)]
    pub can_restart: bool,
    #[serde(default)]
    pub can_remove: bool,
    #[serde(default)]
    pub can_exec: bool,
    #[serde(default = "yes")]
    pub can_logs: bool,
    #[serde(default = "yes")]
    pub can_stats: bool,
    /// container.attach, container.resize (and attach_ws with `allow_tunnels`).
    #[serde(default)]
    pub can_attach: bool,
    /// container.create, limited to `allowed_images`.
    #[serde(default)]
    pub can_create: bool,
    /// image.pull, limited to `allowed_images`.
    #[serde(default)]
    pub can_pull: bool,
    #[serde(default)]
    pub file_read_paths: Vec<String>,
    #[serde(default)]
    pub file_write_paths: Vec<String>,
    #[serde(default)]
    pub can_update_env: bool,
    #[serde(default)]
    pub can_update_image: bool,
    #[serde(default)]
    pub allowed_images: Vec<String>,
    #[serde(default)]
    pub resources: ResourceRights,
    /// Opt out of environment redaction in inspect responses.
    #[serde(default)]
    pub can_see_secrets: bool,
    #[serde(default)]
    pub allow_privileged: bool,
    #[serde(default)]
    pub allow_host_namespaces: HostNamespaces,
    /// Capabilities beyond Docker's default set (`ALL` allows any).
    #[serde(default)]
    pub allow_cap_add: Vec<String>,
    /// seccomp/apparmor unconfined, label=disable, systempaths=unconfined.
    #[serde(default)]
    pub allow_unconfined: bool,
    /// Devices, DeviceRequests, DeviceCgroupRules.
    #[serde(default)]
    pub allow_devices: bool,
    /// Host path globs a bind mount may use. The Docker socket (and the
    /// directories holding it) must be listed literally.
    #[serde(default)]
    pub allow_bind_mounts: Vec<String>,
    #[serde(default)]
    pub allow_sysctls: bool,
    #[serde(default)]
    pub allow_privileged_exec: bool,
    /// plugin.install, plugin.set, plugin.upgrade, plugin.create, plugin.enable.
    #[serde(default)]
    pub allow_plugins: bool,
    /// `session`, `grpc`, `attach_ws`.
    #[serde(default)]
    pub allow_tunnels: Vec<String>,
    /// File writes whose path falls in a bind mount (they reach the host).
    #[serde(default)]
    pub allow_bind_writes: bool,
    /// Volume drivers other than `local` (plugins), and network file systems
    /// of the local driver as `local:<type>` (`local:nfs`); `*` allows any.
    #[serde(default)]
    pub allow_volume_drivers: Vec<String>,
    /// Name globs of existing volumes a create may mount, besides those the
    /// caller created through portcullis.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339; `null` never expires. An expired relationship grants nothing.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A stored relationship: the spec plus the server-set fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRelationship {
    /// Random hex, set by the store.
    pub id: String,
    #[serde(flatten)]
    pub spec: TrustSpec,
    pub created_at: String,
    pub updated_at: String,
}

/// Every field a client may write, for the unknown-field check.
pub const SPEC_FIELDS: &[&str] = &[
    "caller_service",
    "target_container",
    "can_inspect",
    "can_start",
    "can_stop",
    "can_restart",
    "can_remove",
    "can_exec",
    "can_logs",
    "can_stats",
    "can_attach",
    "can_create",
    "can_pull",
    "file_read_paths",
    "file_write_paths",
    "can_update_env",
    "can_update_image",
    "allowed_images",
    "resources",
    "can_see_secrets",
    "allow_privileged",
    "allow_host_namespaces",
    "allow_cap_add",
    "allow_unconfined",
    "allow_devices",
    "allow_bind_mounts",
    "allow_sysctls",
    "allow_privileged_exec",
    "allow_plugins",
    "allow_tunnels",
    "allow_bind_writes",
    "allow_volume_drivers",
    "volumes",
    "description",
    "expires_at",
];

/// Why a trust write (or a credential operation) was refused. Every variant
/// but `Storage` and `Corrupt` is the client's error (HTTP 400/404).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("unknown field {field:?} (known fields: {known})", known = SPEC_FIELDS.join(", "))]
    UnknownField { field: String },
    #[error("field {field:?} is set by the server and cannot be written")]
    ReadOnlyField { field: String },
    #[error("missing required field {field:?}")]
    MissingField { field: String },
    #[error("invalid glob {pattern:?} in {field}: {message}")]
    InvalidGlob {
        field: String,
        pattern: String,
        message: String,
    },
    #[error("invalid RFC 3339 date {value:?} in {field}: {message}")]
    InvalidDate {
        field: String,
        value: String,
        message: String,
    },
    #[error("invalid value for {field}: {message}")]
    InvalidValue { field: String, message: String },
    #[error("a trust relationship for caller {caller:?} and target {target:?} already exists (id {existing_id})")]
    Duplicate {
        caller: String,
        target: String,
        existing_id: String,
    },
    #[error("trust relationship {0:?} not found")]
    NotFound(String),
    #[error("caller {0:?} not found (add it first: portcullis caller add {0})")]
    UnknownCaller(String),
    #[error("caller {0:?} already exists")]
    CallerExists(String),
    #[error("uid {uid} already belongs to caller {caller:?}")]
    UidTaken { uid: u32, caller: String },
    #[error("token {0:?} not found")]
    UnknownToken(String),
    #[error("trust store error: {0}")]
    Storage(#[from] sled::Error),
    #[error("trust store holds corrupt data: {0}")]
    Corrupt(String),
}

impl TrustError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            TrustError::NotFound(_)
            | TrustError::UnknownCaller(_)
            | TrustError::UnknownToken(_) => 404,
            TrustError::Storage(_) | TrustError::Corrupt(_) => 500,
            _ => 400,
        }
    }
}

/// Parse an RFC 3339 date, for `expires_at`.
pub fn parse_rfc3339(field: &str, value: &str) -> Result<time::OffsetDateTime, TrustError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
        |e| TrustError::InvalidDate {
            field: field.to_string(),
            value: value.to_string(),
            message: e.to_string(),
        },
    )
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

impl TrustSpec {
    /// Parse a client's JSON object: unknown fields, wrong types, bad globs and
    /// bad dates are refused with a [`TrustError`] naming the field.
    pub fn from_json(value: &Value) -> Result<TrustSpec, TrustError> {
        let object = value.as_object().ok_or_else(|| TrustError::InvalidValue {
            field: "body".into(),
            message: "a trust relationship must be a JSON object".into(),
        })?;
        check_fields(object)?;
        for required in ["caller_service", "target_container"] {
            if !object.contains_key(required) {
                return Err(TrustError::MissingField {
                    field: required.into(),
                });
            }
        }
        // Type errors: serde does not name the outer field, so find the one
        // that fails on its own.
        let spec: TrustSpec = serde_json::from_value(value.clone()).map_err(|e| {
            let field = object
                .iter()
                .find(|(key, v)| {
                    let mut probe = Map::new();
                    probe.insert("caller_service".into(), Value::from("x"));
                    probe.insert("target_container".into(), Value::from("x"));
                    probe.insert((*key).clone(), (*v).clone());
                    serde_json::from_value::<TrustSpec>(Value::Object(probe)).is_err()
                })
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| "body".to_string());
            TrustError::InvalidValue {
                field,
                message: e.to_string(),
            }
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Apply a partial update (PATCH): the result is validated as a whole.
    pub fn patched(&self, patch: &Value) -> Result<TrustSpec, TrustError> {
        let patch = patch.as_object().ok_or_else(|| TrustError::InvalidValue {
            field: "body".into(),
            message: "a patch must be a JSON object".into(),
        })?;
        check_fields(patch)?;
        let mut merged = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(TrustError::Corrupt(
                    "relationship does not serialize".into(),
                ))
            }
        };
        for (key, value) in patch {
            merged.insert(key.clone(), value.clone());
        }
        TrustSpec::from_json(&Value::Object(merged))
    }

    /// Every check that does not need the store.
    pub fn validate(&self) -> Result<(), TrustError> {
        if self.caller_service.trim().is_empty() {
            return Err(TrustError::InvalidValue {
                field: "caller_service".into(),
                message: "must not be empty".into(),
            });
        }
        TargetPattern::parse(&self.target_container)?;
        compiled::path_globs("file_read_paths", &self.file_read_paths)?;
        compiled::path_globs("file_write_paths", &self.file_write_paths)?;
        compiled::path_globs("allow_bind_mounts", &self.allow_bind_mounts)?;
        compiled::name_globs("allowed_images", &self.allowed_images)?;
        compiled::name_globs("volumes", &self.volumes)?;
        for (field, list) in [
            ("file_read_paths", &self.file_read_paths),
            ("file_write_paths", &self.file_write_paths),
            ("allow_bind_mounts", &self.allow_bind_mounts),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|p| !p.starts_with('/') && !p.starts_with("**"))
            {
                return Err(TrustError::InvalidGlob {
                    field: field.into(),
                    pattern: bad.clone(),
                    message: "path globs must be absolute (start with /)".into(),
                });
            }
        }
        if let HostNamespaces::Only(list) = &self.allow_host_namespaces {
            if let Some(bad) = list.iter().find(|n| !HOST_NAMESPACES.contains(&n.as_str())) {
                return Err(TrustError::InvalidValue {
                    field: "allow_host_namespaces".into(),
                    message: format!(
                        "unknown namespace {bad:?} (expected true, false or a list of {})",
                        HOST_NAMESPACES.join(", ")
                    ),
                });
            }
        }
        for cap in &self.allow_cap_add {
            let normalized = normalize_capability(cap);
            if normalized.is_empty()
                || !normalized
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(TrustError::InvalidValue {
                    field: "allow_cap_add".into(),
                    message: format!("{cap:?} is not a capability name"),
                });
            }
        }
        if let Some(bad) = self
            .allow_tunnels
            .iter()
            .find(|t| !TUNNELS.contains(&t.as_str()))
        {
            return Err(TrustError::InvalidValue {
                field: "allow_tunnels".into(),
                message: format!("unknown tunnel {bad:?} (expected {})", TUNNELS.join(", ")),
            });
        }
        if let Some(expires) = &self.expires_at {
            parse_rfc3339("expires_at", expires)?;
        }
        Ok(())
    }

    /// The spec with list values normalized the way the policy compares them.
    pub(crate) fn normalized(mut self) -> TrustSpec {
        self.allow_cap_add = self
            .allow_cap_add
            .iter()
            .map(|c| normalize_capability(c))
            .collect();
        if let Some(expires) = &self.expires_at {
            if let Ok(t) = parse_rfc3339("expires_at", expires) {
                if let Ok(s) = t
                    .to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                {
                    self.expires_at = Some(s);
                }
            }
        }
        self
    }
}

/// `cap_sys_admin` and `SYS_ADMIN` name the same capability.
pub fn normalize_capability(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_string)
        .unwrap_or(upper)
}

fn check_fields(object: &Map<String, Value>) -> Result<(), TrustError> {
    for key in object.keys() {
        if ["id", "created_at", "updated_at"].contains(&key.as_str()) {
            return Err(TrustError::ReadOnlyField { field: key.clone() });
        }
        if !SPEC_FIELDS.contains(&key.as_str()) {
            return Err(TrustError::UnknownField { field: key.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_the_seed() {
        let spec =
            TrustSpec::from_json(&json!({"caller_service": "ci", "target_container": "web"}))
                .unwrap();
        assert!(spec.can_inspect && spec.can_logs && spec.can_stats);
        assert!(!spec.can_start && !spec.can_exec && !spec.can_remove && !spec.can_create);
        assert!(spec.file_read_paths.is_empty());
        assert_eq!(spec.allow_host_namespaces, HostNamespaces::All(false));
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = TrustSpec::from_json(
            &json!({"caller_service": "ci", "target_container": "web", "can_fly": true}),
        )
        .unwrap_err();
        assert!(matches!(err, TrustError::UnknownField { ref field } if field == "can_fly"));
        assert_eq!(err.http_status(), 400);
        let nested =
            TrustSpec::from_json(&json!({"caller_service": "ci", "target_container": "web",
            "resources": {"images": {"read": true, "delete": true}}}))
            .unwrap_err();
        assert!(
            matches!(nested, TrustError::InvalidValue { ref field, .. } if field == "resources"),
            "{nested}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let cases = [
            (json!({"file_read_paths": ["/app/[x"]}), "file_read_paths"),
            (json!({"allowed_images": ["a{b"]}), "allowed_images"),
            (json!({"expires_at": "tomorrow"}), "expires_at"),
            (json!({"can_exec": "yes"}), "can_exec"),
            (
                json!({"allow_host_namespaces": ["net"]}),
                "allow_host_namespaces",
            ),
            (json!({"allow_tunnels": ["ssh"]}), "allow_tunnels"),
            (
                json!({"file_write_paths": ["relative/*"]}),
                "file_write_paths",
            ),
            (json!({"target_container": "label:=x"}), "target_container"),
            (json!({"target_container": "web-[a"}), "target_container"),
        ];
        for (patch, field) in cases {
            let mut body = json!({"caller_service": "ci", "target_container": "web"});
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let err = TrustSpec::from_json(&body).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
            assert_eq!(err.http_status(), 400);
        }
    }

    #[test]
    fn server_fields_are_read_only() {
        let err = TrustSpec::from_json(
            &json!({"caller_service": "ci", "target_container": "web", "id": "x"}),
        )
        .unwrap_err();
        assert!(matches!(err, TrustError::ReadOnlyField { .. }));
    }

    #[test]
    fn capabilities_and_dates_are_normalized() {
        let spec = TrustSpec::from_json(&json!({"caller_service": "ci", "target_container": "web",
            "allow_cap_add": ["cap_net_admin"], "expires_at": "2030-01-01T02:00:00+02:00"}))
        .unwrap()
        .normalized();
        assert_eq!(spec.allow_cap_add, vec!["NET_ADMIN"]);
        assert_eq!(spec.expires_at.as_deref(), Some("2030-01-01T00:00:00Z"));
    }
}
