#!/usr/bin/env bash
# Build benchmark: tuile against gdal2tiles, MapProxy and MapCache on the same raster and levels, in one
# run, through ../shared/peers (see its README). Extra arguments name the steps to run.
#   RUNS=3 ZMAX=16 bash bench/build.sh                       # every peer, then tuile png and jpeg
#   RUNS=3 bash bench/build.sh g2t-warp g2t-png mapcache-jpeg contender-png contender-jpeg
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/peers}
[ -f dist/cli.js ] || npm run build
export CONTENDER_BUILD='node dist/cli.js build {raster} --out {out} --top {zmin} --bottom {zmax} --compression {format} --interpolation linear --quiet'
export CONTENDER_COUNT='node -e "console.log(JSON.parse(require(\"fs\").readFileSync(\"{out}/pyramid.json\",\"utf8\")).stats.tiles)"'
exec bash "$PEERS/bench-build.sh" "$@"
