# The portcullis default policy: the seed's trust semantics over the
# precomputed facts in `input.matches` (see README.md).
#
# Entry point: data.portcullis.decision = {allowed, reasons, trust_id}.
package portcullis

import rego.v1

caller_name := input.caller.name

target_desc := input.target.name if {
	is_string(input.target.name)
} else := input.resource.name if {
	is_string(input.resource.name)
} else := "(unnamed)"

# The Rust side drops expired relationships too; the policy checks again so a
# policy author (and a hand-written input) sees the rule.
expired(m) if {
	is_string(m.expires_at)
	time.parse_rfc3339_ns(m.expires_at) <= input.now_ns
}

# Written as rules with specialized comprehensions rather than per-relationship
# function calls: on the RVM each function call costs about as much as a
# whole comprehension.
live := input.matches if {
	every m in input.matches { not is_string(m.expires_at) }
} else := [m | some m in input.matches; not expired(m)]

# Under the strict template a wildcard target cannot grant dangerous actions.
usable := live if {
	data.portcullis.settings.wildcard_dangerous == true
} else := live if {
	not input.action in dangerous_actions
} else := [m | some m in live; m.target_match != "wildcard"]

# Relationships that grant the action (`grantors`, actions.rego) and also opt
# in to every dangerous setting the request asks for (none asked: all of them).
# `request_dangers` apply to every action (a site rule may refuse any of them);
# the other groups only to the actions in `hardened_actions`.
granting := grantors if {
	not input.action in hardened_actions
	count(request_dangers) == 0
} else := grantors if {
	count(dangers) == 0
} else := [m | some m in grantors; count(unmet(m)) == 0]

public_read_ok if {
	data.portcullis.settings.public_read == true
	input.action in public_read_actions
}

deny(reasons) := {"allowed": false, "reasons": reasons, "trust_id": null}

default decision := {"allowed": false, "reasons": ["the policy reached no decision"], "trust_id": null}

decision := {"allowed": true, "reasons": [sprintf("caller %s is an administrator", [caller_name])], "trust_id": null} if {
	input.caller.admin == true
} else := deny([sprintf("caller %s is not identified", [caller_name])]) if {
	input.caller.identified != true
} else := allowed_by_trust if {
	count(granting) > 0
} else := deny([sprintf("action %s is not known to the policy", [input.action])]) if {
	not known_action
} else := deny([sprintf("%s requires an administrator (caller %s is not one)", [input.action, caller_name])]) if {
	input.action in admin_only_actions
} else := {"allowed": true, "reasons": [sprintf("%s is the API handshake, open to every identified caller", [input.action])], "trust_id": null} if {
	# The docker CLI negotiates its API version with _ping before anything
	# else; refusing it would hide the real refusal behind a version error.
	input.action in handshake_actions
	count(request_dangers) == 0
} else := {"allowed": true, "reasons": [sprintf("%s is open to every identified caller (template %s)", [input.action, data.portcullis.settings.template])], "trust_id": null} if {
	public_read_ok
	count(request_dangers) == 0
} else := deny(deny_reasons)

# The first granting relationship decides. (One reference to `granting`, and
# concat rather than sprintf: on the RVM each rule reference and each sprintf
# cost more than the rest of this rule.)
allowed_by_trust := {"allowed": true, "reasons": [reason], "trust_id": g.trust_id} if {
	g := granting[0]
	reason := concat("", [
		input.action, " on ", target_desc, " allowed by trust relationship ", g.trust_id,
		" (", g.caller_service, " -> ", g.target_container, ", ", g.target_match, " match)",
	])
}

deny_reasons := [no_grant_reason] if {
	count(grantors) == 0
} else := danger_reasons if {
	count(danger_reasons) > 0
} else := [sprintf("no single trust relationship of caller %s opts in to all of: %s", [caller_name, concat(", ", sort({d.msg | some d in dangers}))])]

danger_reasons := sort({sprintf("%s for caller %s (%s)", [d.msg, caller_name, d.why]) |
	some d in dangers
	not some_grantor_opts_in(d)
})

some_grantor_opts_in(d) if {
	some m in grantors
	opted_in(m, d)
}

no_grant_reason := sprintf("caller %s has no trust relationship for %s", [caller_name, target_desc]) if {
	count(input.matches) == 0
} else := sprintf("every trust relationship of caller %s for %s has expired", [caller_name, target_desc]) if {
	count(live) == 0
} else := sprintf("%s on %s needs a trust relationship naming the container; wildcard targets cannot grant it (template %s)", [input.action, target_desc, data.portcullis.settings.template]) if {
	count(usable) == 0
} else := sprintf("%s on %s is not a resource right under template %s", [input.action, target_desc, data.portcullis.settings.template]) if {
	resource_rights[input.action]
	data.portcullis.settings.resource_rights != true
} else := sprintf("%s on %s by caller %s: tunnels are disabled (template %s)", [input.action, target_desc, caller_name, data.portcullis.settings.template]) if {
	tunnel_of[input.action]
	data.portcullis.settings.tunnels != true
} else := sprintf("no trust relationship of caller %s grants %s on %s (needs %s)", [caller_name, input.action, target_desc, need])
