// Resampling kernels on pixel centres (nearest, bilinear, Keys cubic, Lanczos-3) with gdalwarp's semantics.

import { TuileError } from '../errors.js';
import { zeroedBuffer } from './buffers.js';
import { MAX_UNROLL, separableFastLoop } from './fastloop.js';
import {
  EDGE_EPSILON,
  FILTER_CUBIC,
  FILTER_LANCZOS,
  FILTER_TENT,
  LANCZOS_TABLE,
  allOpaque,
  bilinear4,
  cubic4,
  opaque2x2,
  opaque4x4,
  reserveTaps,
  separable,
  toByte,
  type Job,
} from './taps.js';

export type Kernel = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';

/** The names users give kernels (GDAL's and the Entrepôt's among them). */
export const KERNEL_NAMES: Readonly<Record<string, Kernel>> = {
  nn: 'nearest',
  nearest: 'nearest',
  near: 'nearest',
  linear: 'bilinear',
  bilinear: 'bilinear',
  bicubic: 'bicubic',
  cubic: 'bicubic',
  lanczos: 'lanczos',
};

export interface SourceWindow {
  x0: number; // position of the window's top-left pixel in full source pixel space
  y0: number;
  width: number;
  height: number;
  bands: number; // 1..4 colour bands, interleaved
  data: Uint8Array; // width*height*bands
  /** width*height, 0 = no data, 255 = valid, in between = partial (alpha band / mask / nodata merged by the
   * reader); null = all valid */
  alpha: Uint8Array | null;
}

export interface ResampledTile {
  width: number;
  height: number;
  bands: number;
  data: Uint8Array; // width*height*bands
  alpha: Uint8Array; // width*height
}

const RADIUS: Record<Kernel, number> = { nearest: 0, bilinear: 1, bicubic: 2, lanczos: 3 };

/** Half-width of the kernel's support in source pixels at scale 1: 0 / 1 / 2 / 3. */
export function kernelRadius(kernel: Kernel): number {
  const r = RADIUS[kernel];
  if (r === undefined) throw new TuileError('InvalidParameter', `unknown resampling kernel: ${String(kernel)}`);
  return r;
}

/** Widening beyond this is not a warp any more but an overview's job; uncapped, one tile of a whole-world target
 * over a large source would cost minutes of kernel taps. */
const MAX_SCALE = 16;

/** The scale the kernels use for a measured one (source pixels per target pixel), as GDALWarpKernel::PerformWarp
 * derives it: no narrowing when upsampling, and a ratio within 0.05 of an integer snapped to it (a 2:1 warp filters
 * exactly like a 2x2 reduction). */
export function effectiveScale(scale = 1): number {
  if (!(scale > 1)) return 1;
  if (scale > MAX_SCALE) return MAX_SCALE;
  const n = Math.round(scale);
  return Math.abs(scale - n) < 0.05 ? n : scale;
}

/** Source pixels of padding around the coords that resample() may read with these scales: what to pass to
 * sourceWindow() so that a tile's result does not depend on its window. */
export function kernelPadding(kernel: Kernel, scaleX = 1, scaleY = 1): number {
  return kernelRadius(kernel) * Math.max(effectiveScale(scaleX), effectiveScale(scaleY));
}

// gdalwarp's 4-tap bilinear and 4x4 cubic are used while both of its dst/src ratios are >= 0.95
const FOUR_SAMPLE_MAX_SCALE = 1 / 0.95;

