// Process entry: configuration, the state store and job queue (in the primary, which owns the state), the
// management API, demo seeding on an empty data folder, and the serving processes (one per core through
// node:cluster, each with its own registry, cache and metrics, all switched to each committed set of layers).

import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import { createListener, limitBodies } from './app.js';
import { apiApp } from './api/index.js';
import { ensureDefaults } from './api/datastores.js';
import { recoverOfferings } from './api/offerings.js';
import { recoverChecks } from './api/uploads.js';
import type { ApiContext } from './api/http.js';
import { TileCache } from './cache.js';
import { dataPaths, loadConfig, type Config } from './config.js';
import { collectOrphans, lockDataDir } from './datadir.js';
import { demoStarting, demoWanted, seedDemo } from './demo.js';
import { errorMessage } from './errors.js';
import { JobRunner } from './jobs.js';
import { Metrics, mergeSnapshots, type MetricsSnapshot } from './metrics.js';
import { PyramidChain } from './pyramid/chain.js';
import type { ServerContext } from './protocols/tile.js';
import { RegistryHolder, specsFromState, type LayerSpec } from './registry.js';
import { drain as drainGracefully, graceful, internalHop } from './shutdown.js';
import { openStateStore } from './state/open.js';

type Message =
  | { type: 'layers'; specs: LayerSpec[]; generation: number }
  | { type: 'layers-ack'; generation: number }
  | { type: 'prepare'; id: number; dir: string }
  | { type: 'prepared'; id: number; error?: string }
  | { type: 'metrics-request'; id: number }
  | { type: 'metrics-collect'; id: number }
  | { type: 'metrics-snapshot'; id: number; snapshot: MetricsSnapshot }
  | { type: 'metrics-result'; id: number; snapshots: MetricsSnapshot[] }
  | { type: 'ready' };

/** How long a commit waits for every serving process to switch to its layers. */
const SWITCH_TIMEOUT_MS = 5000;
/** Serving processes that may fail to start in a row (a port in use...) before no other is forked. */
const MAX_FAILED_STARTS = 3;
/** How long in-flight requests may take to finish after SIGTERM. */
const DRAIN_MS = 10_000;

interface ServingOptions {
  collectMetrics?: (local: MetricsSnapshot) => Promise<MetricsSnapshot[]>;
  api?: Hono;
  apiPort?: number;
}

/** One serving process: its own registry holder, cache and metrics. */
async function runServer(cfg: Config, specs: LayerSpec[], opts: ServingOptions = {}) {
  const holder = new RegistryHolder();
  await holder.load(specs, { skipBroken: true });
  const cache = new TileCache(cfg.cacheMB * 1024 * 1024);
  const metrics = new Metrics(() => cache.stats());
  const ctx: ServerContext = { config: cfg, holder, cache, metrics };
  const collect = opts.collectMetrics;
  const server = createServer(
    createListener(ctx, { collectMetrics: collect ? () => collect(metrics.snapshot()) : undefined, api: opts.api, apiPort: opts.apiPort }),
  );
  limitBodies(server, cfg);
  await listen(server, cfg.port, cfg.host);
  return { ctx, server, holder };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  graceful(server);
  return new Promise<void>((res, rej) => {
    server.once('listening', () => res());
    server.once('error', rej);
    server.listen(port, host);
  });
}

/** Stops accepting, answers in-flight requests (bounded), lets keep-alive sockets end, then cuts what is left. */
function drain(server: Server): Promise<void> {
  return drainGracefully(server, DRAIN_MS);
}

function printBanner(cfg: Config, specs: LayerSpec[]): void {
  const host = cfg.host === '0.0.0.0' || cfg.host === '::' ? 'localhost' : cfg.host;
  const base = cfg.publicUrl ?? `http://${host}:${cfg.port}`;
  console.log(`tuile: serving ${specs.length} layer(s) on ${base} with ${cfg.workers} process(es), data in ${cfg.dataDir}`);
  console.log(`  layers and viewer:  ${base}/`);
  console.log(`  WMTS capabilities:  ${base}/wmts/1.0.0/WMTSCapabilities.xml`);
  console.log(`  TMS:                ${base}/tms/1.0.0/`);
  console.log(`  management API:     ${base}/api (OpenAPI: ${base}/api/openapi.json)`);
  for (const s of specs) console.log(`  ${s.name}: ${base}/viewer/${encodeURIComponent(s.name)}`);
}

/** The admin token: from the configuration, else the one generated at first start (file mode 0600). */
async function adminToken(cfg: Config): Promise<string> {
  if (cfg.adminToken) return cfg.adminToken;
  const file = dataPaths(cfg.dataDir).adminToken;
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const token = randomBytes(24).toString('base64url');
  await writeFile(file, token + '\n', { mode: 0o600 });
  console.log(`tuile: generated the admin token of the management API (kept in ${file}, shown once):\n  ${token}`);
  return token;
}

