// The management API over HTTP, against `node dist/main.js`: the reference scenario of DESIGN 1 with
// every status transition, then the errors, pagination and the OpenAPI description.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM, lonLatToMercator } from '../../src/geo/tms.js';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { craftTiff } from '../helpers/tiff.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');

/** XYZ tile containing a lon/lat point. */
function tileAt(z: number, lon: number, lat: number): string {
  const [x, y] = lonLatToMercator(lon, lat);
  const size = PM.levels[z].resolution * 256;
  return `${z}/${Math.floor((x - PM.originX) / size)}/${Math.floor((PM.originY - y) / size)}`;
}

const NORTH_TILE = tileAt(7, 2.3, 49.5); // Paris basin: north delivery only
const SOUTH_TILE = tileAt(7, 2.0, 43.3); // Languedoc: south delivery only

const data = tempDir('tuile-api-');
let t: TuileProcess;
let api: Api;
const ids: Record<string, string> = {};

beforeAll(async () => {
  t = await startTuile(data.path, { TUILE_UPLOAD_MAX_BYTES: '1500000' });
  api = new Api(t.base);
  await api.init();
});

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

async function tile(path: string): Promise<{ status: number; etag: string | null; bytes: Buffer }> {
  const r = await fetch(`${t.base}/tiles/demo/${path}.png`);
  return { status: r.status, etag: r.headers.get('etag'), bytes: Buffer.from(await r.arrayBuffer()) };
}

