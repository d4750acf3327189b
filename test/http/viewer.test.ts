// The HTML face: the index of layers (escaped), the viewer page and its OpenLayers assets, and the viewer
// drawing tiles in headless Chromium.

import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { miriamJpeg, northPng, startServer, type TestServer } from '../helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const TITLE = 'Relief <nord> & "co"';
const ESCAPED = 'Relief &lt;nord&gt; &amp; &quot;co&quot;';

interface ViewerState {
  rendered: boolean;
  tilesLoaded: number;
  tileErrors: number;
  error: string | null;
}

declare global {
  interface Window {
    tuileViewer?: ViewerState;
  }
}

let server: TestServer;

beforeAll(async () => {
  const [north, miriam] = await Promise.all([northPng(), miriamJpeg()]);
  server = await startServer([
    { name: 'north', dir: north, title: TITLE, abstract: 'Shaded <relief> of northern France' },
    { name: 'miriam', dir: miriam, title: 'MODIS Miriam' },
    { name: 'hidden', dir: north, title: 'Hidden layer', available: false },
  ]);
});

afterAll(async () => {
  await server?.close();
});

async function getHtml(path: string, status = 200): Promise<string> {
  const res = await fetch(`${server.url}${path}`);
  expect(res.status, path).toBe(status);
  expect(res.headers.get('content-type'), path).toMatch(/^text\/html/);
  return res.text();
}

describe('index page', () => {
  it('lists the visible layers with escaped text and their URLs per protocol', async () => {
    const html = await getHtml('/');
    expect(html).toContain(ESCAPED);
    expect(html).toContain('Shaded &lt;relief&gt; of northern France');
    expect(html).not.toContain('<nord>');
    expect(html).not.toContain('<relief>');
    expect(html).not.toContain('Hidden layer');
    const u = server.url;
    for (const [name, ext] of [
      ['north', 'png'],
      ['miriam', 'jpg'],
    ]) {
      expect(html).toContain(`href="${u}/viewer/${name}"`);
      expect(html).toContain(`href="${u}/tms/1.0.0/${name}"`);
      expect(html).toContain(`${u}/tiles/${name}/{z}/{x}/{y}.${ext}`);
      expect(html).toContain(`href="${u}/ogcapi/collections/${name}/map/tiles/WebMercatorQuad"`);
    }
    expect(html).toContain(`href="${u}/wmts/1.0.0/WMTSCapabilities.xml"`);
    expect(html).toContain(`href="${u}/wmts?SERVICE=WMTS&amp;REQUEST=GetCapabilities"`);
  });

  it('links only to pages that answer', async () => {
    const html = await getHtml('/');
    const hrefs = [...html.matchAll(/href="([^"]+)"/g)].map((m) => m[1].replace(/&amp;/g, '&'));
    expect(hrefs.length).toBeGreaterThan(8);
    for (const href of hrefs) {
      const res = await fetch(href);
      expect(res.status, href).toBe(200);
      await res.arrayBuffer();
    }
  });
});

describe('viewer page', () => {
  it('loads OpenLayers from tuile itself and the layer from the WMTS capabilities', async () => {
    const html = await getHtml('/viewer/north');
    expect(html).toContain(`<title>${ESCAPED} · tuile</title>`);
    expect(html).toContain('<script src="assets/ol.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="assets/ol.css">');
    expect(html).toContain('../wmts/1.0.0/WMTSCapabilities.xml');
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });

  it('serves the ol package build with caching headers', async () => {
    const js = await fetch(`${server.url}/viewer/assets/ol.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    const text = await js.text();
    expect(text.startsWith('var ol=')).toBe(true);
    const etag = js.headers.get('etag');
    expect(etag).toBeTruthy();
    expect((await fetch(`${server.url}/viewer/assets/ol.js`, { headers: { 'If-None-Match': etag as string } })).status).toBe(304);
    const css = await fetch(`${server.url}/viewer/assets/ol.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    expect(await css.text()).toContain('.ol-zoom');
    expect((await fetch(`${server.url}/viewer/assets/package.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/viewer/assets/..%2Fpackage.json`)).status).toBe(404);
  });

  it('answers 404 HTML for an unknown or unpublished layer, escaping its name', async () => {
    expect(await getHtml('/viewer/nope', 404)).toContain('nope');
    expect(await getHtml('/viewer/hidden', 404)).not.toContain('Hidden layer');
    const html = await getHtml(`/viewer/${encodeURIComponent('<b>&')}`, 404);
    expect(html).toContain('&lt;b&gt;&amp;');
    expect(html).not.toContain('<b>&');
  });
});

describe('viewer in a browser', () => {
  it('draws the layer tiles in headless Chromium', async () => {
    if (!existsSync(CHROMIUM)) {
      if (process.env.TUILE_REQUIRE_BROWSER === '1') {
        throw new Error(`${CHROMIUM} is missing and TUILE_REQUIRE_BROWSER=1: install it with apt-get install -y --no-install-recommends chromium`);
      }
      console.warn(`viewer browser test did not run: ${CHROMIUM} is missing (TUILE_REQUIRE_BROWSER=1 makes this a failure)`);
      return;
    }
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
      const requests: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });

      await page.goto(`${server.url}/viewer/north`);
      await page.waitForFunction(() => window.tuileViewer?.rendered || window.tuileViewer?.error, null, { timeout: 60_000 });
      const state = await page.evaluate(() => {
        const s = window.tuileViewer as ViewerState;
        return { rendered: s.rendered, tilesLoaded: s.tilesLoaded, tileErrors: s.tileErrors, error: s.error };
      });
      const shot = join(tmpdir(), `tuile-viewer-north-${process.pid}.png`);
      await page.screenshot({ path: shot });
      console.log(`viewer screenshot: ${shot}`);

      expect(state.error, problems.join('\n')).toBeNull();
      expect(state.rendered).toBe(true);
      expect(state.tilesLoaded).toBeGreaterThan(0);
      expect(state.tileErrors).toBe(0);
      expect(problems).toEqual([]);
      // no CDN: everything the page loads comes from tuile
      expect(requests.filter((u) => !u.startsWith(server.url) && !u.startsWith('data:'))).toEqual([]);
      expect(requests.some((u) => u.includes('/wmts/'))).toBe(true);

      // the map area: count pixels that differ from its white background
      const box = await page.locator('#map').boundingBox();
      if (!box) throw new Error('the map element has no box');
      expect(box.width * box.height).toBeGreaterThan(900 * 500);
      const { data, info } = await sharp(shot)
        .extract({ left: Math.round(box.x), top: Math.round(box.y), width: Math.floor(box.width), height: Math.floor(box.height) })
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      let drawn = 0;
      for (let i = 0; i < data.length; i += info.channels) {
        if (Math.abs(data[i] - 255) + Math.abs(data[i + 1] - 255) + Math.abs(data[i + 2] - 255) > 24) drawn++;
      }
      const share = drawn / (info.width * info.height);
      console.log(`viewer map area: ${(share * 100).toFixed(1)} % of pixels drawn`);
      // the relief covers about a quarter of the fitted view; an empty map draws only its zoom buttons (< 1 %)
      expect(share).toBeGreaterThan(0.1);
    } finally {
      await browser.close();
    }
  });
});
