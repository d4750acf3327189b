// A pool of worker threads for pixel work (warp, overviews, encoding), as large as the cores by default,
// so the main thread only plans and writes. Tasks are messages; urgent ones jump the queue.

import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { Worker, type TransferListItem } from 'node:worker_threads';
import { TuileError } from '../errors.js';

interface Pending {
  msg: unknown;
  transfer: TransferListItem[];
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  job: Pending | null;
}

// Under vitest/tsx we run from .ts sources: the worker then needs the tsx loader too.
const fromSource = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(fromSource ? './worker.ts' : './worker.js', import.meta.url);

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private closed = false;
  private failure: unknown = null;

  /** `preloadSharp`: the workers load sharp (libvips) as they start, while the caller plans, rather than at their
   * first jpeg/webp encode or tile decode, where it would delay the work by a few hundred ms. */
  constructor(
    readonly size: number = availableParallelism(),
    private readonly preloadSharp = true,
  ) {
    // A worker's heap holds ~10 MB that live, but its old generation starts small: V8 ran full collections all
    // through a build (bench/README.md). Read when an isolate is made: it applies to the
    // workers, not to the running main thread. Worker options have no initial heap size.
    setFlagsFromString('--initial-old-space-size=64');
    for (let i = 0; i < Math.max(1, size); i++) this.spawn();
  }

  private spawn(): void {
    // workerData must be an object: geotiff pulls in `web-worker`, which reads workerData.mod in any thread.
    // From .ts sources (tests), Node 20 workers take no --import: register tsx in the worker, then load.
    const worker = fromSource
      ? new Worker(
          `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`,
          { eval: true, workerData: { preloadSharp: this.preloadSharp } },
        )
      : new Worker(WORKER_URL, { execArgv: process.execArgv, workerData: { preloadSharp: this.preloadSharp } });
    const slot: Slot = { worker, job: null };
    worker.on('message', (m: { ok: boolean; result?: unknown; error?: { code?: string; message: string } }) => {
      const job = slot.job;
      slot.job = null;
      if (job) {
        if (m.ok) job.resolve(m.result);
        else job.reject(m.error?.code ? new TuileError(m.error.code as any, m.error.message) : new Error(m.error?.message));
      }
      this.pump();
    });
    worker.on('error', (err) => {
      // A crashed worker fails its task and the pool: a build cannot go on with a hole in it.
      this.failure = err;
      slot.job?.reject(err);
      slot.job = null;
      for (const p of this.queue.splice(0)) p.reject(err);
    });
    this.slots.push(slot);
  }

  run<T>(msg: unknown, transfer: TransferListItem[] = [], urgent = false): Promise<T> {
    if (this.closed) return Promise.reject(new Error('worker pool closed'));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const p = { msg, transfer, resolve, reject };
      if (urgent) this.queue.unshift(p);
      else this.queue.push(p);
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.job || this.queue.length === 0) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.postMessage(job.msg, job.transfer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new Error('worker pool closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
