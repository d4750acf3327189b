// One serving process: its own registry holder, tile cache and metrics behind the HTTP listener. It is the
// primary itself (one process) or a cluster worker, which then answers the primary's calls (layer switches,
// chains opened ahead, metrics) and asks it for every process's metrics on /metrics.

import { createServer, type Server } from 'node:http';
import type { Hono } from 'hono';
import { createListener, limitBodies } from '../app.js';
import { TileCache } from '../cache.js';
import type { Config } from '../config.js';
import { errorMessage } from '../errors.js';
import { Metrics, type MetricsSnapshot } from '../metrics.js';
import type { ServerContext } from '../protocols/tile.js';
import { RegistryHolder, type LayerSpec } from '../registry.js';
import { drain, graceful } from '../shutdown.js';
import { answerPrimary, askPrimary, type Message } from './rpc.js';

/** How long in-flight requests may take to finish after SIGTERM. */
export const DRAIN_MS = 10_000;
/** How long a worker waits for the primary's collection of metrics before answering with its own. */
const METRICS_WAIT_MS = 2000;

export interface ServingOptions {
  collectMetrics?: (local: MetricsSnapshot) => Promise<MetricsSnapshot[]>;
  api?: Hono;
  apiPort?: number;
}

export async function runServer(cfg: Config, specs: LayerSpec[], opts: ServingOptions = {}) {
  const holder = new RegistryHolder();
  await holder.load(specs, { skipBroken: true });
  const cache = new TileCache(cfg.cacheMB * 1024 * 1024);
  const metrics = new Metrics(() => cache.stats());
  const ctx: ServerContext = { config: cfg, holder, cache, metrics };
  const collect = opts.collectMetrics;
  const server = createServer();
  const listener = createListener(ctx, { collectMetrics: collect ? () => collect(metrics.snapshot()) : undefined, api: opts.api, apiPort: opts.apiPort });
  graceful(server, limitBodies(server, cfg, listener));
  await listen(server, cfg.port, cfg.host);
  return { ctx, server, holder };
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((res, rej) => {
    server.once('listening', () => res());
    server.once('error', rej);
    server.listen(port, host);
  });
}

/** A cluster worker: serves the layers the primary handed over in its environment, then follows its calls. */
export async function serveAsWorker(cfg: Config): Promise<void> {
  // metrics of all processes come from the primary, which asks every worker; ours alone if it does not answer
  const collect = (mine: MetricsSnapshot) => askPrimary({ name: 'metrics' }, METRICS_WAIT_MS).catch(() => [mine]);
  const specs = JSON.parse(process.env.TUILE_LAYER_SPECS ?? '[]') as LayerSpec[];
  const apiPort = Number(process.env.TUILE_API_PORT) || undefined;
  const { holder, ctx, server } = await runServer(cfg, specs, { collectMetrics: collect, apiPort });
  // layer switches are applied in the order they were sent
  let loading: Promise<unknown> = Promise.resolve();
  answerPrimary({
    layers: ({ specs }) => {
      const done = loading.then(() => holder.load(specs, { skipBroken: true })).catch((err) => console.error(`tuile: cannot load layers: ${errorMessage(err)}`));
      loading = done;
      return done.then(() => null);
    },
    prepare: async ({ dirs }) => {
      for (const d of dirs) await holder.prepare(d);
      return null;
    },
    metrics: async () => ctx.metrics.snapshot(),
  });
  process.on('SIGTERM', () => {
    void drain(server, DRAIN_MS).then(() => process.exit(0));
  });
  process.on('SIGINT', () => {}); // the primary decides: it sends SIGTERM
  process.send!({ type: 'ready' } satisfies Message);
}
