#!/usr/bin/env bash
# Build the browser viewer (the npm package `rbdiff` into web/pkg, with
# wasm-pack: scripts/build-web.sh) and serve the repo root on localhost.
# Nothing is uploaded anywhere: the page reads dropped files in a Web Worker.
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
  bash scripts/build-web.sh
fi

if [ "$serve" = 1 ]; then
  [ -f web/pkg/index.js ] || { echo "serve.sh: web/pkg missing; run without --no-build" >&2; exit 1; }
  echo "rbdiff viewer: http://127.0.0.1:$port/index.html   (Ctrl-C to stop)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory .
fi
