# Tests of the permissive template.
package portcullis_permissive_test

import rego.v1

import data.portcullis_testlib as t

# Every decision here is made under the permissive template, whichever one
# template.rego selects.
allowed(inp) := t.allowed_in("permissive", inp)

says(inp, text) if t.says_in("permissive", inp, text)

test_permissive_settings if {
	t.settings_in("permissive") == {"template": "permissive", "resource_rights": true, "wildcard_dangerous": true, "tunnels": true, "public_read": true}
}

test_public_read_for_identified_callers if {
	every action in ["system.info", "image.list", "image.inspect", "network.list", "volume.inspect"] {
		allowed(t.req(action, [])) == true
	}
}

test_public_read_excludes_writes_and_secrets if {
	every action in ["image.remove", "network.create", "volume.remove", "system.events", "secret.list", "container.inspect"] {
		allowed(t.req(action, [])) == false
	}
}

test_unidentified_still_gets_nothing if {
	inp := object.union(t.req("image.list", []), {"caller": {"identified": false}})
	allowed(inp) == false
}

test_container_rights_unchanged if {
	allowed(t.req("container.exec", [t.rel({})])) == false
	allowed(t.req("container.exec", [t.rel({"can_exec": true, "target_match": "wildcard"})])) == true
}

test_hardening_still_applies if {
	allowed(t.create({"CapAdd": ["SYS_ADMIN"]}, [t.creator({})])) == false
}
