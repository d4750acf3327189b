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
  t = await startTuile(data.path, { TUILE_CONTACT: 'producteur@example.org' });
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

describe('what the offerings and permissions guides state', () => {
  const me = () => ids['{user}'];
  let privateOffering = '';
  let permission = '';

  it('a permission is created for users and answered as an array, in the Entrepôt\'s shape', async () => {
    const r = await api.call('POST', `${api.d}/permissions`, body('permission-account.json', ids));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(Array.isArray(r.body)).toBe(true);
    // the tutorial names two users; here both are the one user there is, who gets one permission
    expect(r.body).toHaveLength(1);
    const p = r.body[0];
    expect(p).toMatchObject({
      licence: 'Accès restreint',
      end_date: '2023-06-23T14:00:00Z',
      only_oauth: false,
      beneficiary: { _id: me() },
      datastore_author: { _id: api.datastore, technical_name: expect.any(String), name: expect.any(String), active: true },
    });
    expect(p.offerings).toEqual([{ type: 'WMTS-TMS', status: 'PUBLISHED', layer_name: 'scan1000_corse', open: true, available: true, _id: ids['{offering}'] }]);
    // a user or community that does not exist is refused, naming the field
    const bad = await api.call('POST', `${api.d}/permissions`, { ...body('permission-account.json', ids), users: [me(), '00000000-0000-4000-8000-000000000000'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error_description[0]).toMatch(/^users\.1: /);
    const community = await api.call('POST', `${api.d}/permissions`, { licence: 'x', offerings: [ids['{offering}']], type: 'COMMUNITY', users: [me()] });
    expect(community.status).toBe(400);
    const unknownOffering = await api.call('POST', `${api.d}/permissions`, { licence: 'x', offerings: ['00000000-0000-4000-8000-000000000000'] });
    expect(unknownOffering.status).toBe(400);
    expect(unknownOffering.body.error_description[0]).toMatch(/^offerings\.0: /);
  });

  it('an offering on the private endpoint (open:false) joins the permissions it names; its URLs are under /private', async () => {
    const endpoints = (await api.call('GET', `${api.d}/endpoints`)).body;
    const priv = endpoints.find((e: any) => !e.open);
    expect(priv.urls.map((u: any) => u.url)).toEqual([`${t.base}/private/wmts`, `${t.base}/private/tms/1.0.0`]);
    const perm = (await api.call('POST', `${api.d}/permissions`, { licence: 'partenaires', offerings: [ids['{offering}']], type: 'ACCOUNT', users: [me()] })).body[0];
    permission = perm._id;
    const conf = await api.call('POST', `${api.d}/configurations`, { ...body('03-configuration-nord.json', ids, '5'), layer_name: 'scan1000_corse_prive', name: 'privé' });
    expect(conf.status, JSON.stringify(conf.body)).toBe(201);
    const o = await api.call('POST', `${api.d}/configurations/${conf.body._id}/offerings`, { ...body('offering-private.json', ids), permissions: [perm._id] });
    expect(o.status, JSON.stringify(o.body)).toBe(201);
    privateOffering = o.body._id;
    expect(o.body.open).toBe(false);
    expect((await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');
    expect((await api.call('GET', `${api.d}/permissions/${perm._id}`)).body.offerings.map((x: any) => x._id)).toEqual([ids['{offering}'], o.body._id]);
    const urls = (await api.call('GET', `${api.d}/offerings/${o.body._id}`)).body.urls.map((u: any) => u.url);
    expect(urls.every((u: string) => u.startsWith(`${t.base}/private/`))).toBe(true);
    // an unknown permission id is the body's mistake
    const conf2 = await api.call('POST', `${api.d}/configurations`, { ...body('03-configuration-nord.json', ids, '5'), layer_name: 'scan1000_corse_prive2' });
    const bad = await api.call('POST', `${api.d}/configurations/${conf2.body._id}/offerings`, { ...body('offering-private.json', ids), permissions: ['00000000-0000-4000-8000-000000000000'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error_description[0]).toMatch(/^permissions\.0: /);
  });

  it('the beneficiary sees the permissions in GET /users/me/permissions', async () => {
    const mine = await api.call('GET', '/api/users/me/permissions?personal=true&community=false');
    expect(mine.status).toBe(200);
    const p = mine.body.find((x: any) => x._id === permission);
    expect(Object.keys(p).sort()).toEqual(['_id', 'licence', 'offerings', 'only_oauth']);
    expect(p.offerings.map((o: any) => o.layer_name)).toEqual(['scan1000_corse', 'scan1000_corse_prive']);
    expect((await api.call('GET', '/api/users/me/permissions?personal=false&community=true')).body).toEqual([]);
    expect((await api.call('GET', `/api/users/me/permissions/${permission}`)).body._id).toBe(permission);
  });

  it('an offering on the private endpoint is served only under /private, only with a key that has access', async () => {
    const z = 5;
    const { x, y } = tileOf(2.35, 48.85, z);
    const path = `/tiles/scan1000_corse_prive/${z}/${x}/${y}.jpg`;
    expect((await fetch(`${t.base}/private${path}`)).status).toBe(401);
    expect((await fetch(`${t.base}${path}`)).status).toBe(404);
    const ended = (await api.call('GET', `${api.d}/permissions`)).body.find((p: any) => p.end_date === '2023-06-23T14:00:00Z');
    const key = async (permissionId: string) => {
      const k = await api.call('POST', '/api/users/me/keys', { name: `k ${permissionId}`, type: 'HASH' });
      const a = await api.call('POST', `/api/users/me/keys/${k.body._id}/accesses`, { permission: permissionId, offerings: [privateOffering] });
      return { key: k.body.key as string, access: a.status };
    };
    // the tutorial's permission ended in 2023 and never granted this offering
    expect((await key(ended._id)).access).toBe(400);
    const good = await key(permission);
    expect(good.access).toBe(201);
    expect(await hasData(`${t.base}/private${path}?apikey=${good.key}`)).toBe(true);
    expect((await fetch(`${t.base}${path}?apikey=${good.key}`)).status).toBe(404);
    const caps = xml.parse(await (await fetch(`${t.base}/private/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&apikey=${good.key}`)).text());
    expect([caps.Capabilities.Contents.Layer].flat().map((l: any) => l['ows:Identifier'])).toEqual(['scan1000_corse_prive']);
  });

  it('the keys guide: a HASH key of one\'s choosing, an access through the permission, then the private layer opens with it', async () => {
    const k = await api.call('POST', '/api/users/me/keys', body('key-hash.json', ids));
    expect(k.status, JSON.stringify(k.body)).toBe(201);
    expect(k.body).toMatchObject({ name: 'Ma clé HASH', type: 'HASH', type_infos: { hash: 'masupercle' } });
    // the same key twice would not say whose it is
    expect((await api.call('POST', '/api/users/me/keys', body('key-hash.json', ids))).status).toBe(409);
    const tile = `${t.base}/private/tiles/scan1000_corse_prive/5/16/11.jpg`;
    expect((await fetch(`${tile}?apikey=masupercle`)).status).toBe(403);
    const a = await api.call('POST', `/api/users/me/keys/${k.body._id}/accesses`, body('key-access.json', { ...ids, '{permission utilisateur}': permission, '{offering}': privateOffering }));
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    const list = (await api.call('GET', `/api/users/me/keys/${k.body._id}/accesses`)).body;
    expect(list).toEqual([
      {
        permission: { licence: 'partenaires', only_oauth: false, _id: permission },
        offering: { open: false, available: true, layer_name: 'scan1000_corse_prive', type: 'WMTS-TMS', status: 'PUBLISHED', _id: privateOffering },
      },
    ]);
    expect((await fetch(`${tile}?apikey=masupercle`)).status).toBe(200);
    expect((await fetch(tile, { headers: { apikey: 'masupercle' } })).status).toBe(200);
    // kept as a hash only
    expect(JSON.stringify((await api.call('GET', `/api/users/me/keys/${k.body._id}`)).body)).not.toContain('masupercle');
    // the viewer of the private endpoint, with the key; its map reads the private capabilities
    const viewer = await fetch(`${t.base}/private/viewer/scan1000_corse_prive?apikey=masupercle`);
    expect(viewer.status).toBe(200);
    expect(await viewer.text()).toContain('../wmts/1.0.0/WMTSCapabilities.xml?apikey=masupercle');
    expect((await fetch(`${t.base}/private/viewer/scan1000_corse_prive`)).status).toBe(401);
    expect((await fetch(`${t.base}/viewer/scan1000_corse_prive?apikey=masupercle`)).status).toBe(404);
    const index = await (await fetch(`${t.base}/private/?apikey=masupercle`)).text();
    expect(index).toContain(`${t.base}/private/wmts/1.0.0/WMTSCapabilities.xml`);
  });

  it('open is forced true on the open endpoint', async () => {
    const conf = await api.call('POST', `${api.d}/configurations`, { ...body('03-configuration-nord.json', ids, '5'), layer_name: 'scan1000_ouvert' });
    const o = await api.call('POST', `${api.d}/configurations/${conf.body._id}/offerings`, { ...body('04-offering-open.json', ids), open: false });
    expect(o.status).toBe(201);
    expect(o.body.open).toBe(true);
    await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED']);
    expect((await api.call('PATCH', `${api.d}/offerings/${o.body._id}`, { open: false })).body.open).toBe(true);
    ids['{offering ouvert}'] = o.body._id;
    ids['{configuration ouvert}'] = conf.body._id;
  });

  it('a failed synchronisation: UNSTABLE, why in words without a server path, the previous data still served; then PUBLISHED again', { timeout: 120_000 }, async () => {
    const { x, y } = tileOf(2.35, 48.85, 5);
    const tile = `${t.base}/tiles/scan1000_ouvert/5/${x}/${y}.jpg`;
    const served = (await fetch(tile)).headers.get('etag');
    const damaged = await execute('02-execution-nord.json');
    const archive = join(data.path, 'pyramids', damaged._id, 'tiles.pmtiles');
    const { renameSync } = await import('node:fs');
    renameSync(archive, `${archive}.away`);
    const conf = { ...body('03-configuration-nord.json', ids, '5'), layer_name: 'scan1000_ouvert' };
    conf.type_infos.used_data[0].stored_data = damaged._id;
    expect((await api.call('PUT', `${api.d}/configurations/${ids['{configuration ouvert}']}`, conf)).status).toBe(200);
    expect((await api.call('PUT', `${api.d}/offerings/${ids['{offering ouvert}']}`)).status).toBe(200);
    const o = (await api.until(`${api.d}/offerings/${ids['{offering ouvert}']}`, ['PUBLISHED', 'UNSTABLE'])).entity;
    expect(o.status).toBe('UNSTABLE');
    expect(o.last_event.title).toMatch(/^synchronisation failed: the pyramid of stored data .* cannot be opened.*keeps serving its previous data$/);
    const everything = JSON.stringify([o, (await api.call('GET', `${api.d}/offerings`)).body, (await api.call('GET', `${api.d}/processings/executions?limit=100`)).body]);
    expect(everything).not.toContain(data.path);
    expect(everything).not.toContain('tiles.pmtiles');
    // the previous pyramid (the north) is still what the layer serves
    const before = await fetch(tile);
    expect(before.status).toBe(200);
    expect(before.headers.get('etag')).toBe(served);
    // repaired, a synchronisation publishes it
    renameSync(`${archive}.away`, archive);
    expect((await api.call('PUT', `${api.d}/offerings/${ids['{offering ouvert}']}`)).status).toBe(200);
    expect((await api.until(`${api.d}/offerings/${ids['{offering ouvert}']}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');
    const after = (await fetch(tile)).headers.get('etag');
    expect(after).not.toBe(served);
    expect(after).not.toMatch(/blank/);
  });

  it('a failed first publication: UNSTABLE, nothing served', { timeout: 120_000 }, async () => {
    const damaged = await execute('02-execution-nord.json');
    const archive = join(data.path, 'pyramids', damaged._id, 'tiles.pmtiles');
    (await import('node:fs')).writeFileSync(archive, 'not an archive');
    const conf = { ...body('03-configuration-nord.json', ids, '5'), layer_name: 'scan1000_casse' };
    conf.type_infos.used_data[0].stored_data = damaged._id;
    const c = await api.call('POST', `${api.d}/configurations`, conf);
    const o = await api.call('POST', `${api.d}/configurations/${c.body._id}/offerings`, body('04-offering-open.json', ids));
    const settled = (await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity;
    expect(settled.status).toBe('UNSTABLE');
    expect(settled.last_event.title).toMatch(/^publication failed: /);
    expect(settled.last_event.title).not.toContain(data.path);
    expect((await fetch(`${t.base}/tms/1.0.0/scan1000_casse`)).status).toBe(404);
  });
});

describe('lifecycle gaps a user hits', () => {
  it('processings carry their technical key, priority, required checks and described parameters', async () => {
    const list = (await api.call('GET', `${api.d}/processings`)).body;
    const p = list.find((x: any) => x.technical_name === 'raster-to-pyramid');
    expect(p).toMatchObject({ name: 'Calcul de pyramide raster', priority: 'STANDARD', input_types: { upload: ['RASTER'], stored_data: ['ROK4-PYRAMID-RASTER'] } });
    expect(p.required_checks).toHaveLength(1);
    expect(p.parameters.every((x: any) => typeof x.description === 'string' && x.description.length > 0)).toBe(true);
    expect((await api.call('GET', `${api.d}/processings/${p._id}`)).body).toEqual(p);
    // the check it requires is the one uploads go through
    const upload = (await api.call('GET', `${api.d}/uploads/${ids['{upload Corse Nord}']}/checks`)).body;
    expect(JSON.stringify(upload)).toContain(p.required_checks[0]);
  });

  it('an execution shows the status and srs of its inputs and output, and who did what', async () => {
    const list = (await api.call('GET', `${api.d}/processings/executions?limit=100`)).body;
    const e = list.find((x: any) => x.inputs.stored_data.length === 1);
    expect(e.processing.technical_name).toBe('raster-to-pyramid');
    expect(e.inputs.upload[0]).toMatchObject({ _id: ids['{upload Corse Sud}'], status: 'CLOSED', srs: 'EPSG:2154', type: 'RASTER' });
    expect(e.inputs.stored_data[0]).toMatchObject({ _id: ids['{stored data Corse Nord}'], status: 'GENERATED', srs: 'EPSG:3857' });
    expect(e.output.stored_data).toMatchObject({ _id: ids['{stored data Corse}'], status: 'GENERATED', srs: 'EPSG:3857' });
    expect(e.last_event.initiator._id).toBe('tuile');
    const conf = (await api.call('GET', `${api.d}/configurations/${ids['{configuration}']}`)).body;
    expect(conf.last_event.initiator._id).toBe(ids['{user}']);
    const up = (await api.call('GET', `${api.d}/uploads/${ids['{upload Corse Nord}']}`)).body;
    expect(up.last_event).toMatchObject({ title: 'checks passed', initiator: { _id: 'tuile' } });
    expect(up.contact).toBe('producteur@example.org');
    expect((await api.call('GET', `${api.d}/stored_data/${ids['{stored data Corse}']}`)).body.contact).toBe('producteur@example.org');
    const tree = (await api.call('GET', `${api.d}/uploads/${ids['{upload Corse Nord}']}/tree`)).body;
    expect(tree).toEqual([{ name: 'data', type: 'DIRECTORY', children: [{ name: 'scan1000_corse_nord.tif', type: 'FILE', size: readFileSync(fixture('france_relief_north_2154.tif')).length }] }]);
  });

  it('an execution never launched can be aborted, or deleted with its output; then it no longer holds its inputs', async () => {
    const u = await deliver('05-upload-sud.json', 'france_relief_south_2154.tif', 'data/sud.tif');
    const create = async () => {
      const b = body('02-execution-nord.json', { ...ids, '{upload Corse Nord}': u });
      const e = await api.call('POST', `${api.d}/processings/executions`, b);
      expect(e.status, JSON.stringify(e.body)).toBe(201);
      return e.body;
    };
    const a = await create();
    const aborted = await api.call('POST', `${api.d}/processings/executions/${a._id}/abort`);
    expect(aborted.status).toBe(200);
    expect(aborted.body.status).toBe('ABORTED');
    expect((await api.call('POST', `${api.d}/processings/executions/${a._id}/launch`)).status).toBe(409);
    const e = await create();
    // the never-launched execution holds its upload
    expect((await api.call('DELETE', `${api.d}/uploads/${u}`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/processings/executions/${e._id}`)).status).toBe(204);
    expect((await api.call('GET', `${api.d}/processings/executions/${e._id}`)).status).toBe(404);
    expect((await api.call('GET', `${api.d}/stored_data/${e.output.stored_data._id}`)).status).toBe(404);
    expect((await api.call('DELETE', `${api.d}/processings/executions/${a._id}`)).status).toBe(204);
    expect((await api.call('DELETE', `${api.d}/uploads/${u}`)).status).toBe(204);
  });

  it('the injection tutorial\'s execution body (output.stored_data.id) updates a pyramid in place', { timeout: 120_000 }, async () => {
    const target = await execute('02-execution-nord.json');
    const b = body('injection-execution.json', { ...ids, '{stored data Corse}': target._id });
    const e = await api.call('POST', `${api.d}/processings/executions`, b);
    expect(e.status, JSON.stringify(e.body)).toBe(201);
    expect(e.body.output.stored_data._id).toBe(target._id);
    expect((await api.call('POST', `${api.d}/processings/executions/${e.body._id}/launch`)).status).toBe(200);
    expect((await api.until(`${api.d}/processings/executions/${e.body._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
    const after = (await api.call('GET', `${api.d}/stored_data/${target._id}`)).body;
    expect(after.status).toBe('GENERATED');
    // the south is in it now: its extent reaches further south
    expect(Math.min(...after.extent.coordinates[0].map((c: number[]) => c[1]))).toBeLessThan(Math.min(...target.extent.coordinates[0].map((c: number[]) => c[1])));
  });

  it('a wrong method on a known route is 405 with Allow; an unknown route 404', async () => {
    const r = await api.call('PATCH', `${api.d}/processings/executions`);
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, HEAD, POST');
    expect(r.body.error).toBe('method_not_allowed');
    const one = await api.call('POST', `${api.d}/offerings/${ids['{offering}']}`);
    expect(one.status).toBe(405);
    expect(one.headers.get('allow')).toBe('DELETE, GET, HEAD, PATCH, PUT');
    expect((await api.call('GET', `${api.d}/nothing-here`)).status).toBe(404);
  });

  it('an unknown id inside a body is a 400 naming the field', async () => {
    const nobody = '00000000-0000-4000-8000-000000000000';
    const cases: [string, string, unknown, RegExp][] = [
      ['POST', `${api.d}/processings/executions`, body('06-execution-sud.json', { ...ids, '{upload Corse Sud}': nobody }), /^inputs\.upload\.0: /],
      ['POST', `${api.d}/processings/executions`, body('06-execution-sud.json', { ...ids, '{stored data Corse Nord}': nobody }), /^inputs\.stored_data\.0: /],
      ['POST', `${api.d}/processings/executions`, body('02-execution-nord.json', { ...ids, "{{ ids.processings['raster-to-pyramid'] }}": nobody }), /^processing: /],
      ['POST', `${api.d}/configurations`, { ...body('03-configuration-nord.json', { ...ids, '{stored data Corse Nord}': nobody }, '5'), layer_name: 'x_unknown' }, /^type_infos\.used_data\.0\.stored_data: /],
      ['POST', `${api.d}/configurations/${ids['{configuration}']}/offerings`, { endpoint: nobody }, /^endpoint: /],
    ];
    for (const [method, path, b, re] of cases) {
      const r = await api.call(method, path, b);
      expect(r.status, `${method} ${path} ${JSON.stringify(r.body)}`).toBe(400);
      expect(r.body.error_description[0]).toMatch(re);
    }
  });

  it('attribution (title, url, logo) and several metadata links go into the WMTS capabilities and the TMS TileMap', async () => {
    const conf = body('03-configuration-nord.json', ids, '5');
    conf.layer_name = 'scan1000_attribution';
    conf.metadata.push({ format: 'text/html', url: 'https://example.org/fiche?id=1&lang=fr', type: 'Other' });
    conf.attribution = { title: 'IGN & partenaires', url: 'https://www.ign.fr/', logo: { format: 'image/png', url: 'https://example.org/logo.png', width: 64, height: 32 } };
    const c = await api.call('POST', `${api.d}/configurations`, conf);
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    expect(c.body.attribution).toEqual(conf.attribution);
    const o = await api.call('POST', `${api.d}/configurations/${c.body._id}/offerings`, body('04-offering-open.json', ids));
    await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED']);
    const caps = xml.parse(await (await fetch(`${t.base}/wmts/1.0.0/WMTSCapabilities.xml`)).text());
    const layer = [caps.Capabilities.Contents.Layer].flat().find((l: any) => l['ows:Identifier'] === 'scan1000_attribution');
    const meta = [layer['ows:Metadata']].flat();
    expect(meta.map((m: any) => [m['@about'], m['@xlink:href'], m['@xlink:title']])).toEqual([
      [undefined, conf.metadata[0].url, 'application/xml'],
      [undefined, 'https://example.org/fiche?id=1&lang=fr', 'text/html'],
      ['attribution', 'https://www.ign.fr/', 'IGN & partenaires'],
      ['attribution-logo', 'https://example.org/logo.png', 'image/png'],
    ]);
    // ows:Metadata comes after ows:BoundingBox and before Style (owsContents.xsd, wmts.xsd)
    const keys = Object.keys(layer);
    expect(keys.indexOf('ows:Metadata')).toBe(keys.indexOf('ows:BoundingBox') + 1);
    const tileMap = xml.parse(await (await fetch(`${t.base}/tms/1.0.0/scan1000_attribution`)).text()).TileMap;
    expect(tileMap.Attribution).toEqual({ Title: 'IGN & partenaires', Logo: { '@width': '64', '@height': '32', '@href': 'https://example.org/logo.png', '@mime-type': 'image/png' } });
    expect([tileMap.Metadata].flat()).toHaveLength(2);
    expect(Object.keys(tileMap).indexOf('Attribution')).toBeLessThan(Object.keys(tileMap).indexOf('SRS'));
    // changed by PATCH, served once synchronised
    const patched = await api.call('PATCH', `${api.d}/configurations/${c.body._id}`, { attribution: null, metadata: [conf.metadata[1]] });
    expect(patched.status).toBe(200);
    expect(patched.body.attribution).toBeUndefined();
    const served = async () => xml.parse(await (await fetch(`${t.base}/tms/1.0.0/scan1000_attribution`)).text()).TileMap;
    expect((await served()).Attribution).toBeDefined();
    await api.call('PUT', `${api.d}/offerings/${o.body._id}`);
    await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED']);
    expect((await served()).Attribution).toBeUndefined();
    expect((await served()).Metadata['@href']).toBe('https://example.org/fiche?id=1&lang=fr');
  });

  it('a configuration serves several used_data, one pyramid per level range', { timeout: 120_000 }, async () => {
    const coarse = await execute('02-execution-nord.json');
    const conf = body('03-configuration-nord.json', ids, '5');
    conf.layer_name = 'scan1000_deux';
    conf.type_infos.used_data = [
      { bottom_level: '2', top_level: '0', stored_data: coarse._id },
      { bottom_level: '5', top_level: '3', stored_data: ids['{stored data Corse}'] },
    ];
    const overlapping = structuredClone(conf);
    overlapping.type_infos.used_data[0].bottom_level = '3';
    const bad = await api.call('POST', `${api.d}/configurations`, overlapping);
    expect(bad.status).toBe(400);
    expect(bad.body.error_description[0]).toMatch(/^type_infos\.used_data\.1: levels 3-5 overlap/);
    const c = await api.call('POST', `${api.d}/configurations`, conf);
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    const o = await api.call('POST', `${api.d}/configurations/${c.body._id}/offerings`, body('04-offering-open.json', ids));
    expect((await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');
    // levels 0-5 served; the top ones from the first pyramid, the bottom ones from the second (the south is only there)
    const caps = xml.parse(await (await fetch(`${t.base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`)).text());
    const layer = [caps.Capabilities.Contents.Layer].flat().find((l: any) => l['ows:Identifier'] === 'scan1000_deux');
    expect([layer.TileMatrixSetLink.TileMatrixSetLimits.TileMatrixLimits].flat().map((l: any) => String(l.TileMatrix))).toEqual(['0', '1', '2', '3', '4', '5']);
    const etag = async (z: number, lon: number, lat: number) => {
      const { x, y } = tileOf(lon, lat, z);
      return (await fetch(`${t.base}/tiles/scan1000_deux/${z}/${x}/${y}.jpg`)).headers.get('etag')!;
    };
    const sameAs = async (layer: string, z: number, lon: number, lat: number) => {
      const { x, y } = tileOf(lon, lat, z);
      return (await fetch(`${t.base}/tiles/${layer}/${z}/${x}/${y}.jpg`)).headers.get('etag')!;
    };
    expect(await etag(5, 3.88, 43.61)).toBe(await sameAs('scan1000_corse', 5, 3.88, 43.61));
    expect(await etag(2, 2.35, 48.85)).not.toBe(await sameAs('scan1000_corse', 2, 2.35, 48.85));
    expect((await fetch(`${t.base}/tiles/scan1000_deux/6/0/0.jpg`)).status).toBe(404);
  });
});

describe('offering stats', () => {
  /** A tile of layer `name` at level 5 over Paris, in each protocol's URL form. */
  const urls = (name: string) => {
    const { x, y } = tileOf(2.35, 48.85, 5);
    return {
      XYZ: `/tiles/${name}/5/${x}/${y}.jpg`,
      TMS: `/tms/1.0.0/${name}/5/${x}/${2 ** 5 - 1 - y}.jpg`,
      WMTS: `/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${name}&STYLE=normal&FORMAT=image/jpeg&TILEMATRIXSET=PM&TILEMATRIX=5&TILEROW=${y}&TILECOL=${x}`,
      'OGCAPI-TILES': `/ogcapi/collections/${name}/map/tiles/WebMercatorQuad/5/${y}/${x}`,
    };
  };
  const asked: Record<string, number> = { XYZ: 3, TMS: 2, WMTS: 2, 'OGCAPI-TILES': 1 };

  async function check(base: string, a: Api, offering: string, name: string) {
    const stats = async () => (await a.call('GET', `${a.d}/offerings/${offering}/stats`)).body;
    const before = await stats();
    const today = new Date().toISOString().slice(0, 10);
    const counted = (s: any, p: string) => s.days.find((d: any) => d.date === today)?.protocols[p] ?? 0;
    for (const [protocol, url] of Object.entries(urls(name))) {
      for (let i = 0; i < asked[protocol]; i++) {
        const r = await fetch(`${base}${url}`);
        await r.arrayBuffer();
        expect(r.status, url).toBe(200);
      }
    }
    // a request outside the layer is not an answered request of it
    expect((await fetch(`${base}/tiles/${name}/20/0/0.jpg`)).status).toBe(404);
    const after = await stats();
    expect(after).toMatchObject({ _id: offering, layer_name: name });
    for (const p of Object.keys(asked)) expect(counted(after, p) - counted(before, p), p).toBe(asked[p]);
    expect(after.total - before.total).toBe(8);
  }

  it('counts the answered requests of the layer per day and protocol', async () => {
    await check(t.base, api, ids['{offering}'], 'scan1000_corse');
  });

  it('over every serving process', { timeout: 120_000 }, async () => {
    const dir = tempDir('tuile-entrepot-cluster-');
    const two = await startTuile(dir.path, { TUILE_WORKERS: '2' });
    try {
      const a = new Api(two.base);
      await a.init();
      const u = await a.deliver([{ path: 'data/nord.tif', file: fixture('france_relief_north_2154.tif') }]);
      const sd = await a.compute({ upload: [u._id] }, { bottom: 5 });
      await check(two.base, a, (await a.publish(a.configuration('deux', sd, '5'))).offering, 'deux');
    } finally {
      await two.stop();
      dir.cleanup();
    }
  });
});

describe('a data folder made before the private endpoint', () => {
  it('gets the private endpoint at the next start, its open one and offerings kept', { timeout: 120_000 }, async () => {
    const dir = tempDir('tuile-entrepot-old-');
    try {
      let one = await startTuile(dir.path);
      await one.stop();
      // the state as an earlier version wrote it: one datastore, one open endpoint
      const file = join(dir.path, 'state.json');
      const state = JSON.parse(readFileSync(file, 'utf8'));
      const d: any = Object.values(state.datastores)[0];
      const open = d.endpoints.find((e: string) => state.endpoints[e].open);
      for (const e of d.endpoints) if (e !== open) delete state.endpoints[e];
      d.endpoints = [open];
      (await import('node:fs')).writeFileSync(file, JSON.stringify(state));
      one = await startTuile(dir.path);
      try {
        const a = new Api(one.base);
        await a.init();
        const endpoints = (await a.call('GET', `${a.d}/endpoints`)).body;
        expect(endpoints.map((e: any) => e.open)).toEqual([true, false]);
        expect(endpoints[0]._id).toBe(open);
      } finally {
        await one.stop();
      }
    } finally {
      dir.cleanup();
    }
  });
});
