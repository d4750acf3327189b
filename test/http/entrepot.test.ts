// The Entrepôt's documentation, replayed word for word against `node dist/main.js`: the request bodies of
// the "au fur et à mesure" raster update tutorial (test/fixtures/entrepot/, verbatim, see its README) sent
// unedited but for the ids and the bottom level the data dictates, from the upload to the synchronisation;
// then what the offerings and permissions guides state, one statement at a time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });

/** A body of the documentation with its placeholders replaced by ids (and nothing else changed). */
function body(name: string, ids: Record<string, string>, bottom?: string): any {
  let text = readFileSync(join(FIXTURES, 'entrepot', name), 'utf8');
  for (const [placeholder, id] of Object.entries(ids)) text = text.split(placeholder).join(id);
  const b = JSON.parse(text);
  const strings = (v: unknown): string[] => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
  const left = strings(b).find((v) => /[{}]/.test(v));
  if (left) throw new Error(`${name}: placeholder ${left} not substituted`);
  if (bottom !== undefined) for (const u of b.type_infos.used_data) u.bottom_level = bottom;
  return b;
}

/** Whether a tile URL answers data: 200 with a tile of the pyramid, not the blank tile nor a 404 outside the layer. */
async function hasData(url: string): Promise<boolean> {
  const r = await fetch(url);
  await r.arrayBuffer();
  return r.status === 200 && !/blank/.test(r.headers.get('etag') ?? '');
}

/** The XYZ tile of a lon/lat at level z. */
function tileOf(lon: number, lat: number, z: number): { x: number; y: number } {
  const n = 2 ** z;
  const x = Math.floor(((lon + 180) / 360) * n);
  const r = (lat * Math.PI) / 180;
  return { x, y: Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n) };
}

const data = tempDir('tuile-entrepot-');
let t: TuileProcess;
let api: Api;
const ids: Record<string, string> = {};

beforeAll(async () => {
  t = await startTuile(data.path);
  api = new Api(t.base);
  await api.init();
  const endpoints = (await api.call('GET', `${api.d}/endpoints`)).body;
  ids["{{ ids.processings['raster-to-pyramid'] }}"] = (await api.call('GET', `${api.d}/processings`)).body.find((p: any) => p.technical_name === 'raster-to-pyramid')._id;
  ids['{{ ids.endpoints.open.wmts }}'] = endpoints.find((e: any) => e.type === 'WMTS-TMS' && e.open)._id;
  ids['{{ ids.endpoints.private.wmts }}'] = endpoints.find((e: any) => e.type === 'WMTS-TMS' && !e.open)?._id;
  ids['{user}'] = (await api.call('GET', '/api/users/me')).body._id;
}, 120_000);

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

async function deliver(bodyFile: string, file: string, path: string): Promise<string> {
  const u = await api.call('POST', `${api.d}/uploads`, body(bodyFile, ids));
  expect(u.status, JSON.stringify(u.body)).toBe(201);
  const form = new FormData();
  form.append('file', new Blob([readFileSync(fixture(file))]), path.split('/').pop());
  expect((await api.call('POST', `${api.d}/uploads/${u.body._id}/data?path=${encodeURIComponent(path)}`, form)).status).toBe(200);
  expect((await api.call('POST', `${api.d}/uploads/${u.body._id}/close`)).status).toBe(200);
  expect((await api.until(`${api.d}/uploads/${u.body._id}`, ['CLOSED', 'UNSTABLE'])).entity.status).toBe('CLOSED');
  return u.body._id;
}

async function execute(bodyFile: string): Promise<any> {
  const e = await api.call('POST', `${api.d}/processings/executions`, body(bodyFile, ids));
  expect(e.status, JSON.stringify(e.body)).toBe(201);
  expect((await api.call('POST', `${api.d}/processings/executions/${e.body._id}/launch`)).status).toBe(200);
  const done = (await api.until(`${api.d}/processings/executions/${e.body._id}`, ['SUCCESS', 'FAILURE'])).entity;
  expect(done.status).toBe('SUCCESS');
  return (await api.call('GET', `${api.d}/stored_data/${done.output.stored_data._id}`)).body;
}

