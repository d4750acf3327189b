// Georeferencing tags of a GeoTIFF to one affine geotransform, as GDAL reads them: ModelTransformation, or a
// tiepoint with a pixel scale, or a few GCPs fitted as gdalwarp does; PixelIsPoint applied.

import type { GeoTIFFImage } from 'geotiff';
import { TuileError } from '../errors.js';

/** GDAL's affine geotransform: x = g0 + col*g1 + row*g2, y = g3 + col*g4 + row*g5. */
export type GeoTransform = [number, number, number, number, number, number];

/**
 * gdalwarp's default polynomial order for n GCPs (GDALCreateGCPTransformer with order 0): 1 below 6, 2 below 10,
 * 3 from there. Only order 1 is affine, so only fewer than 6 GCPs can be read as a geotransform.
 */
const MAX_AFFINE_GCPS = 5;

/** Least-squares affine fit of the GCPs (pixel, line) -> (X, Y), as GDAL's order-1 polynomial is. */
export function fitAffine(gcps: { col: number; row: number; x: number; y: number }[]): GeoTransform | null {
  if (gcps.length < 3) return null;
  // normal equations of [1 col row] for X and for Y, in coordinates centred on the GCPs' mean (conditioning)
  const n = gcps.length;
  const mc = gcps.reduce((s, g) => s + g.col, 0) / n;
  const mr = gcps.reduce((s, g) => s + g.row, 0) / n;
  const mx = gcps.reduce((s, g) => s + g.x, 0) / n;
  const my = gcps.reduce((s, g) => s + g.y, 0) / n;
  let scc = 0;
  let scr = 0;
  let srr = 0;
  let scx = 0;
  let srx = 0;
  let scy = 0;
  let sry = 0;
  for (const g of gcps) {
    const c = g.col - mc;
    const r = g.row - mr;
    scc += c * c;
    scr += c * r;
    srr += r * r;
    scx += c * (g.x - mx);
    srx += r * (g.x - mx);
    scy += c * (g.y - my);
    sry += r * (g.y - my);
  }
  const det = scc * srr - scr * scr;
  if (!(Math.abs(det) > 1e-12 * Math.max(scc * srr, 1))) return null;
  const a1 = (scx * srr - srx * scr) / det;
  const a2 = (srx * scc - scx * scr) / det;
  const a4 = (scy * srr - sry * scr) / det;
  const a5 = (sry * scc - scy * scr) / det;
  return [mx - a1 * mc - a2 * mr, a1, a2, my - a4 * mc - a5 * mr, a4, a5];
}

/** The raster's geotransform (GDAL order, pixel corners, in the CRS's units). */
export function readGeoTransform(image: GeoTIFFImage, pixelIsArea: boolean, path: string): GeoTransform {
  const fd = image.fileDirectory as any;
  let g: GeoTransform;
  const point = !pixelIsArea;
  const mt = fd.hasTag('ModelTransformation') ? fd.getValue('ModelTransformation') : undefined;
  const tp = fd.hasTag('ModelTiepoint') ? fd.getValue('ModelTiepoint') : undefined;
  const ps = fd.hasTag('ModelPixelScale') ? fd.getValue('ModelPixelScale') : undefined;
  if (mt && mt.length >= 8) {
    g = [mt[3], mt[0], mt[1], mt[7], mt[4], mt[5]];
  } else if (tp && ps && tp.length >= 6 && ps.length >= 2) {
    // A single tiepoint (i, j) -> (X, Y); GDAL ignores extra tiepoints when a pixel scale is present.
    g = [tp[3] - tp[0] * ps[0], ps[0], 0, tp[4] + tp[1] * ps[1], 0, -ps[1]];
  } else if (tp && tp.length >= 12) {
    const n = Math.floor(tp.length / 6);
    if (n > MAX_AFFINE_GCPS) {
      throw new TuileError(
        'NotGeoreferenced',
        `${path}: ModelTiepointTag holds ${n} tiepoints (GCPs) and there is no ModelPixelScaleTag: gdalwarp fits them with a polynomial of order ${n < 10 ? 2 : 3}, which tuile does not; warp the file first (gdalwarp -order 1 or -tps)`,
      );
    }
    const gcps = [];
    for (let i = 0; i < n; i++) gcps.push({ col: tp[i * 6], row: tp[i * 6 + 1], x: tp[i * 6 + 3], y: tp[i * 6 + 4] });
    const fit = fitAffine(gcps);
    if (!fit) throw new TuileError('NotGeoreferenced', `${path}: the ${n} tiepoints of ModelTiepointTag are aligned: no affine fit`);
    // under PixelIsPoint GDAL moves each GCP half a pixel, which the shift below does to the fit
    g = fit;
  } else {
    throw new TuileError('NotGeoreferenced', `${path}: no georeferencing (no ModelTiepoint/ModelPixelScale or ModelTransformation tags)`);
  }
  if (!g.every(Number.isFinite) || g[1] * g[5] - g[2] * g[4] === 0) {
    throw new TuileError('NotGeoreferenced', `${path}: degenerate georeferencing`);
  }
  if (point) {
    // PixelIsPoint: the tiepoint names the pixel centre; shift to the corner as GDAL does.
    g[0] -= 0.5 * (g[1] + g[2]);
    g[3] -= 0.5 * (g[4] + g[5]);
  }
  return g;
}
