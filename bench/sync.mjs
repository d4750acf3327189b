// Sync benchmark (DESIGN 1 step 8, DESIGN 7): tile load on keep-alive connections while the layer is
// switched back and forth between two stored data, measuring failed answers, answers that are no whole
// tile of either version, requests/s, and how long after the PUT offering's answer every serving process
// serves the new version.
//   node bench/sync.mjs                                  # SYNCS=100 CONNECTIONS=64 WORKERS=2
//   SYNCS=20 CONNECTIONS=16 WORKERS=4 node bench/sync.mjs
// Runs `node dist/main.js` (build first: bench/sync.sh does) on a temporary data folder on 127.0.0.1.
// Bounded: the run stops after the syncs, or after CAP_S seconds (300) whatever happens.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../dist/client.js';
import { startTuile } from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const SYNCS = Number(env.SYNCS ?? 100);
const CONNECTIONS = Number(env.CONNECTIONS ?? 64);
const WORKERS = Number(env.WORKERS ?? 2);
const BOTTOM = Number(env.BOTTOM ?? 7);
const CAP_MS = Number(env.CAP_S ?? 300) * 1000;
const MAX_URLS = Number(env.URLS ?? 200);
/** a sync not visible on every process after this long counts as not visible */
const VISIBLE_TIMEOUT_MS = 10_000;
const GOAL_MS = 100;
const LAYER = 'bench';
const NORTH = join(ROOT, 'test/fixtures/france_relief_north_2154.tif');
const SOUTH = join(ROOT, 'test/fixtures/france_relief_south_2154.tif');

