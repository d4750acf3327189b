// PMTiles writer and reader: tile id math, round trips through our reader and the `pmtiles` package, failure cleanup.

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, truncate, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PMTiles, TileType as RefTileType, zxyToTileId as refZxyToTileId } from 'pmtiles';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuileError } from '../src/errors.js';
import { FileSource, type ByteSource } from '../src/pyramid/byte-source.js';
import { PMTilesReader } from '../src/pyramid/pmtiles/reader.js';
import { tileIdToZxy, zxyToTileId } from '../src/pyramid/pmtiles/tileid.js';
import { PMTilesWriter, type WriterOptions } from '../src/pyramid/pmtiles/writer.js';
import { NodeFileSource } from './helpers/pmtiles.js';

/** Deterministic PRNG (mulberry32), so that a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

interface TestTile {
  z: number;
  x: number;
  y: number;
  data: Uint8Array;
}

const key = (t: { z: number; x: number; y: number }) => `${t.z}/${t.x}/${t.y}`;
const hex = (d: Uint8Array) => Buffer.from(d).toString('hex');

/** What the header counts must be, computed independently of the writer. */
function expectedCounts(tiles: TestTile[]) {
  const sorted = tiles.map((t) => ({ id: zxyToTileId(t.z, t.x, t.y), c: hex(t.data) })).sort((a, b) => a.id - b.id);
  let entries = 0;
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i - 1];
    if (!p || p.c !== sorted[i].c || p.id + 1 !== sorted[i].id) entries++;
  }
  return { addressed: tiles.length, entries, contents: new Set(sorted.map((s) => s.c)).size };
}

async function expectTuileError(p: Promise<unknown>, code: string): Promise<TuileError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TuileError);
  expect((err as TuileError).code).toBe(code);
  return err as TuileError;
}

async function writeArchive(path: string, opts: WriterOptions, tiles: TestTile[]) {
  const w = await PMTilesWriter.create(path, opts);
  for (const t of tiles) await w.addTile(t.z, t.x, t.y, t.data);
  return w.finish();
}

