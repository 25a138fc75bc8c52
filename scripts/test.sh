#!/usr/bin/env bash
# Sets up a fresh machine (idempotently) and runs every test of rbdiff:
# formatting, clippy, the codec/CLI test suites, the no_std proof, the wasm
# builds, the CLI under wasmtime, the browser viewer in headless Chromium and
# the WebAssembly component in a real host.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH" RUST_BACKTRACE=0
# Compiled dependencies survive between clean clones on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbdiff-target}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
t0=$SECONDS
step() { echo "=== [$((SECONDS - t0))s] $*"; }

step "setup"
bash scripts/setup.sh

step "format and lints"
cargo fmt --all --check
# Includes clippy::too_many_lines (threshold 120, clippy.toml) on the codec,
# CLI, web and component crates.
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q -p rbdiff-web --target wasm32-unknown-unknown -- -D warnings
cargo clippy -q -p rbdiff-component --target wasm32-wasip2 -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -q -p rbdiff --no-deps

step "no_std proof"
cargo clippy -q -p rbdiff --no-default-features --target x86_64-unknown-none -- -D warnings
cargo clippy -q -p rbdiff --no-default-features --features alloc --target x86_64-unknown-none -- -D warnings
cargo check -q -p rbdiff --no-default-features --features alloc --target wasm32-unknown-unknown

step "build the CLI (native, wasm32-wasip1, wasm32-wasip2)"
cargo build -q -p rbdiff-cli
# The same with the Ceph cluster client (librbd-dev, installed by setup.sh);
# tests/tests/cluster.rs runs it against a throw-away cluster (test-cluster.sh).
cargo clippy -q -p rbdiff-cli --all-targets --features librbd -- -D warnings
cargo build -q -p rbdiff-cli --release --target wasm32-wasip1
cargo build -q -p rbdiff-cli --release --target wasm32-wasip2
# The CLI end-to-end tests (tests/tests/cli_*.rs) run these, natively and
# under wasmtime (PyPI wasmtime, the same engine as the wasmtime CLI).
export RBDIFF_BIN="$CARGO_TARGET_DIR/debug/rbdiff"
export RBDIFF_WASM="$CARGO_TARGET_DIR/wasm32-wasip1/release/rbdiff.wasm"

step "codec, engine and CLI test suites"
cargo test --no-fail-fast 2>&1 | tee -a "$log"

for area in web component fuzz cluster; do
  if [ -f "scripts/test-$area.sh" ]; then
    step "$area"
    bash "scripts/test-$area.sh" 2>&1 | tee -a "$log"
  fi
done

step "summary"
python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
for p, f in re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
    passed += int(p); failed += int(f)
for kind, n in re.findall(r"^(?:#|\u2139) (pass|fail) (\d+)$", text, re.M):   # node --test (tap, spec)
    if kind == "pass": passed += int(n)
    else: failed += int(n)
for m in re.finditer(r"^(?:=+ )?(\d+ (?:passed|failed).*) in [\d.]+s", text, re.M):  # pytest
    for n, kind in re.findall(r"(\d+) (passed|failed|errors?)\b", m.group(1)):
        if kind == "passed": passed += int(n)
        else: failed += int(n)
print(f"tests: {passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
