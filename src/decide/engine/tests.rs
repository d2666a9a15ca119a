//! Unit tests of the engine: both evaluators agree, reloads and fallbacks.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::decide::Decision;

pub(crate) fn input(caller: &str, action: &str, target: &str) -> serde_json::Value {
    json!({
        "caller": {"name": caller, "admin": false, "identified": true, "via": {"source": "token", "token_id": "t"}},
        "action": action,
        "resource": {"kind": "container", "name": target},
        "target": {"reference": target, "id": "abc", "name": target, "labels": {}, "image": "busybox", "exists": true},
        "request": {"method": "POST", "path": "/", "query": {}, "version": null},
        "body": null,
        "file": null,
        "now": "2025-01-01T00:00:00Z",
    })
}

fn engines(specs: &[serde_json::Value]) -> Vec<PolicyEngine> {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let store = TrustStore::open(&db).unwrap();
    for spec in specs {
        store.create_json(spec).unwrap();
    }
    let rvm = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
    let interp = PolicyEngine::load_interpreted(PolicySource::Embedded(Template::Standard));
    rvm.attach_trust(store.clone()).unwrap();
    interp.attach_trust(store).unwrap();
    assert_eq!(rvm.evaluator(), Evaluator::Rvm);
    assert_eq!(interp.evaluator(), Evaluator::Interpreter);
    vec![rvm, interp]
}

/// Decide on both evaluators; they must agree.
fn decide(engines: &[PolicyEngine], input: serde_json::Value) -> Decision {
    let a = engines[0].decide_json(input.clone());
    let b = engines[1].decide_json(input);
    assert_eq!(a, b, "RVM and interpreter disagree");
    a
}

/// Decide on both evaluators where a built-in fails: both must refuse
/// for that reason (the wording of the error differs).
fn decide_failing(engines: &[PolicyEngine], input: serde_json::Value) -> Decision {
    let a = engines[0].decide_json(input.clone());
    let b = engines[1].decide_json(input);
    for d in [&a, &b] {
        assert!(
            !d.allowed && d.reasons[0].starts_with("policy evaluation failed"),
            "RVM {a:?}\ninterpreter {b:?}"
        );
    }
    a
}

fn rel(caller: &str, target: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"caller_service": caller, "target_container": target});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn seed_rights_on_both_evaluators() {
    let e = engines(&[rel("ci", "web-*", json!({"can_restart": true}))]);
    let d = decide(&e, input("ci", "container.restart", "web-1"));
    assert!(d.allowed, "{d:?}");
    assert!(d.trust_id.is_some());
    assert!(
        d.reasons[0].contains("allowed by trust relationship"),
        "{d:?}"
    );
    let d = decide(&e, input("ci", "container.exec", "web-1"));
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("needs can_exec"), "{d:?}");
    let d = decide(&e, input("ci", "container.logs", "web-1"));
    assert!(d.allowed, "default can_logs");
    let d = decide(&e, input("ci", "container.restart", "db"));
    assert!(!d.allowed);
    assert!(
        d.reasons[0].contains("no trust relationship for db"),
        "{d:?}"
    );
    let d = decide(&e, input("other", "container.inspect", "web-1"));
    assert!(!d.allowed);
}

#[test]
fn admin_and_unidentified() {
    let e = engines(&[]);
    let mut admin = input("root", "container.prune", "");
    admin["caller"]["admin"] = json!(true);
    assert!(decide(&e, admin).allowed);
    let mut anon = input("unidentified(x)", "system.ping", "");
    anon["caller"]["identified"] = json!(false);
    let d = decide(&e, anon);
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("not identified"));
    let d = decide(&e, input("ci", "no.such.action", "x"));
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("not known"), "{d:?}");
}

#[test]
fn files_and_hardening() {
    let e = engines(&[rel(
        "ci",
        "web-1",
        json!({"file_write_paths": ["/app/config/*"], "can_create": true, "allowed_images": ["busybox:*"]}),
    )]);
    let mut w = input("ci", "file.write", "web-1");
    w["file"] = json!({"path": "/app/config/a", "resolved_path": "/app/config/a", "mount": null});
    assert!(decide(&e, w.clone()).allowed);
    w["file"]["resolved_path"] = json!("/etc/passwd");
    assert!(!decide(&e, w.clone()).allowed);
    w["file"] = json!({"path": "/app/config/a", "resolved_path": "/app/config/a",
        "mount": {"type": "bind", "source": "/srv/x", "destination": "/app/config", "rw": true}});
    let d = decide(&e, w);
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("bind mount /srv/x"), "{d:?}");

    let mut c = input("ci", "container.create", "web-1");
    c["body"] = json!({"Image": "busybox", "HostConfig": {"Privileged": true}});
    let d = decide(&e, c.clone());
    assert!(!d.allowed);
    assert_eq!(
        d.reasons,
        vec!["privileged containers are not allowed for caller ci (no trust relationship opts in)"]
    );
    c["body"] = json!({"Image": "alpine"});
    assert!(!decide(&e, c.clone()).allowed);
    c["body"] = json!({"Image": "busybox:1"});
    assert!(decide(&e, c).allowed);
}

