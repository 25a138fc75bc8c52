#!/usr/bin/env bash
# rbdiff against real rbd on a throw-away single-node Ceph cluster: installs
# the Debian packages (idempotent), builds rbdiff with the 'librbd' feature,
# starts the cluster (scripts/ceph-cluster.sh), runs tests/tests/cluster.rs
# and stops exactly the daemons it started. Fails when the cluster cannot
# start: these tests are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbdiff-target}"
bash scripts/ceph-cluster.sh install
cargo build -q -p rbdiff-cli --features librbd
cp "$CARGO_TARGET_DIR/debug/rbdiff" "$CARGO_TARGET_DIR/debug/rbdiff-librbd"
export RBDIFF_CLUSTER_BIN="$CARGO_TARGET_DIR/debug/rbdiff-librbd"
env_line=$(bash scripts/ceph-cluster.sh start)
eval "$env_line"
trap 'bash scripts/ceph-cluster.sh stop "$RBDIFF_CEPH_DIR"' EXIT
cargo test --no-fail-fast -p rbdiff-tests --test cluster -- --include-ignored --test-threads=2
