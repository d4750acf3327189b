// Fault injection: tuile under a random mix of uploads, builds, publications, synchronisations and
// deletions, killed (SIGKILL of the primary, its children going with it) at a random moment, KILLS times;
// after each kill a restart and a full consistency check:
// - statuses: once the restarted server has settled (bounded wait), no execution WAITING or PROGRESS, no
//   upload CHECKING, no stored data GENERATING or MODIFYING, no offering between two statuses;
// - acknowledged writes: every entity whose creation was answered 2xx exists, every acknowledged deletion
//   is gone (a deletion without an answer, or a 502 from a serving process that lost the killed API
//   process, may have gone either way);
// - state vs files: a CLOSED upload has its files, a GENERATED stored data its pyramid.json and archive, an
//   UNSTABLE one no folder; nothing under uploads/ or pyramids/ that the state does not reference, no
//   .part file, no build temporary;
// - state vs served tiles: every published layer is in the WMTS capabilities and serves, for tiles its
//   pyramid chain holds, exactly the archive's bytes.
// Prints N (kills), the operations answered, and the count of inconsistencies (goal 0: exit 1 otherwise).
// Bounded: KILLS rounds or CAP_S seconds, whichever comes first. Loopback only.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../dist/client.js';
import { PyramidChain } from '../dist/pyramid/chain.js';
import { startTuile } from './lib.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const KILLS = Number(process.env.KILLS ?? 20);
const CAP_S = Number(process.env.CAP_S ?? 600);
const WORKERS = process.env.WORKERS ?? '2';
const SEED = Number(process.env.SEED ?? Date.now() % 100000);
const TOKEN = 'bench-faults-token-0123456789';
const FILES = ['france_relief_north_2154.tif', 'france_relief_south_2154.tif'].map((f) => readFileSync(join(ROOT, 'test/fixtures', f)));

