//! Unit tests of the facts: each fact, and the JSON and typed routes agree.

use super::document::enrich;
use super::*;
use crate::trust::{TrustRelationship, TrustSpec};
use serde_json::json;

fn trust(specs: &[Value]) -> CompiledTrust {
    let rels = specs
        .iter()
        .enumerate()
        .map(|(i, s)| TrustRelationship {
            id: format!("r{i}"),
            spec: TrustSpec::from_json(s).unwrap(),
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-01T00:00:00Z".into(),
        })
        .collect();
    CompiledTrust::build(1, rels).unwrap()
}

#[test]
fn matches_are_filtered_by_target_and_expiry_and_ordered() {
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "*"}),
        json!({"caller_service": "ci", "target_container": "web-1", "file_read_paths": ["/app/*"]}),
        json!({"caller_service": "ci", "target_container": "db"}),
        json!({"caller_service": "ci", "target_container": "web-*", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"caller_service": "other", "target_container": "*"}),
    ]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "file.read",
        "target": {"name": "web-1", "labels": {}},
        "file": {"path": "/app/x", "resolved_path": "/app/x"}, "body": null});
    enrich(
        &mut input,
        &t,
        time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
    );
    let ids: Vec<&str> = input["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["trust_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["r1", "r0"]);
    assert_eq!(input["matches"][0]["path_readable"], true);
    assert_eq!(input["matches"][0]["target_match"], "exact");
    assert_eq!(input["matches"][1]["path_readable"], false);
}

#[test]
fn symlinks_and_entries_must_match_too() {
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "w", "file_write_paths": ["/app/**"]}),
    ]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "file.write", "target": {"name": "w"},
        "file": {"path": "/app/link", "resolved_path": "/etc/shadow"}});
    enrich(&mut input, &t, 0);
    assert_eq!(input["matches"][0]["path_writable"], false);
    let mut input = json!({"caller": {"name": "ci"}, "action": "file.write", "target": {"name": "w"},
        "file": {"path": "/app", "resolved_path": "/app", "entries": ["/app/a", "/etc/cron.d/x"]}});
    enrich(&mut input, &t, 0);
    assert_eq!(input["matches"][0]["path_writable"], false);
}

#[test]
fn body_facts() {
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
        "allowed_images": ["busybox:*"], "allow_bind_mounts": ["/srv/**"]}),
    ]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
        "resource": {"kind": "container", "name": "web-9"}, "target": {"labels": {}},
        "body": {"Image": "busybox", "HostConfig": {
            "Binds": ["/srv/data/../data:/d", "named:/n", "/var/run/docker.sock:/s"],
            "Mounts": [{"Type": "bind", "Source": "/etc"}],
            "NetworkMode": "container:db", "VolumesFrom": ["web-2:ro"]}}});
    enrich(&mut input, &t, 0);
    assert_eq!(input["image"], "busybox");
    assert_eq!(
        input["host_paths"],
        json!(["/etc", "/srv/data", "/var/run/docker.sock"])
    );
    let m = &input["matches"][0];
    assert_eq!(m["image_allowed"], true);
    assert_eq!(
        m["host_paths_allowed"],
        json!({"/etc": false, "/srv/data": true, "/var/run/docker.sock": false})
    );
    // Unresolved references (no `target.referenced`) are never inspectable.
    assert_eq!(input["refs"], json!({"db": false, "web-2": false}));
    input["target"]["referenced"] = json!([
        {"reference": "db", "name": "db", "exists": true, "labels": {}},
        {"reference": "web-2", "name": "web-2", "exists": true, "labels": {}},
    ]);
    enrich(&mut input, &t, 0);
    assert_eq!(input["refs"], json!({"db": false, "web-2": true}));
}

/// A link borrows the linked container's environment: it is a reference
/// to that container, named without its alias and leading `/`.
#[test]
fn links_reference_the_linked_container() {
    let body = json!({"Image": "busybox", "HostConfig": {
        "Links": ["db:database", "/cache:c", "plain"]}});
    assert_eq!(
        referenced_containers(Action::CONTAINER_CREATE, &body),
        ["cache", "db", "plain"]
    );
}

