#!/usr/bin/env bash
# Sync benchmark: tile load on keep-alive connections while a layer is switched SYNCS times between two
# stored data (the north, and the south chained on it); failed answers, answers of neither version,
# requests/s, and the time from each PUT offering's answer until every serving process serves the new
# version (goal: 0 failed, 0 mixed, every sync visible within 100 ms). See bench/sync.mjs for the method.
#   bash bench/sync.sh                                  # SYNCS=100 CONNECTIONS=64 WORKERS=2
#   SYNCS=20 CONNECTIONS=16 WORKERS=4 bash bench/sync.sh
# Bounded: stops after the syncs, or after CAP_S seconds (300). Exit 1 when a goal other than the
# latency one is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/main.js ] || npm run build
export SYNCS=${SYNCS:-100} CONNECTIONS=${CONNECTIONS:-64} WORKERS=${WORKERS:-2}
exec node bench/sync.mjs
