// Pyramid builds through the CLI on real deliveries: archive contents, descriptor, PMTiles interop,
// bad inputs.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, chmodSync, mkdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { PMTiles, type Source, type RangeResponse } from 'pmtiles';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PMTilesReader } from '../src/pyramid/pmtiles/reader.js';
import { decodeTile } from '../src/tiles/codec.js';
import { isBlank } from '../src/raster/tile.js';
import { expectRefused, fixture, runCli, tempDir, FIXTURES, ROOT } from './helpers/fixtures.js';

class FileSource implements Source {
  constructor(private readonly path: string) {}
  getKey(): string {
    return this.path;
  }
  async getBytes(offset: number, length: number): Promise<RangeResponse> {
    const fh = await open(this.path, 'r');
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      const data = buf.buffer.slice(buf.byteOffset, buf.byteOffset + bytesRead) as ArrayBuffer;
      return { data };
    } finally {
      await fh.close();
    }
  }
}

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('tuile build (france north, Lambert-93, grey + alpha)', () => {
  const out = join(tmp.path, 'north');
  let stdout = '';
  beforeAll(() => {
    const r = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', out, '--compression', 'png', '--interpolation', 'bicubic']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    stdout = r.stdout;
  });

  it('prints a one-line summary', () => {
    expect(stdout.trim().split('\n')).toHaveLength(1);
    expect(stdout).toMatch(/^built .*: \d+ tiles, \d+ bytes, levels 0-6, png, [\d.]+ s$/m);
  });

  it('leaves exactly pyramid.json and one PMTiles archive, no temporary folder', () => {
    expect(readdirSync(out).sort()).toEqual(['pyramid.json', 'tiles.pmtiles']);
    expect(readdirSync(tmp.path).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('writes a descriptor whose limits match the tiles present, with blank tiles absent', async () => {
    const d = JSON.parse(readFileSync(join(out, 'pyramid.json'), 'utf8'));
    expect(d.tms).toBe('PM');
    expect(d.bottom).toBe(6); // 2 km pixels: level 6 (2.4 km) is the nearest
    expect(d.top).toBe(0);
    expect(d.bands).toBe(1);
    expect(d.bboxLonLat.minX).toBeGreaterThan(-6);
    expect(d.bboxLonLat.maxX).toBeLessThan(11);
    const reader = await PMTilesReader.open(join(out, 'tiles.pmtiles'));
    const seen = new Map<number, { minX: number; maxX: number; minY: number; maxY: number; n: number }>();
    let total = 0;
    for (const t of reader.tiles()) {
      const s = seen.get(t.z) ?? { minX: Infinity, maxX: -Infinity, minY: Infinity, maxY: -Infinity, n: 0 };
      s.minX = Math.min(s.minX, t.x);
      s.maxX = Math.max(s.maxX, t.x);
      s.minY = Math.min(s.minY, t.y);
      s.maxY = Math.max(s.maxY, t.y);
      s.n++;
      seen.set(t.z, s);
      const raw = await decodeTile((await reader.getTile(t))!);
      expect(isBlank(raw), `tile ${t.z}/${t.x}/${t.y} is blank`).toBe(false);
      total++;
    }
    await reader.close();
    expect(total).toBe(d.stats.tiles);
    expect(d.levels.map((l: { id: string }) => l.id)).toEqual(['0', '1', '2', '3', '4', '5', '6']);
    for (const l of d.levels) {
      const s = seen.get(Number(l.id))!;
      expect(l.limits).toEqual({ z: Number(l.id), minX: s.minX, maxX: s.maxX, minY: s.minY, maxY: s.maxY });
      expect(l.tiles).toBe(s.n);
    }
  });

  it('every tile reads back identical through the pmtiles package reader', async () => {
    const ours = await PMTilesReader.open(join(out, 'tiles.pmtiles'));
    const theirs = new PMTiles(new FileSource(join(out, 'tiles.pmtiles')));
    const header = await theirs.getHeader();
    expect(header.tileType).toBe(2); // png
    expect(header.minZoom).toBe(0);
    expect(header.maxZoom).toBe(6);
    let n = 0;
    for (const t of ours.tiles()) {
      const a = await ours.getTile(t);
      const b = await theirs.getZxy(t.z, t.x, t.y);
      expect(b, `pmtiles misses ${t.z}/${t.x}/${t.y}`).toBeDefined();
      expect(Buffer.from(b!.data).equals(Buffer.from(a!))).toBe(true);
      n++;
    }
    expect(n).toBe(header.numAddressedTiles);
    // a tile outside the data is absent in both
    expect(await theirs.getZxy(6, 0, 0)).toBeUndefined();
    expect(ours.has({ z: 6, x: 0, y: 0 })).toBe(false);
    await ours.close();
  });

  it('inspect describes the pyramid', () => {
    const r = runCli(['inspect', out]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/tms PM, 256 px tiles, png, 1 band/);
    expect(r.stdout).toMatch(/level  6: x \d+-\d+, y \d+-\d+, \d+ tiles/);
    const j = JSON.parse(runCli(['inspect', out, '--json']).stdout);
    expect(j.archive.tiles).toBeGreaterThan(0);
  });
});

describe('tuile build options', () => {
  it('builds jpeg with levels chosen by the user, nodata painted in the nodata colour', async () => {
    const out = join(tmp.path, 'north-jpg');
    const r = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', out, '--compression', 'jpg', '--bottom', '5', '--top', '3', '--nodata', '255', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    const d = JSON.parse(readFileSync(join(out, 'pyramid.json'), 'utf8'));
    expect([d.top, d.bottom]).toEqual([3, 5]);
    const reader = await PMTilesReader.open(join(out, 'tiles.pmtiles'));
    const zs = new Set([...reader.tiles()].map((t) => t.z));
    expect([...zs].sort()).toEqual([3, 4, 5]);
    const l5 = d.levels.find((l: { id: string }) => l.id === '5').limits;
    // a corner tile of the bottom level holds both France and the sea: the sea is white, not black
    const corner = await decodeTile((await reader.getTile({ z: 5, x: l5.minX, y: l5.minY }))!);
    expect(corner.bands).toBe(1);
    expect(corner.data[0]).toBeGreaterThan(240);
    await reader.close();
  });

  it('mosaics several files of one delivery into one pyramid', async () => {
    const out = join(tmp.path, 'both');
    const r = runCli(['build', fixture('france_relief_north_2154.tif'), fixture('france_relief_south_2154.tif'), '--out', out, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const d = JSON.parse(readFileSync(join(out, 'pyramid.json'), 'utf8'));
    expect(d.sources).toEqual(['france_relief_north_2154.tif', 'france_relief_south_2154.tif']);
    // the south reaches the Pyrenees (about 42.3 N); the north alone stops near 46 N
    expect(d.bboxLonLat.minY).toBeLessThan(42.5);
    expect(d.bboxLonLat.maxY).toBeGreaterThan(51);
  });

  it('reads an internal mask as the equivalent alpha band does', async () => {
    const a = join(tmp.path, 'alpha');
    const m = join(tmp.path, 'mask');
    expect(runCli(['build', fixture('france_relief_north_2154.tif'), '--out', a, '--quiet']).status).toBe(0);
    expect(runCli(['build', fixture('france_relief_north_mask_2154.tif'), '--out', m, '--quiet']).status).toBe(0);
    const ra = await PMTilesReader.open(join(a, 'tiles.pmtiles'));
    const rm = await PMTilesReader.open(join(m, 'tiles.pmtiles'));
    expect(rm.tileCount).toBe(ra.tileCount);
    for (const t of ra.tiles()) {
      expect(Buffer.from((await rm.getTile(t))!).equals(Buffer.from((await ra.getTile(t))!))).toBe(true);
    }
    await ra.close();
    await rm.close();
  });

  it('expands palettes, selects bands of multispectral files, and builds webp', async () => {
    const pal = join(tmp.path, 'palette');
    expect(runCli(['build', fixture('lc_puertorico_albers_palette.tif'), '--out', pal, '--interpolation', 'nn', '--quiet']).status).toBe(0);
    expect(JSON.parse(readFileSync(join(pal, 'pyramid.json'), 'utf8')).bands).toBe(3);
    const l7 = join(tmp.path, 'l7');
    const bad = runCli(['build', fixture('l7_etms_olinda_utm25s.tif'), '--out', l7]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/6 bands.*--bands/);
    expect(existsSync(l7)).toBe(false);
    const ok = runCli(['build', fixture('l7_etms_olinda_utm25s.tif'), '--out', l7, '--bands', '3,2,1', '--compression', 'webp', '--top', '10', '--quiet']);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    const reader = await PMTilesReader.open(join(l7, 'tiles.pmtiles'));
    expect(reader.header.tileType).toBe('webp');
    expect(reader.header.tileTypeCode).toBe(4);
    await reader.close();
  });
});

describe('tuile build refuses bad input cleanly', () => {
  const cases: [string, string, RegExp][] = [
    ['empty file', 'bad/empty.tif', /empty/i],
    ['truncated TIFF', 'bad/truncated.tif', /truncat|corrupt|decode|readable/i],
    ['corrupt TIFF', 'bad/corrupt.tif', /corrupt|decode|readable|invalid/i],
    ['no georeferencing', 'bad/no_georef.tif', /georef|GeoKeys/i],
    ['unknown CRS', 'bad/unsupported_crs.tif', /CRS|projection|coordinate/i],
    ['not a TIFF', 'bad/not_a_tiff.tif', /not a readable TIFF|TIFF/i],
  ];
  for (const [name, file, message] of cases) {
    it(`${name}: one-line message, non-zero exit, no output folder`, () => {
      const out = join(tmp.path, `bad-${file.replace(/\W/g, '_')}`);
      const r = runCli(['build', join(FIXTURES, file), '--out', out]);
      expectRefused(r, out, message);
    });
  }

  it('an interrupted build (SIGTERM) leaves neither the output nor its temporary folder', async () => {
    const dir = join(tmp.path, 'interrupted');
    mkdirSync(dir);
    const out = join(dir, 'pyr');
    const child = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'build', fixture('modis_miriam_4326.tif'), '--out', out, '--bottom', '10', '--compression', 'jpg', '--quiet']);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // in the middle of the build: once tiles have reached the temporary archive's data file (it is written in
    // 1 MB buffers, level 10 takes about 10 s here), and the build still runs
    const dataFile = () => {
      const tmpDir = readdirSync(dir).find((f) => f.includes('.tmp-'));
      return tmpDir ? join(dir, tmpDir, 'tiles.pmtiles.data.tmp') : null;
    };
    const deadline = Date.now() + 60_000;
    let data: string | null = null;
    while (!((data = dataFile()) && existsSync(data) && statSync(data).size > 0) && child.exitCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(data && existsSync(data) && statSync(data).size, stderr).toBeGreaterThan(0);
    expect(child.exitCode, 'the build ended before it could be interrupted').toBeNull();
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/^tuile: build interrupted, nothing written$/m);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a missing input file', () => {
    const r = runCli(['build', join(tmp.path, 'nope.tif'), '--out', join(tmp.path, 'x')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nope\.tif/);
  });

  it('an output folder that is not writable', () => {
    if (process.getuid?.() === 0) {
      // root writes anywhere: use a path below a regular file instead, which nobody can create
      const r = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', join(fixture('france_relief_north_2154.tif'), 'out')]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/^tuile: .*(not a folder|cannot|ENOTDIR)/);
      return;
    }
    const ro = join(tmp.path, 'readonly');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    const r = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', join(ro, 'out')]);
    expect(r.status).not.toBe(0);
    expect(existsSync(join(ro, 'out'))).toBe(false);
  });

  it('an output folder that is not empty, and bad options', () => {
    const r = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', FIXTURES]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/not empty/);
    const gif = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', join(tmp.path, 'y'), '--compression', 'gif']);
    expect(gif.stderr).toMatch(/unknown compression 'gif'/);
    expect(gif.status).toBe(2);
    const unknown = runCli(['build', fixture('france_relief_north_2154.tif'), '--out', join(tmp.path, 'y'), '--colour', 'red']);
    expect(unknown.stderr).toMatch(/^tuile: .*--colour/);
    expect(unknown.status).toBe(2);
    expect(runCli(['build', fixture('france_relief_north_2154.tif'), '--out', join(tmp.path, 'y'), '--top', '9', '--bottom', '4']).stderr).toMatch(/top level 9/);
    expect(existsSync(join(tmp.path, 'y'))).toBe(false);
  });
});
