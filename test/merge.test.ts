// Overviews from four children: the opaque fast path equals the alpha-weighted average it replaces.
import { describe, expect, it } from 'vitest';
import type { RawTile } from '../src/raster/tile.js';
import { downsample4 } from '../src/tiles/merge.js';

function tile(bands: number, seed: number, hole: boolean): RawTile {
  const n = 256 * 256;
  const t: RawTile = { width: 256, height: 256, bands, data: new Uint8Array(n * bands), alpha: new Uint8Array(n).fill(255) };
  let v = seed;
  for (let i = 0; i < n * bands; i++) {
    v = (v * 1103515245 + 12345) & 0x7fffffff;
    t.data[i] = v >> 23;
  }
  if (hole) t.alpha[1000] = 0;
  return t;
}

describe('downsample4', () => {
  for (const bands of [1, 3]) {
    it(`${bands} band(s): opaque children average each 2x2 block, rounded half up`, () => {
      const kids = [tile(bands, 1, false), null, tile(bands, 3, false), tile(bands, 4, true)];
      const p = downsample4(kids, 256, bands)!;
      for (const [q, kid] of kids.entries()) {
        const ox = (q & 1) * 128;
        const oy = (q >> 1) * 128;
        for (const [x, y] of [[0, 0], [17, 93], [127, 127]]) {
          const o = (oy + y) * 256 + ox + x;
          if (!kid) {
            expect(p.alpha[o]).toBe(0);
            continue;
          }
          const i = 2 * y * 256 + 2 * x;
          const idx = [i, i + 1, i + 256, i + 257];
          expect(p.alpha[o]).toBe(255);
          for (let b = 0; b < bands; b++) {
            const sum = idx.reduce((s, k) => s + kid.data[k * bands + b], 0);
            expect(p.data[o * bands + b]).toBe((sum + 2) >> 2);
          }
        }
      }
      // the child with a hole took the weighted path: its block with the hole averages 3 pixels
      const hole = 1000;
      const hx = (hole % 256) >> 1;
      const hy = Math.floor(hole / 256) >> 1;
      expect(p.alpha[(128 + hy) * 256 + 128 + hx]).toBe(191);
    });
  }
  it('is null when every child is', () => {
    expect(downsample4([null, null, null, null], 256, 3)).toBeNull();
  });
});