describe('the reference scenario', () => {
  it('starts with a default datastore and an open WMTS-TMS endpoint whose urls give WMTS and TMS', async () => {
    const d = await api.call('GET', api.d);
    expect(d.status).toBe(200);
    const e = d.body.endpoints[0].endpoint;
    expect(e.type).toBe('WMTS-TMS');
    expect(e.open).toBe(true);
    expect(e.urls).toEqual([
      { type: 'WMTS', url: `${t.base}/wmts` },
      { type: 'TMS', url: `${t.base}/tms/1.0.0` },
    ]);
    ids.endpoint = e._id;
  });

  it('1-2. upload north: OPEN, files pushed (multipart and raw), CHECKING, CLOSED with passed checks', async () => {
    const u = await api.call('POST', `${api.d}/uploads`, { name: 'north', description: 'north delivery', type: 'RASTER', srs: 'EPSG:2154' });
    expect(u.status).toBe(201);
    expect(u.body.status).toBe('OPEN');
    const id = u.body._id;
    const form = new FormData();
    form.append('file', new Blob([readFileSync(NORTH)]), 'north.tif');
    const push = await api.call('POST', `${api.d}/uploads/${id}/data?path=data/north.tif`, form);
    expect(push.status).toBe(200);
    expect(push.body).toEqual({ path: 'data/north.tif', size: readFileSync(NORTH).length });
    // a raw body works too, and replaces nothing else
    const raw = await api.call('POST', `${api.d}/uploads/${id}/data?path=extra/readme.txt`, new TextEncoder().encode('hello'), { 'Content-Type': 'application/octet-stream' });
    expect(raw.status).toBe(200);
    const tree = await api.call('GET', `${api.d}/uploads/${id}/tree`);
    expect(tree.body).toEqual([
      { name: 'data', type: 'DIRECTORY', children: [{ name: 'north.tif', type: 'FILE', size: readFileSync(NORTH).length }] },
      { name: 'extra', type: 'DIRECTORY', children: [{ name: 'readme.txt', type: 'FILE', size: 5 }] },
    ]);
    const close = await api.call('POST', `${api.d}/uploads/${id}/close`);
    expect(close.body.status).toBe('CHECKING');
    const { entity, seen } = await api.until(`${api.d}/uploads/${id}`, ['CLOSED', 'UNSTABLE']);
    expect(entity.status).toBe('CLOSED');
    expect(seen[seen.length - 1]).toBe('CLOSED');
    expect(entity.size).toBe(readFileSync(NORTH).length + 5);
    const checks = await api.call('GET', `${api.d}/uploads/${id}/checks`);
    expect(checks.body.failed).toEqual([]);
    expect(checks.body.passed).toHaveLength(1);
    const logs = await api.call('GET', `${api.d}/checks/executions/${checks.body.passed[0]._id}/logs`);
    expect(logs.body.join('\n')).toMatch(/north\.tif: \d+x\d+ px/);
    // closed: no more files
    const late = await api.call('POST', `${api.d}/uploads/${id}/data?path=data/late.tif`, new Uint8Array(10));
    expect(late.status).toBe(409);
    ids.north_upload = id;
  });

  it('3. execution: CREATED with its stored data CREATED, WAITING, PROGRESS, SUCCESS; stored data GENERATED', async () => {
    const e = await api.execute({ upload: [ids.north_upload] }, { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: 7 }, 'north');
    expect(e.status).toBe('CREATED');
    const sdId = e.output.stored_data._id;
    const { entity, seen } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE']);
    expect(entity.status).toBe('SUCCESS');
    expect(seen.every((s) => ['WAITING', 'PROGRESS', 'SUCCESS'].includes(s))).toBe(true);
    expect(entity.progress).toBe(100);
    expect(entity.start <= entity.finish).toBe(true);
    expect(entity.inputs.upload[0]).toMatchObject({ _id: ids.north_upload, name: 'north' });
    const logs = await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`);
    expect(logs.body.some((l: string) => /SUCCESS: \d+ tiles/.test(l))).toBe(true);
    const sd = (await api.call('GET', `${api.d}/stored_data/${sdId}`)).body;
    expect(sd).toMatchObject({
      status: 'GENERATED',
      type: 'ROK4-PYRAMID-RASTER',
      type_infos: { tms: 'PM', levels: ['0', '1', '2', '3', '4', '5', '6', '7'], compression: 'PNG', channels_format: 'UINT8' },
    });
    expect(sd.size).toBeGreaterThan(10_000);
    expect(sd.extent.type).toBe('Polygon');
    const [[w, s], , [e2, n]] = sd.extent.coordinates[0];
    expect(w).toBeCloseTo(-5.8, 0);
    expect(e2).toBeGreaterThan(9);
    expect(s).toBeGreaterThan(45);
    expect(n).toBeGreaterThan(50);
    ids.north = sdId;
  });

  it('4-5. configuration UNPUBLISHED, offering PUBLISHING then PUBLISHED with its urls; the layer serves', async () => {
    const conf = await api.call('POST', `${api.d}/configurations`, api.configuration('demo', ids.north, '7'));
    expect(conf.status).toBe(201);
    expect(conf.body.status).toBe('UNPUBLISHED');
    ids.configuration = conf.body._id;
    const o = await api.call('POST', `${api.d}/configurations/${ids.configuration}/offerings`, { endpoint: ids.endpoint, open: true });
    expect(o.status).toBe(201);
    expect(o.body.status).toBe('PUBLISHING');
    ids.offering = o.body._id;
    const { entity } = await api.until(`${api.d}/offerings/${ids.offering}`, ['PUBLISHED', 'UNSTABLE']);
    expect(entity.status).toBe('PUBLISHED');
    expect(entity.layer_name).toBe('demo');
    expect(entity.urls).toContainEqual({ type: 'WMTS', url: `${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities` });
    expect(entity.urls).toContainEqual({ type: 'TMS', url: `${t.base}/tms/1.0.0/demo` });
    expect((await api.call('GET', `${api.d}/configurations/${ids.configuration}`)).body.status).toBe('PUBLISHED');
    const caps = await (await fetch(`${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`)).text();
    expect(caps).toContain('<ows:Identifier>demo</ows:Identifier>');
    expect(caps).toContain('<ows:Title>Layer demo</ows:Title>');
    const nt = await tile(NORTH_TILE);
    expect(nt.status).toBe(200);
    ids.northEtag = nt.etag!;
    // the south is outside the north's limits
    expect((await tile(SOUTH_TILE)).status).toBe(404);
  });

  it('6. a chained execution inherits its parameters; dependencies on both sides; the parent cannot be deleted', async () => {
    const south = await api.deliver([{ path: 'data/south.tif', file: SOUTH }], 'EPSG:2154', 'south');
    expect(south.status).toBe('CLOSED');
    const e = await api.execute({ upload: [south._id], stored_data: [ids.north] }, {}, 'north+south');
    const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE']);
    expect(entity.status).toBe('SUCCESS');
    expect(entity.parameters).toMatchObject({ compression: 'png', interpolation: 'bicubic' });
    ids.whole = entity.output.stored_data._id;
    const sd = (await api.call('GET', `${api.d}/stored_data/${ids.whole}`)).body;
    expect(sd.type_infos).toMatchObject({ compression: 'PNG', levels: ['0', '1', '2', '3', '4', '5', '6', '7'] });
    const deps = await api.call('GET', `${api.d}/stored_data/${ids.whole}/dependencies`);
    expect(deps.body).toEqual({ used_by: [], use: [{ _id: ids.north, name: 'north', type: 'ROK4-PYRAMID-RASTER', status: 'GENERATED' }] });
    const parentDeps = await api.call('GET', `${api.d}/stored_data/${ids.north}/dependencies`);
    expect(parentDeps.body.used_by.map((x: any) => x._id)).toEqual([ids.whole]);
    const del = await api.call('DELETE', `${api.d}/stored_data/${ids.north}`);
    expect(del.status).toBe(409);
    expect(del.body.error_description.join(' ')).toContain(ids.whole);
  });

  it('7. PUT configuration with the new stored data: nothing served changes', async () => {
    const r = await api.call('PUT', `${api.d}/configurations/${ids.configuration}`, api.configuration('demo', ids.whole, '7'));
    expect(r.status).toBe(200);
    expect(r.body.type_infos.used_data[0].stored_data).toBe(ids.whole);
    expect((await tile(SOUTH_TILE)).status).toBe(404);
    expect((await tile(NORTH_TILE)).etag).toBe(ids.northEtag);
  });

  it('8. PUT offering: MODIFYING then PUBLISHED, same id and layer_name, now serving the whole', async () => {
    const r = await api.call('PUT', `${api.d}/offerings/${ids.offering}`);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('MODIFYING');
    const { entity } = await api.until(`${api.d}/offerings/${ids.offering}`, ['PUBLISHED', 'UNSTABLE']);
    expect(entity).toMatchObject({ _id: ids.offering, layer_name: 'demo', status: 'PUBLISHED' });
    expect((await api.call('GET', `${api.d}/configurations/${ids.configuration}`)).body.status).toBe('PUBLISHED');
    const st = await tile(SOUTH_TILE);
    expect(st.status).toBe(200);
    // the north tile is read through to the north pyramid: the same bytes, the same ETag
    expect((await tile(NORTH_TILE)).etag).toBe(ids.northEtag);
    const list = await api.call('GET', `${api.d}/offerings?stored_data=${ids.whole}`);
    expect(list.body.map((o: any) => o._id)).toEqual([ids.offering]);
  });

  it('the parent can be deleted once nothing uses it, and its folder goes', async () => {
    // the chain still uses the north
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(409);
    // a stored data nobody uses goes, with its folder
    const lone = await api.execute({ upload: [ids.north_upload] }, { compression: 'png', bottom: 5 }, 'lone');
    await api.until(`${api.d}/processings/executions/${lone._id}`, ['SUCCESS']);
    const id = lone.output.stored_data._id;
    expect(existsSync(join(data.path, 'pyramids', id, 'pyramid.json'))).toBe(true);
    expect((await api.call('DELETE', `${api.d}/stored_data/${id}`)).status).toBe(204);
    expect(existsSync(join(data.path, 'pyramids', id))).toBe(false);
    expect((await api.call('GET', `${api.d}/stored_data/${id}`)).status).toBe(404);
  });
});

describe('injection', () => {
  it('an execution whose output is an existing stored data updates it in place: MODIFYING, GENERATED, served at once', async () => {
    const e1 = await api.execute({ upload: [ids.north_upload] }, { compression: 'png', bottom: 7 }, 'injected');
    const sdId = (await api.until(`${api.d}/processings/executions/${e1._id}`, ['SUCCESS'])).entity.output.stored_data._id;
    const conf = (await api.call('POST', `${api.d}/configurations`, api.configuration('inj', sdId, '7'))).body;
    const off = (await api.call('POST', `${api.d}/configurations/${conf._id}/offerings`, { endpoint: ids.endpoint })).body;
    await api.until(`${api.d}/offerings/${off._id}`, ['PUBLISHED']);
    const get = (path: string) => fetch(`${t.base}/tiles/inj/${path}.png`);
    expect((await get(SOUTH_TILE)).status).toBe(404);
    const northEtag = (await get(NORTH_TILE)).headers.get('etag');

    const south = (await api.call('GET', `${api.d}/uploads?name=south`)).body[0];
    const r = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [south._id] },
      output: { stored_data: { _id: sdId } },
      parameters: {},
    });
    expect(r.status).toBe(201);
    expect(r.body.output.stored_data._id).toBe(sdId);
    await api.call('POST', `${api.d}/processings/executions/${r.body._id}/launch`);
    const seen = (await api.until(`${api.d}/stored_data/${sdId}`, ['MODIFYING'], 60_000)).seen;
    expect(seen).toContain('MODIFYING');
    expect((await api.until(`${api.d}/processings/executions/${r.body._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
    const sd = (await api.until(`${api.d}/stored_data/${sdId}`, ['GENERATED'])).entity;
    expect(sd._id).toBe(sdId);
    expect(sd.extent.coordinates[0][0][1]).toBeLessThan(42); // the extent now reaches the south
    // no synchronisation: the offering serves its stored data, which changed
    expect((await get(SOUTH_TILE)).status).toBe(200);
    expect((await get(NORTH_TILE)).headers.get('etag')).toBe(northEtag);
    expect((await api.call('GET', `${api.d}/offerings/${off._id}`)).body.status).toBe('PUBLISHED');
    // an injection chains on nothing else, and not into a stored data that is being made
    const bad = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [south._id], stored_data: [ids.north] },
      output: { stored_data: { _id: sdId } },
      parameters: {},
    });
    expect(bad.status).toBe(400);
    // deleting it removes every generation
    await api.call('DELETE', `${api.d}/offerings/${off._id}`);
    await api.call('DELETE', `${api.d}/configurations/${conf._id}`);
    expect((await api.call('DELETE', `${api.d}/stored_data/${sdId}`)).status).toBe(204);
    expect(readdirSync(join(data.path, 'pyramids')).filter((n) => n.startsWith(sdId))).toEqual([]);
  });
});

