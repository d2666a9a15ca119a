//! Built-in errors fail closed on the compiled VM, as on the interpreter.
//!
//! Why: regorus's RVM treats an error inside a rule body as that body failing
//! (`rules.rs` swallows every non-fatal error), whatever its
//! `strict_builtin_errors` says. So a built-in that fails inside a rule that
//! can deny (`time.parse_rfc3339_ns` of a year past 2262 in `expired(m)`,
//! `count(null)` in a custom deny rule) leaves that rule undefined, and `not`,
//! `else` or `default` turn it into an allow; the interpreter, strict, refuses
//! the whole decision. Here every built-in of a compiled program is replaced
//! by a wrapper that calls the real one in strict mode, as the interpreter
//! does, and notes the first error; the engine refuses a decision during which
//! one was noted. Both evaluators then deny on a built-in error.
//!
//! The program stores plain `fn` pointers, which cannot capture the built-in
//! they wrap: each wrapper is an instance of [`checked`] for one slot of a
//! table holding regorus's built-ins in name order.

use std::cell::RefCell;
use std::sync::OnceLock;

use regorus::rvm::Program;
use regorus::unstable::{Expr, Ref, Span, BUILTINS};
use regorus::Value;

type BuiltinFn = fn(&Span, &[Ref<Expr>], &[Value], bool) -> anyhow::Result<Value>;

/// More than regorus 0.14 registers with our features (a unit test checks).
const SLOTS: usize = 256;

thread_local! {
    /// The first built-in error of the evaluation running on this thread.
    static FIRST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// regorus's built-ins by name, in a fixed order: slot `i` is wrapped by `checked::<i>`.
fn originals() -> &'static Vec<(&'static str, BuiltinFn)> {
    static TABLE: OnceLock<Vec<(&'static str, BuiltinFn)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<(&'static str, BuiltinFn)> =
            BUILTINS.iter().map(|(name, f)| (*name, f.0)).collect();
        table.sort_by_key(|(name, _)| *name);
        table
    })
}

fn checked<const I: usize>(
    span: &Span,
    params: &[Ref<Expr>],
    args: &[Value],
    _strict: bool,
) -> anyhow::Result<Value> {
    let Some((name, original)) = originals().get(I) else {
        anyhow::bail!("built-in slot {I} is empty");
    };
    // Strict, as the interpreter calls it: some built-ins return Undefined
    // instead of an error when not strict.
    original(span, params, args, true).inspect_err(|e| {
        FIRST_ERROR.with(|first| {
            first
                .borrow_mut()
                .get_or_insert_with(|| format!("built-in {name} failed: {}", last_line(e)));
        });
    })
}

/// The message of an error regorus formats with a source excerpt (the VM
/// passes a placeholder span, so the excerpt says nothing).
fn last_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

macro_rules! slots {
    ($($i:literal)*) => { [$(checked::<$i> as BuiltinFn),*] };
}

#[rustfmt::skip]
static WRAPPERS: [BuiltinFn; SLOTS] = slots!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
    64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95
    96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127
    128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159
    160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191
    192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223
    224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255
);

/// Replace every built-in the program calls by its checking wrapper.
pub(crate) fn wrap_builtins(program: &mut Program) -> anyhow::Result<()> {
    let table = originals();
    anyhow::ensure!(
        table.len() <= SLOTS,
        "regorus registers {} built-ins, more than the {SLOTS} that can be checked",
        table.len()
    );
    anyhow::ensure!(
        program.resolved_builtins.len() == program.builtin_info_table.len(),
        "the compiled program's built-ins are not resolved"
    );
    for (info, resolved) in program
        .builtin_info_table
        .iter()
        .zip(program.resolved_builtins.iter_mut())
    {
        let slot = table
            .binary_search_by_key(&info.name.as_str(), |(name, _)| *name)
            .map_err(|_| anyhow::anyhow!("unknown built-in {}", info.name))?;
        resolved.0 = WRAPPERS[slot];
    }
    Ok(())
}

/// Forget the built-in errors of an earlier evaluation on this thread.
pub(crate) fn reset() {
    FIRST_ERROR.with(|first| first.borrow_mut().take());
}

/// The first built-in error since [`reset`], if any.
pub(crate) fn take_error() -> Option<String> {
    FIRST_ERROR.with(|first| first.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_has_a_slot() {
        assert!(originals().len() <= SLOTS, "{}", originals().len());
        assert!(originals().iter().any(|(n, _)| *n == "startswith"));
    }
}