/**
 * Resamples `src` at the source pixel coordinates `coords` (2 per target pixel, full source pixel space, from
 * approxSourceCoords) into a width x height tile, with gdalwarp's rules:
 * - a target pixel has data only when its coordinate lies inside the window ([0, size], GDAL's test against its
 *   source) and the source pixel holding it is not transparent; its alpha is that pixel's alpha, as gdalwarp
 *   writes the centre pixel's density to -dstalpha (so a pixel inside the raster stays opaque up to the edge);
 * - taps outside the window or with alpha 0 are left out and the remaining weights renormalised; a tap's alpha is
 *   a density weight on its colour, so that the colour under a nearly transparent pixel does not bleed (gdalwarp
 *   averages the colours of all taps with alpha > 0 unweighted: the same for masks and nodata, different only
 *   for partial alpha);
 * - bicubic at scale ~1 falls back to bilinear when one of its 16 taps is missing, and Lanczos gives no data when
 *   fewer than half its taps are valid (GWKCubicResample4Sample, GWKResampleOptimizedLanczos);
 * - scaleX/scaleY (source pixels per target pixel, from sourceScale) widen the kernels through effectiveScale().
 *
 * Speed: each kernel runs its own loop over the tile. Pixels whose taps all lie inside the window and are all
 * opaque (the bulk of a tile) take a fast path without per-tap tests (for the widened kernels, code generated for
 * the tile's tap counts: separableFastLoop); the others (edges, nodata, partial alpha) take the general code
 * (bilinear4, cubic4, separable). Both compute the same weights and sum them in the same order, so they give the
 * same bits: the fast paths are a pure speed-up.
 */
export function resample(
  src: SourceWindow,
  coords: Float64Array,
  width: number,
  height: number,
  kernel: Kernel,
  scaleX = 1,
  scaleY = 1,
): ResampledTile {
  const bands = src.bands;
  if (!(bands >= 1 && bands <= 4)) throw new TuileError('UnsupportedRaster', `unsupported band count: ${bands}`);
  if (src.data.length < src.width * src.height * bands) {
    throw new TuileError('Internal', 'source window data shorter than width*height*bands');
  }
  if (src.alpha !== null && src.alpha.length < src.width * src.height) {
    throw new TuileError('Internal', 'source window alpha shorter than width*height');
  }
  if (coords.length < 2 * width * height) throw new TuileError('Internal', 'coords shorter than 2*width*height');
  const radius = kernelRadius(kernel);
  const out = zeroedBuffer(width * height * bands);
  const outAlpha = zeroedBuffer(width * height);
  const tile: ResampledTile = { width, height, bands, data: out, alpha: outAlpha };
  if (src.width <= 0 || src.height <= 0) return tile;

  const sx = effectiveScale(scaleX);
  const sy = effectiveScale(scaleY);
  const fourSample = sx <= FOUR_SAMPLE_MAX_SCALE && sy <= FOUR_SAMPLE_MAX_SCALE;
  const filter = kernel === 'lanczos' ? FILTER_LANCZOS : kernel === 'bicubic' ? FILTER_CUBIC : FILTER_TENT;

  const job: Job = {
    data: src.data,
    alpha: src.alpha,
    w: src.width,
    h: src.height,
    bands,
    x0: src.x0,
    y0: src.y0,
    coords,
    n: width * height,
    out,
    outAlpha,
    rx0: 0,
    ry0: 0,
    rx1: src.width,
    ry1: src.height,
  };
  if (kernel === 'nearest') {
    nearestTile(job);
  } else if (kernel === 'lanczos' || !fourSample) {
    if (job.alpha !== null) {
      // Only the part of the window this tile's taps can reach matters (a loaded window may span many tiles): when
      // it is all opaque, the alpha is dropped, else its opaque runs are counted there. An opaque tap weighs the
      // same with or without alpha, so either way the result is that of the alpha.
      if (!tapRegion(job, Math.ceil(radius * Math.max(sx, sy)) + 2)) return tile;
      if (regionOpaque(job.alpha, job.w, job.rx0, job.ry0, job.rx1, job.ry1)) job.alpha = null;
    }
    separableTile(job, filter, radius * sx, radius * sy, 1 / sx, 1 / sy);
  } else if (kernel === 'bilinear') {
    bilinearTile(job);
  } else {
    cubicTile(job);
  }
  return tile;
}

/** Sets the job's region to the window pixels within `pad` of the coordinates that are inside the window; false
 * when there is none (an empty tile). */