/** Checks every tile and header field through our reader and through the `pmtiles` package. */
async function checkArchive(path: string, opts: WriterOptions, tiles: TestTile[], absent: { z: number; x: number; y: number }[]) {
  const counts = expectedCounts(tiles);

  const r = await PMTilesReader.open(path);
  try {
    const h = r.header;
    expect(h.specVersion).toBe(3);
    expect(h.tileType).toBe(opts.tileType);
    expect([h.minZoom, h.maxZoom]).toEqual([opts.minZoom, opts.maxZoom]);
    h.bounds.forEach((v, i) => expect(v).toBeCloseTo(opts.bounds[i], 6));
    if (opts.center) h.center.forEach((v, i) => expect(v).toBeCloseTo(opts.center![i], 6));
    expect(h.numAddressedTiles).toBe(counts.addressed);
    expect(h.numTileEntries).toBe(counts.entries);
    expect(h.numTileContents).toBe(counts.contents);
    expect(h.clustered).toBe(true);
    expect(h.internalCompression).toBe(2); // gzip
    expect(h.tileCompression).toBe(1); // none
    expect(h.rootDirectoryOffset + h.rootDirectoryLength).toBeLessThanOrEqual(16384);
    expect(r.metadata).toEqual(opts.metadata ?? {});
    expect(r.tileCount).toBe(tiles.length);
    expect(new Set([...r.tiles()].map(key))).toEqual(new Set(tiles.map(key)));
    // plain checks in the per-tile loops: an expect() per tile costs more than the reads
    for (const t of tiles) if (!r.has(t)) expect.fail(`has(${key(t)}) is false`);
    for (const t of absent) {
      expect(r.has(t)).toBe(false);
      expect(await r.getTile(t)).toBeUndefined();
    }
    // bounded concurrency: sequential awaits make the 60k-tile case slow for no extra coverage
    for (let i = 0; i < tiles.length; i += 256) {
      const chunk = tiles.slice(i, i + 256);
      const got = await Promise.all(chunk.map((t) => r.getTile(t)));
      chunk.forEach((t, j) => {
        if (hex(got[j]!) !== hex(t.data)) expect.fail(`tile ${key(t)} differs`);
      });
    }
  } finally {
    await r.close();
  }

  const source = new NodeFileSource(path);
  try {
    const ref = new PMTiles(source);
    const h = await ref.getHeader();
    expect(h.specVersion).toBe(3);
    expect(h.tileType).toBe({ png: RefTileType.Png, jpg: RefTileType.Jpeg, webp: RefTileType.Webp }[opts.tileType]);
    expect([h.minZoom, h.maxZoom]).toEqual([opts.minZoom, opts.maxZoom]);
    [h.minLon, h.minLat, h.maxLon, h.maxLat].forEach((v, i) => expect(v).toBeCloseTo(opts.bounds[i], 6));
    expect([h.numAddressedTiles, h.numTileEntries, h.numTileContents]).toEqual([counts.addressed, counts.entries, counts.contents]);
    expect(h.clustered).toBe(true);
    expect(await ref.getMetadata()).toEqual(opts.metadata ?? {});
    for (const t of absent) expect(await ref.getZxy(t.z, t.x, t.y)).toBeUndefined();
    for (let i = 0; i < tiles.length; i += 256) {
      const chunk = tiles.slice(i, i + 256);
      const got = await Promise.all(chunk.map((t) => ref.getZxy(t.z, t.x, t.y)));
      chunk.forEach((t, j) => {
        if (!got[j] || hex(new Uint8Array(got[j]!.data)) !== hex(t.data)) expect.fail(`pmtiles package: tile ${key(t)} differs`);
      });
    }

    // Walk the directories with the package's own parser: proves clustering and the counts independently.
    const tileEntries: { tileId: number; offset: number; length: number; runLength: number }[] = [];
    const walk = async (offset: number, length: number): Promise<void> => {
      for (const e of await ref.cache.getDirectory(source, offset, length, h)) {
        if (e.runLength === 0) await walk(h.leafDirectoryOffset + e.offset, e.length);
        else tileEntries.push(e);
      }
    };
    await walk(h.rootDirectoryOffset, h.rootDirectoryLength);
    expect(tileEntries.length).toBe(counts.entries);
    expect(tileEntries.reduce((s, e) => s + e.runLength, 0)).toBe(counts.addressed);
    let end = 0;
    for (let i = 0; i < tileEntries.length; i++) {
      const e = tileEntries[i];
      const p = tileEntries[i - 1];
      if (p && e.tileId < p.tileId + p.runLength) expect.fail(`entries overlap at tile id ${e.tileId}`);
      // clustered (spec): a blob either follows the previous one or points back to an earlier one
      if (e.offset === end) end += e.length;
      else if (e.offset + e.length > end) expect.fail(`tile id ${e.tileId} breaks the clustering`);
    }
    expect(end).toBe(h.tileDataLength);
    expect(new Set(tileEntries.map((e) => e.offset)).size).toBe(counts.contents);
    return { header: h, reads: source.reads };
  } finally {
    source.close();
  }
}

