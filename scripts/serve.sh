#!/usr/bin/env bash
# Build the browser viewer (wasm + bindings into web/pkg) and serve the repo
# root on localhost. Nothing is uploaded anywhere: the page reads dropped
# files in a Web Worker.
#
#   scripts/serve.sh              build, then serve on http://127.0.0.1:8000/
#   scripts/serve.sh 9000         another port
#   scripts/serve.sh --build-only only (re)build web/pkg
#   scripts/serve.sh --no-build   serve what is built
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR

build=1 serve=1 port=8000
for a in "$@"; do
  case "$a" in
    --build-only) serve=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *[!0-9]*) echo "serve.sh: unknown argument $a" >&2; exit 2 ;;
    *) port="$a" ;;
  esac
done

if [ "$build" = 1 ]; then
  want="wasm-bindgen $(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)"
  have="$(wasm-bindgen --version 2>/dev/null || true)"
  if [ "$have" != "$want" ]; then
    echo "serve.sh: need $want on PATH (have: ${have:-none}); run scripts/setup.sh web" >&2
    exit 1
  fi
  echo "serve.sh: building rbdiff-web for wasm32-unknown-unknown" >&2
  cargo build --release -q -p rbdiff-web --target wasm32-unknown-unknown
  wasm-bindgen --target web --out-dir web/pkg \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/rbdiff_web.wasm"
  echo "serve.sh: web/pkg ready ($(du -k web/pkg/rbdiff_web_bg.wasm | cut -f1) KiB wasm)" >&2
fi

if [ "$serve" = 1 ]; then
  [ -f web/pkg/rbdiff_web.js ] || { echo "serve.sh: web/pkg missing; run without --no-build" >&2; exit 1; }
  echo "rbdiff viewer: http://127.0.0.1:$port/index.html   (Ctrl-C to stop)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory .
fi
