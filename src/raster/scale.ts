// Samples wider than 8 bits (16-bit imagery) to bytes, as `gdal_translate -ot Byte -scale MIN MAX` does: a linear
// map of [MIN, MAX] onto [0, 255], rounded to nearest, clamped. Ranges are per colour band, or one for all.

import { TuileError } from '../errors.js';

export type ScaleRange = [min: number, max: number];

/** `MIN,MAX` (every band) or `MIN,MAX,MIN,MAX,...` (one pair per colour band, in the order they are read). */
export function parseScale(text: string): ScaleRange[] {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (v.length < 2 || v.length % 2 !== 0 || !v.every(Number.isFinite)) {
    throw new TuileError('InvalidParameter', `--scale takes MIN,MAX or one MIN,MAX pair per band, not '${text}'`);
  }
  const out: ScaleRange[] = [];
  for (let i = 0; i < v.length; i += 2) out.push([v[i], v[i + 1]]);
  return checkScale(out);
}

function checkScale(ranges: ScaleRange[]): ScaleRange[] {
  if (ranges.length < 1 || ranges.length > 4) throw new TuileError('InvalidParameter', `scale: give 1 to 4 MIN,MAX pairs, not ${ranges.length}`);
  for (const [lo, hi] of ranges) {
    if (!(Number.isFinite(lo) && Number.isFinite(hi)) || lo === hi) {
      throw new TuileError('InvalidParameter', `scale: MIN and MAX must be two different numbers, not ${lo},${hi}`);
    }
  }
  return ranges;
}

/** The range of band b among `ranges` (one range applies to every band). */
export function rangeOf(ranges: ScaleRange[], b: number, bands: number): ScaleRange {
  if (ranges.length !== 1 && ranges.length !== bands) {
    throw new TuileError('InvalidParameter', `scale: ${ranges.length} MIN,MAX pairs for ${bands} band(s); give one, or one per band`);
  }
  return ranges.length === 1 ? ranges[0] : ranges[b];
}

/**
 * Interleaved samples (nIn a pixel, the first `bands` of them colour, a last one alpha if nIn > bands) to bytes.
 * An alpha sample is mapped from the full range of its type (`alphaMax`), as an alpha band is not stretched.
 */
export function scaleToBytes(raw: ArrayLike<number>, n: number, nIn: number, bands: number, ranges: ScaleRange[], alphaMax: number): Uint8Array {
  const out = new Uint8Array(n * nIn);
  const mul = new Float64Array(nIn);
  const add = new Float64Array(nIn);
  for (let k = 0; k < nIn; k++) {
    const [lo, hi] = k < bands ? rangeOf(ranges, k, bands) : [0, alphaMax];
    mul[k] = 255 / (hi - lo);
    add[k] = -lo * mul[k];
  }
  for (let i = 0, j = 0; i < n; i++) {
    for (let k = 0; k < nIn; k++, j++) {
      const v = raw[j] * mul[k] + add[k];
      // GDALCopyWords' double to byte: clamp, then + 0.5 truncated
      out[j] = v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v + 0.5);
    }
  }
  return out;
}

/** 0 where every colour sample of a pixel holds the nodata value (GDAL's unified source nodata), else 255; null without nodata. */
export function nodataMask(raw: ArrayLike<number>, n: number, nIn: number, bands: number, nodata: number | null): Uint8Array | null {
  if (nodata === null) return null;
  const alpha = new Uint8Array(n).fill(255);
  for (let i = 0, j = 0; i < n; i++, j += nIn) {
    let all = true;
    for (let b = 0; b < bands && all; b++) all = raw[j + b] === nodata;
    if (all) alpha[i] = 0;
  }
  return alpha;
}

/**
 * The minimum and maximum of each colour band over a whole raster, nodata left out: what gdal_translate -scale maps
 * onto 0-255 when given no range. `readRows` gives the colour samples of rows [y0, y1), interleaved; a few MB a call.
 */
export async function bandRanges(
  info: { width: number; height: number; bands: number; nodata: number | null; sampleBits: number },
  readRows: (y0: number, y1: number) => Promise<ArrayLike<number>>,
): Promise<ScaleRange[]> {
  const lo = new Array<number>(info.bands).fill(Infinity);
  const hi = new Array<number>(info.bands).fill(-Infinity);
  const rows = Math.max(1, Math.floor(2 ** 22 / (info.width * info.bands)));
  for (let y = 0; y < info.height; y += rows) {
    const y1 = Math.min(info.height, y + rows);
    const raw = await readRows(y, y1);
    const n = info.width * (y1 - y);
    const valid = nodataMask(raw, n, info.bands, info.bands, info.nodata);
    for (let i = 0, j = 0; i < n; i++, j += info.bands) {
      if (valid && valid[i] === 0) continue;
      for (let b = 0; b < info.bands; b++) {
        const v = raw[j + b];
        if (v < lo[b]) lo[b] = v;
        if (v > hi[b]) hi[b] = v;
      }
    }
  }
  // a flat band: gdal_translate widens its range by 0.1 rather than divide by zero
  return lo.map((l, b): ScaleRange => (Number.isFinite(l) ? [l, hi[b] > l ? hi[b] : l + 0.1] : [0, 2 ** info.sampleBits - 1]));
}
