// Overviews: a parent tile from its four children, each 2x2 block averaged. Alpha is a coverage weight:
// colours are averaged premultiplied so nodata never bleeds into data.

import { blankTile, isOpaque, toBands, type RawTile } from '../raster/tile.js';

/**
 * The parent of four children (order: top-left, top-right, bottom-left, bottom-right; null = no data),
 * each 2x2 block averaged with alpha weights, as gdal2tiles' "average". Null when all are null.
 */
export function downsample4(children: (RawTile | null)[], size: number, bands: number): RawTile | null {
  if (children.every((c) => c === null)) return null;
  const out = blankTile(size, bands);
  const half = size >> 1;
  for (let q = 0; q < 4; q++) {
    const c = children[q] ? toBands(children[q]!, bands) : null;
    if (!c) continue;
    const ox = (q & 1) * half;
    const oy = (q >> 1) * half;
    // the loops live in functions of their own: optimised in the middle of a loop, a function is compiled whole,
    // and this one, with all of them, was compiled a dozen times a build
    if (isOpaque(c.alpha)) averageOpaque(c.data, out.data, out.alpha, size, bands, ox, oy);
    else averageWeighted(c.data, c.alpha, out.data, out.alpha, size, bands, ox, oy);
  }
  return out;
}

/** The 2x2 average of a child with nodata or partial alpha into its quadrant (ox, oy) of the parent, alpha-weighted. */
function averageWeighted(
  cd: Uint8Array,
  ca: Uint8Array,
  od: Uint8Array,
  oa: Uint8Array,
  size: number,
  bands: number,
  ox: number,
  oy: number,
): void {
  const half = size >> 1;
  const acc = new Float64Array(bands);
  for (let y = 0; y < half; y++) {
    const r0 = 2 * y * size;
    const r1 = r0 + size;
    for (let x = 0; x < half; x++) {
      const i00 = r0 + 2 * x;
      const i01 = i00 + 1;
      const i10 = r1 + 2 * x;
      const i11 = i10 + 1;
      const a00 = ca[i00];
      const a01 = ca[i01];
      const a10 = ca[i10];
      const a11 = ca[i11];
      const asum = a00 + a01 + a10 + a11;
      const o = (oy + y) * size + ox + x;
      if (asum === 0) continue;
      oa[o] = (asum + 2) >> 2;
      if (bands === 3) {
        // the general branches below for three bands, unrolled (the same integer sums, the same rounding)
        const s00 = i00 * 3, s01 = i01 * 3, s10 = i10 * 3, s11 = i11 * 3;
        const d = o * 3;
        if (asum === 1020) {
          od[d] = (cd[s00] + cd[s01] + cd[s10] + cd[s11] + 2) >> 2;
          od[d + 1] = (cd[s00 + 1] + cd[s01 + 1] + cd[s10 + 1] + cd[s11 + 1] + 2) >> 2;
          od[d + 2] = (cd[s00 + 2] + cd[s01 + 2] + cd[s10 + 2] + cd[s11 + 2] + 2) >> 2;
        } else {
          od[d] = Math.round((cd[s00] * a00 + cd[s01] * a01 + cd[s10] * a10 + cd[s11] * a11) / asum);
          od[d + 1] = Math.round((cd[s00 + 1] * a00 + cd[s01 + 1] * a01 + cd[s10 + 1] * a10 + cd[s11 + 1] * a11) / asum);
          od[d + 2] = Math.round((cd[s00 + 2] * a00 + cd[s01 + 2] * a01 + cd[s10 + 2] * a10 + cd[s11 + 2] * a11) / asum);
        }
        continue;
      }
      if (asum === 1020) {
        for (let b = 0; b < bands; b++) {
          od[o * bands + b] = (cd[i00 * bands + b] + cd[i01 * bands + b] + cd[i10 * bands + b] + cd[i11 * bands + b] + 2) >> 2;
        }
      } else {
        for (let b = 0; b < bands; b++) {
          acc[b] = cd[i00 * bands + b] * a00 + cd[i01 * bands + b] * a01 + cd[i10 * bands + b] * a10 + cd[i11 * bands + b] * a11;
          od[o * bands + b] = Math.round(acc[b] / asum);
        }
      }
    }
  }
}

/** The 2x2 average of a child without nodata into its quadrant (ox, oy) of the parent: no alpha weights. */
function averageOpaque(cd: Uint8Array, od: Uint8Array, oa: Uint8Array, size: number, bands: number, ox: number, oy: number): void {
  const half = size >> 1;
  const row = size * bands;
  for (let y = 0; y < half; y++) {
    let s0 = 2 * y * row;
    let o = ((oy + y) * size + ox) * bands;
    oa.fill(255, (oy + y) * size + ox, (oy + y) * size + ox + half);
    for (let x = 0; x < half; x++, s0 += 2 * bands) {
      const s1 = s0 + row;
      for (let b = 0; b < bands; b++, o++) {
        od[o] = (cd[s0 + b] + cd[s0 + bands + b] + cd[s1 + b] + cd[s1 + bands + b] + 2) >> 2;
      }
    }
  }
}