describe('errors', () => {
  it('401 without or with a wrong token, in JSON', async () => {
    for (const auth of [undefined, 'Bearer nope', 'Basic abc']) {
      const r = await fetch(`${t.base}${api.d}/uploads`, { headers: auth ? { Authorization: auth } : {} });
      expect(r.status).toBe(401);
      expect(await r.json()).toMatchObject({ error: 'unauthorized', error_description: [expect.any(String)] });
    }
  });

  it('404 for unknown ids of every resource', async () => {
    const zero = '00000000-0000-4000-8000-000000000000';
    for (const path of ['uploads', 'stored_data', 'configurations', 'offerings', 'processings/executions', 'processings']) {
      const r = await api.call('GET', `${api.d}/${path}/${zero}`);
      expect(r.status, path).toBe(404);
      expect(r.body.error_description[0]).toContain(zero);
    }
    expect((await api.call('GET', `/api/datastores/${zero}/uploads`)).status).toBe(404);
  });

  it('400 for invalid bodies, with every problem described', async () => {
    const bad = await api.call('POST', `${api.d}/uploads`, { name: '', type: 'VECTOR', srs: 'EPSG:2154', color: 'red' });
    expect(bad.status).toBe(400);
    expect(bad.body.error_description.length).toBeGreaterThanOrEqual(3);
    const notJson = await api.call('POST', `${api.d}/configurations`, '{"type":', { 'Content-Type': 'application/json' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error_description[0]).toMatch(/not valid JSON/);
    const badSrs = await api.call('POST', `${api.d}/uploads`, { name: 'x', type: 'RASTER', srs: 'EPSG:999999' });
    expect(badSrs.status).toBe(400);
    const missingLevel = await api.call('POST', `${api.d}/configurations`, api.configuration('other', ids.whole, '9'));
    expect(missingLevel.status).toBe(400);
    expect(missingLevel.body.error_description[0]).toMatch(/level 9 is not in stored data/);
    const badName = await api.call('POST', `${api.d}/configurations`, api.configuration('bad name/..', ids.whole, '7'));
    expect(badName.status).toBe(400);
    const badBbox = await api.call('POST', `${api.d}/configurations`, {
      ...api.configuration('other', ids.whole, '7'),
      type_infos: { ...api.configuration('other', ids.whole, '7').type_infos, bbox: { west: 10, east: 5, south: 40, north: 50 } },
    });
    expect(badBbox.status).toBe(400);
    const badParams = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [ids.north_upload] },
      output: { stored_data: { name: 'x' } },
      parameters: { compression: 'gif', bottom: 40 },
    });
    expect(badParams.status).toBe(400);
    expect(badParams.body.error_description).toHaveLength(2);
  });

  it('409 for a taken layer_name, a duplicate offering, a launched execution launched again, a used configuration', async () => {
    const taken = await api.call('POST', `${api.d}/configurations`, api.configuration('demo', ids.whole, '7'));
    expect(taken.status).toBe(409);
    const dup = await api.call('POST', `${api.d}/configurations/${ids.configuration}/offerings`, { endpoint: ids.endpoint });
    expect(dup.status).toBe(409);
    const e = (await api.call('GET', `${api.d}/processings/executions?status=SUCCESS`)).body[0];
    expect((await api.call('POST', `${api.d}/processings/executions/${e._id}/launch`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/configurations/${ids.configuration}`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.whole}`)).status).toBe(409);
  });

  it('an upload in another CRS than declared is UNSTABLE with the check log saying why', async () => {
    const u = await api.deliver([{ path: 'north.tif', file: NORTH }], 'EPSG:4326', 'wrong srs');
    expect(u.status).toBe('UNSTABLE');
    const checks = (await api.call('GET', `${api.d}/uploads/${u._id}/checks`)).body;
    expect(checks.failed).toHaveLength(1);
    const logs = (await api.call('GET', `${api.d}/checks/executions/${checks.failed[0]._id}/logs`)).body.join('\n');
    expect(logs).toMatch(/north\.tif: its CRS .* is not the declared EPSG:4326/);
    // UNSTABLE uploads are no input
    const r = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [u._id] },
      output: { stored_data: { name: 'x' } },
      parameters: {},
    });
    expect(r.status).toBe(400);
    // opened again, fixed, closed: CLOSED
    expect((await api.call('POST', `${api.d}/uploads/${u._id}/open`)).body.status).toBe('OPEN');
    expect((await api.call('PATCH', `${api.d}/uploads/${u._id}`, { description: 'fixed' })).body.description).toBe('fixed');
  });

  it('refuses hostile rasters at the check and absurd levels at the execution, with the reason', async () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['absurd dimensions', craftTiff({ width: 200_000, height: 200_000 }), /200000x200000 pixels exceeds the limit/],
      ['one huge strip (a decompression bomb)', craftTiff({ width: 40_000, height: 40_000 }), /blocks decode to 1526 MiB each, over the limit/],
    ];
    for (const [label, bytes, why] of cases) {
      const u = (await api.call('POST', `${api.d}/uploads`, { name: label, type: 'RASTER', srs: 'EPSG:4326' })).body;
      expect((await api.call('POST', `${api.d}/uploads/${u._id}/data?path=x.tif`, bytes, { 'Content-Type': 'application/octet-stream' })).status).toBe(200);
      await api.call('POST', `${api.d}/uploads/${u._id}/close`);
      const done = (await api.until(`${api.d}/uploads/${u._id}`, ['CLOSED', 'UNSTABLE'])).entity;
      expect(done.status, label).toBe('UNSTABLE');
      const failed = (await api.call('GET', `${api.d}/uploads/${u._id}/checks`)).body.failed[0];
      const logs = (await api.call('GET', `${api.d}/checks/executions/${failed._id}/logs`)).body.join('\n');
      expect(logs, label).toMatch(why);
    }
    const deep = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [ids.north_upload] },
      output: { stored_data: { name: 'too deep' } },
      parameters: { bottom: 21 },
    });
    expect(deep.status).toBe(400);
    expect(deep.body.error_description[0]).toMatch(/level 21 makes \d+ tiles, over the limit/);
  });

  it('413 for a file over the limit, 400 for paths out of the upload; nothing is left of either', async () => {
    const u = (await api.call('POST', `${api.d}/uploads`, { name: 'big', type: 'RASTER', srs: 'EPSG:4326' })).body;
    const big = new Uint8Array(1_600_000);
    const r = await api.call('POST', `${api.d}/uploads/${u._id}/data?path=big.tif`, big, { 'Content-Type': 'application/octet-stream' });
    expect(r.status).toBe(413);
    const form = new FormData();
    form.append('file', new Blob([big]), 'big.tif');
    expect((await api.call('POST', `${api.d}/uploads/${u._id}/data?path=big2.tif`, form)).status).toBe(413);
    for (const p of ['../escape.tif', '/etc/passwd', 'a/../../b.tif', 'a\\b.tif', './x.tif']) {
      const x = await api.call('POST', `${api.d}/uploads/${u._id}/data?path=${encodeURIComponent(p)}`, new Uint8Array(4));
      expect(x.status, p).toBe(400);
    }
    expect((await api.call('GET', `${api.d}/uploads/${u._id}/tree`)).body).toEqual([]);
    expect(readdirSync(data.path).includes('escape.tif')).toBe(false);
    expect((await api.call('DELETE', `${api.d}/uploads/${u._id}`)).status).toBe(204);
    expect(existsSync(join(data.path, 'uploads', u._id))).toBe(false);
  });
});

