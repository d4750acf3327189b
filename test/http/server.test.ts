// The server over real HTTP: XYZ and TMS tiles against the archive, HTTP caching, CORS, compression,
// the tile cache sharing one read between concurrent misses, metrics and health, registry swaps.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM } from '../../src/geo/tms.js';
import { PMTilesReader } from '../../src/pyramid/pmtiles/reader.js';
import { decodeTile } from '../../src/tiles/codec.js';
import { miriamJpeg, northPng, startServer, type TestServer } from '../helpers/server.js';

let srv: TestServer;
let north: string;
let levels: { id: string; limits: { minX: number; maxX: number; minY: number; maxY: number } }[];
let reader: PMTilesReader;

beforeAll(async () => {
  north = await northPng();
  const miriam = await miriamJpeg();
  srv = await startServer([
    { name: 'north', dir: north, title: 'North <&> "relief"' },
    { name: 'miriam', dir: miriam },
  ]);
  levels = JSON.parse(readFileSync(join(north, 'pyramid.json'), 'utf8')).levels;
  reader = await PMTilesReader.open(join(north, 'tiles.pmtiles'));
});
afterAll(async () => {
  await reader.close();
  await srv.close();
});

function stored(): { z: number; x: number; y: number } {
  const t = [...reader.tiles()].find((t) => t.z === 6)!;
  return t;
}

