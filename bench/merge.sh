#!/usr/bin/env bash
# Fusion benchmark: bench/update.sh makes a full pyramid of a real raster and an update chained on it (a crop
# of FRACTION of its area); then `tuile merge` flattens that chain into one standalone pyramid, and its cost
# is set against the full build's, which is what rebuilding the same area from the source costs. Also a merge
# cut to the crop's bbox (the cost follows the tiles copied), and two separate pyramids fused (the full one
# and the crop built alone), where the tiles both hold are composited. Wall and CPU seconds of the process tree.
#   bash bench/merge.sh                                   # modis_miriam_4326.tif, levels 0-11, png
#   RUNS=3 ZMAX=10 FORMAT=jpg bash bench/merge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RASTER=${RASTER:-test/fixtures/modis_miriam_4326.tif}
export ZMAX=${ZMAX:-11}
export FORMAT=${FORMAT:-png}
export FRACTION=${FRACTION:-0.1}
export WORK=${WORK:-/var/tmp/tuile-bench-merge}
RUNS=${RUNS:-1}
[ -f dist/cli.js ] || npm run build
# the full build and the chain, once (bench/update.sh prints their table; it empties WORK first)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
RUNS=1 bash bench/update.sh | tee "$log"
read -r full_wall full_cpu < <(awk '/^run 1: full/ { gsub(/[()]/, ""); print $4, $7 }' "$log")
# shellcheck source=bench/lib.sh
source bench/lib.sh

# the crop's own extent: the update archive's bounds (lon/lat w,s,e,n)
bbox=$(node --input-type=module -e '
const { PMTilesReader } = await import(process.cwd() + "/dist/pyramid/pmtiles/reader.js");
const r = await PMTilesReader.open(process.argv[1]);
console.log(r.header.bounds.join(","));
await r.close();' "$WORK/update/tiles.pmtiles")
node dist/cli.js build "$WORK/crop.tif" --out "$WORK/crop" --top 0 --bottom "$ZMAX" --compression "$FORMAT" --interpolation linear --quiet

# merged tiles, copied and composited, from the merge's summary line
counts() { sed -nE 's/.*: ([0-9]+) tiles \(([0-9]+) copied, ([0-9]+) composited\).*/\1 \2 \3/p' "$WORK/merge.out"; }
declare -A wall cpu n cp co
for step in chain bbox pair; do
  ws=()
  cs=()
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/merged-$step"
    case $step in
      chain) args=("$WORK/update") ;;
      bbox) args=("$WORK/update" "--bbox=$bbox") ;;
      pair) args=("$WORK/full" "$WORK/crop") ;;
    esac
    timed ws cs node dist/cli.js merge "${args[@]}" --out "$WORK/merged-$step" > "$WORK/merge.out"
    printf 'run %d: merge %s %.2f s (CPU %.2f s)\n' "$run" "$step" "${ws[-1]}" "${cs[-1]}"
  done
  wall[$step]=$(printf '%s\n' "${ws[@]}" | median)
  cpu[$step]=$(printf '%s\n' "${cs[@]}" | median)
  read -r n[$step] cp[$step] co[$step] < <(counts)
done

echo
echo "raster $(basename "$RASTER"), levels 0-$ZMAX, $FORMAT; chain = full + update of $FRACTION of the area; merges: $RUNS run(s), medians, $(nproc) CPU"
printf '| step | wall s | CPU s | tiles | copied | composited | tiles/s | wall / full build |\n|---|---|---|---|---|---|---|---|\n'
ft=$(tiles "$WORK/full")
printf '| full build (rebuild of the area) | %.2f | %.2f | %d | | | %.0f | 1 |\n' "$full_wall" "$full_cpu" "$ft" "$(echo "$ft / $full_wall" | bc -l)"
for step in chain bbox pair; do
  case $step in
    chain) what='merge of the chain' ;;
    bbox) what="merge of the chain, bbox $bbox" ;;
    pair) what='merge of full + crop built alone' ;;
  esac
  printf '| %s | %.2f | %.2f | %d | %d | %d | %.0f | %.3f |\n' "$what" "${wall[$step]}" "${cpu[$step]}" "${n[$step]}" "${cp[$step]}" "${co[$step]}" \
    "$(echo "${n[$step]} / ${wall[$step]}" | bc -l)" "$(echo "${wall[$step]} / $full_wall" | bc -l)"
done
