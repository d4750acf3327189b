// interop's tuile: `node dist/main.js` on a data folder of its own on 127.0.0.1, and the management API
// calls of the tutorial that publish a layer, chain a pyramid on it, publish the chain and fuse it.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'interop-admin-token-0123456789';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export async function startTuile(dataDir) {
  const port = await freePort();
  let out = '';
  const proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), TUILE_DATA_DIR: dataDir, TUILE_DEMO: '0', TUILE_WORKERS: '2', TUILE_ADMIN_TOKEN: TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + 120_000;
  while (!/tuile: serving \d+ layer/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`tuile did not start:\n${out}`);
    await sleep(100);
  }
  return { base: `http://127.0.0.1:${port}`, proc, output: () => out };
}

export async function api(base, method, path, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(base + path, { method, headers, body: payload });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return json;
}

export async function until(base, path, want) {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const e = await api(base, 'GET', path);
    if (want.includes(e.status)) return e;
    if (['UNSTABLE', 'FAILURE', 'ABORTED'].includes(e.status) || Date.now() > deadline) throw new Error(`${path}: ${e.status}`);
    await sleep(200);
  }
}

/**
 * The tutorial's steps 1-3: the north delivery uploaded, built (png, bicubic, levels 0-7), published.
 * Answers the stored data and what `publishOn` needs to point the layer at another one.
 */
export async function publish(base, { layer, bottom, delivery }) {
  const [ds] = await api(base, 'GET', '/api/datastores');
  const d = `/api/datastores/${ds._id}`;
  const u = await api(base, 'POST', `${d}/uploads`, { name: 'north', description: 'interop', type: 'RASTER', srs: 'EPSG:2154' });
  const form = new FormData();
  form.append('file', new Blob([readFileSync(delivery)]), 'north.tif');
  await api(base, 'POST', `${d}/uploads/${u._id}/data?path=data/north.tif`, form);
  await api(base, 'POST', `${d}/uploads/${u._id}/close`);
  await until(base, `${d}/uploads/${u._id}`, ['CLOSED']);
  const [p] = await api(base, 'GET', `${d}/processings`);
  const x = await api(base, 'POST', `${d}/processings/executions`, {
    processing: p._id,
    inputs: { upload: [u._id] },
    output: { stored_data: { name: 'north', storage_tags: ['PYRAMIDE'] } },
    parameters: { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom },
  });
  await api(base, 'POST', `${d}/processings/executions/${x._id}/launch`);
  const done = await until(base, `${d}/processings/executions/${x._id}`, ['SUCCESS']);
  const sd = done.output.stored_data._id;
  const body = (storedData) => ({
    type: 'WMTS-TMS',
    name: 'interop',
    layer_name: layer,
    type_infos: { title: 'France relief (interop)', abstract: '', keywords: ['relief'], used_data: [{ stored_data: storedData, bottom_level: String(bottom), top_level: '0' }] },
    getfeatureinfo: { stored_data: true },
  });
  const c = await api(base, 'POST', `${d}/configurations`, body(sd));
  const [e] = await api(base, 'GET', `${d}/endpoints`);
  const o = await api(base, 'POST', `${d}/configurations/${c._id}/offerings`, { endpoint: e._id, open: true });
  await until(base, `${d}/offerings/${o._id}`, ['PUBLISHED']);
  return { storedData: sd, d, configuration: c._id, offering: o._id, body };
}

/** The tutorial's step 5: the layer's configuration replaced to serve `storedData`, its offering synchronised. */
export async function publishOn(base, published, storedData) {
  const { d, configuration, offering, body } = published;
  await api(base, 'PUT', `${d}/configurations/${configuration}`, body(storedData));
  await api(base, 'PUT', `${d}/offerings/${offering}`);
  await until(base, `${d}/offerings/${offering}`, ['PUBLISHED']);
}

/** The `pyramid-fusion` processing on one chained pyramid: answers the new, standalone stored data. */
export async function fuse(base, chained) {
  const [ds] = await api(base, 'GET', '/api/datastores');
  const d = `/api/datastores/${ds._id}`;
  const p = (await api(base, 'GET', `${d}/processings`)).find((x) => x.technical_name === 'pyramid-fusion');
  if (!p) throw new Error('no pyramid-fusion processing');
  const x = await api(base, 'POST', `${d}/processings/executions`, {
    processing: p._id,
    inputs: { stored_data: [chained] },
    output: { stored_data: { name: 'north+south fused', storage_tags: ['PYRAMIDE'] } },
    parameters: {},
  });
  await api(base, 'POST', `${d}/processings/executions/${x._id}/launch`);
  const done = await until(base, `${d}/processings/executions/${x._id}`, ['SUCCESS']);
  return done.output.stored_data._id;
}

/** The archives of the pyramids: the root one (no parent: it holds the whole layer) and a chained one. */
export function archivesOf(dataDir) {
  const out = {};
  for (const dir of readdirSync(join(dataDir, 'pyramids'))) {
    const p = join(dataDir, 'pyramids', dir);
    if (!existsSync(join(p, 'pyramid.json'))) continue;
    const desc = JSON.parse(readFileSync(join(p, 'pyramid.json'), 'utf8'));
    out[desc.parents.length === 0 ? 'root' : 'chained'] = join(p, 'tiles.pmtiles');
  }
  if (!out.root) throw new Error('no root pyramid');
  return out;
}

/** The tutorial's step 4: the south delivery built as a pyramid chained on the north; answers its id. */
export async function chainSouth(base, north, south) {
  const [ds] = await api(base, 'GET', '/api/datastores');
  const d = `/api/datastores/${ds._id}`;
  const u = await api(base, 'POST', `${d}/uploads`, { name: 'south', description: 'interop', type: 'RASTER', srs: 'EPSG:2154' });
  const form = new FormData();
  form.append('file', new Blob([readFileSync(south)]), 'south.tif');
  await api(base, 'POST', `${d}/uploads/${u._id}/data?path=data/south.tif`, form);
  await api(base, 'POST', `${d}/uploads/${u._id}/close`);
  await until(base, `${d}/uploads/${u._id}`, ['CLOSED']);
  const [p] = await api(base, 'GET', `${d}/processings`);
  const x = await api(base, 'POST', `${d}/processings/executions`, {
    processing: p._id,
    inputs: { upload: [u._id], stored_data: [north] },
    output: { stored_data: { name: 'north+south', storage_tags: ['PYRAMIDE'] } },
    parameters: {},
  });
  await api(base, 'POST', `${d}/processings/executions/${x._id}/launch`);
  return (await until(base, `${d}/processings/executions/${x._id}`, ['SUCCESS'])).output.stored_data._id;
}
