// Access control on every protocol: an offering of the open endpoint, and closed and unavailable ones of
// the private endpoint (served under /private), each asked with no key, a wrong key, a key whose
// permission has ended, and a key with access (query parameter or header).
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const data = tempDir('tuile-access-');
let t: TuileProcess;
let api: Api;
const keys: Record<string, string> = {};

/** The tile 5/16/11 (XYZ) of a layer, in every protocol's URL form, with the key as a query parameter. */
function urls(layer: string, key?: string): Record<string, string> {
  const p = layer === 'pub' ? '' : '/private';
  const q = key ? `apikey=${encodeURIComponent(key)}` : '';
  const amp = q ? `&${q}` : '';
  const qm = q ? `?${q}` : '';
  return {
    'WMTS KVP': `${p}/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${layer}&STYLE=normal&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=5&TILEROW=11&TILECOL=16${amp}`,
    'WMTS REST': `${p}/wmts/1.0.0/${layer}/normal/PM/5/11/16.png${qm}`,
    TMS: `${p}/tms/1.0.0/${layer}/5/16/20.png${qm}`,
    'TMS TileMap': `${p}/tms/1.0.0/${layer}${qm}`,
    XYZ: `${p}/tiles/${layer}/5/16/11.png${qm}`,
    'OGC API': `${p}/ogcapi/collections/${layer}/map/tiles/WebMercatorQuad/5/11/16${qm}`,
    'OGC API collection': `${p}/ogcapi/collections/${layer}${qm}`,
  };
}

async function publish(layer: string, sd: string, open: boolean, available = true): Promise<string> {
  const conf = (await api.call('POST', `${api.d}/configurations`, api.configuration(layer, sd, '6'))).body;
  const endpoints = (await api.call('GET', `${api.d}/endpoints`)).body;
  // closed offerings live on the private endpoint: on the open one, every offering is open
  const endpoint = endpoints.find((e: any) => e.open === open)._id;
  const o = await api.call('POST', `${api.d}/configurations/${conf._id}/offerings`, { endpoint, open, available });
  expect(o.status).toBe(201);
  await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED']);
  return o.body._id;
}

beforeAll(async () => {
  t = await startTuile(data.path);
  api = new Api(t.base);
  await api.init();
  const u = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
  const e = await api.execute({ upload: [u._id] }, { compression: 'png', bottom: 6 }, 'north');
  const sd = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS'])).entity.output.stored_data._id;
  await publish('pub', sd, true);
  const priv = await publish('priv', sd, false);
  const hidden = await publish('hidden', sd, false, false);
  const valid = (await api.call('POST', `${api.d}/permissions`, { licence: 'test', offerings: [priv, hidden] })).body[0];
  const ended = (await api.call('POST', `${api.d}/permissions`, { licence: 'ended', end_date: '2020-01-01T00:00:00Z', offerings: [priv] })).body[0];
  const right = await api.call('POST', '/api/users/me/keys', { name: 'right', accesses: [{ permission: valid._id, offerings: [priv, hidden] }] });
  expect(right.status).toBe(201);
  keys.right = right.body.key;
  keys.expired = (await api.call('POST', '/api/users/me/keys', { name: 'expired', accesses: [{ permission: ended._id, offerings: [priv] }] })).body.key;
  keys.noaccess = (await api.call('POST', '/api/users/me/keys', { name: 'no access' })).body.key;
  keys.wrong = 'not-a-key-at-all';
});

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

