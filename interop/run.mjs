// Interoperability suite (`npm run interop`, not part of `npm test`): publishes a layer through the
// management API of a tuile spawned on 127.0.0.1, drives real clients on it and prints a table of what
// works: GDAL (whole-layer gdal_translate and gdalwarp, TMS TileMap URL, XYZ through a GDAL_WMS file,
// gdallocationinfo), OWSLib (WMTS and TMS), PyQGIS under xvfb (WMTS from both capabilities, XYZ, render,
// identify in feature and text modes), and in headless Chromium OpenLayers (from the capabilities),
// Leaflet (XYZ, TMS), MapLibre (XYZ, pmtiles:// on the layer's root archive) with no console error.
// Renders of two views are compared with a gdalwarp of the delivery (PSNR >= 35 dB) and with the tiles.
// Then the south, chained on the north, is published on the layer and the chain fused through the API
// (`pyramid-fusion`): MapLibre draws the layer (XYZ) and the fused archive (pmtiles://), compared with a
// gdalwarp of both deliveries and with each other, and the chained archive alone, to measure what it lacks.
//   npm run interop                 # OUT=dir keeps the renders and RESULTS.md there
// Installs what it lacks from Debian (qgis python3-qgis xvfb gdal-bin chromium python3-owslib) when
// run as root; a client whose packages are missing is reported as not run. Exit code 1 when a check fails.
import { execFile, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { archivesOf, chainSouth, fuse, publish, publishOn, startTuile } from './tuile.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const OUT = process.env.OUT ? resolve(process.env.OUT) : mkdtempSync(join(tmpdir(), 'tuile-interop-'));
const DELIVERY = join(ROOT, 'data/demo/france_relief_north_2154.tif');
const SOUTH = join(ROOT, 'data/demo/france_relief_south_2154.tif');
const LAYER = 'interop';
const PYTHON = '/usr/bin/python3';
const CHROMIUM = '/usr/bin/chromium';
const MIN_PSNR = 35;
const t0 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- Web Mercator (PM) and the view
const HALF = 20037508.342789244;
const resAt = (z) => (2 * HALF) / 256 / 2 ** z;
const Z = 7; // the layer's bottom level
const W = 768;
const H = 512;

/** A W x H view at the resolution of level z centred near (cx, cy), its corner on the level's pixel grid. */
function makeView(name, z, cx, cy, kernel) {
  const res = resAt(z);
  const x0 = -HALF + Math.round((cx - (W / 2) * res + HALF) / res) * res;
  const y1 = HALF - Math.round((HALF - (cy + (H / 2) * res)) / res) * res;
  return { name, z, res, kernel, x0, y0: y1 - H * res, x1: x0 + W * res, y1, ref: null, tiles: null };
}

// northern France at the bottom level, the tiles 1:1; the layer's clipped box is added once published
const VIEW = makeView('view', Z, 290000, 6219000, 'cubic');
const RES = VIEW.res;
const VIEWS = [VIEW];

// ---------------------------------------------------------------- results
const results = []; // { client, version, checks: [{ what, ok, detail }] }
function client(name, version) {
  const r = { client: name, version: version || '?', checks: [] };
  results.push(r);
  return {
    r,
    check(what, ok, detail = '') {
      r.checks.push({ what, ok: !!ok, detail: String(detail) });
      log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${what}${detail ? ` (${detail})` : ''}`);
    },
  };
}

async function attempt(c, what, fn) {
  try {
    const v = await fn();
    if (v !== undefined) c.check(what, v.ok ?? true, v.detail ?? '');
  } catch (err) {
    c.check(what, false, (err.stderr || err.message || String(err)).toString().trim().split('\n').slice(-3).join(' | '));
  }
}

// ---------------------------------------------------------------- Debian packages
async function has(cmd, args) {
  try {
    await run(cmd, args, { timeout: 120_000 });
    return true;
  } catch {
    return false;
  }
}

async function ensurePackages() {
  const want = [
    ['gdal-bin', () => has('gdal_translate', ['--version'])],
    ['chromium', async () => existsSync(CHROMIUM)],
    ['xvfb', () => has('sh', ['-c', 'command -v xvfb-run'])],
    ['qgis python3-qgis', () => has(PYTHON, ['-c', 'import qgis.core'])],
    ['python3-owslib', () => has(PYTHON, ['-c', 'import owslib'])],
    ['python3-gdal', () => has(PYTHON, ['-c', 'import osgeo.gdal'])],
  ];
  const missing = [];
  for (const [pkgs, present] of want) if (!(await present())) missing.push(...pkgs.split(' '));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    log(`missing Debian packages (${missing.join(' ')}); not root, so not installing them: those clients will not run`);
    return;
  }
  log(`installing from Debian: ${missing.join(' ')}`);
  const p = spawn('apt-get', ['-o', 'DPkg::Lock::Timeout=900', 'install', '-y', '--no-install-recommends', ...missing], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const code = await new Promise((r) => p.on('exit', r));
  if (code !== 0) log(`apt-get install exited ${code}: the clients needing ${missing.join(' ')} may not run`);
}

/** The whole layer at level 5, on the centre of the box the WMTS capabilities advertise. */
async function wholeView(base) {
  const caps = await (await fetch(`${base}/wmts/1.0.0/WMTSCapabilities.xml`)).text();
  const layer = caps.split('<Layer>').find((l) => l.includes(`<ows:Identifier>${LAYER}</ows:Identifier>`));
  const box = /<ows:BoundingBox[^>]*>\s*<ows:LowerCorner>(\S+) (\S+)<\/ows:LowerCorner>\s*<ows:UpperCorner>(\S+) (\S+)</.exec(layer).slice(1).map(Number);
  // upper levels are 2x2 averages of the bottom one: the reference averages too
  return makeView('whole layer', 5, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 'average');
}

// ---------------------------------------------------------------- the pages' origin (another port)
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.map': 'application/json', '.pmtiles': 'application/octet-stream' };

/** Pages, node_modules and the archive (with Range, which the pmtiles reader needs), from 127.0.0.1. */
async function startStatic(archives) {
  const roots = { '/pages/': join(ROOT, 'interop/pages/'), '/node_modules/': join(ROOT, 'node_modules/') };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(req.url.split('?')[0]);
    let file = null;
    if (path === '/archive.pmtiles') file = archives.root;
    if (path === '/chained.pmtiles' && archives.chained) file = archives.chained;
    if (path === '/fused.pmtiles' && archives.fused) file = archives.fused;
    for (const [prefix, dir] of Object.entries(roots)) if (path.startsWith(prefix)) file = join(dir, path.slice(prefix.length));
    if (!file || file.includes('..') || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(file).size;
    const headers = { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Access-Control-Allow-Origin': '*' };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      const end = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1);
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
      createReadStream(file, { start, end }).pipe(res);
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      createReadStream(file).pipe(res);
    }
  });
  const port = await new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port)));
  return { origin: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) };
}

// ---------------------------------------------------------------- images
/** An image as grey values (its first band) and alpha (255 where it has none). */
async function grey(file) {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const ch = info.channels;
  const alpha = ch === 2 || ch === 4;
  const n = info.width * info.height;
  const v = new Uint8Array(n);
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    v[i] = data[i * ch];
    a[i] = alpha ? data[i * ch + ch - 1] : 255;
  }
  return { width: info.width, height: info.height, v, a };
}

/**
 * PSNR of a render against a reference over the pixels opaque in the reference and in `also` (the tiles),
 * two pixels in from their edge: resampling mixes data and nodata there, into partly transparent pixels
 * that each client blends over its own background. Renders without alpha (a map on white) count as data.
 */
function psnr(render, ref, also) {
  if (render.width !== ref.width || render.height !== ref.height) return { psnr: 0, n: 0, detail: `size ${render.width}x${render.height}, not ${ref.width}x${ref.height}` };
  let se = 0;
  let n = 0;
  const w = ref.width;
  for (let y = 2; y < ref.height - 2; y++) {
    for (let x = 2; x < w - 2; x++) {
      let inside = true;
      for (const [dx, dy] of [[0, 0], [-2, 0], [2, 0], [0, -2], [0, 2]]) {
        const k = (y + dy) * w + x + dx;
        if (ref.a[k] < 255 || (also && also.a[k] < 255)) inside = false;
      }
      if (!inside) continue;
      const d = render.v[y * w + x] - ref.v[y * w + x];
      se += d * d;
      n++;
    }
  }
  const mse = n ? se / n : Infinity;
  return { psnr: mse === 0 ? 99 : 10 * Math.log10((255 * 255) / mse), n };
}

// ---------------------------------------------------------------- main
/** Compares a render of `view` with the view's gdalwarp of the delivery and with its GDAL WMTS render. */
async function compareRender(c, name, file, view = VIEW) {
  const img = await grey(file);
  const where = view === VIEW ? '' : ` (${view.name})`;
  const a = psnr(img, view.ref, view.tiles);
  const b = view.tiles && view.tiles.file !== file ? psnr(img, view.tiles) : null;
  c.check(`${name}${where} render vs gdalwarp of the ${view.deliveries ?? 'delivery'}`, a.psnr >= MIN_PSNR && a.n > 10_000, `${a.psnr.toFixed(1)} dB over ${a.n} px${a.detail ? `, ${a.detail}` : ''}`);
  if (b) c.check(`${name}${where} render vs the tiles`, b.psnr >= MIN_PSNR && b.n > 10_000, `${b.psnr.toFixed(1)} dB`);
}

async function main() {
  await ensurePackages();
  const dataDir = join(OUT, 'data');
  log(`work folder ${OUT}`);
  const tuile = await startTuile(dataDir);
  const base = tuile.base;
  let statics;
  try {
    const published = await publish(base, { layer: LAYER, bottom: Z, delivery: DELIVERY });
    log(`layer ${LAYER} published on ${base}`);
    const chain = await chainSouth(base, published.storedData, SOUTH).catch((err) => log(`the chained pyramid could not be built: ${err.message}`));
    const archives = archivesOf(dataDir);
    statics = await startStatic(archives);
    const caps = `${base}/wmts/1.0.0/WMTSCapabilities.xml`;
    const kvpCaps = `${base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`;
    const projwin = [VIEW.x0, VIEW.y1, VIEW.x1, VIEW.y0].map(String);
    const gdalEnv = { ...process.env, GDAL_DEFAULT_WMS_CACHE_PATH: join(OUT, 'gdal-cache'), NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' };
    const gdal = (tool, args, env = {}) => run(tool, args, { env: { ...gdalEnv, ...env }, maxBuffer: 64 << 20, timeout: 300_000 });

    VIEWS.push(await wholeView(base));
    // the references: the delivery warped by GDAL onto each view (the layer was built bicubic), and the
    // tiles as GDAL's WMTS driver assembles them on it
    for (const v of VIEWS) {
      const slug = v.name.replace(/\W+/g, '-');
      const ref = join(OUT, `reference-${slug}.tif`);
      await gdal('gdalwarp', ['-q', '-overwrite', '-t_srs', 'EPSG:3857', '-te', String(v.x0), String(v.y0), String(v.x1), String(v.y1), '-ts', String(W), String(H), '-r', v.kernel, DELIVERY, ref]);
      await gdal('gdal_translate', ['-q', '-of', 'PNG', ref, join(OUT, `reference-${slug}.png`)]);
      v.ref = await grey(join(OUT, `reference-${slug}.png`));
    }

    // GDAL
    const gdalVersion = (await gdal('gdalinfo', ['--version'])).stdout.trim();
    const g = client('GDAL', gdalVersion.replace(/^GDAL ([^,]+),.*/, '$1'));
    await attempt(g, 'WMTS view (gdal_translate -projwin, RESTful capabilities)', async () => {
      for (const v of VIEWS) {
        const f = join(OUT, `gdal-wmts-${v.name.replace(/\W+/g, '-')}.png`);
        await gdal('gdal_translate', ['-q', '-of', 'PNG', '-projwin', ...[v.x0, v.y1, v.x1, v.y0].map(String), '-outsize', String(W), String(H), `WMTS:${caps},layer=${LAYER}`, f]);
        v.tiles = { ...(await grey(f)), file: f };
        await compareRender(g, 'WMTS', f, v);
      }
    });
    for (const [what, ds] of [
      ['whole layer gdal_translate, RESTful capabilities', `WMTS:${caps},layer=${LAYER}`],
      ['whole layer gdal_translate, KVP capabilities', `WMTS:${kvpCaps},layer=${LAYER}`],
    ]) {
      await attempt(g, what, async () => {
        const f = join(OUT, `gdal-whole-${what.includes('KVP') ? 'kvp' : 'rest'}.tif`);
        await gdal('gdal_translate', ['-q', ds, f]);
        const info = JSON.parse((await gdal('gdalinfo', ['-json', f])).stdout);
        return { ok: info.size[0] > 1000, detail: `${info.size[0]} x ${info.size[1]} px` };
      });
    }
    await attempt(g, 'whole layer gdalwarp -t_srs EPSG:2154', async () => {
      const f = join(OUT, 'gdal-whole-2154.tif');
      await gdal('gdalwarp', ['-q', '-overwrite', '-t_srs', 'EPSG:2154', `WMTS:${caps},layer=${LAYER}`, f]);
      const info = JSON.parse((await gdal('gdalinfo', ['-json', f])).stdout);
      return { ok: info.size[0] > 500, detail: `${info.size[0]} x ${info.size[1]} px` };
    });
    await attempt(g, 'TMS TileMap URL', async () => {
      const f = join(OUT, 'gdal-tms.png');
      await gdal('gdal_translate', ['-q', '-of', 'PNG', '-projwin', ...projwin, '-outsize', String(W), String(H), `${base}/tms/1.0.0/${LAYER}`, f]);
      await compareRender(g, 'TMS TileMap', f);
    });
    await attempt(g, 'XYZ (GDAL_WMS TMS minidriver)', async () => {
      const xml = join(OUT, 'xyz.xml');
      writeFileSync(
        xml,
        `<GDAL_WMS><Service name="TMS"><ServerUrl>${base}/tiles/${LAYER}/\${z}/\${x}/\${y}.png</ServerUrl></Service><DataWindow><UpperLeftX>${-HALF}</UpperLeftX><UpperLeftY>${HALF}</UpperLeftY><LowerRightX>${HALF}</LowerRightX><LowerRightY>${-HALF}</LowerRightY><TileLevel>${Z}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY><YOrigin>top</YOrigin></DataWindow><Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>4</BandsCount><ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes><Cache><Path>${join(OUT, 'gdal-cache-xyz')}</Path></Cache></GDAL_WMS>`,
      );
      const f = join(OUT, 'gdal-xyz.png');
      await gdal('gdal_translate', ['-q', '-of', 'PNG', '-projwin', ...projwin, '-outsize', String(W), String(H), xml, f]);
      await compareRender(g, 'XYZ', f);
    });
    // a pixel centre of the view with data, for the identify checks
    const probe = await probePixel(base);
    await attempt(g, 'gdallocationinfo (GetFeatureInfo)', async () => {
      const { stdout } = await gdal('gdallocationinfo', ['-valonly', '-b', '1', '-geoloc', `WMTS:${caps},layer=${LAYER}`, String(probe.x), String(probe.y)]);
      return { ok: Number(stdout.trim()) === probe.value, detail: `value ${stdout.trim()}, tile pixel ${probe.value}` };
    });

    // OWSLib
    await owslibClient(base, probe);
    // PyQGIS
    await qgisClient(base, probe);
    // browsers
    await browsers(base, statics.origin, (browser, clientOf) => fusedArchive({ browser, clientOf, base, origin: statics.origin, published, chain, archives, dataDir, gdal }));
  } finally {
    await statics?.close();
    tuile.proc.kill('SIGTERM');
    await new Promise((r) => (tuile.proc.exitCode !== null ? r() : tuile.proc.once('exit', r)));
  }
  report();
}

/** A pixel with data near the view's centre: its centre in EPSG:3857, its tile and value (band 1). */
async function probePixel(base) {
  const x = VIEW.x0 + (W / 2 + 0.5) * RES;
  const y = VIEW.y1 - (H / 2 + 0.5) * RES;
  const span = 256 * RES;
  const tx = Math.floor((x + HALF) / span);
  const ty = Math.floor((HALF - y) / span);
  const i = Math.floor((x + HALF) / RES) - tx * 256;
  const j = Math.floor((HALF - y) / RES) - ty * 256;
  const tile = await fetch(`${base}/tiles/${LAYER}/${Z}/${tx}/${ty}.png`);
  const { data, info } = await sharp(Buffer.from(await tile.arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
  const k = (j * 256 + i) * info.channels;
  if ((info.channels === 2 || info.channels === 4) && data[k + info.channels - 1] !== 255) throw new Error('the probe pixel has no data');
  return { x, y, tx, ty, i, j, value: data[k] };
}

async function python(script, args, wrap = []) {
  const [cmd, ...pre] = wrap.length ? wrap : [PYTHON];
  const { stdout } = await run(cmd, [...pre, ...(wrap.length ? [PYTHON] : []), join(ROOT, 'interop', script), JSON.stringify(args)], {
    env: { ...process.env, QT_QPA_PLATFORM: 'offscreen', NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' },
    maxBuffer: 64 << 20,
    timeout: 300_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop());
}

async function owslibClient(base, probe) {
  if (!(await has(PYTHON, ['-c', 'import owslib']))) return void client('OWSLib', 'not installed').check('run', false, 'python3-owslib missing');
  const tile = Buffer.from(await (await fetch(`${base}/tiles/${LAYER}/${Z}/${probe.tx}/${probe.ty}.png`)).arrayBuffer());
  const sha = (await import('node:crypto')).createHash('sha1').update(tile).digest('hex');
  let rep;
  try {
    rep = await python('owslib_client.py', { base, layer: LAYER, z: Z, x: probe.tx, y: probe.ty });
  } catch (err) {
    return void client('OWSLib', '?').check('run', false, err.stderr || err.message);
  }
  const c = client('OWSLib', rep.version);
  for (const [name, what] of [
    ['wmts-rest', 'WMTS RESTful capabilities: layer, limits, GetTile'],
    ['wmts-kvp', 'WMTS KVP capabilities: layer, limits, GetTile'],
    ['tms', 'TMS TileMapService, TileMap, tile'],
  ]) {
    const r = rep.checks[name];
    c.check(what, r.ok && r.sha1 === sha, r.ok ? (r.sha1 === sha ? 'tile = XYZ tile' : `tile differs (${r.sha1})`) : r.error.trim().split('\n').pop());
  }
}

async function qgisClient(base, probe) {
  if (!(await has(PYTHON, ['-c', 'import qgis.core'])) || !(await has('sh', ['-c', 'command -v xvfb-run']))) {
    return void client('QGIS (PyQGIS)', 'not installed').check('run', false, 'qgis, python3-qgis or xvfb missing');
  }
  let rep;
  try {
    const { x0, y0, x1, y1 } = VIEW;
    const views = VIEWS.filter((v) => v !== VIEW).map((v) => ({ name: v.name, x0: v.x0, y0: v.y0, x1: v.x1, y1: v.y1 }));
    rep = await python('qgis_client.py', { base, layer: LAYER, out: OUT, x0, y0, x1, y1, views, w: W, h: H, z: Z, px: probe.x, py: probe.y }, ['xvfb-run', '-a']);
  } catch (err) {
    return void client('QGIS (PyQGIS)', '?').check('run', false, (err.stderr || err.message).toString().slice(-500));
  }
  const c = client('QGIS (PyQGIS)', rep.version);
  for (const [name, what] of [
    ['wmts-rest', 'WMTS from the RESTful capabilities'],
    ['wmts-kvp', 'WMTS from the KVP capabilities'],
    ['xyz', 'XYZ'],
  ]) {
    const l = rep.layers[name];
    c.check(`${what}: opens`, l.valid, l.error ?? '');
    for (const v of VIEWS) if (l.renders?.[v.name]) await compareRender(c, what, l.renders[v.name], v);
    if (l.renderErrors?.length) c.check(`${what}: render errors`, false, l.renderErrors.join('; '));
  }
  for (const [key, what] of [
    ['feature', 'identify, feature mode (the capabilities as served)'],
    ['feature-geojson', 'identify, feature mode, GeoJSON'],
    ['feature-gml', 'identify, feature mode, GML'],
  ]) {
    const f = rep.identify[key] ?? {};
    const feat = (f.results ?? [])[0];
    c.check(what, feat && Number(feat.band_1) === probe.value && /POINT/i.test(feat._geometry ?? ''), feat ? `band_1 ${feat.band_1}, ${feat._geometry}, tile pixel ${probe.value}` : (f.error ?? rep.identify['variants-error'] ?? 'no feature'));
  }
  const t = rep.identify.text ?? {};
  const text = (t.results ?? []).join('\n');
  c.check('identify, text mode', new RegExp(`values = ${probe.value}\\b`).test(text), text ? text.split('\n').find((l) => l.startsWith('values')) : t.error ?? 'no text');
  const h = rep.identify.html ?? {};
  c.check('identify, html mode', (h.results ?? []).join('').includes(`<td>${probe.value}</td>`), h.error ?? '');
}

/** One page of interop/pages drawing `name` on `view`; resolves with its state, problems and screenshot. */
async function browserRender(browser, base, origin, view, name, archive = 'archive.pmtiles') {
  const page = await browser.newPage({ viewport: { width: W + 20, height: H + 20 }, deviceScaleFactor: 1 });
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`));
  const q = new URLSearchParams({ client: name, tuile: base, layer: LAYER, x0: String(view.x0), y1: String(view.y1), res: String(view.res), w: String(W), h: String(H), z: String(view.z), bottom: String(Z), pmtiles: `${origin}/${archive}` });
  let state = { error: 'did not finish', version: '', tiles: 0, tileErrors: 0 };
  try {
    await page.goto(`${origin}/pages/map.html?${q}`);
    await page.waitForFunction(() => window.interop?.done, null, { timeout: 60_000 });
    await sleep(300);
    state = await page.evaluate(() => ({ ...window.interop }));
  } catch (err) {
    problems.push(err.message.split('\n')[0]);
  }
  const shot = join(OUT, `browser-${name}-${archive.replace(/\W+/g, '-')}-${view.name.replace(/\W+/g, '-')}.png`);
  await page.locator('#map').screenshot({ path: shot }).catch(() => {});
  await page.close();
  const ok = !state.error && state.tiles > 0 && state.tileErrors === 0 && problems.length === 0;
  return { state, ok, detail: [state.error, `${state.tiles} tiles`, ...problems].filter(Boolean).join('; '), shot: existsSync(shot) ? shot : null };
}

/** Share of the reference's data pixels that a render on white draws (not white). */
async function drawnShare(file, view) {
  const img = await grey(file);
  let data = 0;
  let drawn = 0;
  for (let i = 0; i < img.v.length; i++) {
    if (view.ref.a[i] < 255) continue;
    data++;
    if (img.v[i] !== 255) drawn++;
  }
  return data ? drawn / data : 0;
}

const LABELS = { 'ol-wmts': 'WMTS from the capabilities', 'leaflet-xyz': 'XYZ', 'leaflet-tms': 'TMS', 'maplibre-xyz': 'XYZ', 'maplibre-pmtiles': "pmtiles:// (the layer's root archive)" };
const LIBS = { 'ol-wmts': 'OpenLayers', 'leaflet-xyz': 'Leaflet', 'leaflet-tms': 'Leaflet', 'maplibre-xyz': 'MapLibre GL JS', 'maplibre-pmtiles': 'MapLibre GL JS' };

/** The browser pages on the published layer, then `after` (the fused archive's checks) in the same browser. */
async function browsers(base, origin, after) {
  if (!existsSync(CHROMIUM)) return void client('Chromium', 'not installed').check('run', false, `${CHROMIUM} missing`);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
  });
  const clients = {};
  const clientOf = (lib, version) => (clients[lib] ??= client(`${lib} (Chromium)`, version));
  try {
    for (const view of VIEWS) {
      const where = view === VIEW ? '' : ` (${view.name})`;
      for (const name of Object.keys(LABELS)) {
        const r = await browserRender(browser, base, origin, view, name);
        const c = clientOf(LIBS[name], r.state.version);
        if (r.state.version) c.r.version = r.state.version;
        c.check(`${LABELS[name]}${where}: draws, no console error`, r.ok, r.detail);
        if (r.shot) await compareRender(c, LABELS[name], r.shot, view);
      }
    }
    await after(browser, clientOf);
  } finally {
    await browser.close();
  }
}