describe('the "au fur et à mesure" raster update tutorial, its bodies unedited', () => {
  let bottom = '';
  let south: { x: number; y: number };

  it('first data set: upload, pyramid, configuration with its metadata, offering; the layer is served', { timeout: 180_000 }, async () => {
    ids['{upload Corse Nord}'] = await deliver('01-upload-nord.json', 'france_relief_north_2154.tif', 'data/scan1000_corse_nord.tif');
    const north = await execute('02-execution-nord.json');
    ids['{stored data Corse Nord}'] = north._id;
    expect(north.type_infos).toMatchObject({ tms: 'PM', compression: 'JPG' });
    bottom = north.type_infos.levels.at(-1);

    const conf = await api.call('POST', `${api.d}/configurations`, body('03-configuration-nord.json', ids, bottom));
    expect(conf.status, JSON.stringify(conf.body)).toBe(201);
    ids['{configuration}'] = conf.body._id;
    // stored and returned as sent
    const sent = body('03-configuration-nord.json', ids, bottom);
    expect(conf.body.metadata).toEqual(sent.metadata);
    expect((await api.call('GET', `${api.d}/configurations/${conf.body._id}`)).body.type_infos).toEqual(sent.type_infos);

    const o = await api.call('POST', `${api.d}/configurations/${conf.body._id}/offerings`, body('04-offering-open.json', ids));
    expect(o.status, JSON.stringify(o.body)).toBe(201);
    ids['{offering}'] = o.body._id;
    expect((await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');

    // the metadata link is in the WMTS capabilities (ows:Metadata) and the TMS TileMap (Metadata)
    const caps = xml.parse(await (await fetch(`${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`)).text());
    const layer = [caps.Capabilities.Contents.Layer].flat().find((l: any) => l['ows:Identifier'] === 'scan1000_corse');
    expect(layer['ows:Title']).toBe('SCAN 1000 Nord Corse');
    const meta = [layer['ows:Metadata']].flat();
    expect(meta.map((m: any) => m['@xlink:href'])).toEqual([sent.metadata[0].url]);
    expect(meta[0]['@xlink:role']).toBe('ISO19115:2003');
    const tileMap = xml.parse(await (await fetch(`${t.base}/tms/1.0.0/scan1000_corse`)).text());
    expect(tileMap.TileMap.Metadata).toMatchObject({ '@type': 'ISO19115:2003', '@mime-type': 'application/xml', '@href': sent.metadata[0].url });

    // a tile of the north has data; one of the south (Montpellier) is blank so far
    const z = Number(bottom);
    const n = tileOf(2.35, 48.85, z);
    south = tileOf(3.88, 43.61, z);
    expect(await hasData(`${t.base}/tiles/scan1000_corse/${z}/${n.x}/${n.y}.jpg`)).toBe(true);
    expect(await hasData(`${t.base}/tiles/scan1000_corse/${z}/${south.x}/${south.y}.jpg`)).toBe(false);
  });

  it('second data set: a pyramid chained on the first, its dependency, the configuration replaced, the offering synchronised', { timeout: 180_000 }, async () => {
    ids['{upload Corse Sud}'] = await deliver('05-upload-sud.json', 'france_relief_south_2154.tif', 'data/scan1000_corse_sud.tif');
    const whole = await execute('06-execution-sud.json');
    ids['{stored data Corse}'] = whole._id;
    const deps = await api.call('GET', `${api.d}/stored_data/${whole._id}/dependencies`);
    expect(deps.body).toMatchObject(body('07-dependencies.json', ids));
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids['{stored data Corse Nord}']}`)).status).toBe(409);

    const put = await api.call('PUT', `${api.d}/configurations/${ids['{configuration}']}`, body('08-configuration-complete.json', ids, bottom));
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const z = Number(bottom);
    // nothing served changes before the synchronisation
    expect(await hasData(`${t.base}/tiles/scan1000_corse/${z}/${south.x}/${south.y}.jpg`)).toBe(false);

    const sync = await api.call('PUT', `${api.d}/offerings/${ids['{offering}']}`);
    expect(sync.status).toBe(200);
    expect((await api.until(`${api.d}/offerings/${ids['{offering}']}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');
    expect(await hasData(`${t.base}/tiles/scan1000_corse/${z}/${south.x}/${south.y}.jpg`)).toBe(true);
    const caps = xml.parse(await (await fetch(`${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`)).text());
    const layer = [caps.Capabilities.Contents.Layer].flat().find((l: any) => l['ows:Identifier'] === 'scan1000_corse');
    expect(layer['ows:Title']).toBe('SCAN 1000 Corse complète');
    expect(layer['ows:Abstract']).toBe('Données SCAN 1000 sur toute la Corse');
  });
});
