#!/usr/bin/env bash
# A throw-away single-node Ceph cluster (one monitor, one bluestore OSD, no
# auth, loopback only) for rbdiff's cluster tests and benchmarks.
#
#   scripts/ceph-cluster.sh install        # Debian packages (idempotent)
#   eval "$(scripts/ceph-cluster.sh start [--auth] [DIR])"   # prints 'export CEPH_CONF=...'
#   scripts/ceph-cluster.sh env [DIR]      # the same line again
#   scripts/ceph-cluster.sh stop [DIR]     # stops exactly the daemons it started
#
# DIR (default: a new temporary directory, printed as RBDIFF_CEPH_DIR) holds
# the configuration, the daemons' data, logs and pid files.
# --auth: cephx required everywhere; every entity's keyring is DIR/NAME.keyring
# (the configuration's 'keyring = DIR/$name.keyring': client.admin's is found
# without flags), and a restricted client.backup (caps: mon 'profile rbd',
# osd 'profile rbd pool=rbd') whose keyring, DIR/client.backup.keyring, is
# printed as RBDIFF_CEPH_KEYRING with RBDIFF_CEPH_USER=backup.
# Several clusters run side by side: each has its own DIR, fsid and free port
# (the OSDs pick free ports themselves). 'stop' kills only
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

write_conf() { # dir port fsid auth(none|cephx)
  local d=$1 port=$2 fsid=$3 auth=$4 keyring
  keyring=$d/keyring
  [ "$auth" = none ] || keyring="$d/\$name.keyring"
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
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
auth supported = $auth
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
run dir = $d/run
keyring = $keyring
log file = $d/log/\$name.log
rbd default features = 61
[mon]
# The monitor gathers map changes for this long before proposing them (1 s
# by default): every new snapshot id waited for it, up to a second of each
# import-diff's time, the same for rbd and rbdiff.
paxos propose interval = 0.05
admin socket = $d/run/\$name.asok
mon data = $d/mon.\$id
[osd]
admin socket = $d/run/\$name.asok
osd data = $d/osd.\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 34359738368
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

# The keys of a cephx cluster, before the monitor's mkfs: mon. and
# client.admin (all caps) in the keyring the monitor is made with.
make_keys() { # dir -> the monitor's mkfs keyring
  local d=$1
  ceph-authtool --create-keyring "$d/mon.a.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$d/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$d/mon.a.keyring" --import-keyring "$d/client.admin.keyring" >/dev/null
  echo "$d/mon.a.keyring"
}

try_start() { # dir auth(none|cephx) -> 0 when the cluster is up
  local d=$1 auth=$2 port fsid osd_uuid id keyring
  mkdir -p "$d/run" "$d/log"
  port=$(free_port)
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  write_conf "$d" "$port" "$fsid" "$auth"
  export CEPH_CONF=$d/ceph.conf
  if [ "$auth" = none ]; then
    keyring=$d/keyring
    ceph-authtool --create-keyring "$keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  else
    keyring=$(make_keys "$d")
  fi
  monmaptool --create --fsid "$fsid" --addv a "v1:127.0.0.1:$port" "$d/monmap" >/dev/null
  mkdir -p "$d/mon.a"
  ceph-mon --mkfs -i a --monmap "$d/monmap" --keyring "$keyring" >/dev/null 2>&1
  ceph-mon -i a -f >/dev/null 2>&1 &
  echo $! >"$d/run/mon.pid.rbdiff"
  wait_for 30 ceph --connect-timeout 5 -s || { log "monitor did not answer"; return 1; }
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  id=$(ceph osd new "$osd_uuid")
  mkdir -p "$d/osd.$id"
  if [ "$auth" != none ]; then
    ceph-authtool --create-keyring "$d/osd.$id.keyring" --gen-key -n "osd.$id" >/dev/null
    ceph auth add "osd.$id" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
      -i "$d/osd.$id.keyring" >/dev/null 2>&1
  fi
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
  if [ "$auth" != none ]; then
    ceph auth get-or-create client.backup mon 'profile rbd' osd 'profile rbd pool=rbd' \
      -o "$d/client.backup.keyring" >/dev/null 2>&1
  fi
}

env_line() { # dir
  local d=$1
  printf 'export CEPH_CONF=%s RBDIFF_CEPH_DIR=%s' "$d/ceph.conf" "$d"
  [ -f "$d/client.backup.keyring" ] &&
    printf ' RBDIFF_CEPH_USER=backup RBDIFF_CEPH_KEYRING=%s' "$d/client.backup.keyring"
  echo
}

start() { # [--auth] [DIR]
  local auth=none d n
  if [ "${1:-}" = --auth ]; then auth=cephx; shift; fi
  d=${1:-}
  install_pkgs
  for n in 1 2 3; do
    [ -n "$d" ] || d=$(mktemp -d /tmp/rbdiff-ceph.XXXXXX)
    if (try_start "$d" "$auth"); then
      env_line "$d"
      log "up in $d (attempt $n, auth $auth)"
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
  start) shift; start "$@" ;;
  env)
    d=${2:-${RBDIFF_CEPH_DIR:?give DIR or set RBDIFF_CEPH_DIR}}
    [ -f "$d/ceph.conf" ] || { log "no cluster in $d"; exit 2; }
    env_line "$d" ;;
  stop) stop_dir "${2:-${RBDIFF_CEPH_DIR:?give DIR or set RBDIFF_CEPH_DIR}}" ;;
  *) echo "usage: $0 install | start [--auth] [DIR] | env [DIR] | stop [DIR]" >&2; exit 1 ;;
esac
