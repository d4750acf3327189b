// Update ("chained") builds on the two real Lambert-93 deliveries: what the update stores, how its tiles
// read through the parent chain, the descriptor it writes, refused options, and a chain of 20 updates.
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPyramid } from '../src/pyramid/build.js';
import { PyramidChain } from '../src/pyramid/chain.js';
import type { PyramidDescriptor } from '../src/pyramid/descriptor.js';
import type { ByteSource } from '../src/pyramid/byte-source.js';
import { PMTilesReader } from '../src/pyramid/pmtiles/reader.js';
import { localStorage, type PyramidStorage } from '../src/pyramid/storage.js';
import { decodeTile } from '../src/tiles/codec.js';
import type { RawTile } from '../src/raster/tile.js';
import { expectRefused, fixture, runCli, tempDir } from './helpers/fixtures.js';
import { compare } from './helpers/images.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');
const BOTTOM = 7;

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const key = (t: { z: number; x: number; y: number }) => `${t.z}/${t.x}/${t.y}`;
const parse = (k: string) => {
  const [z, x, y] = k.split('/').map(Number);
  return { z, x, y };
};

function descriptorOf(dir: string): PyramidDescriptor {
  return JSON.parse(readFileSync(join(dir, 'pyramid.json'), 'utf8')) as PyramidDescriptor;
}

/** The tiles of a pyramid's own archive (not its chain). */
async function ownTiles(dir: string): Promise<Set<string>> {
  const r = await PMTilesReader.open(join(dir, 'tiles.pmtiles'));
  const s = new Set([...r.tiles()].map(key));
  await r.close();
  return s;
}

function samePixels(a: RawTile, b: RawTile): boolean {
  return a.bands === b.bands && Buffer.from(a.data).equals(Buffer.from(b.data)) && Buffer.from(a.alpha).equals(Buffer.from(b.alpha));
}

function validPixels(t: RawTile): number {
  let n = 0;
  for (const a of t.alpha) if (a > 127) n++;
  return n;
}

