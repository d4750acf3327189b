// Process entry: configuration, the state store and job queue (in the primary, which owns the state), the
// management API, demo seeding on an empty data folder, and the serving processes (this one, or one per
// core through node:cluster), switched to the layers of each committed state (src/cluster/switch.ts).

import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import { limitBodies } from './app.js';
import { apiApp } from './api/index.js';
import { ensureDefaults } from './api/datastores.js';
import { recoverOfferings } from './api/offerings.js';
import { recoverChecks } from './api/uploads.js';
import type { ApiContext } from './api/http.js';
import { forkWorkers } from './cluster/primary.js';
import { DRAIN_MS, listen, runServer, serveAsWorker } from './cluster/serving.js';
import { clusterSwitch, LayerPublisher, localSwitch, type LayerSwitch } from './cluster/switch.js';
import { dataPaths, loadConfig, type Config } from './config.js';
import { collectOrphans, lockDataDir } from './datadir.js';
import { demoStarting, demoWanted, seedDemo } from './demo.js';
import { errorMessage } from './errors.js';
import { JobRunner } from './jobs.js';
import { mergeSnapshots, type MetricsSnapshot } from './metrics.js';
import { PyramidChain } from './pyramid/chain.js';
import { pyramidStorage } from './pyramid/storage.js';
import { specsFromState, type LayerSpec } from './registry.js';
import { drain, graceful } from './shutdown.js';
import { openStateStore } from './state/open.js';

/** How long a switch (or a check ahead of one) waits for every serving process. */
const SWITCH_TIMEOUT_MS = 5000;

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
  /** the metrics of every serving process */
  metrics(): Promise<MetricsSnapshot[]>;
}

export async function start(cfg: Config = loadConfig(), opts: StartOptions = {}): Promise<Running | void> {
  if (!cluster.isPrimary) return serveAsWorker(cfg);
  await mkdir(cfg.dataDir, { recursive: true });
  if (opts.layers) {
    const layers = opts.layers;
    const serving = await serve(cfg, () => layers);
    onSignal(serving.stop);
    printBanner(cfg, layers);
    return serving;
  }

  // The primary owns the state: store, job queue, API; serving processes follow its commits.
  const paths = dataPaths(cfg.dataDir);
  lockDataDir(cfg.dataDir);
  const store = await openStateStore(cfg);
  // before anything serves: a push or a build started now would be taken for an orphan
  // with object storage, this data folder's uploads/ and pyramids/ are this node's alone, whatever the state
  // (otherwise the nodes share them): a build of its killed before is its own to remove
  await collectOrphans(store.state, cfg.dataDir, store.shared && pyramidStorage().url === 'file');
  const token = await adminToken(cfg);
  // only on a new data folder (a user who deleted everything does not get the demo back), or to finish
  // one a kill interrupted: marked before the first commit makes the folder look used
  const demo = cfg.demo && demoWanted(cfg.dataDir, store.isNew);
  if (demo && store.isNew) await demoStarting(cfg.dataDir);
  await ensureDefaults(store);
  // until the serving processes run, a check ahead of a switch opens the chains here
  let serving: Serving | null = null;
  const layers: LayerSwitch = {
    prepare: async (dirs) => {
      if (serving) return serving.layers.prepare(dirs);
      for (const d of dirs) await (await PyramidChain.open(d)).close();
    },
    publish: async (specs) => serving?.layers.publish(specs),
  };
  const specsOf = (s: ApiContext['store']['state']) => specsFromState(s, paths.pyramid);
  const publisher = new LayerPublisher(layers, specsOf, store.state);
  const apiCtx: ApiContext = {
    config: cfg,
    store,
    layers: publisher,
    layerCounts: async () => mergeSnapshots(serving ? await serving.metrics() : []).layers ?? {},
  };
  const api = apiApp(apiCtx, token);
  const jobs = new JobRunner(store, { dataDir: cfg.dataDir, workers: cfg.workers });
  serving = await serve(cfg, () => specsOf(store.state), api);
  store.onCommit(publisher.follow);
  const running = serving;
  let stopChecks = () => {};
  onSignal(() => {
    stopChecks();
    return Promise.all([running.stop(), jobs.stop()]).then(() => running.stopApi());
  });
  await jobs.recover();
  stopChecks = recoverChecks(apiCtx);
  recoverOfferings(apiCtx);
  if (demo) {
    await seedDemo(api, token, cfg.dataDir, !store.isNew).catch((err) => console.error(`tuile: demo not seeded: ${errorMessage(err)}`));
  }
  printBanner(cfg, specsOf(store.state));
  return running;
}

interface Serving extends Running {
  layers: LayerSwitch;
  /** the management API's own listener, in the primary of a cluster; stopped after the serving processes */
  stopApi(): Promise<void>;
}

/** Starts the serving processes: this one, or `cfg.workers` cluster workers with the API in this one. */
async function serve(cfg: Config, specs: () => LayerSpec[], api?: Hono): Promise<Serving> {
  if (cfg.workers <= 1) {
    const { server, holder, ctx } = await runServer(cfg, specs(), { api });
    const stop = () => drain(server, DRAIN_MS);
    return { layers: localSwitch(holder), stop, stopApi: async () => {}, metrics: async () => [ctx.metrics.snapshot()] };
  }
  // the API answers on 127.0.0.1 in this process; the serving processes pass /api requests to it
  let apiServer: Server | null = null;
  let apiPort: number | undefined;
  if (api) {
    apiServer = createServer();
    // its answers reach clients through the serving processes, which copy their headers: a Connection
    // header of this hop would override the serving process's own (close, when it stops)
    graceful(apiServer, limitBodies(apiServer, cfg, getRequestListener(api.fetch)), { internal: true });
    await listen(apiServer, 0, '127.0.0.1');
    apiPort = (apiServer.address() as AddressInfo).port;
  }
  const workers = forkWorkers(cfg.workers, specs, apiPort);
  await workers.ready;
  return {
    layers: clusterSwitch(workers.list, SWITCH_TIMEOUT_MS),
    stop: workers.stop,
    stopApi: async () => {
      if (apiServer) await drain(apiServer, DRAIN_MS);
    },
    metrics: workers.metrics,
  };
}

let stopping: Promise<void> | null = null;

function onSignal(stop: () => Promise<unknown>): void {
  const handler = () => {
    stopping ??= stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

const invokedDirectly = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  start().catch((err) => {
    console.error(`tuile: ${errorMessage(err)}`);
    process.exit(1);
  });
}
