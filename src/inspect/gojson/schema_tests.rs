//! Tests of the decoder with the real schemas: every schema decodes what
//! clients send, the schemas are well formed, and the canonical view matches
//! what a real daemon stored (`daemon_cases.json`).

use super::*;
use crate::classify::Action;
use crate::inspect::schema::{self, CONTAINER_CREATE, GENERIC};
use serde_json::json;

#[test]
fn other_schemas() {
    let v = decode(
        br#"{"cmd":"sh","privileged":true,"ENV":["A=1"],"consolesize":[1,2]}"#,
        schema_for(Action::CONTAINER_EXEC),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"Cmd": ["sh"], "Privileged": true, "Env": ["A=1"], "ConsoleSize": [1, 2]})
    );
    let v = decode(
        br#"{"TaskTemplate":{"ContainerSpec":{"Image":"x","privileges":{"seccomp":{"mode":"unconfined"}},"capabilityadd":["ALL"]}},"taskTemplate":{"PluginSpec":{"Remote":"r"}}}"#,
        schema_for(Action::SERVICE_UPDATE),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"TaskTemplate": {
            "ContainerSpec": {"Image": "x", "Privileges": {"Seccomp": {"Mode": "unconfined"}}, "CapabilityAdd": ["ALL"]},
            "PluginSpec": {"remote": "r"}}})
    );
    assert!(decode(
        br#"{"TaskTemplate":{"ContainerSpec":{"Privileges":{"Seccomp":{"Profile":"!!"}}}}}"#,
        schema_for(Action::SERVICE_CREATE)
    )
    .is_err());
    let v = decode(
        br#"[{"name":"network","Value":["host"]},{"Name":"mount","value":["/var/lib"]}]"#,
        schema_for(Action::PLUGIN_INSTALL),
    )
    .unwrap();
    assert_eq!(
        v,
        json!([{"Name": "network", "Value": ["host"]}, {"Name": "mount", "Value": ["/var/lib"]}])
    );
    assert_eq!(
        decode(br#"["A=1","B=2"]"#, schema_for(Action::PLUGIN_SET)).unwrap(),
        json!(["A=1", "B=2"])
    );
    assert!(decode(br#"{"A":"1"}"#, schema_for(Action::PLUGIN_SET)).is_err());
    let v = decode(
        br#"{"name":"n","driver":"bridge","options":{"com.docker.network.bridge.name":"docker0"},"IPAM":{"config":[{"subnet":"10.0.0.0/8"}]}}"#,
        schema_for(Action::NETWORK_CREATE),
    )
    .unwrap();
    assert_eq!(
        v["Options"],
        json!({"com.docker.network.bridge.name": "docker0"})
    );
    assert_eq!(v["IPAM"]["Config"], json!([{"Subnet": "10.0.0.0/8"}]));
    let v = decode(
        br#"{"container":"c","endpointconfig":{"driveropts":{"com.docker.network.endpoint.sysctls":"net.ipv4.ip_forward=1"}}}"#,
        schema_for(Action::NETWORK_CONNECT),
    )
    .unwrap();
    assert_eq!(
        v["EndpointConfig"]["DriverOpts"]["com.docker.network.endpoint.sysctls"],
        json!("net.ipv4.ip_forward=1")
    );
    let v = decode(
        br#"{"name":"v","driver":"local","driveropts":{"o":"bind","device":"/etc","type":"none"}}"#,
        schema_for(Action::VOLUME_CREATE),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"Name": "v", "Driver": "local", "DriverOpts": {"o": "bind", "device": "/etc", "type": "none"}})
    );
    let v = decode(
        br#"{"memory":1024,"restartpolicy":{"name":"always"}}"#,
        schema_for(Action::CONTAINER_UPDATE),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"Memory": 1024, "RestartPolicy": {"Name": "always"}})
    );
    assert!(std::ptr::eq(schema_for(Action::CONTAINER_LIST), &GENERIC));
    // Legacy start bodies (API < 1.24) use the create wrapper.
    let v = decode(
        br#"{"privileged":true,"Binds":["/:/h"]}"#,
        schema_for(Action::CONTAINER_START),
    )
    .unwrap();
    assert_eq!(
        v["HostConfig"],
        json!({"Binds": ["/:/h"], "Privileged": true})
    );
}

