# Tests of the standard template: identities, every action family, every trust field.
package portcullis_test

import rego.v1

import data.portcullis
import data.portcullis_testlib as t

# --- identities -------------------------------------------------------------

test_admin_is_allowed_everything if {
	every action in ["container.prune", "trust.write", "container.exec", "plugin.install", "debug.read"] {
		inp := object.union(t.req(action, []), {"caller": {"admin": true}})
		t.allowed(inp) == true
	}
}

test_admin_skips_hardening if {
	inp := object.union(t.create({"Privileged": true}, []), {"caller": {"admin": true}})
	t.allowed(inp) == true
}

test_unidentified_gets_nothing if {
	inp := object.union(t.req("system.ping", [t.rel({})]), {"caller": {"identified": false, "name": "unidentified(uid 1000)"}})
	t.allowed(inp) == false
	t.says(inp, "not identified")
}

test_no_relationship_no_access if {
	inp := t.req("container.inspect", [])
	t.allowed(inp) == false
	t.says(inp, "caller ci has no trust relationship for web-1")
}

test_unknown_action_is_refused if {
	inp := t.req("container.teleport", [t.rel({"can_exec": true})])
	t.allowed(inp) == false
	t.says(inp, "not known to the policy")
}

test_admin_only_actions_need_an_admin if {
	every action in portcullis.admin_only_actions {
		inp := t.req(action, [t.rel({"can_remove": true})])
		t.allowed(inp) == false
		t.says(inp, "requires an administrator")
	}
}

# --- container rights: each can_* grants exactly its actions ------------------

rights := ["can_inspect", "can_start", "can_stop", "can_restart", "can_remove", "can_exec", "can_logs", "can_stats", "can_attach"]

test_each_right_grants_exactly_its_actions if {
	every action, right in portcullis.container_rights {
		every other in rights {
			m := t.rel(object.union(t.no_rights, {other: true}))
			t.allowed(t.req(action, [m])) == (other == right)
		}
	}
}

test_seed_defaults_grant_inspect_logs_stats_only if {
	every action in ["container.inspect", "container.logs", "container.stats", "container.top"] {
		t.allowed(t.req(action, [t.rel({})])) == true
	}
	every action in ["container.start", "container.stop", "container.restart", "container.remove", "container.exec", "container.attach"] {
		t.allowed(t.req(action, [t.rel({})])) == false
	}
}

test_secrets_need_can_see_secrets if {
	t.allowed(t.req("container.inspect_secrets", [t.rel({})])) == false
	t.allowed(t.req("container.inspect_secrets", [t.rel({"can_see_secrets": true})])) == true
}

test_deny_names_the_missing_right if {
	t.says(t.req("container.exec", [t.rel({})]), "needs can_exec")
}

test_allow_names_the_relationship if {
	inp := t.req("container.restart", [t.rel({"can_restart": true, "trust_id": "abc"})])
	d := t.decision(inp)
	d.allowed == true
	d.trust_id == "abc"
	contains(d.reasons[0], "allowed by trust relationship abc")
}

test_exec_family_uses_can_exec if {
	every action in ["container.exec", "exec.start", "exec.resize"] {
		t.allowed(t.req(action, [t.rel({"can_exec": true})])) == true
		t.allowed(t.req(action, [t.rel({})])) == false
	}
	t.allowed(t.req("exec.inspect", [t.rel({})])) == true
}

test_container_list_needs_inspect_somewhere if {
	t.allowed(t.req("container.list", [t.rel({"target_match": "caller"})])) == true
	t.allowed(t.req("container.list", [t.rel(object.union(t.no_rights, {"target_match": "caller"}))])) == false
}

# --- agent controls (update-image, env, health) -----------------------------------

test_update_image_needs_the_right_and_an_allowed_image if {
	inp := object.union(t.req("container.update_image", []), {"image": "busybox:2"})
	updater := t.rel({"can_update_image": true, "image_allowed": true, "allowed_images": ["busybox*"]})
	t.allowed(object.union(inp, {"matches": [updater]})) == true
	# The right alone is not enough: the image must be allowed.
	t.allowed(object.union(inp, {"matches": [object.union(updater, {"image_allowed": false})]})) == false
	# can_update_env or can_create do not grant it.
	other := t.rel({"can_update_env": true, "can_create": true, "image_allowed": true})
	t.allowed(object.union(inp, {"matches": [other]})) == false
	t.says(object.union(inp, {"matches": [other]}), "needs can_update_image and the image in allowed_images")
}

