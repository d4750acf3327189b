#!/usr/bin/env bash
# Two tuile nodes sharing one PostgreSQL state and one S3 object store, all on loopback: the scale-out
# mode (README "Scale-out") on one machine.
#   examples/scale-out.sh up     start the engines (scripts/engines.sh) and two nodes, print
#                                NODE_A=<base url>, NODE_B=<base url>, TOKEN=<admin token>,
#                                PID_A=<process group of node A>, PID_B=..., one per line
#   examples/scale-out.sh down   stop the nodes and the engines it started, remove their folders
# Everything lives in $SCALE_OUT_DIR (default .tmp/scale-out in the repository). With ENGINES_ENV naming
# the env file of engines already up (.tmp/engines.env, say), the nodes use those instead, in a database
# and a storage prefix of their own, and down leaves the engines running.
# Node settings: TUILE_WORKERS (serving processes per node, default 1), TUILE_CACHE_MB, TUILE_DEMO
# (node A's demo scenario, default 0), TUILE_ADMIN_TOKEN (default: a random one).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${SCALE_OUT_DIR:-$ROOT/.tmp/scale-out}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
OUT=$DIR/nodes.env

log() { echo "scale-out: $*" >&2; }
die() { log "$*"; exit 1; }

kill_group() {
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 -- "-$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

down() {
  local f
  for f in "$DIR"/pid-*; do
    [ -e "$f" ] || continue
    kill_group "$(cat "$f")"
  done
  if [ -f "$DIR/own-engines" ]; then
    ENGINES_DIR=$DIR/engines bash "$ROOT/scripts/engines.sh" down
  elif [ -f "$DIR/shared-engines" ]; then
    # the nodes' database in engines we did not start
    # shellcheck disable=SC1091
    (set -a; . "$(cat "$DIR/shared-engines")"; set +a
      psql -q "$TUILE_TEST_STATE_URL" -c "DROP DATABASE IF EXISTS $(cat "$DIR/database") WITH (FORCE)" >/dev/null 2>&1 || true)
  fi
  rm -rf "$DIR"
}

free_port() {
  node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# One node: its own process group (setsid), data folder, port and tile cache; state and pyramids shared.
start_node() {
  local name=$1 port=$2 demo=$3
  mkdir -p "$DIR/node-$name"
  (
    cd "$ROOT"
    export PORT=$port HOST=127.0.0.1 TUILE_DATA_DIR=$DIR/node-$name TUILE_DEMO=$demo
    export TUILE_ADMIN_TOKEN=$TOKEN TUILE_STATE_URL=$STATE_URL TUILE_STORAGE_URL=$STORAGE_URL
    export TUILE_WORKERS=${TUILE_WORKERS:-1}
    exec setsid node dist/main.js >"$DIR/node-$name.log" 2>&1 </dev/null
  ) &
  echo $! >"$DIR/pid-$name"
}

wait_node() {
  local name=$1 url=$2
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "$url/health" && return 0
    kill -0 "$(cat "$DIR/pid-$name")" 2>/dev/null || die "node $name exited: $(tail -5 "$DIR/node-$name.log")"
    sleep 0.2
  done
  die "node $name did not answer $url/health (log: $DIR/node-$name.log)"
}

up() {
  [ -f "$OUT" ] && die "already up ($OUT): run '$0 down' first"
  command -v curl >/dev/null || die "curl is needed"
  [ -f "$ROOT/dist/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)
  trap 'rc=$?; if [ "$rc" != 0 ]; then log "up failed: stopping what started"; down; fi' EXIT
  local env_file suffix
  suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  if [ -n "${ENGINES_ENV:-}" ]; then
    env_file=$(cd "$(dirname "$ENGINES_ENV")" && pwd)/$(basename "$ENGINES_ENV")
    [ -f "$env_file" ] || die "no engines env file $ENGINES_ENV"
    echo "$env_file" >"$DIR/shared-engines"
  else
    touch "$DIR/own-engines"
    ENGINES_DIR=$DIR/engines bash "$ROOT/scripts/engines.sh" up >/dev/null
    env_file=$DIR/engines.env
  fi
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
  STATE_URL=$TUILE_TEST_STATE_URL
  STORAGE_URL=${TUILE_TEST_STORAGE_URL%/*}/scale-out-$suffix
  if [ -f "$DIR/shared-engines" ]; then
    # a database of its own, so that the nodes start on an empty state beside other users of the engines
    echo "scaleout_$suffix" >"$DIR/database"
    psql -q "$STATE_URL" -c "CREATE DATABASE scaleout_$suffix" >/dev/null
    STATE_URL=${STATE_URL%/*}/scaleout_$suffix
  fi
  TOKEN=${TUILE_ADMIN_TOKEN:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}
  local port_a port_b
  port_a=$(free_port)
  port_b=$(free_port)
  [ "$port_a" != "$port_b" ] || port_b=$(free_port)
  start_node a "$port_a" "${TUILE_DEMO:-0}"
  wait_node a "http://127.0.0.1:$port_a"
  # B after A: A alone runs the migrations of a new state and, with TUILE_DEMO=1, its demo scenario
  start_node b "$port_b" 0
  wait_node b "http://127.0.0.1:$port_b"
  trap - EXIT
  cat >"$OUT" <<EOF
NODE_A=http://127.0.0.1:$port_a
NODE_B=http://127.0.0.1:$port_b
TOKEN=$TOKEN
PID_A=$(cat "$DIR/pid-a")
PID_B=$(cat "$DIR/pid-b")
EOF
  cat "$OUT"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
