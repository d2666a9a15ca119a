//! The policy author's tools: `policy check`, `policy test`, `policy eval`.
//!
//! Why in the library: the CLI only parses arguments and prints; the same
//! functions are unit-tested here and could back an admin endpoint.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::engine::{
    compile, engine_with, read_dir, read_source, CompileError, Evaluator, PolicyEngine,
    PolicySource,
};
use super::Decision;
use crate::trust::{TrustRelationship, TrustSnapshot, TrustSpec};

/// What `policy check` reports for a policy set that compiles.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub files: Vec<String>,
    pub policy_hash: String,
    pub evaluator: Evaluator,
    pub rvm_rejection: Option<String>,
}

/// Compile a policy source as `serve` would, without serving.
pub fn policy_check(source: &PolicySource) -> Result<CheckReport, Vec<CompileError>> {
    let loaded = compile(read_source(source)?, 0)?;
    Ok(CheckReport {
        files: loaded.files.clone(),
        policy_hash: loaded.hash.clone(),
        evaluator: loaded.evaluator(),
        rvm_rejection: loaded.rvm_rejection.clone(),
    })
}

/// One `test_*` rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`.
    pub name: String,
    pub passed: bool,
    /// Evaluation error, if any (an error is a failure).
    pub error: Option<String>,
    #[serde(skip)]
    pub duration: Duration,
}

/// Every test's outcome, or the compile errors that kept tests from running.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TestReport {
    pub outcomes: Vec<TestOutcome>,
    pub compile_errors: Vec<CompileError>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.compile_errors.is_empty()
            && !self.outcomes.is_empty()
            && self.outcomes.iter().all(|o| o.passed)
    }

    /// Process exit code for `portcullis policy test`.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            1
        }
    }

    /// `opa test` style: one line per test, then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.compile_errors {
            out.push_str(&format!("ERROR: {e}\n"));
        }
        for o in &self.outcomes {
            let verdict = match (&o.error, o.passed) {
                (Some(_), _) => "ERROR",
                (None, true) => "PASS",
                (None, false) => "FAIL",
            };
            out.push_str(&format!("{}: {} ({:?})\n", o.name, verdict, o.duration));
            if let Some(e) = &o.error {
                out.push_str(&format!("  {e}\n"));
            }
        }
        let passed = self.outcomes.iter().filter(|o| o.passed).count();
        let total = self.outcomes.len();
        out.push_str(
            "--------------------------------------------------------------------------------\n",
        );
        if self.passed() {
            out.push_str(&format!("PASS: {passed}/{total}\n"));
        } else {
            if passed > 0 {
                out.push_str(&format!("PASS: {passed}/{total}\n"));
            }
            out.push_str(&format!("FAIL: {}/{total}\n", total - passed));
            if total == 0 && self.compile_errors.is_empty() {
                out.push_str("no test_* rules found\n");
            }
        }
        out
    }
}

/// `test_*` rule names per `*_test.rego` file, as `data.<pkg>.<rule>`.
fn discover_tests(files: &[(String, String)]) -> Vec<String> {
    let mut names = Vec::new();
    for (file, text) in files {
        if !file.ends_with("_test.rego") {
            continue;
        }
        let mut package = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("package ") {
                package = Some(rest.trim().to_string());
            } else if line.starts_with("test_") {
                let rule: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(pkg) = &package {
                    let name = format!("data.{pkg}.{rule}");
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
    }
    names
}

/// Run every `test_*` rule of the `*_test.rego` files: for a directory, the
/// files in it; for a template, its shipped tests. Tests run on the
/// interpreter (`with` is fine).
pub fn policy_test(source: &PolicySource) -> TestReport {
    let files = match source {
        PolicySource::Embedded(template) => {
            let mut files = template.files();
            files.extend(template.test_files());
            files
        }
        PolicySource::Dir(dir) => match read_dir(dir, true) {
            Ok(files) => files,
            Err(errors) => {
                return TestReport {
                    compile_errors: errors,
                    ..Default::default()
                }
            }
        },
    };
    let mut engine = match engine_with(&files) {
        Ok(e) => e,
        Err(errors) => {
            return TestReport {
                compile_errors: errors,
                ..Default::default()
            }
        }
    };
    let mut outcomes = Vec::new();
    for name in discover_tests(&files) {
        let started = Instant::now();
        let result = engine.eval_rule(name.clone());
        let duration = started.elapsed();
        let (passed, error) = match result {
            Ok(v) => (v == regorus::Value::from(true), None),
            Err(e) => (false, Some(format!("{e:#}"))),
        };
        outcomes.push(TestOutcome {
            name,
            passed,
            error,
            duration,
        });
    }
    TestReport {
        outcomes,
        compile_errors: Vec::new(),
    }
}

/// Parse a trust JSON document: an array of relationships (or `{"relationships": [...]}`),
/// each with or without `id` / `created_at` / `updated_at`.
pub fn parse_trust_json(trust_json: &str) -> anyhow::Result<TrustSnapshot> {
    let value: Value = serde_json::from_str(trust_json)?;
    let list = match &value {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o
            .get("relationships")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("trust JSON must be an array of relationships"))?,
        _ => anyhow::bail!("trust JSON must be an array of relationships"),
    };
    let mut relationships = Vec::new();
    for (index, item) in list.into_iter().enumerate() {
        let mut object = item
            .as_object()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("relationship #{index} is not an object"))?;
        let id = object
            .remove("id")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("eval-{index}"));
        let created_at = object
            .remove("created_at")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(crate::trust::now_rfc3339);
        let updated_at = object
            .remove("updated_at")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| created_at.clone());
        let spec = TrustSpec::from_json(&Value::Object(object))
            .map_err(|e| anyhow::anyhow!("relationship #{index} ({id}): {e}"))?;
        relationships.push(TrustRelationship {
            id,
            spec: spec.normalized(),
            created_at,
            updated_at,
        });
    }
    Ok(TrustSnapshot {
        revision: 0,
        relationships,
    })
}

