#!/usr/bin/env bash
# Builds the cargo-fuzz targets (decode, decode_chunked, merge,
# integrity_trailer, image_import, meta_json) and runs each for a short smoke
# run (FUZZ_SECS, default 20 s) seeded with small real rbd streams and the
# seeds in fuzz/seeds/. Longer campaigns: SECS=600 fuzz/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null || bash scripts/setup.sh
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR   # cargo-fuzz builds and runs from fuzz/target
(cd fuzz && cargo fuzz build -O)
SECS="${FUZZ_SECS:-20}" bash fuzz/run.sh
