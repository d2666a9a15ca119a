# Helpers shared by every *_test.rego: build inputs the way the Rust side does.
package portcullis_testlib

import rego.v1

no_access := {"read": false, "write": false}

# A match fact with every field at its seed default (see README.md).
base_rel := {
	"trust_id": "r1", "caller_service": "ci", "target_container": "web-1", "target_match": "exact",
	"can_inspect": true, "can_start": false, "can_stop": false, "can_restart": false,
	"can_remove": false, "can_exec": false, "can_logs": true, "can_stats": true,
	"can_attach": false, "can_create": false, "can_pull": false,
	"file_read_paths": [], "file_write_paths": [],
	"can_update_env": false, "can_update_image": false, "allowed_images": [],
	"resources": {
		"images": no_access, "networks": no_access, "volumes": no_access,
		"system": no_access, "swarm": no_access, "plugins": no_access,
	},
	"can_see_secrets": false, "allow_privileged": false, "allow_host_namespaces": [],
	"allow_cap_add": [], "allow_unconfined": false, "allow_devices": false,
	"allow_bind_mounts": [], "allow_sysctls": false, "allow_privileged_exec": false,
	"allow_plugins": false, "allow_tunnels": [], "allow_bind_writes": false,
	"allow_volume_drivers": [], "volumes": [],
	"description": null, "expires_at": null,
	"created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
	"path_readable": false, "path_writable": false, "reads_everything": false,
	"image_allowed": false, "host_paths_allowed": {},
}

# Every boolean container right switched off.
no_rights := {
	"can_inspect": false, "can_start": false, "can_stop": false, "can_restart": false,
	"can_remove": false, "can_exec": false, "can_logs": false, "can_stats": false,
	"can_attach": false,
}

rel(overrides) := object.union(base_rel, overrides)

# 2025-01-01T00:00:00Z
now_ns := 1735689600000000000

req(action, matches) := {
	"caller": {"name": "ci", "admin": false, "identified": true, "via": {"source": "token", "token_id": "t1"}},
	"action": action,
	"resource": {"kind": "container", "name": "web-1"},
	"target": {"reference": "web-1", "id": "c0ffee", "name": "web-1", "labels": {}, "image": "busybox:latest", "exists": true},
	"request": {"method": "POST", "path": "/", "query": {}, "version": null},
	"body": null,
	"file": null,
	"now": "2025-01-01T00:00:00Z",
	"now_ns": now_ns,
	"matches": matches,
	"image": null,
	"host_paths": [],
	"refs": {},
	"volume_drivers": [],
	"volumes": {},
}

with_body(action, body, matches) := object.union(req(action, matches), {"body": body})

create(host_config, matches) := object.union(
	req("container.create", matches),
	{"body": {"Image": "busybox", "HostConfig": host_config}, "image": "busybox"},
)

# A create by a relationship allowed to create busybox, plus `extra` rights.
creator(extra) := rel(object.union({"can_create": true, "image_allowed": true, "allowed_images": ["busybox*"]}, extra))

# The decision under the standard template, whichever one template.rego
# selects (tests of other templates use `decision_in` below).
decision(inp) := decision_in("standard", inp)

allowed(inp) := decision(inp).allowed

reasons(inp) := decision(inp).reasons

# Whether some reason contains `text`.
says(inp, text) if {
	some r in reasons(inp)
	contains(r, text)
}

# The decision under a given template, whichever one template.rego selects,
# so every template's tests pass together (`opa test policies/` loads them all
# at once) and in a policy directory that selects another template.
decision_in(template, inp) := d if {
	d := data.portcullis.decision with input as inp with data.portcullis.settings.template as template
}

allowed_in(template, inp) := decision_in(template, inp).allowed

says_in(template, inp, text) if {
	some r in decision_in(template, inp).reasons
	contains(r, text)
}

# The settings a template selects.
settings_in(template) := s if {
	s := {
		"template": data.portcullis.settings.template,
		"resource_rights": data.portcullis.settings.resource_rights,
		"wildcard_dangerous": data.portcullis.settings.wildcard_dangerous,
		"tunnels": data.portcullis.settings.tunnels,
		"public_read": data.portcullis.settings.public_read,
	} with data.portcullis.settings.template as template
}
