// The HTML face: `/` lists the visible layers with their URLs per protocol, `/viewer/{layer}` shows one on
// an OpenLayers map read from the WMTS capabilities, with OpenLayers served from its npm package.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Hono } from 'hono';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { statusOf } from '../errors.js';
import type { Layer } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { apiKeyOf, baseUrl, denial, type ServerContext } from './tile.js';

const require = createRequire(import.meta.url);

/** Files of the `ol` package that the viewer loads; it is a runtime dependency, so they are installed. */
const ASSETS: Record<string, { module: string; type: string }> = {
  'ol.js': { module: 'ol/dist/ol.js', type: 'text/javascript; charset=utf-8' },
  'ol.css': { module: 'ol/ol.css', type: 'text/css; charset=utf-8' },
  'ol.js.map': { module: 'ol/dist/ol.js.map', type: 'application/json' },
};

interface Asset {
  data: Uint8Array;
  etag: string;
  type: string;
}

const loaded = new Map<string, Promise<Asset>>();

function loadAsset(name: string): Promise<Asset> {
  let p = loaded.get(name);
  if (!p) {
    const spec = ASSETS[name];
    p = readFile(require.resolve(spec.module)).then((data) => ({
      data,
      etag: `"${createHash('sha1').update(data).digest('hex').slice(0, 20)}"`,
      type: spec.type,
    }));
    // a failed read (package missing) is retried by the next request rather than remembered
    p.catch(() => loaded.delete(name));
    loaded.set(name, p);
  }
  return p;
}

type Html = HtmlEscapedString;

/** Hono's `html` template (every interpolated string escaped, nested templates kept), as one string. */
function h(strings: TemplateStringsArray, ...values: unknown[]): Html {
  return html(strings, ...values) as Html;
}

