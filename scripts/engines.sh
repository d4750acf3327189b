#!/usr/bin/env bash
# The engines of the scale-out mode, for tests, benchmarks and examples/scale-out.sh, on loopback:
# PostgreSQL 15 (a private cluster, not Debian's main one) and an S3-compatible object store, OpenStack
# Swift with its s3api middleware (Debian's swift-* packages; memcached beside it, which the proxy's
# caches and tempauth need). Everything lives in $ENGINES_DIR (default .tmp/engines in the repository)
# on ports chosen here, so several instances run side by side (one per ENGINES_DIR).
#   scripts/engines.sh up     install what is missing (apt-get), start, write and print the env file
#   scripts/engines.sh down   stop what up started and remove $ENGINES_DIR and the env file
#   scripts/engines.sh env    print the env file
#   scripts/engines.sh missing   the Debian packages up would install, one a line (.ci/run installs them
#                                with its own in one apt-get)
# The env file, $ENGINES_DIR/../engines.env (.tmp/engines.env by default), holds KEY=value lines
# (TUILE_TEST_STATE_URL, TUILE_TEST_STORAGE_URL, TUILE_S3_ENDPOINT, AWS_*) read by test/helpers/engines.ts.
# These engines are for tests: PostgreSQL runs with fsync off, Swift with one replica on one folder.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${ENGINES_DIR:-$ROOT/.tmp/engines}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ENV_FILE=$(dirname "$DIR")/engines.env
PG_BIN=/usr/lib/postgresql/15/bin
BUCKET=tuile

log() { echo "engines: $*" >&2; }
die() { log "$*"; exit 1; }

# The Debian packages of the engines not installed yet, one a line.
missing() {
  [ -x "$PG_BIN/pg_ctl" ] || echo postgresql-15
  command -v memcached >/dev/null || echo memcached
  command -v curl >/dev/null || echo curl
  local p
  for p in proxy object container account; do command -v "swift-$p-server" >/dev/null || echo "swift-$p"; done
}

install_missing() {
  local need
  mapfile -t need < <(missing)
  ((${#need[@]})) || return 0
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root to install them (apt-get)"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local try
  for try in 1 2 3; do
    if apt-get update -qq && apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
      return 0
    fi
    [ "$try" = 3 ] && die "could not install ${need[*]}"
    sleep 10
  done
}

# Ports are taken together, each held open until all are chosen, so they differ from one another.
free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]), servers = [];
    const next = () => {
      if (servers.length === n) {
        console.log(servers.map((s) => s.address().port).join(" "));
        servers.forEach((s) => s.close());
        return;
      }
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => { servers.push(s); next(); });
    };
    next();' "$1"
}

secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# Run as the postgres user when root (PostgreSQL refuses to run as root), as oneself otherwise.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A process started in its own session: its pid is its process group, which down kills whole.
spawn() {
  local name=$1; shift
  setsid "$@" >"$DIR/log/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

wait_http() {
  local url=$1 what=$2 i
  for i in $(seq 1 150); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.2
  done
  die "$what did not answer at $url (logs: $DIR/log)"
}

start_postgres() {
  local port=$1 password=$2
  mkdir -p "$DIR/pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/pg"
  as_pg test -w "$DIR/pg" || die "the postgres user cannot write to $DIR/pg: choose an ENGINES_DIR whose parents it can traverse"
  as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$DIR/log/initdb.log" 2>&1 || die "initdb failed: $DIR/log/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w -t 60 \
    -o "-p $port -k $DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start: $DIR/pg/postgres.log"
  as_pg "$PG_BIN/psql" -h "$DIR/pg" -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE tuile LOGIN CREATEDB PASSWORD '$password'" -c "CREATE DATABASE tuile OWNER tuile" >/dev/null
}

swift_conf() {
  local etc=$1 ports=($2) key=$3 user
  user=$(id -un)
  cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = $(secret)
swift_hash_path_suffix = $(secret)

[storage-policy:0]
name = Policy-0
default = yes
EOF
  local common="[DEFAULT]
bind_ip = 127.0.0.1
swift_dir = $etc
devices = $DIR/swift/srv
mount_check = false
user = $user
workers = 0
log_name = swift
log_level = WARNING
"
  # Lines apart per server, each ending with its port.
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = account-server\n\n[app:account-server]\nuse = egg:swift#account\n' \
    "$common" "${ports[1]}" >"$etc/account-server.conf"
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = container-server\n\n[app:container-server]\nuse = egg:swift#container\n' \
    "$common" "${ports[2]}" >"$etc/container-server.conf"
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = object-server\n\n[app:object-server]\nuse = egg:swift#object\n' \
    "$common" "${ports[3]}" >"$etc/object-server.conf"
  cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${ports[0]}
swift_dir = $etc
user = $user
workers = 1
log_name = swift-proxy
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports[4]}

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_tuile_tuile = $key .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
}

