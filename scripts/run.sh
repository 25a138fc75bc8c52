#!/usr/bin/env bash
# Sets up, builds everything, runs the CLI demo on the bundled real rbd diffs,
# then serves the browser viewer on localhost (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbdiff-target}"
bash scripts/setup.sh web
# The WASI part runs under the wasmtime CLI when it is on PATH, else on the
# wasmtime engine that setup installed (PyPI wasmtime). Building the CLI is
# opt-in: RBDIFF_WASMTIME_CLI=1 installs wasmtime-cli 48.0.8 (10-40 min, once).
if [ "${RBDIFF_WASMTIME_CLI:-}" = 1 ] &&
  [ "$(wasmtime --version 2>/dev/null | awk '{print $2}')" != 48.0.8 ]; then
  echo "run: cargo install wasmtime-cli 48.0.8 (10-40 min, once)" >&2
  cargo install -q --locked wasmtime-cli --version 48.0.8
fi
cargo build -q --release -p rbdiff-cli
cargo build -q --release -p rbdiff-cli --target wasm32-wasip1
rbdiff="$CARGO_TARGET_DIR/release/rbdiff"
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
export RBDIFF_STORE="$demo/store"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "rbdiff $*"; "$rbdiff" "$@"; }

run inspect samples/s1..s2.diff
run merge-diff --no-progress samples/0..s1.diff samples/s1..s2.diff samples/s2..head.diff "$demo/0..head.diff"
run verify samples/0..s1.diff samples/s1..s2.diff samples/s2..head.diff
run create --size 4M demo
run import-diff --no-progress "$demo/0..head.diff" demo
run info demo
run import --export-format 2 --no-progress samples/basic-64k.image.v2 restored
run snap ls restored
run diff --format json restored@s2
wasm="$CARGO_TARGET_DIR/wasm32-wasip1/release/rbdiff.wasm"
if command -v wasmtime >/dev/null; then
  say "wasmtime run $wasm inspect - < samples/s2..head.diff   # the same CLI under WASI"
  wasmtime run "$wasm" inspect - < samples/s2..head.diff
else
  say "the same CLI under WASI (wasmtime engine via PyPI wasmtime), reading stdin:"
  python3 tests/tools/wasmtime_run.py "$wasm" inspect - < samples/s2..head.diff
fi

if [ "${RBDIFF_NO_SERVE:-}" != 1 ] && [ -f scripts/serve.sh ]; then
  bash scripts/serve.sh
fi