describe('lists', () => {
  it('pages with Content-Range, filters, and refuses unbounded pages', async () => {
    const all = await api.call('GET', `${api.d}/uploads?limit=100`);
    const total = all.body.length;
    expect(total).toBeGreaterThanOrEqual(3);
    expect(all.headers.get('content-range')).toBe(`0-${total - 1}/${total}`);
    const p2 = await api.call('GET', `${api.d}/uploads?limit=2&page=2`);
    expect(p2.headers.get("content-range")).toBe(`2-${Math.min(3, total - 1)}/${total}`);
    expect(p2.body.map((u: any) => u._id)).toEqual(all.body.slice(2, 4).map((u: any) => u._id));
    const beyond = await api.call('GET', `${api.d}/uploads?limit=2&page=1000`);
    expect(beyond.body).toEqual([]);
    expect(beyond.headers.get('content-range')).toBe(`*/${total}`);
    for (const q of ['limit=0', 'limit=1000', 'page=0', 'limit=abc', 'status=NOPE']) {
      expect((await api.call('GET', `${api.d}/uploads?${q}`)).status, q).toBe(400);
    }
    const closed = await api.call('GET', `${api.d}/uploads?status=CLOSED`);
    expect(closed.body.every((u: any) => u.status === 'CLOSED')).toBe(true);
    const dflt = await api.call('GET', `${api.d}/processings/executions`);
    expect(dflt.body.length).toBeLessThanOrEqual(10);
    const offerings = await api.call('GET', `${api.d}/offerings?status=PUBLISHED&endpoint=${ids.endpoint}&configuration=${ids.configuration}`);
    expect(offerings.body).toHaveLength(1);
    expect((await api.call('GET', `${api.d}/offerings?status=UNSTABLE`)).body).toEqual([]);
  });

  it('serves an OpenAPI 3.1 description of every route', async () => {
    const r = await fetch(`${t.base}/api/openapi.json`);
    expect(r.status).toBe(200);
    const doc = await r.json();
    expect(doc.openapi).toBe('3.1.0');
    for (const p of [
      '/api/datastores/{datastore}/uploads/{upload}/close',
      '/api/datastores/{datastore}/processings/executions/{execution}/launch',
      '/api/datastores/{datastore}/stored_data/{stored_data}/dependencies',
      '/api/datastores/{datastore}/configurations/{configuration}/offerings',
      '/api/datastores/{datastore}/offerings/{offering}',
    ]) {
      expect(doc.paths[p], p).toBeDefined();
    }
    expect(doc.paths['/api/datastores/{datastore}/offerings/{offering}'].put).toBeDefined();
    const body = doc.paths['/api/datastores/{datastore}/configurations'].post.requestBody.content['application/json'].schema;
    expect(body.required).toContain('layer_name');
  });

  it('describes exactly the routes served: each path answers 405 for the methods it does not list, and only for those', async () => {
    const doc = await (await fetch(`${t.base}/api/openapi.json`)).json();
    expect(doc.info.title).toBeTruthy();
    expect(doc.components.securitySchemes.admin).toEqual({ type: 'http', scheme: 'bearer' });
    const paths = Object.entries(doc.paths as Record<string, Record<string, any>>);
    expect(paths.length).toBeGreaterThan(30);
    const other = '00000000-0000-4000-8000-000000000000';
    for (const [path, ops] of paths) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.summary, `${method} ${path}`).toBeTruthy();
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(expect.arrayContaining(['400', '401', '404']));
        // every {name} of the path is a declared, required path parameter
        const declared = (op.parameters ?? []).filter((x: any) => x.in === 'path').map((x: any) => `${x.name}:${x.required}`);
        expect(declared.sort(), `${method} ${path}`).toEqual([...path.matchAll(/\{(\w+)\}/g)].map((m) => `${m[1]}:true`).sort());
        const json = op.requestBody?.content?.['application/json']?.schema;
        if (json) expect(json.type === 'object' && Object.keys(json.properties ?? {}).length > 0, `${method} ${path}`).toBe(true);
      }
      const url = `${t.base}${path.replace(/\{\w+\}/g, other)}`;
      for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
        // upper case: fetch leaves a lower-case 'patch' as it is, which is no HTTP method
        const r = await fetch(url, { method: method.toUpperCase(), headers: { Authorization: `Bearer ${api.token}`, 'Content-Type': 'application/json' }, body: method === 'get' ? undefined : '{}' });
        expect(r.status === 405, `${method} ${path}: ${r.status}`).toBe(!(method in ops));
        if (r.status === 405) expect(r.headers.get('allow')!.split(', ').filter((m) => m !== 'HEAD')).toEqual(Object.keys(ops).map((m) => m.toUpperCase()).sort());
      }
    }
    // every body the API validates is in the description: the configuration's, the execution's, the upload's...
    const posts = paths.flatMap(([path, ops]) => (ops.post?.requestBody ? [path] : []));
    expect(posts).toEqual(expect.arrayContaining(['/api/datastores/{datastore}/uploads', '/api/datastores/{datastore}/processings/executions', '/api/users/me/keys']));
    expect(doc.paths['/api/datastores/{datastore}/uploads/{upload}/data'].post.requestBody.content['multipart/form-data']).toBeDefined();
  });

  it('unpublishing: the layer goes, the configuration returns to UNPUBLISHED', async () => {
    expect((await api.call('DELETE', `${api.d}/offerings/${ids.offering}`)).status).toBe(204);
    expect((await api.call('GET', `${api.d}/offerings/${ids.offering}`)).status).toBe(404);
    expect((await api.call('GET', `${api.d}/configurations/${ids.configuration}`)).body.status).toBe('UNPUBLISHED');
    expect((await tile(NORTH_TILE)).status).toBe(404);
    const caps = await (await fetch(`${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`)).text();
    expect(caps).not.toContain('<ows:Identifier>demo</ows:Identifier>');
  });

  it('once its users are gone, a parent can be deleted', async () => {
    // the configuration, then the chained pyramid, use the north
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/configurations/${ids.configuration}`)).status).toBe(204);
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.whole}`)).status).toBe(204);
    expect((await api.call('GET', `${api.d}/stored_data/${ids.north}/dependencies`)).body).toEqual({ used_by: [], use: [] });
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(204);
    expect(existsSync(join(data.path, 'pyramids', ids.north))).toBe(false);
  });
});

