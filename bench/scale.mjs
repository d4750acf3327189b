// Scale-out benchmark (#17): tiles/s of one node with its pyramids on local disk against the same node
// with them in object storage (cache cold and hot), of two nodes against one, and syncs across nodes
// under load (failed answers, answers of neither version, how long until every node serves the new one).
//   node bench/scale.mjs          # bench/scale.sh starts the engines and runs this
// Env: ENGINES_ENV (the env file of scripts/engines.sh; without it only the local-disk rows run),
// CONNECTIONS (32), DURATION (10 s per row), BOTTOM (10), WORKERS (serving processes per node, 1),
// SYNCS (100), CAP_S (600: the whole run stops after it, whatever happens).
// Cold: TUILE_CACHE_MB=1 on a URL list far larger than 1 MB, so nearly every answer reads its store;
// hot: the default cache, warmed by one pass over the list. Each row starts a new node process, and
// reports the share of its answers the tile caches held (tuile_cache_hits/misses_total of /metrics). The load generator is one Node process of
// keep-alive connections on the same machine (it takes a share of the cores: compare rows, not machines).
// Runs `node dist/main.js` nodes on 127.0.0.1 and a temporary folder; uses the scenario client in dist/.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../dist/client.js';
import { startTuile } from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const CONNECTIONS = Number(env.CONNECTIONS ?? 32);
const DURATION_MS = Number(env.DURATION ?? 10) * 1000;
const BOTTOM = Number(env.BOTTOM ?? 10);
const WORKERS = Number(env.WORKERS ?? 1);
const SYNCS = Number(env.SYNCS ?? 100);
const CAP_MS = Number(env.CAP_S ?? 600) * 1000;
const VISIBLE_TIMEOUT_MS = 10_000;
const LAYER = 'bench';
const NORTH = join(ROOT, 'test/fixtures/france_relief_north_2154.tif');
const SOUTH = join(ROOT, 'test/fixtures/france_relief_south_2154.tif');

