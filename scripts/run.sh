#!/usr/bin/env bash
# Sets up, builds everything, runs the CLI demo on the bundled real rbd diffs,
# then serves the browser viewer on localhost (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbdiff-target}"
bash scripts/setup.sh
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
say "the same CLI under WASI (wasmtime engine via PyPI wasmtime), reading stdin:"
python3 tests/tools/wasmtime_run.py "$CARGO_TARGET_DIR/wasm32-wasip1/release/rbdiff.wasm" inspect - < samples/s2..head.diff

if [ "${RBDIFF_NO_SERVE:-}" != 1 ] && [ -f scripts/serve.sh ]; then
  bash scripts/serve.sh
fi
