// Pyramid fusion through `tuile merge`, on the two real Lambert-93 deliveries: a chain flattened into one
// standalone pyramid byte for byte (its parents then deleted, the archive read whole by the `pmtiles` package),
// separate pyramids fused with their overlap composited, levels and bbox kept, and the refusals.
import { existsSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PMTiles, TileType as RefTileType } from 'pmtiles';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM, tileBounds } from '../src/geo/tms.js';
import { PyramidChain } from '../src/pyramid/chain.js';
import type { PyramidDescriptor } from '../src/pyramid/descriptor.js';
import { fusePyramids, mercatorBbox } from '../src/pyramid/fuse.js';
import { PMTilesReader } from '../src/pyramid/pmtiles/reader.js';
import { decodeTile } from '../src/tiles/codec.js';
import { expectRefused, fixture, runCli, tempDir } from './helpers/fixtures.js';
import { compare } from './helpers/images.js';
import { NodeFileSource } from './helpers/pmtiles.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');
const MASKED = fixture('france_relief_north_mask_2154.tif');

const tmp = tempDir('tuile-fuse-');
afterAll(() => tmp.cleanup());
const dir = (name: string) => join(tmp.path, name);

type Tile = { z: number; x: number; y: number };
const key = (t: Tile) => `${t.z}/${t.x}/${t.y}`;

function descriptorOf(d: string): PyramidDescriptor {
  return JSON.parse(readFileSync(join(d, 'pyramid.json'), 'utf8')) as PyramidDescriptor;
}

async function ownTiles(d: string): Promise<Tile[]> {
  const r = await PMTilesReader.open(join(d, 'tiles.pmtiles'));
  const list = [...r.tiles()];
  await r.close();
  return list;
}

