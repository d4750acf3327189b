#!/usr/bin/env bash
# Scale-out benchmark: tiles/s of a node on local disk and on object storage (cache cold and hot), two
# nodes against one, and 100 syncs across two nodes under load (goal: 0 failed answers, every sync
# visible on every node within 1 s). See bench/scale.mjs for the method.
#   bash bench/scale.sh                                   # CONNECTIONS=32 DURATION=10 SYNCS=100
#   ENGINES_ENV=.tmp/engines.env bash bench/scale.sh      # on engines already up
#   LOCAL_ONLY=1 bash bench/scale.sh                      # the local-disk rows alone, without engines
# Starts PostgreSQL and Swift with scripts/engines.sh (in a folder of its own, stopped at the end) unless
# ENGINES_ENV names engines already up. Bounded: CAP_S seconds (600) for the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/main.js ] || npm run build
if [ -z "${ENGINES_ENV:-}" ] && [ "${LOCAL_ONLY:-0}" != 1 ]; then
  export ENGINES_DIR=${TMPDIR:-/tmp}/tuile-bench-scale-engines/engines
  trap 'bash scripts/engines.sh down; rmdir "$(dirname "$ENGINES_DIR")" 2>/dev/null || true' EXIT
  bash scripts/engines.sh up >/dev/null
  export ENGINES_ENV=$(dirname "$ENGINES_DIR")/engines.env
fi
[ "${LOCAL_ONLY:-0}" = 1 ] && unset ENGINES_ENV
node bench/scale.mjs
