// Pyramid fusion through the management API, against `node dist/main.js`: a layer served from a chained
// pyramid is flattened by a `pyramid-fusion` execution, its configuration repointed and its offering
// synchronised, the chain's pyramids deleted, and every tile still answers the same bytes; the fused archive
// is read whole by the `pmtiles` package. Also several pyramids fused, and the refusals of the processing.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PMTiles } from 'pmtiles';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM, lonLatToMercator, tileLimitsForBounds } from '../../src/geo/tms.js';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { NodeFileSource } from '../helpers/pmtiles.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');
const LAYER = 'flattened';
const BOTTOM = 7;
const PNG = { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: BOTTOM };

const data = tempDir('tuile-fusion-');
let t: TuileProcess;
let api: Api;
let fusion: string;
const ids: Record<string, string> = {};

/** Waits for an execution; its stored data id once SUCCESS, else an error with its logs. */
async function built(e: any): Promise<string> {
  const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE', 'ABORTED']);
  if (entity.status !== 'SUCCESS') throw new Error(`execution ${e._id} ${entity.status}:\n${entity.logs ?? ''}`);
  return e.output.stored_data._id;
}

function fuse(stored_data: string[], parameters: Record<string, unknown> = {}, name = 'fused') {
  return api.call('POST', `${api.d}/processings/executions`, { processing: fusion, inputs: { stored_data }, output: { stored_data: { name, storage_tags: ['PYRAMIDE'] } }, parameters });
}

async function launched(e: { status: number; body: any }): Promise<string> {
  expect(e.status, JSON.stringify(e.body)).toBe(201);
  expect((await api.call('POST', `${api.d}/processings/executions/${e.body._id}/launch`)).status).toBe(200);
  return built(e.body);
}

/** Every tile address of levels 0..BOTTOM over a lon/lat box, and one beyond it at each level. */
function addresses(w: number, s: number, e: number, n: number): { z: number; x: number; y: number }[] {
  const [minX, minY] = lonLatToMercator(w, s);
  const [maxX, maxY] = lonLatToMercator(e, n);
  const out: { z: number; x: number; y: number }[] = [];
  for (let z = 0; z <= BOTTOM; z++) {
    const l = tileLimitsForBounds(PM, z, { minX, minY, maxX, maxY })!;
    for (let y = l.minY; y <= l.maxY; y++) for (let x = l.minX; x <= l.maxX; x++) out.push({ z, x, y });
  }
  return out;
}

/** What the layer answers for each tile: status and a hash of the bytes. */
async function served(tiles: { z: number; x: number; y: number }[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const { z, x, y } of tiles) {
    const r = await fetch(`${t.base}/tiles/${LAYER}/${z}/${x}/${y}.png`);
    const b = Buffer.from(await r.arrayBuffer());
    out.set(`${z}/${x}/${y}`, `${r.status} ${createHash('sha1').update(b).digest('hex')}`);
  }
  return out;
}

beforeAll(async () => {
  t = await startTuile(data.path, { TUILE_WORKERS: '2' });
  api = new Api(t.base);
  await api.init();
  const list = (await api.call('GET', `${api.d}/processings`)).body as any[];
  fusion = list.find((p) => p.name === 'Fusion de pyramides raster')._id;
  const [n, s] = await Promise.all([api.deliver([{ path: 'north.tif', file: NORTH }], 'EPSG:2154', 'north'), api.deliver([{ path: 'south.tif', file: SOUTH }], 'EPSG:2154', 'south')]);
  ids.northUpload = n._id;
  ids.north = await built(await api.execute({ upload: [n._id] }, PNG, 'north'));
  ids.chained = await built(await api.execute({ upload: [s._id], stored_data: [ids.north] }, {}, 'north+south'));
  ids.south = await built(await api.execute({ upload: [s._id] }, PNG, 'south'));
}, 300_000);

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

