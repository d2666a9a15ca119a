#!/usr/bin/env bash
# Run every fuzz target for a fixed number of executions over a copy of its
# committed corpus (so the corpus in the tree is left as it is). A crash, a
# leak or a failed property fails the pass. RUNS overrides the count.
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-200000}

if ! rustup toolchain list | grep -q '^nightly'; then
  if [ "${CI:-}" = true ]; then
    echo "CI=true but no nightly toolchain: the fuzz pass cannot run" >&2
    exit 1
  fi
  echo "SKIP: no nightly toolchain for cargo fuzz"
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cargo +nightly fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target"
  cp -r "corpus/$target/." "$work/$target/" 2>/dev/null || true
  start=$(date +%s)
  cargo +nightly fuzz run -O "$target" "$work/$target" -- \
    -runs="$runs" -rss_limit_mb=4096 -print_final_stats=1 2>"$work/$target.log" || {
    tail -50 "$work/$target.log"
    echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  }
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/$target.log" | tr '\n' ' '
  echo "$target: $(( $(date +%s) - start )) s"
done
