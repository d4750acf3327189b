// Test helper: two pyramid folders compared tile by tile (same tiles present, same masks, pixels compared).
import { join } from 'node:path';
import { expect } from 'vitest';
import { PMTilesReader } from '../../src/pyramid/pmtiles/reader.js';
import { decodeTile } from '../../src/tiles/codec.js';
import { runCli } from './fixtures.js';
import { compare } from './images.js';

/** Every tile of two pyramids: the same ids, and their pixels compared. */
export async function sameTiles(a: string, b: string): Promise<{ tiles: number; worstIdentical: number; worstPsnr: number }> {
  const ra = await PMTilesReader.open(join(a, 'tiles.pmtiles'));
  const rb = await PMTilesReader.open(join(b, 'tiles.pmtiles'));
  const d = JSON.parse(runCli(['inspect', a, '--json']).stdout);
  let tiles = 0;
  let worstIdentical = 1;
  let worstPsnr = Infinity;
  try {
    for (const level of d.levels) {
      const z = Number(level.id);
      for (let y = level.limits.minY; y <= level.limits.maxY; y++) {
        for (let x = level.limits.minX; x <= level.limits.maxX; x++) {
          const [ta, tb] = await Promise.all([ra.getTile({ z, x, y }), rb.getTile({ z, x, y })]);
          expect(Boolean(ta), `tile ${z}/${x}/${y}`).toBe(Boolean(tb));
          if (!ta || !tb) continue;
          const c = compare(await decodeTile(ta), await decodeTile(tb));
          expect(c.maskMismatch).toBe(0);
          worstIdentical = Math.min(worstIdentical, c.identical);
          worstPsnr = Math.min(worstPsnr, c.psnr);
          tiles++;
        }
      }
    }
  } finally {
    await ra.close();
    await rb.close();
  }
  return { tiles, worstIdentical, worstPsnr };
}
