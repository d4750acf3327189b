// The primary's serving processes: forked with the current layers in their environment, replaced when
// one exits (unless they keep dying before serving), answered when they ask for every process's metrics,
// and stopped with SIGTERM.

import cluster, { type Worker } from 'node:cluster';
import type { MetricsSnapshot } from '../metrics.js';
import type { LayerSpec } from '../registry.js';
import { answerWorker, rpc, type Message } from './rpc.js';
import { DRAIN_MS } from './serving.js';

/** Serving processes that may fail to start in a row (a port in use...) before no other is forked. */
const MAX_FAILED_STARTS = 3;
/** How long a collection of metrics waits for the workers' snapshots. */
const METRICS_TIMEOUT_MS = 1000;

export interface Workers {
  /** the workers alive now */
  list(): Iterable<Worker>;
  /** resolves once every worker serves; rejects when they keep exiting before serving */
  ready: Promise<void>;
  /** every worker's metrics */
  metrics(): Promise<MetricsSnapshot[]>;
  stop(): Promise<void>;
}

export function forkWorkers(count: number, specs: () => LayerSpec[], apiPort: number | undefined): Workers {
  const workers = new Set<Worker>();
  let ready = 0;
  let markReady!: () => void;
  let failReady!: (err: Error) => void;
  const readyP = new Promise<void>((r, j) => ((markReady = r), (failReady = j)));
  let isReady = false;
  const started = new WeakSet<Worker>();
  let failedStarts = 0;
  let gaveUp = false;
  let shuttingDown = false;
  let exited: () => void = () => {};
  const allExited = new Promise<void>((r) => (exited = r));
  const metrics = async () => (await rpc(workers, { name: 'metrics' }, METRICS_TIMEOUT_MS)).values;
  const fork = () => {
    // the layers travel in the environment so that a worker serves them from its first request
    const w = cluster.fork({ TUILE_LAYER_SPECS: JSON.stringify(specs()), TUILE_API_PORT: apiPort ? String(apiPort) : '' });
    workers.add(w);
    answerWorker(w, { metrics });
    w.on('message', (m: Message) => {
      if (m?.type !== 'ready') return;
      started.add(w);
      failedStarts = 0;
      if (++ready === count) {
        isReady = true;
        markReady();
      }
    });
    w.on('exit', (code, signal) => {
      workers.delete(w);
      if (shuttingDown) {
        if (workers.size === 0) exited();
        return;
      }
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
  for (let i = 0; i < count; i++) fork();
  return { list: () => workers, ready: readyP, metrics, stop };
}