const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha = (b) => createHash('sha1').update(b).digest('hex');
const log = (...a) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s]`, ...a);
const work = mkdtempSync(join(tmpdir(), 'tuile-bench-scale-'));
const token = randomBytes(16).toString('hex');

function parseEnv(text) {
  return Object.fromEntries(text.split('\n').flatMap((l) => (/^([A-Za-z_]\w*)=(.*)$/.exec(l) ? [[RegExp.$1, RegExp.$2.trim()]] : [])));
}
const engines = env.ENGINES_ENV ? parseEnv(readFileSync(env.ENGINES_ENV, 'utf8')) : null;

// ---------------------------------------------------------------- nodes
const nodes = new Set();
/** A tuile node: `extra` adds its settings (state and storage URLs, cache size) to the common ones. */
async function startNode(name, dataDir, extra) {
  let t;
  try {
    t = await startTuile({ dataDir, token, workers: WORKERS, env: extra, timeoutMs: 60_000 });
  } catch (err) {
    await fail(`node ${name}: ${err.message}`);
  }
  const node = { name, base: t.base, proc: t.proc, get out() { return t.output(); } };
  nodes.add(node);
  node.api = new ApiClient(node.base, token);
  await node.api.init();
  return node;
}
async function stopNode(node) {
  nodes.delete(node);
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return;
  const exited = new Promise((r) => node.proc.once('exit', r));
  node.proc.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (node.proc.exitCode === null && node.proc.signalCode === null) node.proc.kill('SIGKILL');
}
let cleaned = false;
/** What the run made in engines it did not start: its database, and its objects under their prefix. */
const made = { database: '', storageUrl: '' };
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  await Promise.all([...nodes].map(stopNode));
  rmSync(work, { recursive: true, force: true });
  if (made.database) {
    const pg = (await import('pg')).default;
    const admin = new pg.Client({ connectionString: engines.TUILE_TEST_STATE_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${made.database} WITH (FORCE)`).catch((e) => log(`could not drop ${made.database}: ${e.message}`));
    await admin.end();
  }
  if (made.storageUrl) {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const { S3Client, ListObjectsV2Command, DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    const [, bucket, prefix] = /^s3:\/\/([^/]+)\/(.*)$/.exec(made.storageUrl);
    const s3 = new S3Client({
      endpoint: engines.TUILE_S3_ENDPOINT,
      region: engines.AWS_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: engines.AWS_ACCESS_KEY_ID, secretAccessKey: engines.AWS_SECRET_ACCESS_KEY },
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    try {
      for (let token; ; ) {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
        for (const o of page.Contents ?? []) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
        if (!page.IsTruncated) break;
        token = page.NextContinuationToken;
      }
    } catch (e) {
      log(`could not remove ${made.storageUrl}: ${e.message}`);
    }
    s3.destroy();
  }
}
async function fail(msg) {
  console.error(`bench/scale: ${msg}`);
  for (const n of nodes) console.error(`--- node ${n.name} (end of its output) ---\n${n.out.slice(-2000)}`);
  await cleanup();
  process.exit(1);
}
const killer = setTimeout(() => {
  log(`hard cap of ${CAP_MS / 1000} s passed: stopping`);
  void cleanup().then(() => process.exit(3));
}, CAP_MS);
killer.unref();
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

// ---------------------------------------------------------------- HTTP
/** A GET on `agent`, or alone on a new connection closed after it (agent false). */
function get(base, path, agent, headers = {}) {
  return new Promise((res, rej) => {
    const req = request(`${base}${path}`, { agent, headers: agent ? headers : { ...headers, Connection: 'close' } }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on('error', rej);
    });
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}
const tileUrl = (t) => `/tiles/${LAYER}/${t.z}/${t.x}/${t.y}.png`;

/** Every tile of the layer's served limits (WMTS TileMatrixSetLimits), levels 0 to BOTTOM. */
async function layerTiles(node) {
  const caps = (await get(node.base, '/wmts/1.0.0/WMTSCapabilities.xml', false)).body.toString();
  const layer = caps.split('<Layer>').find((l) => l.includes(`<ows:Identifier>${LAYER}</ows:Identifier>`));
  if (!layer) await fail(`no layer ${LAYER} in ${node.name}'s capabilities`);
  const tiles = [];
  const re = /<TileMatrix>(\d+)<\/TileMatrix>\s*<MinTileRow>(\d+)<\/MinTileRow>\s*<MaxTileRow>(\d+)<\/MaxTileRow>\s*<MinTileCol>(\d+)<\/MinTileCol>\s*<MaxTileCol>(\d+)<\/MaxTileCol>/g;
  for (const [, z, minY, maxY, minX, maxX] of layer.matchAll(re)) {
    for (let y = +minY; y <= +maxY; y++) for (let x = +minX; x <= +maxX; x++) tiles.push({ z: +z, x, y });
  }
  return tiles;
}
/** Each tile's answer on one node: `${etag} ${sha1}`; every tile must be a 200. */
async function versions(node, tiles) {
  const v = new Map();
  for (const t of tiles) {
    const r = await get(node.base, tileUrl(t), false);
    if (r.status !== 200) await fail(`${node.name} ${tileUrl(t)}: ${r.status}`);
    v.set(tileUrl(t), `${r.headers.etag} ${sha(r.body)}`);
  }
  return v;
}

// ---------------------------------------------------------------- load
/**
 * CONNECTIONS keep-alive connections spread over `targets` (nodes), each asking the URLs in turn until
 * `stop()` resolves. `valid` (optional) maps a URL to the set of acceptable `${etag} ${sha1}` answers.
 */
async function load(targets, urls, stop, valid) {
  const s = { responses: 0, failed: 0, mismatched: 0, bytes: 0, durations: [], examples: [] };
  let running = true;
  const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: CONNECTIONS }));
  const conn = async (i) => {
    const node = targets[i % targets.length];
    const agent = agents[i % targets.length];
    let n = Math.floor((i * urls.length) / CONNECTIONS);
    while (running) {
      const url = urls[n++ % urls.length];
      const start = performance.now();
      try {
        const r = await get(node.base, url, agent);
        s.durations.push(performance.now() - start);
        s.responses++;
        s.bytes += r.body.length;
        if (r.status !== 200) {
          s.failed++;
          if (s.examples.length < 5) s.examples.push(`${node.name} ${url}: ${r.status} ${r.body.toString().slice(0, 200)}`);
        } else if (valid && !valid.get(url)?.has(`${r.headers.etag} ${sha(r.body)}`)) {
          s.mismatched++;
          if (s.examples.length < 5) s.examples.push(`${node.name} ${url}: a 200 of neither version (ETag ${r.headers.etag})`);
        }
      } catch (err) {
        s.responses++;
        s.failed++;
        if (s.examples.length < 5) s.examples.push(`${node.name} ${url}: ${err.message}`);
      }
    }
  };
  const started = performance.now();
  const conns = Array.from({ length: CONNECTIONS }, (_, i) => conn(i));
  await stop();
  running = false;
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(conns);
  agents.forEach((a) => a.destroy());
  s.durations.sort((a, b) => a - b);
  const pct = (p) => (s.durations.length ? s.durations[Math.min(s.durations.length - 1, Math.floor(p * s.durations.length))] : NaN);
  return { ...s, seconds, rate: s.responses / seconds, p50: pct(0.5), p99: pct(0.99) };
}
/** Tile cache hits and misses of the nodes, summed (NaN when /metrics does not give them). */
async function cacheCounts(targets) {
  let hits = 0;
  let misses = 0;
  for (const n of targets) {
    const text = (await get(n.base, '/metrics', false)).body.toString();
    const value = (name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    hits += value('tuile_cache_hits_total');
    misses += value('tuile_cache_misses_total');
  }
  return { hits, misses };
}
const rows = [];
async function measure(label, targets, urls) {
  const before = await cacheCounts(targets);
  const r = await load(targets, urls, () => sleep(DURATION_MS));
  const after = await cacheCounts(targets);
  if (r.failed) await fail(`${label}: ${r.failed} failed answers, e.g. ${r.examples.join('; ')}`);
  const hits = after.hits - before.hits;
  const hitShare = hits / (hits + after.misses - before.misses);
  rows.push({ label, ...r, hitShare });
  log(`${label}: ${Math.round(r.rate)} tiles/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, cache hits ${(100 * hitShare).toFixed(1)} %`);
  return r;
}
/** One pass over the URLs, so that the hot rows measure a warm cache. */
async function warm(node, urls) {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  for (let i = 0; i < urls.length; i += 8) await Promise.all(urls.slice(i, i + 8).map((u) => get(node.base, u, agent)));
  agent.destroy();
}

// ---------------------------------------------------------------- the pyramids
/** north (levels 0-BOTTOM, png) and the south chained on it, published as LAYER on north; through `node`. */
async function seed(node) {
  const api = node.api;
  const north = await api.deliver([{ path: 'data/north.tif', file: NORTH }], 'EPSG:2154', 'north', { description: 'bench' });
  const south = await api.deliver([{ path: 'data/south.tif', file: SOUTH }], 'EPSG:2154', 'south', { description: 'bench' });
  const sdNorth = await api.compute({ upload: [north._id] }, { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: BOTTOM }, 'north');
  const sdWhole = await api.compute({ upload: [south._id], stored_data: [sdNorth] }, {}, 'north+south');
  const published = await api.publish(api.configuration(LAYER, sdNorth, String(BOTTOM)));
  return { north: sdNorth, whole: sdWhole, published };
}

// ---------------------------------------------------------------- the run
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');
try {
  // local disk, JSON state: the embedded default
  const localDir = join(work, 'local');
  let local = await startNode('local', localDir, {});
  log(`building north (png, levels 0-${BOTTOM}) and south on local disk`);
  await seed(local);
  const tiles = await layerTiles(local);
  const urls = tiles.map(tileUrl);
  log(`${urls.length} tiles in the layer's limits`);
  // every row on a node process that has done nothing else: the one that ran the builds served slower
  await stopNode(local);
  local = await startNode('local', localDir, {});
  await warm(local, urls);
  const localHot = await measure('local disk, hot', [local], urls);
  await stopNode(local);
  local = await startNode('local', localDir, { TUILE_CACHE_MB: '1' });
  const localCold = await measure('local disk, cold', [local], urls);
  await stopNode(local);

  if (!engines) {
    log('no ENGINES_ENV: the object storage, two-node and sync rows did NOT run (bench/scale.sh starts the engines)');
  } else {
    const suffix = randomBytes(4).toString('hex');
    const pg = (await import('pg')).default;
    const admin = new pg.Client({ connectionString: engines.TUILE_TEST_STATE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE bench_scale_${suffix}`);
    await admin.end();
    made.database = `bench_scale_${suffix}`;
    const shared = {
      TUILE_STATE_URL: engines.TUILE_TEST_STATE_URL.replace(/\/[^/]*$/, `/bench_scale_${suffix}`),
      TUILE_STORAGE_URL: `${engines.TUILE_TEST_STORAGE_URL.replace(/\/+$/, '')}/bench-scale-${suffix}`,
      ...Object.fromEntries(Object.entries(engines).filter(([k]) => k.startsWith('AWS_') || k === 'TUILE_S3_ENDPOINT')),
    };
    made.storageUrl = shared.TUILE_STORAGE_URL;
    let a = await startNode('A', join(work, 'a'), shared);
    let b = await startNode('B', join(work, 'b'), shared);
    log(`building north and south through node A into ${shared.TUILE_STORAGE_URL}`);
    const seeded = await seed(a);
    // the same tiles through B, byte for byte, or the nodes share no state and storage
    for (const end = Date.now() + 5000; !(await get(b.base, '/wmts/1.0.0/WMTSCapabilities.xml', false)).body.includes(`<ows:Identifier>${LAYER}<`); await sleep(100)) {
      if (Date.now() > end) await fail(`node B does not serve the layer published through node A: do this build's nodes share TUILE_STATE_URL (${shared.TUILE_STATE_URL.replace(/:[^:@/]*@/, ":***@")})?`);
    }
    const onA = await versions(a, tiles);
    const onB = await versions(b, tiles);
    const differ = [...onA].filter(([u, v]) => onB.get(u) !== v).length;
    if (differ) await fail(`node B serves ${differ} of ${tiles.length} tiles unlike node A: do this build's nodes share TUILE_STATE_URL and TUILE_STORAGE_URL?`);
    await stopNode(a);
    a = await startNode('A', join(work, 'a'), shared);
    await warm(a, urls);
    const s3Hot = await measure('object storage, hot', [a], urls);
    await warm(b, urls);
    const twoHot = await measure('object storage, hot, 2 nodes', [a, b], urls);
    await stopNode(a);
    a = await startNode('A', join(work, 'a'), { ...shared, TUILE_CACHE_MB: '1' });
    const s3Cold = await measure('object storage, cold', [a], urls);
    await stopNode(a);
    a = await startNode('A', join(work, 'a'), shared);

    // syncs across nodes: through A and B in turn, under load on both, visible on both
    const api = { A: a.api, B: b.api };
    const body = (sd) => a.api.configuration(LAYER, sd, String(BOTTOM));
    await a.api.synchronise(seeded.published, body(seeded.whole));
    const wholeV = await versions(a, tiles);
    await a.api.synchronise(seeded.published, body(seeded.north));
    const northV = await versions(a, tiles);
    const valid = new Map(urls.map((u) => [u, new Set([northV.get(u), wholeV.get(u)])]));
    const changed = urls.filter((u) => northV.get(u) !== wholeV.get(u));
    if (!changed.length) await fail('no tile differs between the two versions');
    const probe = changed[changed.length - 1];
    log(`${SYNCS} syncs through A and B in turn; probe ${probe}`);
    const latencies = [];
    let notVisible = 0;
    let done = 0;
    const syncLoad = await load([a, b], urls, async () => {
      await sleep(1000);
      for (let i = 0; i < SYNCS && Date.now() < t0 + CAP_MS - 60_000; i++) {
        const through = i % 2 === 0 ? 'A' : 'B';
        const target = i % 2 === 0 ? seeded.whole : seeded.north;
        const want = (target === seeded.whole ? wholeV : northV).get(probe);
        const d = api[through].d;
        await api[through].must('PUT', `${d}/configurations/${seeded.published.configuration}`, body(target), 200);
        await api[through].must('PUT', `${d}/offerings/${seeded.published.offering}`, undefined, 200);
        const from = performance.now();
        // visible on a node at its first answer of the new version on a new connection (one serving
        // process per node with WORKERS=1; more processes: a later probe may still meet an old one)
        const seen = await Promise.all(
          [a, b].map(async (n) => {
            while (performance.now() - from < VISIBLE_TIMEOUT_MS) {
              const r = await get(n.base, probe, false).catch(() => null);
              if (r && r.status === 200 && `${r.headers.etag} ${sha(r.body)}` === want) return performance.now() - from;
              await sleep(5);
            }
            return null;
          }),
        );
        if (seen.includes(null)) notVisible++;
        else latencies.push(Math.max(...seen));
        await api[through].until(`${d}/offerings/${seeded.published.offering}`, ['PUBLISHED'], { fail: ['UNSTABLE'], timeoutMs: 30_000 });
        if (++done % 10 === 0) log(`${done} syncs`);
      }
    }, valid);
    latencies.sort((x, y) => x - y);
    const syncRow = {
      syncs: done,
      responses: syncLoad.responses,
      rate: syncLoad.rate,
      failed: syncLoad.failed,
      mismatched: syncLoad.mismatched,
      notVisible,
      p50: latencies[Math.floor(latencies.length / 2)],
      worst: latencies[latencies.length - 1],
      examples: syncLoad.examples,
    };
    rows.push({ label: 'sync', ...syncRow });
    console.log(`\nobject storage / local disk, hot: ${fmt(s3Hot.rate / localHot.rate, 2)}x; cold: ${fmt(s3Cold.rate / localCold.rate, 2)}x; 2 nodes / 1 node, hot: ${fmt(twoHot.rate / s3Hot.rate, 2)}x`);
    console.log(
      `syncs across nodes under load: ${syncRow.syncs} syncs, ${syncRow.responses} answers (${fmt(syncRow.rate)}/s), ${syncRow.failed} failed, ${syncRow.mismatched} of neither version, ` +
        `${notVisible} not visible on both nodes within ${VISIBLE_TIMEOUT_MS / 1000} s; visible on both: median ${fmt(syncRow.p50, 1)} ms, worst ${fmt(syncRow.worst, 1)} ms`,
    );
    if (syncRow.examples.length) console.log(`  e.g. ${syncRow.examples.join('\n  e.g. ')}`);
  }
  console.log(`\n${CONNECTIONS} connections, ${DURATION_MS / 1000} s a row, ${WORKERS} serving process(es) a node, ${urls.length} tiles (levels 0-${BOTTOM})`);
  console.log('| row | tiles/s | p50 ms | p99 ms | MB/s | cache hits % |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows.filter((r) => r.label !== 'sync')) {
    console.log(`| ${r.label} | ${fmt(r.rate)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.bytes / r.seconds / 1e6, 1)} | ${fmt(100 * r.hitShare, 1)} |`);
  }
  const sync = rows.find((r) => r.label === 'sync');
  await cleanup();
  process.exit(sync && (sync.failed || sync.mismatched || sync.notVisible) ? 1 : 0);
} catch (err) {
  await fail(err.stack ?? String(err));
}