start_swift() {
  local ports=($1) key=$2 etc=$DIR/swift/etc
  mkdir -p "$etc" "$DIR/swift/srv/d1"
  python3 - "$DIR/swift/srv/d1" <<'EOF' || die "the folder $DIR does not keep user extended attributes, which Swift stores object metadata in: set ENGINES_DIR to a folder on ext4, xfs or btrfs"
import os, sys
p = os.path.join(sys.argv[1], ".xattr-check")
open(p, "w").close()
os.setxattr(p, "user.swift.check", b"1")
os.remove(p)
EOF
  swift_conf "$etc" "$1" "$key"
  local ring i=1
  for ring in account container object; do
    swift-ring-builder "$etc/$ring.builder" create 6 1 1 >/dev/null
    swift-ring-builder "$etc/$ring.builder" add "r1z1-127.0.0.1:${ports[$i]}/d1" 1 >/dev/null
    swift-ring-builder "$etc/$ring.builder" rebalance >/dev/null || [ $? = 1 ] || die "swift-ring-builder $ring failed"
    i=$((i + 1))
  done
  # --verbose: to the console, that is $DIR/log (a sandbox has no syslog); warnings and errors only
  spawn memcached memcached -l 127.0.0.1 -p "${ports[4]}" -U 0 -m 64 -u "$(id -un)"
  spawn swift-account swift-account-server "$etc/account-server.conf" --verbose
  spawn swift-container swift-container-server "$etc/container-server.conf" --verbose
  spawn swift-object swift-object-server "$etc/object-server.conf" --verbose
  spawn swift-proxy swift-proxy-server "$etc/proxy-server.conf" --verbose
  wait_http "http://127.0.0.1:${ports[0]}/healthcheck" "swift-proxy"
  # The bucket is a Swift container; tempauth's token makes it without an S3 signature.
  local token
  token=$(curl -sf -D - -o /dev/null -H "X-Auth-User: tuile:tuile" -H "X-Auth-Key: $key" \
    "http://127.0.0.1:${ports[0]}/auth/v1.0" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')
  [ -n "$token" ] || die "tempauth gave no token (logs: $DIR/log)"
  for i in $(seq 1 50); do
    if curl -sf -X PUT -H "X-Auth-Token: $token" -o /dev/null "http://127.0.0.1:${ports[0]}/v1/AUTH_tuile/$BUCKET"; then
      return 0
    fi
    sleep 0.2
  done
  die "could not create the bucket $BUCKET (logs: $DIR/log)"
}

down() {
  local f pid
  if [ -d "$DIR/pids" ]; then
    for f in "$DIR"/pids/*; do
      [ -e "$f" ] || continue
      pid=$(cat "$f")
      kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for f in "$DIR"/pids/*; do
      [ -e "$f" ] || continue
      pid=$(cat "$f")
      for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    done
  fi
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  rm -f "$ENV_FILE"
}

up() {
  if [ -f "$ENV_FILE" ] && [ -d "$DIR/pids" ]; then
    die "already up ($ENV_FILE): run '$0 down' first"
  fi
  command -v node >/dev/null || die "node is needed (to choose free ports)"
  install_missing
  rm -rf "$DIR"
  mkdir -p "$DIR/log" "$DIR/pids"
  local ports pg_password s3_key
  ports=($(free_ports 6))
  pg_password=$(secret)
  s3_key=$(secret)
  # A failed start stops what did start: nothing is left running behind an error.
  trap 'rc=$?; if [ "$rc" != 0 ]; then log "up failed: stopping what started"; down; fi' EXIT
  start_postgres "${ports[0]}" "$pg_password"
  start_swift "${ports[*]:1}" "$s3_key"
  cat >"$ENV_FILE" <<EOF
TUILE_TEST_STATE_URL=postgres://tuile:$pg_password@127.0.0.1:${ports[0]}/tuile
TUILE_TEST_STORAGE_URL=s3://$BUCKET/test
TUILE_S3_ENDPOINT=http://127.0.0.1:${ports[1]}
AWS_ACCESS_KEY_ID=tuile:tuile
AWS_SECRET_ACCESS_KEY=$s3_key
AWS_REGION=us-east-1
AWS_REQUEST_CHECKSUM_CALCULATION=when_required
AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
EOF
  chmod 600 "$ENV_FILE"
  trap - EXIT
  cat "$ENV_FILE"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) [ -f "$ENV_FILE" ] || die "not up: no $ENV_FILE"; cat "$ENV_FILE" ;;
  missing) missing ;;
  *) echo "usage: $0 up|down|env|missing" >&2; exit 2 ;;
esac
