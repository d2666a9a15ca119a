# Tests of the strict template.
package portcullis_strict_test

import rego.v1

import data.portcullis_testlib as t

# Every decision here is made under the strict template, whichever one
# template.rego selects.
allowed(inp) := t.allowed_in("strict", inp)

says(inp, text) if t.says_in("strict", inp, text)

wild(extra) := t.rel(object.union({"target_match": "wildcard", "target_container": "*"}, extra))

test_strict_settings if {
	t.settings_in("strict") == {"template": "strict", "resource_rights": false, "wildcard_dangerous": false, "tunnels": false, "public_read": false}
}

test_wildcard_cannot_grant_dangerous_rights if {
	every action in ["container.exec", "exec.start", "container.attach", "container.remove"] {
		inp := t.req(action, [wild({"can_exec": true, "can_attach": true, "can_remove": true})])
		allowed(inp) == false
		says(inp, "wildcard targets cannot grant it")
	}
}

test_named_target_may_grant_dangerous_rights if {
	allowed(t.req("container.exec", [t.rel({"can_exec": true})])) == true
	allowed(t.req("container.exec", [t.rel({"can_exec": true, "target_match": "glob"})])) == true
}

test_wildcard_still_grants_read_and_lifecycle if {
	allowed(t.req("container.inspect", [wild({})])) == true
	allowed(t.req("container.restart", [wild({"can_restart": true})])) == true
}

test_wildcard_file_writes_refused if {
	inp := object.union(t.req("file.write", [wild({"path_writable": true})]), {"file": {"path": "/a", "resolved_path": "/a", "mount": null}})
	allowed(inp) == false
}

test_no_non_container_resources if {
	m := t.rel({"target_match": "caller", "resources": {"images": {"read": true, "write": true}, "system": {"read": true}}})
	allowed(t.req("image.list", [m])) == false
	says(t.req("image.list", [m]), "not a resource right under template strict")
	allowed(t.req("system.info", [m])) == false
	allowed(t.req("container.commit", [t.rel({"resources": {"images": {"write": true}}})])) == false
}

test_ping_still_works if {
	allowed(t.req("system.ping", [t.rel({"target_match": "caller"})])) == true
}

test_no_tunnels if {
	inp := t.req("session.open", [t.rel({"allow_tunnels": ["session"], "target_match": "caller"})])
	allowed(inp) == false
	says(inp, "tunnels are disabled")
}

test_hardening_still_applies if {
	allowed(t.create({"Privileged": true}, [t.creator({})])) == false
	allowed(t.create({"Privileged": true}, [t.creator({"allow_privileged": true})])) == true
}