export interface StartOptions {
  /** serve these layers only, without state or management API (`tuile serve --layer`) */
  layers?: LayerSpec[];
}

export interface Running {
  stop(): Promise<void>;
  /** opens a pyramid chain in every serving process ahead of a switch to it; throws if one cannot */
  prepare(dir: string): Promise<void>;
  /** the metrics of every serving process */
  metrics(): Promise<MetricsSnapshot[]>;
}

export async function start(cfg: Config = loadConfig(), opts: StartOptions = {}): Promise<Running | void> {
  if (!cluster.isPrimary) return worker(cfg);
  await mkdir(cfg.dataDir, { recursive: true });
  if (opts.layers) {
    const layers = opts.layers;
    return serve(cfg, { specs: () => layers, onChange: () => {} });
  }

  // The primary owns the state: store, job queue, API; serving processes follow its commits.
  const paths = dataPaths(cfg.dataDir);
  lockDataDir(cfg.dataDir);
  const store = await openStateStore(cfg);
  // before anything serves: a push or a build started now would be taken for an orphan
  await collectOrphans(store.state, cfg.dataDir, store.shared);
  const token = await adminToken(cfg);
  // only on a new data folder (a user who deleted everything does not get the demo back), or to finish
  // one a kill interrupted: marked before the first commit makes the folder look used
  const demo = cfg.demo && demoWanted(cfg.dataDir, store.isNew);
  if (demo && store.isNew) await demoStarting(cfg.dataDir);
  await ensureDefaults(store);
  let running: Running | null = null;
  const apiCtx: ApiContext = {
    config: cfg,
    store,
    // the check is the serving processes' own opening of the chain, which the switch then reuses
    checkPyramid: async (dir) => {
      if (running) await running.prepare(dir);
      else await (await PyramidChain.open(dir)).close();
    },
    layerCounts: async () => mergeSnapshots(running ? await running.metrics() : []).layers ?? {},
  };
  const api = apiApp(apiCtx, token);
  const jobs = new JobRunner(store, { dataDir: cfg.dataDir, workers: cfg.workers });
  const specs = () => specsFromState(store.state, paths.pyramid);
  running = await serve(cfg, {
    specs,
    api,
    onChange: (publish) => {
      let last = JSON.stringify(specs());
      store.onCommit(async (state) => {
        const next = specsFromState(state, paths.pyramid);
        const text = JSON.stringify(next);
        if (text === last) return;
        last = text;
        await publish(next);
      });
    },
    beforeExit: () => jobs.stop(),
  });
  await jobs.recover();
  await recoverChecks(apiCtx);
  recoverOfferings(apiCtx);
  if (demo) {
    await seedDemo(api, token, cfg.dataDir, !store.isNew).catch((err) => console.error(`tuile: demo not seeded: ${errorMessage(err)}`));
  }
  printBanner(cfg, specs());
  return running;
}

interface ServeHooks {
  specs: () => LayerSpec[];
  api?: Hono;
  /** called once with the function that switches every serving process to new layers */
  onChange: (publish: (specs: LayerSpec[]) => Promise<void>) => void;
  beforeExit?: () => Promise<void>;
}