/**
 * The issue's MapLibre on a fused archive: the layer switched to the chain (north + south) and the chain
 * fused, through the management API; on each view, MapLibre's XYZ render of the layer and its pmtiles://
 * render of the fused archive against a gdalwarp of both deliveries (the south over the north, as the
 * chain draws it) and against each other. The chained archive read alone shows why fusion is needed: it
 * draws only the tiles the south touched, measured as the share of the north's pixels it draws.
 */
async function fusedArchive({ browser, clientOf, base, origin, published, chain, archives, dataDir, gdal }) {
  const c = clientOf('MapLibre GL JS');
  if (!chain) return void c.check('pmtiles:// on the fused archive', false, 'no chained pyramid to fuse');
  try {
    await publishOn(base, published, chain);
    log(`layer ${LAYER} published on the chain (north + south)`);
    const fused = await fuse(base, chain);
    // a fusion's output is a new stored data: its pyramid folder is its id
    archives.fused = join(dataDir, 'pyramids', fused, 'tiles.pmtiles');
    log(`chain fused into stored data ${fused}`);
  } catch (err) {
    return void c.check('the chain published and fused through the API', false, err.message);
  }
  for (const north of VIEWS) {
    const slug = `north-south-${north.name.replace(/\W+/g, '-')}`;
    const tif = join(OUT, `reference-${slug}.tif`);
    await gdal('gdalwarp', ['-q', '-overwrite', '-t_srs', 'EPSG:3857', '-te', String(north.x0), String(north.y0), String(north.x1), String(north.y1), '-ts', String(W), String(H), '-r', north.kernel, DELIVERY, SOUTH, tif]);
    await gdal('gdal_translate', ['-q', '-of', 'PNG', tif, join(OUT, `reference-${slug}.png`)]);
    // the layer's tiles as GDAL's WMTS driver assembles them (a cache of its own: the layer changed)
    const tiles = join(OUT, `gdal-wmts-${slug}.png`);
    const v = [north.x0, north.y1, north.x1, north.y0].map(String);
    await gdal('gdal_translate', ['-q', '-of', 'PNG', '-projwin', ...v, '-outsize', String(W), String(H), `WMTS:${base}/wmts/1.0.0/WMTSCapabilities.xml,layer=${LAYER}`, tiles], { GDAL_DEFAULT_WMS_CACHE_PATH: join(OUT, 'gdal-cache-chain') });
    const view = { ...north, name: `north + south, ${north.name}`, deliveries: 'deliveries', ref: await grey(join(OUT, `reference-${slug}.png`)), tiles: { ...(await grey(tiles)), file: tiles } };
    const where = ` (${view.name})`;
    const xyz = await browserRender(browser, base, origin, view, 'maplibre-xyz');
    c.check(`XYZ${where}: draws, no console error`, xyz.ok, xyz.detail);
    if (xyz.shot) await compareRender(c, 'XYZ', xyz.shot, view);
    const whole = await browserRender(browser, base, origin, view, 'maplibre-pmtiles', 'fused.pmtiles');
    c.check(`pmtiles:// (the fused archive)${where}: draws, no console error`, whole.ok, whole.detail);
    if (whole.shot) await compareRender(c, 'pmtiles:// (the fused archive)', whole.shot, view);
    const alone = await browserRender(browser, base, origin, view, 'maplibre-pmtiles', 'chained.pmtiles');
    if (alone.shot && whole.shot) {
      const [a, b] = [await drawnShare(alone.shot, north), await drawnShare(whole.shot, north)];
      c.check(
        `pmtiles:// on the chained pyramid's archive${where} holds only its own tiles`,
        alone.ok && a < b - 0.05,
        `draws ${(a * 100).toFixed(0)} % of the north's pixels in view, the fused archive ${(b * 100).toFixed(0)} %`,
      );
    } else c.check(`pmtiles:// on the chained pyramid's archive${where}`, false, alone.detail);
  }
}

function report() {
  const lines = ['| client | version | works | fails |', '|---|---|---|---|'];
  for (const r of results) {
    const ok = r.checks.filter((c) => c.ok).map((c) => c.what + (/dB/.test(c.detail) ? ` (${c.detail.replace(/ over .*/, '')})` : ''));
    const ko = r.checks.filter((c) => !c.ok).map((c) => `${c.what}: ${c.detail}`.replace(/\|/g, '/'));
    lines.push(`| ${r.client} | ${r.version} | ${ok.join('; ') || '-'} | ${ko.join('; ') || '-'} |`);
  }
  const md = lines.join('\n') + '\n';
  writeFileSync(join(OUT, 'RESULTS.md'), md);
  console.log(md);
  console.log(`renders and RESULTS.md in ${OUT}`);
  const failed = results.flatMap((r) => r.checks).filter((c) => !c.ok).length;
  if (failed) {
    console.log(`${failed} check(s) failed`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err.stack ?? err);
  process.exit(2);
});
