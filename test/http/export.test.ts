// GDAL exporting whole layers from a spawned `tuile serve`, as a GIS user does: gdal_translate of the WMTS
// layer (RESTful and KVP capabilities), gdalwarp of it back to the delivery's Lambert-93 grid, and
// gdal_translate of the TMS TileMap URL. Every export must exit 0 and hold the served pixels. Missing GDAL
// fails only when TUILE_REQUIRE_GDAL=1 (CI).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitsBounds, PM, type Bbox, type TileLimits } from '../../src/geo/tms.js';
import type { PyramidDescriptor } from '../../src/pyramid/descriptor.js';
import { readDescriptor } from '../../src/pyramid/storage.js';
import { decodeTile } from '../../src/tiles/codec.js';
import type { RawTile } from '../../src/raster/tile.js';
import { fixture, ROOT } from '../helpers/fixtures.js';
import { compare } from '../helpers/images.js';
import { northPng } from '../helpers/server.js';
import { freePort } from '../helpers/tuile.js';

const run = promisify(execFile);

let gdal = false;
let work: string;
let env: NodeJS.ProcessEnv;
let base: string;
let proc: ChildProcess | undefined;
let desc: PyramidDescriptor;

async function hasGdal(): Promise<boolean> {
  try {
    for (const tool of ['gdalinfo', 'gdal_translate', 'gdalwarp']) await run(tool, ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** `tuile serve --layer north=DIR` in its own process on 127.0.0.1, once it says it serves. */
async function spawnServe(dir: string): Promise<void> {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  let out = '';
  proc = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve', '--layer', `north=${dir}`, '--port', String(port)], {
    env: { ...process.env, HOST: '127.0.0.1', TUILE_WORKERS: '1', TUILE_DATA_DIR: join(work, 'data') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 60_000;
  while (!/tuile: serving \d+ layer/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`tuile serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  gdal = await hasGdal();
  work = mkdtempSync(join(tmpdir(), 'tuile-export-'));
  // GDAL's tile cache in a folder of ours; no proxy between GDAL and 127.0.0.1
  env = { ...process.env, GDAL_DEFAULT_WMS_CACHE_PATH: join(work, 'cache'), NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', GDAL_HTTP_TIMEOUT: '30' };
  const dir = await northPng();
  desc = await readDescriptor(dir);
  if (gdal) await spawnServe(dir);
}, 120_000);

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc!.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
});

function skipped(): boolean {
  if (gdal) return false;
  expect(process.env.TUILE_REQUIRE_GDAL, 'GDAL (gdalinfo, gdal_translate, gdalwarp) is required: TUILE_REQUIRE_GDAL=1').not.toBe('1');
  console.warn('export.test: gdalinfo, gdal_translate or gdalwarp not found: the GDAL export checks did NOT run');
  return true;
}

async function gdalRun(tool: string, args: string[]): Promise<void> {
  try {
    await run(tool, args, { env, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    throw new Error(`${tool} ${args.join(' ')} exited ${e.code}: ${e.stderr}`);
  }
}

async function geo(file: string): Promise<{ gt: number[]; size: [number, number] }> {
  const { stdout } = await run('gdalinfo', ['-json', file], { env });
  const j = JSON.parse(stdout);
  return { gt: j.geoTransform, size: j.size };
}

async function png(file: string): Promise<RawTile> {
  return decodeTile(await sharp(file).toBuffer());
}

/** The tiles of level z inside `limits` (XYZ, or TMS rows from the bottom), assembled into one image. */
async function mosaic(z: number, l: TileLimits, tms = false): Promise<RawTile> {
  const cols = l.maxX - l.minX + 1;
  const rows = l.maxY - l.minY + 1;
  const w = cols * 256;
  const out: RawTile = { width: w, height: rows * 256, bands: 1, data: new Uint8Array(w * rows * 256), alpha: new Uint8Array(w * rows * 256) };
  for (let y = l.minY; y <= l.maxY; y++) {
    for (let x = l.minX; x <= l.maxX; x++) {
      const r = await fetch(tms ? `${base}/tms/1.0.0/north/${z}/${x}/${2 ** z - 1 - y}.png` : `${base}/tiles/north/${z}/${x}/${y}.png`);
      expect(r.status).toBe(200);
      const t = await decodeTile(new Uint8Array(await r.arrayBuffer()));
      expect(t.bands).toBe(1);
      for (let j = 0; j < 256; j++) {
        const at = ((y - l.minY) * 256 + j) * w + (x - l.minX) * 256;
        out.data.set(t.data.subarray(j * 256, (j + 1) * 256), at);
        out.alpha.set(t.alpha.subarray(j * 256, (j + 1) * 256), at);
      }
    }
  }
  return out;
}

/** The window of `img` (georeferenced at `origin`, resolution res) under the geotransform `gt` and size. */
function window(img: RawTile, origin: { x: number; y: number }, res: number, gt: number[], size: [number, number]): RawTile {
  const ox = Math.round((gt[0] - origin.x) / res);
  const oy = Math.round((origin.y - gt[3]) / res);
  expect(ox).toBeGreaterThanOrEqual(0);
  expect(oy).toBeGreaterThanOrEqual(0);
  expect(ox + size[0]).toBeLessThanOrEqual(img.width);
  expect(oy + size[1]).toBeLessThanOrEqual(img.height);
  const [w, h] = size;
  const out: RawTile = { width: w, height: h, bands: img.bands, data: new Uint8Array(w * h * img.bands), alpha: new Uint8Array(w * h) };
  for (let j = 0; j < h; j++) {
    const src = (oy + j) * img.width + ox;
    out.data.set(img.data.subarray(src * img.bands, (src + w) * img.bands), j * w * img.bands);
    out.alpha.set(img.alpha.subarray(src, src + w), j * w);
  }
  return out;
}

/** An image whose alpha is opaque wherever its first band is not 0 (GDAL's TMS reader drops alpha). */
function opaqueWhereNonZero(t: RawTile): RawTile {
  const alpha = new Uint8Array(t.width * t.height);
  for (let i = 0; i < alpha.length; i++) alpha[i] = t.data[i * t.bands] !== 0 ? 255 : 0;
  return { ...t, alpha };
}

describe('GDAL exports of the whole layer', () => {
  it('gdal_translate of the WMTS layer, from the RESTful and the KVP capabilities, holds the served tiles', async () => {
    if (skipped()) return;
    const z = desc.bottom;
    const limits = desc.levels.find((l) => l.limits.z === z)!.limits;
    const served = await mosaic(z, limits);
    const corner = limitsBounds(PM, limits);
    for (const caps of [`${base}/wmts/1.0.0/WMTSCapabilities.xml`, `${base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`]) {
      const out = join(work, `wmts-${caps.includes('?') ? 'kvp' : 'rest'}.png`);
      await gdalRun('gdal_translate', ['-q', '-of', 'PNG', `WMTS:${caps},layer=north`, out]);
      const g = await geo(out);
      expect(g.gt[1]).toBeCloseTo(PM.levels[z].resolution, 9);
      // the whole layer: at least every tile with data but one at each edge, at the bottom level
      expect(g.size[0]).toBeGreaterThan((limits.maxX - limits.minX - 1) * 256);
      expect(g.size[1]).toBeGreaterThan((limits.maxY - limits.minY - 1) * 256);
      const got = await png(out);
      const want = window(served, { x: corner.minX, y: corner.maxY }, PM.levels[z].resolution, g.gt, g.size);
      const c = compare(got, want);
      expect(c.compared).toBeGreaterThan(100_000);
      expect(c.maskMismatch).toBe(0);
      expect(c.identical).toBe(1);
    }
  });

  it('gdalwarp of the WMTS layer to Lambert-93 matches the delivery', async () => {
    if (skipped()) return;
    const delivery = fixture('france_relief_north_2154.tif');
    const d = await geo(delivery);
    const te = [d.gt[0], d.gt[3] + d.size[1] * d.gt[5], d.gt[0] + d.size[0] * d.gt[1], d.gt[3]].map(String);
    const warped = join(work, 'warped-2154.tif');
    await gdalRun('gdalwarp', ['-q', '-t_srs', 'EPSG:2154', '-te', ...te, '-tr', String(d.gt[1]), String(-d.gt[5]), '-r', 'bilinear', `WMTS:${base}/wmts/1.0.0/WMTSCapabilities.xml,layer=north`, warped]);
    // and the whole layer with gdalwarp's own choice of grid
    await gdalRun('gdalwarp', ['-q', '-t_srs', 'EPSG:2154', `WMTS:${base}/wmts/1.0.0/WMTSCapabilities.xml,layer=north`, join(work, 'whole-2154.tif')]);
    expect((await geo(join(work, 'whole-2154.tif'))).size[0]).toBeGreaterThan(500);
    for (const [src, dst] of [
      [warped, 'warped-2154.png'],
      [delivery, 'delivery.png'],
    ]) {
      await gdalRun('gdal_translate', ['-q', '-of', 'PNG', src, join(work, dst)]);
    }
    const got = await png(join(work, 'warped-2154.png'));
    const want = await png(join(work, 'delivery.png'));
    // two pixels in from the data's edge, where bilinear mixes data and nodata
    const inside = (x: number, y: number) => {
      for (const [dx, dy] of [[-2, 0], [2, 0], [0, -2], [0, 2]]) {
        const i = (y + dy) * want.width + x + dx;
        if (x + dx < 0 || y + dy < 0 || x + dx >= want.width || y + dy >= want.height || want.alpha[i] < 255 || got.alpha[i] < 255) return false;
      }
      return true;
    };
    const c = compare(got, want, inside);
    expect(c.compared).toBeGreaterThan(50_000);
    // measured 51.8 dB: the level-7 tiles are finer than the 2 km delivery
    expect(c.psnr).toBeGreaterThan(45);
    // the two masks agree but for edge pixels
    expect(compare(got, want).maskMismatch).toBeLessThan(0.02);
  });

  it('gdal_translate of the TMS TileMap URL asks for the right tiles: the whole grid reduced, and the layer at full resolution', async () => {
    if (skipped()) return;
    const url = `${base}/tms/1.0.0/north`;
    // the whole TileMap at 2048 px wide is level 3 (8 x 8 tiles): GDAL reads that TileSet
    const world = join(work, 'tms-world.png');
    await gdalRun('gdal_translate', ['-q', '-of', 'PNG', '-outsize', '2048', '0', url, world]);
    const gw = await geo(world);
    expect(gw.size).toEqual([2048, 2048]);
    expect(gw.gt[0]).toBeCloseTo(PM.originX, 3);
    expect(gw.gt[3]).toBeCloseTo(PM.originY, 3);
    const full3: TileLimits = { z: 3, minX: 0, maxX: 7, minY: 0, maxY: 7 };
    const served3 = await mosaic(3, full3, true);
    const c3 = compare(opaqueWhereNonZero(await png(world)), opaqueWhereNonZero(served3));
    expect(c3.compared).toBeGreaterThan(1_000);
    expect(c3.maskMismatch).toBe(0);
    expect(c3.identical).toBe(1);

    // the layer's box at the bottom level: the same pixels as the WMTS export
    const z = desc.bottom;
    const limits = desc.levels.find((l) => l.limits.z === z)!.limits;
    const box: Bbox = limitsBounds(PM, limits);
    const layer = join(work, 'tms-layer.png');
    await gdalRun('gdal_translate', ['-q', '-of', 'PNG', '-projwin', String(box.minX), String(box.maxY), String(box.maxX), String(box.minY), url, layer]);
    const gl = await geo(layer);
    expect(gl.size).toEqual([(limits.maxX - limits.minX + 1) * 256, (limits.maxY - limits.minY + 1) * 256]);
    const c = compare(opaqueWhereNonZero(await png(layer)), opaqueWhereNonZero(await mosaic(z, limits)));
    expect(c.compared).toBeGreaterThan(100_000);
    expect(c.maskMismatch).toBe(0);
    expect(c.identical).toBe(1);
  });
});