function tapRegion(job: Job, pad: number): boolean {
  const { coords, n, w, h, x0, y0 } = job;
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (let p = 0; p < n; p++) {
    const lx = coords[2 * p] - x0;
    const ly = coords[2 * p + 1] - y0;
    if (!(lx >= 0 && ly >= 0 && lx + EDGE_EPSILON <= w && ly + EDGE_EPSILON <= h)) continue;
    if (lx < minX) minX = lx;
    if (lx > maxX) maxX = lx;
    if (ly < minY) minY = ly;
    if (ly > maxY) maxY = ly;
  }
  if (minX === Infinity) return false;
  job.rx0 = Math.max(0, Math.floor(minX) - pad);
  job.ry0 = Math.max(0, Math.floor(minY) - pad);
  job.rx1 = Math.min(w, Math.floor(maxX) + pad + 1);
  job.ry1 = Math.min(h, Math.floor(maxY) + pad + 1);
  return true;
}

/** True when every pixel of [x0, x1) x [y0, y1) is fully opaque. */
function regionOpaque(alpha: Uint8Array, w: number, x0: number, y0: number, x1: number, y1: number): boolean {
  for (let y = y0; y < y1; y++) {
    const row = y * w;
    if (!allOpaque(alpha.subarray(row + x0, row + x1), x1 - x0)) return false;
  }
  return true;
}

/** Nearest neighbour: the pixel holding the coordinate. */
function nearestTile(job: Job): void {
  const { data, alpha, w, h, bands, x0, y0, coords, n, out, outAlpha } = job;
  for (let p = 0; p < n; p++) {
    const lx = coords[2 * p] - x0;
    const ly = coords[2 * p + 1] - y0;
    // false for NaN too
    if (!(lx >= 0 && ly >= 0 && lx + EDGE_EPSILON <= w && ly + EDGE_EPSILON <= h)) continue;
    let ix = (lx + EDGE_EPSILON) | 0;
    let iy = (ly + EDGE_EPSILON) | 0;
    if (ix === w) ix--;
    if (iy === h) iy--;
    const centre = iy * w + ix;
    const a = alpha === null ? 255 : alpha[centre];
    if (a === 0) continue;
    const s = centre * bands;
    const o = p * bands;
    if (bands === 3) {
      out[o] = data[s];
      out[o + 1] = data[s + 1];
      out[o + 2] = data[s + 2];
    } else {
      for (let b = 0; b < bands; b++) out[o + b] = data[s + b];
    }
    outAlpha[p] = a;
  }
}

/** Bilinear at scale ~1 (GWKBilinearResample4Sample), the interior of an opaque window inline. */
function bilinearTile(job: Job): void {
  const { data, alpha, w, h, bands, x0, y0, coords, n, out, outAlpha } = job;
  const rowStride = w * bands;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let p = 0; p < n; p++) {
    const lx = coords[2 * p] - x0;
    const ly = coords[2 * p + 1] - y0;
    if (!(lx >= 0 && ly >= 0 && lx + EDGE_EPSILON <= w && ly + EDGE_EPSILON <= h)) continue;
    let ix = (lx + EDGE_EPSILON) | 0;
    let iy = (ly + EDGE_EPSILON) | 0;
    if (ix === w) ix--;
    if (iy === h) iy--;
    const a = alpha === null ? 255 : alpha[iy * w + ix];
    if (a === 0) continue;
    const o = p * bands;
    const tx = lx - 0.5;
    const ty = ly - 0.5;
    // t >= -0.5, so truncating t + 1 floors it
    const jx = ((tx + 1) | 0) - 1;
    const jy = ((ty + 1) | 0) - 1;
    if (
      bands === 3 &&
      jx >= 0 &&
      jy >= 0 &&
      jx + 1 < w &&
      jy + 2 < h && // the 4-byte loads of the second row stay within the data
      (alpha === null || opaque2x2(alpha, jy * w + jx, w))
    ) {
      // bilinear4's interior branch, the same arithmetic; a tap's 3 bands in one 32-bit load
      const fx = tx - jx;
      const fy = ty - jy;
      const gx = 1 - fx;
      const gy = 1 - fy;
      const w00 = gx * gy, w10 = fx * gy, w01 = gx * fy, w11 = fx * fy;
      const i0 = (jy * w + jx) * 3;
      const i1 = (i0 + rowStride) | 0;
      const u00 = dv.getUint32(i0, true), u10 = dv.getUint32((i0 + 3) | 0, true);
      const u01 = dv.getUint32(i1, true), u11 = dv.getUint32((i1 + 3) | 0, true);
      out[o] = toByte(w00 * (u00 & 255) + w10 * (u10 & 255) + w01 * (u01 & 255) + w11 * (u11 & 255));
      out[o + 1] = toByte(
        w00 * ((u00 >>> 8) & 255) + w10 * ((u10 >>> 8) & 255) + w01 * ((u01 >>> 8) & 255) + w11 * ((u11 >>> 8) & 255),
      );
      out[o + 2] = toByte(
        w00 * ((u00 >>> 16) & 255) +
          w10 * ((u10 >>> 16) & 255) +
          w01 * ((u01 >>> 16) & 255) +
          w11 * ((u11 >>> 16) & 255),
      );
      outAlpha[p] = a;
    } else if (bilinear4(data, alpha, w, h, bands, lx, ly, out, o)) {
      outAlpha[p] = a;
    }
  }
}