// a small deterministic generator: a run can be replayed with SEED
let rs = SEED || 1;
const rand = () => ((rs = (rs * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pick = (a) => a[Math.floor(rand() * a.length)];

const data = mkdtempSync(join(tmpdir(), 'tuile-faults-'));
const problems = [];
const problem = (round, what) => {
  // checked again after every kill: counted once
  if (problems.some((p) => p.what === what)) return;
  problems.push({ round, what });
  console.log(`  INCONSISTENT: ${what}`);
  const id = /[0-9a-f]{8}-[0-9a-f-]{27}/.exec(what)?.[0];
  for (const h of history) if (id && h.includes(id)) console.log(`    ${h}`);
};

function start() {
  return startTuile({ dataDir: data, token: TOKEN, workers: WORKERS });
}

function children(pid) {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** SIGKILL of the primary; waits until its serving processes and build have gone too (they follow it). */
async function kill(t) {
  const kids = children(t.proc.pid);
  await new Promise((r) => {
    t.proc.once('exit', r);
    t.proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 30_000;
  while (kids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const k of kids.filter(alive)) process.kill(k, 'SIGKILL');
}

/** The scenario client (src/client.ts, in dist/), its `call` bound: answers whatever the server says. */
function client(base) {
  const api = new ApiClient(base, TOKEN);
  return { call: (method, path, body, headers) => api.call(method, path, body, headers), base };
}

// what the server acknowledged: id -> { kind, path, deleted }; an operation without an answer is unknown
const acked = new Map();
const unanswered = new Set();
/** What was sent and answered about each entity, to explain an inconsistency. */
const history = [];
let answered = 0;

/** Operations under way by kind, and what the kills cut: kind -> count. */
const inflight = new Map();
const cut = new Map();
const running = new Map(); // builds running at a kill: read from the state

/** One random operation; resolves when answered (or when the kill cut it). */
async function operate(api, D, state) {
  const run = (op) => runOp(op, api, D, state);
  const op = pick(['upload', 'upload', 'build', 'build', 'publish', 'sync', 'sync', 'delete']);
  inflight.set(op, (inflight.get(op) ?? 0) + 1);
  try {
    await run(op);
  } finally {
    inflight.set(op, inflight.get(op) - 1);
  }
}

/** One operation of a kind. */
async function runOp(op, api, D, state) {
  const list = async (what, q = '') => (await api.call('GET', `${D}/${what}?limit=100${q}`)).body ?? [];
  const ack = (kind, path, r) => {
    answered++;
    if (r.status >= 200 && r.status < 300 && r.body?._id) acked.set(r.body._id, { kind, path: `${path}/${r.body._id}`, deleted: false });
    return r;
  };
  if (op === 'upload') {
    const u = ack('upload', `${D}/uploads`, await api.call('POST', `${D}/uploads`, { name: 'faults', description: 'x', type: 'RASTER', srs: 'EPSG:2154' }));
    if (u.status !== 201) return;
    const n = Math.floor(rand() * 2);
    // half the pushes trickle (4 KiB every 10 ms), so that kills land in the middle of some
    const p = rand() < 0.5 ? await slowPush(api.base, `${D}/uploads/${u.body._id}/data?path=data/part${n}.tif`, FILES[n]) : await api.call('POST', `${D}/uploads/${u.body._id}/data?path=data/part${n}.tif`, FILES[n], { 'Content-Type': 'application/octet-stream' });
    answered++;
    if (p.status === 200) await api.call('POST', `${D}/uploads/${u.body._id}/close`);
  } else if (op === 'build') {
    const closed = await list('uploads', '&status=CLOSED');
    // a few builds queued at a time: the kill should find them running, not waiting behind a long queue
    if (!closed.length || (await list('processings/executions', '&status=WAITING')).length >= 2) return;
    const generated = await list('stored_data', '&status=GENERATED');
    const parent = rand() < 0.4 && generated.length ? pick(generated) : undefined;
    const body = {
      processing: state.processing,
      inputs: { upload: [pick(closed)._id], ...(parent ? { stored_data: [parent._id] } : {}) },
      output: { stored_data: { name: 'faults', storage_tags: ['PYRAMIDE'] } },
      parameters: parent ? {} : { compression: 'png', bottom: 6 },
    };
    const e = await api.call('POST', `${D}/processings/executions`, body);
    answered++;
    if (e.status !== 201) return;
    acked.set(e.body.output.stored_data._id, { kind: 'stored data', path: `${D}/stored_data/${e.body.output.stored_data._id}`, deleted: false });
    await api.call('POST', `${D}/processings/executions/${e.body._id}/launch`);
    answered++;
  } else if (op === 'publish') {
    const generated = await list('stored_data', '&status=GENERATED');
    if (!generated.length) return;
    const sd = pick(generated);
    const layer = `l${Math.floor(rand() * 1e6)}`;
    const c = ack('configuration', `${D}/configurations`, await api.call('POST', `${D}/configurations`, conf(layer, sd._id)));
    if (c.status !== 201) return;
    const o = ack('offering', `${D}/offerings`, await api.call('POST', `${D}/configurations/${c.body._id}/offerings`, { endpoint: state.endpoint, open: true }));
    history.push(`kill ${kills + 1}: POST offering ${o.body?._id} answered ${o.status} ${o.body?.status}`);
  } else if (op === 'sync') {
    const offerings = (await list('offerings')).filter((o) => o.status === 'PUBLISHED');
    const generated = await list('stored_data', '&status=GENERATED');
    if (!offerings.length || !generated.length) return;
    const o = pick(offerings);
    const r = await api.call('PUT', `${D}/configurations/${o.configuration}`, conf(o.layer_name, pick(generated)._id));
    answered++;
    if (r.status === 200) await api.call('PUT', `${D}/offerings/${o._id}`);
    answered++;
  } else {
    const what = pick(['offerings', 'configurations', 'stored_data', 'uploads']);
    const items = await list(what);
    if (!items.length) return;
    const x = pick(items);
    // a deletion the kill cuts may or may not have been committed: either outcome is right
    unanswered.add(x._id);
    history.push(`kill ${kills + 1}: DELETE ${what} ${x._id} sent`);
    const r = await api.call('DELETE', `${D}/${what}/${x._id}`);
    history.push(`kill ${kills + 1}: DELETE ${what} ${x._id} answered ${r.status}`);
    // 502: the serving process lost the API's process (killed) mid-request, the outcome is unknown
    if (r.status !== 502) unanswered.delete(x._id);
    answered++;
    if (r.status === 204 && acked.has(x._id)) acked.get(x._id).deleted = true;
    else if (r.status === 204) acked.set(x._id, { kind: what, path: `${D}/${what}/${x._id}`, deleted: true });
  }
}

function slowPush(base, path, bytes) {
  return new Promise((res, rej) => {
    const u = new URL(base + path);
    const req = request(
      { host: u.hostname, port: u.port, method: 'POST', path: u.pathname + u.search, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/octet-stream', 'Content-Length': bytes.length } },
      (r) => {
        r.resume();
        r.on('end', () => res({ status: r.statusCode }));
        r.on('error', rej);
      },
    );
    req.on('error', rej);
    let at = 0;
    const next = () => {
      if (at >= bytes.length) return req.end();
      req.write(bytes.subarray(at, at + 4096));
      at += 4096;
      setTimeout(next, 10);
    };
    next();
  });
}

function conf(layer, sd) {
  return {
    type: 'WMTS-TMS',
    name: layer,
    layer_name: layer,
    type_infos: { title: layer, abstract: 'faults', keywords: ['faults'], used_data: [{ stored_data: sd, bottom_level: '6', top_level: '0' }] },
    getfeatureinfo: { stored_data: true },
  };
}

/** Waits until nothing is queued or between two statuses (bounded), then checks everything. */
async function check(round, t) {
  const { call } = client(t.base);
  const D = `/api/datastores/${(await call('GET', '/api/datastores')).body[0]._id}`;
  const all = async (what) => {
    const items = [];
    for (let page = 1; ; page++) {
      const got = (await call('GET', `${D}/${what}?limit=100&page=${page}`)).body ?? [];
      items.push(...got);
      if (got.length < 100) return items;
    }
  };
  const busy = async () =>
    (await all('processings/executions')).some((e) => e.status === 'WAITING' || e.status === 'PROGRESS') ||
    (await all('uploads')).some((u) => u.status === 'CHECKING') ||
    (await all('offerings')).some((o) => ['PUBLISHING', 'MODIFYING', 'UNPUBLISHING'].includes(o.status));
  const deadline = Date.now() + 120_000;
  while ((await busy()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));

  const s = JSON.parse(readFileSync(join(data, 'state.json'), 'utf8'));
  for (const e of Object.values(s.executions)) if (e.status === 'WAITING' || e.status === 'PROGRESS') problem(round, `execution ${e._id} still ${e.status}`);
  for (const u of Object.values(s.uploads)) if (u.status === 'CHECKING') problem(round, `upload ${u._id} still CHECKING`);
  for (const o of Object.values(s.offerings)) if (!['PUBLISHED', 'UNSTABLE'].includes(o.status)) problem(round, `offering ${o._id} still ${o.status}`);
  for (const sd of Object.values(s.stored_data)) if (sd.status === 'GENERATING' || sd.status === 'MODIFYING') problem(round, `stored data ${sd._id} still ${sd.status}`);

  for (const [id, a] of acked) {
    const r = await call('GET', a.path);
    if (unanswered.has(id)) {
      unanswered.delete(id);
      a.deleted = r.status === 404;
      continue;
    }
    if (a.deleted && r.status !== 404) problem(round, `${a.kind} ${id}: deletion acknowledged, but GET answers ${r.status}`);
    if (!a.deleted && r.status !== 200) problem(round, `${a.kind} ${id}: creation acknowledged, but GET answers ${r.status}`);
  }

  const uploads = join(data, 'uploads');
  for (const name of existsSync(uploads) ? readdirSync(uploads) : []) {
    if (!s.uploads[name]) problem(round, `uploads/${name}: no such upload in the state`);
    for (const f of readdirSync(join(uploads, name), { recursive: true }).map(String)) if (f.endsWith('.part')) problem(round, `uploads/${name}/${f}: a .part file`);
  }
  for (const u of Object.values(s.uploads)) {
    if (u.status !== 'CLOSED') continue;
    const dir = join(uploads, u._id);
    const tifs = existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.tif')) : [];
    if (!tifs.length) problem(round, `upload ${u._id} is CLOSED without files`);
  }
  const pyramids = join(data, 'pyramids');
  const referenced = new Set();
  for (const sd of Object.values(s.stored_data)) {
    const folder = sd.folder ?? sd._id;
    const dir = join(pyramids, folder);
    if (sd.status === 'GENERATED') {
      if (!existsSync(join(dir, 'pyramid.json')) || !existsSync(join(dir, 'tiles.pmtiles'))) problem(round, `stored data ${sd._id} GENERATED without its pyramid`);
      referenced.add(folder);
      try {
        const desc = JSON.parse(readFileSync(join(dir, 'pyramid.json'), 'utf8'));
        for (const p of desc.parents) referenced.add(resolve(dir, p.path).slice(pyramids.length + 1));
      } catch {}
    } else if (sd.status === 'UNSTABLE' && existsSync(dir)) problem(round, `stored data ${sd._id} UNSTABLE with a pyramid folder left`);
  }
  for (const name of existsSync(pyramids) ? readdirSync(pyramids) : []) {
    if (!referenced.has(name)) problem(round, `pyramids/${name}: no stored data reads it`);
  }

  const caps = await (await fetch(`${t.base}/wmts/1.0.0/WMTSCapabilities.xml`)).text();
  let tiles = 0;
  for (const o of Object.values(s.offerings)) {
    if (o.status !== 'PUBLISHED' || !o.available) continue;
    if (!caps.includes(`<ows:Identifier>${o.layer_name}</ows:Identifier>`)) problem(round, `layer ${o.layer_name} missing from the capabilities`);
    const sd = s.stored_data[o.published.stored_data];
    if (!sd || sd.status !== 'GENERATED') {
      problem(round, `offering ${o._id} serves stored data ${o.published.stored_data}, which is ${sd?.status ?? 'gone'}`);
      continue;
    }
    const chain = await PyramidChain.open(join(pyramids, sd.folder ?? sd._id));
    try {
      const [lon, lat] = centre(sd.extent.coordinates[0]);
      for (let z = 0; z <= 6; z++) {
        const n = 2 ** z;
        const x = Math.floor(((lon + 180) / 360) * n);
        const y = Math.floor(((1 - Math.log(Math.tan((lat * Math.PI) / 180) + 1 / Math.cos((lat * Math.PI) / 180)) / Math.PI) / 2) * n);
        const hit = await chain.getTile({ z, x, y });
        const r = await fetch(`${t.base}/tiles/${o.layer_name}/${z}/${x}/${y}.png`);
        const body = new Uint8Array(await r.arrayBuffer());
        tiles++;
        if (r.status !== 200) problem(round, `layer ${o.layer_name} tile ${z}/${x}/${y}: ${r.status}`);
        else if (hit && Buffer.compare(Buffer.from(hit.data), Buffer.from(body)) !== 0) problem(round, `layer ${o.layer_name} tile ${z}/${x}/${y}: not the archive's bytes`);
      }
    } finally {
      await chain.close();
    }
  }
  return { tiles, entities: Object.keys(s.uploads).length + Object.keys(s.stored_data).length + Object.keys(s.offerings).length };
}

function centre(ring) {
  const xs = ring.map((p) => p[0]);
  const ys = ring.map((p) => p[1]);
  return [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2];
}

const t0 = Date.now();
let kills = 0;
let tilesChecked = 0;
let last = { entities: 0 };
console.log(`bench:faults: up to ${KILLS} kills in ${CAP_S} s, ${WORKERS} serving process(es), seed ${SEED}, data in ${data}`);
try {
  let t = await start();
  while (kills < KILLS && Date.now() - t0 < CAP_S * 1000) {
    const { call } = client(t.base);
    const D = `/api/datastores/${(await call('GET', '/api/datastores')).body[0]._id}`;
    const state = {
      processing: (await call('GET', `${D}/processings`)).body[0]._id,
      endpoint: (await call('GET', `${D}/endpoints`)).body[0]._id,
    };
    // three clients at once until the kill, which lands 0.3 to 4 s in
    let stop = false;
    const actor = async () => {
      while (!stop) await operate(client(t.base), D, state).catch(() => {});
    };
    const actors = [actor(), actor(), actor()];
    await new Promise((r) => setTimeout(r, 300 + rand() * 3700));
    for (const [op, n] of inflight) if (n > 0) cut.set(op, (cut.get(op) ?? 0) + 1);
    try {
      const s = JSON.parse(readFileSync(join(data, 'state.json'), 'utf8'));
      if (Object.values(s.executions).some((e) => e.status === 'PROGRESS')) running.set('build', (running.get('build') ?? 0) + 1);
    } catch {}
    await kill(t);
    kills++;
    stop = true;
    await Promise.all(actors);
    t = await start();
    last = await check(kills, t);
    tilesChecked += last.tiles;
    console.log(`kill ${kills}: ${((Date.now() - t0) / 1000).toFixed(0)} s, ${answered} answers so far, ${last.entities} entities, ${last.tiles} tiles compared, ${problems.length} inconsistencies`);
  }
  await kill(t);
} finally {
  rmSync(data, { recursive: true, force: true });
}
console.log(
  `bench:faults: N=${kills} kills (SIGKILL) in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${answered} operations answered, ` +
    `${tilesChecked} served tiles compared with their archives, ${problems.length} inconsistencies (goal 0), seed ${SEED}`,
);
const fmt = (m) => [...m].map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
console.log(`bench:faults: kills that cut a request of each kind: ${fmt(cut)}; that found a build running: ${running.get('build') ?? 0}`);
process.exit(problems.length ? 1 : 0);
