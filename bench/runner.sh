# Sourced by bench scripts: sets RUNNER (what runs rbdiff.wasm, called as
# `$RUNNER run ...` or, for a .py, `python3 $RUNNER ...`) and RUNNER_NAME.
# The wasmtime CLI when on PATH; else bench/wasi-run (a wasip1 runner on the
# wasmtime 48.0.8 crate, built here; NO_WASI_RUN=1 skips it); else the PyPI
# runner tests/tools/wasmtime_run.py (~0.4 s of Python startup per run).
if command -v wasmtime >/dev/null; then
  RUNNER=$(command -v wasmtime)
  RUNNER_NAME="wasmtime CLI $(wasmtime --version | cut -d' ' -f2)"
elif [ -z "${NO_WASI_RUN:-}" ] &&
  cargo build -q --release --manifest-path "$ROOT/bench/wasi-run/Cargo.toml"; then
  RUNNER=$CARGO_TARGET_DIR/release/rbdiff-wasi-run
  RUNNER_NAME="bench/wasi-run (wasmtime 48.0.8 crate)"
else
  RUNNER=$ROOT/tests/tools/wasmtime_run.py
  RUNNER_NAME="PyPI wasmtime (tests/tools/wasmtime_run.py)"
fi
