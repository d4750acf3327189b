// Per-pixel resampling with gdalwarp's semantics: filter weights, the 4-sample bilinear and cubic, the general
// separable kernel; the code every edge, nodata and partial-alpha pixel takes.

// GDAL's thresholds below which accumulated weight means "no valid input"
export const MIN_WEIGHT = 1e-6;
const MIN_WEIGHT_BILINEAR = 1e-5;
// GWKCheckAndComputeSrcOffsets' slack: a coordinate a hair below a pixel boundary belongs to the next pixel
export const EDGE_EPSILON = 1e-10;

export const LANCZOS_STEPS = 2048; // table samples per source pixel: interpolation error < 4e-7
export const LANCZOS_TABLE = buildLanczosTable();

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

export const FILTER_TENT = 0;
export const FILTER_CUBIC = 1;
export const FILTER_LANCZOS = 2;

// scratch shared by the calls of one thread: no allocation per pixel
let weightsX = new Float64Array(64);
let weightsY = new Float64Array(64);
let tapWeights = new Float64Array(64);
const acc = new Float64Array(4);
let axisLo = 0; // first window index of the taps axisWeights last computed

/** Grows the scratch weights to `need` taps per axis. */
export function reserveTaps(need: number): void {
  if (weightsX.length < need) {
    weightsX = new Float64Array(need);
    weightsY = new Float64Array(need);
    tapWeights = new Float64Array(need);
  }
}

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
export function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5;
}

/** One resample() call's inputs and outputs. [rx0, rx1) x [ry0, ry1): the window pixels the taps can reach (the
 * whole window unless a tap region was measured for the alpha). */
export interface Job {
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

/** GWKBilinearResample4Sample: the 2x2 tent at scale 1. */
export function bilinear4(
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

export function opaque2x2(alpha: Uint8Array, k: number, w: number): boolean {
  return (alpha[k] & alpha[k + 1] & alpha[k + w] & alpha[k + w + 1]) === 255;
}

export function opaque4x4(alpha: Uint8Array, k: number, w: number): boolean {
  let all = 255;
  for (let j = 0; j < 4; j++, k += w) all &= alpha[k] & alpha[k + 1] & alpha[k + 2] & alpha[k + 3];
  return all === 255;
}

/** GWKCubicResample4Sample: Keys cubic (a = -0.5) on 4x4 taps, bilinear where a tap is outside or transparent. */
export function cubic4(
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
export function separable(
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
export function allOpaque(alpha: Uint8Array, n: number): boolean {
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
