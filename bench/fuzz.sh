#!/usr/bin/env bash
# Fuzz run: test/http/fuzz.test.ts with many more generated requests per route family (WMTS KVP and RESTful,
# TMS, XYZ, OGC API - Tiles, pages, management API, uploads, raw HTTP), then the number of requests sent.
#   bash bench/fuzz.sh                              # 5000 requests per family, seed 42
#   TUILE_FUZZ_RUNS=20000 TUILE_FUZZ_SEED=7 bash bench/fuzz.sh
#   TUILE_FUZZ_COLLECT=1 bash bench/fuzz.sh         # every failing request, not the first one shrunk
# `npm run bench:fuzz` builds dist/ first. Exit code: the test's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/main.js ] || npm run build
REPORT=$(mktemp "${TMPDIR:-/tmp}/tuile-fuzz-XXXXXX")
trap 'rm -f "$REPORT"' EXIT
status=0
TUILE_FUZZ_RUNS=${TUILE_FUZZ_RUNS:-5000} TUILE_FUZZ_REPORT="$REPORT" npx vitest run test/http/fuzz.test.ts || status=$?
if [ -s "$REPORT" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const fam = Object.entries(r.perFamily).map(([k, n]) => `${k} ${n}`).join(", ");
    console.log(`requests sent: ${r.requests} in ${r.seconds.toFixed(1)} s (${(r.requests / r.seconds).toFixed(0)}/s), seed ${r.seed}, ${r.runs} per family: ${fam}`);
    console.log(`distinct failures: ${r.failures.length}, crashes: ${r.crashes.length}`);
  ' "$REPORT"
else
  echo "requests sent: unknown (the test wrote no report)" >&2
fi
exit "$status"
