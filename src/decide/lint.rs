//! Static checks regorus does not make: what OPA's compiler rejects before a
//! policy is served.
//!
//! Why: regorus 0.14 parses a policy and compiles it to the RVM without
//! checking calls or rule kinds. A call with the wrong number of arguments,
//! a literal of the wrong type (`startswith(input.image, 5)`), a misspelt
//! function (`startwith`, which only makes the RVM compiler give up and the
//! interpreter fail per request) or a second definition of a complete rule in
//! another file (`decision := …`, `dangers contains …`) all pass `add_policy`
//! and then deny every request, or silently drop a rule. These checks run on
//! regorus's own AST wherever a policy is compiled (`policy check`, `serve`,
//! hot reload), so such a policy never replaces a working one.
//!
//! What is checked:
//! - every call names a built-in regorus provides or a function the policies
//!   define, with as many arguments as it takes (one more is an output
//!   variable, as in OPA);
//! - literal arguments of common built-ins have the type the built-in takes
//!   ([`PARAMS`]; other built-ins get the count check only);
//! - a rule is of one kind (complete, partial set, partial object, function)
//!   wherever it is defined; a complete rule is defined in one file only; a
//!   rule has at most one `default`; a function has one number of arguments.

use std::collections::{BTreeMap, HashMap};

use regorus::unstable::{
    ArithOp, Expr, Literal, Module, Query, Ref, Rule, RuleAssign, RuleHead, Span, BUILTINS,
};

use super::engine::CompileError;

/// One problem found, at a place in a file.
fn error_at(span: &Span, message: String) -> CompileError {
    CompileError {
        file: span.source.file().clone(),
        line: Some(span.line),
        column: Some(span.col),
        message,
    }
}

/// What a parameter of a built-in accepts (for literal arguments).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Any,
    String,
    Number,
    Array,
    Set,
    Object,
    /// array, set or object
    Collection,
    /// string, array, set or object (`count`)
    Countable,
    /// array or set
    ArrayOrSet,
    /// array or null (`glob.match` delimiters)
    ArrayOrNull,
    /// number or array (`time.date`, …)
    NumberOrArray,
}

impl Kind {
    fn accepts(self, literal: Kind) -> bool {
        use Kind as K;
        match self {
            K::Any => true,
            K::Collection => matches!(literal, K::Array | K::Set | K::Object),
            K::Countable => matches!(literal, K::String | K::Array | K::Set | K::Object),
            K::ArrayOrSet => matches!(literal, K::Array | K::Set),
            // `null` is the only other literal; it has no Kind of its own.
            K::ArrayOrNull => literal == K::Array,
            K::NumberOrArray => matches!(literal, K::Number | K::Array),
            exact => exact == literal,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Any => "any value",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Array => "an array",
            Kind::Set => "a set",
            Kind::Object => "an object",
            Kind::Collection => "an array, set or object",
            Kind::Countable => "a string, array, set or object",
            Kind::ArrayOrSet => "an array or set",
            Kind::ArrayOrNull => "an array or null",
            Kind::NumberOrArray => "a number or an array",
        }
    }
}