#[test]
fn create_sees_every_power_field() {
    let body = br#"{"Image":"busybox","User":"0:0","Env":["A=1"],"Cmd":["sh"],"Entrypoint":"sh","Labels":{"a":"b"},
          "WorkingDir":"/","Volumes":{"/v":{}},"ExposedPorts":{"80/tcp":{}},"Hostname":"h","Domainname":"d","Tty":true,
          "OpenStdin":true,"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"StopSignal":"SIGTERM",
          "Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Retries":3},
          "HostConfig":{"Privileged":true,"CapAdd":["ALL"],"CapDrop":["NET_RAW"],"SecurityOpt":["seccomp=unconfined"],
            "MaskedPaths":[],"ReadonlyPaths":[],"UsernsMode":"host","Runtime":"runc","Binds":["/:/host"],
            "Mounts":[{"Type":"volume","Source":"v","Target":"/v","ReadOnly":false,"BindOptions":{"Propagation":"rshared"},
              "VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"o":"bind","device":"/etc"}}},
              "TmpfsOptions":{"SizeBytes":1,"Mode":448}}],
            "VolumesFrom":["other"],"VolumeDriver":"local","Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}],
            "DeviceCgroupRules":["a *:* rwm"],"DeviceRequests":[{"Driver":"nvidia","Count":-1,"Capabilities":[["gpu"]]}],
            "NetworkMode":"host","PidMode":"host","IpcMode":"host","UTSMode":"host","CgroupnsMode":"host","Cgroup":"host",
            "CgroupParent":"/","Sysctls":{"kernel.x":"1"},"GroupAdd":["0"],"Init":true,"LogConfig":{"Type":"json-file","Config":{"max-size":"1m"}},
            "PortBindings":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"80"}]},"RestartPolicy":{"Name":"always","MaximumRetryCount":0},
            "AutoRemove":true,"ExtraHosts":["a:1.2.3.4"],"Dns":["8.8.8.8"],"DnsOptions":[],"DnsSearch":[],
            "Memory":1,"CpuShares":2,"NanoCpus":3,"PidsLimit":-1,"Ulimits":[{"Name":"nofile","Soft":1,"Hard":2}]},
          "NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"10.0.0.2"},"Links":[],"Aliases":["a"],
            "DriverOpts":{"k":"v"},"NetworkID":"n"}}}}"#;
    let v = decode(body, &CONTAINER_CREATE).unwrap();
    // No key was unknown: every one is a known field (unknown ones would be upper-cased).
    fn no_unknown(v: &Value, path: &str) {
        if let Value::Object(m) = v {
            for (k, x) in m {
                let in_map = [
                    "Labels",
                    "Volumes",
                    "ExposedPorts",
                    "Options",
                    "Config",
                    "Sysctls",
                    "PortBindings",
                    "EndpointsConfig",
                    "DriverOpts",
                ]
                .iter()
                .any(|m| path.ends_with(m));
                assert!(
                    in_map || k.chars().any(|c| c.is_ascii_lowercase()) || k.len() <= 4,
                    "unknown key {path}.{k}"
                );
                no_unknown(x, &format!("{path}.{k}"));
            }
        } else if let Value::Array(a) = v {
            for x in a {
                no_unknown(x, path);
            }
        }
    }
    no_unknown(&v, "");
    assert_eq!(
        v["HostConfig"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]["Options"]["device"],
        json!("/etc")
    );
    assert_eq!(v["Entrypoint"], json!(["sh"]));
    assert_eq!(v["HostConfig"]["PidsLimit"], json!(-1));
}

/// Every struct's field names are ASCII (the lookup relies on it) and no
/// two fold alike (so Go's field order never matters).
#[test]
fn schemas_are_well_formed() {
    fn walk(s: &Schema, seen: &mut Vec<&'static str>) {
        match s {
            Schema::Struct(st) => {
                if seen.contains(&st.go_type) {
                    return;
                }
                seen.push(st.go_type);
                for (i, f) in st.fields.iter().enumerate() {
                    assert!(
                        f.name.is_ascii() && !f.name.is_empty(),
                        "{}: {}",
                        st.go_type,
                        f.name
                    );
                    for g in &st.fields[i + 1..] {
                        assert!(
                            !f.name.eq_ignore_ascii_case(g.name),
                            "{}: {} vs {}",
                            st.go_type,
                            f.name,
                            g.name
                        );
                    }
                    walk(&f.schema, seen);
                }
            }
            Schema::Ptr(i) | Schema::Slice(i) | Schema::Map(i) | Schema::Array(i, _) => {
                walk(i, seen)
            }
            _ => {}
        }
    }
    let mut seen = Vec::new();
    for s in schema::all_named() {
        walk(s, &mut seen);
    }
    assert!(seen.len() > 40, "walked only {} structs", seen.len());
}

/// Drop Go zero values (false, 0, "", null, "default" network mode) from
/// objects, so "omitted" and "zero" compare equal.
fn strip_zero(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, x)| {
                    !matches!(x, Value::Null | Value::Bool(false))
                        && x.as_str() != Some("")
                        && x.as_f64() != Some(0.0)
                        && !(k.as_str() == "NetworkMode" && x.as_str() == Some("default"))
                        && !(k.as_str() == "ConsoleSize" && **x == json!([0, 0]))
                })
                .map(|(k, x)| (k.clone(), strip_zero(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_zero).collect()),
        other => other.clone(),
    }
}

