#!/usr/bin/env bash
# Fault-injection benchmark: KILLS random kill -9 of tuile across uploads, builds, publications,
# synchronisations and deletions, each followed by a restart and a full consistency check (statuses,
# acknowledged writes, state vs files, state vs served tiles). See bench/faults.mjs for the method.
#   bash bench/faults.sh                       # KILLS=20 WORKERS=2
#   KILLS=50 SEED=42 bash bench/faults.sh      # a longer run; SEED replays a run's choices
# Bounded: stops after KILLS kills or CAP_S seconds (600). Exit 1 when any inconsistency is found.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/main.js ] || npm run build
export KILLS=${KILLS:-20} WORKERS=${WORKERS:-2} CAP_S=${CAP_S:-600}
exec node bench/faults.mjs
