//! The action names: one constant per action a request can be classified as.
//!
//! Why a type and not strings: the same names are compared in the classify,
//! resolve, decide, filter and serve stages and read by the Rego policies. As
//! constants of [`Action`], a typo does not compile, and only this module (the
//! classify stage) can name a new one. Each shows as its dotted name
//! (`container.exec`) in policies, records and messages.

use std::fmt;

/// A canonical action such as `container.exec` or `file.write`.
///
/// The field is private: the only actions are the constants below.
///
/// ```
/// use portcullis::classify::Action;
/// assert_eq!(Action::CONTAINER_EXEC.as_str(), "container.exec");
/// assert_eq!(Action::from_name("file.write"), Some(Action::FILE_WRITE));
/// assert_eq!(Action::from_name("container.exce"), None);
/// ```
///
/// ```compile_fail,E0599
/// // A typo does not compile.
/// let typo = portcullis::classify::Action::CONTAINER_EXCE;
/// ```
///
/// ```compile_fail,E0423
/// // No one outside the classify stage can make a new action.
/// let typo = portcullis::classify::Action("container.exce");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(&'static str);

macro_rules! actions {
    ($($name:ident = $dotted:literal,)*) => {
        impl Action {
            $(pub const $name: Action = Action($dotted);)*
            /// Every action, in name order.
            pub const ALL: &'static [Action] = &[$(Action::$name,)*];
        }
    };
}

