// Resampling kernels on pixel centres (nearest, bilinear, Keys cubic, Lanczos-3) with gdalwarp's semantics.

import { TuileError } from '../errors.js';
import { zeroedBuffer } from './buffers.js';

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
// GDAL's thresholds below which accumulated weight means "no valid input"
const MIN_WEIGHT = 1e-6;
const MIN_WEIGHT_BILINEAR = 1e-5;
// GWKCheckAndComputeSrcOffsets' slack: a coordinate a hair below a pixel boundary belongs to the next pixel
const EDGE_EPSILON = 1e-10;

const LANCZOS_STEPS = 2048; // table samples per source pixel: interpolation error < 4e-7
const LANCZOS_TABLE = buildLanczosTable();

function buildLanczosTable(): Float64Array {
  const t = new Float64Array(3 * LANCZOS_STEPS + 2);
  t[0] = 1;
  for (let i = 1; i < 3 * LANCZOS_STEPS; i++) {
    // exact zeros at integers, so that integer-aligned mappings copy the source bit for bit
    if (i % LANCZOS_STEPS === 0) continue;
    const px = (Math.PI * i) / LANCZOS_STEPS;
    t[i] = (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
  }
  return t;
}

/** alpha / 255 per alpha value: the density weighing a tap's colour */
const DENSITY = Float64Array.from({ length: 256 }, (_, a) => a / 255);

const FILTER_TENT = 0;
const FILTER_CUBIC = 1;
const FILTER_LANCZOS = 2;

// scratch shared by the calls of one thread: no allocation per pixel
let weightsX = new Float64Array(64);
let weightsY = new Float64Array(64);
let tapWeights = new Float64Array(64);
const acc = new Float64Array(4);
let axisLo = 0; // first window index of the taps axisWeights last computed

/** Fills w with the filter weights of the window pixels axisLo..axisLo+n-1 around window-local coordinate l and
 * returns n. Pixel p's centre is at p + 0.5; the filter is evaluated at distance / scale on the taps within
 * `support` (inclusive, as GDAL trims Lanczos), clamped to the window: GDAL never extrapolates past its source. */
function axisWeights(filter: number, l: number, size: number, support: number, invScale: number, w: Float64Array): number {
  const t = l - 0.5;
  let lo = Math.ceil(t - support);
  let hi = Math.floor(t + support);
  if (lo < 0) lo = 0;
  if (hi > size - 1) hi = size - 1;
  axisLo = lo;
  const n = hi - lo + 1;
  if (filter === FILTER_TENT) {
    for (let k = 0; k < n; k++) {
      let d = (lo + k - t) * invScale;
      if (d < 0) d = -d;
      w[k] = d < 1 ? 1 - d : 0;
    }
  } else if (filter === FILTER_CUBIC) {
    for (let k = 0; k < n; k++) {
      let d = (lo + k - t) * invScale;
      if (d < 0) d = -d;
      // Keys, a = -0.5 (GDAL's CubicKernel)
      w[k] = d <= 1 ? d * d * (1.5 * d - 2.5) + 1 : d < 2 ? d * d * (-0.5 * d + 2.5) - 4 * d + 2 : 0;
    }
  } else {
    const table = LANCZOS_TABLE;
    for (let k = 0; k < n; k++) {
      let d = (lo + k - t) * invScale;
      if (d < 0) d = -d;
      const a = d * LANCZOS_STEPS;
      if (a >= 3 * LANCZOS_STEPS) {
        w[k] = 0;
      } else {
        const i = a | 0;
        const v = table[i];
        w[k] = v + (table[i + 1] - v) * (a - i);
      }
    }
  }
  return n;
}

/** Rounds half up and clamps like GDAL's ClampRoundAndAvoidNoData (cubic and Lanczos overshoot); the Uint8Array
 * store truncates the +0.5. */
function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5;
}

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

/** One resample() call's inputs and outputs. [rx0, rx1) x [ry0, ry1): the window pixels the taps can reach (the
 * whole window unless a tap region was measured for the alpha). */
