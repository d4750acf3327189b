// CORS on every diffusion answer: tiles, 304, HEAD, blank tiles, documents, and every protocol's errors
// carry the same headers, read over HTTP and seen by Chromium from another origin (where a missing header
// turns a 404 into a network error). Missing Chromium fails only when TUILE_REQUIRE_BROWSER=1 (CI).
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORS_EXPOSE } from '../../src/protocols/tile.js';
import { northPng, startServer, type TestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';

let srv: TestServer;
let limits: { z: number; minX: number; maxX: number; minY: number; maxY: number };

beforeAll(async () => {
  const north = await northPng();
  srv = await startServer([
    { name: 'north', dir: north },
    { name: 'closed', dir: north, open: false },
  ]);
  limits = srv.ctx.holder.current.get('north')!.levels.find((l) => l.z === 6)!;
});
afterAll(async () => {
  await srv?.close();
});

/** Answers of every protocol, success and error, with the status each must have. */
function cases(): [string, number][] {
  const { z, minX: x, minY: y, maxX, maxY } = limits;
  const kvp = (row: number, col: number) => `/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=north&STYLE=normal&FORMAT=image%2Fpng&TILEMATRIXSET=PM&TILEMATRIX=${z}&TILEROW=${row}&TILECOL=${col}`;
  return [
    [`/tiles/north/${z}/${x}/${y}.png`, 200],
    [`/tiles/north/${z}/${maxX + 1}/${y}.png`, 404],
    [`/tiles/north/${z}/${x}/${y}.jpg`, 404],
    [`/tiles/north/${z}/-1/${y}.png`, 400],
    [`/tiles/nope/${z}/${x}/${y}.png`, 404],
    [`/tiles/closed/${z}/${x}/${y}.png`, 401],
    [`/tms/1.0.0/north/${z}/${x}/${2 ** z - 1 - y}.png`, 200],
    [`/tms/1.0.0/north/${z + 9}/0/0.png`, 404],
    [`/tms/1.0.0/north/${z}/${2 ** z}/0.png`, 404],
    [`/tms/1.0.0/nope`, 404],
    [kvp(y, x), 200],
    [kvp(y, maxX + 1), 400],
    [kvp(maxY + 1, x), 400],
    [`/wmts?SERVICE=WMTS&REQUEST=GetTile`, 400],
    [`/wmts?SERVICE=WMTS&REQUEST=Nope`, 501],
    [`/wmts/1.0.0/north/normal/PM/${z}/${y}/${x}.png`, 200],
    [`/wmts/1.0.0/north/normal/PM/${z}/${y}/${maxX + 1}.png`, 400],
    [`/wmts/1.0.0/north/other/PM/${z}/${y}/${x}.png`, 400],
    [`/wmts/1.0.0/north/normal/PM/${z}/${y}/${x}/3/4.json`, 200],
    [`/wmts/1.0.0/north/normal/PM/${z}/${y}/${x}/300/4.json`, 400],
    [`/ogcapi/collections/north/map/tiles/WebMercatorQuad/${z}/${y}/${x}`, 200],
    [`/ogcapi/collections/north/map/tiles/WebMercatorQuad/${z}/${y}/${maxX + 1}`, 404],
    [`/ogcapi/collections/nope`, 404],
    ['/wmts?SERVICE=WMTS&REQUEST=GetCapabilities', 200],
    ['/wmts/1.0.0/WMTSCapabilities.xml', 200],
    ['/tms/1.0.0/north', 200],
    ['/viewer/nope', 404],
    ['/nowhere', 404],
    ['/health', 200],
  ];
}

function expectCors(r: Response, what: string): void {
  expect(r.headers.get('access-control-allow-origin'), what).toBe('*');
  const exposed = (r.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim().toLowerCase());
  expect(exposed.sort(), what).toEqual(CORS_EXPOSE.map((h) => h.toLowerCase()).sort());
}

describe('CORS headers', () => {
  it('are on every answer of every protocol, errors included, GET and HEAD', async () => {
    for (const [path, status] of cases()) {
      for (const method of ['GET', 'HEAD']) {
        const r = await fetch(srv.url + path, { method, headers: { Origin: 'http://elsewhere.test' } });
        await r.arrayBuffer();
        expect(r.status, `${method} ${path}`).toBe(status);
        expectCors(r, `${method} ${path}`);
      }
    }
  });

  it('are on 304 answers of every tile form, and a preflight allows If-None-Match', async () => {
    for (const [path, status] of cases()) {
      if (status !== 200 || !/\.png$|WebMercatorQuad\/|GetTile/.test(path)) continue;
      const first = await fetch(srv.url + path);
      await first.arrayBuffer();
      const etag = first.headers.get('etag')!;
      const again = await fetch(srv.url + path, { headers: { 'If-None-Match': etag, Origin: 'http://elsewhere.test' } });
      expect(again.status, path).toBe(304);
      expectCors(again, `304 ${path}`);
    }
    const pre = await fetch(`${srv.url}/tiles/north/6/0/0.png`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://elsewhere.test', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'if-none-match' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('if-none-match');
  });

  it('let Chromium read errors and 304 from another origin', async () => {
    if (!existsSync(CHROMIUM)) {
      expect(process.env.TUILE_REQUIRE_BROWSER, `${CHROMIUM} is required: TUILE_REQUIRE_BROWSER=1`).not.toBe('1');
      console.warn(`cors.test: ${CHROMIUM} is missing: the browser check did NOT run`);
      return;
    }
    // a page on another origin (another port) fetching tuile's answers in CORS mode, as map libraries do
    const page: Server = createServer((_, res) => res.end('<!DOCTYPE html><title>other origin</title>'));
    await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
    const origin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    try {
      const tab = await browser.newPage();
      await tab.goto(`${origin}/`);
      const urls = cases().map(([path]) => srv.url + path);
      const seen = await tab.evaluate(async (list: string[]) => {
        const out: (number | string)[] = [];
        for (const u of list) {
          try {
            const r = await fetch(u, { mode: 'cors', cache: 'no-store' });
            await r.arrayBuffer();
            out.push(r.status);
          } catch (e) {
            out.push(`network error: ${(e as Error).message}`);
          }
        }
        // a revalidation: the browser sends If-None-Match itself and must read the 304
        const tile = list[0];
        const first = await fetch(tile, { mode: 'cors', cache: 'no-store' });
        const etag = first.headers.get('ETag');
        const again = await fetch(tile, { mode: 'cors', cache: 'no-store', headers: { 'If-None-Match': etag ?? '' } });
        out.push(again.status);
        return out;
      }, urls);
      expect(seen).toEqual([...cases().map(([, status]) => status), 304]);
    } finally {
      await browser.close();
      await new Promise<void>((r) => page.close(() => r()));
    }
  });
});