let dir: string;
let n = 0;
const freshDir = async () => {
  const d = join(dir, `case-${n++}`);
  await mkdir(d);
  return d;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tuile-pmtiles-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tile ids', () => {
  it('has the values of the spec and of the reference implementation', () => {
    expect(zxyToTileId(0, 0, 0)).toBe(0);
    // z1 follows the Hilbert curve from the top-left tile, y down
    expect([zxyToTileId(1, 0, 0), zxyToTileId(1, 0, 1), zxyToTileId(1, 1, 1), zxyToTileId(1, 1, 0)]).toEqual([1, 2, 3, 4]);
    expect(zxyToTileId(2, 0, 0)).toBe(5);
    expect(zxyToTileId(3, 0, 0)).toBe(21);
    expect(tileIdToZxy(0)).toEqual({ z: 0, x: 0, y: 0 });
    expect(tileIdToZxy(4)).toEqual({ z: 1, x: 1, y: 0 });
    expect(tileIdToZxy(20)).toEqual({ z: 2, x: 3, y: 0 }); // the curve ends at the top-right corner
    for (let z = 0; z <= 8; z++) {
      for (let x = 0; x < 2 ** z; x++) {
        for (let y = 0; y < 2 ** z; y++) {
          if (zxyToTileId(z, x, y) !== refZxyToTileId(z, x, y)) expect.fail(`${z}/${x}/${y}`);
        }
      }
    }
  });

  it('round-trips every tile id of zooms 0 to 8', () => {
    const end = (4 ** 9 - 1) / 3;
    const seen = new Set<string>();
    for (let id = 0; id < end; id++) {
      const t = tileIdToZxy(id);
      if (t.x < 0 || t.y < 0 || t.x >= 2 ** t.z || t.y >= 2 ** t.z || zxyToTileId(t.z, t.x, t.y) !== id) {
        expect.fail(`tile id ${id} -> ${key(t)}`);
      }
      seen.add(key(t));
    }
    expect(seen.size).toBe(end); // a bijection: every tile of z0..8 was reached once
  });

  it('stays exact up to zoom 26 and refuses what does not fit', () => {
    const rand = prng(7);
    for (let z = 9; z <= 26; z++) {
      const corners = [0, 2 ** z - 1];
      const samples = [...corners.flatMap((x) => corners.map((y) => [x, y])), ...Array.from({ length: 200 }, () => [Math.floor(rand() * 2 ** z), Math.floor(rand() * 2 ** z)])];
      for (const [x, y] of samples) {
        const id = zxyToTileId(z, x, y);
        expect(id).toBe(refZxyToTileId(z, x, y));
        expect(tileIdToZxy(id)).toEqual({ z, x, y });
      }
    }
    expect(() => zxyToTileId(27, 0, 0)).toThrow(TuileError);
    expect(() => zxyToTileId(1, 2, 0)).toThrow(TuileError);
    expect(() => zxyToTileId(1, 0, -1)).toThrow(TuileError);
    expect(() => zxyToTileId(1.5, 0, 0)).toThrow(TuileError);
    expect(() => tileIdToZxy(-1)).toThrow(TuileError);
    expect(() => tileIdToZxy(2 ** 53)).toThrow(TuileError);
  });
});