/// A reference is judged by the container it resolves to: an id prefix
/// that a name pattern happens to match grants nothing, and a label
/// selector can grant a reference by the container's labels.
#[test]
fn references_are_judged_by_the_resolved_container() {
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "[0-9a-f]*"}),
        json!({"caller_service": "ci", "target_container": "label:team=ci"}),
    ]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
        "target": {"labels": {}, "referenced": [
            {"reference": "3f2a", "id": "3f2a77", "name": "zz-victim", "exists": true, "labels": {}},
            {"reference": "c0ffee", "id": "c0ffee11", "name": "c0ffee", "exists": true, "labels": {}},
            {"reference": "tools", "name": "tools", "exists": true, "labels": {"team": "ci"}},
            {"reference": "abc", "exists": false, "labels": {}},
        ]},
        "body": {"HostConfig": {"NetworkMode": "container:3f2a",
            "VolumesFrom": ["c0ffee", "/tools:ro", "abc"]}}});
    enrich(&mut input, &t, 0);
    assert_eq!(
        input["refs"],
        json!({"3f2a": false, "c0ffee": true, "tools": true, "abc": false})
    );
}

#[test]
fn every_template_variant_is_the_relationship_with_its_facts() {
    let t = trust(&[json!({"caller_service": "ci", "target_container": "web-*"})]);
    let rel = &t.for_caller("ci")[0];
    for by_caller in [false, true] {
        for bits in 0..8u8 {
            let flags = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
            let mut expected = rel.json.clone();
            expected["trust_id"] = json!(rel.id());
            expected["target_match"] = json!(if by_caller { "caller" } else { "glob" });
            expected["path_readable"] = json!(flags[0]);
            expected["path_writable"] = json!(flags[1]);
            expected["image_allowed"] = json!(flags[2]);
            expected["reads_everything"] = json!(false);
            expected["host_paths_allowed"] = json!({});
            let got = rel.match_template.get(by_caller, flags);
            assert_eq!(got, json_to_value(&expected), "{by_caller} {flags:?}");
            // Built once: the second request shares the first one's object.
            let again = rel.match_template.get(by_caller, flags);
            match (&got, &again) {
                (regorus::Value::Object(a), regorus::Value::Object(b)) => {
                    assert!(Arc::ptr_eq(a, b), "rebuilt: {by_caller} {flags:?}")
                }
                _ => panic!("not objects"),
            }
        }
    }
}

/// Serving builds the document from the typed input; `policy eval` from
/// its JSON. Both must give the policy the same document, and the same as
/// the plain-JSON builder the other tests read.
#[test]
fn typed_and_json_inputs_give_the_same_document() {
    use crate::classify::{Resource, ResourceKind};
    use crate::decide::{FileContext, MountInfo, RequestInfo};
    use crate::identify::{Caller, Identification};
    use crate::resolve::Target;
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "*", "file_write_paths": ["/app/**"]}),
        json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
            "allowed_images": ["busybox:*"], "allow_bind_mounts": ["/srv/**"]}),
        json!({"caller_service": "ci", "target_container": "label:tier=web"}),
    ]);
    let base = PolicyInput {
        caller: Caller {
            name: "ci".into(),
            admin: false,
            identified: true,
            via: Identification::PeerCredentials {
                uid: 1000,
                gid: 1000,
                pid: None,
            },
        },
        action: Action::FILE_WRITE,
        resource: Resource {
            kind: ResourceKind::Container,
            name: Some("/web-1".into()),
        },
        target: Target {
            reference: Some("web-1".into()),
            name: Some("web-1".into()),
            labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
            exists: true,
            ..Target::default()
        },
        request: RequestInfo {
            method: "PUT".into(),
            path: "/containers/web-1/archive".into(),
            query: BTreeMap::from([("path".to_string(), vec!["/app".to_string()])]),
            version: Some("1.41".into()),
        },
        body: Value::Null,
        file: Some(FileContext {
            path: "/app/a".into(),
            resolved_path: "/app/a".into(),
            mount: Some(MountInfo {
                kind: "bind".into(),
                source: "/srv".into(),
                destination: "/app".into(),
                rw: true,
            }),
            entries: vec!["/app/a".into(), "/app/b".into()],
        }),
        now: "2025-01-01T00:00:00Z".into(),
    };
    let mut create = base.clone();
    create.action = Action::CONTAINER_CREATE;
    create.file = None;
    create.body = json!({"Image": "busybox", "Labels": {"tier": "db", "x": "y"},
        "HostConfig": {"Binds": ["/srv/a:/a", "/etc:/e"], "NetworkMode": "container:db",
            "VolumesFrom": ["web-2"]}});
    create.target.referenced = vec![
        Target {
            reference: Some("db".into()),
            name: Some("db".into()),
            exists: true,
            ..Target::default()
        },
        Target {
            reference: Some("web-2".into()),
            id: Some("feed".into()),
            name: Some("web-2".into()),
            labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
            exists: true,
            ..Target::default()
        },
    ];
    create.target.volumes = vec![crate::volumes::MountedVolume {
        name: "hostroot".into(),
        exists: true,
        driver: "local".into(),
        options: BTreeMap::from([
            ("type".to_string(), "none".to_string()),
            ("o".to_string(), "bind".to_string()),
            ("device".to_string(), "/".to_string()),
        ]),
        creator: Some("ci".into()),
        used_by: vec!["web-3".into()],
        ..Default::default()
    }];
    let mut list = base.clone();
    list.action = Action::IMAGE_LIST;
    for input in [base, create, list] {
        let json = serde_json::to_value(&input).unwrap();
        let from_json = to_policy_value(&json, &t, 7).unwrap();
        let typed = policy_value(&input, &t, 7).unwrap();
        assert_eq!(typed, from_json, "{}", input.action);
        let mut enriched = json.clone();
        enrich(&mut enriched, &t, 7);
        assert_eq!(typed, json_to_value(&enriched), "{}", input.action);
    }
}

