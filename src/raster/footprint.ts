// Where a delivery lands in Web Mercator, from its metadata only: the densified outline of each raster, the
// resolution gdalwarp would suggest, and their union. The upload checks and the build both plan from it.

import { TuileError } from '../errors.js';
import { transformer, WEB_MERCATOR, WGS84 } from '../geo/crs.js';
import { lonLatToMercator, unionBbox, type Bbox } from '../geo/tms.js';
import type { RasterInfo } from './geotiff.js';

/** Footprint of a raster in Web Mercator, from its densified outline (latitudes clamped to the TMS). */
export function footprint3857(info: RasterInfo): Bbox {
  const toLonLat = transformer(info.crs, WGS84);
  const g = info.geoTransform;
  const steps = 32;
  const pts = new Float64Array((steps + 1) * 4 * 2);
  let k = 0;
  for (let i = 0; i <= steps; i++) {
    const f = i / steps;
    for (const [c, r] of [
      [f * info.width, 0],
      [f * info.width, info.height],
      [0, f * info.height],
      [info.width, f * info.height],
    ]) {
      pts[k++] = g[0] + c * g[1] + r * g[2];
      pts[k++] = g[3] + c * g[4] + r * g[5];
    }
  }
  toLonLat.forwardArray(pts);
  // Longitudes past ±180 (a geographic raster over the antimeridian): PM has no room for them, proj wraps them to
  // the other side of the world, and gdalwarp -t_srs EPSG:3857 fails on such a file; refused, not cut silently.
  // Up to a pixel beyond is cut as before: global grids registered on pixel centres reach half a pixel past 180,
  // a column that repeats the other edge.
  const slack = info.crs.isGeographic ? Math.hypot(g[1], g[4]) : 0;
  let west = Infinity;
  let east = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    if (Number.isFinite(pts[i])) {
      west = Math.min(west, pts[i]);
      east = Math.max(east, pts[i]);
    }
  }
  if (west < -180 - slack || east > 180 + slack) {
    throw new TuileError(
      'UnsupportedRaster',
      west < 180 && east > -180
        ? `${info.path}: it spans longitudes ${west.toFixed(6)} to ${east.toFixed(6)}, across the antimeridian; split it at 180° (gdalwarp -te) and deliver both parts`
        : `${info.path}: its longitudes ${west.toFixed(6)} to ${east.toFixed(6)} lie outside -180..180`,
    );
  }
  const b: Bbox = { minX: Infinity, minY: Infinity, maxX: -Infinity, maxY: -Infinity };
  for (let i = 0; i < pts.length; i += 2) {
    if (!Number.isFinite(pts[i]) || !Number.isFinite(pts[i + 1])) continue;
    const [x, y] = lonLatToMercator(Math.max(-180, Math.min(180, pts[i])), pts[i + 1]);
    b.minX = Math.min(b.minX, x);
    b.maxX = Math.max(b.maxX, x);
    b.minY = Math.min(b.minY, y);
    b.maxY = Math.max(b.maxY, y);
  }
  if (!(b.minX < b.maxX && b.minY < b.maxY)) {
    throw new TuileError('InvalidInput', `${info.path}: its extent does not project to Web Mercator`);
  }
  return b;
}

/**
 * Resolution gdalwarp suggests for the warped raster (GDALSuggestedWarpOutput2): the distance from the raster's
 * first corner to its last in Web Mercator over the pixel diagonal. Not the extent's diagonal, which a rotated or
 * polar raster stretches (a level too coarse on the corpus's rotated and polar files). That one where a corner
 * does not project.
 */
export function suggestedResolution(info: RasterInfo, b: Bbox): number {
  const g = info.geoTransform;
  const { width: w, height: h } = info;
  const corners = new Float64Array([g[0], g[3], g[0] + w * g[1] + h * g[2], g[3] + w * g[4] + h * g[5]]);
  transformer(info.crs, WEB_MERCATOR).forwardArray(corners);
  const d = Math.hypot(corners[2] - corners[0], corners[3] - corners[1]);
  return (Number.isFinite(d) && d > 0 ? d : Math.hypot(b.maxX - b.minX, b.maxY - b.minY)) / Math.hypot(w, h);
}

/** A delivery's extent in EPSG:3857 (the union of its files') and the finest resolution gdalwarp suggests for them. */
export function deliveryFootprint(infos: readonly RasterInfo[]): { bbox: Bbox; finest: number } {
  const boxes = infos.map(footprint3857);
  return { bbox: unionBbox(boxes), finest: Math.min(...infos.map((info, i) => suggestedResolution(info, boxes[i]))) };
}