function build(inputs: string[], out: string, extra: string[] = []): void {
  const r = runCli(['build', ...inputs, '--out', out, '--quiet', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}

describe('update build: south chained on north (png, bicubic, levels 0-7)', () => {
  const dirs = {
    north: join(tmp.path, 'north'),
    southAlone: join(tmp.path, 'south-alone'),
    full: join(tmp.path, 'full'),
    update: join(tmp.path, 'update'),
    southRoot: join(tmp.path, 'south-root'),
    reverse: join(tmp.path, 'north-over-south'),
  };
  const own: Record<keyof typeof dirs, Set<string>> = {} as never;
  let chain: PyramidChain;
  let full: PMTilesReader;
  let north: PMTilesReader;
  let southAlone: PMTilesReader;

  beforeAll(async () => {
    const common = { bottom: BOTTOM, format: 'png' as const, interpolation: 'bicubic' as const, workers: 2 };
    await Promise.all([
      buildPyramid({ ...common, inputs: [NORTH], out: dirs.north }),
      buildPyramid({ ...common, inputs: [SOUTH], out: dirs.southAlone }),
      buildPyramid({ ...common, inputs: [NORTH, SOUTH], out: dirs.full }),
      buildPyramid({ ...common, inputs: [SOUTH], out: dirs.southRoot }).then(() =>
        buildPyramid({ inputs: [NORTH], out: dirs.reverse, parent: dirs.southRoot, workers: 2 }),
      ),
    ]);
    // through the CLI, with no option but the parent: levels, format and kernel come from it
    build([SOUTH], dirs.update, ['--parent', dirs.north]);
    for (const k of Object.keys(dirs) as (keyof typeof dirs)[]) own[k] = await ownTiles(dirs[k]);
    chain = await PyramidChain.open(dirs.update);
    full = await PMTilesReader.open(join(dirs.full, 'tiles.pmtiles'));
    north = await PMTilesReader.open(join(dirs.north, 'tiles.pmtiles'));
    southAlone = await PMTilesReader.open(join(dirs.southAlone, 'tiles.pmtiles'));
  }, 120_000);
  afterAll(async () => {
    await Promise.all([chain?.close(), full?.close(), north?.close(), southAlone?.close()]);
  });

  const decoded = async (r: PMTilesReader | PyramidChain, k: string): Promise<RawTile> => {
    const { z, x, y } = parse(k);
    const data = r instanceof PyramidChain ? (await r.getTile({ z, x, y }))?.data : await r.getTile({ z, x, y });
    expect(data, `tile ${k}`).toBeDefined();
    return decodeTile(data!);
  };

  it('reads a tile wholly in the north through to the north pyramid, byte for byte, without storing it', async () => {
    const northOnly = [...own.north].filter((k) => parse(k).z === BOTTOM && !own.southAlone.has(k));
    expect(northOnly.length).toBeGreaterThan(5);
    for (const k of northOnly) {
      const { z, x, y } = parse(k);
      expect(own.update.has(k), `${k} is stored in the update`).toBe(false);
      expect(chain.locate({ z, x, y })).toBe(descriptorOf(dirs.north).id);
      const hit = await chain.getTile({ z, x, y });
      expect(Buffer.from(hit!.data).equals(Buffer.from((await north.getTile({ z, x, y }))!))).toBe(true);
    }
  });

  it('opens through its storage each descriptor and archive once, and reads one range per tile, none to locate', async () => {
    const descriptors: string[] = [];
    const ranges: { dir: string; offset: number; length: number }[] = [];
    // the local storage, recording what the chain asks of it
    const storage: PyramidStorage = {
      ...localStorage,
      readDescriptor: (dir) => {
        descriptors.push(dir);
        return localStorage.readDescriptor(dir);
      },
      openArchive: async (dir): Promise<ByteSource> => {
        const inner = await localStorage.openArchive(dir);
        return {
          key: inner.key,
          size: inner.size,
          getBytes: (offset, length) => {
            ranges.push({ dir, offset, length });
            return inner.getBytes(offset, length);
          },
          close: () => inner.close(),
        };
      },
    };
    const c = await PyramidChain.open(dirs.update, storage);
    try {
      expect(descriptors.sort()).toEqual([dirs.north, dirs.update].sort());
      expect(new Set(ranges.map((r) => r.dir))).toEqual(new Set([dirs.north, dirs.update]));
      ranges.length = 0;
      const northOnly = [...own.north].filter((k) => parse(k).z === BOTTOM && !own.southAlone.has(k)).map(parse);
      const southOnly = [...own.update].filter((k) => parse(k).z === BOTTOM).map(parse);
      for (const t of [...northOnly, ...southOnly]) expect(c.locate(t)).toBeDefined();
      expect(ranges).toEqual([]);
      for (const t of northOnly) expect(Buffer.from((await c.getTile(t))!.data).equals(Buffer.from((await north.getTile(t))!))).toBe(true);
      expect(ranges.length).toBe(northOnly.length);
      expect(ranges.every((r) => r.dir === dirs.north)).toBe(true);
      ranges.length = 0;
      for (const t of southOnly) expect((await c.getTile(t))!.pyramidId).toBe(c.id);
      expect(ranges.map((r) => r.dir)).toEqual(southOnly.map(() => dirs.update));
    } finally {
      await c.close();
    }
  });

  it('holds, for a tile wholly in the south, the pixels of a build of the south alone', async () => {
    const southOnly = [...own.southAlone].filter((k) => parse(k).z === BOTTOM && !own.north.has(k));
    expect(southOnly.length).toBeGreaterThan(5);
    for (const k of southOnly) {
      expect(chain.locate({ z: parse(k).z, x: parse(k).x, y: parse(k).y })).toBe(chain.id);
      expect(samePixels(await decoded(chain, k), await decoded(southAlone, k)), k).toBe(true);
    }
  });

  it('shows both deliveries on a seam tile, as a build of both does (>= 40 dB, same mask)', async () => {
    const seam = [...own.north].filter((k) => parse(k).z === BOTTOM && own.southAlone.has(k));
    expect(seam.length).toBeGreaterThan(3);
    for (const k of seam) {
      const t = await decoded(chain, k);
      // the old north pixels survive where the south has nodata or no raster
      expect(validPixels(t)).toBeGreaterThanOrEqual(Math.max(validPixels(await decoded(north, k)), validPixels(await decoded(southAlone, k))));
      const c = compare(t, await decoded(full, k));
      expect(c.psnr, `${k}: ${c.psnr.toFixed(1)} dB`).toBeGreaterThanOrEqual(40);
      expect(c.maskMismatch, k).toBeLessThan(0.002);
    }
  });

  it('reads every tile of a full build at every level, matching it at >= 40 dB', async () => {
    const chainTiles = new Set([...own.update, ...own.north]);
    expect([...chainTiles].sort()).toEqual([...own.full].sort());
    let worst = 99;
    for (const k of own.full) {
      const c = compare(await decoded(chain, k), await decoded(full, k));
      worst = Math.min(worst, c.psnr);
      expect(c.psnr, `${k}: ${c.psnr.toFixed(1)} dB`).toBeGreaterThanOrEqual(40);
      expect(c.maskMismatch, k).toBeLessThan(0.002);
    }
    expect(worst).toBeGreaterThanOrEqual(40);
  });

  it('stores only the changed tiles: those of the south footprint and their paths to the top', () => {
    expect(own.update.size).toBeLessThan(own.full.size);
    for (const k of own.update) {
      const { z, x, y } = parse(k);
      if (z === BOTTOM) {
        expect(own.southAlone.has(k), `${k} is outside the south`).toBe(true);
      } else {
        const kids = [0, 1, 2, 3].map((q) => key({ z: z + 1, x: 2 * x + (q & 1), y: 2 * y + (q >> 1) }));
        expect(kids.some((c) => own.update.has(c)), `${k} has no changed child`).toBe(true);
      }
    }
    // an update stores what a build of its delivery alone would, no more
    expect([...own.update].sort()).toEqual([...own.southAlone].sort());
  });

  it('writes the chain, the inherited parameters and the union of limits into its descriptor', () => {
    const d = descriptorOf(dirs.update);
    const n = descriptorOf(dirs.north);
    const f = descriptorOf(dirs.full);
    expect(d.parents).toEqual([{ id: n.id, path: '../north' }]);
    expect(d.id).not.toBe(n.id);
    expect([d.tileFormat, d.interpolation, d.bottom, d.top, d.bands, d.nodata]).toEqual(['png', 'bicubic', BOTTOM, 0, 1, [0]]);
    expect(d.sources).toEqual(['france_relief_south_2154.tif']);
    expect(d.stats.tiles).toBe(own.update.size);
    expect(d.bbox).toEqual(f.bbox);
    expect(d.bboxLonLat).toEqual(f.bboxLonLat);
    expect(d.levels.map((l) => l.limits)).toEqual(f.levels.map((l) => l.limits));
    for (const l of d.levels) expect(l.tiles).toBe([...own.update].filter((k) => parse(k).z === l.limits.z).length);
  });

  it('builds the other way round too: north over south equals the full build', async () => {
    const c2 = await PyramidChain.open(dirs.reverse);
    try {
      for (const k of own.full) {
        const { z, x, y } = parse(k);
        const c = compare(await decodeTile((await c2.getTile({ z, x, y }))!.data), await decoded(full, k));
        expect(c.psnr, `${k}: ${c.psnr.toFixed(1)} dB`).toBeGreaterThanOrEqual(40);
        expect(c.maskMismatch, k).toBeLessThan(0.002);
      }
    } finally {
      await c2.close();
    }
  });

  it('inspect shows the chain, nearest first, in text and JSON', () => {
    const n = descriptorOf(dirs.north);
    const r = runCli(['inspect', dirs.update]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`parent 1: ${n.id} ${dirs.north}`);
    const j = JSON.parse(runCli(['inspect', dirs.update, '--json']).stdout);
    expect(j.chain).toEqual([{ id: n.id, path: '../north', folder: dirs.north, status: 'ok' }]);
  });

  const refused: [string, string[], string[], RegExp][] = [
    ['another format', [SOUTH], ['--compression', 'jpg'], /format jpg differs from the parent's png/],
    ['another bottom level', [SOUTH], ['--bottom', '8'], /bottom level 8 differs from the parent's 7/],
    ['another top level', [SOUTH], ['--top', '2'], /top level 2 differs from the parent's 0/],
    ['another nodata colour', [SOUTH], ['--nodata', '255'], /nodata colour 255 differs from the parent's 0/],
    ['more bands than the parent', [fixture('modis_miriam_4326.tif')], [], /3 bands and the parent .* 1/],
  ];
  for (const [name, inputs, extra, message] of refused) {
    it(`refuses ${name}: one line, non-zero exit, no output folder`, () => {
      const out = join(tmp.path, `refused-${name.replace(/\W/g, '_')}`);
      const r = runCli(['build', ...inputs, '--out', out, '--parent', dirs.north, ...extra]);
      expectRefused(r, out, message);
    });
  }

  it('refuses a parent that is not a pyramid', () => {
    const out = join(tmp.path, 'orphan');
    const r = runCli(['build', SOUTH, '--out', out, '--parent', join(tmp.path, 'nowhere')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nowhere.*not a pyramid folder/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('a chain of 20 updates (north and south in turn, levels 0-5)', () => {
  const base = join(tmp.path, 'chain20');
  const LEVEL = 5;
  const steps = 21; // the root and 20 updates
  const dirs = Array.from({ length: steps }, (_, i) => join(base, `p${String(i).padStart(2, '0')}`));
  // the root and the last update are south, so the north-only tiles come from update 19
  const inputOf = (i: number) => (i % 2 === 0 ? SOUTH : NORTH);

  beforeAll(async () => {
    const full = buildPyramid({ inputs: [NORTH, SOUTH], out: join(tmp.path, 'chain20-full'), bottom: LEVEL, workers: 1 });
    await buildPyramid({ inputs: [inputOf(0)], out: dirs[0], bottom: LEVEL, workers: 1 });
    for (let i = 1; i < steps; i++) await buildPyramid({ inputs: [inputOf(i)], out: dirs[i], parent: dirs[i - 1], workers: 1 });
    await full;
  }, 180_000);

  it('opens each archive once and reads every tile from the nearest pyramid holding it, with no file opened per lookup', async () => {
    const ids = dirs.map((d) => descriptorOf(d).id);
    const last = descriptorOf(dirs[steps - 1]);
    expect(last.parents.map((p) => p.id)).toEqual(ids.slice(0, -1).reverse());
    expect(last.parents[steps - 2].path).toBe('../p00');
    const fullDir = join(tmp.path, 'chain20-full');
    const fullTiles = await ownTiles(fullDir);
    // every member's own archive, opened on its own, says where each tile must come from
    const members = await Promise.all(dirs.map((d) => PMTilesReader.open(join(d, 'tiles.pmtiles'))));
    const full = await PMTilesReader.open(join(fullDir, 'tiles.pmtiles'));
    const chain = await PyramidChain.open(dirs[steps - 1]);
    // from here on, opening any file of the chain by its path fails: lookups must use what is open
    const moved = `${base}-moved`;
    renameSync(base, moved);
    try {
      expect(chain.ids).toEqual([...ids].reverse());
      expect(new Set(chain.ids).size).toBe(steps);
      let fromLastNorth = 0;
      for (const k of fullTiles) {
        const { z, x, y } = parse(k);
        let src = -1;
        for (let i = steps - 1; i >= 0 && src < 0; i--) if (members[i].has({ z, x, y })) src = i;
        expect(src, `no member holds ${k}`).toBeGreaterThanOrEqual(0);
        expect(chain.locate({ z, x, y })).toBe(ids[src]);
        const hit = (await chain.getTile({ z, x, y }))!;
        expect(hit.pyramidId).toBe(ids[src]);
        expect(Buffer.from(hit.data).equals(Buffer.from((await members[src].getTile({ z, x, y }))!))).toBe(true);
        if (src === steps - 2) fromLastNorth++;
        const c = compare(await decodeTile(hit.data), await decodeTile((await full.getTile({ z, x, y }))!));
        expect(c.psnr, `${k}: ${c.psnr.toFixed(1)} dB`).toBeGreaterThanOrEqual(40);
        expect(c.maskMismatch, k).toBeLessThan(0.002);
      }
      // the north-only tiles come from the last north update, the others from the last (south) one
      expect(fromLastNorth).toBeGreaterThan(0);
      expect(chain.locate({ z: LEVEL, x: 0, y: 0 })).toBeUndefined();
      expect(await chain.getTile({ z: LEVEL, x: 0, y: 0 })).toBeUndefined();
      expect(last.levels.map((l) => l.limits)).toEqual(descriptorOf(fullDir).levels.map((l) => l.limits));
    } finally {
      await Promise.all([chain.close(), full.close(), ...members.map((m) => m.close())]);
      renameSync(moved, base);
    }
  });

  it('updates an RGB pyramid with a grey delivery, made RGB', async () => {
    const rgb = join(tmp.path, 'rgb-north');
    const up = join(tmp.path, 'grey-over-rgb');
    await buildPyramid({ inputs: [NORTH], out: rgb, bottom: LEVEL, bands: [1, 1, 1], workers: 1 });
    const r = await buildPyramid({ inputs: [SOUTH], out: up, parent: rgb, workers: 1 });
    expect(r.descriptor.bands).toBe(3);
    const fullDir = join(tmp.path, 'chain20-full');
    const full = await PMTilesReader.open(join(fullDir, 'tiles.pmtiles'));
    const chain = await PyramidChain.open(up);
    try {
      for (const k of await ownTiles(fullDir)) {
        const { z, x, y } = parse(k);
        const t = await decodeTile((await chain.getTile({ z, x, y }))!.data);
        expect(t.bands, k).toBe(3);
        const grey = await decodeTile((await full.getTile({ z, x, y }))!);
        for (const band of [0, 1, 2]) {
          const one: RawTile = { ...t, bands: 1, data: t.data.filter((_, i) => i % 3 === band) };
          const c = compare(one, grey);
          expect(c.psnr, `${k} band ${band}: ${c.psnr.toFixed(1)} dB`).toBeGreaterThanOrEqual(40);
          expect(c.maskMismatch, k).toBeLessThan(0.002);
        }
      }
    } finally {
      await Promise.all([chain.close(), full.close()]);
    }
  });

  it('opens again after the tree of pyramids moves whole (relative parent paths)', async () => {
    const moved = `${base}-elsewhere`;
    renameSync(base, moved);
    try {
      const chain = await PyramidChain.open(join(moved, `p${steps - 1}`));
      expect(chain.ids).toHaveLength(steps);
      await chain.close();
    } finally {
      renameSync(moved, base);
    }
  });
});
