// OGC API - Tiles over HTTP: every resource parsed and checked, links followed, tiles against XYZ byte for byte.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM } from '../../src/geo/tms.js';
import type { Layer } from '../../src/registry.js';
import { decodeTile } from '../../src/tiles/codec.js';
import { miriamJpeg, northPng, startServer, type TestServer } from '../helpers/server.js';

const TILES_CONF = 'http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/';
const REL = 'http://www.opengis.net/def/rel/ogc/1.0/';
const TITLE = 'Relief <nord> & "co"';

interface Link {
  href: string;
  rel: string;
  type?: string;
  title?: string;
  templated?: boolean;
}

type Json = Record<string, any>;

let server: TestServer;
let api: string;

beforeAll(async () => {
  const [north, miriam] = await Promise.all([northPng(), miriamJpeg()]);
  server = await startServer([
    { name: 'north', dir: north, title: TITLE, abstract: 'Shaded relief of northern France' },
    { name: 'miriam', dir: miriam, title: 'MODIS Miriam' },
    { name: 'hidden', dir: north, available: false },
  ]);
  api = `${server.url}/ogcapi`;
});

afterAll(async () => {
  await server?.close();
});

function layer(name: string): Layer {
  const l = server.ctx.holder.current.get(name);
  if (!l) throw new Error(`no layer ${name} in the test registry`);
  return l;
}

async function getJson(url: string, status = 200): Promise<Json> {
  const res = await fetch(url);
  expect(res.status, url).toBe(status);
  expect(res.headers.get('content-type'), url).toMatch(/^application\/json/);
  return (await res.json()) as Json;
}

async function getBytes(url: string): Promise<{ status: number; type: string | null; body: Uint8Array }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type'), body: new Uint8Array(await res.arrayBuffer()) };
}

function link(links: Link[], rel: string): Link {
  const l = links.find((x) => x.rel === rel);
  if (!l) throw new Error(`no link rel=${rel} in ${JSON.stringify(links)}`);
  return l;
}

/** Every link has a type and a title, and (unless a template) answers with that type. */
async function checkLinks(links: Link[]): Promise<void> {
  for (const l of links) {
    expect(l.type, l.href).toBeTruthy();
    expect(l.title, l.href).toBeTruthy();
    expect(l.href.startsWith(server.url), l.href).toBe(true);
    if (l.templated) continue;
    const res = await fetch(l.href);
    expect(res.status, l.href).toBe(200);
    expect(res.headers.get('content-type'), l.href).toContain(l.type);
    await res.arrayBuffer();
  }
}