/** JSON that can sit inside a <script> element: no `</script>` or `<!--` can appear in it. */
function scriptJson(v: unknown): Html {
  return raw(JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026'));
}

const STYLE = `
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: #1f2933; }
  header { background: #1f2933; color: #f5f7fa; padding: 8px 16px; display: flex; gap: 16px; align-items: baseline; }
  header a { color: #9fd3ff; }
  main { padding: 8px 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid #d9e2ec; }
  code { font-size: 13px; word-break: break-all; }
  .muted { color: #52606d; }
  ul { margin: 0; padding-left: 18px; }
`;

function page(title: string, body: Html, head: Html = raw('')): Html {
  return h`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${title}</title>
<style>${raw(STYLE)}</style>
${head}
</head>
<body>
${body}
</body>
</html>
`;
}

function layerRow(base: string, l: Layer): Html {
  const name = encodeURIComponent(l.name);
  const ext = FORMATS[l.format].ext;
  const zs = l.levels.map((v) => v.z);
  const link = (href: string, text: string) => h`<a href="${href}">${text}</a>`;
  const wmts = `${base}/wmts/1.0.0/WMTSCapabilities.xml`;
  return h`<tr>
<td><strong>${l.title}</strong><br><code>${l.name}</code>${l.abstract ? h`<br><span class="muted">${l.abstract}</span>` : ''}</td>
<td>${FORMATS[l.format].mime}<br>levels ${Math.min(...zs)} to ${Math.max(...zs)}</td>
<td><ul>
<li>${link(`${base}/viewer/${name}`, 'Map viewer')}</li>
<li>WMTS: ${link(wmts, wmts)} (layer <code>${l.name}</code>)</li>
<li>TMS: ${link(`${base}/tms/1.0.0/${name}`, `${base}/tms/1.0.0/${name}`)}</li>
<li>XYZ: <code>${`${base}/tiles/${name}/{z}/{x}/{y}.${ext}`}</code></li>
<li>OGC API - Tiles: ${link(`${base}/ogcapi/collections/${name}/map/tiles/WebMercatorQuad`, `${base}/ogcapi/collections/${name}/map/tiles/WebMercatorQuad`)}</li>
</ul></td>
</tr>`;
}

function indexPage(base: string, layers: Layer[]): Html {
  const rows = raw(layers.map((l) => layerRow(base, l)).join('\n'));
  return page(
    'tuile',
    h`<header><strong>tuile</strong><span>raster tile server</span></header>
<main>
<p>Services:
<a href="${`${base}/wmts/1.0.0/WMTSCapabilities.xml`}">WMTS capabilities</a> ·
<a href="${`${base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`}">WMTS KVP</a> ·
<a href="${`${base}/tms/1.0.0/`}">TMS</a> ·
<a href="${`${base}/ogcapi`}">OGC API - Tiles</a></p>
${
  layers.length
    ? h`<table>
<thead><tr><th>Layer</th><th>Tiles</th><th>URLs</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`
    : h`<p>No layer is published.</p>`
}
</main>`,
  );
}

// Runs in the browser with the `ol` UMD build (global `ol`). It exposes its state on window.tuileViewer so
// that tests and users can tell a loaded map from a failed one.
const VIEWER_SCRIPT = `
(function () {
  var cfg = JSON.parse(document.getElementById('tuile-config').textContent);
  var state = (window.tuileViewer = { rendered: false, tilesLoaded: 0, tileErrors: 0, error: null, map: null });
  var status = document.getElementById('status');
  function fail(message) {
    state.error = message;
    status.textContent = message;
    status.className = 'error';
  }
  fetch(cfg.capabilities)
    .then(function (r) {
      if (!r.ok) throw new Error('WMTS capabilities: HTTP ' + r.status);
      return r.text();
    })
    .then(function (text) {
      var xml = new DOMParser().parseFromString(text, 'application/xml');
      var bad = xml.getElementsByTagName('parsererror')[0];
      if (bad) throw new Error('WMTS capabilities are not well-formed XML: ' + bad.textContent);
      var caps = new ol.format.WMTSCapabilities().read(xml);
      var options = ol.source.WMTS.optionsFromCapabilities(caps, { layer: cfg.layer, matrixSet: cfg.matrixSet });
      if (!options) throw new Error('layer ' + cfg.layer + ' is not in the WMTS capabilities');
      var source = new ol.source.WMTS(options);
      source.on('tileloadend', function () { state.tilesLoaded++; });
      source.on('tileloaderror', function () { state.tileErrors++; });
      var map = new ol.Map({
        target: 'map',
        layers: [new ol.layer.Tile({ source: source })],
        view: new ol.View({ projection: cfg.projection }),
      });
      map.getView().fit(cfg.extent, { padding: [16, 16, 16, 16] });
      map.on('rendercomplete', function () {
        state.rendered = true;
        status.textContent = 'zoom ' + map.getView().getZoom().toFixed(1);
      });
      state.map = map;
    })
    .catch(function (err) { fail(String(err && err.message ? err.message : err)); });
})();
`;

function viewerPage(l: Layer, key?: string): Html {
  const b = l.bbox;
  // relative URLs: the page works behind a proxy that mounts tuile under a path prefix
  const cfg = {
    layer: l.name,
    matrixSet: l.tms.id,
    projection: l.tms.crs,
    extent: [b.minX, b.minY, b.maxX, b.maxY],
    // a key given to the page goes on to the capabilities, whose tile URLs then carry it
    capabilities: `../wmts/1.0.0/WMTSCapabilities.xml${key ? `?apikey=${encodeURIComponent(key)}` : ''}`,
  };
  return page(
    `${l.title} · tuile`,
    h`<header><a href="../">tuile</a><strong>${l.title}</strong><span id="status" class="muted">loading…</span></header>
<div id="map" role="region" aria-label="${`Map of ${l.title}`}"></div>
<noscript>The map needs JavaScript.</noscript>
<script id="tuile-config" type="application/json">${scriptJson(cfg)}</script>
<script src="assets/ol.js"></script>
<script>${raw(VIEWER_SCRIPT)}</script>`,
    h`<link rel="stylesheet" href="assets/ol.css">
<style>
  html, body { height: 100%; }
  body { display: flex; flex-direction: column; }
  #map { flex: 1; background: #ffffff; }
  #status.error { color: #ff9b9b; }
</style>`,
  );
}

export function viewerRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.get('/', (c) => c.html(indexPage(baseUrl(ctx, c.req.raw), ctx.holder.current.visible(apiKeyOf(c.req.raw)))));

  app.get('/viewer/assets/:file', async (c) => {
    const file = c.req.param('file');
    if (!Object.hasOwn(ASSETS, file)) return c.text(`no asset ${file}`, 404);
    const a = await loadAsset(file);
    const headers = { 'Content-Type': a.type, ETag: a.etag, 'Cache-Control': 'public, max-age=86400' };
    // weak comparison (RFC 9110 13.1.2): the compress middleware hands out our ETags as W/"..."
    const inm = c.req.header('If-None-Match') ?? '';
    if (inm.split(',').some((t) => t.trim().replace(/^W\//, '') === a.etag)) return c.body(null, 304, headers);
    return c.body(a.data as Uint8Array<ArrayBuffer>, 200, headers);
  });

  app.get('/viewer/:layer', (c) => {
    const name = c.req.param('layer');
    const layer = ctx.holder.current.get(name);
    if (!layer || !layer.available) {
      return c.html(page('Layer not found · tuile', h`<header><a href="../">tuile</a></header><main><h1>No layer ${`'${name}'`}</h1><p><a href="../">Published layers</a></p></main>`), 404);
    }
    const key = apiKeyOf(c.req.raw);
    const denied = denial(layer, key);
    if (denied) {
      return c.html(page('Access denied · tuile', h`<header><a href="../">tuile</a></header><main><h1>${denied.message}</h1><p>Add <code>?apikey=</code> to the address.</p></main>`), statusOf(denied) as 401);
    }
    return c.html(viewerPage(layer, key));
  });
  return app;
}
