#!/usr/bin/env bash
# Install OPA from PyPI into DIR (default target/opa-bindings): the wheel of
# `opa-golib-python-bindings` (OPA v1.20 as a Go c-shared library plus a
# ctypes wrapper), unpacked rather than pip-installed because it declares
# Python >= 3.14 and loads fine under older ones. Exits non-zero, changing
# nothing, when PyPI cannot be reached. tests/policy_opa.rs uses it.
set -euo pipefail
dest=${1:-target/opa-bindings}
version=0.4.4
[ -f "$dest/opa_bindings/libopabridge.so" ] && exit 0
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timeout 120 python3 -m pip download --quiet --disable-pip-version-check \
  "opa-golib-python-bindings==$version" --no-deps \
  --python-version 3.14 --only-binary=:all: -d "$tmp/wheel"
python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/unpacked" "$dest"
echo "OPA (opa-golib-python-bindings $version) in $dest"
