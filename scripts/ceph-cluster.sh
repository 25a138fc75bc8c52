#!/usr/bin/env bash
# A throw-away single-node Ceph cluster (one monitor, one bluestore OSD, no
# auth, loopback only) for rbdiff's cluster tests and benchmarks.
#
#   scripts/ceph-cluster.sh install        # Debian packages (idempotent)
#   eval "$(scripts/ceph-cluster.sh start [DIR])"   # prints 'export CEPH_CONF=...'
#   scripts/ceph-cluster.sh env [DIR]      # the same line again
#   scripts/ceph-cluster.sh stop [DIR]     # stops exactly the daemons it started
#
# DIR (default: a new temporary directory, printed as RBDIFF_CEPH_DIR) holds
# the configuration, the daemons' data, logs and pid files. 'stop' kills only
# the pids recorded there (never by name: other clusters may run on this
# machine), waits for them (SIGKILL after 10 s) and removes DIR.
# The OSD sometimes never comes up ("wrong fsid" in its log); 'start' then
# starts over in a clean directory, up to 3 times.
set -euo pipefail

PKGS=(ceph-mon ceph-osd ceph-common librbd-dev python3-rbd python3-rados)
log() { echo "ceph-cluster: $*" >&2; }

install_pkgs() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

write_conf() { # dir port fsid
  local d=$1 port=$2 fsid=$3
  cat >"$d/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
run dir = $d/run
keyring = $d/keyring
log file = $d/log/\$name.log
rbd default features = 61
[mon]
admin socket = $d/run/\$name.asok
mon data = $d/mon.\$id
[osd]
admin socket = $d/run/\$name.asok
osd data = $d/osd.\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 17179869184
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 1073741824
osd max object name len = 460
osd max object namespace len = 64
EOF
}

# Wait up to $1 seconds for command "${@:2}" to succeed.
wait_for() {
  local t=$1; shift
  for _ in $(seq "$t"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

osd_up() { ceph --connect-timeout 5 osd dump 2>/dev/null | grep -q "^osd\.$1 up"; }

stop_dir() {
  local d=$1 pids=() p
  [ -d "$d" ] || return 0
  for f in "$d"/run/*.pid.rbdiff; do
    [ -f "$f" ] && pids+=("$(cat "$f")")
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$d"
}

try_start() { # dir -> 0 when the cluster is up
  local d=$1 port fsid osd_uuid id
  mkdir -p "$d/run" "$d/log"
  port=$(free_port)
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  write_conf "$d" "$port" "$fsid"
  export CEPH_CONF=$d/ceph.conf
  ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "v1:127.0.0.1:$port" "$d/monmap" >/dev/null
  mkdir -p "$d/mon.a"
  ceph-mon --mkfs -i a --monmap "$d/monmap" --keyring "$d/keyring" >/dev/null 2>&1
  ceph-mon -i a -f >/dev/null 2>&1 &
  echo $! >"$d/run/mon.pid.rbdiff"
  wait_for 30 ceph --connect-timeout 5 -s || { log "monitor did not answer"; return 1; }
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  id=$(ceph osd new "$osd_uuid")
  mkdir -p "$d/osd.$id"
  ceph-osd -i "$id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
  ceph-osd -i "$id" -f >/dev/null 2>&1 &
  echo $! >"$d/run/osd.pid.rbdiff"
  if ! wait_for 45 osd_up "$id"; then
    grep -q "wrong fsid" "$d"/log/osd."$id".log 2>/dev/null && log "osd: wrong fsid"
    log "osd.$id did not come up"
    return 1
  fi
  ceph osd pool create rbd 8 8 >/dev/null 2>&1
  ceph osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1
  rbd pool init rbd
}

start() {
  local d=${1:-} n
  install_pkgs
  for n in 1 2 3; do
    [ -n "$d" ] || d=$(mktemp -d /tmp/rbdiff-ceph.XXXXXX)
    if (try_start "$d"); then
      echo "export CEPH_CONF=$d/ceph.conf RBDIFF_CEPH_DIR=$d"
      log "up in $d (attempt $n)"
      return 0
    fi
    stop_dir "$d"
    d=
  done
  log "the cluster did not come up in 3 attempts"
  return 1
}

case "${1:-}" in
  install) install_pkgs ;;
  start) start "${2:-}" ;;
  env)
    d=${2:-${RBDIFF_CEPH_DIR:?give DIR or set RBDIFF_CEPH_DIR}}
    [ -f "$d/ceph.conf" ] || { log "no cluster in $d"; exit 2; }
    echo "export CEPH_CONF=$d/ceph.conf RBDIFF_CEPH_DIR=$d" ;;
  stop) stop_dir "${2:-${RBDIFF_CEPH_DIR:?give DIR or set RBDIFF_CEPH_DIR}}" ;;
  *) echo "usage: $0 install | start [DIR] | env [DIR] | stop [DIR]" >&2; exit 1 ;;
esac
