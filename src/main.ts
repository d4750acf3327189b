// Process entry: configuration, demo seeding on an empty data folder, and the serving processes (one per
// core through node:cluster, each with its own registry, cache and metrics, all fed the same layers).

import cluster, { type Worker } from 'node:cluster';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:http';
import { createListener } from './app.js';
import { TileCache } from './cache.js';
import { loadConfig, type Config } from './config.js';
import { errorMessage } from './errors.js';
import { Metrics, type MetricsSnapshot } from './metrics.js';
import { buildPyramid } from './pyramid/build.js';
import { DESCRIPTOR } from './pyramid/descriptor.js';
import type { ServerContext } from './protocols/tile.js';
import { LAYER_NAME, RegistryHolder, type LayerSpec } from './registry.js';

type Message =
  | { type: 'layers'; specs: LayerSpec[] }
  | { type: 'metrics-request'; id: number }
  | { type: 'metrics-collect'; id: number }
  | { type: 'metrics-snapshot'; id: number; snapshot: MetricsSnapshot }
  | { type: 'metrics-result'; id: number; snapshots: MetricsSnapshot[] }
  | { type: 'ready' };

const PACKAGE_ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const DEMO_SOURCES = join(PACKAGE_ROOT, 'data/demo');

function pyramidsDir(cfg: Config): string {
  return join(cfg.dataDir, 'pyramids');
}

/** Every pyramid folder under the data folder, served under its folder name. */
async function discoverLayers(cfg: Config): Promise<LayerSpec[]> {
  const dir = pyramidsDir(cfg);
  if (!existsSync(dir)) return [];
  const specs: LayerSpec[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (!LAYER_NAME.test(name) || !existsSync(join(dir, name, DESCRIPTOR))) continue;
    // layer.json, when present, holds the title, abstract and keywords shown in capabilities
    let meta: Partial<LayerSpec> = {};
    if (existsSync(join(dir, name, 'layer.json'))) {
      try {
        meta = JSON.parse(await readFile(join(dir, name, 'layer.json'), 'utf8')) as Partial<LayerSpec>;
      } catch (err) {
        console.warn(`tuile: ${name}/layer.json ignored: ${errorMessage(err)}`);
      }
    }
    specs.push({ ...meta, name, dir: join(dir, name) });
  }
  return specs;
}

/** First start on an empty data folder: build the demo pyramid from the deliveries in data/demo. */
async function seedDemo(cfg: Config): Promise<void> {
  const target = join(pyramidsDir(cfg), 'france_relief');
  if (existsSync(pyramidsDir(cfg)) && (await readdir(pyramidsDir(cfg))).length > 0) return;
  const inputs = ['france_relief_north_2154.tif', 'france_relief_south_2154.tif'].map((f) => join(DEMO_SOURCES, f));
  if (!inputs.every((f) => existsSync(f))) {
    console.warn(`tuile: demo deliveries missing in ${DEMO_SOURCES}; no demo layer`);
    return;
  }
  await mkdir(pyramidsDir(cfg), { recursive: true });
  console.log('tuile: empty data folder: building the demo pyramid (France relief, Lambert-93 -> PM)...');
  const r = await buildPyramid({ inputs, out: target, format: 'png', interpolation: 'bicubic', bottom: 7 });
  await writeFile(
    join(target, 'layer.json'),
    JSON.stringify({ title: 'France relief (demo)', abstract: 'Marble SRTM relief texture of metropolitan France, Lambert-93 deliveries north and south', keywords: ['relief', 'demo'] }, null, 2),
  );
  console.log(`tuile: demo pyramid built: ${r.tiles} tiles in ${r.seconds.toFixed(1)} s`);
}

/** One serving process: its own registry holder, cache and metrics; layers come from the primary. */
async function runServer(cfg: Config, specs: LayerSpec[], collectMetrics?: (local: MetricsSnapshot) => Promise<MetricsSnapshot[]>) {
  const holder = new RegistryHolder();
  await holder.load(specs);
  const cache = new TileCache(cfg.cacheMB * 1024 * 1024);
  const metrics = new Metrics(() => cache.stats());
  const ctx: ServerContext = { config: cfg, holder, cache, metrics };
  const server = createServer(createListener(ctx, { collectMetrics: collectMetrics ? () => collectMetrics(metrics.snapshot()) : undefined }));
  await new Promise<void>((res, rej) => {
    server.once('listening', () => res());
    server.once('error', rej);
    server.listen(cfg.port, cfg.host);
  });
  return { ctx, server, holder };
}

