# Tests of the default hardening rules (standard template).
package portcullis_hardening_test

import rego.v1

import data.portcullis_testlib as t

create(hc, extra) := t.create(hc, [t.creator(extra)])

test_plain_create_is_allowed if {
	t.allowed(create({"Memory": 1000000, "CapAdd": ["NET_BIND_SERVICE", "cap_chown"], "NetworkMode": "bridge"}, {})) == true
}

test_privileged if {
	inp := create({"Privileged": true}, {})
	t.allowed(inp) == false
	t.reasons(inp) == ["privileged containers are not allowed for caller ci (no trust relationship opts in)"]
	t.allowed(create({"Privileged": true}, {"allow_privileged": true})) == true
}

test_host_namespaces if {
	fields := {"NetworkMode": "network", "PidMode": "pid", "IpcMode": "ipc", "UTSMode": "uts", "UsernsMode": "userns", "CgroupnsMode": "cgroupns"}
	every field, ns in fields {
		t.allowed(create({field: "host"}, {})) == false
		t.says(create({field: "host"}, {}), sprintf("host %s namespace", [ns]))
		t.allowed(create({field: "HOST"}, {})) == false
		t.allowed(create({field: "host"}, {"allow_host_namespaces": [ns]})) == true
	}
	t.allowed(create({"PidMode": "host"}, {"allow_host_namespaces": ["network"]})) == false
}

test_container_namespace_refs if {
	ref := object.union(create({"NetworkMode": "container:db"}, {}), {"refs": {"db": false}})
	t.allowed(ref) == false
	t.says(ref, "may not inspect that container")
	ok := object.union(create({"NetworkMode": "container:db"}, {}), {"refs": {"db": true}})
	t.allowed(ok) == true
}

test_volumes_from_refs if {
	inp := object.union(create({"VolumesFrom": ["secrets:ro"]}, {}), {"refs": {"secrets": false}})
	t.allowed(inp) == false
	t.says(inp, "container secrets")
}

test_cap_add_beyond_safe_set if {
	t.allowed(create({"CapAdd": ["SYS_ADMIN"]}, {})) == false
	t.says(create({"CapAdd": ["cap_sys_admin"]}, {}), "capability SYS_ADMIN")
	t.allowed(create({"CapAdd": ["ALL"]}, {})) == false
	t.allowed(create({"CapAdd": ["SYS_ADMIN"]}, {"allow_cap_add": ["SYS_ADMIN"]})) == true
	t.allowed(create({"CapAdd": ["SYS_ADMIN", "NET_ADMIN"]}, {"allow_cap_add": ["SYS_ADMIN"]})) == false
	t.allowed(create({"CapAdd": ["ALL"]}, {"allow_cap_add": ["SYS_ADMIN"]})) == false
	t.allowed(create({"CapAdd": ["ALL", "SYS_PTRACE"]}, {"allow_cap_add": ["ALL"]})) == true
}

test_capabilities_field if {
	t.allowed(create({"Capabilities": ["CAP_SYS_MODULE"]}, {})) == false
	t.allowed(create({"Capabilities": ["CAP_CHOWN"]}, {})) == true
}

test_security_opts if {
	every opt in ["seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined", "apparmor:unconfined", "label=disable", "label:disable", "systempaths=unconfined", "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"] {
		t.allowed(create({"SecurityOpt": [opt]}, {})) == false
		t.allowed(create({"SecurityOpt": [opt]}, {"allow_unconfined": true})) == true
	}
	t.allowed(create({"SecurityOpt": ["no-new-privileges", "apparmor=docker-default"]}, {})) == true
}

test_masked_paths if {
	t.allowed(create({"MaskedPaths": []}, {})) == false
	t.allowed(create({"ReadonlyPaths": []}, {})) == false
	t.allowed(create({"MaskedPaths": []}, {"allow_unconfined": true})) == true
}

test_devices if {
	every field in ["Devices", "DeviceRequests", "DeviceCgroupRules"] {
		t.allowed(create({field: [{"PathOnHost": "/dev/sda"}]}, {})) == false
		t.allowed(create({field: [{"PathOnHost": "/dev/sda"}]}, {"allow_devices": true})) == true
		t.allowed(create({field: []}, {})) == true
	}
}

test_update_devices if {
	m := t.rel({"can_update_env": true})
	t.allowed(t.with_body("container.update", {"Devices": [{"PathOnHost": "/dev/mem"}]}, [m])) == false
	t.allowed(t.with_body("container.update", {"DeviceCgroupRules": ["c 1:1 rwm"]}, [m])) == false
}

bind_req(path, allowed) := object.union(
	create({"Binds": [sprintf("%s:/x", [path])]}, {"host_paths_allowed": {path: allowed}}),
	{"host_paths": [path]},
)

test_bind_mounts if {
	t.allowed(bind_req("/srv/data", true)) == true
	inp := bind_req("/etc", false)
	t.allowed(inp) == false
	t.says(inp, "bind-mounting host path /etc")
	t.says(inp, "allow_bind_mounts")
}

test_docker_socket_bind if {
	inp := bind_req("/var/run/docker.sock", false)
	t.allowed(inp) == false
	t.says(inp, "/var/run/docker.sock")
}

test_sysctls if {
	t.allowed(create({"Sysctls": {"net.ipv4.ip_forward": "1"}}, {})) == false
	t.allowed(create({"Sysctls": {"net.ipv4.ip_forward": "1"}}, {"allow_sysctls": true})) == true
	t.allowed(create({"Sysctls": {}}, {})) == true
}

