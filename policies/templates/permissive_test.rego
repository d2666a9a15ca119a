# Tests of the permissive template.
package portcullis_permissive_test

import rego.v1

import data.portcullis_testlib as t

test_template_is_permissive if data.portcullis.settings.template == "permissive"

test_public_read_for_identified_callers if {
	every action in ["system.info", "image.list", "image.inspect", "network.list", "volume.inspect"] {
		t.allowed(t.req(action, [])) == true
	}
}

test_public_read_excludes_writes_and_secrets if {
	every action in ["image.remove", "network.create", "volume.remove", "system.events", "secret.list", "container.inspect"] {
		t.allowed(t.req(action, [])) == false
	}
}

test_unidentified_still_gets_nothing if {
	inp := object.union(t.req("image.list", []), {"caller": {"identified": false}})
	t.allowed(inp) == false
}

test_container_rights_unchanged if {
	t.allowed(t.req("container.exec", [t.rel({})])) == false
	t.allowed(t.req("container.exec", [t.rel({"can_exec": true, "target_match": "wildcard"})])) == true
}

test_hardening_still_applies if {
	t.allowed(t.create({"CapAdd": ["SYS_ADMIN"]}, [t.creator({})])) == false
}
