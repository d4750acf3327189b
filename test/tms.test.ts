import { describe, expect, it } from 'vitest';
import {
  PM,
  clipToLimits,
  flipY,
  limitsBounds,
  levelForResolution,
  lonLatToMercator,
  mercatorToLonLat,
  tileBounds,
  tileLimitsForBounds,
} from '../src/geo/tms.js';

describe('PM tile matrix set', () => {
  it('has the constants of DESIGN 3', () => {
    expect(PM.originX).toBeCloseTo(-20037508.3427892, 6);
    expect(PM.originY).toBeCloseTo(20037508.3427892, 6);
    for (let z = 0; z <= 21; z++) {
      const m = PM.levels[z];
      expect(m.id).toBe(String(z));
      expect(m.resolution).toBeCloseTo(156543.03392804097 / 2 ** z, 9);
      expect(m.scaleDenominator / (559082264.0287178 / 2 ** z)).toBeCloseTo(1, 12);
      expect(m.matrixWidth).toBe(2 ** z);
    }
  });

  it('round-trips every tile of levels 0-8 through bounds, limits, centres and TMS rows', () => {
    for (let z = 0; z <= 8; z++) {
      const n = 2 ** z;
      for (let y = 0; y < n; y++) {
        for (let x = 0; x < n; x++) {
          const b = tileBounds(PM, { z, x, y });
          expect(tileLimitsForBounds(PM, z, b)).toEqual({ z, minX: x, maxX: x, minY: y, maxY: y });
          const cx = (b.minX + b.maxX) / 2;
          const cy = (b.minY + b.maxY) / 2;
          const point = tileLimitsForBounds(PM, z, { minX: cx, minY: cy, maxX: cx, maxY: cy });
          expect(point).toEqual({ z, minX: x, maxX: x, minY: y, maxY: y });
          expect(flipY(PM, z, flipY(PM, z, y))).toBe(y);
          if (x === 0) expect(b.minX).toBeCloseTo(PM.originX, 6);
        }
      }
    }
  });

  it('neighbouring tiles share their edges exactly', () => {
    for (let z = 1; z <= 8; z++) {
      const a = tileBounds(PM, { z, x: 3 % 2 ** z, y: 1 });
      const b = tileBounds(PM, { z, x: (3 % 2 ** z) + 1, y: 1 });
      expect(a.maxX).toBe(b.minX);
    }
  });

  it('clamps limits to the matrix and returns undefined outside', () => {
    expect(tileLimitsForBounds(PM, 2, PM.extent)).toEqual({ z: 2, minX: 0, maxX: 3, minY: 0, maxY: 3 });
    expect(tileLimitsForBounds(PM, 2, { minX: -1e9, minY: -1e9, maxX: 1e9, maxY: 1e9 })).toEqual({ z: 2, minX: 0, maxX: 3, minY: 0, maxY: 3 });
    expect(tileLimitsForBounds(PM, 3, { minX: 3e7, minY: 0, maxX: 4e7, maxY: 1 })).toBeUndefined();
  });

  it('clips a box to the tiles of every level, so that the tiles under it are all inside the limits', () => {
    // limits from a box at three levels, one of them narrowed on the west as a build leaves nodata tiles out
    const box = { minX: -646460.63, minY: 5786084.87, maxX: 1220173.91, maxY: 6652335.17 };
    const levels = [5, 6, 7].map((z) => tileLimitsForBounds(PM, z, box)!);
    levels[2] = { ...levels[2], minX: levels[2].minX + 1 };
    const clipped = clipToLimits(PM, box, levels);
    expect(clipped.minX).toBeCloseTo(limitsBounds(PM, levels[2]).minX, 6);
    expect([clipped.maxX, clipped.minY, clipped.maxY]).toEqual([box.maxX, box.minY, box.maxY]);
    for (const l of levels) {
      const under = tileLimitsForBounds(PM, l.z, clipped)!;
      expect(under.minX).toBeGreaterThanOrEqual(l.minX);
      expect(under.maxX).toBeLessThanOrEqual(l.maxX);
      expect(under.minY).toBeGreaterThanOrEqual(l.minY);
      expect(under.maxY).toBeLessThanOrEqual(l.maxY);
    }
    // a box inside the limits is kept; limits that miss the box leave it as it was
    expect(clipToLimits(PM, box, [5, 6].map((z) => tileLimitsForBounds(PM, z, box)!))).toEqual(box);
    expect(clipToLimits(PM, box, [{ z: 7, minX: 0, maxX: 0, minY: 0, maxY: 0 }])).toEqual(box);
    // limitsBounds is the union of the tiles' bounds
    const l = { z: 3, minX: 2, maxX: 4, minY: 1, maxY: 5 };
    const e = limitsBounds(PM, l);
    expect(e.minX).toBe(tileBounds(PM, { z: 3, x: 2, y: 1 }).minX);
    expect(e.maxY).toBe(tileBounds(PM, { z: 3, x: 2, y: 1 }).maxY);
    expect(e.maxX).toBe(tileBounds(PM, { z: 3, x: 4, y: 5 }).maxX);
    expect(e.minY).toBe(tileBounds(PM, { z: 3, x: 4, y: 5 }).minY);
  });

  it('converts lon/lat to Web Mercator and back', () => {
    for (const [lon, lat] of [[0, 0], [2.35, 48.85], [-122.4, 37.8], [179.9, -85], [-180, 85.0511287798066]]) {
      const [x, y] = lonLatToMercator(lon, lat);
      const [lo, la] = mercatorToLonLat(x, y);
      expect(lo).toBeCloseTo(lon, 9);
      expect(la).toBeCloseTo(lat, 9);
    }
    // a known point: Paris, EPSG:3857 as PROJ gives it
    const [x, y] = lonLatToMercator(2.3522, 48.8566);
    expect(x).toBeCloseTo(261845.7, 0);
    expect(y).toBeCloseTo(6250564.3, 0);
    expect(lonLatToMercator(0, 90)[1]).toBeCloseTo(PM.originY, 3);
  });

  it('picks the level nearest a resolution', () => {
    expect(levelForResolution(PM, 156543.03392804097)).toBe(0);
    expect(levelForResolution(PM, 2000)).toBe(6);
    expect(levelForResolution(PM, 2.4)).toBe(16);
    expect(levelForResolution(PM, 1.75)).toBe(16);
  });
});