/** Keys cubic at scale ~1 (GWKCubicResample4Sample), the interior of an opaque window inline. */
function cubicTile(job: Job): void {
  const { data, alpha, w, h, bands, x0, y0, coords, n, out, outAlpha } = job;
  const rowStride = w * bands;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let p = 0; p < n; p++) {
    const lx = coords[2 * p] - x0;
    const ly = coords[2 * p + 1] - y0;
    if (!(lx >= 0 && ly >= 0 && lx + EDGE_EPSILON <= w && ly + EDGE_EPSILON <= h)) continue;
    let ix = (lx + EDGE_EPSILON) | 0;
    let iy = (ly + EDGE_EPSILON) | 0;
    if (ix === w) ix--;
    if (iy === h) iy--;
    const a = alpha === null ? 255 : alpha[iy * w + ix];
    if (a === 0) continue;
    const o = p * bands;
    const tx = lx - 0.5;
    const ty = ly - 0.5;
    const jx = ((tx + 1) | 0) - 1;
    const jy = ((ty + 1) | 0) - 1;
    if (
      bands === 3 &&
      jx >= 1 &&
      jy >= 1 &&
      jx + 2 < w &&
      jy + 3 < h && // the 4-byte loads of the last row stay within the data
      (alpha === null || opaque4x4(alpha, (jy - 1) * w + jx - 1, w))
    ) {
      // cubic4's unweighted branch, the same arithmetic
      const x = tx - jx;
      const hx = 0.5 * x, hx2 = hx * x, x3 = 3 * x;
      const cx0 = hx * (-1 + x * (2 - x)), cx1 = 1 + hx2 * (-5 + x3), cx2 = hx * (1 + x * (4 - x3)), cx3 = hx2 * (-1 + x);
      const y = ty - jy;
      const hy = 0.5 * y, hy2 = hy * y, y3 = 3 * y;
      const cy0 = hy * (-1 + y * (2 - y)), cy1 = 1 + hy2 * (-5 + y3), cy2 = hy * (1 + y * (4 - y3)), cy3 = hy2 * (-1 + y);
      // a tap's 3 bands in one 32-bit load, row by row (0 + the first row's term is that term: the same sums)
      let v0 = 0, v1 = 0, v2 = 0;
      for (let j = 0, s = ((jy - 1) * w + jx - 1) * 3; j < 4; j++, s = (s + rowStride) | 0) {
        const cy = j === 0 ? cy0 : j === 1 ? cy1 : j === 2 ? cy2 : cy3;
        const u0 = dv.getUint32(s, true);
        const u1 = dv.getUint32((s + 3) | 0, true);
        const u2 = dv.getUint32((s + 6) | 0, true);
        const u3 = dv.getUint32((s + 9) | 0, true);
        v0 += cy * (cx0 * (u0 & 255) + cx1 * (u1 & 255) + cx2 * (u2 & 255) + cx3 * (u3 & 255));
        v1 +=
          cy * (cx0 * ((u0 >>> 8) & 255) + cx1 * ((u1 >>> 8) & 255) + cx2 * ((u2 >>> 8) & 255) + cx3 * ((u3 >>> 8) & 255));
        v2 +=
          cy * (cx0 * ((u0 >>> 16) & 255) + cx1 * ((u1 >>> 16) & 255) + cx2 * ((u2 >>> 16) & 255) + cx3 * ((u3 >>> 16) & 255));
      }
      out[o] = toByte(v0);
      out[o + 1] = toByte(v1);
      out[o + 2] = toByte(v2);
      outAlpha[p] = a;
    } else if (cubic4(data, alpha, w, h, bands, lx, ly, out, o)) {
      outAlpha[p] = a;
    }
  }
}

