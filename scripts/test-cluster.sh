#!/usr/bin/env bash
# rbdiff against real rbd on a throw-away single-node Ceph cluster: installs
# the Debian packages (idempotent), builds rbdiff with the 'librbd' feature,
# starts two clusters (scripts/ceph-cluster.sh; the second with cephx), runs
# tests/tests/cluster.rs and stops exactly the daemons it started. Fails when
# a cluster cannot start: these tests are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rbdiff-target}"
bash scripts/ceph-cluster.sh install
cargo build -q -p rbdiff-cli --features librbd
cp "$CARGO_TARGET_DIR/debug/rbdiff" "$CARGO_TARGET_DIR/debug/rbdiff-librbd"
export RBDIFF_CLUSTER_BIN="$CARGO_TARGET_DIR/debug/rbdiff-librbd"
# Two clusters: A (no auth, CEPH_CONF) for most tests, and B with cephx
# (RBDIFF_AUTH_CONF, its restricted user RBDIFF_AUTH_USER and that user's
# keyring RBDIFF_AUTH_KEYRING) for the auth tests and DR between clusters.
dirs=()
stop_all() { for d in "${dirs[@]}"; do bash scripts/ceph-cluster.sh stop "$d"; done; }
trap stop_all EXIT
env_line=$(bash scripts/ceph-cluster.sh start)
eval "$env_line"
dirs+=("$RBDIFF_CEPH_DIR")
auth_line=$(bash scripts/ceph-cluster.sh start --auth)
read -r RBDIFF_AUTH_CONF RBDIFF_AUTH_DIR RBDIFF_AUTH_USER RBDIFF_AUTH_KEYRING < <(
  eval "$auth_line"
  echo "$CEPH_CONF $RBDIFF_CEPH_DIR ${RBDIFF_CEPH_USER:-} ${RBDIFF_CEPH_KEYRING:-}"
)
dirs+=("$RBDIFF_AUTH_DIR")
[ -n "$RBDIFF_AUTH_KEYRING" ] || { echo "test-cluster: no auth keyring in: $auth_line" >&2; exit 1; }
export RBDIFF_AUTH_CONF RBDIFF_AUTH_USER RBDIFF_AUTH_KEYRING
cargo test --no-fail-fast -p rbdiff-tests --test cluster -- --include-ignored --test-threads=2