actions! {
    AUDIT_READ = "audit.read",
    BUILD_CANCEL = "build.cancel",
    BUILD_PRUNE = "build.prune",
    CALLER_READ = "caller.read",
    CALLER_WRITE = "caller.write",
    CHECKPOINT_CREATE = "checkpoint.create",
    CHECKPOINT_LIST = "checkpoint.list",
    CHECKPOINT_REMOVE = "checkpoint.remove",
    CONFIG_CREATE = "config.create",
    CONFIG_INSPECT = "config.inspect",
    CONFIG_LIST = "config.list",
    CONFIG_REMOVE = "config.remove",
    CONFIG_UPDATE = "config.update",
    CONTAINER_ATTACH = "container.attach",
    CONTAINER_ATTACH_WS = "container.attach_ws",
    CONTAINER_CHANGES = "container.changes",
    CONTAINER_COMMIT = "container.commit",
    CONTAINER_CREATE = "container.create",
    CONTAINER_ENV_READ = "container.env_read",
    CONTAINER_ENV_UPDATE = "container.env_update",
    CONTAINER_EXEC = "container.exec",
    CONTAINER_EXPORT = "container.export",
    CONTAINER_HEALTH = "container.health",
    CONTAINER_HEALTH_SUMMARY = "container.health_summary",
    CONTAINER_INSPECT = "container.inspect",
    CONTAINER_INSPECT_SECRETS = "container.inspect_secrets",
    CONTAINER_KILL = "container.kill",
    CONTAINER_LIST = "container.list",
    CONTAINER_LOGS = "container.logs",
    CONTAINER_PAUSE = "container.pause",
    CONTAINER_PRUNE = "container.prune",
    CONTAINER_REMOVE = "container.remove",
    CONTAINER_RENAME = "container.rename",
    CONTAINER_RESIZE = "container.resize",
    CONTAINER_RESTART = "container.restart",
    CONTAINER_START = "container.start",
    CONTAINER_STATS = "container.stats",
    CONTAINER_STOP = "container.stop",
    CONTAINER_TOP = "container.top",
    CONTAINER_UNPAUSE = "container.unpause",
    CONTAINER_UPDATE = "container.update",
    CONTAINER_UPDATE_IMAGE = "container.update_image",
    CONTAINER_UPDATE_STEP = "container.update_step",
    CONTAINER_WAIT = "container.wait",
    CONTAINER_WATCHDOG = "container.watchdog",
    DEBUG_READ = "debug.read",
    DISTRIBUTION_INSPECT = "distribution.inspect",
    EXEC_INSPECT = "exec.inspect",
    EXEC_RESIZE = "exec.resize",
    EXEC_START = "exec.start",
    FILE_CHANGED = "file.changed",
    FILE_DELETE = "file.delete",
    FILE_LIST = "file.list",
    FILE_READ = "file.read",
    FILE_STAT = "file.stat",
    FILE_WITHHELD = "file.withheld",
    FILE_WRITE = "file.write",
    GRPC_OPEN = "grpc.open",
    IMAGE_BUILD = "image.build",
    IMAGE_EXPORT = "image.export",
    IMAGE_HISTORY = "image.history",
    IMAGE_IMPORT = "image.import",
    IMAGE_INSPECT = "image.inspect",
    IMAGE_LIST = "image.list",
    IMAGE_LOAD = "image.load",
    IMAGE_PRUNE = "image.prune",
    IMAGE_PULL = "image.pull",
    IMAGE_PUSH = "image.push",
    IMAGE_REMOVE = "image.remove",
    IMAGE_SEARCH = "image.search",
    IMAGE_TAG = "image.tag",
    NETWORK_CONNECT = "network.connect",
    NETWORK_CREATE = "network.create",
    NETWORK_DISCONNECT = "network.disconnect",
    NETWORK_INSPECT = "network.inspect",
    NETWORK_LIST = "network.list",
    NETWORK_PRUNE = "network.prune",
    NETWORK_REMOVE = "network.remove",
    NODE_INSPECT = "node.inspect",
    NODE_LIST = "node.list",
    NODE_REMOVE = "node.remove",
    NODE_UPDATE = "node.update",
    PLUGIN_CREATE = "plugin.create",
    PLUGIN_DISABLE = "plugin.disable",
    PLUGIN_ENABLE = "plugin.enable",
    PLUGIN_INSPECT = "plugin.inspect",
    PLUGIN_INSTALL = "plugin.install",
    PLUGIN_LIST = "plugin.list",
    PLUGIN_PRIVILEGES = "plugin.privileges",
    PLUGIN_PUSH = "plugin.push",
    PLUGIN_REMOVE = "plugin.remove",
    PLUGIN_SET = "plugin.set",
    PLUGIN_UPGRADE = "plugin.upgrade",
    POLICY_READ = "policy.read",
    SECRET_CREATE = "secret.create",
    SECRET_INSPECT = "secret.inspect",
    SECRET_LIST = "secret.list",
    SECRET_REMOVE = "secret.remove",
    SECRET_UPDATE = "secret.update",
    SERVICE_CREATE = "service.create",
    SERVICE_INSPECT = "service.inspect",
    SERVICE_LIST = "service.list",
    SERVICE_LOGS = "service.logs",
    SERVICE_REMOVE = "service.remove",
    SERVICE_UPDATE = "service.update",
    SESSION_OPEN = "session.open",
    SWARM_INIT = "swarm.init",
    SWARM_INSPECT = "swarm.inspect",
    SWARM_JOIN = "swarm.join",
    SWARM_LEAVE = "swarm.leave",
    SWARM_UNLOCK = "swarm.unlock",
    SWARM_UNLOCKKEY = "swarm.unlockkey",
    SWARM_UPDATE = "swarm.update",
    SYSTEM_AUTH = "system.auth",
    SYSTEM_DF = "system.df",
    SYSTEM_EVENTS = "system.events",
    SYSTEM_INFO = "system.info",
    SYSTEM_OPTIONS = "system.options",
    SYSTEM_PING = "system.ping",
    SYSTEM_VERSION = "system.version",
    TASK_INSPECT = "task.inspect",
    TASK_LIST = "task.list",
    TASK_LOGS = "task.logs",
    TRUST_CHECK = "trust.check",
    TRUST_READ = "trust.read",
    TRUST_WRITE = "trust.write",
    VOLUME_CREATE = "volume.create",
    VOLUME_INSPECT = "volume.inspect",
    VOLUME_LIST = "volume.list",
    VOLUME_PRUNE = "volume.prune",
    VOLUME_REMOVE = "volume.remove",
    VOLUME_UPDATE = "volume.update",
}

impl Action {
    /// The dotted name policies, records and messages show.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The action named `name`, if there is one (for names that arrive as
    /// data, such as a `trust/check` request).
    pub fn from_name(name: &str) -> Option<Action> {
        // `ALL` is in name order (a test holds it so): a binary search.
        let i = Action::ALL.binary_search_by(|a| a.0.cmp(name)).ok()?;
        Some(Action::ALL[i])
    }

    /// The family before the dot: `container` for `container.exec`.
    pub fn family(self) -> &'static str {
        self.0.split_once('.').map_or(self.0, |(family, _)| family)
    }

    /// Whether this is a file action (`file.read`, `file.write`, …).
    pub fn is_file(self) -> bool {
        self.family() == "file"
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn names_are_unique_dotted_and_sorted() {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| n
            .split_once('.')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())));
        assert_eq!(
            serde_json::to_value(Action::SYSTEM_EVENTS).unwrap(),
            "system.events"
        );
    }
}
