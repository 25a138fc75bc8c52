#!/usr/bin/env bash
# Builds the npm package `rbdiff` into web/pkg with wasm-pack: the browser
# crate (web/, wasm-bindgen --target web) plus the package's JS API, types
# and README (web/npm/). The viewer's worker imports the same directory, and
# `npm pack web/pkg` makes the tarball (tests/npm/package.test.mjs). Without
# wasm-pack (the demo's setup skips it) the same files come from cargo +
# wasm-bindgen, the two steps wasm-pack runs.
#
#   scripts/build-web.sh           build web/pkg
#   scripts/build-web.sh --pack D  build, then npm pack into directory D
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
: "${CARGO_TARGET_DIR:=$PWD/target}"
export CARGO_TARGET_DIR

want="wasm-bindgen $(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)"
have="$(wasm-bindgen --version 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  echo "build-web.sh: need $want on PATH (have: ${have:-none}); run scripts/setup.sh web" >&2
  exit 1
fi

rm -rf web/pkg
if command -v wasm-pack >/dev/null; then
  echo "build-web.sh: wasm-pack build web (release, --target web)" >&2
  # --mode no-install: use the wasm-bindgen on PATH, never download one.
  # wasm-opt is off in web/Cargo.toml ([package.metadata.wasm-pack]).
  wasm-pack --quiet --log-level warn build web --release --target web --mode no-install \
    --out-dir pkg --out-name rbdiff_web --no-gitignore >&2
else
  # The demo's path (scripts/setup.sh web does not install wasm-pack, the
  # tests' setup does): the two steps wasm-pack runs, with the same flags.
  echo "build-web.sh: wasm-pack not installed; cargo build + wasm-bindgen --target web" >&2
  cargo build --release -q -p rbdiff-web --target wasm32-unknown-unknown
  wasm-bindgen --target web --out-dir web/pkg --out-name rbdiff_web \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/rbdiff_web.wasm"
fi

# The package: the generated module and types, our API, types and README on top.
cp web/npm/index.js web/npm/node.js web/npm/index.d.ts web/npm/node.d.ts web/npm/README.md web/pkg/
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
VERSION="$version" node - <<'JS'
const fs = require('fs');
const pkg = JSON.parse(fs.readFileSync('web/npm/package.json', 'utf8'));
pkg.version = process.env.VERSION;
for (const f of pkg.files) if (!fs.existsSync(`web/pkg/${f}`)) throw new Error(`web/pkg/${f} missing`);
fs.writeFileSync('web/pkg/package.json', JSON.stringify(pkg, null, 2) + '\n');
JS
echo "build-web.sh: web/pkg = npm package rbdiff $version ($(du -k web/pkg/rbdiff_web_bg.wasm | cut -f1) KiB wasm)" >&2

if [ "${1:-}" = --pack ]; then
  mkdir -p "$2"
  (cd web/pkg && npm pack --silent --pack-destination "$(cd "$OLDPWD" && cd "$2" && pwd)")
fi
