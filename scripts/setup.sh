#!/usr/bin/env bash
# Idempotent installer for everything rbdiff's build and tests need on a fresh
# Debian machine with the Rust toolchain (only package registries reachable).
# Every step checks first and skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
WB_VER=0.2.130          # must equal the wasm-bindgen crate pinned in web/Cargo.toml
WASM_PACK_VER=0.15.1   # builds the npm package (scripts/build-web.sh); needs the wasm-bindgen above
PY_WASMTIME=50.0.1      # PyPI wasmtime: the same engine as the wasmtime CLI, 9 s to install
want="${1:-all}"        # all (tests) | rust (CLI) | web (CLI + viewer: the demo)

log() { echo "setup: $*" >&2; }

need_targets=()
installed_targets=$(rustup target list --installed)
for t in wasm32-unknown-unknown wasm32-wasip1 wasm32-wasip2 x86_64-unknown-none; do
  grep -qx "$t" <<<"$installed_targets" || need_targets+=("$t")
done
if [ ${#need_targets[@]} -gt 0 ]; then
  log "rustup target add ${need_targets[*]}"
  rustup target add "${need_targets[@]}"
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('wasmtime') != '$PY_WASMTIME')" 2>/dev/null; then
  log "pip install wasmtime==$PY_WASMTIME"
  python3 -m pip install -q --disable-pip-version-check "wasmtime==$PY_WASMTIME"
fi

[ "$want" = rust ] && exit 0

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WB_VER" ]; then
  log "cargo install wasm-bindgen-cli $WB_VER (a few minutes, once)"
  # not --locked: its lockfile pins a crate version the registry mirror lacks
  cargo install -q wasm-bindgen-cli --version "$WB_VER"
fi

# The demo (scripts/run.sh) needs no more than this; the tests need the rest.
[ "$want" = web ] && exit 0

# Ceph (mon, osd, the rbd CLI, librbd-dev, python3-rbd): the 'librbd'
# feature and the cluster tests (scripts/test-cluster.sh).
bash scripts/ceph-cluster.sh install

if [ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $WASM_PACK_VER" ]; then
  log "cargo install wasm-pack $WASM_PACK_VER (a few minutes, once)"
  cargo install -q --locked wasm-pack --version "$WASM_PACK_VER" ||
    cargo install -q wasm-pack --version "$WASM_PACK_VER"
fi

if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "0.13.2" ]; then
  log "cargo install cargo-fuzz 0.13.2 (a minute or two, once)"
  cargo install -q --locked cargo-fuzz --version 0.13.2 || cargo install -q cargo-fuzz --version 0.13.2
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "apt-get install chromium chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q chromium chromium-driver >/dev/null
fi

# jco (pinned in component/host-node/package.json) transpiles the component
# for the Node host test; it brings its own wasm tools.
if [ ! -d component/host-node/node_modules/@bytecodealliance/jco ]; then
  log "npm install in component/host-node (jco, preview2-shim)"
  npm install --prefix component/host-node --no-audit --no-fund --loglevel=error >/dev/null
fi

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/typescript ] || [ ! -d node_modules/@types/node ]; then
  log "npm install (playwright-core; typescript + @types/node check the npm package's typings)"
  npm install --no-audit --no-fund --prefer-offline >/dev/null
fi