/// Bodies sent to a real daemon (see `daemon_cases.json`): our canonical
/// view must show what the daemon stored, or refuse, or (documented cases)
/// show more than the daemon uses.
#[test]
fn matches_recorded_daemon_behaviour() {
    let recorded: Value = serde_json::from_str(include_str!("../daemon_cases.json")).unwrap();
    let cases = recorded["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let body = case["body"].as_str().unwrap();
        let ours = decode(body.as_bytes(), &CONTAINER_CREATE);
        let daemon = &case["daemon"];
        match case["expect"].as_str().unwrap() {
            "match" => {
                let ours = ours.unwrap_or_else(|e| panic!("{body}: {e}"));
                let theirs = strip_zero(&daemon["HostConfig"]);
                let mine = strip_zero(ours.get("HostConfig").unwrap_or(&json!({})));
                for (k, v) in theirs.as_object().unwrap() {
                    assert_eq!(mine.get(k), Some(v), "{body}: HostConfig.{k}");
                }
                for (k, v) in mine.as_object().unwrap() {
                    if let Some(d) = daemon["HostConfig"].get(k) {
                        assert_eq!(&strip_zero(d), v, "{body}: HostConfig.{k}");
                    }
                }
                if let Some(labels) = ours.get("Labels") {
                    assert_eq!(labels, &daemon["Labels"], "{body}");
                }
                if let Some(cmd) = ours.get("Cmd") {
                    assert_eq!(cmd, &daemon["Cmd"], "{body}");
                }
            }
            "refused" | "we_refuse" => assert!(ours.is_err(), "{body} should be refused"),
            "daemon_validation_refused" => {
                assert!(daemon.get("refused").is_some());
                assert!(
                    ours.is_ok(),
                    "decoding is fine; the daemon's validation refused it"
                );
            }
            other => panic!("unknown expectation {other}"),
        }
    }
}

/// Print the canonical view of each line of the file named by
/// `GOJSON_BODIES` (for comparing with what a real daemon stored).
#[test]
#[ignore]
fn decode_file() {
    let path = std::env::var("GOJSON_BODIES").expect("set GOJSON_BODIES");
    let text = std::fs::read_to_string(path).unwrap();
    for (n, line) in text.lines().enumerate() {
        match decode(line.as_bytes(), &CONTAINER_CREATE) {
            Ok(v) => println!("CANON {n} {v}"),
            Err(e) => println!("CANON {n} ERROR {e}"),
        }
    }
}

/// A typical 2 KiB create body; prints the per-decode time. Run with
/// `cargo test --release --lib perf -- --ignored --nocapture` for the real figure.
#[test]
#[ignore]
fn perf_typical_create() {
    let body = typical_create_body();
    assert!(body.len() > 1500 && body.len() < 3000, "{}", body.len());
    let n = 2000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(decode(body.as_bytes(), &CONTAINER_CREATE).unwrap());
    }
    let per = start.elapsed() / n;
    println!("{} bytes: {per:?} per decode", body.len());
    let start = std::time::Instant::now();
    for _ in 0..n {
        let mut parser = Parser {
            s: body.as_bytes(),
            text: &body,
            pos: 0,
            depth: 0,
        };
        let mut root = Node::Nil;
        parser.value(&CONTAINER_CREATE, &mut root).unwrap();
        std::hint::black_box(root);
    }
    println!("parse only: {:?} per decode", start.elapsed() / n);
}

pub(crate) fn typical_create_body() -> String {
    let mut env = String::new();
    for i in 0..20 {
        env.push_str(&format!("\"VAR_{i}=value-{i}-abcdefgh\","));
    }
    env.pop();
    format!(
        r#"{{"Hostname":"","Domainname":"","User":"1000:1000","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,
"ExposedPorts":{{"8080/tcp":{{}}}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":[{env}],
"Cmd":["/bin/sh","-c","exec my-server --port 8080"],"Image":"registry.example.com/team/app:1.2.3","Volumes":{{"/data":{{}}}},
"WorkingDir":"/app","Entrypoint":null,"OnBuild":null,"Labels":{{"com.example.team":"platform","com.example.app":"app"}},
"HostConfig":{{"Binds":["/srv/app/data:/data:rw"],"ContainerIDFile":"","LogConfig":{{"Type":"json-file","Config":{{"max-size":"10m"}}}},
"NetworkMode":"bridge","PortBindings":{{"8080/tcp":[{{"HostIp":"127.0.0.1","HostPort":"18080"}}]}},
"RestartPolicy":{{"Name":"unless-stopped","MaximumRetryCount":0}},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,
"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":["NET_RAW"],"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],
"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,
"PublishAllPorts":false,"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"UTSMode":"","UsernsMode":"","ShmSize":0,
"Isolation":"","CpuShares":0,"Memory":536870912,"NanoCpus":1000000000,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],
"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],
"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,
"OomKillDisable":null,"PidsLimit":256,"Ulimits":[{{"Name":"nofile","Hard":65536,"Soft":65536}}],
"Mounts":[{{"Type":"tmpfs","Target":"/tmp","TmpfsOptions":{{"SizeBytes":67108864}}}}],"MaskedPaths":null,"ReadonlyPaths":null}},
"NetworkingConfig":{{"EndpointsConfig":{{"bridge":{{"Aliases":["app"]}}}}}}}}"#
    )
}
