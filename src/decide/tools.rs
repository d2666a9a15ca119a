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
    /// Where the rule starts.
    pub file: String,
    pub row: u32,
    pub passed: bool,
    /// Evaluation error, if any (an error is not a pass).
    pub error: Option<String>,
    /// For a failure: the first statement of the rule's body that does not
    /// hold (see [`failed_statement`]).
    pub failed: Option<FailedStatement>,
    #[serde(skip)]
    pub duration: Duration,
}

/// The statement that made a test fail.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedStatement {
    pub row: u32,
    pub text: String,
}

/// Lines of one policy file that tests reached or not (`--coverage`).
#[derive(Debug, Clone, Serialize)]
pub struct FileCoverage {
    pub file: String,
    pub covered: Vec<u32>,
    pub not_covered: Vec<u32>,
}

/// Every test's outcome, or the compile errors that kept tests from running.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TestReport {
    pub outcomes: Vec<TestOutcome>,
    pub compile_errors: Vec<CompileError>,
    /// Policy files (tests excluded) with `--coverage`.
    pub coverage: Option<Vec<FileCoverage>>,
}

const RULE_LINE: &str =
    "--------------------------------------------------------------------------------\n";

impl TestReport {
    pub fn passed(&self) -> bool {
        self.compile_errors.is_empty()
            && !self.outcomes.is_empty()
            && self.outcomes.iter().all(|o| o.passed)
    }

    /// Process exit code for `portcullis policy test`, as `opa test`'s: 0
    /// when every test passes, 2 for a failure, an error, a policy that does
    /// not compile or no test at all.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            2
        }
    }

    /// `opa test` style: failures and errors (every test with `verbose`),
    /// grouped by file, then a summary.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        if !self.compile_errors.is_empty() {
            for e in &self.compile_errors {
                out.push_str(&format!("{e}\n"));
            }
            out.push_str(&format!(
                "{} compile error(s): no test was run\n",
                self.compile_errors.len()
            ));
            return out;
        }
        let mut file = None;
        for o in &self.outcomes {
            if o.passed && !verbose {
                continue;
            }
            if file != Some(&o.file) {
                if file.is_some() {
                    out.push('\n');
                }
                out.push_str(&format!("{}:\n", o.file));
                file = Some(&o.file);
            }
            let verdict = match (&o.error, o.passed) {
                (Some(_), _) => "ERROR",
                (None, true) => "PASS",
                (None, false) => "FAIL",
            };
            out.push_str(&format!("{}: {} ({:?})\n", o.name, verdict, o.duration));
            if !o.passed {
                out.push_str(&format!("  {}:{}: rule {}\n", o.file, o.row, o.name));
            }
            if let Some(f) = &o.failed {
                out.push_str(&format!("  {}:{}: fails: {}\n", o.file, f.row, f.text));
            }
            if let Some(e) = &o.error {
                for line in e.trim().lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        let total = self.outcomes.len();
        let errors = self.outcomes.iter().filter(|o| o.error.is_some()).count();
        let passed = self.outcomes.iter().filter(|o| o.passed).count();
        let failed = total - passed - errors;
        out.push_str(RULE_LINE);
        if total == 0 {
            out.push_str("no test_* rules found\n");
        }
        if passed > 0 {
            out.push_str(&format!("PASS: {passed}/{total}\n"));
        }
        if failed > 0 {
            out.push_str(&format!("FAIL: {failed}/{total}\n"));
        }
        if errors > 0 {
            out.push_str(&format!("ERROR: {errors}/{total}\n"));
        }
        if let Some(coverage) = &self.coverage {
            out.push_str(RULE_LINE);
            let (covered, missed) = coverage.iter().fold((0, 0), |(c, m), f| {
                (c + f.covered.len(), m + f.not_covered.len())
            });
            out.push_str(&format!(
                "coverage: {:.1}% ({covered} of {} lines)\n",
                percent(covered, covered + missed),
                covered + missed
            ));
            for f in coverage.iter().filter(|f| !f.not_covered.is_empty()) {
                out.push_str(&format!(
                    "{}: not covered: {}\n",
                    f.file,
                    ranges(&f.not_covered)
                ));
            }
        }
        out
    }

    /// `opa test --format json`: a list of `{location: {file, row, col},
    /// package, name, fail, error, duration}` (nanoseconds; `fail` and `error`
    /// only when set, as OPA omits them), plus `failed_statement`. With
    /// `--coverage`, `{"tests": [...], "coverage": {...}}`; compile errors are
    /// `{"errors": [{message, location}]}`.
    pub fn render_json(&self) -> String {
        use serde_json::json;
        if !self.compile_errors.is_empty() {
            let errors: Vec<Value> = self
                .compile_errors
                .iter()
                .map(|e| {
                    json!({"message": e.message.trim(), "location": {"file": e.file, "row": e.line, "col": e.column}})
                })
                .collect();
            return format!("{:#}\n", json!({ "errors": errors }));
        }
        let tests: Vec<Value> = self
            .outcomes
            .iter()
            .map(|o| {
                let (package, rule) = o.name.rsplit_once('.').unwrap_or(("data", &o.name));
                let mut t = json!({
                    "location": {"file": o.file, "row": o.row, "col": 1},
                    "package": package,
                    "name": rule,
                    "duration": o.duration.as_nanos() as u64,
                });
                if !o.passed && o.error.is_none() {
                    t["fail"] = json!(true);
                }
                if let Some(e) = &o.error {
                    t["error"] = json!({ "message": e });
                }
                if let Some(f) = &o.failed {
                    t["failed_statement"] = json!({"row": f.row, "text": f.text});
                }
                t
            })
            .collect();
        let doc = match &self.coverage {
            None => Value::Array(tests),
            Some(files) => {
                let (covered, missed) = files.iter().fold((0, 0), |(c, m), f| {
                    (c + f.covered.len(), m + f.not_covered.len())
                });
                let per_file: serde_json::Map<String, Value> = files
                    .iter()
                    .map(|f| {
                        (
                            f.file.clone(),
                            json!({"covered": f.covered, "not_covered": f.not_covered}),
                        )
                    })
                    .collect();
                json!({
                    "tests": tests,
                    "coverage": {
                        "files": per_file,
                        "covered_lines": covered,
                        "not_covered_lines": missed,
                        "coverage": percent(covered, covered + missed),
                    }
                })
            }
        };
        format!("{doc:#}\n")
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        (part as f64) * 100.0 / (whole as f64)
    }
}