const t0 = Date.now();
const deadline = t0 + CAP_MS;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha = (b) => createHash('sha1').update(b).digest('hex');
const log = (...a) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s]`, ...a);

// ---------------------------------------------------------------- the server
const dataDir = mkdtempSync(join(tmpdir(), 'tuile-bench-sync-'));
const token = randomBytes(16).toString('hex');
let started;
try {
  started = await startTuile({ dataDir, token, workers: WORKERS });
} catch (err) {
  console.error(`bench/sync: ${err.message}`);
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
}
const { proc: server, base, output } = started;
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  rmSync(dataDir, { recursive: true, force: true });
}
// the hard cap: whatever is running, stop everything a little after it
const killer = setTimeout(() => {
  log(`hard cap of ${CAP_MS / 1000} s passed: stopping`);
  void cleanup().then(() => process.exit(3));
}, CAP_MS + 20_000);
killer.unref();
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

function fail(msg) {
  console.error(`bench/sync: ${msg}\n--- server output (end) ---\n${output().slice(-4000)}`);
  return cleanup().then(() => process.exit(1));
}

// ---------------------------------------------------------------- plain HTTP
/** A GET with node:http: on `agent`, or alone on a new connection closed after it (agent false). */
function get(path, agent, headers = {}) {
  return new Promise((res, rej) => {
    const req = request(`${base}${path}`, { agent, headers: agent ? headers : { ...headers, Connection: 'close' } }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks), reused: req.reusedSocket }));
      r.on('error', rej);
    });
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

// ---------------------------------------------------------------- the management API
// the scenario client (src/client.ts, in dist/); what goes wrong ends the run with the server's output
const api = new ApiClient(base, token);
let D = '';
const call = (method, path, body) => api.call(method, path, body);
async function must(method, path, body, want) {
  return api.must(method, path, body, want).catch((e) => fail(e.message));
}
async function until(path, statuses, timeoutMs = 300_000, everyMs = 50) {
  const r = await api.until(path, statuses, { timeoutMs: Math.min(timeoutMs, deadline - Date.now()), everyMs }).catch((e) => fail(e.message));
  return r.entity;
}
async function deliver(name, file) {
  const u = await api.deliver([{ path: `data/${name}.tif`, file }], 'EPSG:2154', name, { description: 'bench' }).catch((e) => fail(e.message));
  if (u.status !== 'CLOSED') await fail(`upload ${name} is ${u.status}`);
  return u._id;
}
const execute = (name, inputs, parameters) => api.compute(inputs, parameters, name).catch((e) => fail(e.message));
const configuration = (sd) => ({
  type: 'WMTS-TMS',
  name: 'bench',
  layer_name: LAYER,
  type_infos: { title: 'bench', abstract: 'sync benchmark', keywords: ['bench'], used_data: [{ stored_data: sd, bottom_level: String(BOTTOM), top_level: '0' }] },
});

D = `/api/datastores/${await api.init().catch((e) => fail(e.message))}`;
log(`tuile on ${base} with ${WORKERS} serving processes; building north and south (png, levels 0-${BOTTOM})`);
const [northUpload, southUpload] = await Promise.all([deliver('north', NORTH), deliver('south', SOUTH)]);
const north = await execute('north', { upload: [northUpload] }, { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: BOTTOM });
const whole = await execute('north+south', { upload: [southUpload], stored_data: [north] }, {});
const served = await api.publish(configuration(north)).catch((e) => fail(e.message));

const putDurations = [];
/** PUT configuration then PUT offering; resolves at the PUT offering's answer (performance.now()). */
async function sync(sd) {
  await must('PUT', `${D}/configurations/${served.configuration}`, configuration(sd), 200);
  const sent = performance.now();
  const r = await call('PUT', `${D}/offerings/${served.offering}`);
  const at = performance.now();
  putDurations.push(at - sent);
  if (r.status !== 200 || r.body.status !== 'MODIFYING') await fail(`PUT offering: ${r.status} ${JSON.stringify(r.body)}`);
  return at;
}

// ---------------------------------------------------------------- the tiles and their two versions
/** Served limits per level (from the WMTS capabilities' TileMatrixSetLimits of the layer). */
async function limits() {
  const caps = (await get('/wmts/1.0.0/WMTSCapabilities.xml', false)).body.toString();
  const layer = caps.split('<Layer>').find((l) => l.includes(`<ows:Identifier>${LAYER}</ows:Identifier>`));
  const m = new Map();
  for (const [, z, minY, maxY, minX, maxX] of layer.matchAll(
    /<TileMatrix>(\d+)<\/TileMatrix>\s*<MinTileRow>(\d+)<\/MinTileRow>\s*<MaxTileRow>(\d+)<\/MaxTileRow>\s*<MinTileCol>(\d+)<\/MinTileCol>\s*<MaxTileCol>(\d+)<\/MaxTileCol>/g,
  )) {
    m.set(Number(z), { minX: +minX, maxX: +maxX, minY: +minY, maxY: +maxY });
  }
  if (m.size === 0) await fail('no TileMatrixSetLimits in the capabilities');
  return m;
}
const PROTOCOLS = {
  xyz: (z, x, y) => `/tiles/${LAYER}/${z}/${x}/${y}.png`,
  wmts: (z, x, y) => `/wmts/1.0.0/${LAYER}/normal/PM/${z}/${y}/${x}.png`,
  tms: (z, x, y) => `/tms/1.0.0/${LAYER}/${z}/${x}/${2 ** z - 1 - y}.png`,
  ogcapi: (z, x, y) => `/ogcapi/collections/${LAYER}/map/tiles/WebMercatorQuad/${z}/${y}/${x}`,
};
const url = (proto, z, x, y) => PROTOCOLS[proto](z, x, y);

async function versionOf(tiles) {
  const v = new Map();
  for (const t of tiles) {
    const r = await get(url('xyz', ...t), false);
    if (r.status !== 200) await fail(`tile ${t.join('/')}: ${r.status}`);
    v.set(t.join('/'), { hash: sha(r.body), etag: r.headers.etag });
  }
  return v;
}

const limNorth = await limits();
const northVersions = new Map(); // filled below once the tile list is known
await sync(whole);
await until(`${D}/offerings/${served.offering}`, ['PUBLISHED'], 30_000, 20);
const limWhole = await limits();
let tiles = [];
for (let z = 4; z <= Math.min(7, BOTTOM); z++) {
  const a = limNorth.get(z);
  const b = limWhole.get(z);
  if (!a || !b) continue;
  for (let y = Math.max(a.minY, b.minY); y <= Math.min(a.maxY, b.maxY); y++) for (let x = Math.max(a.minX, b.minX); x <= Math.min(a.maxX, b.maxX); x++) tiles.push([z, x, y]);
}
const wholeVersions = await versionOf(tiles);
await sync(north);
await until(`${D}/offerings/${served.offering}`, ['PUBLISHED'], 30_000, 20);
for (const [k, v] of await versionOf(tiles)) northVersions.set(k, v);
// now serving the north; the load starts there and the first measured sync goes to the whole
const changed = tiles.filter((t) => northVersions.get(t.join('/')).hash !== wholeVersions.get(t.join('/')).hash);
const shared = tiles.filter((t) => northVersions.get(t.join('/')).hash === wholeVersions.get(t.join('/')).hash);
if (changed.length === 0) await fail('no tile differs between the two versions');
// the poller asks one changed tile (the last one listed: of the deepest level with a change)
const probeTile = changed[changed.length - 1];
const probeKey = probeTile.join('/');

// the URLs of the load: every tile in each protocol, up to MAX_URLS, interleaving changed and shared tiles
const urls = [];
const valid = [];
{
  const order = [];
  for (let i = 0; i < Math.max(changed.length, shared.length); i++) {
    if (i < changed.length) order.push(changed[i]);
    if (i < shared.length) order.push(shared[i]);
  }
  outer: for (const proto of Object.keys(PROTOCOLS)) {
    for (const t of order) {
      if (urls.length >= MAX_URLS) break outer;
      urls.push(url(proto, ...t));
      const k = t.join('/');
      // a version is its body and its ETag (the id of the pyramid holding the tile): both must agree
      valid.push(new Set([northVersions, wholeVersions].map((v) => `${v.get(k).etag} ${v.get(k).hash}`)));
    }
  }
}
log(`${tiles.length} tiles of levels 4-${Math.min(7, BOTTOM)} in both versions' limits (${changed.length} changed, ${shared.length} shared); load on ${urls.length} URLs; probe tile ${probeKey}`);