describe('tiles and layer documents, per protocol and key', () => {
  const cases: [string, string | undefined, Record<string, number>][] = [
    ['no key', undefined, { pub: 200, priv: 401, hidden: 404 }],
    ['a wrong key', 'wrong', { pub: 200, priv: 403, hidden: 404 }],
    ['a key without access', 'noaccess', { pub: 200, priv: 403, hidden: 404 }],
    ['a key whose permission ended', 'expired', { pub: 200, priv: 403, hidden: 404 }],
    ['a key with access', 'right', { pub: 200, priv: 200, hidden: 404 }],
  ];
  for (const [label, which, want] of cases) {
    it(`${label}: open 200, closed ${want.priv}, unavailable hidden`, async () => {
      for (const layer of ['pub', 'priv', 'hidden'] as const) {
        for (const [proto, url] of Object.entries(urls(layer, which && keys[which]))) {
          const r = await fetch(`${t.base}${url}`);
          const body = await r.text();
          // WMTS names an unknown layer an InvalidParameterValue (400); the others answer 404
          const expected = want[layer] === 404 && proto.startsWith('WMTS') ? 400 : want[layer];
          expect(r.status, `${proto} ${layer} with ${label}: ${body.slice(0, 200)}`).toBe(expected);
          if (expected === 401 || expected === 403) {
            if (proto.startsWith('WMTS')) expect(body).toMatch(/<ExceptionReport[\s\S]*exceptionCode="NoApplicableCode"[\s\S]*locator="apikey"/);
            else if (proto.startsWith('TMS')) expect(body).toContain('<TileMapServerError>');
            else expect(JSON.parse(body).error).toBe(expected === 401 ? 'unauthorized' : 'forbidden');
          }
        }
      }
    });
  }

  it('takes the key from the apikey header too', async () => {
    const r = await fetch(`${t.base}/private/tiles/priv/5/16/11.png`, { headers: { apikey: keys.right } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect((await fetch(`${t.base}/private/tiles/priv/5/16/11.png`, { headers: { apikey: keys.expired } })).status).toBe(403);
  });
});

describe('capabilities and lists', () => {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });
  const layersOf = async (url: string): Promise<{ ids: string[]; templates: string[] }> => {
    const x = parser.parse(await (await fetch(`${t.base}${url}`)).text());
    const layers = [x.Capabilities.Contents.Layer ?? []].flat();
    return {
      ids: layers.map((l: any) => l['ows:Identifier']).sort(),
      templates: layers.flatMap((l: any) => [l.ResourceURL].flat().map((r: any) => r['@template'])),
    };
  };

  it('GetCapabilities lists the open layers without a key, and what a key may use with one, its URLs carrying the key', async () => {
    expect((await layersOf('/wmts?SERVICE=WMTS&REQUEST=GetCapabilities')).ids).toEqual(['pub']);
    expect((await layersOf(`/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&apikey=${keys.right}`)).ids).toEqual(['pub']);
    expect((await layersOf('/private/wmts?SERVICE=WMTS&REQUEST=GetCapabilities')).ids).toEqual([]);
    expect((await layersOf(`/private/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&apikey=${keys.expired}`)).ids).toEqual([]);
    const withKey = await layersOf(`/private/wmts/1.0.0/WMTSCapabilities.xml?apikey=${keys.right}`);
    expect(withKey.ids).toEqual(['priv']);
    expect(withKey.templates.every((u) => u.startsWith(`${t.base}/private/wmts/1.0.0/`) && u.endsWith(`?apikey=${keys.right}`))).toBe(true);
    // a client that follows the template with the key gets the tile
    const tpl = withKey.templates.find((u) => u.includes('/priv/') && u.includes('.png'))!;
    const url = tpl.replace('{Style}', 'normal').replace('{TileMatrixSet}', 'PM').replace('{TileMatrix}', '5').replace('{TileRow}', '11').replace('{TileCol}', '16');
    expect((await fetch(url)).status).toBe(200);
  });

  it('TMS and OGC API lists follow the same rule', async () => {
    const tms = await (await fetch(`${t.base}/tms/1.0.0/`)).text();
    expect(tms).toContain('/tms/1.0.0/pub"');
    expect(tms).not.toContain('/tms/1.0.0/priv"');
    expect(await (await fetch(`${t.base}/private/tms/1.0.0/`)).text()).not.toContain('/tms/1.0.0/priv"');
    expect(await (await fetch(`${t.base}/private/tms/1.0.0/?apikey=${keys.right}`)).text()).toContain('/private/tms/1.0.0/priv"');
    const ids = async (p: string, q: string) => (await (await fetch(`${t.base}${p}/ogcapi/collections${q}`)).json()).collections.map((c: any) => c.id).sort();
    expect(await ids('', '')).toEqual(['pub']);
    expect(await ids('/private', '')).toEqual([]);
    expect(await ids('/private', `?apikey=${keys.right}`)).toEqual(['priv']);
  });

  it('making the hidden offering available shows it to the key, its permissions kept', async () => {
    const hidden = (await api.call('GET', `${api.d}/offerings?layer_name=hidden`)).body[0];
    expect((await api.call('PATCH', `${api.d}/offerings/${hidden._id}`, { available: true })).status).toBe(200);
    expect((await fetch(`${t.base}/private/tiles/hidden/5/16/11.png?apikey=${keys.right}`)).status).toBe(200);
    expect((await fetch(`${t.base}/private/tiles/hidden/5/16/11.png`)).status).toBe(401);
    // the private endpoint's layers are not on the open one's paths
    expect((await fetch(`${t.base}/tiles/hidden/5/16/11.png?apikey=${keys.right}`)).status).toBe(404);
    // ending the permission closes it at once
    const perm = (await api.call('GET', `${api.d}/permissions?offering=${hidden._id}`)).body[0];
    await api.call('PATCH', `${api.d}/permissions/${perm._id}`, { end_date: new Date(Date.now() - 1000).toISOString() });
    expect((await fetch(`${t.base}/private/tiles/hidden/5/16/11.png?apikey=${keys.right}`)).status).toBe(403);
  });
});