/// `3-5, 9` for `[3, 4, 5, 9]`.
fn ranges(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// A `test_*` rule: where it is and what it needs to be probed.
struct TestRule {
    name: String,
    package: String,
    rule: String,
    file: String,
    /// Byte offset of the rule in the file's text.
    offset: usize,
    row: u32,
}

/// `test_*` rules (as OPA finds them: any package, a rule whose name starts
/// with `test_` at the start of a line) in file order; a rule defined twice
/// is run once, at its first definition.
fn discover_tests(files: &[(String, String)]) -> Vec<TestRule> {
    let mut tests: Vec<TestRule> = Vec::new();
    for (file, text) in files {
        let mut package = None;
        let mut offset = 0;
        for (index, line) in text.split_inclusive('\n').enumerate() {
            if let Some(rest) = line.strip_prefix("package ") {
                package = Some(rest.trim().to_string());
            } else if line.starts_with("test_") {
                let rule: String = line
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(pkg) = &package {
                    let name = format!("data.{pkg}.{rule}");
                    if !tests.iter().any(|t| t.name == name) {
                        tests.push(TestRule {
                            name,
                            package: pkg.clone(),
                            rule,
                            file: file.clone(),
                            offset,
                            row: index as u32 + 1,
                        });
                    }
                }
            }
            offset += line.len();
        }
    }
    tests
}

/// The statements of a rule's body, each with its line: the body of
/// `name if { ... }` split at newlines and `;` outside brackets, strings and
/// comments (a line that starts with `with`, or follows one that ends in an
/// operator, continues the statement), or the expression of `name if expr`.
fn body_statements(text: &str, offset: usize, row: u32) -> Option<Vec<(u32, String)>> {
    let rest = &text[offset..];
    let head = &rest[..rest.find('\n').unwrap_or(rest.len())];
    let after_if = offset + head.find(" if ")? + 4;
    let tail = &text[after_if..];
    let body_start = after_if + (tail.len() - tail.trim_start_matches([' ', '\t']).len());
    let block = text[body_start..].starts_with('{');
    let start = if block { body_start + 1 } else { body_start };
    let mut statements: Vec<(u32, String)> = Vec::new();
    let mut current = String::new();
    let mut current_row = row;
    let mut line = row;
    let mut depth: i32 = 0;
    let (mut in_string, mut in_raw, mut escaped, mut in_comment) = (false, false, false, false);
    let push = |statements: &mut Vec<(u32, String)>, current: &mut String, at: u32| {
        let s = current.split_whitespace().collect::<Vec<_>>().join(" ");
        if !s.is_empty() {
            let continues = s.starts_with("with ")
                || s.starts_with(['=', '!', '+', '*', '/', '<', '>', '|', '&'])
                || statements.last().is_some_and(|(_, prev): &(u32, String)| {
                    prev.ends_with(['=', '+', '-', '*', '/', '<', '>', '|', '&', ','])
                });
            match statements.last_mut() {
                Some((_, prev)) if continues => {
                    prev.push(' ');
                    prev.push_str(&s);
                }
                _ => statements.push((at, s)),
            }
        }
        current.clear();
    };
    for c in text[start..].chars() {
        if in_comment && c != '\n' {
            continue;
        }
        in_comment = false;
        if in_string || in_raw {
            current.push(c);
            if c == '\n' {
                line += 1;
            }
            if in_raw {
                in_raw = c != '`';
            } else if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '#' => {
                in_comment = true;
                continue;
            }
            '"' => in_string = true,
            '`' => in_raw = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    // The closing brace of the body.
                    push(&mut statements, &mut current, current_row);
                    return Some(statements);
                }
            }
            _ => {}
        }
        if depth == 0 && (c == '\n' || c == ';') {
            push(&mut statements, &mut current, current_row);
            if c == '\n' {
                line += 1;
                if !block {
                    return Some(statements);
                }
            }
            continue;
        }
        if c == '\n' {
            line += 1;
        }
        if current.trim().is_empty() && !c.is_whitespace() {
            current_row = line;
        }
        current.push(c);
    }
    push(&mut statements, &mut current, current_row);
    (!block).then_some(statements)
}