describe('PMTiles archives', () => {
  let smallPath: string;
  const smallOpts: WriterOptions = {
    tileType: 'png',
    minZoom: 0,
    maxZoom: 6,
    bounds: [-5.1234567, 41.25, 9.5600001, 51.1],
    center: [2.3522219, 48.856614, 4],
    metadata: { name: 'small', attribution: '© tuile', levels: [0, 6] },
  };
  let smallTiles: TestTile[];

  it('writes tiles in any order with duplicate contents and reads them back through both readers', async () => {
    const rand = prng(42);
    const blanks = [Uint8Array.of(1), Uint8Array.of(2, 2), new Uint8Array(300).fill(255)];
    const tiles: TestTile[] = [];
    const all = (z: number) => Array.from({ length: 4 ** z }, (_, i) => ({ z, x: i % 2 ** z, y: Math.floor(i / 2 ** z) }));
    // z3 is one run: 64 consecutive ids with one content
    for (const t of all(3)) tiles.push({ ...t, data: blanks[0] });
    for (const z of [0, 1, 2, 4]) {
      for (const t of all(z)) {
        tiles.push({ ...t, data: rand() < 0.3 ? blanks[Math.floor(rand() * 3)] : randomBytes(1 + Math.floor(rand() * 800)) });
      }
    }
    const z6 = shuffle(all(6), rand).slice(0, 700);
    for (const t of z6) tiles.push({ ...t, data: rand() < 0.5 ? blanks[Math.floor(rand() * 3)] : randomBytes(1 + Math.floor(rand() * 800)) });
    // around and above the 1 MiB write buffer
    tiles.push({ z: 5, x: 3, y: 4, data: randomBytes(700_000) });
    tiles.push({ z: 5, x: 30, y: 1, data: randomBytes(1_300_000) });
    tiles.push({ z: 5, x: 31, y: 31, data: randomBytes(2_100_000) });
    smallTiles = shuffle(tiles, rand);
    const absent = [{ z: 5, x: 0, y: 0 }, ...shuffle(all(6), rand).filter((t) => !z6.some((u) => key(u) === key(t))).slice(0, 20)];

    const d = await freshDir();
    smallPath = join(d, 'small.pmtiles');
    const stats = await writeArchive(smallPath, smallOpts, smallTiles);
    const counts = expectedCounts(smallTiles);
    expect(stats.tiles).toBe(smallTiles.length);
    expect(stats.uniqueContents).toBe(counts.contents);
    expect(stats.bytes).toBe((await readFile(smallPath)).length);
    expect(counts.contents).toBeLessThan(smallTiles.length);
    expect(await readdir(d)).toEqual(['small.pmtiles']); // no temporary file left

    const { header } = await checkArchive(smallPath, smallOpts, smallTiles, absent);
    expect(header.leafDirectoryLength).toBe(0); // small enough for a root-only directory
  });

  it('accepts concurrent addTile calls', async () => {
    const rand = prng(3);
    const tiles: TestTile[] = [];
    for (let i = 0; i < 4 ** 5; i++) {
      tiles.push({ z: 5, x: i % 32, y: i >> 5, data: rand() < 0.4 ? Uint8Array.of(9, 9, 9) : randomBytes(50 + Math.floor(rand() * 5000)) });
    }
    const opts: WriterOptions = { tileType: 'webp', minZoom: 5, maxZoom: 5, bounds: [-180, -85.0511, 180, 85.0511] };
    const path = join(await freshDir(), 'concurrent.pmtiles');
    const w = await PMTilesWriter.create(path, opts);
    await Promise.all(shuffle(tiles, rand).map((t) => w.addTile(t.z, t.x, t.y, t.data)));
    await w.finish();
    const { header } = await checkArchive(path, opts, tiles, []);
    // default center: the middle of the bounds at the min zoom
    expect([header.centerLon, header.centerLat, header.centerZoom]).toEqual([0, 0, 5]);
  });

  it('uses leaf directories for a large archive', async () => {
    const rand = prng(9);
    const chosen = new Set<string>();
    const tiles: TestTile[] = [];
    const blank = Uint8Array.of(0xbb, 0xbb);
    // a dense block of z10 (runs of the blank tile among unique ones) and scattered tiles of z9
    for (let y = 0; y < 160; y++) {
      for (let x = 0; x < 250; x++) {
        const t = { z: 10, x: 300 + x, y: 200 + y };
        chosen.add(key(t));
        tiles.push({ ...t, data: rand() < 0.2 ? blank : Uint8Array.of(tiles.length & 255, (tiles.length >> 8) & 255, tiles.length >> 16, 1) });
      }
    }
    while (tiles.length < 60_000) {
      const t = { z: 9, x: Math.floor(rand() * 512), y: Math.floor(rand() * 512) };
      if (chosen.has(key(t))) continue;
      chosen.add(key(t));
      tiles.push({ ...t, data: rand() < 0.2 ? blank : Uint8Array.of(tiles.length & 255, (tiles.length >> 8) & 255, tiles.length >> 16, 2) });
    }
    shuffle(tiles, rand);
    const opts: WriterOptions = { tileType: 'jpg', minZoom: 9, maxZoom: 10, bounds: [0, 0, 45, 45], metadata: { name: 'large' } };
    const path = join(await freshDir(), 'large.pmtiles');
    await writeArchive(path, opts, tiles);
    const { header, reads } = await checkArchive(path, opts, tiles, [{ z: 10, x: 0, y: 0 }, { z: 8, x: 1, y: 1 }]);
    expect(header.leafDirectoryLength).toBeGreaterThan(0);
    expect(header.rootDirectoryOffset + header.rootDirectoryLength).toBeLessThanOrEqual(16384);
    // the package loads each leaf once: header+root, metadata, leaves, then one read per tile
    expect(reads).toBeLessThan(tiles.length + 60);
  });

  it('moves to leaves when a root of fewer than 16384 entries does not compress under the limit', async () => {
    const rand = prng(11);
    const chosen = new Map<string, TestTile>();
    while (chosen.size < 9000) {
      const t = { z: 12, x: Math.floor(rand() * 4096), y: Math.floor(rand() * 4096) };
      chosen.set(key(t), { ...t, data: randomBytes(1 + Math.floor(rand() * 300)) });
    }
    const tiles = [...chosen.values()];
    const opts: WriterOptions = { tileType: 'png', minZoom: 12, maxZoom: 12, bounds: [-180, -85, 180, 85] };
    const path = join(await freshDir(), 'sparse.pmtiles');
    await writeArchive(path, opts, tiles);
    const { header } = await checkArchive(path, opts, tiles, [{ z: 12, x: 4095, y: 4095 }].filter((t) => !chosen.has(key(t))));
    expect(header.leafDirectoryLength).toBeGreaterThan(0);
  });

  it('refuses corrupt and truncated files with InvalidInput', async () => {
    const good = await readFile(smallPath);
    const d = await freshDir();
    const variant = async (name: string, bytes: Uint8Array) => {
      const p = join(d, name);
      await writeFile(p, bytes);
      return p;
    };
    const badMagic = Buffer.from(good);
    badMagic.write('PNTiles', 0, 'latin1');
    await expectTuileError(PMTilesReader.open(await variant('magic.pmtiles', badMagic)), 'InvalidInput');

    const v2 = Buffer.from(good);
    v2[7] = 2;
    const e = await expectTuileError(PMTilesReader.open(await variant('v2.pmtiles', v2)), 'InvalidInput');
    expect(e.message).toMatch(/version 2/);

    const garbledRoot = Buffer.from(good);
    garbledRoot.fill(0x5a, 127, 127 + 40);
    await expectTuileError(PMTilesReader.open(await variant('root.pmtiles', garbledRoot)), 'InvalidInput');

    await expectTuileError(PMTilesReader.open(await variant('short.pmtiles', good.subarray(0, 60))), 'InvalidInput');
    await expectTuileError(PMTilesReader.open(await variant('empty.pmtiles', new Uint8Array(0))), 'InvalidInput');
    const half = await variant('half.pmtiles', good);
    await truncate(half, Math.floor(good.length / 2));
    await expectTuileError(PMTilesReader.open(half), 'InvalidInput');
    await expectTuileError(PMTilesReader.open(await variant('text.pmtiles', Buffer.from('hello world '.repeat(20)))), 'InvalidInput');

    await expectTuileError(PMTilesReader.open(join(d, 'missing.pmtiles')), 'NotFound');
  });

  it('abort removes every temporary file and leaves an existing archive untouched', async () => {
    const d = await freshDir();
    const path = join(d, 'a.pmtiles');
    const w = await PMTilesWriter.create(path, smallOpts);
    await w.addTile(0, 0, 0, randomBytes(100));
    await w.addTile(1, 0, 0, randomBytes(3_000_000)); // written straight to the data file
    await w.abort();
    expect(await readdir(d)).toEqual([]);

    const before = await readFile(smallPath);
    const again = await PMTilesWriter.create(smallPath, smallOpts);
    await again.addTile(2, 1, 1, randomBytes(10));
    await again.abort();
    await again.abort(); // idempotent
    expect(Buffer.compare(await readFile(smallPath), before)).toBe(0);
    expect((await readdir(join(smallPath, '..'))).filter((f) => f !== 'small.pmtiles')).toEqual([]);
  });

  it('a failed call removes the temporary files and kills the writer', async () => {
    const d = await freshDir();
    const path = join(d, 'b.pmtiles');

    const dup = await PMTilesWriter.create(path, smallOpts);
    await dup.addTile(3, 1, 2, Uint8Array.of(1));
    await dup.addTile(3, 2, 1, Uint8Array.of(1));
    await expectTuileError(dup.addTile(3, 1, 2, Uint8Array.of(2)), 'InvalidParameter');
    expect(await readdir(d)).toEqual([]);
    await expectTuileError(dup.addTile(3, 3, 3, Uint8Array.of(1)), 'Internal');
    await expectTuileError(dup.finish(), 'Internal');

    const outOfRange = await PMTilesWriter.create(path, { ...smallOpts, minZoom: 2 });
    await expectTuileError(outOfRange.addTile(1, 0, 0, Uint8Array.of(1)), 'InvalidParameter');
    const emptyTile = await PMTilesWriter.create(path, smallOpts);
    await expectTuileError(emptyTile.addTile(1, 0, 0, new Uint8Array(0)), 'InvalidParameter');
    const none = await PMTilesWriter.create(path, smallOpts);
    await expectTuileError(none.finish(), 'InvalidParameter');
    expect(await readdir(d)).toEqual([]);

    await expectTuileError(PMTilesWriter.create(path, { ...smallOpts, minZoom: 7 }), 'InvalidParameter');
    await expectTuileError(PMTilesWriter.create(path, { ...smallOpts, bounds: [10, 0, 5, 1] }), 'InvalidParameter');
    await expectTuileError(PMTilesWriter.create(join(d, 'no', 'such', 'dir.pmtiles'), smallOpts), 'OutputError');
    expect(await readdir(d)).toEqual([]);
  });
});