#[test]
fn expired_relationships_grant_nothing() {
    let e = engines(&[rel(
        "ci",
        "web",
        json!({"expires_at": "2024-06-01T00:00:00Z"}),
    )]);
    let mut i = input("ci", "container.inspect", "web");
    i["now"] = json!("2024-05-01T00:00:00Z");
    assert!(decide(&e, i.clone()).allowed);
    i["now"] = json!("2024-07-01T00:00:00Z");
    assert!(!decide(&e, i).allowed);
}

const ALLOW_ALL: &str = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"custom\"], \"trust_id\": null}\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn interpreter_fallback_for_with_and_print() {
    let with_policy = "package portcullis\nimport rego.v1\nflag := input.flag\ndecision := {\"allowed\": x, \"reasons\": [\"w\"], \"trust_id\": null} if {\n  x := flag with input.flag as true\n}\n";
    let print_policy = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"p\"], \"trust_id\": null} if {\n  print(\"hello\")\n}\n";
    for (policy, reason) in [(with_policy, "w"), (print_policy, "p")] {
        let dir = dir_with(&[("p.rego", policy)]);
        let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        assert_eq!(engine.last_error(), None);
        assert_eq!(engine.evaluator(), Evaluator::Interpreter);
        assert!(engine.status().rvm_rejection.is_some());
        let d = engine.decide_json(input("ci", "container.inspect", "x"));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.reasons, vec![reason]);
    }
}

#[test]
fn broken_policy_keeps_the_previous_one() {
    let dir = dir_with(&[("p.rego", ALLOW_ALL)]);
    let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
    let before = engine.version();
    assert!(
        engine
            .decide_json(input("ci", "container.inspect", "x"))
            .allowed
    );
    std::fs::write(
        dir.path().join("p.rego"),
        "package portcullis\ndecision := {\n",
    )
    .unwrap();
    let errors = engine.reload_policies().unwrap_err();
    assert!(errors[0].file.ends_with("p.rego"));
    assert!(engine.last_error().is_some());
    assert!(engine.status().last_error.is_some());
    assert_eq!(engine.version(), before);
    assert!(
        engine
            .decide_json(input("ci", "container.inspect", "x"))
            .allowed
    );
    // A fixed policy replaces it and clears the error.
    std::fs::write(
        dir.path().join("p.rego"),
        ALLOW_ALL.replace("true", "false"),
    )
    .unwrap();
    engine.reload_policies().unwrap();
    assert_eq!(engine.last_error(), None);
    assert_ne!(engine.version(), before);
    assert!(
        !engine
            .decide_json(input("ci", "container.inspect", "x"))
            .allowed
    );
}

#[test]
fn no_loadable_policy_denies_everything() {
    let empty = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::load(PolicySource::Dir(empty.path().into()));
    assert!(engine.last_error().is_some());
    assert_eq!(engine.evaluator(), Evaluator::None);
    let mut admin = input("root", "system.ping", "");
    admin["caller"]["admin"] = json!(true);
    let d = engine.decide_json(admin);
    assert!(!d.allowed);
    assert!(d.reasons[0].contains("no policy is loaded"), "{d:?}");
    // Only test files: still nothing to serve.
    let tests_only = dir_with(&[("a_test.rego", ALLOW_ALL)]);
    let engine = PolicyEngine::load(PolicySource::Dir(tests_only.path().into()));
    assert!(!engine.decide_json(input("ci", "system.ping", "")).allowed);
    // A policy without the entry point refuses too.
    let other = dir_with(&[("p.rego", "package other\nx := 1\n")]);
    let engine = PolicyEngine::load(PolicySource::Dir(other.path().into()));
    assert!(!engine.decide_json(input("ci", "system.ping", "")).allowed);
}