/// Decide one hand-written input (the JSON of a `PolicyInput`) against a
/// policy source and trust JSON: the same engine, facts and evaluator as
/// `serve`, with the input document built from JSON instead of the typed
/// input (a unit test in `facts` checks both give the same document).
pub fn policy_eval(
    source: &PolicySource,
    input_json: &str,
    trust_json: Option<&str>,
) -> anyhow::Result<Decision> {
    let engine = PolicyEngine::load(source.clone());
    if let Some(errors) = engine.last_error() {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("policies do not compile:\n{}", text.join("\n"));
    }
    if let Some(trust) = trust_json {
        engine.set_trust(parse_trust_json(trust)?)?;
    }
    let input: Value =
        serde_json::from_str(input_json).map_err(|e| anyhow::anyhow!("input is not JSON: {e}"))?;
    Ok(engine.decide_json(input))
}

/// How `policy eval` prints a decision.
pub fn render_decision(decision: &Decision) -> String {
    let mut out = format!(
        "decision: {}\n",
        if decision.allowed { "allow" } else { "deny" }
    );
    for reason in &decision.reasons {
        out.push_str(&format!("reason: {reason}\n"));
    }
    out.push_str(&format!(
        "trust_id: {}\npolicy_version: {}\n",
        decision.trust_id.as_deref().unwrap_or("-"),
        decision.policy_version
    ));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decide::Template;

    #[test]
    fn shipped_tests_pass() {
        for template in [Template::Standard, Template::Strict, Template::Permissive] {
            let report = policy_test(&PolicySource::Embedded(template));
            assert!(report.passed(), "{template}:\n{}", report.render());
            assert!(report.outcomes.len() >= 5, "{template}");
            assert!(report.render().contains("PASS: "), "{}", report.render());
        }
    }

    #[test]
    fn a_broken_test_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in Template::Standard.files() {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(
            dir.path().join("mine_test.rego"),
            "package mine_test\nimport rego.v1\n\ntest_ok if data.portcullis.settings.template == \"standard\"\n\ntest_wrong if data.portcullis.settings.template == \"strict\"\n\ntest_error if 1 / 0\n",
        )
        .unwrap();
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()));
        let text = report.render();
        assert!(!report.passed(), "{text}");
        assert_eq!(report.exit_code(), 1);
        assert!(text.contains("data.mine_test.test_ok: PASS"), "{text}");
        assert!(text.contains("data.mine_test.test_wrong: FAIL"), "{text}");
        assert!(text.contains("FAIL: 2/3"), "{text}");
    }

    #[test]
    fn a_test_file_that_does_not_parse_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x_test.rego"),
            "package x_test\ntest_a if {\n",
        )
        .unwrap();
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()));
        assert!(!report.passed());
        assert_eq!(
            report.compile_errors[0].line,
            Some(3),
            "{:?}",
            report.compile_errors
        );
    }

    #[test]
    fn check_reports_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rego"), "package portcullis\nimport rego.v1\n\ndecision := {\"allowed\": true, \"reasons\": [], \"trust_id\": null} if {\n  input.x ==\n}\n").unwrap();
        let errors = policy_check(&PolicySource::Dir(dir.path().to_path_buf())).unwrap_err();
        assert!(errors[0].file.ends_with("a.rego"), "{errors:?}");
        assert_eq!(errors[0].line, Some(6), "{errors:?}");
        let ok = policy_check(&PolicySource::Embedded(Template::Strict)).unwrap();
        assert_eq!(ok.evaluator, Evaluator::Rvm);
        assert!(ok.files.iter().any(|f| f == "template.rego"), "{:?}", ok.files);
    }

    /// The shipped standard policies plus `extra` (file name, text) in a directory.
    pub(crate) fn standard_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in Template::Standard.files() {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        for (name, text) in extra {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// Each of these passed `policy check` and then denied every request or
    /// dropped a rule; OPA's compiler rejects them, and so does `check` now,
    /// with file, line and column (regorus counts a tab as four columns).
    pub(crate) const REJECTED: &[(&str, &str, u32, u32, &str)] = &[
        (
            "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startswith(input.image, 5)\n}\n",
            "mine.rego",
            5,
            33,
            "startswith: argument 2 must be a string, got a number",
        ),
        (
            "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startswith(input.image)\n}\n",
            "mine.rego",
            5,
            9,
            "startswith takes 2 arguments, got 1",
        ),
        (
            "package portcullis\nimport rego.v1\n\nrequest_dangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tnot startwith(input.image, \"r/\")\n}\n",
            "mine.rego",
            5,
            9,
            "unknown function startwith: neither a built-in nor a function defined in the policies (did you mean startswith?)",
        ),
        (
            "package portcullis\nimport rego.v1\n\ndangers contains {\"kind\": \"registry\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if {\n\tinput.action == \"image.pull\"\n}\n",
            "mine.rego",
            4,
            1,
            "conflicting rules: data.portcullis.dangers is a partial set rule (`contains`) here but a complete rule at ",
        ),
        (
            "package portcullis\nimport rego.v1\n\ndecision := {\"allowed\": true, \"reasons\": [\"mine\"], \"trust_id\": null} if {\n\tinput.action == \"image.pull\"\n}\n",
            "mine.rego",
            4,
            1,
            "conflicting rules: complete rule data.portcullis.decision is also defined at ",
        ),
    ];

    #[test]
    fn check_rejects_what_opa_rejects_with_file_line_and_column() {
        for (text, file, line, column, message) in REJECTED {
            let dir = standard_with(&[(file, text)]);
            let errors =
                policy_check(&PolicySource::Dir(dir.path().to_path_buf())).expect_err(message);
            let e = errors
                .iter()
                .find(|e| e.file.ends_with(file))
                .unwrap_or_else(|| panic!("{message}: {errors:?}"));
            assert_eq!((e.line, e.column), (Some(*line), Some(*column)), "{e}");
            assert!(e.message.contains(message), "{e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("{}:{line}:{column}: ", e.file)),
                "{shown}"
            );
        }
    }

    #[test]
    fn check_accepts_calls_opa_accepts() {
        let fine = "package portcullis\nimport rego.v1\nimport data.portcullis.settings as s\n\nmine(x) := upper(x)\n\nmine_out if {\n\tmine(\"a\", y)\n\ty == \"A\"\n\tcount(\"abc\") == 3\n\tglob.match(\"a*\", null, \"ab\")\n\tnot data.portcullis.opted_in({}, {})\n\ts.template == \"standard\"\n\tprint(\"x\", 1, 2)\n}\n\nrequest_dangers contains {\"kind\": \"x\", \"key\": \"k\", \"msg\": \"m\", \"why\": \"w\"} if mine_out\n";
        let dir = standard_with(&[("mine.rego", fine)]);
        let report = policy_check(&PolicySource::Dir(dir.path().to_path_buf()));
        assert!(report.is_ok(), "{:?}", report.err());
        for template in [Template::Standard, Template::Strict, Template::Permissive] {
            assert!(policy_check(&PolicySource::Embedded(template)).is_ok());
        }
    }

    #[test]
    fn eval_through_the_same_code_as_serve() {
        let trust = r#"[{"caller_service": "ci", "target_container": "web-*", "can_restart": true, "id": "t1"}]"#;
        let input = r#"{"caller": {"name": "ci", "admin": false, "identified": true},
            "action": "container.restart", "resource": {"kind": "container", "name": "web-2"},
            "target": {"name": "web-2", "labels": {}}, "body": null, "file": null}"#;
        let d = policy_eval(
            &PolicySource::Embedded(Template::Standard),
            input,
            Some(trust),
        )
        .unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.trust_id.as_deref(), Some("t1"));
        let text = render_decision(&d);
        assert!(
            text.contains("decision: allow") && text.contains("trust_id: t1"),
            "{text}"
        );
        let denied = policy_eval(
            &PolicySource::Embedded(Template::Standard),
            &input.replace("restart", "exec"),
            Some(trust),
        )
        .unwrap();
        assert!(!denied.allowed);
        assert!(policy_eval(
            &PolicySource::Embedded(Template::Standard),
            input,
            Some(r#"[{"caller_service": "ci"}]"#)
        )
        .is_err());
    }
}