/// Which statement of a failed test's body does not hold: rule `probe_k`
/// holds the first k+1 statements, in the test's package with its file's
/// imports; the first probe that is not `true` names the statement. `None`
/// when the body cannot be split or every statement holds (a test whose
/// value is not `true`).
fn failed_statement(
    engine: &regorus::Engine,
    test: &TestRule,
    text: &str,
) -> Option<FailedStatement> {
    let statements = body_statements(text, test.offset, test.row)?;
    if statements.is_empty() {
        return None;
    }
    let mut module = format!("package {}\n\n", test.package);
    let imports: Vec<&str> = text.lines().filter(|l| l.starts_with("import ")).collect();
    if !imports.iter().any(|l| l.trim() == "import rego.v1") {
        module.push_str("import rego.v1\n");
    }
    for import in &imports {
        module.push_str(import);
        module.push('\n');
    }
    let probe = |k: usize| format!("portcullis_probe_{}_{k}", test.rule);
    for k in 0..statements.len() {
        module.push_str(&format!("\n{} if {{\n", probe(k)));
        for (_, s) in &statements[..=k] {
            module.push_str(&format!("\t{s}\n"));
        }
        module.push_str("}\n");
    }
    let mut engine = engine.clone();
    engine
        .add_policy(format!("{}#probe", test.file), module)
        .ok()?;
    for (k, (row, text)) in statements.iter().enumerate() {
        let held = engine
            .eval_rule(format!("data.{}.{}", test.package, probe(k)))
            .is_ok_and(|v| v == regorus::Value::from(true));
        if !held {
            return Some(FailedStatement {
                row: *row,
                text: text.clone(),
            });
        }
    }
    None
}

