// Build planning, pure math: job level, quadtree order, level limits, footprint and resolution, the whole plan of a
// build and the quadtree merger that turns finished children into parents, all without a pixel.
import { describe, expect, it } from 'vitest';
import { PM, unionBbox } from '../src/geo/tms.js';
import { childrenInLimits, jobLevel, morton, planBuild, planLevels, subtreeTiles, type BuildPlan } from '../src/pyramid/plan.js';
import { QuadtreeMerger } from '../src/pyramid/quadtree.js';
import { deliveriesTiles, tilesAt } from '../src/checks.js';
import type { Tile } from '../src/geo/tms.js';
import type { RawTile } from '../src/raster/tile.js';
import { footprint3857, suggestedResolution } from '../src/raster/footprint.js';
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

/** A tile standing for its address only: the merger never reads pixels, the merge step does. */
function marker(t: Tile): RawTile {
  return { width: t.z, height: t.x, bands: t.y, data: new Uint8Array(0), alpha: new Uint8Array(0) };
}

/** Runs a plan's jobs through the merger in the given order; `empty` says which job tiles hold no data. */
async function mergeAll(plan: BuildPlan, jobs: Tile[], empty: (t: Tile) => boolean) {
  const merged: { tile: Tile; children: (Tile | null)[] }[] = [];
  const skipped: Tile[] = [];
  const merger = new QuadtreeMerger(plan, {
    merge: async (tile, children) => {
      merged.push({ tile, children: children.map((c) => (c ? { z: c.width, x: c.height, y: c.bands } : null)) });
      return marker(tile);
    },
    skip: (tile) => skipped.push(tile),
  });
  for (const j of jobs) merger.arrived(j, empty(j) ? null : marker(j));
  await merger.settled();
  return { merged, skipped };
}

describe('planBuild', () => {
  // the France relief north delivery's extent, as the build computes it (EPSG:3857)
  const bbox = { minX: -646461, minY: 5050000, maxX: 1221407, maxY: 6650000 };

  it('plans levels from the resolution, jobs in Morton order, and the tiles progress counts to', () => {
    const plan = planBuild({ bbox, finest: 3000 });
    expect(plan.bottom).toBe(6); // PM level 6 is 2446 m, the nearest to 3000 m
    expect(plan.top).toBe(0);
    expect(plan.limits).toHaveLength(7);
    expect(plan.limits.every((l) => l !== null)).toBe(true);
    expect(plan.jobLevel).toBe(3); // 8x8 bottom tiles a job
    const kl = plan.limits[3]!;
    expect(plan.jobs).toHaveLength((kl.maxX - kl.minX + 1) * (kl.maxY - kl.minY + 1));
    expect(plan.jobs.every((j) => j.z === 3)).toBe(true);
    const codes = plan.jobs.map((j) => morton(j.x, j.y));
    expect(codes).toEqual([...codes].sort((a, b) => a - b));
    let total = 0;
    for (const l of plan.limits) total += (l!.maxX - l!.minX + 1) * (l!.maxY - l!.minY + 1);
    expect(plan.total).toBe(total);
    // every tile from the job level down lies in exactly one job's subtree
    const below = plan.limits.slice(3).reduce((n, l) => n + (l!.maxX - l!.minX + 1) * (l!.maxY - l!.minY + 1), 0);
    expect(plan.jobs.reduce((n, j) => n + subtreeTiles(plan, j), 0)).toBe(below);
  });

  it('keeps levels it is given and refuses those PM does not have', () => {
    const plan = planBuild({ bbox, finest: 3000, top: 2, bottom: 9 });
    expect([plan.top, plan.bottom]).toEqual([2, 9]);
    expect(plan.limits.slice(0, 2)).toEqual([null, null]);
    expect(plan.jobLevel).toBe(6);
    expect(() => planBuild({ bbox, finest: 3000, bottom: 25 })).toThrow(/bottom level 25 is not a level of PM \(0-24\)/);
    expect(() => planBuild({ bbox, finest: 3000, bottom: 4, top: 5 })).toThrow(/top level 5 must be between 0 and the bottom level 4/);
    expect(() => planBuild({ bbox, finest: 3000, bottom: 1.5 })).toThrow(/bottom level 1.5/);
  });

  it('cuts fewer levels into a job when the source is much finer than the bottom level', () => {
    // bottom 6 forced on a 30 m source: 80 source pixels a target pixel, jobs of one bottom tile
    const plan = planBuild({ bbox, finest: 30, bottom: 6 });
    expect(plan.jobLevel).toBe(6);
    expect(plan.jobs.every((j) => subtreeTiles(plan, j) === 1)).toBe(true);
  });
});