// the serving processes, from /health on new connections (the cluster hands them out in turn)
const pids = new Set();
for (let i = 0; i < 50 * WORKERS && pids.size < WORKERS; i++) pids.add(JSON.parse((await get('/health', false)).body.toString()).pid);
if (pids.size !== WORKERS) await fail(`only ${pids.size} serving processes answered /health`);

// ---------------------------------------------------------------- the load
const stats = { responses: 0, failed: 0, mismatched: 0, examples: [], durations: [] };
let loading = true;
const loadAgent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
async function connection(i) {
  let n = Math.floor((i * urls.length) / CONNECTIONS);
  while (loading) {
    const k = n++ % urls.length;
    try {
      const s = performance.now();
      const r = await get(urls[k], loadAgent);
      if (stats.durations.length < 2_000_000) stats.durations.push(performance.now() - s);
      stats.responses++;
      if (r.status !== 200) {
        stats.failed++;
        if (stats.examples.length < 10) stats.examples.push(`GET ${urls[k]}: ${r.status} ${r.body.toString().slice(0, 300)}`);
      } else if (!valid[k].has(`${r.headers.etag} ${sha(r.body)}`)) {
        stats.mismatched++;
        if (stats.examples.length < 10) stats.examples.push(`GET ${urls[k]}: 200, ${r.body.length} bytes under ETag ${r.headers.etag} match neither version`);
      }
    } catch (err) {
      stats.responses++;
      stats.failed++;
      if (stats.examples.length < 10) stats.examples.push(`GET ${urls[k]}: ${err.code ?? ''} ${err.message}`);
    }
  }
}