test_endpoint_sysctls if {
	opts := {"DriverOpts": {"com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.forwarding=1"}}
	body := {"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"bridge": opts}}}
	inp := object.union(t.with_body("container.create", body, [t.creator({})]), {"image": "busybox"})
	t.allowed(inp) == false
	net := t.rel({"target_match": "caller", "resources": {"networks": {"write": true}}})
	connect := t.with_body("network.connect", {"Container": "web-1", "EndpointConfig": opts}, [net])
	t.allowed(connect) == false
	t.allowed(t.with_body("network.connect", {"Container": "web-1", "EndpointConfig": opts}, [object.union(net, {"allow_sysctls": true})])) == true
	t.allowed(t.with_body("network.connect", {"Container": "web-1"}, [net])) == true
}

test_privileged_exec if {
	m := t.rel({"can_exec": true})
	t.allowed(t.with_body("container.exec", {"Cmd": ["sh"], "Privileged": true}, [m])) == false
	t.says(t.with_body("container.exec", {"Cmd": ["sh"], "Privileged": true}, [m]), "privileged exec")
	t.allowed(t.with_body("container.exec", {"Cmd": ["sh"], "Privileged": true}, [object.union(m, {"allow_privileged_exec": true})])) == true
	t.allowed(t.with_body("container.exec", {"Cmd": ["sh"]}, [m])) == true
}

test_plugins if {
	m := t.rel({"target_match": "caller", "resources": {"plugins": {"write": true, "read": true}}})
	every action in ["plugin.install", "plugin.set", "plugin.upgrade", "plugin.create", "plugin.enable"] {
		t.allowed(t.req(action, [m])) == false
		t.allowed(t.req(action, [object.union(m, {"allow_plugins": true})])) == true
	}
	t.allowed(t.req("plugin.disable", [m])) == true
	t.allowed(t.req("plugin.list", [m])) == true
}

test_bind_writes if {
	file := {"path": "/data/x", "resolved_path": "/data/x", "mount": {"type": "bind", "source": "/srv/data", "destination": "/data", "rw": true}}
	m := t.rel({"path_writable": true})
	inp := object.union(t.req("file.write", [m]), {"file": file})
	t.allowed(inp) == false
	t.says(inp, "bind mount /srv/data")
	t.allowed(object.union(t.req("file.write", [object.union(m, {"allow_bind_writes": true})]), {"file": file})) == true
	vol := object.union(file, {"mount": {"type": "volume", "source": "v", "destination": "/data", "rw": true}})
	t.allowed(object.union(t.req("file.write", [m]), {"file": vol})) == true
}

service(spec, extra) := object.union(
	t.with_body("service.create", {"TaskTemplate": {"ContainerSpec": object.union({"Image": "busybox"}, spec)}}, [t.rel(object.union({"target_match": "caller", "resources": {"swarm": {"write": true}}}, extra))]),
	{"image": "busybox"},
)

test_service_hardening if {
	t.allowed(service({}, {})) == true
	t.allowed(service({"CapabilityAdd": ["SYS_ADMIN"]}, {})) == false
	t.allowed(service({"Sysctls": {"kernel.shmmax": "1"}}, {})) == false
	t.allowed(service({"Privileges": {"Seccomp": {"Mode": "unconfined"}}}, {})) == false
	t.allowed(service({"Privileges": {"AppArmor": {"Mode": "disabled"}}}, {})) == false
	t.allowed(service({"Privileges": {"AppArmor": {"Mode": "disabled"}}}, {"allow_unconfined": true})) == true
}

test_volume_create_device if {
	m := t.rel({"target_match": "caller", "resources": {"volumes": {"write": true}}, "host_paths_allowed": {"/etc": false}})
	inp := object.union(t.with_body("volume.create", {"Name": "v", "DriverOpts": {"o": "bind", "device": "/etc", "type": "none"}}, [m]), {"host_paths": ["/etc"]})
	t.allowed(inp) == false
	t.says(inp, "host path /etc")
}

test_volume_drivers_need_allow_volume_drivers if {
	m := t.rel({"target_match": "caller", "resources": {"volumes": {"write": true}}})
	inp := object.union(t.with_body("volume.create", {"Name": "v", "Driver": "rexray"}, [m]), {"volume_drivers": ["rexray"]})
	t.allowed(inp) == false
	t.says(inp, "volume driver rexray is not allowed")
	t.allowed(object.union(inp, {"matches": [object.union(m, {"allow_volume_drivers": ["rexray"]})]})) == true
	t.allowed(object.union(inp, {"matches": [object.union(m, {"allow_volume_drivers": ["*"]})]})) == true
	t.allowed(object.union(inp, {"matches": [object.union(m, {"allow_volume_drivers": ["local:nfs"]})]})) == false
}

test_existing_volumes_need_a_grant if {
	inp := object.union(create({"Binds": ["data:/d"]}, {}), {"volumes": {"data": false}})
	t.allowed(inp) == false
	t.says(inp, "mounting existing volume data is not allowed")
	t.allowed(object.union(inp, {"volumes": {"data": true}})) == true
}

test_every_violation_is_reported if {
	inp := create({"Privileged": true, "PidMode": "host", "CapAdd": ["SYS_ADMIN"]}, {})
	count(t.reasons(inp)) == 3
}

test_one_relationship_must_opt_in_to_all if {
	a := t.creator({"trust_id": "a", "allow_privileged": true})
	b := t.creator({"trust_id": "b", "allow_host_namespaces": ["pid"]})
	inp := t.create({"Privileged": true, "PidMode": "host"}, [a, b])
	t.allowed(inp) == false
	t.says(inp, "no single trust relationship")
	both := t.creator({"trust_id": "c", "allow_privileged": true, "allow_host_namespaces": ["pid"]})
	d := t.decision(t.create({"Privileged": true, "PidMode": "host"}, [a, b, both]))
	d.allowed == true
	d.trust_id == "c"
}