function printBanner(cfg: Config, specs: LayerSpec[]): void {
  const host = cfg.host === '0.0.0.0' || cfg.host === '::' ? 'localhost' : cfg.host;
  const base = cfg.publicUrl ?? `http://${host}:${cfg.port}`;
  console.log(`tuile: serving ${specs.length} layer(s) on ${base} with ${cfg.workers} process(es), data in ${cfg.dataDir}`);
  console.log(`  layers and viewer:  ${base}/`);
  console.log(`  WMTS capabilities:  ${base}/wmts/1.0.0/WMTSCapabilities.xml`);
  console.log(`  TMS:                ${base}/tms/1.0.0/`);
  for (const s of specs) console.log(`  ${s.name}: ${base}/viewer/${encodeURIComponent(s.name)}`);
}

export interface StartOptions {
  /** layers to serve; default: every pyramid under the data folder (after the demo seeding) */
  layers?: LayerSpec[];
}

export async function start(cfg: Config = loadConfig(), opts: StartOptions = {}): Promise<void> {
  if (cluster.isPrimary) {
    await mkdir(cfg.dataDir, { recursive: true });
    if (!opts.layers && cfg.demo) await seedDemo(cfg);
    const specs = opts.layers ?? (await discoverLayers(cfg));
    if (cfg.workers <= 1) {
      await runServer(cfg, specs);
      printBanner(cfg, specs);
      const exit = () => process.exit(0);
      process.on('SIGTERM', exit);
      process.on('SIGINT', exit);
      return;
    }
    primary(cfg, specs);
    return;
  }
  await worker(cfg);
}

function primary(cfg: Config, specs: LayerSpec[]): void {
  const workers = new Set<Worker>();
  let ready = 0;
  let nextId = 1;
  const collecting = new Map<number, { from: Worker; orig: number; want: number; got: MetricsSnapshot[] }>();
  const finish = (id: number) => {
    const c = collecting.get(id);
    if (!c) return;
    collecting.delete(id);
    if (c.from.isConnected()) c.from.send({ type: 'metrics-result', id: c.orig, snapshots: c.got } satisfies Message);
  };
  let shuttingDown = false;
  const fork = () => {
    // the layers travel in the environment so that a worker serves them from its first request
    const w = cluster.fork({ TUILE_LAYER_SPECS: JSON.stringify(specs) });
    workers.add(w);
    w.on('message', (m: Message) => {
      if (m.type === 'ready') {
        if (++ready === cfg.workers) printBanner(cfg, specs);
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
      if (!shuttingDown) {
        console.error(`tuile: worker ${w.process.pid} exited (${signal ?? code}); starting another`);
        fork();
      } else if (workers.size === 0) {
        process.exit(0);
      }
    });
  };
  const stop = () => {
    shuttingDown = true;
    for (const w of workers) w.kill('SIGTERM');
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < cfg.workers; i++) fork();
}

async function worker(cfg: Config): Promise<void> {
  let nextId = 1;
  const waiting = new Map<number, (s: MetricsSnapshot[]) => void>();
  let local: (() => MetricsSnapshot) | null = null;
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
  const { holder, ctx } = await runServer(cfg, specs, collect);
  local = () => ctx.metrics.snapshot();
  process.on('message', (m: Message) => {
    if (m.type === 'layers') {
      holder.load(m.specs).catch((err) => console.error(`tuile: cannot load layers: ${errorMessage(err)}`));
    } else if (m.type === 'metrics-collect') {
      process.send!({ type: 'metrics-snapshot', id: m.id, snapshot: local!() } satisfies Message);
    } else if (m.type === 'metrics-result') {
      waiting.get(m.id)?.(m.snapshots);
      waiting.delete(m.id);
    }
  });
  process.on('SIGTERM', () => process.exit(0));
  process.send!({ type: 'ready' } satisfies Message);
}

const invokedDirectly = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  start().catch((err) => {
    console.error(`tuile: ${errorMessage(err)}`);
    process.exit(1);
  });
}