#[test]
fn evaluation_errors_fail_closed() {
    let policy = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": true, \"reasons\": [\"x\"], \"trust_id\": null} if {\n  x := 1 / input.zero\n  x > 0\n}\n";
    let malformed = "package portcullis\nimport rego.v1\ndecision := {\"allowed\": \"yes\"}\n";
    for text in [policy, malformed] {
        let dir = dir_with(&[("p.rego", text)]);
        let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        let mut i = input("ci", "system.ping", "");
        i["zero"] = json!(0);
        let d = engine.decide_json(i);
        assert!(!d.allowed, "{d:?}");
    }
    let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
    let mut bad_time = input("ci", "system.ping", "");
    bad_time["now"] = json!("yesterday");
    assert!(!engine.decide_json(bad_time).allowed);
}

#[test]
fn trust_reload_changes_decisions_and_version() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let store = TrustStore::open(&db).unwrap();
    let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
    engine.attach_trust(store.clone()).unwrap();
    assert!(
        !engine
            .decide_json(input("ci", "container.start", "web"))
            .allowed
    );
    let v0 = engine.version();
    let r = store
        .create_json(&json!({"caller_service": "ci", "target_container": "web", "can_start": true}))
        .unwrap();
    engine.reload_trust().unwrap();
    assert!(
        engine
            .decide_json(input("ci", "container.start", "web"))
            .allowed
    );
    assert_ne!(engine.version(), v0);
    assert!(engine.version().ends_with("-t1"));
    store.patch(&r.id, &json!({"can_start": false})).unwrap();
    engine.reload_trust().unwrap();
    assert!(
        !engine
            .decide_json(input("ci", "container.start", "web"))
            .allowed
    );
}

#[test]
fn watch_reloads_within_a_second() {
    let dir = dir_with(&[("p.rego", ALLOW_ALL)]);
    let engine = Arc::new(PolicyEngine::load(PolicySource::Dir(dir.path().into())));
    let _watcher = engine.watch(dir.path().into()).unwrap();
    let before = engine.version();
    std::fs::write(
        dir.path().join("p.rego"),
        ALLOW_ALL.replace("true", "false"),
    )
    .unwrap();
    let start = std::time::Instant::now();
    while engine.version() == before && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "reload took {:?}",
        start.elapsed()
    );
    assert!(
        !engine
            .decide_json(input("ci", "container.inspect", "x"))
            .allowed
    );
}

#[test]
fn decisions_continue_during_reloads() {
    let engine = Arc::new(PolicyEngine::load(PolicySource::Embedded(
        Template::Standard,
    )));
    engine
        .set_trust(TrustSnapshot {
            revision: 1,
            relationships: vec![crate::trust::TrustRelationship {
                id: "r".into(),
                spec: crate::trust::TrustSpec::from_json(
                    &json!({"caller_service": "ci", "target_container": "*"}),
                )
                .unwrap(),
                created_at: "2024-01-01T00:00:00Z".into(),
                updated_at: "2024-01-01T00:00:00Z".into(),
            }],
        })
        .unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                (0..100).all(|_| {
                    engine
                        .decide_json(input("ci", "container.inspect", "x"))
                        .allowed
                })
            })
        })
        .collect();
    for _ in 0..5 {
        engine.reload_policies().unwrap();
    }
    for w in workers {
        assert!(w.join().unwrap());
    }
}

#[test]
fn templates_load_on_the_rvm() {
    for t in [Template::Strict, Template::Standard, Template::Permissive] {
        let engine = PolicyEngine::load(PolicySource::Embedded(t));
        assert_eq!(
            engine.evaluator(),
            Evaluator::Rvm,
            "{t}: {:?}",
            engine.status().rvm_rejection
        );
    }
    let strict = PolicyEngine::load(PolicySource::Embedded(Template::Strict));
    let permissive = PolicyEngine::load(PolicySource::Embedded(Template::Permissive));
    let mut image_list = input("ci", "image.list", "");
    image_list["resource"] = json!({"kind": "image", "name": null});
    assert!(permissive.decide_json(image_list.clone()).allowed);
    assert!(!strict.decide_json(image_list).allowed);
}