describe('abort', () => {
  it('a running execution aborted: ABORTED, its stored data UNSTABLE, nothing left; the queue goes on', async () => {
    const big = await api.deliver([{ path: 'miriam.tif', file: fixture('modis_miriam_4326.tif') }], 'EPSG:4326', 'miriam');
    expect(big.status).toBe('CLOSED');
    const e = await api.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 12 }, 'to abort');
    await api.until(`${api.d}/processings/executions/${e._id}`, ['PROGRESS']);
    // a second one waits behind it, and is aborted while WAITING
    const waiting = await api.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 4 }, 'waiting');
    expect((await api.call('GET', `${api.d}/processings/executions/${waiting._id}`)).body.status).toBe('WAITING');
    expect((await api.call('POST', `${api.d}/processings/executions/${waiting._id}/abort`)).body.status).toBe('ABORTED');
    const r = await api.call('POST', `${api.d}/processings/executions/${e._id}/abort`);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ABORTED');
    const done = (await api.until(`${api.d}/stored_data/${e.output.stored_data._id}`, ['UNSTABLE'], 60_000)).entity;
    expect(done.status).toBe('UNSTABLE');
    const x = (await api.call('GET', `${api.d}/processings/executions/${e._id}`)).body;
    expect(x.status).toBe('ABORTED');
    expect(x.finish).toBeDefined();
    const logs = (await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`)).body as string[];
    expect(logs[logs.length - 1]).toMatch(/ABORTED: stopped on request; nothing was kept/);
    expect((await api.call('POST', `${api.d}/processings/executions/${e._id}/abort`)).status).toBe(409);
    expect(readdirSync(join(data.path, 'pyramids')).filter((n) => n.startsWith(e.output.stored_data._id) || n.startsWith('.'))).toEqual([]);
    // the queue still runs
    const next = await api.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 3 }, 'after');
    expect((await api.until(`${api.d}/processings/executions/${next._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
  });
});
