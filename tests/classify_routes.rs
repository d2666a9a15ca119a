//! Every route in `shared/docker-api/endpoints.txt` must classify, versioned and
//! not, to the action the shared vocabulary (`ACTIONS.md`) gives it; and every
//! Docker row of the table must be reachable from that list, so the table holds
//! nothing the daemon does not register.
//!
//! The list is read at test time so that a route added to it fails here until
//! the table knows it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use portcullis::classify::{classify, Action, ResourceKind, Service, VersionRange, ROUTES};

/// `PORTCULLIS_SHARED_DIR`, else `../shared` next to the crate (the repository
/// checkout layout), else `/work/shared`. Missing everywhere is a failure, not a
/// skip: a test that silently checks nothing proves nothing.
fn shared_dir() -> PathBuf {
    let mut tried = Vec::new();
    if let Ok(dir) = std::env::var("PORTCULLIS_SHARED_DIR") {
        tried.push(PathBuf::from(dir));
    }
    tried.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    tried.push(PathBuf::from("/work/shared"));
    tried
        .iter()
        .find(|d| d.join("docker-api/endpoints.txt").is_file())
        .cloned()
        .unwrap_or_else(|| panic!("docker-api/endpoints.txt not found under any of {tried:?}; set PORTCULLIS_SHARED_DIR"))
}

fn endpoints() -> Vec<(String, String)> {
    let file = shared_dir().join("docker-api/endpoints.txt");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let lines: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (method, path) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad endpoints line {l:?}"));
            (method.to_owned(), path.trim().to_owned())
        })
        .collect();
    assert!(
        lines.len() >= 100,
        "only {} routes in {}: wrong file?",
        lines.len(),
        file.display()
    );
    lines
}

/// The action ACTIONS.md gives each endpoints line (written out independently
/// of the table so a typo in either shows up).
const EXPECTED: &str = "
GET /containers/json container.list
POST /containers/create container.create
GET /containers/{id}/json container.inspect
GET /containers/{id}/top container.top
GET /containers/{id}/logs container.logs
GET /containers/{id}/changes container.changes
GET /containers/{id}/export container.export
GET /containers/{id}/stats container.stats
POST /containers/{id}/resize container.resize
POST /containers/{id}/start container.start
POST /containers/{id}/stop container.stop
POST /containers/{id}/restart container.restart
POST /containers/{id}/kill container.kill
POST /containers/{id}/update container.update
POST /containers/{id}/rename container.rename
POST /containers/{id}/pause container.pause
POST /containers/{id}/unpause container.unpause
POST /containers/{id}/attach container.attach
GET /containers/{id}/attach/ws container.attach_ws
POST /containers/{id}/wait container.wait
DELETE /containers/{id} container.remove
HEAD /containers/{id}/archive file.stat
GET /containers/{id}/archive file.read
PUT /containers/{id}/archive file.write
POST /containers/prune container.prune
POST /containers/{id}/exec container.exec
POST /exec/{id}/start exec.start
POST /exec/{id}/resize exec.resize
GET /exec/{id}/json exec.inspect
GET /images/json image.list
POST /images/create image.pull
GET /images/{name}/json image.inspect
GET /images/{name}/attestations image.inspect
GET /images/{name}/history image.history
POST /images/{name}/push image.push
POST /images/{name}/tag image.tag
DELETE /images/{name} image.remove
GET /images/search image.search
POST /images/prune image.prune
POST /commit container.commit
GET /images/{name}/get image.export
GET /images/get image.export
POST /images/load image.load
POST /build image.build
POST /build/prune build.prune
GET /networks network.list
GET /networks/{id} network.inspect
DELETE /networks/{id} network.remove
POST /networks/create network.create
POST /networks/{id}/connect network.connect
POST /networks/{id}/disconnect network.disconnect
POST /networks/prune network.prune
GET /volumes volume.list
POST /volumes/create volume.create
GET /volumes/{name} volume.inspect
PUT /volumes/{name} volume.update
DELETE /volumes/{name} volume.remove
POST /volumes/prune volume.prune
GET /swarm swarm.inspect
POST /swarm/init swarm.init
POST /swarm/join swarm.join
POST /swarm/leave swarm.leave
POST /swarm/update swarm.update
GET /swarm/unlockkey swarm.unlockkey
POST /swarm/unlock swarm.unlock
GET /services service.list
POST /services/create service.create
GET /services/{id} service.inspect
DELETE /services/{id} service.remove
POST /services/{id}/update service.update
GET /services/{id}/logs service.logs
GET /tasks task.list
GET /tasks/{id} task.inspect
GET /tasks/{id}/logs task.logs
GET /nodes node.list
GET /nodes/{id} node.inspect
DELETE /nodes/{id} node.remove
POST /nodes/{id}/update node.update
GET /secrets secret.list
POST /secrets/create secret.create
GET /secrets/{id} secret.inspect
DELETE /secrets/{id} secret.remove
POST /secrets/{id}/update secret.update
GET /configs config.list
POST /configs/create config.create
GET /configs/{id} config.inspect
DELETE /configs/{id} config.remove
POST /configs/{id}/update config.update
GET /plugins plugin.list
GET /plugins/privileges plugin.privileges
POST /plugins/pull plugin.install
GET /plugins/{name}/json plugin.inspect
DELETE /plugins/{name} plugin.remove
POST /plugins/{name}/enable plugin.enable
POST /plugins/{name}/disable plugin.disable
POST /plugins/{name}/upgrade plugin.upgrade
POST /plugins/create plugin.create
POST /plugins/{name}/push plugin.push
POST /plugins/{name}/set plugin.set
POST /auth system.auth
GET /info system.info
GET /version system.version
GET /_ping system.ping
HEAD /_ping system.ping
GET /events system.events
GET /system/df system.df
GET /distribution/{name}/json distribution.inspect
POST /session session.open
POST /build/cancel build.cancel
POST /grpc grpc.open
GET /containers/{name}/checkpoints checkpoint.list
POST /containers/{name}/checkpoints checkpoint.create
DELETE /containers/{name}/checkpoints/{checkpoint} checkpoint.remove
GET /networks/ network.list
OPTIONS /{anyroute} system.options
GET /debug/vars debug.read
GET /debug/pprof/ debug.read
GET /debug/pprof/cmdline debug.read
GET /debug/pprof/profile debug.read
GET /debug/pprof/symbol debug.read
GET /debug/pprof/trace debug.read
GET /debug/pprof/{name} debug.read
";