test_env_rights if {
	t.allowed(t.req("container.env_read", [t.rel({})])) == true
	t.allowed(t.req("container.env_read", [t.rel(t.no_rights)])) == false
	t.allowed(t.req("container.env_update", [t.rel({})])) == false
	t.allowed(t.req("container.env_update", [t.rel({"can_update_env": true})])) == true
	t.allowed(t.req("container.env_update", [t.rel({"can_update_image": true})])) == false
}

test_health_needs_inspect if {
	t.allowed(t.req("container.health", [t.rel({})])) == true
	t.allowed(t.req("container.health", [t.rel(t.no_rights)])) == false
	t.allowed(t.req("container.health_summary", [t.rel({"target_match": "caller"})])) == true
	t.allowed(t.req("container.health_summary", [t.rel(object.union(t.no_rights, {"target_match": "caller"}))])) == false
}

test_any_matching_relationship_may_grant if {
	weak := t.rel({"trust_id": "weak"})
	strong := t.rel({"trust_id": "strong", "target_match": "wildcard", "can_stop": true})
	d := t.decision(t.req("container.stop", [weak, strong]))
	d.allowed == true
	d.trust_id == "strong"
}

# --- expiry -------------------------------------------------------------------

test_expired_relationship_grants_nothing if {
	m := t.rel({"can_start": true, "expires_at": "2024-12-31T23:59:59Z"})
	inp := t.req("container.start", [m])
	t.allowed(inp) == false
	t.says(inp, "has expired")
}

test_unexpired_relationship_grants if {
	m := t.rel({"can_start": true, "expires_at": "2025-01-01T00:00:01Z"})
	t.allowed(t.req("container.start", [m])) == true
}

# --- create, update, pull: allowed_images ------------------------------------

test_create_needs_can_create_and_allowed_image if {
	t.allowed(t.create({}, [t.creator({})])) == true
	t.allowed(t.create({}, [t.rel({"can_create": true, "image_allowed": false})])) == false
	t.allowed(t.create({}, [t.rel({"image_allowed": true})])) == false
	t.says(t.create({}, [t.rel({"image_allowed": true})]), "allowed_images")
}

test_update_image_and_env_allow_recreate if {
	t.allowed(t.create({}, [t.rel({"can_update_image": true, "image_allowed": true})])) == true
	t.allowed(t.create({}, [t.rel({"can_update_env": true, "image_allowed": true})])) == true
}

test_container_update_needs_update_rights if {
	t.allowed(t.with_body("container.update", {"Memory": 1000000}, [t.rel({"can_update_env": true})])) == true
	t.allowed(t.with_body("container.update", {"Memory": 1000000}, [t.rel({"can_update_image": true})])) == true
	t.allowed(t.with_body("container.update", {"Memory": 1000000}, [t.rel({})])) == false
}

test_pull_needs_can_pull_and_allowed_image if {
	pull := object.union(t.req("image.pull", []), {"image": "busybox:1"})
	t.allowed(object.union(pull, {"matches": [t.rel({"can_pull": true, "image_allowed": true, "target_match": "caller"})]})) == true
	t.allowed(object.union(pull, {"matches": [t.rel({"can_pull": true, "image_allowed": false, "target_match": "caller"})]})) == false
	t.allowed(object.union(pull, {"matches": [t.rel({"image_allowed": true, "target_match": "caller"})]})) == false
}

# --- files ----------------------------------------------------------------------

file_req(action, path, m) := object.union(t.req(action, [m]), {"file": {"path": path, "resolved_path": path, "mount": null}})

test_file_read_paths if {
	every action in ["file.read", "file.list", "file.stat"] {
		t.allowed(file_req(action, "/app/config/a", t.rel(object.union(t.no_rights, {"path_readable": true})))) == true
	}
	every action in ["file.read", "file.list"] {
		t.allowed(file_req(action, "/etc/shadow", t.rel({"path_readable": false}))) == false
	}
}

