// Test helpers: decode PNG references, cut blocks into tiles, and compare pixels by PSNR.
import sharp from 'sharp';
import { decodeTile } from '../../src/tiles/codec.js';
import type { RawTile } from '../../src/raster/tile.js';

export async function readImage(path: string): Promise<RawTile> {
  return decodeTile(await sharp(path).toBuffer());
}

/** The tile at (col, row) of a block made of size x size tiles. */
export function cut(block: RawTile, col: number, row: number, size = 256): RawTile {
  const bands = block.bands;
  const out: RawTile = { width: size, height: size, bands, data: new Uint8Array(size * size * bands), alpha: new Uint8Array(size * size) };
  for (let y = 0; y < size; y++) {
    const src = (row * size + y) * block.width + col * size;
    out.data.set(block.data.subarray(src * bands, (src + size) * bands), y * size * bands);
    out.alpha.set(block.alpha.subarray(src, src + size), y * size);
  }
  return out;
}

export function toGrey(t: RawTile): RawTile {
  if (t.bands === 1) return t;
  const n = t.width * t.height;
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = t.data[i * t.bands];
  return { ...t, bands: 1, data };
}

export interface Comparison {
  psnr: number;
  /** share of pixels whose colour is exactly equal (over pixels valid in both) */
  identical: number;
  /** share of pixels valid in one and not the other (alpha > 127 as the test) */
  maskMismatch: number;
  compared: number;
}

/** Compares colour over the pixels both images hold (alpha > 127), plus the agreement of their masks. */
export function compare(a: RawTile, b: RawTile, only?: (x: number, y: number) => boolean): Comparison {
  if (a.width !== b.width || a.height !== b.height) throw new Error('sizes differ');
  const bands = Math.min(a.bands, b.bands);
  const n = a.width * a.height;
  let se = 0;
  let cnt = 0;
  let same = 0;
  let mism = 0;
  let considered = 0;
  for (let i = 0; i < n; i++) {
    if (only && !only(i % a.width, Math.floor(i / a.width))) continue;
    considered++;
    const va = a.alpha[i] > 127;
    const vb = b.alpha[i] > 127;
    if (va !== vb) mism++;
    if (!va || !vb) continue;
    let eq = true;
    for (let k = 0; k < bands; k++) {
      const d = a.data[i * a.bands + k] - b.data[i * b.bands + k];
      se += d * d;
      if (d !== 0) eq = false;
    }
    if (eq) same++;
    cnt++;
  }
  const mse = cnt ? se / (cnt * bands) : 0;
  return {
    psnr: mse === 0 ? 99 : 10 * Math.log10((255 * 255) / mse),
    identical: cnt ? same / cnt : 1,
    maskMismatch: considered ? mism / considered : 0,
    compared: cnt,
  };
}

/** Assembles 2x2 tiles (order tl, tr, bl, br) into one block. */
export function assemble(tiles: RawTile[], size = 256): RawTile {
  const bands = tiles[0].bands;
  const w = size * 2;
  const out: RawTile = { width: w, height: w, bands, data: new Uint8Array(w * w * bands), alpha: new Uint8Array(w * w) };
  tiles.forEach((t, q) => {
    const ox = (q & 1) * size;
    const oy = (q >> 1) * size;
    for (let y = 0; y < size; y++) {
      const dst = (oy + y) * w + ox;
      out.data.set(t.data.subarray(y * size * bands, (y + 1) * size * bands), dst * bands);
      out.alpha.set(t.alpha.subarray(y * size, (y + 1) * size), dst);
    }
  });
  return out;
}