/// Parameter types of the built-ins policies commonly call, as OPA declares them.
const PARAMS: &[(&str, &[Kind])] = {
    use Kind::*;
    &[
        ("abs", &[Number]),
        ("array.concat", &[Array, Array]),
        ("array.reverse", &[Array]),
        ("array.slice", &[Array, Number, Number]),
        ("base64.decode", &[String]),
        ("base64.encode", &[String]),
        ("ceil", &[Number]),
        ("concat", &[String, ArrayOrSet]),
        ("contains", &[String, String]),
        ("count", &[Countable]),
        ("endswith", &[String, String]),
        ("floor", &[Number]),
        ("format_int", &[Number, Number]),
        ("glob.match", &[String, ArrayOrNull, String]),
        ("indexof", &[String, String]),
        ("intersection", &[Set]),
        ("json.unmarshal", &[String]),
        ("lower", &[String]),
        ("max", &[ArrayOrSet]),
        ("min", &[ArrayOrSet]),
        ("net.cidr_contains", &[String, String]),
        ("numbers.range", &[Number, Number]),
        ("object.filter", &[Object, Collection]),
        ("object.get", &[Object, Any, Any]),
        ("object.keys", &[Object]),
        ("object.remove", &[Object, Collection]),
        ("object.union", &[Object, Object]),
        ("regex.match", &[String, String]),
        ("regex.split", &[String, String]),
        ("replace", &[String, String, String]),
        ("round", &[Number]),
        ("semver.compare", &[String, String]),
        ("sort", &[ArrayOrSet]),
        ("split", &[String, String]),
        ("sprintf", &[String, Array]),
        ("startswith", &[String, String]),
        ("strings.any_prefix_match", &[Any, Any]),
        ("strings.any_suffix_match", &[Any, Any]),
        ("strings.reverse", &[String]),
        ("substring", &[String, Number, Number]),
        ("sum", &[ArrayOrSet]),
        ("time.add_date", &[Number, Number, Number, Number]),
        ("time.clock", &[NumberOrArray]),
        ("time.date", &[NumberOrArray]),
        ("time.parse_duration_ns", &[String]),
        ("time.parse_ns", &[String, String]),
        ("time.parse_rfc3339_ns", &[String]),
        ("time.weekday", &[NumberOrArray]),
        ("trim", &[String, String]),
        ("trim_left", &[String, String]),
        ("trim_prefix", &[String, String]),
        ("trim_right", &[String, String]),
        ("trim_space", &[String]),
        ("trim_suffix", &[String, String]),
        ("union", &[Set]),
        ("units.parse", &[String]),
        ("units.parse_bytes", &[String]),
        ("upper", &[String]),
    ]
};

/// The type of a literal argument; `None` for anything computed (and `null`,
/// which only `ArrayOrNull` and `Any` take: see [`literal_null`]).
fn literal_kind(expr: &Expr) -> Option<Kind> {
    match expr {
        Expr::String { .. } | Expr::RawString { .. } => Some(Kind::String),
        Expr::Number { .. } => Some(Kind::Number),
        Expr::Array { .. } | Expr::ArrayCompr { .. } => Some(Kind::Array),
        Expr::Set { .. } | Expr::SetCompr { .. } => Some(Kind::Set),
        Expr::Object { .. } | Expr::ObjectCompr { .. } => Some(Kind::Object),
        _ => None,
    }
}

fn literal_null(expr: &Expr) -> bool {
    matches!(expr, Expr::Null { .. })
}

fn literal_bool(expr: &Expr) -> bool {
    matches!(expr, Expr::Bool { .. })
}

