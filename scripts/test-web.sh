#!/usr/bin/env bash
# Build the npm package `rbdiff` (web/pkg, wasm-pack) that the viewer uses and
# run the tests: the glue's native unit tests, the end-to-end browser tests in
# headless Chromium (tests/e2e/*.test.mjs, node --test + playwright-core) and
# the package's tests (tests/npm/*.test.mjs: npm pack, install, use in Node). Lints (clippy -D warnings
# for wasm32) belong to the workspace lint step, not here.
#
#   scripts/test-web.sh            everything (includes the 2 GiB decode)
#   RBDIFF_E2E_BIG=0 scripts/test-web.sh   skip the 2 GiB throughput test
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR

if ! command -v chromium >/dev/null || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/typescript ] \
   || [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ] \
   || ! command -v wasm-pack >/dev/null; then
  bash scripts/setup.sh
fi
cargo test -q -p rbdiff-web
bash scripts/build-web.sh
mkdir -p test-output
# the viewer in Chromium, and the npm package packed, installed and used from Node
node --test --test-reporter=spec tests/e2e/*.test.mjs tests/npm/*.test.mjs