function cli(args: string[]): string {
  const r = runCli(args);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

async function chainTiles(d: string): Promise<Map<string, Buffer>> {
  const c = await PyramidChain.open(d);
  try {
    const out = new Map<string, Buffer>();
    for (const t of c.tiles()) {
      if (out.has(key(t))) continue;
      out.set(key(t), Buffer.from((await c.getTile(t))!.data));
    }
    return out;
  } finally {
    await c.close();
  }
}

beforeAll(() => {
  // a chain of three: north, the south over it, the masked north over both
  cli(['build', NORTH, '--out', dir('north'), '--bottom', '7', '--compression', 'png', '--interpolation', 'bicubic', '--quiet']);
  cli(['build', SOUTH, '--out', dir('south-up'), '--parent', dir('north'), '--quiet']);
  cli(['build', MASKED, '--out', dir('masked-up'), '--parent', dir('south-up'), '--quiet']);
  // the south alone, with the north's parameters, to fuse with the north as two separate pyramids
  cli(['build', SOUTH, '--out', dir('south'), '--bottom', '7', '--compression', 'png', '--interpolation', 'bicubic', '--quiet']);
}, 180_000);

describe('tuile merge of a chained pyramid', () => {
  let served: Map<string, Buffer>;
  let line: string;
  beforeAll(async () => {
    served = await chainTiles(dir('masked-up'));
    line = cli(['merge', dir('masked-up'), '--out', dir('flat')]);
  }, 60_000);

  it('holds every tile the chain serves, each byte-identical, and nothing else', async () => {
    const own = await ownTiles(dir('flat'));
    expect(own.map(key).sort()).toEqual([...served.keys()].sort());
    const r = await PMTilesReader.open(join(dir('flat'), 'tiles.pmtiles'));
    try {
      for (const t of own) expect(Buffer.from((await r.getTile(t))!).equals(served.get(key(t))!), key(t)).toBe(true);
    } finally {
      await r.close();
    }
    expect(line).toMatch(new RegExp(`^merged .*flat: ${served.size} tiles \\(${served.size} copied, 0 composited\\)`));
  });

  it('is standalone: no parent, the chain\'s levels, limits, extent and format, a record of what it came from', () => {
    const f = descriptorOf(dir('flat'));
    const c = descriptorOf(dir('masked-up'));
    expect(f.parents).toEqual([]);
    expect(f.id).not.toBe(c.id);
    expect([f.tms, f.tileFormat, f.bands, f.nodata, f.top, f.bottom, f.interpolation]).toEqual([c.tms, c.tileFormat, c.bands, c.nodata, c.top, c.bottom, c.interpolation]);
    expect(f.levels.map((l) => l.limits)).toEqual(c.levels.map((l) => l.limits));
    expect(f.bbox).toEqual(c.bbox);
    expect(f.stats.tiles).toBe(served.size);
    expect(f.fusedFrom).toEqual([c.id, ...c.parents.map((p) => p.id)]);
    const shown = cli(['inspect', dir('flat')]);
    expect(shown).toContain('chain: none (root pyramid)');
    expect(shown).toContain(`merged from 3 pyramid(s), none of which it reads: ${f.fusedFrom!.join(', ')}`);
  });

  it('still serves the same bytes once the chain is gone, and the pmtiles package reads it whole', async () => {
    // the chain's folders moved away: the fused pyramid opens and reads alone
    for (const d of ['north', 'south-up', 'masked-up']) renameSync(dir(d), dir(`${d}.gone`));
    try {
      const c = await PyramidChain.open(dir('flat'));
      expect(c.ids).toEqual([descriptorOf(dir('flat')).id]);
      for (const [k, bytes] of served) {
        const [z, x, y] = k.split('/').map(Number);
        expect(Buffer.from((await c.getTile({ z, x, y }))!.data).equals(bytes), k).toBe(true);
      }
      await c.close();
      const source = new NodeFileSource(join(dir('flat'), 'tiles.pmtiles'));
      try {
        const ref = new PMTiles(source);
        const h = await ref.getHeader();
        expect([h.specVersion, h.tileType, h.minZoom, h.maxZoom, h.numAddressedTiles]).toEqual([3, RefTileType.Png, 0, 7, served.size]);
        for (const [k, bytes] of served) {
          const [z, x, y] = k.split('/').map(Number);
          const got = await ref.getZxy(z, x, y);
          expect(got && Buffer.from(got.data).equals(bytes), `pmtiles package: ${k}`).toBe(true);
        }
      } finally {
        source.close();
      }
    } finally {
      for (const d of ['north', 'south-up', 'masked-up']) renameSync(dir(`${d}.gone`), dir(d));
    }
  });

  it('keeps only the levels and the bbox asked for', async () => {
    const bbox: [number, number, number, number] = [1.5, 44, 4, 46.5];
    cli(['merge', dir('masked-up'), '--out', dir('cut'), '--top', '3', '--bottom', '6', '--bbox', bbox.join(','), '--quiet']);
    const m = mercatorBbox(bbox);
    const meets = (t: Tile) => {
      const b = tileBounds(PM, t);
      return b.minX < m.maxX && b.maxX > m.minX && b.minY < m.maxY && b.maxY > m.minY;
    };
    const want = [...served.keys()].map((k) => k.split('/').map(Number)).map(([z, x, y]) => ({ z, x, y })).filter((t) => t.z >= 3 && t.z <= 6 && meets(t));
    expect(want.length).toBeGreaterThan(3);
    expect(want.length).toBeLessThan([...served.keys()].filter((k) => +k.split('/')[0] >= 3 && +k.split('/')[0] <= 6).length);
    expect((await ownTiles(dir('cut'))).map(key).sort()).toEqual(want.map(key).sort());
    const d = descriptorOf(dir('cut'));
    expect([d.top, d.bottom, d.levels.map((l) => l.id)]).toEqual([3, 6, ['3', '4', '5', '6']]);
    expect(d.bboxLonLat.minX).toBeGreaterThanOrEqual(1.5 - 1e-9);
    expect(d.bboxLonLat.maxY).toBeLessThanOrEqual(46.5 + 1e-9);
  });
});

describe('tuile merge of separate pyramids', () => {
  let north: Map<string, Buffer>;
  let south: Map<string, Buffer>;
  let chain: Map<string, Buffer>;
  let line: string;
  beforeAll(async () => {
    [north, south, chain] = await Promise.all([chainTiles(dir('north')), chainTiles(dir('south')), chainTiles(dir('south-up'))]);
    line = cli(['merge', dir('north'), dir('south'), '--out', dir('both'), '--parallelization', '2']);
  }, 60_000);

  it('copies the tiles one pyramid alone holds and composites the overlap, the later one over the earlier', async () => {
    const own = (await ownTiles(dir('both'))).map(key);
    expect(own.sort()).toEqual([...new Set([...north.keys(), ...south.keys()])].sort());
    const overlap = own.filter((k) => north.has(k) && south.has(k));
    expect(overlap.length).toBeGreaterThan(5);
    const r = await PMTilesReader.open(join(dir('both'), 'tiles.pmtiles'));
    try {
      let composited = 0;
      for (const k of own) {
        const [z, x, y] = k.split('/').map(Number);
        const got = Buffer.from((await r.getTile({ z, x, y }))!);
        if (!south.has(k)) expect(got.equals(north.get(k)!), k).toBe(true);
        else if (!north.has(k)) expect(got.equals(south.get(k)!), k).toBe(true);
        else {
          const s = await decodeTile(south.get(k)!);
          if (s.alpha.every((a) => a === 255)) {
            expect(got.equals(south.get(k)!), `${k}: the south covers it whole`).toBe(true);
            continue;
          }
          composited++;
          // the south over the north: at the bottom level, what the chained build draws there
          const c = compare(await decodeTile(got), await decodeTile(chain.get(k)!));
          if (z === 7) expect([c.identical, c.maskMismatch], k).toEqual([1, 0]);
          expect(c.psnr, `${k}: ${c.psnr.toFixed(1)} dB against the chain`).toBeGreaterThanOrEqual(35);
          expect(c.maskMismatch, k).toBeLessThan(0.01);
        }
      }
      expect(composited).toBeGreaterThan(3);
      expect(line).toMatch(new RegExp(`\\(${own.length - composited} copied, ${composited} composited\\)`));
    } finally {
      await r.close();
    }
  });

  it('copies the uppermost jpeg tile whole where jpeg pyramids overlap (jpeg has no transparency)', async () => {
    const jpg = ['--bottom', '7', '--compression', 'jpg', '--quiet'];
    cli(['build', NORTH, '--out', dir('north-jpg2'), ...jpg]);
    cli(['build', SOUTH, '--out', dir('south-jpg2'), ...jpg]);
    const line = cli(['merge', dir('north-jpg2'), dir('south-jpg2'), '--out', dir('both-jpg')]);
    const [n, s2, got] = await Promise.all([chainTiles(dir('north-jpg2')), chainTiles(dir('south-jpg2')), chainTiles(dir('both-jpg'))]);
    expect([...got.keys()].sort()).toEqual([...new Set([...n.keys(), ...s2.keys()])].sort());
    expect([...got.keys()].filter((k) => n.has(k) && s2.has(k)).length).toBeGreaterThan(5);
    for (const [k, b] of got) expect(b.equals(s2.get(k) ?? n.get(k)!), k).toBe(true);
    expect(line).toMatch(new RegExp(`\\(${got.size} copied, 0 composited\\)`));
  });

  it('takes an input another input is chained on once, as its chain has it', async () => {
    cli(['merge', dir('north'), dir('south-up'), '--out', dir('once'), '--quiet']);
    const want = await chainTiles(dir('south-up'));
    const got = await chainTiles(dir('once'));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, b] of want) expect(got.get(k)!.equals(b), k).toBe(true);
  });
});