/** For each pixel of the job's region, how many fully opaque pixels start there along its row (capped at 255):
 * a block of taps is opaque when the run at the start of each of its rows covers it. */
function opaqueRuns(job: Job, alpha: Uint8Array): Uint8Array {
  const { w, rx0, ry0, rx1, ry1 } = job;
  const rw = rx1 - rx0;
  const runs = new Uint8Array(rw * (ry1 - ry0));
  for (let y = ry0, r = 0; y < ry1; y++, r += rw) {
    let run = 0;
    for (let x = rx1 - 1, k = y * w + x; x >= rx0; x--, k--) {
      run = alpha[k] === 255 ? (run < 255 ? run + 1 : 255) : 0;
      runs[r + x - rx0] = run;
    }
  }
  return runs;
}

/** The pixels a fast loop leaves to separable(), in order. */
let slowPixels = new Int32Array(0);

/**
 * The separable kernels (GWKResample / GWKResampleOptimizedLanczos), widened by the scale. A pixel whose taps lie
 * inside the region and (with alpha) are all opaque takes a fast path generated for the tile's tap counts (see
 * separableFastLoop); the others, and every pixel of kernels too wide to unroll, take separable().
 */
function separableTile(
  job: Job,
  filter: number,
  supportX: number,
  supportY: number,
  invScaleX: number,
  invScaleY: number,
): void {
  const { data, alpha, w, h, bands, x0, y0, coords, n, out, outAlpha } = job;
  const need = Math.ceil(2 * Math.max(supportX, supportY)) + 2;
  reserveTaps(need);
  // taps per axis: a support of s covers floor(2s) + 1 or floor(2s) pixel centres (any other count is a rounding
  // edge, which the fast loop leaves to separable())
  const nX = Math.floor(2 * supportX) + 1;
  const nY = Math.floor(2 * supportY) + 1;
  let slow: Int32Array | null = null; // the pixels left to separable(), or null for all
  let ns = n;
  const fast = nX <= MAX_UNROLL ? separableFastLoop(filter, nX, nY, bands, alpha !== null) : null;
  if (fast !== null) {
    if (slowPixels.length < n) slowPixels = new Int32Array(n);
    slow = slowPixels;
    const runs = alpha === null ? null : opaqueRuns(job, alpha);
    ns = fast(job, runs, slow, supportX, supportY, invScaleX, invScaleY, LANCZOS_TABLE);
  }
  for (let q = 0; q < ns; q++) {
    const p = slow === null ? q : slow[q];
    const lx = coords[2 * p] - x0;
    const ly = coords[2 * p + 1] - y0;
    if (!(lx >= 0 && ly >= 0 && lx + EDGE_EPSILON <= w && ly + EDGE_EPSILON <= h)) continue;
    let ix = (lx + EDGE_EPSILON) | 0;
    let iy = (ly + EDGE_EPSILON) | 0;
    if (ix === w) ix--;
    if (iy === h) iy--;
    const a = alpha === null ? 255 : alpha[iy * w + ix];
    if (a === 0) continue;
    if (separable(data, alpha, w, h, bands, lx, ly, filter, supportX, supportY, invScaleX, invScaleY, out, p * bands)) {
      outAlpha[p] = a;
    }
  }
}
