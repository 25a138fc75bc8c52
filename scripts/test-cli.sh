#!/usr/bin/env bash
# Build the rbdiff CLI (native + wasm32-wasip1) and run its end-to-end tests
# against both. Called by scripts/test.sh; usable on its own.
#   scripts/test-cli.sh            # everything
#   scripts/test-cli.sh native     # only the native runner (test names ending in ::native)
#   scripts/test-cli.sh wasm       # only the wasm runner
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
which="${1:-all}"

python3 -c 'import wasmtime' 2>/dev/null || scripts/setup.sh rust

echo "test-cli: building rbdiff (native, wasm32-wasip1)" >&2
cargo build -q -p rbdiff-cli
cargo build -q -p rbdiff-cli --release --target wasm32-wasip1
if rustup target list --installed | grep -qx wasm32-wasip2; then
  # p2 is built to prove it compiles; the tests run the p1 module
  cargo build -q -p rbdiff-cli --release --target wasm32-wasip2
fi
export RBDIFF_BIN="$CARGO_TARGET_DIR/debug/rbdiff"
export RBDIFF_WASM="$CARGO_TARGET_DIR/wasm32-wasip1/release/rbdiff.wasm"

filter=()
case "$which" in
  native) filter=(native) ;;
  wasm) filter=(wasm) ;;
  all) ;;
  *) echo "usage: $0 [all|native|wasm]" >&2; exit 2 ;;
esac

cargo test -q -p rbdiff-cli
cargo test -p rbdiff-tests --test cli_corpus --test cli_flows --test cli_integrity --test cli_stream_hardening --test cli_image_meta -- "${filter[@]}"