// ---------------------------------------------------------------- when a sync becomes visible
// Method: PROBERS (2*WORKERS) pollers probe back to back, side by side. A probe opens a new TCP
// connection (an agent of one socket, made for the probe), asks /health on it (keep-alive) to learn which
// serving process holds the connection, then asks the changed probe tile on the same socket with
// `Connection: close` (checked: `reusedSocket`). A connection belongs to one process, so each probe says
// "process <pid> served version <v> at <time its answer ended>". Probes are taken in the order their
// answers ended; the sync is visible once 2*WORKERS consecutive probes saw the new version (an old one
// resets the count) and that streak holds every serving process. Its latency is, over the processes, the
// latest of each one's first answer in that streak, counted from the PUT offering's answer: an upper
// bound of when the last process switched, which includes one probe's own time (a new connection and two
// requests queued behind the load; printed as "probe"). The API's PUBLISHED (which the primary commits
// once every process acknowledged the switch) is timed alongside by another poller.
const PROBERS = Number(env.PROBERS ?? 2 * WORKERS);
const probeStats = { probes: 0, durations: [], notReused: 0, other: 0, errors: 0 };
async function probe() {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const s = performance.now();
    const h = await get('/health', agent);
    const t = await get(`/tiles/${LAYER}/${probeKey}.png`, agent, { Connection: 'close' });
    const end = performance.now();
    probeStats.probes++;
    probeStats.durations.push(end - s);
    if (!t.reused) probeStats.notReused++;
    return { pid: JSON.parse(h.body.toString()).pid, status: t.status, hash: t.status === 200 ? sha(t.body) : '', at: end };
  } finally {
    agent.destroy();
  }
}
async function visible(want, from) {
  const end = from + VISIBLE_TIMEOUT_MS;
  let streak = [];
  let result = null;
  const settled = () => result !== null || performance.now() >= end;
  const seen = (p) => {
    if (!pids.has(p.pid)) {
      log(`a new serving process answered: ${p.pid}`);
      pids.add(p.pid);
    }
    if (p.hash === want) streak.push(p);
    else {
      if (p.status !== 200 || ![northVersions.get(probeKey).hash, wholeVersions.get(probeKey).hash].includes(p.hash)) probeStats.other++;
      streak = [];
    }
    const inStreak = new Set(streak.map((s) => s.pid));
    if (result === null && streak.length >= 2 * WORKERS && [...pids].every((pid) => inStreak.has(pid))) {
      let last = 0;
      for (const pid of pids) last = Math.max(last, streak.find((s) => s.pid === pid).at);
      result = last - from;
    }
  };
  // answers are handled as they end (one event loop: in the order they ended)
  const loop = async () => {
    while (!settled()) {
      const p = await probe().catch(() => null);
      if (p) seen(p);
      else probeStats.errors++;
    }
  };
  await Promise.all(Array.from({ length: PROBERS }, loop));
  return result;
}
async function published(from) {
  for (;;) {
    const r = await call('GET', `${D}/offerings/${served.offering}`);
    if (r.status === 200 && r.body.status === 'PUBLISHED') return performance.now() - from;
    if (r.status !== 200 || r.body.status === 'UNSTABLE' || performance.now() > from + 30_000) return null;
    await sleep(5);
  }
}

// ---------------------------------------------------------------- the run
const conns = Array.from({ length: CONNECTIONS }, (_, i) => connection(i));
await sleep(1000); // the connections open and the caches warm
// the same load without syncs first, for comparison
const baseStart = performance.now();
const baseResponses = stats.responses;
await sleep(Number(env.BASELINE_S ?? 3) * 1000);
const baseline = Math.round((stats.responses - baseResponses) / ((performance.now() - baseStart) / 1000));
const runStart = performance.now();
const load0 = (await import('node:os')).loadavg()[0];
stats.durations.length = 0;
const startResponses = stats.responses;
const latencies = [];
const apiLatencies = [];
let notVisible = 0;
let done = 0;
for (let i = 0; i < SYNCS && Date.now() < deadline - 20_000; i++) {
  const target = i % 2 === 0 ? whole : north;
  const want = (target === whole ? wholeVersions : northVersions).get(probeKey).hash;
  const at = await sync(target);
  const [v, a] = await Promise.all([visible(want, at), published(at)]);
  if (v === null) notVisible++;
  else latencies.push(v);
  if (a !== null) apiLatencies.push(a);
  else await until(`${D}/offerings/${served.offering}`, ['PUBLISHED'], 30_000, 20);
  done++;
  if (done % 10 === 0) log(`${done} syncs, ${stats.responses} responses, ${stats.failed} failed, ${stats.mismatched} neither version`);
}
const runSeconds = (performance.now() - runStart) / 1000;
const runResponses = stats.responses - startResponses;
loading = false;
await Promise.all(conns);
loadAgent.destroy();
// open files of each process after the syncs (Linux): retired chains are closed after a grace period
const fdCount = (pid) => (existsSync(`/proc/${pid}/fd`) ? readdirSync(`/proc/${pid}/fd`).length : null);
const fds = { primary: fdCount(server.pid), workers: [...pids].map(fdCount) };
const serverProblems = output().split('\n').filter((l) => /not confirmed|cannot load|left out|exited|Error|tuile: GET/.test(l));
await cleanup();