/// The hardening rules run on the RVM in production but are unit-tested in
/// Rego on the interpreter: check both agree on every rule.
#[test]
fn hardening_agrees_on_both_evaluators() {
    let e = engines(&[
        rel(
            "ci",
            "web-*",
            json!({"can_create": true, "allowed_images": ["busybox*"], "can_exec": true,
            "allow_bind_mounts": ["/srv/**"], "file_write_paths": ["/srv/**"], "resources": {"networks": {"write": true}, "plugins": {"write": true},
            "swarm": {"write": true}, "volumes": {"write": true}}}),
        ),
        rel("ci", "db", json!({"can_inspect": false})),
        rel(
            "ops",
            "*",
            json!({"can_create": true, "allowed_images": ["*"], "allow_privileged": true,
            "allow_host_namespaces": true, "allow_cap_add": ["ALL"], "allow_unconfined": true, "allow_devices": true,
            "allow_bind_mounts": ["/var/run/docker.sock", "/**"], "allow_sysctls": true, "allow_privileged_exec": true,
            "allow_plugins": true, "can_exec": true, "resources": {"networks": {"write": true}, "plugins": {"write": true}}}),
        ),
    ]);
    let hcs = [
        (json!({}), true),
        (json!({"Privileged": true}), false),
        (json!({"NetworkMode": "host"}), false),
        (json!({"PidMode": "host"}), false),
        (json!({"IpcMode": "host"}), false),
        (json!({"UTSMode": "host"}), false),
        (json!({"UsernsMode": "host"}), false),
        (json!({"CgroupnsMode": "host"}), false),
        (json!({"NetworkMode": "container:db"}), false),
        (json!({"NetworkMode": "container:web-2"}), true),
        (json!({"VolumesFrom": ["db:ro"]}), false),
        (json!({"CapAdd": ["SYS_ADMIN"]}), false),
        (json!({"CapAdd": ["CHOWN", "cap_kill"]}), true),
        (json!({"CapAdd": ["ALL"]}), false),
        (json!({"SecurityOpt": ["seccomp:unconfined"]}), false),
        (json!({"SecurityOpt": ["label=disable"]}), false),
        (json!({"SecurityOpt": ["no-new-privileges"]}), true),
        (json!({"MaskedPaths": []}), false),
        (json!({"ReadonlyPaths": []}), false),
        (json!({"SecurityOpt": ["seccomp=/tmp/profile.json"]}), false),
        (json!({"CapAdd": ["sys_admin"]}), false),
        (json!({"Devices": [{"PathOnHost": "/dev/kmsg"}]}), false),
        (json!({"DeviceRequests": [{"Count": -1}]}), false),
        (json!({"DeviceCgroupRules": ["a *:* rwm"]}), false),
        (json!({"Binds": ["/srv/app:/app"]}), true),
        (json!({"Binds": ["/etc:/etc"]}), false),
        (
            json!({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
            false,
        ),
        // `/` holds the socket: even `/**` does not grant it (checked below).
        (json!({"Mounts": [{"Type": "bind", "Source": "/"}]}), false),
        (
            json!({"Mounts": [{"Type": "volume", "Source": "v", "VolumeOptions": {"DriverConfig": {"Options": {"o": "bind", "device": "/root"}}}}]}),
            false,
        ),
        (json!({"Sysctls": {"kernel.msgmax": "1"}}), false),
    ];
    for (hc, expected) in hcs {
        for caller in ["ci", "ops"] {
            let mut i = input(caller, "container.create", "web-1");
            i["body"] = json!({"Image": "busybox", "HostConfig": hc});
            // As the resolve stage finds the referenced containers.
            i["target"]["referenced"] = json!([
                {"reference": "db", "id": "d0", "name": "db", "exists": true, "labels": {}},
                {"reference": "web-2", "id": "w2", "name": "web-2", "exists": true, "labels": {}},
            ]);
            let d = decide(&e, i);
            let root_bind = hc.to_string().contains(r#""Source":"/""#);
            let want = expected || (caller == "ops" && !root_bind);
            assert_eq!(d.allowed, want, "{caller} {hc}: {d:?}");
            if !d.allowed {
                let who = format!("caller {caller}");
                assert!(d.reasons.iter().all(|r| r.contains(&who)), "{d:?}");
            }
        }
    }
    let mut endpoint = input("ci", "container.create", "web-1");
    endpoint["body"] = json!({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"n": {"DriverOpts": {"com.docker.network.endpoint.sysctls": "x=1"}}}}});
    assert!(!decide(&e, endpoint).allowed);
    let mut exec = input("ci", "container.exec", "web-1");
    exec["body"] = json!({"Cmd": ["id"], "Privileged": true});
    assert!(!decide(&e, exec.clone()).allowed);
    exec["caller"]["name"] = json!("ops");
    assert!(decide(&e, exec).allowed);
    for action in ["plugin.install", "plugin.set", "plugin.upgrade"] {
        assert!(!decide(&e, input("ci", action, "p")).allowed);
        assert!(decide(&e, input("ops", action, "p")).allowed);
    }
    let mut connect = input("ci", "network.connect", "n");
    connect["body"] = json!({"Container": "web-1", "EndpointConfig": {"DriverOpts": {"com.docker.network.endpoint.sysctls": "x=1"}}});
    assert!(!decide(&e, connect).allowed);
    let mut service = input("ci", "service.create", "s");
    service["body"] = json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Mounts": [{"Type": "bind", "Source": "/etc"}]}}});
    assert!(!decide(&e, service).allowed);
    // The service hardening rules, one at a time, on both evaluators.
    for (spec, why) in [
        (
            json!({"CapabilityAdd": ["CAP_SYS_ADMIN"]}),
            "capability SYS_ADMIN",
        ),
        (
            json!({"Privileges": {"Seccomp": {"Mode": "unconfined"}}}),
            "seccomp",
        ),
        (
            json!({"Privileges": {"AppArmor": {"Mode": "disabled"}}}),
            "AppArmor",
        ),
        (json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}), "sysctls"),
    ] {
        let mut service = input("ci", "service.create", "s");
        let mut container_spec = json!({"Image": "busybox"});
        for (k, v) in spec.as_object().unwrap() {
            container_spec[k] = v.clone();
        }
        service["body"] = json!({"TaskTemplate": {"ContainerSpec": container_spec}});
        let d = decide(&e, service.clone());
        assert!(!d.allowed && d.reasons[0].contains(why), "{spec}: {d:?}");
        service["caller"]["name"] = json!("ops");
        assert!(!decide(&e, service).allowed, "ops has no swarm rights");
    }
    let mut service = input("ci", "service.create", "s");
    service["body"] = json!({"TaskTemplate": {"ContainerSpec": {"Image": "busybox",
        "CapabilityAdd": ["CHOWN"]}}});
    assert!(decide(&e, service).allowed);
    // A write inside a bind mount of the host needs allow_bind_writes.
    let mut write = input("ci", "file.write", "web-1");
    write["file"] = json!({"path": "/srv/a", "resolved_path": "/srv/a",
        "mount": {"type": "bind", "source": "/srv", "destination": "/srv", "rw": true}});
    let d = decide(&e, write.clone());
    assert!(
        !d.allowed && d.reasons[0].contains("inside bind mount /srv"),
        "{d:?}"
    );
    write["file"]["mount"]["type"] = json!("volume");
    assert!(decide(&e, write).allowed);
    let mut volume = input("ci", "volume.create", "v");
    volume["body"] = json!({"DriverOpts": {"device": "/srv/x", "o": "bind"}});
    assert!(decide(&e, volume.clone()).allowed);
    volume["body"] = json!({"DriverOpts": {"device": "/etc", "o": "bind"}});
    assert!(!decide(&e, volume).allowed);
}

