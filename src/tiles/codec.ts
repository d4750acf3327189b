// Tile image codecs: raw tiles to jpeg/webp through sharp/libvips, to png through zlib, and back through sharp.
// Nodata becomes transparency in png/webp and the nodata colour in jpeg (DESIGN 4, "Encode").

import type { Sharp, SharpOptions } from 'sharp';
import { createRequire } from 'node:module';
import { crc32, deflateSync } from 'node:zlib';
import { LITTLE_ENDIAN } from '../raster/buffers.js';
import { huffmanZlib } from './deflate.js';
import { isOpaque, type RawTile } from './merge.js';

export type TileFormat = 'jpg' | 'png' | 'webp';

export const FORMATS: Record<TileFormat, { mime: string; ext: string }> = {
  jpg: { mime: 'image/jpeg', ext: 'jpg' },
  png: { mime: 'image/png', ext: 'png' },
  webp: { mime: 'image/webp', ext: 'webp' },
};

export interface EncodeOptions {
  format: TileFormat;
  /** jpeg/webp quality, 1-100 */
  quality?: number;
  /** png: zlib at this level, 0-9, instead of the default Huffman-only coding (see encodePng) */
  pngLevel?: number;
  /** colour painted under transparent pixels in jpeg, one value per band (or one for all) */
  nodataColor?: number[];
}