# can_inspect alone no longer describes files: a stat reveals a refused path.
test_file_stat_needs_read_or_write_paths if {
	t.allowed(file_req("file.stat", "/etc/hostname", t.rel({}))) == false
	t.allowed(file_req("file.stat", "/etc/hostname", t.rel(object.union(t.no_rights, {"path_writable": true})))) == true
	t.allowed(file_req("file.stat", "/etc/hostname", t.rel(t.no_rights))) == false
}

test_file_write_paths if {
	every action in ["file.write", "file.delete"] {
		t.allowed(file_req(action, "/app/config/x", t.rel({"path_writable": true}))) == true
		t.allowed(file_req(action, "/app/config/x", t.rel({"path_readable": true}))) == false
		t.says(file_req(action, "/app/config/x", t.rel({})), "file_write_paths")
	}
}

test_export_needs_everything_readable if {
	t.allowed(t.req("container.export", [t.rel({"reads_everything": true})])) == true
	t.allowed(t.req("container.export", [t.rel({"path_readable": true})])) == false
}

test_commit_needs_image_write if {
	t.allowed(t.req("container.commit", [t.rel({"resources": {"images": {"write": true}}})])) == true
	t.allowed(t.req("container.commit", [t.rel({})])) == false
}

# --- non-container resources -------------------------------------------------

test_resource_rights_grant_their_actions if {
	every action, rw in portcullis.resource_rights {
		family := rw[0]
		mode := rw[1]
		grant := t.rel({"target_match": "caller", "allow_plugins": true, "resources": {family: {mode: true}}})
		t.allowed(t.req(action, [grant])) == true
		t.allowed(t.req(action, [t.rel({"target_match": "caller"})])) == false
	}
}

test_read_does_not_grant_write if {
	m := t.rel({"target_match": "caller", "resources": {"images": {"read": true}, "networks": {"read": true}}})
	t.allowed(t.req("image.list", [m])) == true
	t.allowed(t.req("image.remove", [m])) == false
	t.allowed(t.req("network.create", [m])) == false
	t.says(t.req("image.remove", [m]), "needs resources.images.write")
}

test_handshake_is_open_to_identified_callers_only if {
	every action in ["system.ping", "system.version"] {
		t.allowed(t.req(action, [t.rel(object.union(t.no_rights, {"target_match": "caller"}))])) == true
		t.allowed(t.req(action, [])) == true
		t.allowed(object.union(t.req(action, []), {"caller": {"identified": false, "name": "x"}})) == false
	}
}

test_system_info_needs_system_read if {
	t.allowed(t.req("system.info", [t.rel({"target_match": "caller"})])) == false
	t.allowed(t.req("system.info", [t.rel({"target_match": "caller", "resources": {"system": {"read": true}}})])) == true
}

# --- tunnels -------------------------------------------------------------------

test_tunnels_need_allow_tunnels if {
	t.allowed(t.req("session.open", [t.rel({"allow_tunnels": ["session"]})])) == true
	t.allowed(t.req("grpc.open", [t.rel({"allow_tunnels": ["session"]})])) == false
	t.allowed(t.req("grpc.open", [t.rel({"allow_tunnels": ["grpc"]})])) == true
}

test_attach_ws_needs_attach_and_tunnel if {
	t.allowed(t.req("container.attach_ws", [t.rel({"can_attach": true, "allow_tunnels": ["attach_ws"]})])) == true
	t.allowed(t.req("container.attach_ws", [t.rel({"allow_tunnels": ["attach_ws"]})])) == false
	t.allowed(t.req("container.attach_ws", [t.rel({"can_attach": true})])) == false
}

# --- standard template specifics -------------------------------------------------

# template.rego selects a template that settings.rego knows (the other tests
# each select theirs).
test_selected_template_is_known if data.portcullis.settings.template in {"strict", "standard", "permissive"}

test_standard_settings if {
	t.settings_in("standard") == {"template": "standard", "resource_rights": true, "wildcard_dangerous": true, "tunnels": true, "public_read": false}
}

test_standard_wildcard_may_grant_exec if {
	t.allowed(t.req("container.exec", [t.rel({"can_exec": true, "target_match": "wildcard", "target_container": "*"})])) == true
}

test_standard_has_no_public_read if {
	t.allowed(t.req("image.list", [])) == false
}