/// A built-in that fails (a timestamp past 2262, `count(null)`) is an
/// error on both evaluators, so a deny rule cannot turn into an allow on
/// the RVM while the interpreter refuses.
#[test]
fn builtin_errors_deny_on_both_evaluators() {
    // The shipped policy: an expiry that `time.parse_rfc3339_ns` cannot
    // represent must not leave the relationship live on the RVM.
    let e = engines(&[rel(
        "ci",
        "web",
        json!({"expires_at": "2300-01-01T00:00:00Z"}),
    )]);
    let d = decide_failing(&e, input("ci", "container.inspect", "web"));
    assert!(d.reasons[0].contains("time.parse_rfc3339_ns"), "{d:?}");

    // A custom deny rule over a built-in that fails on a null list.
    let policy = "package portcullis\nimport rego.v1\n\nrefused if count(input.body.list) > 0\n\nrefused if time.parse_rfc3339_ns(input.body.until) < input.now_ns\n\ndecision := {\"allowed\": false, \"reasons\": [\"refused\"], \"trust_id\": null} if refused\n\nelse := {\"allowed\": true, \"reasons\": [\"ok\"], \"trust_id\": null}\n";
    let dir = dir_with(&[("p.rego", policy)]);
    let rvm = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
    let interp = PolicyEngine::load_interpreted(PolicySource::Dir(dir.path().into()));
    assert_eq!(rvm.evaluator(), Evaluator::Rvm, "{:?}", rvm.status());
    let e = [rvm, interp];
    let mut i = input("ci", "container.inspect", "web");
    i["body"] = json!({"list": [], "until": "2030-01-01T00:00:00Z"});
    assert!(decide(&e, i.clone()).allowed);
    i["body"]["list"] = json!(["x"]);
    assert!(!decide(&e, i.clone()).allowed);
    for body in [
        json!({"list": null, "until": "2030-01-01T00:00:00Z"}),
        json!({"list": [], "until": "2300-01-01T00:00:00Z"}),
        json!({"list": [], "until": 5}),
    ] {
        i["body"] = body.clone();
        decide_failing(&e, i.clone());
    }

    // The RVM leaves `x / 0` undefined (not an error it could report): a
    // policy dividing by what may be zero runs on the interpreter.
    let division = "package portcullis\nimport rego.v1\n\nrefused if 100 / input.body.n > 1\n\ndecision := {\"allowed\": false, \"reasons\": [\"refused\"], \"trust_id\": null} if refused\n\nelse := {\"allowed\": true, \"reasons\": [\"ok\"], \"trust_id\": null}\n";
    let dir = dir_with(&[("p.rego", division)]);
    let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
    assert_eq!(engine.evaluator(), Evaluator::Interpreter);
    let why = engine.status().rvm_rejection.unwrap();
    assert!(why.contains("p.rego:4:") && why.contains("`/`"), "{why}");
    i["body"] = json!({"n": 1000});
    assert!(engine.decide_json(i.clone()).allowed);
    i["body"] = json!({"n": 0});
    let d = engine.decide_json(i);
    assert!(
        !d.allowed && d.reasons[0].contains("divide by zero"),
        "{d:?}"
    );
}

