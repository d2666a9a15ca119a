//! The layering rule, checked: no module imports from a module above it.
//!
//! Why a test: "one path" is kept by types (a `Permit`, `Action`), and by the
//! shape of the dependencies: the pipeline is the top and sees everything;
//! each stage sees only the stages before it (whose outputs are its inputs)
//! and shared helpers; nothing below the pipeline sees the pipeline or the
//! `Gateway`. `cargo test --lib layers` reads every `crate::…` path in `src/`
//! and fails on an import that points up.

use std::collections::BTreeSet;
use std::path::Path;

/// The top: the pipeline and what builds and runs it. No other module may
/// import these.
const ORCHESTRATION: &[&str] = &[
    "pipeline",
    "gateway",
    "server",
    "assemble",
    "commands",
    "cli",
    "config_file",
    "doctor",
    "init",
    "main",
    "lib",
];

/// The stages in pipeline order; a stage may import a stage of the same or a
/// lower rank. Modules not listed (reply, config, trust, files, volumes,
/// metrics, notify, …) are helpers: any stage may use them.
const STAGES: &[(&str, u8)] = &[
    ("listen", 1),
    ("identify", 2),
    ("classify", 3),
    ("inspect", 4),
    ("resolve", 5),
    ("decide", 6),
    ("execs", 6),
    ("record", 7),
    ("refuse", 8),
    ("forward", 8),
    ("services", 8),
    ("admin", 8),
    ("filter", 9),
    ("agent", 9),
];

/// Imports that point up today, each with why it is still there. The test
/// also fails when one of these is gone, so the list stays true.
const KNOWN: &[(&str, &str)] = &[];

fn rank(module: &str) -> Option<u8> {
    STAGES.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Every module named by a `crate::` path in `text`, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // `crate::{a, b::c}`: every first segment in the braces.
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (importing module, imported module) for every import across modules.
fn edges() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs").to_string();
        if module == "layers" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for imported in imports(&text) {
            if imported != module {
                out.insert((module.clone(), imported));
            }
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_module_above_it() {
    let mut upward = BTreeSet::new();
    for (from, to) in edges() {
        let points_up = if ORCHESTRATION.contains(&to.as_str()) {
            !ORCHESTRATION.contains(&from.as_str())
        } else {
            matches!((rank(&from), rank(&to)), (Some(f), Some(t)) if t > f)
        };
        if points_up {
            upward.insert((from, to));
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = upward.difference(&known).collect();
    assert!(
        new.is_empty(),
        "imports that point up the pipeline: {new:?}"
    );
    let gone: Vec<_> = known.difference(&upward).collect();
    assert!(
        gone.is_empty(),
        "no longer imported, drop from KNOWN: {gone:?}"
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_paths() {
    let text = "use crate::{execs, inspect::Inspected};\n// crate::pipeline\nlet x = crate::decide::may(a);";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["decide", "execs", "inspect"]);
}