// ---------------------------------------------------------------- the figures
function q(list, p) {
  if (list.length === 0) return null;
  const s = [...list].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
}
const r1 = (x) => (x === null ? null : Math.round(x * 10) / 10);
const result = {
  bench: 'sync',
  date: new Date().toISOString(),
  cpus: (await import('node:os')).cpus().length,
  workers: WORKERS,
  connections: CONNECTIONS,
  syncs: done,
  syncs_asked: SYNCS,
  tiles: tiles.length,
  changed_tiles: changed.length,
  urls: urls.length,
  responses: stats.responses,
  failed: stats.failed,
  neither_version: stats.mismatched,
  req_per_s: Math.round(runResponses / runSeconds),
  req_per_s_without_syncs: baseline,
  run_s: r1(runSeconds),
  visible_ms: { median: r1(q(latencies, 0.5)), p95: r1(q(latencies, 0.95)), max: r1(latencies.length ? Math.max(...latencies) : null) },
  not_visible: notVisible,
  over_goal: latencies.filter((l) => l > GOAL_MS).length,
  api_published_ms: { median: r1(q(apiLatencies, 0.5)), p95: r1(q(apiLatencies, 0.95)), max: r1(apiLatencies.length ? Math.max(...apiLatencies) : null) },
  request_ms: { median: r1(q(stats.durations, 0.5)), p99: r1(q(stats.durations, 0.99)), max: r1(stats.durations.reduce((a, b) => Math.max(a, b), 0)) },
  loadavg_1min: { start: r1(load0), end: r1((await import('node:os')).loadavg()[0]) },
  put_offering_ms: { median: r1(q(putDurations, 0.5)), p95: r1(q(putDurations, 0.95)) },
  probe_ms: { median: r1(q(probeStats.durations, 0.5)), p95: r1(q(probeStats.durations, 0.95)) },
  probes: probeStats.probes,
  probes_not_same_socket: probeStats.notReused,
  probes_neither_version: probeStats.other,
  probe_errors: probeStats.errors,
  open_files: fds,
  server_problems: serverProblems.length,
};
console.log(`\nsync benchmark: ${WORKERS} serving processes, ${CONNECTIONS} keep-alive connections on ${urls.length} URLs (${tiles.length} tiles of levels 4-${Math.min(7, BOTTOM)}, ${changed.length} changed), ${done} syncs, ${result.cpus} CPU`);
console.log('| measure | value |\n|---|---|');
console.log(`| responses | ${result.responses} |`);
console.log(`| failed (non-200 or network error) | ${result.failed} |`);
console.log(`| neither version (body and ETag of one version) | ${result.neither_version} |`);
console.log(`| requests/s during the syncs (before them, no sync) | ${result.req_per_s} (${baseline}) |`);
console.log(`| visible on every process after the PUT's answer, ms: median / p95 / max | ${result.visible_ms.median} / ${result.visible_ms.p95} / ${result.visible_ms.max} |`);
console.log(`| syncs over ${GOAL_MS} ms / never visible (${VISIBLE_TIMEOUT_MS / 1000} s) | ${result.over_goal} / ${result.not_visible} |`);
console.log(`| API PUBLISHED after the PUT's answer, ms: median / p95 / max | ${result.api_published_ms.median} / ${result.api_published_ms.p95} / ${result.api_published_ms.max} |`);
console.log(`| load tile requests during the syncs, ms: median / p99 / max | ${result.request_ms.median} / ${result.request_ms.p99} / ${result.request_ms.max} |`);
console.log(`| machine load average (1 min) at the start / end of the syncs | ${result.loadavg_1min.start} / ${result.loadavg_1min.end} |`);
console.log(`| PUT offering itself (one state commit), ms: median / p95 | ${result.put_offering_ms.median} / ${result.put_offering_ms.p95} |`);
console.log(`| probe (new connection, /health + tile; ${PROBERS} probers), ms: median / p95 | ${result.probe_ms.median} / ${result.probe_ms.p95} |`);
console.log(`| open files after the syncs: primary / serving processes | ${fds.primary} / ${fds.workers.join(', ')} |`);
for (const e of stats.examples) console.log(`  e.g. ${e}`);
for (const l of serverProblems.slice(0, 10)) console.log(`  server: ${l}`);
console.log(JSON.stringify(result));
const ok = result.failed === 0 && result.neither_version === 0 && result.not_visible === 0 && done === SYNCS;
process.exit(ok ? 0 : 1);