describe('XYZ and TMS tiles', () => {
  it('serve the archive bytes, TMS counting rows from the bottom', async () => {
    const t = stored();
    const want = Buffer.from((await reader.getTile(t))!);
    const xyz = await fetch(`${srv.url}/tiles/north/${t.z}/${t.x}/${t.y}.png`);
    expect(xyz.status).toBe(200);
    expect(xyz.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await xyz.arrayBuffer()).equals(want)).toBe(true);
    const tmsY = 2 ** t.z - 1 - t.y;
    const tms = await fetch(`${srv.url}/tms/1.0.0/north/${t.z}/${t.x}/${tmsY}.png`);
    expect(tms.status).toBe(200);
    expect(Buffer.from(await tms.arrayBuffer()).equals(want)).toBe(true);
  });

  it('answer 404 outside the limits (TMS: outside the grid) and 400 for malformed indices', async () => {
    const l6 = levels.find((l) => l.id === '6')!.limits;
    for (const path of [`/tiles/north/6/${l6.maxX + 1}/${l6.minY}.png`, `/tiles/north/9/0/0.png`, `/tiles/nope/6/0/0.png`, `/tiles/north/6/${l6.minX}/${l6.minY}.jpg`]) {
      const r = await fetch(srv.url + path);
      expect(r.status, path).toBe(404);
      expect((await r.json()).error_description[0]).toBeTruthy();
    }
    for (const path of ['/tiles/north/6/-1/3.png', '/tiles/north/6/x/3.png', '/tiles/north/6/1/99999999999999.png']) {
      expect((await fetch(srv.url + path)).status, path).toBe(400);
    }
    // TMS: the TileMap is the whole grid, so a served level's tiles outside the limits are blank, not missing
    const outside = await fetch(`${srv.url}/tms/1.0.0/north/6/${l6.maxX + 1}/0.png`);
    expect(outside.status).toBe(200);
    expect((await decodeTile(new Uint8Array(await outside.arrayBuffer()))).alpha.every((a) => a === 0)).toBe(true);
    for (const path of ['/tms/1.0.0/north/9/0/0.png', '/tms/1.0.0/north/6/64/0.png', '/tms/1.0.0/north/6/0/64.png', `/tms/1.0.0/north/6/${l6.minX}/0.jpg`]) {
      const r = await fetch(srv.url + path);
      expect(r.status, path).toBe(404);
      expect(await r.text()).toMatch(/<TileMapServerError>/);
    }
  });

  it('answer a 200 blank tile inside the limits where there is no data', async () => {
    // level 7 is finer than the data's edge detail: its limits hold tiles that are all sea
    const l7 = levels.find((l) => l.id === '7')!.limits;
    let blank: { x: number; y: number } | undefined;
    for (let y = l7.minY; y <= l7.maxY && !blank; y++) for (let x = l7.minX; x <= l7.maxX && !blank; x++) if (!reader.has({ z: 7, x, y })) blank = { x, y };
    expect(blank).toBeDefined();
    const r = await fetch(`${srv.url}/tiles/north/7/${blank!.x}/${blank!.y}.png`);
    expect(r.status).toBe(200);
    const bytes = Buffer.from(await r.arrayBuffer());
    const img = await decodeTile(new Uint8Array(bytes));
    expect(img.width).toBe(256);
    expect(img.alpha.every((a) => a === 0)).toBe(true);
    // asked again (the fast path then answers it from what it remembers of the URL): the same tile, and a 304
    const etag = r.headers.get('ETag')!;
    expect(etag).toMatch(/^"blank-/);
    for (let i = 0; i < 3; i++) {
      const again = await fetch(`${srv.url}/tiles/north/7/${blank!.x}/${blank!.y}.png`);
      expect([again.status, again.headers.get('ETag'), again.headers.get('Content-Type')]).toEqual([200, etag, 'image/png']);
      expect(Buffer.from(await again.arrayBuffer()).equals(bytes)).toBe(true);
    }
    const cond = await fetch(`${srv.url}/tiles/north/7/${blank!.x}/${blank!.y}.png`, { headers: { 'If-None-Match': etag } });
    expect([cond.status, cond.headers.get('ETag'), cond.headers.get('Access-Control-Allow-Origin')]).toEqual([304, etag, '*']);
  });

  it('TileMapService and TileMap documents list the layers with escaped titles', async () => {
    const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });
    const svcText = await (await fetch(`${srv.url}/tms/1.0.0/`)).text();
    const svc = parser.parse(svcText);
    const maps = [svc.TileMapService.TileMaps.TileMap].flat();
    expect(maps.map((m: Record<string, string>) => m['@title']).sort()).toEqual(['North <&> "relief"', 'miriam']);
    expect(svcText).toContain('North &lt;&amp;&gt; &quot;relief&quot;');
    const tm = parser.parse(await (await fetch(`${srv.url}/tms/1.0.0/north`)).text()).TileMap;
    expect(tm.SRS).toBe('EPSG:3857');
    expect(tm.TileFormat['@extension']).toBe('png');
    // the grid's extent and its bottom-left origin: GDAL numbers tiles from the BoundingBox's corner
    expect([tm.BoundingBox['@minx'], tm.BoundingBox['@miny'], tm.BoundingBox['@maxx'], tm.BoundingBox['@maxy']].map(Number)).toEqual([
      PM.extent.minX,
      PM.extent.minY,
      PM.extent.maxX,
      PM.extent.maxY,
    ]);
    expect([tm.Origin['@x'], tm.Origin['@y']].map(Number)).toEqual([PM.extent.minX, PM.extent.minY]);
    expect([tm.TileSets.TileSet].flat().map((t: Record<string, string>) => t['@href'])).toEqual(levels.map((l) => `${srv.url}/tms/1.0.0/north/${l.id}`));
    expect([tm.TileSets.TileSet].flat().map((t: Record<string, string>) => Number(t['@order']))).toEqual(levels.map((l) => Number(l.id)));
  });
});

