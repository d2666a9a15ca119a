# Which trust right grants which action (the ACTIONS.md contract).
package portcullis

import rego.v1

# Container actions granted by one boolean right of a relationship that
# matches the target container.
container_rights := {
	"container.inspect": "can_inspect",
	"container.top": "can_inspect",
	"container.changes": "can_inspect",
	"container.wait": "can_inspect",
	"exec.inspect": "can_inspect",
	"checkpoint.list": "can_inspect",
	"container.start": "can_start",
	"container.unpause": "can_start",
	"container.stop": "can_stop",
	"container.kill": "can_stop",
	"container.pause": "can_stop",
	"checkpoint.create": "can_stop",
	"container.restart": "can_restart",
	"container.remove": "can_remove",
	"container.rename": "can_remove",
	"checkpoint.remove": "can_remove",
	"container.exec": "can_exec",
	"exec.start": "can_exec",
	"exec.resize": "can_exec",
	"container.attach": "can_attach",
	"container.resize": "can_attach",
	"container.logs": "can_logs",
	# Not a Docker route: asked by the filter stage before it redacts
	# secret-looking environment values from a container inspect.
	"container.inspect_secrets": "can_see_secrets",
	"container.stats": "can_stats",
	# The agent controls (portcullis's own routes under /api/v1/containers).
	"container.env_read": "can_inspect",
	"container.health": "can_inspect",
	"container.env_update": "can_update_env",
}

# Non-container actions: [family in `resources`, "read" | "write"].
resource_rights := {
	"image.list": ["images", "read"],
	"image.inspect": ["images", "read"],
	"image.history": ["images", "read"],
	"image.search": ["images", "read"],
	"image.export": ["images", "read"],
	"distribution.inspect": ["images", "read"],
	"image.push": ["images", "write"],
	"image.tag": ["images", "write"],
	"image.remove": ["images", "write"],
	"image.prune": ["images", "write"],
	"image.load": ["images", "write"],
	"image.import": ["images", "write"],
	"image.build": ["images", "write"],
	"build.prune": ["images", "write"],
	"build.cancel": ["images", "write"],
	"network.list": ["networks", "read"],
	"network.inspect": ["networks", "read"],
	"network.create": ["networks", "write"],
	"network.remove": ["networks", "write"],
	"network.connect": ["networks", "write"],
	"network.disconnect": ["networks", "write"],
	"network.prune": ["networks", "write"],
	"volume.list": ["volumes", "read"],
	"volume.inspect": ["volumes", "read"],
	"volume.create": ["volumes", "write"],
	"volume.update": ["volumes", "write"],
	"volume.remove": ["volumes", "write"],
	"volume.prune": ["volumes", "write"],
	"system.info": ["system", "read"],
	"system.events": ["system", "read"],
	"system.df": ["system", "read"],
	"system.auth": ["system", "write"],
	"swarm.inspect": ["swarm", "read"],
	"swarm.init": ["swarm", "write"],
	"swarm.join": ["swarm", "write"],
	"swarm.leave": ["swarm", "write"],
	"swarm.update": ["swarm", "write"],
	"swarm.unlockkey": ["swarm", "write"],
	"swarm.unlock": ["swarm", "write"],
	"service.list": ["swarm", "read"],
	"service.inspect": ["swarm", "read"],
	"service.logs": ["swarm", "read"],
	"service.create": ["swarm", "write"],
	"service.update": ["swarm", "write"],
	"service.remove": ["swarm", "write"],
	"task.list": ["swarm", "read"],
	"task.inspect": ["swarm", "read"],
	"task.logs": ["swarm", "read"],
	"node.list": ["swarm", "read"],
	"node.inspect": ["swarm", "read"],
	"node.update": ["swarm", "write"],
	"node.remove": ["swarm", "write"],
	"secret.list": ["swarm", "read"],
	"secret.inspect": ["swarm", "read"],
	"secret.create": ["swarm", "write"],
	"secret.update": ["swarm", "write"],
	"secret.remove": ["swarm", "write"],
	"config.list": ["swarm", "read"],
	"config.inspect": ["swarm", "read"],
	"config.create": ["swarm", "write"],
	"config.update": ["swarm", "write"],
	"config.remove": ["swarm", "write"],
	"plugin.list": ["plugins", "read"],
	"plugin.inspect": ["plugins", "read"],
	"plugin.privileges": ["plugins", "read"],
	"plugin.install": ["plugins", "write"],
	"plugin.remove": ["plugins", "write"],
	"plugin.enable": ["plugins", "write"],
	"plugin.disable": ["plugins", "write"],
	"plugin.upgrade": ["plugins", "write"],
	"plugin.create": ["plugins", "write"],
	"plugin.push": ["plugins", "write"],
	"plugin.set": ["plugins", "write"],
}

# Read-only actions the `public_read` setting opens to every identified caller.
public_read_actions := {
	"system.info", "system.df",
	"image.list", "image.inspect", "image.history", "distribution.inspect",
	"network.list", "network.inspect",
	"volume.list", "volume.inspect",
}

# Any relationship at all is enough: clients need these to negotiate.
handshake_actions := {"system.ping", "system.version", "system.options"}

# Only administrators: they act on every container or on portcullis itself.
admin_only_actions := {
	"container.prune", "debug.read",
	"trust.read", "trust.write", "trust.check", "audit.read",
	"caller.read", "caller.write", "policy.read",
}

tunnel_of := {"session.open": "session", "grpc.open": "grpc", "container.attach_ws": "attach_ws"}

