// Behind a reverse proxy: the capabilities, the TMS documents, the OGC API links, the viewer and the
// management API's offering `urls` all write the one base URL the proxy announces (X-Forwarded-Proto,
// -Host, -Prefix), and TUILE_PUBLIC_URL wins over it.
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

const data = tempDir('tuile-forwarded-');
const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });
const PROXY = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'maps.example.org', 'X-Forwarded-Prefix': '/carto/' };
const BASE = 'https://maps.example.org/carto';
let t: TuileProcess;
let api: Api;
let offering: string;

beforeAll(async () => {
  t = await startTuile(data.path);
  api = new Api(t.base);
  await api.init();
  const u = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
  const e = await api.execute({ upload: [u._id] }, { compression: 'png', bottom: 5 }, 'north');
  const sd = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS'])).entity.output.stored_data._id;
  const conf = (await api.call('POST', `${api.d}/configurations`, api.configuration('pub', sd, '5'))).body;
  const endpoint = (await api.call('GET', `${api.d}/endpoints`)).body.find((x: any) => x.open)._id;
  const o = await api.call('POST', `${api.d}/configurations/${conf._id}/offerings`, { endpoint, open: true });
  expect(o.status).toBe(201);
  offering = o.body._id;
  await api.until(`${api.d}/offerings/${offering}`, ['PUBLISHED']);
});

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

async function text(path: string, headers: Record<string, string> = PROXY): Promise<string> {
  const r = await fetch(t.base + path, { headers });
  expect(r.status, path).toBe(200);
  return r.text();
}

/** Every absolute URL in a document. */
const absolute = (s: string) => [...s.matchAll(/(?:https?:)?\/\/[^\s"'<>]+/g)].map((m) => m[0].replace(/&amp;/g, '&'));

describe('one base URL behind a proxy', () => {
  it('is written by every protocol and the API alike, from the forwarded headers', async () => {
    const caps = xml.parse(await text('/wmts/1.0.0/WMTSCapabilities.xml')).Capabilities;
    const layer = [caps.Contents.Layer].flat()[0];
    expect([layer.ResourceURL].flat()[0]['@template']).toBe(`${BASE}/wmts/1.0.0/pub/{Style}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.png`);
    const kvp = await text('/wmts?SERVICE=WMTS&REQUEST=GetCapabilities');
    expect(kvp).toContain(`xlink:href="${BASE}/wmts?`);

    const tileMap = xml.parse(await text('/tms/1.0.0/pub')).TileMap;
    expect(tileMap['@tilemapservice']).toBe(`${BASE}/tms/1.0.0/`);
    expect([tileMap.TileSets.TileSet].flat()[0]['@href']).toBe(`${BASE}/tms/1.0.0/pub/0`);

    const tileset = JSON.parse(await text('/ogcapi/collections/pub/map/tiles/WebMercatorQuad'));
    for (const l of tileset.links) expect(l.href.startsWith(`${BASE}/ogcapi/`), l.href).toBe(true);

    const index = await text('/');
    const links = absolute(index);
    expect(links.length).toBeGreaterThan(4);
    for (const l of links) expect(l.startsWith(BASE + '/') || l.startsWith('http://www.w3.org'), l).toBe(true);

    const r = await fetch(`${t.base}${api.d}/offerings/${offering}`, { headers: { ...PROXY, Authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(200);
    const urls: { type: string; url: string }[] = (await r.json()).urls;
    expect(urls.map((u) => u.type).sort()).toEqual(['OGCAPI-TILES', 'TMS', 'WMTS', 'XYZ']);
    for (const u of urls) expect(u.url.startsWith(`${BASE}/`), u.url).toBe(true);
    // and each of those URLs is what the protocol itself advertises
    expect(urls.find((u) => u.type === 'TMS')!.url).toBe(`${BASE}/tms/1.0.0/pub`);
    expect(urls.find((u) => u.type === 'XYZ')!.url).toBe(`${BASE}/tiles/pub/{z}/{x}/{y}.png`);
  });

  it('ignores a prefix that is not a path, and uses the request itself without proxy headers', async () => {
    const hostile = await text('/tms/1.0.0/pub', { ...PROXY, 'X-Forwarded-Prefix': '/x"><script>' });
    expect(xml.parse(hostile).TileMap['@tilemapservice']).toBe('https://maps.example.org/tms/1.0.0/');
    const direct = xml.parse(await text('/tms/1.0.0/pub', {})).TileMap;
    expect(direct['@tilemapservice']).toBe(`${t.base}/tms/1.0.0/`);
  });
});

describe('TUILE_PUBLIC_URL', () => {
  it('wins over the forwarded headers in the protocols and the API', async () => {
    await t.stop();
    t = await startTuile(data.path, { TUILE_PUBLIC_URL: 'https://tiles.example.net/base/' });
    const tileMap = xml.parse(await text('/tms/1.0.0/pub')).TileMap;
    expect(tileMap['@tilemapservice']).toBe('https://tiles.example.net/base/tms/1.0.0/');
    const r = await fetch(`${t.base}${api.d}/offerings/${offering}`, { headers: { ...PROXY, Authorization: `Bearer ${TOKEN}` } });
    for (const u of (await r.json()).urls) expect(u.url.startsWith('https://tiles.example.net/base/'), u.url).toBe(true);
  });
});