describe('QuadtreeMerger', () => {
  const bbox = { minX: -646461, minY: 5050000, maxX: 1221407, maxY: 6650000 };

  it('merges each parent once, after every child in limits, up to the top level', async () => {
    const plan = planBuild({ bbox, finest: 3000, top: 1 });
    // results arrive in any order: reversed Morton order here
    const { merged, skipped } = await mergeAll(plan, [...plan.jobs].reverse(), () => false);
    expect(skipped).toEqual([]);
    const keys = merged.map((m) => `${m.tile.z}/${m.tile.x}/${m.tile.y}`);
    expect(new Set(keys).size).toBe(keys.length);
    let above = 0;
    for (let z = plan.top; z < plan.jobLevel; z++) {
      const l = plan.limits[z]!;
      above += (l.maxX - l.minX + 1) * (l.maxY - l.minY + 1);
    }
    expect(merged).toHaveLength(above);
    for (const m of merged) {
      expect(m.tile.z).toBeGreaterThanOrEqual(plan.top);
      expect(m.tile.z).toBeLessThan(plan.jobLevel);
      // each child sits in its quadrant, and exactly the children within limits came
      m.children.forEach((c, q) => {
        if (c) expect(c).toEqual({ z: m.tile.z + 1, x: 2 * m.tile.x + (q & 1), y: 2 * m.tile.y + (q >> 1) });
      });
      expect(m.children.filter((c) => c !== null)).toHaveLength(childrenInLimits(plan, m.tile));
      // a parent is merged after its children were
      for (const c of m.children) if (c && c.z < plan.jobLevel) expect(keys.indexOf(`${c.z}/${c.x}/${c.y}`)).toBeLessThan(keys.indexOf(`${m.tile.z}/${m.tile.x}/${m.tile.y}`));
    }
  });

  it('skips parents whose children hold no data, and merges from the others only', async () => {
    const plan = planBuild({ bbox, finest: 3000 });
    const kl = plan.limits[plan.jobLevel]!;
    // only the westmost column of jobs has data
    const { merged, skipped } = await mergeAll(plan, plan.jobs, (j) => j.x !== kl.minX);
    for (const m of merged) expect(m.children.some((c) => c !== null)).toBe(true);
    const touched = new Set(merged.map((m) => `${m.tile.z}/${m.tile.x}/${m.tile.y}`));
    for (const s of skipped) expect(touched.has(`${s.z}/${s.x}/${s.y}`)).toBe(false);
    let above = 0;
    for (let z = plan.top; z < plan.jobLevel; z++) {
      const l = plan.limits[z]!;
      above += (l.maxX - l.minX + 1) * (l.maxY - l.minY + 1);
    }
    // every tile above the job level is either merged or skipped: progress reaches the plan's total
    expect(merged.length + skipped.length).toBe(above);
    expect(skipped.length).toBeGreaterThan(0);
    // the top tile is merged: the west column reaches it
    expect(merged.at(-1)!.tile).toEqual({ z: 0, x: 0, y: 0 });
  });

  it('rejects settled() with a failed merge', async () => {
    const plan = planBuild({ bbox, finest: 3000 });
    const merger = new QuadtreeMerger(plan, {
      merge: async () => {
        throw new Error('worker died');
      },
      skip: () => {},
    });
    for (const j of plan.jobs) merger.arrived(j, marker(j));
    await expect(merger.settled()).rejects.toThrow('worker died');
  });
});

describe('deliveriesTiles', () => {
  it('counts the tiles of the union of checked footprints at the finest level, or the one asked', () => {
    const west = { minX: -646461, minY: 5050000, maxX: 200000, maxY: 6650000, level: 6 };
    const east = { minX: 100000, minY: 5050000, maxX: 1221407, maxY: 6000000, level: 7 };
    const union = { minX: -646461, minY: 5050000, maxX: 1221407, maxY: 6650000 };
    expect(deliveriesTiles([west, east])).toEqual({ bottom: 7, tiles: tilesAt(union, 7) });
    expect(deliveriesTiles([west, east], 12)).toEqual({ bottom: 12, tiles: tilesAt(union, 12) });
    // level 7 tiles are 313 086 m wide: the union spans x tiles 61..67 and y tiles 42..47
    expect(tilesAt(union, 7)).toBe(7 * 6);
  });
});
