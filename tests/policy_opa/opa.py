"""`opa check DIR` and `opa test DIR` through OPA as a library.

OPA's command line cannot be installed here (its releases are on GitHub);
PyPI's `opa-golib-python-bindings` ships OPA v1.20 built as a Go c-shared
library (`libopabridge.so`) with a ctypes wrapper. Its wheel says Python >=
3.14 but loads under older ones, so tests/policy_opa.rs unpacks it and runs
this script with whatever `python3` there is.

check: load every `*.rego` under DIR (recursively, as OPA does) and compile
them together: parse errors, type errors, unknown functions, conflicts.
test: then evaluate every `test_*` rule (as `opa test` discovers them) and
print `opa test` lines; exit 2 on a failure or an error, as `opa test` does.

Usage: opa.py BINDINGS_DIR (check|test) DIR, or opa.py BINDINGS_DIR probe
"""

import pathlib
import re
import sys
import time


def main():
    bindings, verb = sys.argv[1], sys.argv[2]
    sys.path.insert(0, bindings)
    from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

    if verb == "probe":
        # The library loads and evaluates here (glibc, architecture).
        return 0 if OpaEngine().eval_query("x := 1") == [{"x": 1}] else 1
    root = pathlib.Path(sys.argv[3])

    files = sorted(root.rglob("*.rego"))
    if not files:
        print(f"no *.rego files under {root}")
        return 2
    engine = OpaEngine()
    try:
        for f in files:
            engine.add_policy(str(f), f.read_text())
        # Preparing any query compiles every module together.
        engine.eval_query("true")
    except OpaError as e:
        print(f"{verb}: {e}")
        return 2
    if verb == "check":
        print(f"opa check: {len(files)} files compile")
        return 0

    tests = []
    for f in files:
        package = None
        for line in f.read_text().splitlines():
            m = re.match(r"package\s+([\w.]+)", line)
            if m:
                package = m.group(1)
            m = re.match(r"(test_\w+)", line)
            if m and package and (package, m.group(1)) not in tests:
                tests.append((package, m.group(1)))
    failed = 0
    for package, rule in tests:
        name = f"data.{package}.{rule}"
        started = time.monotonic()
        try:
            ok = engine.eval_document(f"{package}.{rule}") is True
            verdict = "PASS" if ok else "FAIL"
        except OpaUndefinedError:
            verdict = "FAIL"
        except OpaError as e:
            verdict = f"ERROR\n  {e}"
        took = (time.monotonic() - started) * 1000
        if verdict != "PASS":
            failed += 1
        print(f"{name}: {verdict} ({took:.1f}ms)")
    print("-" * 80)
    print(f"PASS: {len(tests) - failed}/{len(tests)}")
    if failed:
        print(f"FAIL: {failed}/{len(tests)}")
    return 2 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