describe('tuile merge refuses', () => {
  beforeAll(() => {
    cli(['build', SOUTH, '--out', dir('south-jpg'), '--bottom', '7', '--compression', 'jpg', '--quiet']);
  }, 60_000);

  const cases: [string, () => string[], RegExp, number][] = [
    ['pyramids of different formats', () => [dir('north'), dir('south-jpg')], /format jpg is not the png of .*: fused pyramids share one format/, 1],
    ['levels the inputs lack', () => [dir('north'), '--bottom', '9'], /levels 0-9 are outside the inputs' levels 0-7/, 2],
    ['a bbox that is not one', () => [dir('north'), '--bbox', '3,40,2'], /--bbox takes W,S,E,N/, 2],
    ['an inverted bbox', () => [dir('north'), '--bbox', '4,40,2,45'], /bbox 4,40,2,45 is not west,south,east,north/, 2],
    ['a bbox away from the data', () => [dir('north'), '--bbox', '100,10,101,11'], /bbox 100,10,101,11 does not meet the inputs' extent/, 2],
    ['a folder that is not a pyramid', () => [tmp.path], /not a pyramid folder/, 1],
    ['no input', () => [], /merge needs at least one pyramid folder/, 2],
  ];
  for (const [what, args, message, status] of cases) {
    it(`${what}: one line, exit ${status}, nothing written`, () => {
      const out = dir(`refused-${what.replace(/\W+/g, '-')}`);
      const r = runCli(['merge', ...args(), '--out', out]);
      expectRefused(r, out, message);
      expect(r.status).toBe(status);
    });
  }

  it('a chain with a parent missing, before writing anything', () => {
    rmSync(dir('broken'), { recursive: true, force: true });
    cli(['build', SOUTH, '--out', dir('broken-parent'), '--bottom', '7', '--compression', 'png', '--quiet']);
    cli(['build', NORTH, '--out', dir('broken'), '--parent', dir('broken-parent'), '--quiet']);
    rmSync(dir('broken-parent'), { recursive: true });
    const out = dir('from-broken');
    expectRefused(runCli(['merge', dir('broken'), '--out', out]), out, /broken-parent/);
  });

  it('to go on once stopped (Ctrl-C, an aborted execution): it rejects and leaves nothing', async () => {
    const out = dir('stopped');
    const stop = new AbortController();
    stop.abort();
    await expect(fusePyramids({ inputs: [dir('masked-up')], out, signal: stop.signal })).rejects.toThrow('merge interrupted');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp.path).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('an output folder that holds something', () => {
    const r = runCli(['merge', dir('north'), '--out', dir('south')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/exists and is not empty/);
    expect(existsSync(join(dir('south'), 'pyramid.json'))).toBe(true);
    expect(readdirSync(tmp.path).filter((f) => f.includes('.tmp'))).toEqual([]);
  });
});