/// `a.b.c` for a variable followed by dotted fields; `None` for anything else.
fn dotted(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, field, .. } => {
            let base = dotted(refr)?;
            Some(format!("{base}.{}", field.0.text()))
        }
        Expr::RefBrack { refr, index, .. } => {
            // `data.x["y"]` is `data.x.y`.
            let base = dotted(refr)?;
            match index.as_ref() {
                Expr::String { span, .. } => {
                    let text = span.text();
                    Some(format!("{base}.{}", text.trim_matches('"')))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// What kind of rule a definition is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RuleKind {
    Complete,
    PartialSet,
    PartialObject,
    Function,
}

impl RuleKind {
    fn describe(self) -> &'static str {
        match self {
            RuleKind::Complete => "a complete rule",
            RuleKind::PartialSet => "a partial set rule (`contains`)",
            RuleKind::PartialObject => "a partial object rule (`x[k] := v`)",
            RuleKind::Function => "a function",
        }
    }
}

/// A rule head's path below its package (`x` of `x[k] := v` too).
fn head_path(refr: &Expr) -> Option<String> {
    match refr {
        Expr::RefBrack { refr, .. } => dotted(refr),
        other => dotted(other),
    }
}

struct Definition {
    kind: RuleKind,
    is_default: bool,
    arity: Option<usize>,
    file: String,
    span: Span,
}

/// Every rule of the policy set, by full path (`data.portcullis.decision`).
struct Rules {
    by_path: BTreeMap<String, Vec<Definition>>,
}

fn package_path(module: &Module) -> Option<String> {
    dotted(&module.package.refr).map(|p| format!("data.{p}"))
}

impl Rules {
    fn collect(modules: &[Ref<Module>]) -> Rules {
        let mut by_path: BTreeMap<String, Vec<Definition>> = BTreeMap::new();
        for module in modules {
            let Some(package) = package_path(module) else {
                continue;
            };
            for rule in &module.policy {
                let (refr, kind, is_default, arity, span) = match rule.as_ref() {
                    Rule::Spec { head, span, .. } => match head {
                        RuleHead::Compr { refr, .. } => {
                            let keyed = matches!(refr.as_ref(), Expr::RefBrack { .. });
                            let kind = if keyed {
                                RuleKind::PartialObject
                            } else {
                                RuleKind::Complete
                            };
                            (refr, kind, false, None, span)
                        }
                        RuleHead::Set { refr, .. } => {
                            (refr, RuleKind::PartialSet, false, None, span)
                        }
                        RuleHead::Func { refr, args, .. } => {
                            (refr, RuleKind::Function, false, Some(args.len()), span)
                        }
                    },
                    Rule::Default {
                        refr, args, span, ..
                    } => {
                        let kind = if args.is_empty() {
                            RuleKind::Complete
                        } else {
                            RuleKind::Function
                        };
                        let arity = (!args.is_empty()).then_some(args.len());
                        (refr, kind, true, arity, span)
                    }
                };
                let Some(name) = head_path(refr) else {
                    continue;
                };
                by_path
                    .entry(format!("{package}.{name}"))
                    .or_default()
                    .push(Definition {
                        kind,
                        is_default,
                        arity,
                        file: span.source.file().clone(),
                        span: span.clone(),
                    });
            }
        }
        Rules { by_path }
    }

    /// Conflicting definitions: kinds, files, defaults, arities.
    fn conflicts(&self, errors: &mut Vec<CompileError>) {
        for (path, definitions) in &self.by_path {
            let Some(first) = definitions.first() else {
                continue;
            };
            let at = |d: &Definition| format!("{}:{}:{}", d.file, d.span.line, d.span.col);
            for d in definitions.iter().skip(1) {
                if d.kind != first.kind {
                    errors.push(error_at(
                        &d.span,
                        format!(
                            "conflicting rules: {path} is {} here but {} at {}",
                            d.kind.describe(),
                            first.kind.describe(),
                            at(first)
                        ),
                    ));
                } else if d.kind == RuleKind::Function && d.arity != first.arity {
                    errors.push(error_at(
                        &d.span,
                        format!(
                            "conflicting rules: function {path} takes {} arguments here but {} at {}",
                            d.arity.unwrap_or(0),
                            first.arity.unwrap_or(0),
                            at(first)
                        ),
                    ));
                }
            }
            let defaults: Vec<&Definition> = definitions.iter().filter(|d| d.is_default).collect();
            if let [first_default, second, ..] = defaults.as_slice() {
                errors.push(error_at(
                    &second.span,
                    format!(
                        "conflicting rules: multiple default rules {path} (the other at {})",
                        at(first_default)
                    ),
                ));
            }
            // A complete rule's value comes from one file: a second file that
            // defines it too makes two values for one rule. Each file is told.
            if first.kind == RuleKind::Complete {
                let mut per_file: Vec<&Definition> = Vec::new();
                for d in definitions.iter().filter(|d| !d.is_default) {
                    if !per_file.iter().any(|p| p.file == d.file) {
                        per_file.push(d);
                    }
                }
                if per_file.len() > 1 {
                    for d in &per_file {
                        let others: Vec<String> = per_file
                            .iter()
                            .filter(|o| o.file != d.file)
                            .map(|o| at(o))
                            .collect();
                        errors.push(error_at(
                            &d.span,
                            format!(
                                "conflicting rules: complete rule {path} is also defined at {}",
                                others.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }

    fn function_arity(&self, path: &str) -> Option<Option<usize>> {
        let definitions = self.by_path.get(path)?;
        definitions
            .iter()
            .find(|d| d.kind == RuleKind::Function)
            .map(|d| d.arity)
    }
}

/// The checks of one module's calls.
struct Calls<'a> {
    rules: &'a Rules,
    package: String,
    /// `import data.x.y as z`: `z` → `data.x.y`.
    imports: HashMap<String, String>,
    errors: &'a mut Vec<CompileError>,
}

impl Calls<'_> {
    fn call(&mut self, fcn: &Expr, params: &[Ref<Expr>]) {
        let Some(name) = dotted(fcn) else {
            return;
        };
        let user = self.resolve_user(&name);
        let (arity, kinds) = match user {
            Some(arity) => (arity, None),
            None => match BUILTINS.get(name.as_str()) {
                Some((_, arity)) => (
                    Some(usize::from(*arity)),
                    PARAMS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k),
                ),
                // Variadic in OPA; regorus takes any number.
                None if name == "print" => (None, None),
                None => {
                    let near = suggestion(&name)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default();
                    self.errors.push(error_at(
                        fcn.span(),
                        format!(
                            "unknown function {name}: neither a built-in nor a function defined in the policies{near}"
                        ),
                    ));
                    return;
                }
            },
        };
        if let Some(arity) = arity {
            // One more argument is an output variable (`f(x, out)`).
            if params.len() != arity && params.len() != arity + 1 {
                self.errors.push(error_at(
                    fcn.span(),
                    format!(
                        "{name} takes {arity} argument{}, got {}",
                        if arity == 1 { "" } else { "s" },
                        params.len()
                    ),
                ));
                return;
            }
        }
        let Some(kinds) = kinds else {
            return;
        };
        for (index, (param, kind)) in params.iter().zip(kinds.iter()).enumerate() {
            let got = if literal_null(param) {
                (*kind != Kind::Any && *kind != Kind::ArrayOrNull).then_some("null")
            } else if literal_bool(param) {
                (*kind != Kind::Any).then_some("a boolean")
            } else {
                literal_kind(param)
                    .filter(|literal| !kind.accepts(*literal))
                    .map(Kind::describe)
            };
            if let Some(got) = got {
                self.errors.push(error_at(
                    param.span(),
                    format!(
                        "{name}: argument {} must be {}, got {got}",
                        index + 1,
                        kind.describe()
                    ),
                ));
            }
        }
    }

    /// The arity of the user function a call names (`Some(None)` when it is a
    /// function of unknown arity), or `None` when it names none.
    fn resolve_user(&self, name: &str) -> Option<Option<usize>> {
        let candidates = if name.starts_with("data.") {
            vec![name.to_string()]
        } else {
            let (head, rest) = name.split_once('.').unwrap_or((name, ""));
            let mut c = vec![format!("{}.{name}", self.package)];
            if let Some(target) = self.imports.get(head) {
                c.push(if rest.is_empty() {
                    target.clone()
                } else {
                    format!("{target}.{rest}")
                });
            }
            c
        };
        candidates.iter().find_map(|c| self.rules.function_arity(c))
    }
}

/// A built-in whose name is one edit away (`startwith` → `startswith`).
fn suggestion(name: &str) -> Option<&'static str> {
    let mut names: Vec<&'static str> = BUILTINS.keys().copied().collect();
    names.sort_unstable();
    names.into_iter().find(|b| one_edit_apart(name, b))
}

fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => short.iter().zip(&long).filter(|(x, y)| x != y).count() == 1,
        1 => (0..long.len()).any(|skip| {
            long.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, c)| c)
                .eq(short.iter())
        }),
        _ => false,
    }
}

