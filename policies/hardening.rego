# Default hardening: settings that hand a container the host.
#
# Each element of `dangers` is one dangerous setting the request asks for:
# {kind, key, msg, why}. A relationship that grants the action must also opt in
# to every danger (`opted_in(m, d)`), or the request is refused with
# "<msg> for caller <name> (<why>)".
#
# The checks are grouped by the part of the request they read, and `dangers`
# runs only the groups that can apply to the action: on the RVM every body of
# a partial rule costs its setup whenever the rule is used, even a body that
# fails at once, so a file write should not pay for twenty container checks.
package portcullis

import rego.v1

body := input.body if {
	is_object(input.body)
} else := {}

# Where the container settings are: the HostConfig of a create; the body of an
# update (UpdateConfig carries the resource fields at top level); `{}` when
# there are none (or they are not an object).
hc := input.body.HostConfig if {
	input.action == "container.create"
	is_object(input.body.HostConfig)
} else := input.body if {
	input.action == "container.update"
	is_object(input.body)
} else := {}

container_spec := spec if {
	input.action in {"service.create", "service.update"}
	spec := body.TaskTemplate.ContainerSpec
	is_object(spec)
} else := {}

# Docker's default capability set: adding one of these changes nothing.
safe_caps := {
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

normalize_cap(c) := trim_prefix(upper(trim_space(c)), "CAP_")

# HostConfig namespace fields and the namespace each one shares.
namespace_fields := {
	"NetworkMode": "network", "PidMode": "pid", "IpcMode": "ipc",
	"UTSMode": "uts", "UsernsMode": "userns", "CgroupnsMode": "cgroupns",
}

default_why := "no trust relationship opts in"

# (A file action reads no body: its one check is a rule of its own.)
dangers := file_dangers if {
	input.action in {"file.write", "file.delete"}
} else := request_dangers | container_dangers if {
	input.action in {"container.create", "container.update"}
} else := request_dangers | service_dangers if {
	input.action in {"service.create", "service.update"}
} else := request_dangers | action_dangers

# --- create and update: the HostConfig (`hc`) -----------------------------------

container_dangers contains {"kind": "privileged", "key": "privileged", "msg": "privileged containers are not allowed", "why": default_why} if {
	hc.Privileged == true
}

# (object.filter first: only the fields the request sets are looped over.)
container_dangers contains d if {
	some field, mode in object.filter(hc, object.keys(namespace_fields))
	is_string(mode)
	lower(mode) == "host"
	ns := namespace_fields[field]
	d := {
		"kind": "host_namespace", "key": ns,
		"msg": sprintf("sharing the host %s namespace (%s=host) is not allowed", [ns, field]),
		"why": default_why,
	}
}

# --- any action: facts the Rust side computed from the body ---------------------

request_dangers contains d if {
	some name, inspectable in input.refs
	inspectable != true
	d := {
		"kind": "container_ref", "key": name,
		"msg": sprintf("joining or borrowing from container %s is not allowed", [name]),
		"why": "the caller may not inspect that container",
	}
}

request_dangers contains d if {
	some path in input.host_paths
	d := {"kind": "bind", "key": path, "msg": sprintf("bind-mounting host path %s is not allowed", [path]), "why": "no trust relationship lists it in allow_bind_mounts"}
}

# Volumes (facts from the Rust side, see README.md): a plugin driver or a
# network file system, and an existing volume the caller neither created nor
# was granted (it may hold another container's data).
request_dangers contains d if {
	some driver in input.volume_drivers
	d := {"kind": "volume_driver", "key": driver, "msg": sprintf("volume driver %s is not allowed", [driver]), "why": "no trust relationship lists it in allow_volume_drivers"}
}

request_dangers contains d if {
	some name, mountable in input.volumes
	mountable != true
	d := {"kind": "volume", "key": name, "msg": sprintf("mounting existing volume %s is not allowed", [name]), "why": "the caller did not create it and no trust relationship lists it in volumes"}
}

# --- create and update, continued ----------------------------------------------

host_config_caps contains normalize_cap(c) if {
	some c in hc.CapAdd
	is_string(c)
}

host_config_caps contains normalize_cap(c) if {
	some c in hc.Capabilities
	is_string(c)
}

container_dangers contains cap_danger(cap) if {
	some cap in host_config_caps
	not cap in safe_caps
}

cap_danger(cap) := {
	"kind": "cap", "key": cap,
	"msg": sprintf("adding capability %s is not allowed", [cap]),
	"why": default_why,
}

unconfined_opts := {"seccomp=unconfined", "apparmor=unconfined", "label=disable", "systempaths=unconfined", "label=type=spc_t"}

# `seccomp:unconfined` and `seccomp=unconfined` are the same option.
normalized_opt(o) := replace(lower(trim_space(o)), ":", "=")

container_dangers contains d if {
	some opt in hc.SecurityOpt
	is_string(opt)
	unconfined_opt(normalized_opt(opt))
	d := {
		"kind": "unconfined", "key": normalized_opt(opt),
		"msg": sprintf("security option %s is not allowed", [opt]),
		"why": default_why,
	}
}

unconfined_opt(o) if o in unconfined_opts

# A custom seccomp profile may allow anything.
unconfined_opt(o) if {
	startswith(o, "seccomp=")
	not o in {"seccomp=builtin", "seccomp=default"}
}

container_dangers contains {"kind": "unconfined", "key": field, "msg": sprintf("setting %s (unmasking kernel paths) is not allowed", [field]), "why": default_why} if {
	some field, paths in object.filter(hc, ["MaskedPaths", "ReadonlyPaths"])
	paths != null
}

container_dangers contains d if {
	some field, devices in object.filter(hc, ["Devices", "DeviceRequests", "DeviceCgroupRules"])
	count(devices) > 0
	d := {"kind": "devices", "key": field, "msg": sprintf("host devices (%s) are not allowed", [field]), "why": default_why}
}

sysctls_danger := {"kind": "sysctls", "key": "Sysctls", "msg": "setting sysctls is not allowed", "why": default_why}

container_dangers contains sysctls_danger if {
	count(hc.Sysctls) > 0
}

endpoint_sysctls_key := "com.docker.network.endpoint.sysctls"

endpoint_sysctls_danger := {"kind": "sysctls", "key": endpoint_sysctls_key, "msg": "setting endpoint sysctls is not allowed", "why": default_why}

container_dangers contains endpoint_sysctls_danger if {
	input.action == "container.create"
	some endpoint in body.NetworkingConfig.EndpointsConfig
	endpoint.DriverOpts[endpoint_sysctls_key]
}

# --- services: the task's ContainerSpec -------------------------------------------

service_dangers contains cap_danger(cap) if {
	some c in container_spec.CapabilityAdd
	is_string(c)
	cap := normalize_cap(c)
	not cap in safe_caps
}

service_dangers contains {"kind": "unconfined", "key": "seccomp", "msg": "an unconfined seccomp profile is not allowed", "why": default_why} if {
	lower(container_spec.Privileges.Seccomp.Mode) == "unconfined"
}

service_dangers contains {"kind": "unconfined", "key": "apparmor", "msg": "disabling AppArmor is not allowed", "why": default_why} if {
	lower(container_spec.Privileges.AppArmor.Mode) == "disabled"
}

service_dangers contains sysctls_danger if {
	count(container_spec.Sysctls) > 0
}

# --- other actions ---------------------------------------------------------------

action_dangers contains endpoint_sysctls_danger if {
	input.action == "network.connect"
	body.EndpointConfig.DriverOpts[endpoint_sysctls_key]
}

action_dangers contains {"kind": "privileged_exec", "key": "privileged_exec", "msg": "privileged exec is not allowed", "why": default_why} if {
	input.action == "container.exec"
	body.Privileged == true
}

action_dangers contains {"kind": "plugin", "key": input.action, "msg": sprintf("%s (plugins run with host privileges) is not allowed", [input.action]), "why": default_why} if {
	input.action in {"plugin.install", "plugin.set", "plugin.upgrade", "plugin.create", "plugin.enable"}
}

# --- file writes and deletes ----------------------------------------------------

file_dangers contains {"kind": "bind_write", "key": input.file.mount.source, "msg": sprintf("writing %s, inside bind mount %s of the host, is not allowed", [input.file.path, input.file.mount.source]), "why": default_why} if {
	input.file.mount.type == "bind"
}

# opted_in(m, d): relationship fact m allows danger d. Most kinds are opted in
# to by one boolean field of the relationship, looked up rather than written as
# one definition each: the RVM tries every definition of a function per call.
opt_in_field := {
	"privileged": "allow_privileged",
	"unconfined": "allow_unconfined",
	"devices": "allow_devices",
	"sysctls": "allow_sysctls",
	"privileged_exec": "allow_privileged_exec",
	"plugin": "allow_plugins",
	"bind_write": "allow_bind_writes",
}

opted_in(m, d) if m[opt_in_field[d.kind]] == true

opted_in(m, d) if {
	d.kind == "bind"
	m.host_paths_allowed[d.key] == true
}

opted_in(m, d) if {
	d.kind == "host_namespace"
	d.key in m.allow_host_namespaces
}

opted_in(_, d) if {
	d.kind == "container_ref"
	input.refs[d.key] == true
}

opted_in(m, d) if {
	d.kind == "volume_driver"
	some allowed in m.allow_volume_drivers
	allowed in {d.key, "*"}
}

opted_in(_, d) if {
	d.kind == "volume"
	input.volumes[d.key] == true
}

opted_in(m, d) if {
	d.kind == "cap"
	some allowed in m.allow_cap_add
	allowed in {d.key, "ALL"}
}

# The dangers relationship m does not opt in to.
unmet(m) := {d | some d in dangers; not opted_in(m, d)}

# Actions whose request can carry a dangerous setting; others skip the checks
# (they cost a few microseconds each).
hardened_actions := {
	"container.create", "container.update", "container.exec",
	"service.create", "service.update", "network.connect", "volume.create",
	"plugin.install", "plugin.set", "plugin.upgrade", "plugin.create", "plugin.enable",
	"file.write", "file.delete",
}
