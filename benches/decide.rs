//! Decision latency with 1,000 trust relationships and path globs, on the
//! compiled VM (RVM) and on the interpreter, side by side.
//!
//! Targets: median ≤ 15 µs on the RVM uncached (≤ 25 µs for a create), and
//! ≤ 2 µs for a repeated input answered by the decision memo (`memo/…`).
//! Run briefly with
//! `cargo bench --bench decide -- --measurement-time 2 --warm-up-time 1`.
//!
//! On a noisy VM, wall time varies by 2× between runs; instructions do not.
//! `DECIDE_COUNT=<action>:<n>` (action `container.restart`, `file.write` or
//! `container.create`) makes n decisions and exits, for
//! `valgrind --tool=callgrind --toggle-collect='<portcullis::decide::engine::PolicyEngine as portcullis::decide::Decide>::decide'`
//! on the bench binary: total instructions / n is the cost of one decision,
//! the Rust input building included (`DECIDE_MEMO=1`: answered by the memo).

use std::collections::BTreeMap;

/// The allocator the `portcullis` binary ships with (src/main.rs), so the
/// figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::classify::{Action, Resource, ResourceKind};
use portcullis::decide::{
    Decide, FileContext, PolicyEngine, PolicyInput, PolicySource, RequestInfo, Template,
};
use portcullis::identify::{Caller, Identification};
use portcullis::resolve::Target;
use portcullis::trust::{TrustRelationship, TrustSnapshot, TrustSpec};
use serde_json::json;

/// 100 callers × 10 relationships, each with file globs and images.
fn snapshot() -> TrustSnapshot {
    let mut relationships = Vec::new();
    for caller in 0..100 {
        for target in 0..10 {
            let spec = TrustSpec::from_json(&json!({
                "caller_service": format!("svc-{caller}"),
                "target_container": if target == 0 { "*".to_string() } else { format!("app-{target}-*") },
                "can_restart": true,
                "can_exec": target % 2 == 0,
                "can_create": true,
                "allowed_images": [format!("registry.local/app-{target}:v2.*"), "busybox:*"],
                "file_read_paths": ["/app/config/*", "/data/**", format!("/srv/{target}/**")],
                "file_write_paths": ["/app/config/instructions/*", format!("/srv/{target}/out/*")],
                "allow_bind_mounts": ["/srv/shared/**"],
            }))
            .expect("valid spec");
            relationships.push(TrustRelationship {
                id: format!("{caller:04}{target:04}"),
                spec,
                created_at: "2025-01-01T00:00:00Z".into(),
                updated_at: "2025-01-01T00:00:00Z".into(),
            });
        }
    }
    TrustSnapshot {
        revision: 1,
        relationships,
    }
}

fn input(action: Action, body: serde_json::Value, file: Option<FileContext>) -> PolicyInput {
    PolicyInput {
        caller: Caller {
            name: "svc-42".into(),
            admin: false,
            identified: true,
            via: Identification::Token {
                token_id: "t".into(),
            },
        },
        action,
        resource: Resource {
            kind: ResourceKind::Container,
            name: Some("app-3-web".into()),
        },
        target: Target {
            reference: Some("app-3-web".into()),
            id: Some("c0ffee".into()),
            name: Some("app-3-web".into()),
            labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
            image: Some("registry.local/app-3:v2.1".into()),
            exists: true,
            kind: Some(ResourceKind::Container),
            ..Target::default()
        },
        request: RequestInfo {
            method: "PUT".into(),
            path: "/containers/app-3-web/archive".into(),
            query: BTreeMap::new(),
            version: Some("1.41".into()),
        },
        body,
        file,
        now: "2025-06-01T00:00:00Z".into(),
    }
}

/// `DECIDE_COUNT=<action>:<n>`: make n RVM decisions of one action and exit.
fn instruction_count_run() -> Option<(String, usize)> {
    let spec = std::env::var("DECIDE_COUNT").ok()?;
    let (action, count) = spec.split_once(':')?;
    Some((action.to_string(), count.parse().ok()?))
}