describe('HTTP behaviour', () => {
  it('ETag and If-None-Match give 304; HEAD has headers and no body; CORS is open', async () => {
    const t = stored();
    const url = `${srv.url}/tiles/north/${t.z}/${t.x}/${t.y}.png`;
    const first = await fetch(url, { headers: { Origin: 'http://example.test' } });
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^".+"$/);
    expect(first.headers.get('cache-control')).toMatch(/max-age=\d+/);
    expect(first.headers.get('access-control-allow-origin')).toBe('*');
    const size = (await first.arrayBuffer()).byteLength;
    const again = await fetch(url, { headers: { 'If-None-Match': etag! } });
    expect(again.status).toBe(304);
    expect((await again.arrayBuffer()).byteLength).toBe(0);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(size);
    expect(head.headers.get('etag')).toBe(etag);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('compresses XML for clients that accept gzip, never the tiles', async () => {
    const r = await fetch(`${srv.url}/tms/1.0.0/north`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(r.headers.get('content-encoding')).toBe('gzip');
    expect(await r.text()).toMatch(/^<\?xml/); // fetch has gunzipped it
    const t = stored();
    const tile = await fetch(`${srv.url}/tiles/north/${t.z}/${t.x}/${t.y}.png`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(tile.headers.get('content-encoding')).toBeNull();
  });
});

describe('tile cache', () => {
  it('concurrent misses for one tile share one archive read, and later requests hit', async () => {
    const t = [...reader.tiles()].find((t) => t.z === 5)!;
    const before = srv.ctx.cache.stats();
    const bodies = await Promise.all(
      Array.from({ length: 20 }, () => fetch(`${srv.url}/tiles/north/5/${t.x}/${t.y}.png`).then((r) => r.arrayBuffer())),
    );
    const mid = srv.ctx.cache.stats();
    expect(mid.loads - before.loads).toBe(1);
    expect(new Set(bodies.map((b) => Buffer.from(b).toString('base64'))).size).toBe(1);
    await (await fetch(`${srv.url}/tiles/north/5/${t.x}/${t.y}.png`)).arrayBuffer();
    const after = srv.ctx.cache.stats();
    expect(after.loads).toBe(mid.loads);
    expect(after.hits).toBeGreaterThan(mid.hits);
    expect(after.bytes).toBeGreaterThan(0);
    expect(after.bytes).toBeLessThanOrEqual(after.maxBytes);
  });
});

describe('health, metrics and registry swaps', () => {
  it('/health answers and /metrics counts requests, tiles and the cache', async () => {
    expect(await (await fetch(`${srv.url}/health`)).json()).toMatchObject({ status: 'ok', layers: 2 });
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    expect(text).toMatch(/tuile_http_requests_total\{route="\/tiles\/:layer\/:z\/:x\/:file",status="200"\} \d+/);
    expect(text).toMatch(/tuile_tile_seconds_count [1-9]\d*/);
    expect(text).toMatch(/tuile_cache_hits_total [1-9]\d*/);
    expect(text).toMatch(/tuile_cache_bytes [1-9]\d*/);
  });

  it('/metrics counts every answer of a tile URL the fast path remembers: 200s, HEADs and 304s', async () => {
    const t = stored();
    const url = `${srv.url}/wmts/1.0.0/north/normal/PM/${t.z}/${t.y}/${t.x}.png`;
    const count = async (status: number) => {
      const text = await (await fetch(`${srv.url}/metrics`)).text();
      const m = text.match(new RegExp(`tuile_http_requests_total\\{route="/wmts/1\\.0\\.0/:layer/:style/:tms/:z/:row/:file",status="${status}"\\} (\\d+)`));
      return m ? Number(m[1]) : 0;
    };
    const [ok0, nm0] = [await count(200), await count(304)];
    const first = await fetch(url);
    const etag = first.headers.get('ETag')!;
    const bytes = Buffer.from(await first.arrayBuffer());
    for (let i = 0; i < 4; i++) {
      const r = await fetch(url);
      expect(r.headers.get('ETag')).toBe(etag);
      expect(Buffer.from(await r.arrayBuffer()).equals(bytes)).toBe(true);
    }
    for (let i = 0; i < 2; i++) {
      const r = await fetch(url, { method: 'HEAD' });
      expect(r.status).toBe(200);
      expect(r.headers.get('Content-Length')).toBe(String(bytes.length));
    }
    for (let i = 0; i < 3; i++) expect((await fetch(url, { headers: { 'If-None-Match': etag } })).status).toBe(304);
    expect(await count(200)).toBe(ok0 + 7);
    expect(await count(304)).toBe(nm0 + 3);
  });

  it('a new registry is installed in one step; the old chain stays readable meanwhile', async () => {
    const t = stored();
    const url = `${srv.url}/tiles/renamed/${t.z}/${t.x}/${t.y}.png`;
    expect((await fetch(url)).status).toBe(404);
    const gen = srv.ctx.holder.current.generation;
    await srv.ctx.holder.load([{ name: 'renamed', dir: north }]);
    expect(srv.ctx.holder.current.generation).toBe(gen + 1);
    expect((await fetch(url)).status).toBe(200);
    expect((await fetch(`${srv.url}/tiles/north/${t.z}/${t.x}/${t.y}.png`)).status).toBe(404);
  });
});
