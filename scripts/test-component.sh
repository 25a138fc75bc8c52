#!/usr/bin/env bash
# Builds the rbdiff WebAssembly component (wasm32-wasip2) and tests it in a
# real host: PyPI wasmtime loads the built .wasm and calls it on the real-rbd
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

log "cargo test -p rbdiff-component (unit tests, native)"
cargo test -q -p rbdiff-component

log "pytest tests/component (PyPI wasmtime host)"
export RBDIFF_COMPONENT="$wasm"
export PYTHONDONTWRITEBYTECODE=1
exec python3 -m pytest -p no:cacheprovider tests/component -q "$@"