fn bench(c: &mut Criterion) {
    let engines = [
        (
            "rvm",
            PolicyEngine::load(PolicySource::Embedded(Template::Standard)),
        ),
        (
            "interpreter",
            PolicyEngine::load_interpreted(PolicySource::Embedded(Template::Standard)),
        ),
    ];
    let write = input(
        Action::FILE_WRITE,
        serde_json::Value::Null,
        Some(FileContext {
            path: "/app/config/instructions/CLAUDE.md".into(),
            resolved_path: "/app/config/instructions/CLAUDE.md".into(),
            mount: None,
            entries: Vec::new(),
        }),
    );
    let create = input(
        Action::CONTAINER_CREATE,
        json!({"Image": "registry.local/app-3:v2.4", "HostConfig": {
            "Binds": ["/srv/shared/a:/a"], "CapAdd": ["NET_BIND_SERVICE"], "Memory": 1000000}}),
        None,
    );
    let restart = input(Action::CONTAINER_RESTART, serde_json::Value::Null, None);
    if let Some((action, count)) = instruction_count_run() {
        // Only decisions, a known number of them: for callgrind (see the
        // module docs), which counts instructions whatever the machine's noise.
        let engine = &engines[0].1;
        engine.set_memo(std::env::var_os("DECIDE_MEMO").is_some());
        engine.set_trust(snapshot()).expect("trust compiles");
        let input = match action.as_str() {
            "file.write" => &write,
            "container.create" => &create,
            _ => &restart,
        };
        assert!(engine.decide(input).allowed);
        for _ in 0..count {
            std::hint::black_box(engine.decide(input));
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("decide");
    // The Rust side alone (what `decide` does before the VM runs): serialize
    // the typed input straight into a regorus value, compute the facts, and
    // the whole input document; `json_route` is the same document built the
    // way `policy eval` does, from JSON, for comparison.
    let trust =
        portcullis::trust::CompiledTrust::build(1, snapshot().relationships).expect("trust");
    group.bench_function("input_only/to_value", |b| {
        b.iter(|| portcullis::decide::value::to_value(&write).expect("value"))
    });
    group.bench_function("input_only/facts", |b| {
        b.iter(|| {
            let subject = portcullis::decide::facts::Subject::from_input(&write);
            portcullis::decide::facts::compute(&subject, &trust, 0)
                .matches
                .len()
        })
    });
    for (name, input) in [("file.write", &write), ("container.create", &create)] {
        group.bench_function(format!("input_only/{name}"), |b| {
            b.iter(|| portcullis::decide::facts::policy_value(input, &trust, 0).expect("value"))
        });
    }
    group.bench_function("input_only/json_route/file.write", |b| {
        b.iter(|| {
            let v = serde_json::to_value(&write).expect("json");
            portcullis::decide::facts::to_policy_value(&v, &trust, 0).expect("value")
        })
    });
    // Uncached: each decision evaluated afresh. `memo`: the same inputs
    // repeated, answered by the decision memo.
    let memo = PolicyEngine::load(PolicySource::Embedded(Template::Standard));
    assert_eq!(memo.status().memo, "on");
    for (_, engine) in &engines {
        engine.set_memo(false);
    }
    for (name, engine) in engines.iter().chain([("memo", memo)].iter()) {
        engine.set_trust(snapshot()).expect("trust compiles");
        assert!(engine.decide(&write).allowed, "{:?}", engine.decide(&write));
        assert!(
            engine.decide(&create).allowed,
            "{:?}",
            engine.decide(&create)
        );
        assert!(engine.decide(&restart).allowed);
        group.bench_function(format!("{name}/file.write"), |b| {
            b.iter(|| engine.decide(&write))
        });
        group.bench_function(format!("{name}/container.create"), |b| {
            b.iter(|| engine.decide(&create))
        });
        group.bench_function(format!("{name}/container.restart"), |b| {
            b.iter(|| engine.decide(&restart))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
