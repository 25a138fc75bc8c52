#!/usr/bin/env bash
# Builds the rbdiff WebAssembly component (wasm32-wasip2) and tests it in
# three hosts: Node (jco, component/host-node), the Rust `wasmtime` crate
# (component/host-rust, driven by tests/component/test_rust_host.py) and
# PyPI wasmtime, which loads the built .wasm and calls it on the real-rbd
# fixtures (tests/component/: the codec, and apply / export-diff on block
# devices the host keeps in memory). Also runs the component crate's unit tests.
#
#   scripts/test-component.sh [pytest args...]
#
# Environment: CARGO_TARGET_DIR (default ./target), RBDIFF_FIXTURES (default
# tests/fixtures/rbd-16.2.15, the corpus kept in this repository), RBDIFF_BIN
# (the native CLI; built here when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PY_WASMTIME=50.0.1
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target_dir"   # the Rust host builds into it too

log() { echo "test-component: $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  log "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi
if ! python3 -c "import wasmtime.component" 2>/dev/null; then
  log "pip install wasmtime==$PY_WASMTIME"
  python3 -m pip install -q --disable-pip-version-check "wasmtime==$PY_WASMTIME"
fi
if ! python3 -c "import pytest" 2>/dev/null; then
  log "pip install pytest"
  python3 -m pip install -q --disable-pip-version-check pytest
fi

log "cargo build --release -p rbdiff-component --target wasm32-wasip2"
cargo build --release -p rbdiff-component --target wasm32-wasip2
wasm="$target_dir/wasm32-wasip2/release/rbdiff_component.wasm"
ls -l "$wasm" >&2

# The images tests compare the component's export-diff with the CLI's.
if [ -z "${RBDIFF_BIN:-}" ]; then
  log "cargo build -p rbdiff-cli (the images tests compare with the CLI)"
  cargo build -q -p rbdiff-cli
  export RBDIFF_BIN="$target_dir/debug/rbdiff"
fi

# The Rust host (its own workspace; the wasmtime crate is a 10+ minute cold
# build, kept in the shared CARGO_TARGET_DIR).
host_manifest=component/host-rust/Cargo.toml
log "cargo build --release --manifest-path $host_manifest (Rust host, wasmtime crate)"
cargo fmt --check --manifest-path "$host_manifest"
cargo build -q --release --manifest-path "$host_manifest"
# clippy re-checks all of wasmtime (5-12 min cold): opt-in, for whoever edits
# the host (RBDIFF_LINT_HOST=1).
if [ "${RBDIFF_LINT_HOST:-}" = 1 ]; then
  cargo clippy -q --release --manifest-path "$host_manifest" -- -D warnings
fi
export RBDIFF_COMPONENT_HOST="$target_dir/release/rbdiff-component-host"

log "cargo test -p rbdiff-component (unit tests, native)"
cargo test -q -p rbdiff-component

# The Node host: the component transpiled with jco (installed by setup.sh).
jco=component/host-node/node_modules/.bin/jco
[ -x "$jco" ] || { log "jco missing: run scripts/setup.sh"; exit 1; }
log "jco transpile (Node host) and node --test component/host-node/test"
rm -rf component/host-node/gen
"$jco" transpile "$wasm" -o component/host-node/gen --name rbdiff --quiet \
  --map 'rbdiff:codec/block-device=../device.js'
node --test component/host-node/test/

log "pytest tests/component (PyPI wasmtime host; the Rust host)"
export RBDIFF_COMPONENT="$wasm"
export PYTHONDONTWRITEBYTECODE=1
exec python3 -m pytest -p no:cacheprovider tests/component -q "$@"