/// A volume mounted by name brings its host paths, its driver and its
/// owner into the facts; a new name or a borrowed volume only its paths.
#[test]
fn volume_facts() {
    let t = trust(&[
        json!({"caller_service": "ci", "target_container": "web-*", "can_create": true,
        "volumes": ["shared-*"]}),
    ]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "container.create",
        "resource": {"kind": "container", "name": "web-9"},
        "target": {"labels": {}, "volumes": [
            {"name": "hostroot", "via": "name", "exists": true, "driver": "local",
             "options": {"type": "none", "o": "bind", "device": "/"}},
            {"name": "mine", "via": "name", "exists": true, "driver": "local", "creator": "ci"},
            {"name": "shared-1", "via": "name", "exists": true, "driver": "local"},
            {"name": "nfs", "via": "name", "exists": true, "driver": "local",
             "options": {"type": "nfs", "o": "addr=1.2.3.4", "device": ":/x"}},
            {"name": "plug", "via": "name", "exists": true, "driver": "rexray"},
            {"name": "new", "via": "name", "exists": false},
            {"name": "borrowed", "via": "volumes_from", "exists": true, "driver": "local",
             "options": {"type": "overlay", "o": "lowerdir=/etc:/usr,upperdir=/srv/u,workdir=/srv/w"}},
            {"name": "/srv/../data", "via": "volumes_from_bind"}]},
        "body": {"Image": "busybox", "HostConfig": {"VolumeDriver": "flocker",
            "Mounts": [{"Type": "volume", "Source": "x", "VolumeOptions": {"DriverConfig":
                {"Name": "local", "Options": {"type": "ext4", "device": "/dev/sda1"}}}}]}}});
    enrich(&mut input, &t, 0);
    assert_eq!(
        input["host_paths"],
        json!([
            "/",
            "/data",
            "/dev/sda1",
            "/etc",
            "/srv/u",
            "/srv/w",
            "/usr"
        ])
    );
    assert_eq!(
        input["volume_drivers"],
        json!(["flocker", "local:nfs", "rexray"])
    );
    assert_eq!(
        input["volumes"],
        json!({"hostroot": false, "mine": true, "shared-1": true, "nfs": false, "plug": false})
    );
}

#[test]
fn direct_conversion_matches_regorus() {
    let doc = json!({"a": [1, -2, 3.5, u64::MAX, null, true, "s"], "b": {"c": {}}, "big": 1735689600000000000i64});
    assert_eq!(json_to_value(&doc), regorus::Value::from(doc.clone()));
}

#[test]
fn non_container_actions_match_every_relationship_of_the_caller() {
    let t = trust(&[json!({"caller_service": "ci", "target_container": "web"})]);
    let mut input = json!({"caller": {"name": "ci"}, "action": "image.list", "target": {}});
    enrich(&mut input, &t, 0);
    assert_eq!(input["matches"][0]["target_match"], "caller");
}