/// `request_dangers` is documented for any action: a rule refusing pulls
/// from outside a registry must refuse them, on both evaluators.
#[test]
fn request_dangers_apply_to_every_action() {
    let registry_rule = "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": input.image, \"msg\": sprintf(\"pulling %s from outside registry.local is not allowed\", [input.image]), \"why\": \"site rule\"} if {\n\tinput.action == \"image.pull\"\n\tnot startswith(input.image, \"registry.local/\")\n}\n";
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in Template::Standard.files() {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("registry.rego"), registry_rule).unwrap();
    let snapshot = TrustSnapshot {
        revision: 1,
        relationships: vec![crate::trust::TrustRelationship {
            id: "r".into(),
            spec: crate::trust::TrustSpec::from_json(&json!({
                "caller_service": "ci", "target_container": "*",
                "can_pull": true, "allowed_images": ["*"]}))
            .unwrap(),
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-01T00:00:00Z".into(),
        }],
    };
    let e = [
        PolicyEngine::load(PolicySource::Dir(dir.path().into())),
        PolicyEngine::load_interpreted(PolicySource::Dir(dir.path().into())),
    ];
    assert_eq!(e[0].evaluator(), Evaluator::Rvm, "{:?}", e[0].status());
    for engine in &e {
        engine.set_trust(snapshot.clone()).unwrap();
    }
    let pull = |image: &str| {
        let mut i = input("ci", "image.pull", image);
        i["resource"] = json!({"kind": "image", "name": image});
        i["target"] = json!({"reference": image, "exists": false, "labels": {}});
        i
    };
    assert!(decide(&e, pull("registry.local/app:1")).allowed);
    let d = decide(&e, pull("docker.io/library/busybox:latest"));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(
        d.reasons,
        vec!["pulling docker.io/library/busybox:latest from outside registry.local is not allowed for caller ci (site rule)"]
    );
}

/// What `policy check` rejects statically, startup refuses to serve and a
/// hot reload refuses to swap in: the previous policy stays in force.
#[test]
fn static_errors_block_startup_and_reload() {
    use crate::decide::tools::tests::{standard_with, REJECTED};
    let dir = standard_with(&[]);
    let engine = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
    engine
        .set_trust(TrustSnapshot {
            revision: 1,
            relationships: vec![crate::trust::TrustRelationship {
                id: "r".into(),
                spec: crate::trust::TrustSpec::from_json(
                    &json!({"caller_service": "ci", "target_container": "web"}),
                )
                .unwrap(),
                created_at: "2024-01-01T00:00:00Z".into(),
                updated_at: "2024-01-01T00:00:00Z".into(),
            }],
        })
        .unwrap();
    let before = engine.version();
    let inspect = || input("ci", "container.inspect", "web");
    assert!(engine.decide_json(inspect()).allowed);
    for (text, file, line, column, message) in REJECTED {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let errors = engine.reload_policies().expect_err(message);
        let where_ = format!("{file}:{line}:{column}: ");
        assert!(
            errors.iter().any(|e| e.to_string().contains(&where_)),
            "{where_}: {errors:?}"
        );
        assert_eq!(engine.version(), before, "{message}");
        assert_eq!(engine.evaluator(), Evaluator::Rvm);
        assert!(engine.decide_json(inspect()).allowed, "{message}");
        assert!(engine.status().last_error.unwrap().contains(message));
        // At startup there is no previous policy: nothing is served.
        let fresh = PolicyEngine::load(PolicySource::Dir(dir.path().into()));
        assert_eq!(fresh.evaluator(), Evaluator::None, "{message}");
        assert!(!fresh.decide_json(inspect()).allowed);
        std::fs::remove_file(&path).unwrap();
    }
    engine.reload_policies().unwrap();
    assert_eq!(engine.last_error(), None);
}

