#!/usr/bin/env bash
# Update benchmark: a full pyramid of a real raster, then an update chained on it from a crop of about
# FRACTION of its area (a window of the same raster), and the cost of the update against the full build:
# wall and CPU seconds (the whole process tree), tiles, archive bytes, and their ratios (goal of the
# issue: time and bytes <= 0.15 of the full build's). On a shared machine the CPU ratio moves less than
# the wall one.
#   bash bench/update.sh                                  # modis_miriam_4326.tif, levels 0-11, png
#   RUNS=3 ZMAX=10 FORMAT=jpg FRACTION=0.1 bash bench/update.sh
# Any build pays about 1 s (wall) of fixed cost: Node, its modules and the workers' (sharp, geotiff,
# proj4). At ZMAX=11 (12k tiles, ~45 s) it weighs 2 % of the full build; at ZMAX=10 (3k tiles) 8 %.
# Needs no GDAL: the crop is cut with geotiff.js (an uncompressed strip GeoTIFF in EPSG:4326 is enough).
set -euo pipefail
cd "$(dirname "$0")/.."
RASTER=${RASTER:-test/fixtures/modis_miriam_4326.tif}
ZMAX=${ZMAX:-11}
FORMAT=${FORMAT:-png}
FRACTION=${FRACTION:-0.1}
RUNS=${RUNS:-1}
WORK=${WORK:-/var/tmp/tuile-bench-update}
[ -f dist/cli.js ] || npm run build
rm -rf "$WORK"
mkdir -p "$WORK"

# A centred window of FRACTION of the pixels, georeferenced by the raster's own geotransform.
node --input-type=module - "$RASTER" "$WORK/crop.tif" "$FRACTION" <<'EOF'
import { writeFileSync } from 'node:fs';
import { fromFile, writeArrayBuffer } from 'geotiff';
const [src, dst, fraction] = process.argv.slice(2);
const tiff = await fromFile(src);
const img = await tiff.getImage();
const geo = img.getGeoKeys();
if (geo.GeographicTypeGeoKey !== 4326) throw new Error(`${src}: the crop writer handles EPSG:4326 rasters only`);
const [W, H] = [img.getWidth(), img.getHeight()];
const side = Math.sqrt(Number(fraction));
const w = Math.round(W * side);
const h = Math.round(H * side);
const x0 = Math.round((W - w) / 2);
const y0 = Math.round((H - h) / 2);
const data = await img.readRasters({ window: [x0, y0, x0 + w, y0 + h], interleave: true });
const [ox, oy] = img.getOrigin();
const [rx, ry] = img.getResolution();
const buf = writeArrayBuffer(new Uint8Array(data), {
  width: w,
  height: h,
  ModelPixelScale: [rx, -ry, 0],
  ModelTiepoint: [0, 0, 0, ox + x0 * rx, oy + y0 * ry, 0],
  GeographicTypeGeoKey: 4326,
  GTModelTypeGeoKey: 2,
  GTRasterTypeGeoKey: 1,
});
writeFileSync(dst, Buffer.from(buf));
console.log(`crop: ${w}x${h} of ${W}x${H} px (${((100 * w * h) / (W * H)).toFixed(1)} % of the area) at ${x0},${y0}`);
EOF

# shellcheck source=bench/lib.sh
source bench/lib.sh

full_s=()
full_c=()
upd_s=()
upd_c=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/full" "$WORK/update"
  timed full_s full_c node dist/cli.js build "$RASTER" --out "$WORK/full" --top 0 --bottom "$ZMAX" --compression "$FORMAT" --interpolation linear --quiet
  # options left out: the update takes the parent's levels, format and interpolation
  timed upd_s upd_c node dist/cli.js build "$WORK/crop.tif" --out "$WORK/update" --parent "$WORK/full" --quiet
  printf 'run %d: full %.2f s (CPU %.2f s), update %.2f s (CPU %.2f s)\n' "$run" "${full_s[-1]}" "${full_c[-1]}" "${upd_s[-1]}" "${upd_c[-1]}"
done

fs=$(printf '%s\n' "${full_s[@]}" | median)
fc=$(printf '%s\n' "${full_c[@]}" | median)
us=$(printf '%s\n' "${upd_s[@]}" | median)
uc=$(printf '%s\n' "${upd_c[@]}" | median)
fb=$(archive "$WORK/full")
ub=$(archive "$WORK/update")
ft=$(tiles "$WORK/full")
ut=$(tiles "$WORK/update")
echo
echo "raster $(basename "$RASTER"), levels 0-$ZMAX, $FORMAT, update from a crop of $FRACTION of the area, $RUNS run(s), medians, $(nproc) CPU"
printf '| build | wall s | CPU s | tiles | archive bytes |\n|---|---|---|---|---|\n'
printf '| full | %.2f | %.2f | %d | %d |\n' "$fs" "$fc" "$ft" "$fb"
printf '| update | %.2f | %.2f | %d | %d |\n' "$us" "$uc" "$ut" "$ub"
printf '| update / full | %.3f | %.3f | %.3f | %.3f |\n' "$(echo "$us / $fs" | bc -l)" "$(echo "$uc / $fc" | bc -l)" "$(echo "$ut / $ft" | bc -l)" "$(echo "$ub / $fb" | bc -l)"
