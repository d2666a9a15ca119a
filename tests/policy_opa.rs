//! The shipped policies under real OPA: `opa check` and `opa test` of
//! `policies/` as a whole, every template's tests at once.
//!
//! Why through Python: OPA's command line is released on GitHub, which this
//! project cannot reach; PyPI's `opa-golib-python-bindings` is OPA v1.20 as a
//! library, and `tests/policy_opa/opa.py` does what `opa check` and `opa test`
//! do with it. `tests/policy_opa/install.sh` (run by `.ci/run`, and here when
//! missing) unpacks it into `target/opa-bindings`. Without python3 or PyPI the
//! tests print why and pass as skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where OPA is, installing it if needed; `None` (and why, printed) if it
/// cannot be had here.
fn opa() -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_OPA_BINDINGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/opa-bindings"));
    if !dir.join("opa_bindings/libopabridge.so").exists() {
        let out = Command::new("bash")
            .arg(root().join("tests/policy_opa/install.sh"))
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                skipped(&format!(
                    "OPA cannot be installed (tests/policy_opa/install.sh {}): {}{}",
                    dir.display(),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
                return None;
            }
            Err(e) => {
                skipped(&format!("OPA cannot be installed: bash: {e}"));
                return None;
            }
        }
    }
    match Command::new("python3")
        .arg(root().join("tests/policy_opa/opa.py"))
        .arg(&dir)
        .arg("probe")
        .output()
    {
        Ok(o) if o.status.success() => Some(dir),
        Ok(o) => {
            skipped(&format!("OPA does not load here: {}", text(&o)));
            None
        }
        Err(e) => {
            skipped(&format!("python3 cannot be run: {e}"));
            None
        }
    }
}

/// Says why a test is skipped where `cargo test` shows it: straight to
/// stderr, which the harness does not capture (it captures `eprintln!`).
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED (passes without running): {why}");
}

fn run_opa(bindings: &Path, verb: &str, dir: &Path) -> Output {
    Command::new("python3")
        .arg(root().join("tests/policy_opa/opa.py"))
        .arg(bindings)
        .arg(verb)
        .arg(dir)
        .output()
        .expect("python3 runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `PASS: n/total` of a summary.
fn passed_of(summary: &str) -> (usize, usize) {
    let line = summary
        .lines()
        .find_map(|l| l.strip_prefix("PASS: "))
        .unwrap_or_else(|| panic!("no PASS line in {summary}"));
    let (n, total) = line.split_once('/').unwrap();
    (n.trim().parse().unwrap(), total.trim().parse().unwrap())
}

fn copy_of_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rego") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// `opa check` and `opa test` pass on `policies/`, and `portcullis policy
/// test policies/` runs the same tests.
#[test]
fn opa_checks_and_tests_the_shipped_policies_whole() {
    let Some(opa) = opa() else { return };
    let policies = root().join("policies");
    let check = run_opa(&opa, "check", &policies);
    assert!(check.status.success(), "opa check: {}", text(&check));

    let test = run_opa(&opa, "test", &policies);
    let out = text(&test);
    assert!(test.status.success(), "opa test: {out}");
    let (passed, total) = passed_of(&out);
    assert_eq!(passed, total, "{out}");
    for template_test in [
        "portcullis_strict_test",
        "portcullis_permissive_test",
        "portcullis_test.",
    ] {
        assert!(
            out.contains(template_test),
            "{template_test} not run: {out}"
        );
    }

    let ours = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["policy", "test"])
        .arg(&policies)
        .output()
        .unwrap();
    let ours_text = text(&ours);
    assert!(ours.status.success(), "{ours_text}");
    assert_eq!(passed_of(&ours_text), (total, total), "{ours_text}");
}

/// What OPA refuses is refused: a failing test (exit 2, named), and the old
/// layout, two files setting `template` in one package (a conflict).
#[test]
fn opa_fails_a_failing_test_and_a_second_template_definition() {
    let Some(opa) = opa() else { return };
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("zz_broken_test.rego"),
        "package zz_broken_test\n\nimport rego.v1\n\ntest_wrong if data.portcullis.settings.template == \"strict\"\n",
    )
    .unwrap();
    let out = run_opa(&opa, "test", dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("data.zz_broken_test.test_wrong: FAIL"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(dir.path().join("zz_broken_test.rego")).unwrap();

    std::fs::write(
        dir.path().join("strict.rego"),
        "package portcullis.settings\n\nimport rego.v1\n\ntemplate := \"strict\"\n",
    )
    .unwrap();
    let out = run_opa(&opa, "test", dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("conflict"), "{}", text(&out));
}

/// `portcullis policy test DIR` on a deliberately failing test: the rule's
/// file:line, the statement that fails, exit 2 — the exit code OPA gives the
/// same directory, when OPA is here.
#[test]
fn a_failing_test_names_its_place_and_statement_and_exits_as_opa_does() {
    let dir = copy_of_policies();
    let file = dir.path().join("zz_broken_test.rego");
    std::fs::write(
        &file,
        "package zz_broken_test\n\nimport rego.v1\n\nimport data.portcullis_testlib as t\n\ntest_exec_without_right if {\n\tinp := t.req(\"container.exec\", [t.rel({})])\n\tt.allowed(inp) == true\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    let ours = text(&out);
    assert_eq!(out.status.code(), Some(2), "{ours}");
    let file = file.display().to_string();
    assert!(
        ours.contains("data.zz_broken_test.test_exec_without_right: FAIL"),
        "{ours}"
    );
    assert!(
        ours.contains(&format!(
            "{file}:7: rule data.zz_broken_test.test_exec_without_right"
        )),
        "{ours}"
    );
    assert!(
        ours.contains(&format!("{file}:9: fails: t.allowed(inp) == true")),
        "{ours}"
    );
    assert!(
        !ours.contains(": PASS"),
        "passes are listed only with -v: {ours}"
    );

    let json = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["policy", "test", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(2));
    let tests: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let failed: Vec<&serde_json::Value> = tests
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["fail"] == true)
        .collect();
    assert_eq!(failed.len(), 1, "{tests:#}");
    assert_eq!(failed[0]["location"]["row"], 7);
    assert_eq!(failed[0]["name"], "test_exec_without_right");

    let Some(opa) = opa() else { return };
    let theirs = run_opa(&opa, "test", dir.path());
    assert_eq!(theirs.status.code(), Some(2), "{}", text(&theirs));
    assert!(
        text(&theirs).contains("data.zz_broken_test.test_exec_without_right: FAIL"),
        "{}",
        text(&theirs)
    );
}