export function parseFormat(s: string): TileFormat | undefined {
  const v = s.toLowerCase().replace(/^image\//, '');
  if (v === 'jpg' || v === 'jpeg') return 'jpg';
  if (v === 'png') return 'png';
  if (v === 'webp') return 'webp';
  return undefined;
}


/** Interleaves colour and alpha (or flattens over a colour) into what libvips takes as raw input. */
function interleave(t: RawTile, withAlpha: boolean, background?: number[]): { buf: Uint8Array; channels: number } {
  const n = t.width * t.height;
  const bands = t.bands;
  if (!withAlpha) return { buf: background ? flatten(t, background) : t.data, channels: bands };
  // a buffer of its own: libvips reads it after this call returns
  return { buf: interleaveAlpha(t, new Uint8Array(n * (bands + 1))), channels: bands + 1 };
}

/** Colour over `background` by alpha, in a copy: (colour * a + background * (255 - a)) / 255, rounded. */
function flatten(t: RawTile, background: number[]): Uint8Array {
  const { data, alpha, bands } = t;
  const n = t.width * t.height;
  const out = new Uint8Array(data);
  const bg = Array.from({ length: bands }, (_, b) => background[b] ?? background[0] ?? 0);
  // the formula at alpha 0, once per band (nodata areas are the bulk of the pixels flattened)
  const bare = bg.map((v) => Math.round((v * 255) / 255));
  if (bands === 3) {
    // the loop below for three bands, unrolled: the same arithmetic
    const [g0, g1, g2] = bg;
    const [b0, b1, b2] = bare;
    for (let i = 0, d = 0; i < n; i++, d += 3) {
      const a = alpha[i];
      if (a === 255) continue;
      if (a === 0) {
        out[d] = b0;
        out[d + 1] = b1;
        out[d + 2] = b2;
        continue;
      }
      out[d] = Math.round((data[d] * a + g0 * (255 - a)) / 255);
      out[d + 1] = Math.round((data[d + 1] * a + g1 * (255 - a)) / 255);
      out[d + 2] = Math.round((data[d + 2] * a + g2 * (255 - a)) / 255);
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    const a = alpha[i];
    if (a === 255) continue;
    if (a === 0) {
      for (let b = 0; b < bands; b++) out[i * bands + b] = bare[b];
      continue;
    }
    for (let b = 0; b < bands; b++) out[i * bands + b] = Math.round((data[i * bands + b] * a + bg[b] * (255 - a)) / 255);
  }
  return out;
}

export async function encodeTile(t: RawTile, opts: EncodeOptions): Promise<Uint8Array> {
  const opaque = isOpaque(t.alpha);
  let img: Sharp;
  if (opts.format === 'jpg') {
    const { buf, channels } = interleave(t, false, opaque ? undefined : (opts.nodataColor ?? [255]));
    const sharp = sharpFn ?? (await loadSharp());
    img = sharp(buf, { raw: { width: t.width, height: t.height, channels: channels as 1 | 3 } });
    // libvips would otherwise convert grey to sRGB: keep one channel (smaller, and what was delivered)
    if (channels === 1) img = img.toColourspace('b-w');
    // no optimised Huffman tables: much less encoding time for a few more bytes (bench/README.md)
    return img.jpeg({ quality: opts.quality ?? 85, optimiseCoding: false }).toBuffer();
  }
  if (opts.format === 'png') return encodePng(t, opaque, opts.pngLevel);
  const { buf, channels } = interleave(t, !opaque);
  const sharp = sharpFn ?? (await loadSharp());
  img = sharp(buf, { raw: { width: t.width, height: t.height, channels: channels as 1 | 2 | 3 | 4 } });
  return img.webp({ quality: opts.quality ?? 85, alphaQuality: 100 }).toBuffer();
}

type SharpFn = (input?: Uint8Array, options?: SharpOptions) => Sharp;
let sharpLoaded: Promise<SharpFn> | null = null;
let sharpFn: SharpFn | null = null;

/**
 * sharp, loaded on first use: a png build's workers never need libvips, whose start-up is slow. Required, not
 * imported: from ESM, Node first scans the CommonJS source for its export names, and that scanner, hot for a
 * moment, costs each build thread optimising compilation (figures: bench/README.md).
 */
export function loadSharp(): Promise<SharpFn> {
  sharpLoaded ??= Promise.resolve().then(() => (sharpFn = createRequire(import.meta.url)('sharp') as SharpFn));
  return sharpLoaded;
}

const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/**
 * PNG without libvips: colour (and alpha when not opaque) interleaved straight into filtered rows, compressed in
 * the calling thread (a build has a worker per core: handing zlib to libuv's pool only added thread switches and
 * chunk copies). No pipeline set-up per tile, and no libvips threads contending with the workers.
 * - By default the "average" filter on every row, then Huffman coding only (deflate.ts, much faster than zlib
 *   level 1) for noisy rows, zlib level 1 for smooth ones and ones with runs: about as large as zlib level 1
 *   throughout.
 * - With a zlib level (`--png-level`, 0-9): the "up" filter and zlib at that level, about as small as libvips'
 *   adaptive filters and faster. Figures of both: bench/README.md.
 */
async function encodePng(t: RawTile, opaque: boolean, level: number | undefined): Promise<Uint8Array> {
  const { width, height, bands, data } = t;
  const ch = opaque ? bands : bands + 1;
  const rowBytes = width * ch;
  const stride = rowBytes + 1;
  // pixels interleaved with their filter byte per row, then filtered in place from the bottom row up; the
  // compressors read it synchronously below: one scratch per thread
  if (pngScratch.length < height * stride) pngScratch = new Uint8Array(height * stride);
  const f = pngScratch.subarray(0, height * stride);
  if (level === undefined) {
    if (rowBytes % 4 === 0 && LITTLE_ENDIAN) {
      if (!opaque && alphaScratch.length < height * rowBytes) alphaScratch = new Uint8Array(height * rowBytes);
      averageWords(opaque ? data : interleaveAlpha(t, alphaScratch), height, rowBytes, ch, f);
    }
    else {
      interleaveRows(t, opaque, f, stride);
      averageFilter(f, height, stride, ch);
    }
    // Huffman coding spends a bit a byte at least: on smooth rows or rows with runs (natural imagery with flat
    // areas, where much of a tile's filtered bytes lie in runs) zlib's string matching does far better, and is
    // fast there too
    const idat = huffmanZlib(f, SMOOTH_BITS_PER_BYTE, MAX_RUN_SHARE) ?? deflateSync(f, { level: 1 });
    return pngFile(width, height, ch, idat);
  }
  if (opaque && rowBytes % 4 === 0 && data.byteOffset % 4 === 0) {
    // "up" four bytes at a time (a byte-wise subtraction modulo 256 in a 32-bit word) into a row of scratch,
    // copied after the row's filter byte
    const words = rowBytes >> 2;
    const d32 = new Uint32Array(data.buffer, data.byteOffset, words * height);
    if (upRow.length < words) upRow = new Uint32Array(words);
    const row8 = new Uint8Array(upRow.buffer, 0, rowBytes);
    for (let y = height - 1; y > 0; y--) {
      for (let k = 0, i = y * words; k < words; k++, i++) {
        const a = d32[i];
        const b = d32[i - words];
        upRow[k] = ((a | 0x80808080) - (b & 0x7f7f7f7f)) ^ ((a ^ ~b) & 0x80808080);
      }
      f[y * stride] = 2; // up
      f.set(row8, y * stride + 1);
    }
    f.set(data.subarray(0, rowBytes), 1);
    subFirstRow(f, stride, ch);
    return pngFile(width, height, ch, deflateSync(f, { level }));
  }
  interleaveRows(t, opaque, f, stride);
  for (let y = height - 1; y > 0; y--) {
    const o = y * stride;
    f[o] = 2; // up
    for (let i = o + 1, j = o + 1 - stride, end = o + stride; i < end; i++, j++) f[i] = (f[i] - f[j]) & 255;
  }
  subFirstRow(f, stride, ch);
  return pngFile(width, height, ch, deflateSync(f, { level }));
}

/** Below this many bits a byte of Huffman code, encodePng compresses with zlib (level 1) instead... */
const SMOOTH_BITS_PER_BYTE = 2.5;
/** ...and above this share of filtered bytes in runs of equal bytes (from their 4th on). */
const MAX_RUN_SHARE = 0.1;

/** Pixels into rows of `stride` bytes, each after its filter byte: colour, and alpha unless opaque. */
function interleaveRows(t: RawTile, opaque: boolean, f: Uint8Array, stride: number): void {
  const { width, height, bands, data, alpha } = t;
  if (opaque) {
    const rowBytes = width * bands;
    for (let y = 0; y < height; y++) f.set(data.subarray(y * rowBytes, (y + 1) * rowBytes), y * stride + 1);
    return;
  }
  for (let y = 0, i = 0; y < height; y++) {
    let o = y * stride + 1;
    for (let x = 0; x < width; x++, i++) {
      for (let b = 0; b < bands; b++) f[o++] = data[i * bands + b];
      f[o++] = alpha[i];
    }
  }
}

/** Colour and alpha interleaved into `out` (whole rows, from its start). */
function interleaveAlpha(t: RawTile, out: Uint8Array): Uint8Array {
  const { width, height, bands, data, alpha } = t;
  const n = width * height;
  if (bands === 3 && LITTLE_ENDIAN && out.byteOffset % 4 === 0) {
    // RGBA words: one store a pixel
    const o32 = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0, d = 0; i < n; i++, d += 3) o32[i] = data[d] | (data[d + 1] << 8) | (data[d + 2] << 16) | (alpha[i] << 24);
    return out;
  }
  for (let i = 0, o = 0; i < n; i++) {
    for (let b = 0; b < bands; b++) out[o++] = data[i * bands + b];
    out[o++] = alpha[i];
  }
  return out;
}

/** encodePng's interleaved pixels of tiles with alpha. */
let alphaScratch = new Uint8Array(0);

/**
 * The "average" filter of contiguous rows (`raw`, at a multiple of 4 bytes, rows of a multiple of 4) into the
 * filtered rows `f`, four bytes at a time: the mean of two bytes is (a & b) + ((a ^ b) >> 1) in each byte of
 * a word (the shift kept within bytes), and the left neighbours' word is the previous and current words
 * shifted by the pixel size.
 */
function averageWords(raw: Uint8Array, height: number, rowBytes: number, ch: number, f: Uint8Array): void {
  const words = rowBytes >> 2;
  const w32 = new Uint32Array(raw.buffer, raw.byteOffset, words * height);
  if (upRow.length < words) upRow = new Uint32Array(words);
  const row = upRow;
  const row8 = new Uint8Array(row.buffer, 0, rowBytes);
  const sh = ch * 8;
  const stride = rowBytes + 1;
  for (let y = 0; y < height; y++) {
    let prev = 0; // the bytes left of a row are 0
    for (let k = 0, i = y * words; k < words; k++, i++) {
      const x = w32[i];
      const left = sh === 32 ? prev : (prev >>> (32 - sh)) | (x << sh);
      const up = y > 0 ? w32[i - words] : 0;
      const mean = (left & up) + (((left ^ up) & 0xfefefefe) >>> 1);
      row[k] = ((x | 0x80808080) - (mean & 0x7f7f7f7f)) ^ ((x ^ ~mean) & 0x80808080);
      prev = x;
    }
    f[y * stride] = 3; // average
    f.set(row8, y * stride + 1);
  }
}

/**
 * The "average" filter in place, from the last byte back (each byte's left and upper neighbours are still raw
 * when it is filtered): every row's byte minus the mean of its left and upper neighbours.
 */
function averageFilter(f: Uint8Array, height: number, stride: number, ch: number): void {
  for (let y = height - 1; y > 0; y--) {
    const o = y * stride;
    f[o] = 3; // average
    for (let i = o + stride - 1; i > o + ch; i--) f[i] = (f[i] - ((f[i - ch] + f[i - stride]) >> 1)) & 255;
    for (let i = o + ch; i > o; i--) f[i] = (f[i] - (f[i - stride] >> 1)) & 255;
  }
  f[0] = 3; // the first row has no upper neighbours: half its left one
  for (let i = stride - 1; i > ch; i--) f[i] = (f[i] - (f[i - ch] >> 1)) & 255;
}

/** Filtered rows of encodePng, before zlib. */
let pngScratch = new Uint8Array(0);

/** Scratch row of encodePng's word-wise "up" filter. */
let upRow = new Uint32Array(0);

/** The "sub" filter on the first row, in place. */
function subFirstRow(f: Uint8Array, stride: number, ch: number): void {
  f[0] = 1;
  for (let i = stride - 1; i > ch; i--) f[i] = (f[i] - f[i - ch]) & 255;
}

/** The PNG file: signature, IHDR, one IDAT of the zlib stream and IEND, written into one buffer. */
function pngFile(width: number, height: number, ch: number, idat: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 25 + 12 + idat.length + 12);
  const dv = new DataView(out.buffer);
  out.set(PNG_SIGNATURE, 0);
  let o = 8;
  const chunk = (type: string, body: Uint8Array | null, length: number, fill?: (at: number) => void) => {
    dv.setUint32(o, length);
    for (let i = 0; i < 4; i++) out[o + 4 + i] = type.charCodeAt(i);
    if (body) out.set(body, o + 8);
    fill?.(o + 8);
    dv.setUint32(o + 8 + length, crc32(out.subarray(o + 4, o + 8 + length)));
    o += 12 + length;
  };
  chunk('IHDR', null, 13, (at) => {
    dv.setUint32(at, width);
    dv.setUint32(at + 4, height);
    out[at + 8] = 8; // bits per sample
    out[at + 9] = ch === 1 ? 0 : ch === 2 ? 4 : ch === 3 ? 2 : 6; // colour type; compression, filter, interlace 0
  });
  chunk('IDAT', idat, idat.length);
  chunk('IEND', null, 0);
  return out;
}

