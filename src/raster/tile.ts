// A tile's pixels as the warp makes them (bands interleaved, and a coverage alpha), and the per-pixel operations
// on whole tiles that rendering a mosaic needs and the tile stages above reuse: blank and opaque tests, grey to
// RGB, compositing one tile over another. Alpha is a coverage weight: nodata never bleeds into data.

import { releaseBuffer, zeroedBuffer } from './buffers.js';
import type { ResampledTile } from './resample.js';

export type RawTile = ResampledTile;

export function blankTile(size: number, bands: number): RawTile {
  return { width: size, height: size, bands, data: zeroedBuffer(size * size * bands), alpha: zeroedBuffer(size * size) };
}

/** Gives a tile's buffers back to this thread's next tiles: nothing may read the tile afterwards. */
export function releaseTile(t: RawTile): void {
  releaseBuffer(t.data);
  releaseBuffer(t.alpha);
}

/** True when no pixel has any coverage. */
export function isBlank(t: RawTile): boolean {
  return isZero(t.alpha);
}

/** Grey tiles become RGB so that tiles from mixed sources can be combined. */
export function toBands(t: RawTile, bands: number): RawTile {
  if (t.bands === bands) return t;
  if (t.bands !== 1 || bands !== 3) throw new Error(`cannot convert ${t.bands} bands to ${bands}`);
  const n = t.width * t.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const v = t.data[i];
    data[i * 3] = v;
    data[i * 3 + 1] = v;
    data[i * 3 + 2] = v;
  }
  return { ...t, bands: 3, data };
}

/** `over` composited on top of `under` ("source over"); either may be null. Returns a new tile, or one of
 * the two when the other cannot show (null, or `over` opaque): treat the result as read-only. */
export function compositeOver(under: RawTile | null, over: RawTile | null): RawTile | null {
  if (!under) return over;
  if (!over) return under;
  const bands = Math.max(under.bands, over.bands);
  // nothing of `under` shows through: spare the per-pixel pass (an update's tiles are mostly this)
  if (isOpaque(over.alpha)) return toBands(over, bands);
  const u = toBands(under, bands);
  const o = toBands(over, bands);
  const n = u.width * u.height;
  const out: RawTile = { width: u.width, height: u.height, bands, data: new Uint8Array(u.data), alpha: new Uint8Array(u.alpha) };
  for (let i = 0; i < n; i++) {
    const ao = o.alpha[i];
    if (ao === 0) continue;
    if (ao === 255) {
      for (let b = 0; b < bands; b++) out.data[i * bands + b] = o.data[i * bands + b];
      out.alpha[i] = 255;
      continue;
    }
    const au = u.alpha[i];
    const fo = ao / 255;
    const fu = (au / 255) * (1 - fo);
    const a = fo + fu;
    for (let b = 0; b < bands; b++) {
      out.data[i * bands + b] = Math.round((o.data[i * bands + b] * fo + u.data[i * bands + b] * fu) / a);
    }
    out.alpha[i] = Math.round(a * 255);
  }
  return out;
}

/** True when no pixel has any coverage. */
function isZero(a: Uint8Array): boolean {
  return allEqual(a, 0);
}

/**
 * True when every byte is `v`, four at a time where the array is aligned. Words as int32 (0xffffffff is -1: as
 * uint32 it is a double). Nothing but the return follows the word loop: code optimised in the middle of that
 * loop had no type feedback for what came after it, and was thrown away (with every caller it was inlined in,
 * downsample4 above all) dozens of times a build.
 */
function allEqual(a: Uint8Array, v: number): boolean {
  const n = a.length;
  const aligned = (a.byteOffset & 3) === 0;
  const tail = aligned ? n & ~3 : 0; // bytes from here on are compared one at a time, first
  for (let i = tail; i < n; i++) if (a[i] !== v) return false;
  if (aligned) {
    const word = Math.imul(v, 0x01010101);
    const words = new Int32Array(a.buffer, a.byteOffset, tail >> 2);
    for (let k = 0; k < words.length; k++) if (words[k] !== word) return false;
  }
  return true;
}

/** True when every pixel is fully covered. */
export function isOpaque(a: Uint8Array): boolean {
  return allEqual(a, 255);
}