/// The files `policy test` runs: a directory's `*.rego` (tests included), or
/// an embedded template with every shipped test.
fn test_files(source: &PolicySource) -> Result<Vec<(String, String)>, Vec<CompileError>> {
    match source {
        PolicySource::Embedded(template) => {
            let mut files = template.files();
            files.extend(template.test_files());
            Ok(files)
        }
        PolicySource::Dir(dir) => read_dir(dir, true),
        bundle @ PolicySource::Bundle { .. } => read_source(bundle),
    }
}

/// Run every `test_*` rule of the policy files and the `*_test.rego` files:
/// for a directory, the files in it; for a template, every shipped test.
/// Tests run on the interpreter (`with` is fine). Everything is compiled
/// first, with the checks of `policy check` (what OPA's compiler rejects):
/// a policy that does not compile is reported as such and no test runs.
/// With `coverage`, which lines of the policy files (not the tests) the
/// tests reached.
pub fn policy_test(source: &PolicySource, coverage: bool) -> TestReport {
    let files = match test_files(source) {
        Ok(files) => files,
        Err(errors) => {
            return TestReport {
                compile_errors: errors,
                ..Default::default()
            }
        }
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
    let static_errors = crate::decide::lint::check(engine.get_modules());
    if !static_errors.is_empty() {
        return TestReport {
            compile_errors: static_errors,
            ..Default::default()
        };
    }
    engine.set_enable_coverage(coverage);
    let mut outcomes = Vec::new();
    for test in discover_tests(&files) {
        let started = Instant::now();
        let result = engine.eval_rule(test.name.clone());
        let duration = started.elapsed();
        let (passed, error) = match result {
            Ok(v) => (v == regorus::Value::from(true), None),
            Err(e) => (false, Some(format!("{e:#}"))),
        };
        let failed = if !passed && error.is_none() {
            let text = files
                .iter()
                .find(|(n, _)| *n == test.file)
                .map(|(_, t)| t.as_str())
                .unwrap_or("");
            failed_statement(&engine, &test, text)
        } else {
            None
        };
        outcomes.push(TestOutcome {
            name: test.name,
            file: test.file,
            row: test.row,
            passed,
            error,
            failed,
            duration,
        });
    }
    let coverage = coverage.then(|| {
        engine
            .get_coverage_report()
            .map(|report| {
                report
                    .files
                    .into_iter()
                    .filter(|f| !f.path.ends_with("_test.rego"))
                    .map(|f| FileCoverage {
                        file: f.path,
                        covered: f.covered.into_iter().collect(),
                        not_covered: f.not_covered.into_iter().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    TestReport {
        outcomes,
        compile_errors: Vec::new(),
        coverage,
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

/// One rule's part in a decision: where it is defined and what it came to
/// for this input.
#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    /// `data.portcullis.allowed_by_trust`.
    pub rule: String,
    /// `file:line` of each definition.
    pub at: Vec<String>,
    /// Its value for this input.
    pub value: Value,
    /// The decision's reasons this rule's value holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// `policy eval --explain`: the decision, the rules that produced it and
/// each reason, and with `--full` every rule defined for the input.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// The entry point and the rules whose values hold the decision's
    /// reasons (what produced it), in the policy's order.
    pub decided_by: Vec<RuleTrace>,
    /// With `--full`: every rule without arguments and its value (undefined
    /// rules left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleTrace>>,
}

/// Whether `value` is, or holds, the string `reason` (as a string, or an
/// element or field of an array, set or object, at any depth).
fn holds_reason(value: &Value, reason: &str) -> bool {
    match value {
        Value::String(s) => s == reason,
        Value::Array(a) => a.iter().any(|v| holds_reason(v, reason)),
        Value::Object(o) => o.values().any(|v| holds_reason(v, reason)),
        _ => false,
    }
}

/// Decide `input_json` as `policy eval` does, then say which rules produced
/// the decision: every rule without arguments is evaluated by name on the
/// same input and data (on the interpreter), and those whose values hold a
/// reason of the decision are named with their file:line.
pub fn policy_explain(
    source: &PolicySource,
    input_json: &str,
    trust_json: Option<&str>,
    full: bool,
) -> anyhow::Result<Explanation> {
    let decision = policy_eval(source, input_json, trust_json)?;
    let files = read_source(source).map_err(|e| anyhow::anyhow!("{}", errors_text(&e)))?;
    let snapshot = match trust_json {
        Some(t) => parse_trust_json(t)?,
        None => TrustSnapshot {
            revision: 0,
            relationships: Vec::new(),
        },
    };
    let input: Value =
        serde_json::from_str(input_json).map_err(|e| anyhow::anyhow!("input is not JSON: {e}"))?;
    explain_with(&files, snapshot, &input, decision, full)
}

/// Explain `decision`, made on `input` by the engine's current policy and
/// trust (`trust/check` with `explain: true`).
pub fn explain_decision(
    engine: &PolicyEngine,
    input: &super::PolicyInput,
    decision: Decision,
    full: bool,
) -> anyhow::Result<Explanation> {
    let files =
        read_source(&engine.source()).map_err(|e| anyhow::anyhow!("{}", errors_text(&e)))?;
    let input = serde_json::to_value(input)?;
    explain_with(&files, engine.trust_snapshot()?, &input, decision, full)
}

fn explain_with(
    files: &[(String, String)],
    snapshot: TrustSnapshot,
    input: &Value,
    decision: Decision,
    full: bool,
) -> anyhow::Result<Explanation> {
    let mut engine = engine_with(files).map_err(|e| anyhow::anyhow!("{}", errors_text(&e)))?;
    let trust = crate::trust::CompiledTrust::build(snapshot.revision, snapshot.relationships)?;
    let now_ns = match input.get("now").and_then(Value::as_str) {
        Some(n) => crate::trust::parse_rfc3339("now", n)?.unix_timestamp_nanos(),
        None => time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
    };
    engine.set_input(super::facts::to_policy_value(input, &trust, now_ns)?);
    engine.add_data(super::facts::json_to_value(&trust.data))?;
    let places = super::lint::rule_places(engine.get_modules());
    let mut decided_by = Vec::new();
    let mut rules = Vec::new();
    for place in places {
        let Ok(value) = engine.eval_rule(place.path.clone()) else {
            continue;
        };
        if value == regorus::Value::Undefined {
            continue;
        }
        let value: Value = serde_json::to_value(&value).unwrap_or(Value::Null);
        let reasons: Vec<String> = decision
            .reasons
            .iter()
            .filter(|r| holds_reason(&value, r))
            .cloned()
            .collect();
        let trace = RuleTrace {
            at: place
                .places
                .iter()
                .map(|(f, l)| format!("{f}:{l}"))
                .collect(),
            rule: place.path,
            value,
            reasons,
        };
        if trace.rule == super::engine::ENTRY_POINT || !trace.reasons.is_empty() {
            decided_by.push(trace.clone());
        }
        if full {
            rules.push(trace);
        }
    }
    Ok(Explanation {
        decision,
        decided_by,
        rules: full.then_some(rules),
    })
}

fn errors_text(errors: &[CompileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How `policy eval --explain` prints: the decision, then each rule that
/// produced it (short values), then with `--full` every rule.
pub fn render_explanation(e: &Explanation) -> String {
    let mut out = render_decision(&e.decision);
    let short = |v: &Value| {
        let s = v.to_string();
        if s.chars().count() > 100 {
            format!("{}…", s.chars().take(100).collect::<String>())
        } else {
            s
        }
    };
    out.push_str("decided by:\n");
    for t in &e.decided_by {
        out.push_str(&format!("  {} ({})\n", t.rule, t.at.join(", ")));
        for r in &t.reasons {
            out.push_str(&format!("    reason: {r}\n"));
        }
    }
    if let Some(rules) = &e.rules {
        out.push_str("every rule defined for this input:\n");
        for t in rules {
            out.push_str(&format!(
                "  {} = {} ({})\n",
                t.rule,
                short(&t.value),
                t.at.join(", ")
            ));
        }
    }
    out
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
            let report = policy_test(&PolicySource::Embedded(template), false);
            assert!(report.passed(), "{template}:\n{}", report.render(true));
            assert!(report.outcomes.len() >= 70, "{template}");
            let quiet = report.render(false);
            assert!(quiet.starts_with("-----"), "only the summary: {quiet}");
            assert!(quiet.contains("PASS: "), "{quiet}");
            // Every template's tests, whichever template is served.
            for file in [
                "strict_test.rego",
                "permissive_test.rego",
                "portcullis_test.rego",
            ] {
                assert!(report.outcomes.iter().any(|o| o.file == file), "{file}");
            }
        }
    }

    const MINE: &str = "package mine_test\nimport rego.v1\n\nimport data.portcullis_testlib as t\n\ntest_ok if data.portcullis.settings.template == \"standard\"\n\ntest_wrong if data.portcullis.settings.template == \"strict\"\n\ntest_error if 1 / 0\n\ntest_third_statement if {\n\tx := 1\n\t# a comment; with a \"quote\n\ty := [\n\t\t1,\n\t\t\"}\",\n\t]\n\tcount(y) == 2; x == 1\n\tt.allowed(t.req(\"container.exec\", [t.rel({})]))\n\t\t== true\n\tx == 1\n}\n";

    #[test]
    fn a_failure_names_the_rule_and_the_statement_that_failed() {
        let tests = Template::Standard.test_files();
        let testlib = &tests
            .iter()
            .find(|(n, _)| n == "testlib_test.rego")
            .unwrap()
            .1;
        let dir = standard_with(&[("mine_test.rego", MINE), ("testlib_test.rego", testlib)]);
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()), false);
        let text = report.render(false);
        assert!(!report.passed(), "{text}");
        assert_eq!(report.exit_code(), 2);
        assert!(!text.contains("test_ok"), "passes only with -v: {text}");
        assert!(
            report.render(true).contains("data.mine_test.test_ok: PASS"),
            "{}",
            report.render(true)
        );
        let file = dir.path().join("mine_test.rego").display().to_string();
        assert!(text.contains("data.mine_test.test_wrong: FAIL"), "{text}");
        assert!(
            text.contains(&format!("{file}:8: rule data.mine_test.test_wrong")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{file}:8: fails: data.portcullis.settings.template == \"strict\""
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{file}:20: fails: t.allowed(t.req(\"container.exec\", [t.rel({{}})])) == true"
            )),
            "{text}"
        );
        assert!(text.contains("data.mine_test.test_error: ERROR"), "{text}");
        assert!(text.contains("divide by zero"), "{text}");
        assert!(text.contains("FAIL: 2/"), "{text}");
        assert!(text.contains("ERROR: 1/"), "{text}");

        let json: Value = serde_json::from_str(&report.render_json()).unwrap();
        let wrong = json
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "test_wrong")
            .unwrap();
        assert_eq!(wrong["package"], "data.mine_test");
        assert_eq!(wrong["location"]["row"], 8);
        assert_eq!(wrong["location"]["file"], file.as_str());
        assert_eq!(wrong["fail"], true);
        assert_eq!(wrong["failed_statement"]["row"], 8);
        let ok = json
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "test_ok")
            .unwrap();
        assert!(
            ok.get("fail").is_none() && ok.get("error").is_none(),
            "{ok}"
        );
        assert!(ok["duration"].as_u64().unwrap() > 0);
        let error = json
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "test_error")
            .unwrap();
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("divide by zero"));
    }

    #[test]
    fn body_statements_split_like_rego() {
        let text = "test_a if {\n\ta := {\"x\": [1,\n\t\t2]}\n\tnot b with input as 1\n\t\twith data.x as 2\n\tc; d\n}\ntest_b if x == 1 # c\n";
        assert_eq!(
            body_statements(text, 0, 1).unwrap(),
            vec![
                (2, "a := {\"x\": [1, 2]}".to_string()),
                (4, "not b with input as 1 with data.x as 2".to_string()),
                (6, "c".to_string()),
                (6, "d".to_string()),
            ]
        );
        let offset = text.find("test_b").unwrap();
        assert_eq!(
            body_statements(text, offset, 8).unwrap(),
            vec![(8, "x == 1".to_string())]
        );
    }

    #[test]
    fn coverage_lists_the_policy_lines_no_test_reached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.rego"),
            "package p\nimport rego.v1\n\nsmall(x) if {\n\tx < 10\n}\n\nlarge(x) if {\n\tx > 100\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("p_test.rego"),
            "package p_test\nimport rego.v1\n\ntest_small if data.p.small(1)\n",
        )
        .unwrap();
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()), true);
        assert!(report.passed(), "{}", report.render(true));
        let coverage = report.coverage.as_ref().unwrap();
        assert_eq!(coverage.len(), 1, "tests are not covered: {coverage:?}");
        assert!(coverage[0].covered.contains(&5), "{coverage:?}");
        assert!(coverage[0].not_covered.contains(&9), "{coverage:?}");
        let text = report.render(false);
        assert!(text.contains("p.rego: not covered: "), "{text}");
        let json: Value = serde_json::from_str(&report.render_json()).unwrap();
        assert!(
            json["coverage"]["not_covered_lines"].as_u64().unwrap() >= 1,
            "{json}"
        );
        assert_eq!(json["tests"][0]["name"], "test_small");
    }

    #[test]
    fn a_policy_that_does_not_compile_is_one_error_not_a_failure() {
        let dir = standard_with(&[(
            "strict.rego",
            "package portcullis.settings\n\nimport rego.v1\n\ntemplate := \"strict\"\n",
        )]);
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()), false);
        let text = report.render(false);
        assert_eq!(report.exit_code(), 2, "{text}");
        assert!(report.outcomes.is_empty());
        assert!(
            text.contains("strict.rego:5:1: conflicting rules"),
            "{text}"
        );
        assert!(!text.contains("FAIL"), "{text}");
        let json: Value = serde_json::from_str(&report.render_json()).unwrap();
        assert_eq!(json["errors"][0]["location"]["row"], 5, "{json}");
    }

    #[test]
    fn a_test_file_that_does_not_parse_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x_test.rego"),
            "package x_test\ntest_a if {\n",
        )
        .unwrap();
        let report = policy_test(&PolicySource::Dir(dir.path().to_path_buf()), false);
        assert!(!report.passed());
        assert_eq!(report.exit_code(), 2);
        assert!(!report.render(false).contains("FAIL: 0/0"));
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
        assert!(
            ok.files.iter().any(|f| f == "template.rego"),
            "{:?}",
            ok.files
        );
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
    fn explain_names_the_rules_that_produced_each_reason_with_file_and_line() {
        let trust = r#"[{"caller_service": "ci", "target_container": "web-*", "can_restart": true, "id": "t1"}]"#;
        let input = r#"{"caller": {"name": "ci", "admin": false, "identified": true},
            "action": "container.restart", "resource": {"kind": "container", "name": "web-2"},
            "target": {"name": "web-2", "labels": {}}, "body": null, "file": null}"#;
        let source = PolicySource::Embedded(Template::Standard);
        let rules = |e: &Explanation| -> Vec<String> {
            e.decided_by.iter().map(|t| t.rule.clone()).collect()
        };
        let allowed = policy_explain(&source, input, Some(trust), false).unwrap();
        assert!(allowed.decision.allowed);
        assert!(rules(&allowed).contains(&"data.portcullis.allowed_by_trust".to_string()));
        let by = &allowed.decided_by[0];
        assert!(by.at[0].starts_with("portcullis.rego:"), "{by:?}");
        assert!(allowed.rules.is_none());
        let denied = policy_explain(
            &source,
            &input.replace("restart", "exec"),
            Some(trust),
            true,
        )
        .unwrap();
        assert!(!denied.decision.allowed);
        assert!(rules(&denied).contains(&"data.portcullis.no_grant_reason".to_string()));
        assert!(rules(&denied).contains(&"data.portcullis.decision".to_string()));
        assert!(!rules(&denied).contains(&"data.portcullis.allowed_by_trust".to_string()));
        // --full: every defined rule, the entry point among them.
        let all = denied.rules.as_ref().unwrap();
        assert!(all.len() > 20 && all.iter().any(|t| t.rule == "data.portcullis.need"));
        let text = render_explanation(&denied);
        assert!(
            text.contains("decided by:") && text.contains("needs can_exec"),
            "{text}"
        );
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