interface Job {
  data: Uint8Array;
  alpha: Uint8Array | null;
  w: number;
  h: number;
  bands: number;
  x0: number;
  y0: number;
  coords: Float64Array;
  n: number;
  out: Uint8Array;
  outAlpha: Uint8Array;
  rx0: number;
  ry0: number;
  rx1: number;
  ry1: number;
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
  if (weightsX.length < need) {
    weightsX = new Float64Array(need);
    weightsY = new Float64Array(need);
    tapWeights = new Float64Array(need);
  }
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

/** Widest row of taps the fast loops unroll: Lanczos up to a scale of ~5, cubic ~8, bilinear always. */
const MAX_UNROLL = 32;
/** Most rows of taps the fast loops unroll (beyond, a loop over the rows). */
const MAX_UNROLL_ROWS = 8;

/** The pixels a fast loop leaves to separable(), in order. */
let slowPixels = new Int32Array(0);

/** Runs the fast path over a tile; returns how many pixels it stored in `slow` for separable(). */
type FastLoop = (
  job: Job,
  runs: Uint8Array | null,
  slow: Int32Array,
  supportX: number,
  supportY: number,
  invScaleX: number,
  invScaleY: number,
  table: Float64Array,
) => number;

const fastLoops = new Map<string, FastLoop | null>();

/**
 * The loop over a tile's pixels for one filter, band count and nX x nY block of taps, generated (once per such
 * configuration: a handful per build) so that a row of taps is unrolled, its weights in locals: a loop over a
 * Float64Array of 2 or 3 weights costs about twice the arithmetic, and a build spends most of its time here. The
 * source text holds nothing but numbers computed here.
 *
 * Per pixel, separable()'s work without its tests: a support of s covers nX = floor(2s) + 1 or nX - 1 pixel
 * centres per axis, so the taps are xlo .. xlo + nX - 1 or one fewer (two unrolled rows, chosen per pixel) on cy
 * rows; the weights come from axisWeights' arithmetic and are summed in separable()'s order (0 + x being x): the
 * same bits. Pixels are left to separable() (listed in `slow`) when their block of taps may leave the region, when
 * it covers a pixel with alpha < 255 (the opaque run at the start of one of its rows is shorter than the block) or
 * when rounding made the support cover another number of centres.
 */
function separableFastLoop(filter: number, nX: number, nY: number, bands: number, hasAlpha: boolean): FastLoop | null {
  const key = `${filter}/${nX}/${nY}/${bands}/${hasAlpha}`;
  let fn = fastLoops.get(key);
  if (fn !== undefined) return fn;
  // the weight of a tap at distance d (in source pixels / scale, non-negative) into `out`: axisWeights' code
  const weight = (out: string, d: string): string =>
    filter === FILTER_TENT
      ? `${out} = ${d} < 1 ? 1 - ${d} : 0;`
      : filter === FILTER_CUBIC
        ? `${out} = ${d} <= 1 ? ${d} * ${d} * (1.5 * ${d} - 2.5) + 1 ` +
          `: ${d} < 2 ? ${d} * ${d} * (-0.5 * ${d} + 2.5) - 4 * ${d} + 2 : 0;`
        : `{ const a = ${d} * ${LANCZOS_STEPS}; if (a >= ${3 * LANCZOS_STEPS}) { ${out} = 0; } ` +
          `else { const i = a | 0; const v = table[i]; ${out} = v + (table[i + 1] - v) * (a - i); } }`;
  const B = bands;
  const L: string[] = [];
  // 3 bands: one 32-bit little-endian load per tap instead of three byte loads (its 4th byte is the next pixel's;
  // the loop keeps blocks off the window's last row, where that may be past the data)
  const packed = B === 3;
  L.push(
    'const { data, alpha, coords, out, outAlpha } = job;',
    // int32 locals, not tagged values to untag at each use
    'const w = job.w | 0, h = job.h | 0, n = job.n | 0;',
    'const rx0 = job.rx0 | 0, ry0 = job.ry0 | 0, rx1 = job.rx1 | 0, ry1 = job.ry1 | 0;',
    'const x0 = +job.x0, y0 = +job.y0;',
    'const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);',
    'const sX = +supportX, sY = +supportY, iX = +invScaleX, iY = +invScaleY;',
    'const rw = rx1 - rx0;',
    `const rowStride = w * ${B};`,
    'let ns = 0;',
  );
  if (!hasAlpha) {
    // Coordinates this far inside the region have their block of taps in it and are inside the window (a 1/2 pixel
    // margin over the bounds of ceil(t - s) >= rx0 and ceil(t - s) + nX <= rx1, t = l - 1/2): one test for both.
    // The few others go to separable() if inside the window.
    L.push(
      'const loX = rx0 + sX, loY = ry0 + sY;',
      `const hiX = rx1 - ${nX} + sX, hiY = (${packed ? 'ry1 === h ? ry1 - 1 : ry1' : 'ry1'}) - ${nY} + sY;`,
      'for (let p = 0; p < n; p++) {',
      '  const lx = coords[2 * p] - x0;',
      '  const ly = coords[2 * p + 1] - y0;',
      '  if (!(lx >= loX && lx <= hiX && ly >= loY && ly <= hiY)) {',
      `    if (lx >= 0 && ly >= 0 && lx + ${EDGE_EPSILON} <= w && ly + ${EDGE_EPSILON} <= h) slow[ns++] = p;`,
      '    continue;',
      '  }',
      '  const alp = 255;',
    );
  } else {
    L.push(
      'for (let p = 0; p < n; p++) {',
      '  const lx = coords[2 * p] - x0;',
      '  const ly = coords[2 * p + 1] - y0;',
      `  if (!(lx >= 0 && ly >= 0 && lx + ${EDGE_EPSILON} <= w && ly + ${EDGE_EPSILON} <= h)) continue;`,
    );
  }
  if (hasAlpha) {
    L.push(
      `  let ix = (lx + ${EDGE_EPSILON}) | 0;`,
      `  let iy = (ly + ${EDGE_EPSILON}) | 0;`,
      '  if (ix === w) ix--;',
      '  if (iy === h) iy--;',
      '  const alp = alpha[iy * w + ix];',
      '  if (alp === 0) continue;',
    );
  }
  L.push(
    '  const tx = lx - 0.5;',
    '  const ty = ly - 0.5;',
    '  const xlo = Math.ceil(tx - sX) | 0;',
    '  const ylo = Math.ceil(ty - sY) | 0;',
    // the last tap within the support is floor(t + s); for an integer m, m <= floor(v) exactly when m <= v
    '  const xhi = tx + sX;',
    '  const yhi = ty + sY;',
    // the support covering nX or nX - 1 centres per axis, as it does but on a rounding edge
    `  let fast = xlo + ${nX - 2} <= xhi && xlo + ${nX} > xhi && ylo + ${nY - 2} <= yhi && ylo + ${nY} > yhi` +
      (hasAlpha ? ` && xlo >= rx0 && ylo >= ry0 && xlo + ${nX} <= rx1 && ylo + ${nY} <= ry1` : '') +
      (hasAlpha && packed ? ` && (ylo + ${nY} < h || xlo + ${nX} < w);` : ';'),
  );
  if (hasAlpha) {
    L.push(
      '  if (fast) {',
      `    for (let j = 0, r = (ylo - ry0) * rw + xlo - rx0; j < ${nY}; j++, r += rw) {`,
      `      if (runs[r] < ${nX}) { fast = false; break; }`,
      '    }',
      '  }',
    );
  }
  L.push(
    '  if (!fast) {',
    '    slow[ns++] = p;',
    '    continue;',
    '  }',
    '  let d;',
    // a full row of nX taps, or nX - 1 when the last is past the support; rows: nY or nY - 1
    `  const fullX = xlo + ${nX - 1} <= xhi;`,
    `  const cy = ylo + ${nY - 1} <= yhi ? ${nY} : ${nY - 1};`,
  );
  for (let i = 0; i < nX; i++) {
    L.push(`  let w${i} = 0;`);
    // a support > 1 puts the first tap left of the centre and the last one right of it: |d| without a test
    const dist =
      i === 0
        ? 'd = (tx - xlo) * iX;'
        : i === nX - 1
          ? `d = (xlo + ${i} - tx) * iX;`
          : `d = Math.abs((xlo + ${i} - tx) * iX);`;
    L.push(i === nX - 1 ? `  if (fullX) { ${dist} ${weight(`w${i}`, 'd')} }` : `  ${dist} ${weight(`w${i}`, 'd')}`);
  }
  L.push(`  const sumX = ${Array.from({ length: nX }, (_, i) => `w${i}`).join(' + ')};`);
  L.push('  let wsum = 0;');
  for (let b = 0; b < B; b++) L.push(`  let a${b} = 0;`);
  const row = (taps: number): void => {
    if (packed) {
      for (let i = 0; i < taps; i++) L.push(`      const u${i} = dv.getUint32((k + ${3 * i}) | 0, true);`);
      const shift = ['', ' >>> 8', ' >>> 16'];
      for (let b = 0; b < 3; b++) {
        const terms = Array.from({ length: taps }, (_, i) => `w${i} * ((u${i}${shift[b]}) & 255)`);
        L.push(`      a${b} += wy * (${terms.join(' + ')});`);
      }
    } else {
      for (let b = 0; b < B; b++) {
        const terms = Array.from({ length: taps }, (_, i) => `w${i} * data[(k + ${i * B + b}) | 0]`);
        L.push(`      a${b} += wy * (${terms.join(' + ')});`);
      }
    }
  };
  const rowPair = (): void => {
    L.push('    if (fullX) {');
    row(nX);
    L.push('    } else {');
    row(nX - 1);
    L.push('    }');
  };
  // the cy rows within the support, each with nX taps or nX - 1
  if (nY <= MAX_UNROLL_ROWS) {
    // unrolled like the taps of a row (the row weights' distances signed as the column weights'), the last row
    // only when the support reaches it; the same sums in the same order as the loop below
    L.push(`  const k0 = (ylo * w + xlo) * ${B};`, '  let wy, k;');
    for (let j = 0; j < nY; j++) {
      const dist =
        j === 0 ? 'd = (ty - ylo) * iY;' : j === nY - 1 ? `d = (ylo + ${j} - ty) * iY;` : `d = Math.abs((ylo + ${j} - ty) * iY);`;
      L.push(
        j === nY - 1 ? `  if (cy === ${nY}) {` : '  {',
        `    ${dist} ${weight('wy', 'd')}`,
        '    wsum += wy * sumX;',
        `    k = (k0 + ${j} * rowStride) | 0;`,
      );
      rowPair();
      L.push('  }');
    }
  } else {
    L.push(
      `  for (let j = 0, k = (ylo * w + xlo) * ${B}; j < cy; j = (j + 1) | 0, k = (k + rowStride) | 0) {`,
      `    d = Math.abs((ylo + j - ty) * iY); let wy; ${weight('wy', 'd')}`,
      '    wsum += wy * sumX;',
    );
    rowPair();
    L.push('  }');
  }
  L.push(`  if (wsum < ${MIN_WEIGHT}) continue;`, '  const inv = 1 / wsum;');
  for (let b = 0; b < B; b++) {
    L.push(`  { const v = a${b} * inv; out[p * ${B} + ${b}] = v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5; }`);
  }
  L.push('  outAlpha[p] = alp;', '}', 'return ns;');
  const params = ['job', 'runs', 'slow', 'supportX', 'supportY', 'invScaleX', 'invScaleY', 'table'];
  try {
    fn = new Function(...params, L.join('\n')) as FastLoop;
  } catch {
    fn = null; // code generation disallowed (node --disallow-code-generation-from-strings): separable() for all
  }
  fastLoops.set(key, fn);
  return fn;
}

/** GWKBilinearResample4Sample: the 2x2 tent at scale 1. */
function bilinear4(
  data: Uint8Array,
  alpha: Uint8Array | null,
  w: number,
  h: number,
  bands: number,
  lx: number,
  ly: number,
  out: Uint8Array,
  o: number,
): boolean {
  const tx = lx - 0.5;
  const ty = ly - 0.5;
  // t >= -0.5, so truncating t + 1 floors it
  const ix = ((tx + 1) | 0) - 1;
  const iy = ((ty + 1) | 0) - 1;
  const fx = tx - ix;
  const fy = ty - iy;
  const gx = 1 - fx;
  const gy = 1 - fy;
  if (
    ix >= 0 &&
    iy >= 0 &&
    ix + 1 < w &&
    iy + 1 < h &&
    (alpha === null || opaque2x2(alpha, iy * w + ix, w))
  ) {
    const w00 = gx * gy, w10 = fx * gy, w01 = gx * fy, w11 = fx * fy;
    const p00 = (iy * w + ix) * bands;
    const p01 = p00 + w * bands;
    for (let b = 0; b < bands; b++) {
      const i0 = p00 + b;
      const i1 = p01 + b;
      out[o + b] = toByte(w00 * data[i0] + w10 * data[i0 + bands] + w01 * data[i1] + w11 * data[i1 + bands]);
    }
    return true;
  }
  for (let b = 0; b < bands; b++) acc[b] = 0;
  let wsum = 0;
  for (let j = 0; j < 2; j++) {
    const y = iy + j;
    if (y < 0 || y >= h) continue;
    const wy = j === 0 ? gy : fy;
    for (let i = 0; i < 2; i++) {
      const x = ix + i;
      if (x < 0 || x >= w) continue;
      const k = y * w + x;
      let wt = wy * (i === 0 ? gx : fx);
      if (alpha !== null) wt *= alpha[k] / 255;
      if (wt === 0) continue;
      wsum += wt;
      const s = k * bands;
      for (let b = 0; b < bands; b++) acc[b] += wt * data[s + b];
    }
  }
  if (wsum < MIN_WEIGHT_BILINEAR) return false;
  for (let b = 0; b < bands; b++) out[o + b] = toByte(acc[b] / wsum);
  return true;
}

function opaque2x2(alpha: Uint8Array, k: number, w: number): boolean {
  return (alpha[k] & alpha[k + 1] & alpha[k + w] & alpha[k + w + 1]) === 255;
}

function opaque4x4(alpha: Uint8Array, k: number, w: number): boolean {
  let all = 255;
  for (let j = 0; j < 4; j++, k += w) all &= alpha[k] & alpha[k + 1] & alpha[k + 2] & alpha[k + 3];
  return all === 255;
}

/** GWKCubicResample4Sample: Keys cubic (a = -0.5) on 4x4 taps, bilinear where a tap is outside or transparent. */
function cubic4(
  data: Uint8Array,
  alpha: Uint8Array | null,
  w: number,
  h: number,
  bands: number,
  lx: number,
  ly: number,
  out: Uint8Array,
  o: number,
): boolean {
  const tx = lx - 0.5;
  const ty = ly - 0.5;
  const ix = ((tx + 1) | 0) - 1;
  const iy = ((ty + 1) | 0) - 1;
  if (ix < 1 || iy < 1 || ix + 2 >= w || iy + 2 >= h) return bilinear4(data, alpha, w, h, bands, lx, ly, out, o);
  const first = (iy - 1) * w + ix - 1;
  let weighted = false;
  if (alpha !== null) {
    let all = 255;
    for (let j = 0, k = first; j < 4; j++, k += w) {
      const a0 = alpha[k], a1 = alpha[k + 1], a2 = alpha[k + 2], a3 = alpha[k + 3];
      if (a0 === 0 || a1 === 0 || a2 === 0 || a3 === 0) return bilinear4(data, alpha, w, h, bands, lx, ly, out, o);
      all &= a0 & a1 & a2 & a3;
    }
    weighted = all !== 255;
  }
  // GWKCubicComputeWeights
  const x = tx - ix;
  const hx = 0.5 * x, hx2 = hx * x, x3 = 3 * x;
  const cx0 = hx * (-1 + x * (2 - x)), cx1 = 1 + hx2 * (-5 + x3), cx2 = hx * (1 + x * (4 - x3)), cx3 = hx2 * (-1 + x);
  const y = ty - iy;
  const hy = 0.5 * y, hy2 = hy * y, y3 = 3 * y;
  const cy0 = hy * (-1 + y * (2 - y)), cy1 = 1 + hy2 * (-5 + y3), cy2 = hy * (1 + y * (4 - y3)), cy3 = hy2 * (-1 + y);
  const rowStride = w * bands;
  if (alpha === null || !weighted) {
    const s0 = first * bands;
    for (let b = 0; b < bands; b++) {
      let s = s0 + b;
      let v = cy0 * (cx0 * data[s] + cx1 * data[s + bands] + cx2 * data[s + 2 * bands] + cx3 * data[s + 3 * bands]);
      s += rowStride;
      v += cy1 * (cx0 * data[s] + cx1 * data[s + bands] + cx2 * data[s + 2 * bands] + cx3 * data[s + 3 * bands]);
      s += rowStride;
      v += cy2 * (cx0 * data[s] + cx1 * data[s + bands] + cx2 * data[s + 2 * bands] + cx3 * data[s + 3 * bands]);
      s += rowStride;
      v += cy3 * (cx0 * data[s] + cx1 * data[s + bands] + cx2 * data[s + 2 * bands] + cx3 * data[s + 3 * bands]);
      out[o + b] = toByte(v);
    }
    return true;
  }
  for (let b = 0; b < bands; b++) acc[b] = 0;
  let wsum = 0;
  for (let j = 0, k = first; j < 4; j++, k += w) {
    const wy = j === 0 ? cy0 : j === 1 ? cy1 : j === 2 ? cy2 : cy3;
    for (let i = 0; i < 4; i++) {
      const wt = (wy * (i === 0 ? cx0 : i === 1 ? cx1 : i === 2 ? cx2 : cx3) * alpha[k + i]) / 255;
      wsum += wt;
      const s = (k + i) * bands;
      for (let b = 0; b < bands; b++) acc[b] += wt * data[s + b];
    }
  }
  // uneven partial alphas under the negative lobes can cancel the weights out
  if (wsum < MIN_WEIGHT) return bilinear4(data, alpha, w, h, bands, lx, ly, out, o);
  for (let b = 0; b < bands; b++) out[o + b] = toByte(acc[b] / wsum);
  return true;
}

/** GWKResample / GWKResampleOptimizedLanczos: separable weights widened by the scale, normalised by the weight of
 * the taps present. Band dot products run with a local accumulator over a stride, so that wide kernels cost one
 * multiply-add per tap and band. */
function separable(
  data: Uint8Array,
  alpha: Uint8Array | null,
  w: number,
  h: number,
  bands: number,
  lx: number,
  ly: number,
  filter: number,
  supportX: number,
  supportY: number,
  invScaleX: number,
  invScaleY: number,
  out: Uint8Array,
  o: number,
): boolean {
  const wxs = weightsX;
  const wys = weightsY;
  const nx = axisWeights(filter, lx, w, supportX, invScaleX, wxs);
  const xlo = axisLo;
  const ny = axisWeights(filter, ly, h, supportY, invScaleY, wys);
  const ylo = axisLo;
  for (let b = 0; b < bands; b++) acc[b] = 0;
  let wsum = 0;
  let sumX = 0;
  if (alpha === null) {
    for (let i = 0; i < nx; i++) sumX += wxs[i];
  }
  let valid = 0;
  let a0 = ylo * w + xlo; // first tap of the row, as a pixel index
  for (let j = 0; j < ny; j++, a0 += w) {
    let wy = wys[j];
    let wts = wxs;
    if (alpha === null) {
      wsum += wy * sumX;
    } else {
      // the row's weights times its taps' alpha, once for all bands
      wts = tapWeights;
      let rsum = 0;
      for (let i = 0; i < nx; i++) {
        const a = alpha[a0 + i];
        if (a !== 0) valid++;
        // a / 255 is exactly 1 for an opaque tap: a row of opaque taps weighs bit for bit as without alpha
        const wa = wxs[i] * DENSITY[a];
        wts[i] = wa;
        rsum += wa;
      }
      if (rsum === 0) continue;
      wsum += wy * rsum;
    }
    if (wy === 0) continue;
    const k0 = a0 * bands;
    // local accumulators per band: wide kernels cost one multiply-add per tap and band
    if (bands === 3) {
      let r0 = 0, r1 = 0, r2 = 0;
      for (let i = 0, k = k0; i < nx; i++, k += 3) {
        const wt = wts[i];
        r0 += wt * data[k];
        r1 += wt * data[k + 1];
        r2 += wt * data[k + 2];
      }
      acc[0] += wy * r0;
      acc[1] += wy * r1;
      acc[2] += wy * r2;
    } else if (bands === 1) {
      let r0 = 0;
      for (let i = 0; i < nx; i++) r0 += wts[i] * data[k0 + i];
      acc[0] += wy * r0;
    } else {
      for (let b = 0; b < bands; b++) {
        let r = 0;
        for (let i = 0, k = k0 + b; i < nx; i++, k += bands) r += wts[i] * data[k];
        acc[b] += wy * r;
      }
    }
  }
  if (alpha !== null && filter === FILTER_LANCZOS && valid < (nx * ny) >> 1) return false;
  if (wsum < MIN_WEIGHT) return false;
  const inv = 1 / wsum;
  for (let b = 0; b < bands; b++) out[o + b] = toByte(acc[b] * inv);
  return true;
}

/** True when every pixel is fully opaque: such a window is resampled as if it had no alpha (same result, the
 * unmasked fast paths). */
function allOpaque(alpha: Uint8Array, n: number): boolean {
  let i = 0;
  if ((alpha.byteOffset & 3) === 0) {
    // four pixels per comparison: this scan runs once per tile over the whole padded window
    const words = new Uint32Array(alpha.buffer, alpha.byteOffset, n >> 2);
    for (let k = 0; k < words.length; k++) if (words[k] !== 0xffffffff) return false;
    i = words.length << 2;
  }
  for (; i < n; i++) if (alpha[i] !== 255) return false;
  return true;
}
