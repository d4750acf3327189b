// The messages between the primary and its serving processes (node:cluster IPC), and the one way they
// are exchanged: a call carries an id, its answer names that id. `rpc` asks every live worker and
// collects the answers; a worker that exits or does not answer in time is counted once, as missing.

import type { Worker } from 'node:cluster';
import { errorMessage } from '../errors.js';
import type { MetricsSnapshot } from '../metrics.js';
import type { LayerSpec } from '../registry.js';

/** What the primary asks of a worker, and what each answers. */
export interface WorkerCalls {
  /** switch to these layers (in the order the switches were sent) */
  layers: { args: { specs: LayerSpec[] }; result: null };
  /** open these pyramid folders' chains ahead of a switch; fails when one cannot be served */
  prepare: { args: { dirs: string[] }; result: null };
  /** this process's metrics */
  metrics: { args: object; result: MetricsSnapshot };
}

/** What a worker asks of the primary. */
export interface PrimaryCalls {
  /** the metrics of every serving process, for the worker that was asked for /metrics */
  metrics: { args: object; result: MetricsSnapshot[] };
}

export type Call<C> = { [K in keyof C]: { name: K } & (C[K] extends { args: infer A } ? A : never) }[keyof C];
type Result<C, K extends keyof C> = C[K] extends { result: infer R } ? R : never;
export type Handlers<C> = { [K in keyof C]: (args: Extract<Call<C>, { name: K }>) => Promise<Result<C, K>> };

export type Message =
  | { type: 'ready' }
  | { type: 'call'; id: number; call: Call<WorkerCalls> | Call<PrimaryCalls> }
  | { type: 'answer'; id: number; value?: unknown; error?: string };

export interface Answers<R> {
  /** the answers of the workers that answered without an error */
  values: R[];
  /** the errors the workers answered */
  errors: string[];
  /** workers that exited before answering */
  exited: number;
  /** workers still silent when the time was up */
  late: number;
}

interface Pending {
  left: Set<Worker>;
  answers: Answers<unknown>;
  done: () => void;
}

let nextId = 1;
const pending = new Map<number, Pending>();
const hooked = new WeakSet<Worker>();

/** One message and one exit listener per worker, dispatching to the calls waiting on it. */
function hook(w: Worker): void {
  if (hooked.has(w)) return;
  hooked.add(w);
  w.on('message', (m: Message) => {
    if (m?.type !== 'answer') return;
    const p = pending.get(m.id);
    if (!p || !p.left.delete(w)) return;
    if (m.error !== undefined) p.answers.errors.push(m.error);
    else p.answers.values.push(m.value);
    if (p.left.size === 0) p.done();
  });
  w.on('exit', () => {
    for (const p of pending.values()) {
      if (!p.left.delete(w)) continue;
      p.answers.exited++;
      if (p.left.size === 0) p.done();
    }
  });
}

/** Sends a call to every connected worker and resolves with their answers, at the latest after `timeoutMs`. */
export function rpc<K extends keyof WorkerCalls>(
  workers: Iterable<Worker>,
  call: Extract<Call<WorkerCalls>, { name: K }>,
  timeoutMs: number,
): Promise<Answers<Result<WorkerCalls, K>>> {
  const live = [...workers].filter((w) => w.isConnected());
  const answers: Answers<Result<WorkerCalls, K>> = { values: [], errors: [], exited: 0, late: 0 };
  if (live.length === 0) return Promise.resolve(answers);
  const id = nextId++;
  return new Promise((resolve) => {
    const left = new Set(live);
    const finish = () => {
      clearTimeout(timer);
      pending.delete(id);
      answers.late = left.size;
      resolve(answers);
    };
    const timer = setTimeout(finish, timeoutMs);
    timer.unref();
    pending.set(id, { left, answers: answers as Answers<unknown>, done: finish });
    for (const w of live) {
      hook(w);
      w.send({ type: 'call', id, call } satisfies Message);
    }
  });
}

/** In the primary: answers a worker's calls with `handlers`. */
export function answerWorker(w: Worker, handlers: Handlers<PrimaryCalls>): void {
  w.on('message', (m: Message) => {
    if (m?.type !== 'call') return;
    reply(m.id, m.call as Call<PrimaryCalls>, handlers, (a) => {
      if (w.isConnected()) w.send(a);
    });
  });
}

/** In a worker: answers the primary's calls with `handlers`. */
export function answerPrimary(handlers: Handlers<WorkerCalls>): void {
  process.on('message', (m: Message) => {
    if (m?.type === 'call') reply(m.id, m.call as Call<WorkerCalls>, handlers, (a) => process.send?.(a));
  });
}

function reply<C>(id: number, call: Call<C>, handlers: Handlers<C>, send: (m: Message) => void): void {
  const handler = handlers[call.name] as (args: Call<C>) => Promise<unknown>;
  handler(call).then(
    (value) => send({ type: 'answer', id, value: value ?? null }),
    (err) => send({ type: 'answer', id, error: errorMessage(err) }),
  );
}

let listening = false;
const asked = new Map<number, (m: Extract<Message, { type: 'answer' }>) => void>();

/** In a worker: asks the primary; rejects when it does not answer within `timeoutMs`. */
export function askPrimary<K extends keyof PrimaryCalls>(call: Extract<Call<PrimaryCalls>, { name: K }>, timeoutMs: number): Promise<Result<PrimaryCalls, K>> {
  if (!listening) {
    listening = true;
    process.on('message', (m: Message) => {
      if (m?.type === 'answer') asked.get(m.id)?.(m);
    });
  }
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      asked.delete(id);
      reject(new Error(`the primary did not answer ${String(call.name)} within ${timeoutMs} ms`));
    }, timeoutMs);
    asked.set(id, (m) => {
      clearTimeout(timer);
      asked.delete(id);
      if (m.error !== undefined) reject(new Error(m.error));
      else resolve(m.value as Result<PrimaryCalls, K>);
    });
    process.send!({ type: 'call', id, call } satisfies Message);
  });
}