async function serve(cfg: Config, hooks: ServeHooks): Promise<Running> {
  let stopping: Promise<void> | null = null;
  const onSignal = (stop: () => Promise<void>) => {
    const handler = () => {
      stopping ??= stop().then(() => process.exit(0));
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  };
  if (cfg.workers <= 1) {
    const { server, holder, ctx } = await runServer(cfg, hooks.specs(), { api: hooks.api });
    hooks.onChange(async (specs) => {
      await holder.load(specs, { skipBroken: true });
    });
    const stop = async () => {
      await Promise.all([drain(server), hooks.beforeExit?.()]);
    };
    onSignal(stop);
    if (!hooks.api) printBanner(cfg, hooks.specs());
    return { stop, prepare: (dir) => holder.prepare(dir), metrics: async () => [ctx.metrics.snapshot()] };
  }
  // the API answers on 127.0.0.1 in this process; the serving processes pass /api requests to it
  let apiServer: Server | null = null;
  let apiPort: number | undefined;
  if (hooks.api) {
    apiServer = createServer(getRequestListener(hooks.api.fetch));
    limitBodies(apiServer, cfg);
    await listen(apiServer, 0, '127.0.0.1');
    apiPort = (apiServer.address() as AddressInfo).port;
    // its answers reach clients through the serving processes, which copy their headers: a Connection
    // header of this hop would override the serving process's own (close, when it stops)
    internalHop(apiServer);
  }
  const cl = primary(cfg, hooks.specs, apiPort, !hooks.api);
  hooks.onChange(cl.publish);
  await cl.ready;
  const stop = async () => {
    await Promise.all([cl.stop(), hooks.beforeExit?.()]);
    if (apiServer) await drain(apiServer);
  };
  onSignal(stop);
  return { stop, prepare: cl.prepare, metrics: cl.metrics };
}

function primary(cfg: Config, specs: () => LayerSpec[], apiPort: number | undefined, banner: boolean) {
  const workers = new Set<Worker>();
  let ready = 0;
  let nextId = 1;
  let generation = 0;
  let markReady!: () => void;
  let failReady!: (err: Error) => void;
  const readyP = new Promise<void>((r, j) => ((markReady = r), (failReady = j)));
  let isReady = false;
  const started = new WeakSet<Worker>();
  let failedStarts = 0;
  let gaveUp = false;
  const acks = new Map<number, { left: Set<Worker>; done: () => void }>();
  const preparing = new Map<number, { left: Set<Worker>; errors: string[]; done: () => void }>();
  // a collection answers the worker that asked for /metrics, or the primary itself (offering stats)
  const collecting = new Map<number, { from?: Worker; done?: (s: MetricsSnapshot[]) => void; orig: number; want: number; got: MetricsSnapshot[] }>();
  const finish = (id: number) => {
    const c = collecting.get(id);
    if (!c) return;
    collecting.delete(id);
    c.done?.(c.got);
    if (c.from?.isConnected()) c.from.send({ type: 'metrics-result', id: c.orig, snapshots: c.got } satisfies Message);
  };
  const metrics = (): Promise<MetricsSnapshot[]> =>
    new Promise((res) => {
      const id = nextId++;
      const live = [...workers].filter((w) => w.isConnected());
      if (live.length === 0) return res([]);
      collecting.set(id, { done: res, orig: id, want: live.length, got: [] });
      for (const w of live) w.send({ type: 'metrics-collect', id } satisfies Message);
      setTimeout(() => finish(id), 1000).unref();
    });
  let shuttingDown = false;
  let exited: () => void = () => {};
  const allExited = new Promise<void>((r) => (exited = r));
  const fork = () => {
    // the layers travel in the environment so that a worker serves them from its first request
    const w = cluster.fork({ TUILE_LAYER_SPECS: JSON.stringify(specs()), TUILE_API_PORT: apiPort ? String(apiPort) : '' });
    workers.add(w);
    w.on('message', (m: Message) => {
      if (m.type === 'ready') {
        started.add(w);
        failedStarts = 0;
        if (++ready === cfg.workers) {
          isReady = true;
          markReady();
          if (banner) printBanner(cfg, specs());
        }
      } else if (m.type === 'prepared') {
        const p = preparing.get(m.id);
        if (p) {
          if (m.error) p.errors.push(m.error);
          p.left.delete(w);
          if (p.left.size === 0) p.done();
        }
      } else if (m.type === 'layers-ack') {
        const a = acks.get(m.generation);
        a?.left.delete(w);
        if (a && a.left.size === 0) a.done();
      } else if (m.type === 'metrics-request') {
        // gather every worker's snapshot for the one that was asked for /metrics
        const id = nextId++;
        collecting.set(id, { from: w, orig: m.id, want: workers.size, got: [] });
        for (const o of workers) o.send({ type: 'metrics-collect', id } satisfies Message);
        setTimeout(() => finish(id), 1000).unref();
      } else if (m.type === 'metrics-snapshot') {
        const c = collecting.get(m.id);
        if (!c) return;
        c.got.push(m.snapshot);
        if (c.got.length >= c.want) finish(m.id);
      }
    });
    w.on('exit', (code, signal) => {
      workers.delete(w);
      for (const [g, a] of acks) {
        a.left.delete(w);
        if (a.left.size === 0) {
          acks.delete(g);
          a.done();
        }
      }
      for (const p of preparing.values()) {
        p.left.delete(w);
        if (p.left.size === 0) p.done();
      }
      if (!shuttingDown) {
        // one that dies before serving would die again the same way: a few tries, then stop trying
        if (!gaveUp && !started.has(w) && ++failedStarts >= MAX_FAILED_STARTS) {
          gaveUp = true;
          const why = `${failedStarts} serving processes in a row exited before serving (last: ${signal ?? code}); not starting another`;
          console.error(`tuile: ${why}`);
          if (!isReady) failReady(new Error(why));
        }
        if (gaveUp) {
          if (isReady && workers.size === 0) {
            console.error('tuile: no serving process left; stopping');
            process.exit(1);
          }
          return;
        }
        console.error(`tuile: worker ${w.process.pid} exited (${signal ?? code}); starting another`);
        fork();
      } else if (workers.size === 0) {
        exited();
      }
    });
  };
  /** Sends new layers to every worker; resolves once each has installed them (or timed out). */
  const publish = (next: LayerSpec[]): Promise<void> => {
    const g = ++generation;
    const live = [...workers].filter((w) => w.isConnected());
    if (live.length === 0) return Promise.resolve();
    return new Promise<void>((res) => {
      const t = setTimeout(() => {
        acks.delete(g);
        console.error(`tuile: layers generation ${g} not confirmed by every process within ${SWITCH_TIMEOUT_MS} ms`);
        res();
      }, SWITCH_TIMEOUT_MS);
      acks.set(g, {
        left: new Set(live),
        done: () => {
          clearTimeout(t);
          acks.delete(g);
          res();
        },
      });
      for (const w of live) w.send({ type: 'layers', specs: next, generation: g } satisfies Message);
    });
  };
  /** Has every worker open a chain; rejects with the first worker's error. */
  const prepare = (dir: string): Promise<void> => {
    const id = nextId++;
    const live = [...workers].filter((w) => w.isConnected());
    if (live.length === 0) return PyramidChain.open(dir).then((c) => c.close());
    return new Promise<void>((res, rej) => {
      const t = setTimeout(() => {
        preparing.delete(id);
        rej(new Error(`the serving processes did not open ${dir} within ${SWITCH_TIMEOUT_MS} ms`));
      }, SWITCH_TIMEOUT_MS);
      const entry = {
        left: new Set(live),
        errors: [] as string[],
        done: () => {
          clearTimeout(t);
          preparing.delete(id);
          if (entry.errors.length) rej(new Error(entry.errors[0]));
          else res();
        },
      };
      preparing.set(id, entry);
      for (const w of live) w.send({ type: 'prepare', id, dir } satisfies Message);
    });
  };
  const stop = async () => {
    shuttingDown = true;
    if (workers.size === 0) return;
    // a signal, not worker.kill(): that disconnects first, and the disconnection closes the worker's
    // servers the abrupt way (idle keep-alive sockets destroyed) before its SIGTERM handler drains them
    for (const w of workers) w.process.kill('SIGTERM');
    await Promise.race([allExited, new Promise((r) => setTimeout(r, DRAIN_MS + 2000).unref())]);
  };
  for (let i = 0; i < cfg.workers; i++) fork();
  return { publish, prepare, stop, metrics, ready: readyP };
}

async function worker(cfg: Config): Promise<void> {
  let nextId = 1;
  const waiting = new Map<number, (s: MetricsSnapshot[]) => void>();
  // metrics of all processes: ask the primary, which asks every worker; fall back to ours alone
  const collect = (mine: MetricsSnapshot) =>
    new Promise<MetricsSnapshot[]>((res) => {
      const id = nextId++;
      const t = setTimeout(() => {
        waiting.delete(id);
        res([mine]);
      }, 2000);
      waiting.set(id, (s) => {
        clearTimeout(t);
        res(s);
      });
      process.send!({ type: 'metrics-request', id } satisfies Message);
    });
  const specs = JSON.parse(process.env.TUILE_LAYER_SPECS ?? '[]') as LayerSpec[];
  const apiPort = Number(process.env.TUILE_API_PORT) || undefined;
  const { holder, ctx, server } = await runServer(cfg, specs, { collectMetrics: collect, apiPort });
  // layer switches are applied in the order they were sent
  let loading: Promise<unknown> = Promise.resolve();
  process.on('message', (m: Message) => {
    if (m.type === 'layers') {
      loading = loading
        .then(() => holder.load(m.specs, { skipBroken: true }))
        .catch((err) => console.error(`tuile: cannot load layers: ${errorMessage(err)}`))
        .finally(() => process.send!({ type: 'layers-ack', generation: m.generation } satisfies Message));
    } else if (m.type === 'prepare') {
      holder.prepare(m.dir).then(
        () => process.send!({ type: 'prepared', id: m.id } satisfies Message),
        (err) => process.send!({ type: 'prepared', id: m.id, error: errorMessage(err) } satisfies Message),
      );
    } else if (m.type === 'metrics-collect') {
      process.send!({ type: 'metrics-snapshot', id: m.id, snapshot: ctx.metrics.snapshot() } satisfies Message);
    } else if (m.type === 'metrics-result') {
      waiting.get(m.id)?.(m.snapshots);
      waiting.delete(m.id);
    }
  });
  process.on('SIGTERM', () => {
    void drain(server).then(() => process.exit(0));
  });
  process.on('SIGINT', () => {}); // the primary decides: it sends SIGTERM
  process.send!({ type: 'ready' } satisfies Message);
}

const invokedDirectly = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  start().catch((err) => {
    console.error(`tuile: ${errorMessage(err)}`);
    process.exit(1);
  });
}