describe('OGC API - Tiles metadata', () => {
  it('landing page links to itself, conformance, collections and tiling schemes', async () => {
    const doc = await getJson(api);
    expect(doc.title).toBe('tuile');
    const links = doc.links as Link[];
    expect(link(links, 'self').href).toBe(api);
    expect(link(links, 'conformance').href).toBe(`${api}/conformance`);
    expect(link(links, `${REL}conformance`).href).toBe(`${api}/conformance`);
    expect(link(links, 'data').href).toBe(`${api}/collections`);
    expect(link(links, `${REL}data`).href).toBe(`${api}/collections`);
    expect(link(links, `${REL}tiling-schemes`).href).toBe(`${api}/tileMatrixSets`);
    expect(links.some((l) => l.rel === 'service-desc')).toBe(false);
    await checkLinks(links);
  });

  it('declares the classes it implements, and no more', async () => {
    const doc = await getJson(`${api}/conformance`);
    const classes = doc.conformsTo as string[];
    for (const c of ['core', 'tileset', 'tilesets-list', 'geodata-tilesets', 'png', 'jpeg']) expect(classes).toContain(`${TILES_CONF}${c}`);
    expect(classes.filter((c) => /oas30|openapi|webp|dataset-tilesets|collections-selection|datetime/.test(c))).toEqual([]);
    expect(new Set(classes).size).toBe(classes.length);
  });

  it('answers f=json and refuses other metadata formats', async () => {
    expect((await getJson(`${api}/conformance?f=json`)).conformsTo).toBeInstanceOf(Array);
    const err = await getJson(`${api}/collections?f=html`, 400);
    expect(err.error).toBe('bad_request');
  });

  it('lists WebMercatorQuad and defines it from the PM data object (OGC 17-083r4)', async () => {
    const list = await getJson(`${api}/tileMatrixSets`);
    expect(list.tileMatrixSets).toHaveLength(1);
    const item = list.tileMatrixSets[0];
    expect(item.id).toBe('WebMercatorQuad');
    expect(item.uri).toBe('http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad');
    await checkLinks([...list.links, ...item.links]);

    const tms = await getJson(link(item.links, 'self').href);
    expect(tms.id).toBe('WebMercatorQuad');
    expect(tms.uri).toBe('http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad');
    expect(tms.crs).toBe('http://www.opengis.net/def/crs/EPSG/0/3857');
    expect(tms.orderedAxes).toEqual(['E', 'N']);
    expect(tms.tileMatrices).toHaveLength(PM.levels.length);
    tms.tileMatrices.forEach((m: Json, z: number) => {
      expect(m.id).toBe(String(z));
      expect(m.cornerOfOrigin).toBe('topLeft');
      expect(m.pointOfOrigin).toEqual([-20037508.342789244, 20037508.342789244]);
      expect(m.tileWidth).toBe(256);
      expect(m.tileHeight).toBe(256);
      expect(m.matrixWidth).toBe(2 ** z);
      expect(m.matrixHeight).toBe(2 ** z);
      expect(m.cellSize).toBeCloseTo(156543.03392804097 / 2 ** z, 9);
      // the registered definition's values, to its printed precision
      expect(m.scaleDenominator / (559082264.0287178 / 2 ** z)).toBeCloseTo(1, 12);
    });
    expect((await getJson(`${api}/tileMatrixSets/WorldCRS84Quad`, 404)).error).toBe('not_found');
  });

  it('lists one collection per visible layer with its WGS84 extent and map tilesets', async () => {
    const doc = await getJson(`${api}/collections`);
    const cols = doc.collections as Json[];
    expect(cols.map((c) => c.id)).toEqual(['miriam', 'north']);
    for (const c of cols) {
      const b = layer(c.id).bboxLonLat;
      expect(c.extent.spatial.bbox).toEqual([[b.minX, b.minY, b.maxX, b.maxY]]);
      expect(c.extent.spatial.crs).toBe('http://www.opengis.net/def/crs/OGC/1.3/CRS84');
      expect(c.dataType).toBe('map');
      expect(link(c.links, `${REL}tilesets-map`).href).toBe(`${api}/collections/${c.id}/map/tiles`);
      expect(await getJson(link(c.links, 'self').href)).toEqual(c);
      await checkLinks(c.links);
    }
    expect(cols.find((c) => c.id === 'north')?.title).toBe(TITLE);
    expect(cols.find((c) => c.id === 'north')?.description).toBe('Shaded relief of northern France');
  });

  it('answers 404 JSON for an unknown or unpublished collection', async () => {
    for (const name of ['nope', 'hidden']) {
      for (const path of ['', '/map/tiles', '/map/tiles/WebMercatorQuad', '/map/tiles/WebMercatorQuad/0/0/0']) {
        const res = await fetch(`${api}/collections/${name}${path}`);
        expect(res.status, `${name}${path}`).toBe(404);
        expect(((await res.json()) as Json).error).toBe('not_found');
      }
    }
    expect((await getJson(`${api}/collections/north/map/tiles/WorldCRS84Quad`, 404)).error).toBe('not_found');
  });

  it('describes each map tileset with its limits per served level and a tile URL template', async () => {
    for (const name of ['north', 'miriam']) {
      const l = layer(name);
      const list = await getJson(`${api}/collections/${name}/map/tiles`);
      expect(list.tilesets).toHaveLength(1);
      const item = list.tilesets[0];
      expect(item.dataType).toBe('map');
      expect(item.crs).toBe('http://www.opengis.net/def/crs/EPSG/0/3857');
      expect(item.tileMatrixSetURI).toBe('http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad');
      expect(link(item.links, `${REL}tiling-scheme`).href).toBe(`${api}/tileMatrixSets/WebMercatorQuad`);
      await checkLinks([...list.links, ...item.links]);

      const ts = await getJson(link(item.links, 'self').href);
      expect(ts.dataType).toBe('map');
      expect(ts.crs).toBe(item.crs);
      expect(ts.tileMatrixSetURI).toBe(item.tileMatrixSetURI);
      expect(ts.tileMatrixSetLimits).toEqual(
        l.levels.map((v) => ({ tileMatrix: String(v.z), minTileRow: v.minY, maxTileRow: v.maxY, minTileCol: v.minX, maxTileCol: v.maxX })),
      );
      const mime = name === 'north' ? 'image/png' : 'image/jpeg';
      expect(ts.mediaTypes).toEqual([mime]);
      const item2 = link(ts.links, 'item');
      expect(item2).toMatchObject({
        href: `${api}/collections/${name}/map/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}`,
        type: mime,
        templated: true,
      });
      expect(link(ts.links, `${REL}geodata`).href).toBe(`${api}/collections/${name}`);
      await checkLinks(ts.links);
    }
  });
});

