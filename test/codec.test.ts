// Tile codecs: raw tiles survive png exactly in every band layout; jpeg keeps grey grey and paints
// nodata in the nodata colour; webp keeps transparency.
import { describe, expect, it } from 'vitest';
import { FORMATS, TILE_FORMATS, formatOfCompression, formatOfName, parseFormat } from '../src/formats.js';
import { decodeTile, encodeTile } from '../src/tiles/codec.js';
import type { RawTile } from '../src/raster/tile.js';

function pattern(bands: number, withHoles: boolean, width = 256): RawTile {
  const n = width * 256;
  const t: RawTile = { width, height: 256, bands, data: new Uint8Array(n * bands), alpha: new Uint8Array(n).fill(255) };
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < bands; b++) t.data[i * bands + b] = (i * (b + 3) + Math.floor(i / width) * 7) & 255;
    if (withHoles && i % width < 64) {
      t.alpha[i] = 0;
      for (let b = 0; b < bands; b++) t.data[i * bands + b] = 0;
    }
  }
  return t;
}

describe('tile codecs', () => {
  for (const bands of [1, 3]) {
    for (const holes of [false, true]) {
      it(`png round-trips ${bands} band(s) ${holes ? 'with' : 'without'} transparency exactly`, async () => {
        const t = pattern(bands, holes);
        const back = await decodeTile(await encodeTile(t, { format: 'png' }));
        expect(back.bands).toBe(bands);
        expect(Buffer.from(back.alpha).equals(Buffer.from(t.alpha))).toBe(true);
        expect(Buffer.from(back.data).equals(Buffer.from(t.data))).toBe(true);
      });
    }
  }

  // rows of a multiple of 4 bytes take the word-wise filters, others the byte-wise ones; a zlib level takes zlib
  for (const [bands, holes, width, pngLevel] of [
    [3, false, 255, undefined],
    [1, true, 257, undefined],
    [3, false, 256, 1],
    [3, true, 256, 6],
    [1, false, 255, 1],
  ] as const) {
    it(`png round-trips ${bands} band(s), ${width} px wide, ${holes ? 'with' : 'without'} transparency, zlib level ${pngLevel ?? 'none'}`, async () => {
      const t = pattern(bands, holes, width);
      const png = await encodeTile(t, { format: 'png', pngLevel });
      const back = await decodeTile(png);
      expect(back.width).toBe(width);
      expect(Buffer.from(back.alpha).equals(Buffer.from(t.alpha))).toBe(true);
      expect(Buffer.from(back.data).equals(Buffer.from(t.data))).toBe(true);
    });
  }

  it('png round-trips noisy tiles (Huffman-coded) and smooth ones (zlib) exactly', async () => {
    let seed = 7;
    const noise = () => ((seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) >> 16) & 255;
    for (const smooth of [false, true]) {
      for (const holes of [false, true]) {
        const t = pattern(3, holes);
        if (!smooth) for (let i = 0; i < t.data.length; i++) if (t.alpha[(i / 3) | 0] === 255) t.data[i] = noise();
        const back = await decodeTile(await encodeTile(t, { format: 'png' }));
        expect(Buffer.from(back.alpha).equals(Buffer.from(t.alpha))).toBe(true);
        expect(Buffer.from(back.data).equals(Buffer.from(t.data))).toBe(true);
      }
    }
  });

  it('jpeg keeps one band for grey and paints nodata in the nodata colour', async () => {
    const t = pattern(1, true);
    t.data.fill(40);
    const back = await decodeTile(await encodeTile(t, { format: 'jpg', nodataColor: [250], quality: 95 }));
    expect(back.bands).toBe(1);
    expect(back.alpha.every((a) => a === 255)).toBe(true);
    expect(Math.abs(back.data[10] - 250)).toBeLessThan(4); // a hole
    expect(Math.abs(back.data[200] - 40)).toBeLessThan(4); // data
  });

  it('webp keeps transparency', async () => {
    const back = await decodeTile(await encodeTile(pattern(3, true), { format: 'webp' }));
    expect(back.alpha[10]).toBe(0);
    expect(back.alpha[200]).toBe(255);
  });
});

describe('format names', () => {
  it('reads every name of a format back to it: tuile name, extension, MIME type, Entrepôt compression', () => {
    for (const f of TILE_FORMATS) {
      const n = FORMATS[f];
      expect(formatOfName(f)).toBe(f);
      expect(formatOfName(n.ext.toUpperCase())).toBe(f);
      expect(parseFormat(n.mime)).toBe(f);
      expect(parseFormat(n.f)).toBe(f);
      expect(formatOfCompression(n.compression)).toBe(f);
    }
    expect(formatOfName('jpeg')).toBe('jpg');
    expect(FORMATS.jpg).toEqual({ mime: 'image/jpeg', ext: 'jpg', compression: 'JPG', f: 'jpeg' });
    // the names tuile does not take
    expect(formatOfName('image/png')).toBeUndefined(); // a MIME type is not an extension (CLI, tile URLs)
    expect(formatOfName('tif')).toBeUndefined();
    expect(parseFormat('image/gif')).toBeUndefined();
    expect(formatOfCompression('png')).toBeUndefined(); // the Entrepôt writes them upper case
  });

  it('encodes each format to bytes its MIME type names (magic numbers)', async () => {
    const magic: Record<string, number[]> = { 'image/png': [0x89, 0x50, 0x4e, 0x47], 'image/jpeg': [0xff, 0xd8, 0xff], 'image/webp': [0x52, 0x49, 0x46, 0x46] };
    for (const f of TILE_FORMATS) {
      const bytes = await encodeTile(pattern(3, false), { format: f });
      expect([...bytes.subarray(0, magic[FORMATS[f].mime].length)]).toEqual(magic[FORMATS[f].mime]);
    }
  });
});