/// Every static error of a parsed policy set, in file order.
pub(crate) fn check(modules: &[Ref<Module>]) -> Vec<CompileError> {
    let rules = Rules::collect(modules);
    let mut errors = Vec::new();
    rules.conflicts(&mut errors);
    for module in modules {
        let Some(package) = package_path(module) else {
            continue;
        };
        let mut imports = HashMap::new();
        for import in &module.imports {
            let Some(target) = dotted(&import.refr) else {
                continue;
            };
            if !target.starts_with("data.") {
                continue; // rego.v1, future.keywords, input
            }
            let alias = match &import.r#as {
                Some(span) => span.text().to_string(),
                None => target.rsplit('.').next().unwrap_or(&target).to_string(),
            };
            imports.insert(alias, target);
        }
        let mut calls = Calls {
            rules: &rules,
            package,
            imports,
            errors: &mut errors,
        };
        for rule in &module.policy {
            visit_rule_exprs(rule, &mut |e| {
                if let Expr::Call { fcn, params, .. } = e {
                    calls.call(fcn, params);
                }
            });
        }
    }
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    errors.dedup();
    errors
}

/// Why the compiled VM must not run these modules, if it must not: a `/` or
/// `%` whose divisor may be zero. The RVM leaves `x / 0` undefined, so a deny
/// rule over it would not hold and the request would pass; the interpreter
/// refuses the decision, as it does for a failing built-in.
pub(crate) fn rvm_unsafe(modules: &[Ref<Module>]) -> Option<String> {
    for module in modules {
        for rule in &module.policy {
            let mut found = None;
            visit_rule_exprs(rule, &mut |e| {
                if found.is_some() {
                    return;
                }
                if let Expr::ArithExpr {
                    op: op @ (ArithOp::Div | ArithOp::Mod),
                    rhs,
                    span,
                    ..
                } = e
                {
                    let constant_nonzero = matches!(rhs.as_ref(),
                        Expr::Number { value, .. } if *value != regorus::Value::from(0_u64));
                    if !constant_nonzero {
                        let sign = if *op == ArithOp::Div { "/" } else { "%" };
                        found = Some(format!(
                            "{}:{}:{}: `{sign}` by a divisor that may be zero (the RVM would leave it undefined instead of failing)",
                            span.source.file(),
                            span.line,
                            span.col
                        ));
                    }
                }
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Call `f` on every expression of a rule, heads and bodies.
fn visit_rule_exprs(rule: &Rule, f: &mut dyn FnMut(&Expr)) {
    let mut roots: Vec<&Expr> = Vec::new();
    let mut queries: Vec<&Query> = Vec::new();
    fn push_assign<'r>(a: &'r Option<RuleAssign>, roots: &mut Vec<&'r Expr>) {
        if let Some(a) = a {
            roots.push(a.value.as_ref());
        }
    }
    match rule {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                    push_assign(assign, &mut roots)
                }
                RuleHead::Set { key, .. } => roots.extend(key.iter().map(|k| k.as_ref())),
            }
            for body in bodies {
                push_assign(&body.assign, &mut roots);
                queries.push(&body.query);
            }
        }
        Rule::Default { value, .. } => roots.push(value),
    }
    let mut stack: Vec<&Expr> = roots;
    loop {
        while let Some(q) = queries.pop() {
            for stmt in &q.stmts {
                match &stmt.literal {
                    Literal::SomeVars { .. } => {}
                    Literal::SomeIn {
                        key,
                        value,
                        collection,
                        ..
                    } => {
                        stack.extend(key.iter().map(|k| k.as_ref()));
                        stack.push(value);
                        stack.push(collection);
                    }
                    Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => stack.push(expr),
                    Literal::Every { domain, query, .. } => {
                        stack.push(domain);
                        queries.push(query);
                    }
                }
                stack.extend(stmt.with_mods.iter().map(|w| w.r#as.as_ref()));
            }
        }
        let Some(e) = stack.pop() else { break };
        f(e);
        match e {
            Expr::Call { fcn, params, .. } => {
                stack.push(fcn);
                stack.extend(params.iter().map(|p| p.as_ref()));
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                stack.extend(items.iter().map(|i| i.as_ref()))
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    stack.push(k);
                    stack.push(v);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                stack.push(term);
                queries.push(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                stack.push(key);
                stack.push(value);
                queries.push(query);
            }
            Expr::UnaryExpr { expr, .. } => stack.push(expr),
            Expr::RefDot { refr, .. } => stack.push(refr),
            Expr::RefBrack { refr, index, .. } => {
                stack.push(refr);
                stack.push(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                stack.extend(key.iter().map(|k| k.as_ref()));
                stack.push(value);
                stack.push(collection);
            }
            _ => {}
        }
    }
}

/// Built-ins whose answer is not a function of their arguments: the time, a
/// random number, the network, the runtime, or an output on the side.
const NOT_DETERMINISTIC: &[&str] = &[
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "http.send",
    "net.lookup_ip_addr",
    "opa.runtime",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options",
    "print",
    "trace",
];

/// Why a decision of these modules may not be reused for the same input
/// (`decide::engine`'s memo), if it may not: a call to a built-in that is not
/// deterministic, or a read of the time (`input.now`, `input.now_ns`) other
/// than comparing it with a relationship's `expires_at`, or of the whole
/// `input` (which holds the time). An expiry comparison changes only at an
/// expiry, and a memo entry never outlives the next one.
pub(crate) fn memo_unsafe(modules: &[Ref<Module>]) -> Option<String> {
    let at = |span: &Span| format!("{}:{}:{}", span.source.file(), span.line, span.col);
    let is_now = |e: &Expr| matches!(dotted(e).as_deref(), Some("input.now" | "input.now_ns"));
    let mentions_expiry = |e: &Expr| e.span().text().contains("expires_at");
    for module in modules {
        for rule in &module.policy {
            // Places of `input.now…` that compare with an expiry, and of
            // `input` used as the base of a field.
            let mut expiry_compares: Vec<(u32, u32)> = Vec::new();
            let mut based: Vec<(u32, u32)> = Vec::new();
            let mut found: Option<String> = None;
            visit_rule_exprs(rule, &mut |e| match e {
                Expr::BoolExpr { lhs, rhs, .. } => {
                    for (side, other) in [(lhs, rhs), (rhs, lhs)] {
                        if is_now(side) && mentions_expiry(other) {
                            let s = side.span();
                            expiry_compares.push((s.line, s.col));
                        }
                    }
                }
                Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => {
                    if let Expr::Var { span, .. } = refr.as_ref() {
                        based.push((span.line, span.col));
                    }
                }
                _ => {}
            });
            visit_rule_exprs(rule, &mut |e| {
                if found.is_some() {
                    return;
                }
                match e {
                    Expr::Call { fcn, span, .. } => {
                        if let Some(name) = dotted(fcn) {
                            if NOT_DETERMINISTIC.contains(&name.as_str()) {
                                found = Some(format!("{}: calls {name}", at(span)));
                            }
                        }
                    }
                    _ if is_now(e) => {
                        let s = e.span();
                        if !expiry_compares.contains(&(s.line, s.col)) {
                            found = Some(format!(
                                "{}: reads the time ({}) other than against an expiry",
                                at(s),
                                s.text()
                            ));
                        }
                    }
                    Expr::Var { span, .. }
                        if span.text() == "input" && !based.contains(&(span.line, span.col)) =>
                    {
                        found = Some(format!("{}: reads the whole input", at(span)));
                    }
                    Expr::RefBrack {
                        refr, index, span, ..
                    } => {
                        let on_input = matches!(refr.as_ref(), Expr::Var { span, .. } if span.text() == "input");
                        if on_input && !matches!(index.as_ref(), Expr::String { .. }) {
                            found = Some(format!("{}: reads input by a computed key", at(span)));
                        }
                    }
                    _ => {}
                }
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// A rule that takes no arguments (complete, partial set or partial object),
/// with where each of its definitions is: what `policy eval --explain` can
/// evaluate by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RulePlace {
    /// `data.portcullis.decision`.
    pub path: String,
    /// `(file, line)` of each definition, defaults included.
    pub places: Vec<(String, u32)>,
}

/// Every rule without arguments, by path, with its definitions' places.
pub(crate) fn rule_places(modules: &[Ref<Module>]) -> Vec<RulePlace> {
    Rules::collect(modules)
        .by_path
        .into_iter()
        .filter(|(path, defs)| {
            !defs.iter().any(|d| d.kind == RuleKind::Function)
                && !path
                    .rsplit('.')
                    .next()
                    .is_some_and(|n| n.starts_with("test_"))
        })
        .map(|(path, defs)| RulePlace {
            path,
            places: defs
                .iter()
                .map(|d| (d.file.to_string(), d.span.line))
                .collect(),
        })
        .collect()
}