#[test]
fn default_policy_runs_on_the_rvm() {
    let engine = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
    assert_eq!(engine.last_error(), None);
    let status = engine.status();
    assert_eq!(
        status.evaluator,
        Evaluator::Rvm,
        "{:?}",
        status.rvm_rejection
    );
}

// --- the decision memo ------------------------------------------------------

#[test]
fn the_shipped_policies_are_memoizable_and_time_readers_are_not() {
    for template in [Template::Standard, Template::Strict, Template::Permissive] {
        let e = PolicyEngine::load(PolicySource::Embedded(template));
        assert_eq!(e.status().memo, "on", "{template:?}");
    }
    let base = include_str!("../../../policies/portcullis.rego");
    for (rule, why) in [
        ("late if time.now_ns() > 0", "calls time.now_ns"),
        ("late if input.now_ns > 5", "reads the time"),
        ("whole := input", "reads the whole input"),
        ("late if { k := \"now\"; input[k] }", "computed key"),
    ] {
        let dir = dir_with(&[
            ("portcullis.rego", base),
            (
                "actions.rego",
                include_str!("../../../policies/actions.rego"),
            ),
            (
                "hardening.rego",
                include_str!("../../../policies/hardening.rego"),
            ),
            (
                "settings.rego",
                include_str!("../../../policies/settings.rego"),
            ),
            (
                "extra.rego",
                &format!("package portcullis\nimport rego.v1\n{rule}\n"),
            ),
        ]);
        let e = PolicyEngine::load(PolicySource::Dir(dir.path().to_path_buf()));
        assert!(e.last_error().is_none(), "{rule}: {:?}", e.last_error());
        let memo = e.status().memo;
        assert!(
            memo.starts_with("off: ") && memo.contains(why),
            "{rule}: {memo}"
        );
    }
}

/// A typed input, as the pipeline builds it, at `now`.
fn typed(
    caller: &str,
    action: Action,
    target: &str,
    body: serde_json::Value,
    now: &str,
) -> PolicyInput {
    use crate::classify::{Resource, ResourceKind};
    use crate::identify::{Caller, Identification};
    let caller = Caller {
        name: caller.into(),
        admin: false,
        identified: true,
        via: Identification::Token {
            token_id: "t".into(),
        },
    };
    let kind = if action.family() == "container" || action.is_file() {
        ResourceKind::Container
    } else {
        ResourceKind::System
    };
    let mut t = crate::resolve::Target::none(kind, Some(target));
    t.id = Some(format!("id-{target}"));
    t.name = Some(target.into());
    t.exists = true;
    t.labels
        .insert("tier".into(), target.split('-').next().unwrap_or("").into());
    let file = action.is_file().then(|| crate::decide::FileContext {
        path: "/app/config/a.md".into(),
        resolved_path: "/app/config/a.md".into(),
        mount: None,
        entries: Vec::new(),
    });
    let request = crate::decide::RequestInfo {
        method: "POST".into(),
        path: "/".into(),
        query: Default::default(),
        version: None,
    };
    let resource = Resource {
        kind,
        name: Some(target.into()),
    };
    let mut input = PolicyInput::new(&caller, action, resource, &t, request, body, file);
    input.now = now.into();
    input
}

use crate::classify::Action;
use crate::decide::{Decide, PolicyInput};

