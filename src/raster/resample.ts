// Resampling kernels on pixel centres (nearest, bilinear, Keys cubic, Lanczos-3) with gdalwarp's semantics.

import { TuileError } from '../errors.js';

export type Kernel = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';

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
  const out = new Uint8Array(width * height * bands);
  const outAlpha = new Uint8Array(width * height);
  const tile: ResampledTile = { width, height, bands, data: out, alpha: outAlpha };
  if (src.width <= 0 || src.height <= 0) return tile;

  const sx = effectiveScale(scaleX);
  const sy = effectiveScale(scaleY);
  const fourSample = sx <= FOUR_SAMPLE_MAX_SCALE && sy <= FOUR_SAMPLE_MAX_SCALE;
  const filter = kernel === 'lanczos' ? FILTER_LANCZOS : kernel === 'bicubic' ? FILTER_CUBIC : FILTER_TENT;
  // 0 nearest, 1 bilinear 2x2, 2 cubic 4x4, 3 separable general
  const mode = kernel === 'nearest' ? 0 : kernel === 'lanczos' || !fourSample ? 3 : kernel === 'bilinear' ? 1 : 2;
  const supportX = radius * sx;
  const supportY = radius * sy;
  if (mode === 3) {
    const need = Math.ceil(2 * Math.max(supportX, supportY)) + 2;
    if (weightsX.length < need) {
      weightsX = new Float64Array(need);
      weightsY = new Float64Array(need);
      tapWeights = new Float64Array(need);
    }
  }

  const data = src.data;
  const w = src.width;
  const h = src.height;
  const alpha = src.alpha === null || allOpaque(src.alpha, w * h) ? null : src.alpha;
  const x0 = src.x0;
  const y0 = src.y0;
  const n = width * height;
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
    const o = p * bands;
    let ok: boolean;
    if (mode === 0) {
      const s = centre * bands;
      for (let b = 0; b < bands; b++) out[o + b] = data[s + b];
      ok = true;
    } else if (mode === 1) {
      ok = bilinear4(data, alpha, w, h, bands, lx, ly, out, o);
    } else if (mode === 2) {
      ok = cubic4(data, alpha, w, h, bands, lx, ly, out, o);
    } else {
      ok = separable(data, alpha, w, h, bands, lx, ly, filter, supportX, supportY, 1 / sx, 1 / sy, out, o);
    }
    if (ok) outAlpha[p] = a;
  }
  return tile;
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
        const wa = wxs[i] * a;
        wts[i] = wa;
        rsum += wa;
      }
      if (rsum === 0) continue;
      wy /= 255;
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