# Rights that let a caller change or run code in a container. Under the
# strict template they need a named (non-wildcard) target.
dangerous_actions := {
	"container.exec", "exec.start", "exec.resize", "container.attach", "container.resize",
	"container.attach_ws", "container.create", "container.update", "container.remove",
	"container.rename", "container.export", "container.commit", "file.write", "file.delete",
	"checkpoint.create", "checkpoint.remove", "container.update_image", "container.env_update",
}

# What the caller would need, for deny messages.
needs := {
	"container.list": "can_inspect on some container",
	"container.create": "can_create (or can_update_image / can_update_env) and the image in allowed_images",
	"container.update": "can_update_env or can_update_image",
	"container.update_image": "can_update_image and the image in allowed_images",
	"container.health_summary": "can_inspect on some container",
	"container.export": "can_inspect and file_read_paths covering /**",
	"container.commit": "can_inspect and resources.images.write",
	"container.attach_ws": "can_attach and allow_tunnels containing attach_ws",
	"image.pull": "can_pull and the image in allowed_images",
	"file.read": "file_read_paths matching the path",
	"file.list": "file_read_paths matching the path",
	"file.stat": "file_read_paths or file_write_paths matching the path",
	"file.write": "file_write_paths matching the path",
	"file.delete": "file_write_paths matching the path",
	"session.open": "allow_tunnels containing session",
	"grpc.open": "allow_tunnels containing grpc",
}

# (A rule, not a function, and `else` values written as expressions: the RVM
# in regorus 0.14 loses variables bound in an `else` body, and `else` on
# functions.)
need := needs[input.action] if {
	needs[input.action]
} else := container_rights[input.action] if {
	container_rights[input.action]
} else := sprintf("resources.%s.%s", resource_rights[input.action]) if {
	resource_rights[input.action]
} else := "a trust relationship"

# The relationships that grant the action, hardening aside. The common cases
# (one boolean right, one resource right) are specialized comprehensions: a
# function call per relationship and definition is what costs on the RVM.
# (`action_right` and the others are rules, not variables of the body: the
# RVM in regorus 0.14 treats a body variable used inside a comprehension as a
# fresh one, and loses variables bound in an `else` body.)

# The one boolean field of a relationship fact that grants the action, when
# one does: a container right, or the path fact of a file read or write.
action_right := container_rights[input.action] if {
	container_rights[input.action]
} else := path_fact[input.action]

path_fact := {
	"file.read": "path_readable",
	"file.list": "path_readable",
	"file.write": "path_writable",
	"file.delete": "path_writable",
}

resource_family := resource_rights[input.action][0]

resource_mode := resource_rights[input.action][1]

grantors := [m | some m in usable; m[action_right] == true] if {
	action_right
} else := [m | some m in usable; m.image_allowed == true; creator(m)] if {
	# What `grants` says for a create, without trying its every definition.
	input.action == "container.create"
} else := [m | some m in usable; m.resources[resource_family][resource_mode] == true] if {
	resource_family
	data.portcullis.settings.resource_rights == true
} else := [m | some m in usable; grants(m)]

# grants(m): relationship fact m grants the action, hardening aside.

grants(m) if m[container_rights[input.action]] == true

grants(m) if {
	[family, mode] := resource_rights[input.action]
	data.portcullis.settings.resource_rights == true
	m.resources[family][mode] == true
}

grants(m) if {
	input.action == "container.list"
	m.can_inspect == true
}

grants(m) if {
	input.action == "container.create"
	creator(m)
	m.image_allowed == true
}

grants(m) if {
	input.action == "container.update"
	updater(m)
}

grants(m) if {
	input.action == "container.health_summary"
	m.can_inspect == true
}

grants(m) if {
	input.action == "container.update_image"
	m.can_update_image == true
	m.image_allowed == true
}

grants(m) if {
	input.action == "container.export"
	m.can_inspect == true
	m.reads_everything == true
}

grants(m) if {
	input.action == "container.commit"
	m.can_inspect == true
	data.portcullis.settings.resource_rights == true
	m.resources.images.write == true
}

grants(m) if {
	input.action == "image.pull"
	m.can_pull == true
	m.image_allowed == true
}

grants(m) if {
	input.action in {"file.read", "file.list", "file.stat"}
	m.path_readable == true
}

# A stat describes the path (size, mode, times, link target): only to a caller
# that may read it, or write it (docker cp stats an upload's destination first).
grants(m) if {
	input.action == "file.stat"
	m.path_writable == true
}

grants(m) if {
	input.action in {"file.write", "file.delete"}
	m.path_writable == true
}

grants(m) if {
	tunnel := tunnel_of[input.action]
	data.portcullis.settings.tunnels == true
	tunnel in m.allow_tunnels
	attach_ok(m)
}

grants(_) if input.action in handshake_actions

creator(m) if m.can_create == true

creator(m) if m.can_update_image == true

creator(m) if m.can_update_env == true

updater(m) if m.can_update_env == true

updater(m) if m.can_update_image == true

attach_ok(_) if input.action != "container.attach_ws"

attach_ok(m) if m.can_attach == true

# Whether the policy knows the action at all: anything else is refused.
known_action if container_rights[input.action]

known_action if resource_rights[input.action]

known_action if input.action in handshake_actions

known_action if input.action in admin_only_actions

known_action if tunnel_of[input.action]

known_action if input.action in {
	"container.list", "container.create", "container.update", "container.export",
	"container.health_summary", "container.update_image",
	"container.commit", "image.pull", "file.read", "file.list", "file.stat",
	"file.write", "file.delete",
}