/// The memo gives exactly the engine's decisions: a generated corpus of
/// inputs, each decided at times on both sides of relationship expiries, in
/// a shuffled order (so that repeats hit the memo), by an engine with the
/// memo and one without.
#[test]
fn the_memo_decides_exactly_as_the_engine_over_a_generated_corpus() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let specs = [
        rel(
            "ci",
            "web-*",
            json!({"can_restart": true, "can_exec": true, "expires_at": "2025-01-01T00:00:10Z"}),
        ),
        rel(
            "ci",
            "web-1",
            json!({"can_stop": true, "file_read_paths": ["/app/**"], "expires_at": "2025-01-01T00:00:20Z"}),
        ),
        rel(
            "ci",
            "label:tier=db",
            json!({"can_logs": true, "can_create": true, "allowed_images": ["busybox*"]}),
        ),
        rel(
            "dash",
            "*",
            json!({"can_inspect": true, "resources": {"system": {"read": true}}}),
        ),
    ];
    // One store, so that both see the same relationship ids.
    let pair = engines(&specs);
    let (with_memo, without) = (
        &pair[0],
        PolicyEngine::load(PolicySource::Embedded(Template::Standard)),
    );
    without.set_trust(trust_snapshot(with_memo)).unwrap();
    without.set_memo(false);
    assert_eq!(with_memo.status().memo, "on");
    let actions = Action::ALL.to_vec();
    let times = [
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:00:09.999999999Z",
        "2025-01-01T00:00:10Z",
        "2025-01-01T00:00:15Z",
        "2025-01-01T00:00:20Z",
        "2025-01-01T00:01:00Z",
    ];
    let bodies = [
        json!(null),
        json!({"Image": "busybox"}),
        json!({"Image": "alpine"}),
        json!({"Image": "busybox", "HostConfig": {"Privileged": true}}),
        json!({"image": "busybox", "tag": "2"}),
    ];
    let case = (
        prop::sample::select(vec!["ci", "dash", "nobody"]),
        prop::sample::select(actions),
        prop::sample::select(vec!["web-1", "web-2", "db-1", "other"]),
        0..bodies.len(),
    );
    let corpus = prop::collection::vec((case, prop::collection::vec(0..times.len(), 1..6)), 1..40);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let hits = std::cell::Cell::new(0usize);
    runner
        .run(&corpus, |cases| {
            for ((caller, action, target, body), at) in cases {
                for t in at {
                    let input = typed(caller, action, target, bodies[body].clone(), times[t]);
                    let memo_said = with_memo.decide(&input);
                    let engine_said = without.decide(&input);
                    prop_assert_eq!(
                        &memo_said,
                        &engine_said,
                        "{} {} on {} at {}",
                        caller,
                        action,
                        target,
                        times[t]
                    );
                    hits.set(hits.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(hits.get() > 100, "only {} decisions compared", hits.get());
}

#[test]
fn a_memo_entry_ends_at_the_next_expiry_and_with_a_trust_change() {
    let e = engines(&[rel(
        "ci",
        "web-1",
        json!({"can_restart": true, "expires_at": "2025-01-01T00:00:10Z"}),
    )])
    .remove(0);
    let at = |now: &str| typed("ci", Action::CONTAINER_RESTART, "web-1", json!(null), now);
    assert!(e.decide(&at("2025-01-01T00:00:00Z")).allowed);
    assert!(
        e.decide(&at("2025-01-01T00:00:09Z")).allowed,
        "a repeat before the expiry"
    );
    let d = e.decide(&at("2025-01-01T00:00:10Z"));
    assert!(!d.allowed, "the memo outlived the expiry: {d:?}");
    // A trust change starts a new memo.
    let e = engines(&[rel("ci", "web-1", json!({"can_restart": true}))]).remove(0);
    assert!(e.decide(&at("2025-01-01T00:00:00Z")).allowed);
    e.set_trust(crate::trust::TrustSnapshot {
        revision: 99,
        relationships: Vec::new(),
    })
    .unwrap();
    assert!(
        !e.decide(&at("2025-01-01T00:00:00Z")).allowed,
        "a decision outlived its trust"
    );
    // A clock that steps back does not bring back a decision made later.
    let e = engines(&[rel(
        "ci",
        "web-1",
        json!({"can_restart": true, "expires_at": "2025-01-01T00:00:10Z"}),
    )])
    .remove(0);
    assert!(!e.decide(&at("2025-01-01T00:00:11Z")).allowed);
    assert!(
        e.decide(&at("2025-01-01T00:00:05Z")).allowed,
        "a denial made after the expiry held before it"
    );
}

/// The trust an engine decides with, as a snapshot another engine can take.
fn trust_snapshot(e: &PolicyEngine) -> crate::trust::TrustSnapshot {
    let store = e.store.read().unwrap().clone().expect("a trust store");
    store.snapshot().unwrap()
}
