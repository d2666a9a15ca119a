use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
fn run(policy: &str, rule: &str, input: &str) {
    let mut engine = regorus::Engine::new();
    engine.add_policy("p.rego".into(), policy.into()).unwrap();
    engine.set_input(regorus::Value::from_json_str(input).unwrap());
    let interp = engine.eval_rule(rule.into()).unwrap();
    let r: regorus::Rc<str> = rule.into();
    let cp = engine.compile_with_entrypoint(&r).unwrap();
    let prog = Compiler::compile_from_policy(&cp, &[rule]).unwrap();
    let mut vm = RegoVM::new_with_policy(cp);
    vm.load_program(prog);
    vm.set_data(regorus::Value::new_object()).unwrap();
    vm.set_input(regorus::Value::from_json_str(input).unwrap());
    println!("interp={interp} rvm={:?}", vm.execute());
}
#[test]
fn probe() {
    let head = "package p\nimport rego.v1\nt := {\"a\": 1}\nu := {\"b\": 2}\n";
    run(
        &format!(
            "{head}r := n if {{ n := t[input.k] }} else := n if {{ n := u[input.k] }} else := 0\n"
        ),
        "data.p.r",
        r#"{"k":"b"}"#,
    );
    run(&format!("{head}r := t[input.k] if {{ t[input.k] }} else := u[input.k] if {{ u[input.k] }} else := 0\n"), "data.p.r", r#"{"k":"b"}"#);
    run(
        &format!("{head}r := 1 if {{ t[input.k] }} else := 2 if {{ u[input.k] }} else := 0\n"),
        "data.p.r",
        r#"{"k":"b"}"#,
    );
    run(
        &format!("{head}r := 1 if {{ t[input.k] }} else := 2\n"),
        "data.p.r",
        r#"{"k":"b"}"#,
    );
    run(&format!("{head}r := 1 if {{ input.k == \"a\" }} else := 2 if {{ input.k == \"b\" }} else := 0\n"), "data.p.r", r#"{"k":"b"}"#);
    run(&format!("{head}r := n if {{ n := t[input.k] }}\nr := n if {{ not t[input.k]; n := u[input.k] }}\n"), "data.p.r", r#"{"k":"b"}"#);
}