describe('pyramid-fusion', () => {
  it('is listed beside raster-to-pyramid with its parameters', async () => {
    const p = (await api.call('GET', `${api.d}/processings/${fusion}`)).body;
    expect(p.input_types).toEqual({ upload: [], stored_data: ['ROK4-PYRAMID-RASTER'] });
    expect(p.parameters.map((x: any) => x.name)).toEqual(['top', 'bottom', 'bbox', 'parallelization']);
  });

  it('flattens a served chain: repointed, synchronised, the chain deleted, every tile the same bytes', async () => {
    const layer = await api.publish(api.configuration(LAYER, ids.chained, String(BOTTOM)));
    const tiles = addresses(-6, 41, 10, 52);
    const before = await served(tiles);
    expect([...before.values()].filter((v) => v.startsWith('200')).length).toBeGreaterThan(40);
    expect([...before.values()].some((v) => v.startsWith('404'))).toBe(true);

    const flat = await launched(await fuse([ids.chained], { parallelization: 2 }, 'flat'));
    const sd = (await api.call('GET', `${api.d}/stored_data/${flat}`)).body;
    const chained = (await api.call('GET', `${api.d}/stored_data/${ids.chained}`)).body;
    expect(sd.status).toBe('GENERATED');
    expect(sd.type_infos).toEqual(chained.type_infos);
    expect(sd.extent).toEqual(chained.extent);
    expect((await api.call('GET', `${api.d}/stored_data/${flat}/dependencies`)).body).toEqual({ used_by: [], use: [] });

    await api.synchronise(layer, api.configuration(LAYER, flat, String(BOTTOM)));
    // the chain is no longer needed by anything: the update first, then the pyramid it was built on
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.chained}`)).status).toBe(204);
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(204);
    expect(existsSync(join(data.path, 'pyramids', ids.north))).toBe(false);

    const after = await served(tiles);
    for (const [k, v] of before) expect(after.get(k), k).toBe(v);

    // the archive alone, read whole by the pmtiles package: the tiles the layer served
    const source = new NodeFileSource(join(data.path, 'pyramids', flat, 'tiles.pmtiles'));
    try {
      const ref = new PMTiles(source);
      const h = await ref.getHeader();
      expect([h.minZoom, h.maxZoom]).toEqual([0, BOTTOM]);
      let found = 0;
      for (const { z, x, y } of tiles) {
        const got = await ref.getZxy(z, x, y);
        const want = before.get(`${z}/${x}/${y}`)!;
        if (!got) continue; // blank or outside: the server answers those itself
        found++;
        expect(`200 ${createHash('sha1').update(Buffer.from(got.data)).digest('hex')}`, `${z}/${x}/${y}`).toBe(want);
      }
      expect(found).toBe(h.numAddressedTiles);
    } finally {
      source.close();
    }
  });

  it('fuses several pyramids into one, later ones over earlier ones', async () => {
    const north = await built(await api.execute({ upload: [ids.northUpload] }, PNG, 'north again'));
    const both = await launched(await fuse([north, ids.south], {}, 'both'));
    const [b, n, s] = await Promise.all([both, north, ids.south].map(async (id) => (await api.call('GET', `${api.d}/stored_data/${id}`)).body));
    expect(b.type_infos.levels).toEqual(n.type_infos.levels);
    // the union of both extents
    expect(b.extent.coordinates[0][0][1]).toBeCloseTo(Math.min(n.extent.coordinates[0][0][1], s.extent.coordinates[0][0][1]), 9);
    expect(b.extent.coordinates[0][2][1]).toBeCloseTo(Math.max(n.extent.coordinates[0][2][1], s.extent.coordinates[0][2][1]), 9);
    const e = (await api.call('GET', `${api.d}/processings/executions?status=SUCCESS&limit=100`)).body.find((x: any) => x.output.stored_data._id === both);
    expect(e.processing.name).toBe('Fusion de pyramides raster');
    expect((await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`)).body.join('\n')).toMatch(/PROGRESS: fusing 2 pyramid\(s\)/);
  });

  it('refuses what it cannot fuse: 400 naming the field', async () => {
    const jpg = await built(await api.execute({ upload: [(await api.deliver([{ path: 's.tif', file: SOUTH }], 'EPSG:2154', 'sj'))._id] }, { ...PNG, compression: 'jpg' }, 'south jpg'));
    const cases: [unknown[], Record<string, unknown>, RegExp][] = [
      [[ids.south, jpg], {}, /^inputs\.stored_data\.1: .* is JPG, .* PNG: fused pyramids share one format/],
      [[], {}, /^inputs\.stored_data: pyramid-fusion needs at least one pyramid/],
      [[ids.south, ids.south], {}, /^inputs\.stored_data: a pyramid is given twice/],
      [['6f1d0c7e-0000-4000-8000-000000000000'], {}, /^inputs\.stored_data\.0: no stored data 6f1d0c7e/],
      [[ids.south], { bottom: 9 }, /^parameters\.bottom: level 9 is below the pyramids' levels \(0-7\)/],
      [[ids.south], { compression: 'png' }, /^parameters\.compression: not a parameter of pyramid-fusion/],
      [[ids.south], { bbox: { west: 5, south: 40, east: 2, north: 45 } }, /^parameters\.bbox: west must be less than east/],
      [[ids.south], { parallelization: 0 }, /^parameters\.parallelization/],
    ];
    for (const [inputs, parameters, message] of cases) {
      const r = await fuse(inputs as string[], parameters);
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error_description[0]).toMatch(message);
    }
    const withUpload = await api.call('POST', `${api.d}/processings/executions`, {
      processing: fusion,
      inputs: { upload: [(await api.call('GET', `${api.d}/uploads`)).body[0]._id], stored_data: [ids.south] },
      output: { stored_data: { name: 'x' } },
    });
    expect(withUpload.status).toBe(400);
    expect(withUpload.body.error_description[0]).toMatch(/^inputs\.upload: pyramid-fusion fuses pyramids/);
    const bbox = await api.call('POST', `${api.d}/processings/executions`, {
      processing: (await api.call('GET', `${api.d}/processings`)).body[0]._id,
      inputs: { upload: [(await api.call('GET', `${api.d}/uploads`)).body[0]._id] },
      output: { stored_data: { name: 'x' } },
      parameters: { bbox: { west: 1, south: 40, east: 2, north: 45 } },
    });
    expect(bbox.status).toBe(400);
    expect(bbox.body.error_description[0]).toMatch(/^parameters\.bbox: not a parameter of raster-to-pyramid/);
  });

  it('cuts levels and bbox as asked', async () => {
    const cut = await launched(await fuse([ids.south], { top: 2, bottom: 5, bbox: { west: 0, south: 42, east: 4, north: 44 } }, 'cut'));
    const sd = (await api.call('GET', `${api.d}/stored_data/${cut}`)).body;
    expect(sd.type_infos.levels).toEqual(['2', '3', '4', '5']);
    const [[w, s], , [e, n]] = sd.extent.coordinates[0];
    expect(w).toBeGreaterThanOrEqual(0 - 1e-9);
    expect(e).toBeLessThanOrEqual(4 + 1e-9);
    expect(s).toBeGreaterThanOrEqual(42 - 1e-9);
    expect(n).toBeLessThanOrEqual(44 + 1e-9);
    const e2 = (await api.call('GET', `${api.d}/processings/executions?status=SUCCESS&limit=100`)).body.find((x: any) => x.output.stored_data._id === cut);
    expect(e2.parameters).toMatchObject({ top: 2, bottom: 5, bbox: { west: 0, south: 42, east: 4, north: 44 } });
  });
});
