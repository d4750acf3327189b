#!/usr/bin/env bash
# Serve benchmark: tuile against nginx (static files), MapCache and MapProxy on the same tiles, in one run,
# through ../shared/peers/bench-serve.sh (loopback only, bounded duration). Needs bench/build.sh first:
# it serves the last pyramid tuile built there ($PEERS_WORK/contender/png).
#   RUNS=5 DURATION=15 bash bench/serve.sh            # every peer and tuile
#   RUNS=3 DURATION=10 bash bench/serve.sh nginx mapcache-rest contender
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/peers}
WORK=${PEERS_WORK:-/var/tmp/peers-work}
PYR=$WORK/contender/png
[ -f "$PYR/pyramid.json" ] || { echo "no tuile pyramid in $PYR: run bench/build.sh first" >&2; exit 2; }
[ -f dist/cli.js ] || npm run build
PORT=${TUILE_BENCH_PORT:-18091}
mkdir -p "$WORK/logs"
HOST=127.0.0.1 PORT=$PORT TUILE_DEMO=0 TUILE_DATA_DIR="$WORK/tuile-data" TUILE_CACHE_MB=${TUILE_CACHE_MB:-256} \
  node dist/cli.js serve --layer "bench=$PYR" > "$WORK/logs/tuile-serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "tuile did not start:" >&2; cat "$WORK/logs/tuile-serve.log" >&2; exit 1; }
CONTENDER_URL="http://127.0.0.1:$PORT/tiles/bench/{z}/{x}/{y}.png" CONTENDER_PID=$PID bash "$PEERS/bench-serve.sh" "$@"