describe('OGC API - Tiles tiles', () => {
  const template = (name: string) => `${api}/collections/${name}/map/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}`;
  const fill = (t: string, m: number, row: number, col: number) =>
    t.replace('{tileMatrix}', String(m)).replace('{tileRow}', String(row)).replace('{tileCol}', String(col));

  it('serves every tile inside the limits byte-identical to XYZ (col = x, row = y from the top)', async () => {
    for (const [name, ext, mime] of [
      ['north', 'png', 'image/png'],
      ['miriam', 'jpg', 'image/jpeg'],
    ]) {
      let n = 0;
      for (const v of layer(name).levels) {
        for (let row = v.minY; row <= v.maxY; row++) {
          for (let col = v.minX; col <= v.maxX; col++) {
            const ogc = await getBytes(fill(template(name), v.z, row, col));
            const xyz = await getBytes(`${server.url}/tiles/${name}/${v.z}/${col}/${row}.${ext}`);
            expect(ogc.status, `${name} ${v.z}/${row}/${col}`).toBe(200);
            expect(xyz.status).toBe(200);
            expect(ogc.type).toBe(mime);
            expect(Buffer.from(ogc.body).equals(Buffer.from(xyz.body)), `${name} ${v.z}/${row}/${col}`).toBe(true);
            n++;
          }
        }
      }
      expect(n).toBeGreaterThan(20);
    }
  });

  it('answers 404 JSON outside the limits, the served levels or the matrix set', async () => {
    const l = layer('north');
    const deepest = l.levels[l.levels.length - 1];
    const cases = [
      [deepest.z, deepest.maxY + 1, deepest.minX],
      [deepest.z, deepest.minY, deepest.maxX + 1],
      [deepest.z, deepest.minY - 1, deepest.minX],
      [deepest.z + 1, deepest.minY * 2, deepest.minX * 2], // level not served
      [30, 0, 0], // level not in WebMercatorQuad
      [1, 5, 0], // row beyond the matrix
    ];
    for (const [m, row, col] of cases) {
      const res = await fetch(fill(template('north'), m, row, col));
      expect(res.status, `${m}/${row}/${col}`).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const err = (await res.json()) as Json;
      expect(err.error).toBe('not_found');
      expect(err.error_description[0]).toBeTruthy();
    }
  });

  it('answers a blank 200 tile inside the limits where there is no data', async () => {
    const l = layer('north');
    const v = l.levels.find((x) => x.z === 7);
    if (!v) throw new Error('the north pyramid should serve level 7');
    let blank: { row: number; col: number } | undefined;
    for (let row = v.minY; row <= v.maxY && !blank; row++) {
      for (let col = v.minX; col <= v.maxX && !blank; col++) if (!l.chain.locate({ z: 7, x: col, y: row })) blank = { row, col };
    }
    if (!blank) throw new Error('level 7 of the north pyramid should have tiles without data inside its limits');
    const res = await getBytes(fill(template('north'), 7, blank.row, blank.col));
    expect(res.status).toBe(200);
    expect(res.type).toBe('image/png');
    const tile = await decodeTile(res.body);
    expect(tile.width).toBe(256);
    expect(tile.alpha.every((a) => a === 0)).toBe(true);
  });

  it('honours f for the layer own format only', async () => {
    const png = fill(template('north'), 0, 0, 0);
    expect((await getBytes(`${png}?f=png`)).type).toBe('image/png');
    const jpgOk = await getBytes(`${fill(template('miriam'), 0, 0, 0)}?f=jpeg`);
    expect(jpgOk.status).toBe(200);
    expect(jpgOk.type).toBe('image/jpeg');
    for (const [f, status, code] of [
      ['jpeg', 406, 'not_acceptable'],
      ['webp', 406, 'not_acceptable'],
      ['gif', 400, 'bad_request'],
      ['json', 400, 'bad_request'],
    ] as const) {
      const res = await fetch(`${png}?f=${f}`);
      expect(res.status, f).toBe(status);
      expect(((await res.json()) as Json).error).toBe(code);
    }
  });

  it('answers 400 JSON for indices that are not non-negative integers', async () => {
    for (const path of ['a/0/0', '0/-1/0', '0/0/1.5', '0/00/0']) {
      const res = await fetch(`${api}/collections/north/map/tiles/WebMercatorQuad/${path}`);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as Json).error).toBe('bad_request');
    }
  });

  it('supports ETag revalidation and HEAD', async () => {
    const url = fill(template('north'), 0, 0, 0);
    const first = await fetch(url);
    const etag = first.headers.get('etag');
    expect(etag).toBeTruthy();
    await first.arrayBuffer();
    const again = await fetch(url, { headers: { 'If-None-Match': etag as string } });
    expect(again.status).toBe(304);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('image/png');
    expect(new Uint8Array(await head.arrayBuffer()).byteLength).toBe(0);
  });
});
