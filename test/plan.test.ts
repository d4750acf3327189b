// Build planning, pure math: job level, quadtree order, level limits, footprint and resolution.
import { describe, expect, it } from 'vitest';
import { PM } from '../src/geo/tms.js';
import { footprint3857, jobLevel, morton, planLevels, suggestedResolution, unionBbox } from '../src/pyramid/build.js';
import { GeoTiffSource } from '../src/raster/geotiff.js';
import { fixture } from './helpers/fixtures.js';

describe('build planning', () => {
  it('cuts jobs of up to 8x8 bottom tiles, fewer when the source is much finer', () => {
    expect(jobLevel(16, 0, 1)).toBe(13);
    expect(jobLevel(16, 0, 2)).toBe(13); // 2048 px of target = 4096 source px
    expect(jobLevel(16, 0, 3)).toBe(14);
    expect(jobLevel(16, 0, 40)).toBe(16);
    expect(jobLevel(5, 4, 1)).toBe(4); // never above the top level
  });

  it('orders tiles so that the four children of a parent are consecutive (Morton order)', () => {
    const tiles: { x: number; y: number }[] = [];
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) tiles.push({ x, y });
    tiles.sort((a, b) => morton(a.x, a.y) - morton(b.x, b.y));
    for (let i = 0; i < tiles.length; i += 4) {
      const parents = new Set(tiles.slice(i, i + 4).map((t) => `${t.x >> 1},${t.y >> 1}`));
      expect(parents.size).toBe(1);
    }
    expect(morton(0, 0)).toBe(0);
    expect(morton(1, 0)).toBe(1);
    expect(morton(0, 1)).toBe(2);
    expect(morton(3, 3)).toBe(15);
    expect(morton(2 ** 20, 0)).toBe(2 ** 40); // beyond 32-bit integers
  });

  it('plans limits only between top and bottom, each level inside its parent', () => {
    const bbox = { minX: 80000, minY: 5000000, maxX: 1200000, maxY: 6600000 };
    const limits = planLevels(bbox, 3, 9);
    expect(limits.slice(0, 3)).toEqual([null, null, null]);
    for (let z = 4; z <= 9; z++) {
      const l = limits[z]!;
      const p = limits[z - 1]!;
      expect(l.minX >> 1).toBe(p.minX);
      expect(l.maxX >> 1).toBe(p.maxX);
      expect(l.minY >> 1).toBe(p.minY);
      expect(l.maxY >> 1).toBe(p.maxY);
    }
  });

  it('projects a delivery outline and suggests the resolution GDAL would (north: ~3.0 km)', async () => {
    const s = await GeoTiffSource.open(fixture('france_relief_north_2154.tif'));
    const b = footprint3857(s.info);
    // the shared data README gives x -646 461 ... 1 221 407 for north + south together
    expect(b.minX).toBeGreaterThan(-660000);
    expect(b.maxX).toBeLessThan(1230000);
    const res = suggestedResolution(s.info, b);
    expect(res).toBeGreaterThan(2800);
    expect(res).toBeLessThan(3200);
    expect(unionBbox([b, { ...b, minX: b.minX - 1 }]).minX).toBe(b.minX - 1);
    expect(PM.levels[6].resolution).toBeLessThan(res); // level 6 is the nearest, finer
    await s.close();
  });
});