fn expected_actions() -> HashMap<(String, String), String> {
    EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad EXPECTED line {l:?}");
            (
                (parts[0].to_owned(), parts[1].to_owned()),
                parts[2].to_owned(),
            )
        })
        .collect()
}

const IMAGE_SAMPLE: &str = "library/ubuntu:22.04";
const NAME_SAMPLE: &str = "web-1";

/// Replace `{…}` variables with sample values; returns the concrete path and
/// the value given to the first variable (the resource name the route names).
fn instantiate(template: &str) -> (String, Option<String>) {
    let image_like = template.starts_with("/images/") || template.starts_with("/distribution/");
    let mut out = String::new();
    let mut first = None;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open
            + rest[open..]
                .find('}')
                .unwrap_or_else(|| panic!("unclosed {{ in {template}"));
        let var = &rest[open + 1..close];
        let value = match var {
            "anyroute" => "anything/at/all",
            "checkpoint" => "cp-1",
            "name" if image_like => IMAGE_SAMPLE,
            _ => NAME_SAMPLE,
        };
        if first.is_none() && var != "anyroute" {
            first = Some(value.to_owned());
        }
        out.push_str(&rest[..open]);
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    (out, first)
}

#[test]
fn every_endpoint_classifies_versioned_and_not() {
    let versions = VersionRange::default();
    let expected = expected_actions();
    let mut failures = Vec::new();
    let mut reached = BTreeSet::new();
    for (method, template) in endpoints() {
        let (path, name) = instantiate(&template);
        let want = expected.get(&(method.clone(), template.clone()));
        let mut actions = Vec::new();
        for target in [path.clone(), format!("/v1.41{path}")] {
            match classify(&method, &target, &versions) {
                Ok(c) => {
                    let row = ROUTES
                        .iter()
                        .position(|r| std::ptr::eq(r, c.route))
                        .expect("route from ROUTES");
                    reached.insert(row);
                    if c.route.service != Service::Docker {
                        failures.push(format!(
                            "{method} {target}: served by {:?}, not Docker",
                            c.route.service
                        ));
                    }
                    match want {
                        Some(a) if a != c.action.as_str() => failures.push(format!(
                            "{method} {target}: action {} but ACTIONS.md says {a}",
                            c.action
                        )),
                        None => failures.push(format!(
                            "{method} {template}: no expected action in this test"
                        )),
                        _ => {}
                    }
                    // Routes whose name comes from the query have none here.
                    let from_query = [
                        "/containers/create",
                        "/images/create",
                        "/commit",
                        "/build",
                        "/plugins/pull",
                        "/plugins/create",
                    ];
                    if !from_query.contains(&template.as_str()) && c.resource.name != name {
                        failures.push(format!(
                            "{method} {target}: resource name {:?}, want {name:?}",
                            c.resource.name
                        ));
                    }
                    actions.push(c.action);
                }
                Err(e) => failures.push(format!("{method} {target}: {e}")),
            }
        }
        if actions.len() == 2 && actions[0] != actions[1] {
            failures.push(format!(
                "{method} {path}: {} unversioned but {} versioned",
                actions[0], actions[1]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let unreached: Vec<String> = ROUTES
        .iter()
        .enumerate()
        .filter(|(i, r)| !reached.contains(i) && r.service == Service::Docker)
        .map(|(_, r)| format!("{} {}", r.method, r.pattern))
        .collect();
    assert!(
        unreached.is_empty(),
        "Docker rows no endpoints line reaches:\n{}",
        unreached.join("\n")
    );
}

#[test]
fn portcullis_routes_are_outside_the_daemon_namespace() {
    // Every admin/file row lives under /api/, which no endpoints line uses, so
    // portcullis's API can never shadow a daemon route or be shadowed by one.
    let mut own = 0;
    for r in ROUTES.iter().filter(|r| r.service != Service::Docker) {
        own += 1;
        assert!(
            r.pattern.starts_with("/api/v1/"),
            "{} {}",
            r.method,
            r.pattern
        );
        if r.service == Service::Files {
            assert_eq!(r.kind, ResourceKind::Container, "{}", r.pattern);
            assert!(r.action.is_file(), "{}", r.pattern);
        } else if r.service == Service::Agent {
            // Agent controls act on containers (or, for the event stream, the system).
            assert!(
                matches!(r.kind, ResourceKind::Container | ResourceKind::System),
                "{}",
                r.pattern
            );
        } else {
            assert_eq!(r.kind, ResourceKind::Admin, "{}", r.pattern);
        }
    }
    assert!(own >= 19, "only {own} admin/file rows");
    for (_, path) in endpoints() {
        assert!(
            !path.starts_with("/api/"),
            "daemon route {path} collides with portcullis's /api/ namespace"
        );
    }
}

/// `policies/ACTIONS.md`, generated from [`ROUTES`]: every action name with the
/// routes that classify to it.
fn actions_markdown() -> String {
    // Actions that no row names directly.
    let extra: &[(&str, &str, &str)] = &[
        (
            "image.import",
            "image",
            "`POST /images/create` with `fromSrc` (settled from the query or form body)",
        ),
        (
            "container.inspect_secrets",
            "container",
            "not a route: asked before a container inspect is answered unredacted",
        ),
        (
            "container.update_step",
            "container",
            "not a route: records each step of an update-image or env patch",
        ),
        (
            "container.watchdog",
            "container",
            "not a route: records the watchdog giving up on a container",
        ),
    ];
    let mut order: Vec<&str> = Vec::new();
    let mut rows: HashMap<&str, (String, Vec<String>)> = HashMap::new();
    for route in ROUTES {
        let kind = serde_json::to_value(route.kind).unwrap();
        let mut shown = format!("`{} {}`", route.method, route.pattern);
        match route.service {
            Service::Docker => {}
            Service::Admin => shown.push_str(" (portcullis admin API)"),
            Service::Files => shown.push_str(" (portcullis file API)"),
            Service::Agent => shown.push_str(" (portcullis agent controls)"),
        }
        if route.action == Action::IMAGE_PULL {
            shown.push_str(" with `fromImage`");
        }
        if route.hijack {
            shown.push_str(" (takes the connection over)");
        }
        if route.tunnel {
            shown.push_str(" (tunnel)");
        }
        let entry = rows.entry(route.action.as_str()).or_insert_with(|| {
            order.push(route.action.as_str());
            (kind.as_str().unwrap().to_string(), Vec::new())
        });
        entry.1.push(shown);
    }
    let mut actions: Vec<&str> = order.clone();
    for (action, _, _) in extra {
        if !actions.contains(action) {
            actions.push(action);
        }
    }
    actions.sort_unstable();
    let mut out = String::from(
        "# Actions\n\n\
         Every action name a policy sees in `input.action`, with the routes that\n\
         classify to it. Which trust right grants each one is in `actions.rego`.\n\n\
         Generated from `src/classify/routes.rs`; do not edit by hand. After a change\n\
         to the route table, regenerate it with\n\
         `PORTCULLIS_WRITE_ACTIONS_MD=1 cargo test --test classify_routes actions_md`\n\
         (the test fails while this file and the table differ).\n\n\
         Patterns are the daemon's (`{name:.*}` matches names that contain `/`);\n\
         every Docker route is also served under a `/vX.Y` prefix.\n\n\
         | action | resource | routes |\n|---|---|---|\n",
    );
    for action in actions {
        let (kind, routes) = match rows.get(action) {
            Some((kind, routes)) => (kind.as_str(), routes.join("<br>")),
            None => {
                let (_, kind, note) = extra.iter().find(|(a, _, _)| *a == action).unwrap();
                (*kind, note.to_string())
            }
        };
        out.push_str(&format!("| `{action}` | {kind} | {routes} |\n"));
    }
    for (action, _, note) in extra {
        if rows.contains_key(action) {
            out.push_str(&format!("\n`{action}`: also {note}.\n"));
        }
    }
    out
}

/// policies/README.md refers policy authors to ACTIONS.md for action names:
/// it must list exactly what the route table classifies to.
#[test]
fn actions_md_is_in_sync_with_the_route_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/ACTIONS.md");
    let want = actions_markdown();
    if std::env::var("PORTCULLIS_WRITE_ACTIONS_MD").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: regenerate it with PORTCULLIS_WRITE_ACTIONS_MD=1 cargo test --test classify_routes actions_md",
        path.display()
    );
    for action in [
        "container.exec",
        "image.pull",
        "image.import",
        "file.write",
        "system.ping",
    ] {
        assert!(have.contains(&format!("| `{action}` |")), "{action}");
    }
}