/** Decodes any tile image to a raw tile (grey or RGB plus alpha). */
export async function decodeTile(buf: Uint8Array): Promise<RawTile> {
  const sharp = sharpFn ?? (await loadSharp());
  const img = sharp(buf);
  const meta = await img.metadata();
  // libvips converts to sRGB on output unless told to keep grey (and its 'b-w' drops an alpha channel:
  // grey + alpha comes out as RGBA, of which we keep one colour channel)
  if (meta.channels === 1) img.toColourspace('b-w');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const ch = info.channels;
  const hasAlpha = ch === 2 || ch === 4;
  const bands = meta.channels === 2 ? 1 : hasAlpha ? ch - 1 : ch;
  const out: RawTile = {
    width: info.width,
    height: info.height,
    bands,
    data: new Uint8Array(n * bands),
    alpha: new Uint8Array(n).fill(255),
  };
  if (!hasAlpha) {
    out.data.set(data);
    return out;
  }
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < bands; b++) out.data[i * bands + b] = data[i * ch + b];
    out.alpha[i] = data[i * ch + ch - 1];
  }
  return out;
}

const blanks = new Map<string, Promise<Uint8Array>>();

/** The image served for a tile inside a layer's limits that holds no data (memoised per look). */
export function blankImage(format: TileFormat, bands: number, nodata: number[]): Promise<Uint8Array> {
  const key = `${format}/${bands}/${nodata.join(',')}`;
  let p = blanks.get(key);
  if (!p) {
    const n = 256 * 256;
    p = encodeTile({ width: 256, height: 256, bands, data: new Uint8Array(n * bands), alpha: new Uint8Array(n) }, { format, nodataColor: nodata });
    blanks.set(key, p);
  }
  return p;
}

/** Values of the pixel at column i, row j of an encoded tile: its bands, then alpha. */
export async function pixelAt(buf: Uint8Array, i: number, j: number): Promise<{ values: number[]; alpha: number }> {
  const t = await decodeTile(buf);
  const k = j * t.width + i;
  const values: number[] = [];
  for (let b = 0; b < t.bands; b++) values.push(t.data[k * t.bands + b]);
  return { values, alpha: t.alpha[k] };
}
