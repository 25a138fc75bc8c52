#!/usr/bin/env bash
# Build the viewer's wasm + bindings and run its tests: the glue's native unit
# tests, then the end-to-end browser tests in headless Chromium
# (tests/e2e/*.test.mjs, node --test + playwright-core). Lints (clippy -D warnings
# for wasm32) belong to the workspace lint step, not here.
#
#   scripts/test-web.sh            everything (includes the 2 GiB decode)
#   RBDIFF_E2E_BIG=0 scripts/test-web.sh   skip the 2 GiB throughput test
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR

if ! command -v chromium >/dev/null || [ ! -d node_modules/playwright-core ] \
   || [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ]; then
  bash scripts/setup.sh web
fi
cargo test -q -p rbdiff-web
scripts/serve.sh --build-only
mkdir -p test-output
node --test --test-reporter=spec tests/e2e/*.test.mjs