describe('keys and permissions', () => {
  it('keeps keys as hashes only, never shows or logs them again', async () => {
    const list = await api.call('GET', '/api/users/me/keys');
    expect(list.body).toHaveLength(3);
    const text = JSON.stringify(list.body);
    for (const k of [keys.right, keys.expired, keys.noaccess]) {
      expect(text).not.toContain(k);
      expect(t.output()).not.toContain(k);
    }
    const state = (await import('node:fs')).readFileSync(`${data.path}/state.json`, 'utf8');
    expect(state).not.toContain(keys.right);
    expect(state).toContain((await import('../../src/state/model.js')).hashKey(keys.right));
  });

  it('refuses accesses a permission does not grant, and lists a key accesses', async () => {
    const k = (await api.call('GET', '/api/users/me/keys')).body.find((x: any) => x.name === 'no access');
    const perm = (await api.call('GET', `${api.d}/permissions`)).body.find((p: any) => p.licence === 'ended');
    const pub = (await api.call('GET', `${api.d}/offerings?layer_name=pub`)).body[0];
    const r = await api.call('POST', `/api/users/me/keys/${k._id}/accesses`, { permission: perm._id, offerings: [pub._id] });
    expect(r.status).toBe(400);
    expect(r.body.error_description[0]).toMatch(/does not grant/);
    const right = (await api.call('GET', '/api/users/me/keys')).body.find((x: any) => x.name === 'right');
    const acc = await api.call('GET', `/api/users/me/keys/${right._id}/accesses`);
    // one access per offering, each with its permission (the Entrepôt's shape)
    expect(acc.body.map((x: any) => x.offering.layer_name).sort()).toEqual(['hidden', 'priv']);
    expect(acc.body.every((x: any) => x.permission.licence === 'test')).toBe(true);
    // a revoked key opens nothing
    expect((await api.call('DELETE', `/api/users/me/keys/${right._id}`)).status).toBe(204);
    expect((await fetch(`${t.base}/private/tiles/priv/5/16/11.png?apikey=${keys.right}`)).status).toBe(403);
  });
});