/** A local file that records every range the reader asks it for. */
class CountingSource implements ByteSource {
  readonly ranges: [number, number][] = [];
  closed = false;
  constructor(private readonly inner: FileSource) {}
  get key() {
    return this.inner.key;
  }
  get size() {
    return this.inner.size;
  }
  getBytes(offset: number, length: number) {
    this.ranges.push([offset, length]);
    return this.inner.getBytes(offset, length);
  }
  async close() {
    this.closed = true;
    await this.inner.close();
  }
}

describe('the reader on its byte source', () => {
  it('reads the header, metadata, root and leaves once at open, then one range per tile and none for a lookup', async () => {
    const rand = prng(5);
    const chosen = new Map<string, TestTile>();
    while (chosen.size < 9000) {
      const t = { z: 12, x: Math.floor(rand() * 4096), y: Math.floor(rand() * 4096) };
      chosen.set(key(t), { ...t, data: randomBytes(1 + Math.floor(rand() * 300)) });
    }
    const tiles = [...chosen.values()];
    const path = join(await freshDir(), 'counted.pmtiles');
    await writeArchive(path, { tileType: 'png', minZoom: 12, maxZoom: 12, bounds: [-180, -85, 180, 85], metadata: { name: 'counted' } }, tiles);

    const source = new CountingSource(await FileSource.open(path));
    const r = await PMTilesReader.open(source);
    const h = r.header;
    expect(h.leafDirectoryLength).toBeGreaterThan(0);
    expect(source.ranges).toEqual([
      [0, 127],
      [h.jsonMetadataOffset, h.jsonMetadataLength],
      [h.rootDirectoryOffset, h.rootDirectoryLength],
      [h.leafDirectoryOffset, h.leafDirectoryLength],
    ]);
    expect(r.key).toBe(path);
    expect(r.metadata).toEqual({ name: 'counted' });

    source.ranges.length = 0;
    for (const t of tiles) if (!r.has(t)) expect.fail(`has(${key(t)}) is false`);
    const absent = { z: 12, x: 0, y: 0 };
    if (!chosen.has(key(absent))) expect(await r.getTile(absent)).toBeUndefined();
    expect(await r.getTile({ z: 13, x: 0, y: 0 })).toBeUndefined();
    expect(source.ranges).toEqual([]);

    const some = tiles.slice(0, 200);
    const got = await Promise.all(some.map((t) => r.getTile(t)));
    some.forEach((t, i) => expect(hex(got[i]!), key(t)).toBe(hex(t.data)));
    expect(source.ranges.length).toBe(some.length);
    source.ranges.forEach(([offset, length], i) => {
      expect(length).toBe(some[i].data.length);
      expect(offset).toBeGreaterThanOrEqual(h.tileDataOffset);
    });

    await r.close();
    expect(source.closed).toBe(true);
    await expectTuileError(r.getTile(tiles[0]), 'Internal');
  });

  it('closes its source when the archive is refused, and calls a short tile read truncated', async () => {
    const path = join(await freshDir(), 'short.pmtiles');
    const tiles: TestTile[] = [];
    for (let x = 0; x < 16; x++) tiles.push({ z: 4, x, y: 3, data: randomBytes(1000 + x) });
    await writeArchive(path, { tileType: 'png', minZoom: 4, maxZoom: 4, bounds: [-180, -85, 180, 85] }, tiles);

    const garbage = join(await freshDir(), 'garbage.pmtiles');
    await writeFile(garbage, Buffer.from('not an archive '.repeat(20)));
    const refused = new CountingSource(await FileSource.open(garbage));
    await expectTuileError(PMTilesReader.open(refused), 'InvalidInput');
    expect(refused.closed).toBe(true);

    const source = new CountingSource(await FileSource.open(path));
    const r = await PMTilesReader.open(source);
    // the file loses its end while open (a replaced or damaged archive): the reader must not return a cut tile
    await truncate(path, source.size - 500);
    // clustered: the tile of the highest id is stored last
    const last = tiles.reduce((a, b) => (zxyToTileId(b.z, b.x, b.y) > zxyToTileId(a.z, a.x, a.y) ? b : a));
    const e = await expectTuileError(r.getTile(last), 'InvalidInput');
    expect(e.message).toContain('truncated');
    expect(hex((await r.getTile(tiles[0]))!)).toBe(hex(tiles[0].data));
    await r.close();
  });
});
