// Processing executions: a queue fed by the state (an execution committed as WAITING is queued), run one
// at a time in a child process at a lower CPU priority, so that a build never starves tile serving and
// its memory is returned when it ends. Statuses, progress and logs go back into the state store.
//
// This module is also the child's entry: `node jobs.js --child` builds (or fuses) what its parent sends.

import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { uploadFiles } from './checks.js';
import { dataPaths } from './config.js';
import { TuileError, errorMessage, withoutPaths } from './errors.js';
import { buildPyramid, type BuildOptions, type BuildResult } from './pyramid/build.js';
import type { PyramidDescriptor } from './pyramid/descriptor.js';
import { fusePyramids, type FuseOptions } from './pyramid/fuse.js';
import { pyramidStorage } from './pyramid/storage.js';
import { uploadStorage } from './upload-storage.js';
import { PYRAMID_FUSION } from './state/model.js';
import { KERNEL_NAMES } from './raster/resample.js';
import { FORMATS, parseFormat } from './formats.js';
import { PYRAMID_TYPE, SERVER, now, pyramidFolder, type Execution, type State, type StoredData } from './state/model.js';
import type { StateStore } from './state/store.js';

// a fusion's options have no parent: its output reads none of its inputs
type ToChild =
  | { type: 'run'; options: Omit<BuildOptions, 'onProgress' | 'signal'> }
  | { type: 'fuse'; options: Omit<FuseOptions, 'onProgress' | 'signal'> & { parent?: undefined } };
type FromChild =
  | { type: 'progress'; done: number; total: number }
  | { type: 'done'; result: Omit<BuildResult, 'descriptor'> & { descriptor: PyramidDescriptor } }
  | { type: 'error'; message: string; interrupted: boolean };

interface JobOptions {
  dataDir: string;
  /** build threads of a job */
  workers: number;
  /** niceness of the build process (0-19) */
  nice?: number;
}

/** How often a node on a shared state looks for executions of nodes that stopped. */
const REAP_MS = 2000;

/** GeoJSON polygon of a lon/lat box. */
function extentOf(d: PyramidDescriptor): StoredData['extent'] {
  const b = d.bboxLonLat;
  return {
    type: 'Polygon',
    coordinates: [
      [
        [b.minX, b.minY],
        [b.maxX, b.minY],
        [b.maxX, b.maxY],
        [b.minX, b.maxY],
        [b.minX, b.minY],
      ],
    ],
  };
}

function log(e: Execution, line: string): void {
  e.logs.push(`${now()} ${line}`);
  // bounded: an execution's log is for people, not an archive
  if (e.logs.length > 500) e.logs.splice(1, e.logs.length - 500);
}

export class JobRunner {
  private readonly queue: string[] = [];
  private running: { id: string; child: ChildProcess } | null = null;
  /** the execution `run` is busy with, from its start (`running` comes once its build process does) */
  private busy: string | null = null;
  private idle: Promise<void> = Promise.resolve();
  private stopping = false;
  private reaper: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: StateStore,
    private readonly opts: JobOptions,
  ) {
    // after the commit is visible: the queue reads the state it acts on
    store.onCommit(() => void setImmediate(() => this.sync(this.store.state)));
  }

  /**
   * After a restart: executions caught mid-run fail with a log line and their partial output is removed;
   * executions still WAITING are queued again. On a shared state, only this node's executions are its to
   * fail at start; those of a node that died are failed by any node, once its heartbeat is stale.
   */
  async recover(): Promise<void> {
    await this.collect(new Set(await this.store.abandoned(true)), 'the server stopped during the execution');
    this.sync(this.store.state);
    if (this.store.shared) {
      this.reaper = setInterval(() => {
        // also what a node that died between its claim and its start left WAITING
        this.sync(this.store.state);
        this.store
          .abandoned(false)
          .then(async (lost) => {
            if (lost.length && !this.stopping) await this.collect(new Set(lost), 'the node running it stopped (its heartbeat is stale)', true);
          })
          .catch((err) => console.error(`tuile: executions of stopped nodes: ${errorMessage(err)}`));
      }, REAP_MS);
      this.reaper.unref();
    }
  }

  /** Fails the `lost` executions (in PROGRESS, run by no live process) and removes their partial output. */
  private async collect(lost: Set<string>, why: string, event = false): Promise<void> {
    const paths = dataPaths(this.opts.dataDir);
    const folders = new Set(Object.values(this.store.state.executions).flatMap((e) => (lost.has(e._id) && e.folder ? [e.folder] : [])));
    // temporary folders of builds that never renamed go first: on a full disk they are what frees it
    // (in a shared pyramids folder, only those of the lost executions: the others are being built)
    if (existsSync(paths.pyramids)) {
      for (const name of await readdir(paths.pyramids)) {
        if (!name.startsWith('.') || !name.includes('.tmp-')) continue;
        if (!this.store.shared || folders.has(name.slice(1, name.lastIndexOf('.tmp-')))) await rm(join(paths.pyramids, name), { recursive: true, force: true });
      }
    }
    const orphans: string[] = [];
    await this.store.update((s) => {
      for (const e of Object.values(s.executions)) {
        if (e.status !== 'PROGRESS' || !lost.has(e._id)) continue;
        e.status = 'FAILURE';
        e.finish = now();
        e.update = e.finish;
        if (event) e.last_event = { title: 'failed', date: e.finish, initiator: SERVER };
        log(e, `FAILURE: ${why}; its partial output was removed`);
        const sd = s.stored_data[e.output.stored_data];
        // the folder it was building, unless the state already serves it (it finished, then the stop came)
        if (e.folder && (!sd || sd.status !== 'GENERATED' || pyramidFolder(sd) !== e.folder)) orphans.push(e.folder);
      }
      for (const e of Object.values(s.executions)) {
        // ended (aborted, or a commit lost to a full disk) without its end being written whole
        if ((e.status === 'ABORTED' || e.status === 'FAILURE') && !e.finish) e.finish = e.update;
      }
      // nothing runs now (but the other nodes' executions): a stored data still being made by no waiting
      // execution was left by a lost commit
      const waiting = new Set(Object.values(s.executions).filter((e) => e.status === 'WAITING' || e.status === 'PROGRESS').map((e) => e.output.stored_data));
      for (const sd of Object.values(s.stored_data)) {
        if ((sd.status !== 'GENERATING' && sd.status !== 'MODIFYING') || waiting.has(sd._id)) continue;
        // an injection leaves its stored data as it was: still whole, still served
        sd.status = sd.status === 'MODIFYING' ? 'GENERATED' : 'UNSTABLE';
        sd.update = now();
        if (sd.status === 'UNSTABLE') orphans.push(pyramidFolder(sd));
      }
    });
    for (const folder of new Set(orphans)) await pyramidStorage().remove(paths.pyramid(folder));
  }

  /**
   * Commits the end of an execution, again and again while the state cannot be written (a full disk):
   * an execution must not stay PROGRESS with nothing running. Stopping gives up; the next start repairs.
   */
  private async commitEnd(id: string, change: (s: State) => void): Promise<void> {
    for (let wait = 500; ; wait = Math.min(2 * wait, 5_000)) {
      try {
        await this.store.update(change);
        return;
      } catch (err) {
        if (this.stopping) throw err;
        console.error(`tuile: execution ${id}: its end cannot be saved (${errorMessage(err)}); trying again in ${wait / 1000} s`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Stops the running build (its child removes its temporary output) and queues nothing more. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reaper) clearInterval(this.reaper);
    this.queue.length = 0;
    this.running?.child.kill('SIGTERM');
    await this.idle;
  }

  private sync(s: Readonly<State>): void {
    if (this.running && s.executions[this.running.id]?.status !== 'PROGRESS') this.running.child.kill('SIGTERM');
    for (const e of Object.values(s.executions)) {
      if (e.status === 'WAITING' && !this.queue.includes(e._id) && this.busy !== e._id) this.queue.push(e._id);
    }
    // not while one is being started either: that would run two at once, or one twice
    if (!this.busy && !this.stopping) this.next();
  }

  private next(): void {
    const id = this.queue.shift();
    if (!id) return;
    let done!: () => void;
    this.idle = new Promise((r) => (done = r));
    this.busy = id;
    this.run(id)
      .catch((err) => console.error(`tuile: execution ${id}: ${errorMessage(err)}`))
      .finally(() => {
        this.running = null;
        this.busy = null;
        done();
        if (!this.stopping) this.next();
      });
  }

  private async run(id: string): Promise<void> {
    const s0 = this.store.state;
    const e0 = s0.executions[id];
    if (!e0 || e0.status !== 'WAITING') return;
    // on a shared state every node queued it: one runs it
    if (!(await this.store.claim(id))) return;
    // a new stored data is built in its own folder; an injection in a new generation chained on the current one
    const target = s0.stored_data[e0.output.stored_data];
    const folder = e0.inject && target ? `${target._id}.${Date.now().toString(36)}` : e0.output.stored_data;
    const out = dataPaths(this.opts.dataDir).pyramid(folder);
    const fusion = e0.processing === PYRAMID_FUSION._id;
    let options: ToChild['options'];
    try {
      options = fusion ? this.fuseOptions(s0, e0, out) : await this.buildOptions(s0, e0, out);
    } catch (err) {
      await this.finish(id, 'FAILURE', `FAILURE: ${withoutPaths(errorMessage(err), this.opts.dataDir)}`);
      return;
    }
    await this.store.update((s) => {
      const e = s.executions[id];
      e.status = 'PROGRESS';
      e.start = now();
      e.update = e.start;
      e.progress = 0;
      e.folder = folder;
      e.last_event = { title: 'started', date: e.start, initiator: SERVER };
      const how = e.inject ? ' (injection: a new generation chained on its current pyramid)' : options.parent ? ` chained on ${e.inputs.stored_data[0]}` : '';
      const where = this.store.shared ? ` on node ${this.store.node}` : '';
      log(e, `PROGRESS: ${fusion ? `fusing ${options.inputs.length} pyramid(s)` : `building ${options.inputs.length} file(s)`} into stored data ${e.output.stored_data}${how}${where}`);
      const sd = s.stored_data[e.output.stored_data];
      sd.status = e.inject ? 'MODIFYING' : 'GENERATING';
      sd.update = e.start;
      sd.last_event = { title: e.inject ? 'modifying' : 'generating', date: e.start, initiator: SERVER };
      if (!e.inject && e.inputs.stored_data[0]) sd.parent = e.inputs.stored_data[0];
      if (fusion) delete sd.parent; // standalone: it reads none of its inputs
    });

    const child = fork(fileURLToPath(import.meta.url), ['--child'], {
      // from .ts sources (tests) the child needs the tsx loader as well
      execArgv: import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.running = { id, child };
    try {
      setPriority(child.pid!, this.opts.nice ?? 10);
    } catch {
      // not permitted here: the build runs at the server's priority
    }
    let lastSaved = 0;
    const outcome = await new Promise<Exclude<FromChild, { type: 'progress' }>>((resolve) => {
      let settled: Exclude<FromChild, { type: 'progress' }> | null = null;
      child.on('message', (m: FromChild) => {
        if (m.type === 'progress') {
          const pct = m.total ? Math.floor((100 * m.done) / m.total) : 0;
          if (Date.now() - lastSaved >= 1000 && pct < 100) {
            lastSaved = Date.now();
            this.store
              .update((s) => {
                const e = s.executions[id];
                if (e?.status === 'PROGRESS') e.progress = pct;
              })
              .catch((err) => console.error(`tuile: execution ${id}: progress not saved: ${errorMessage(err)}`));
          }
        } else {
          settled = m;
        }
      });
      child.on('exit', (code, signal) => {
        resolve(settled ?? { type: 'error', message: `build process ended (${signal ?? code})`, interrupted: signal === 'SIGTERM' });
      });
      child.send((fusion ? { type: 'fuse', options } : { type: 'run', options }) as ToChild);
    });

    if (outcome.type === 'done') {
      const d = outcome.result.descriptor;
      await this.commitEnd(id, (s) => {
        const e = s.executions[id];
        const sd = s.stored_data[e.output.stored_data];
        const t = now();
        e.status = 'SUCCESS';
        e.finish = t;
        e.update = t;
        e.progress = 100;
        e.last_event = { title: 'succeeded', date: t, initiator: SERVER };
        // what the build used, inherited from the parent or defaulted, next to what was asked
        const inv = Object.entries(KERNEL_NAMES).find(([n, k]) => k === d.interpolation && n.length <= 7 && ['nn', 'linear', 'bicubic', 'lanczos'].includes(n));
        e.parameters = fusion
          ? { bottom: d.bottom, top: d.top, ...e.parameters }
          : { tms: d.tms, compression: d.tileFormat, interpolation: inv?.[0] ?? d.interpolation, bottom: d.bottom, top: d.top, ...(d.quality ? { quality: d.quality } : {}), ...e.parameters };
        log(e, `SUCCESS: ${outcome.result.tiles} tiles, ${outcome.result.bytes} bytes in ${outcome.result.seconds.toFixed(1)} s`);
        if (!sd) return; // deleted meanwhile: nothing to describe
        sd.status = 'GENERATED';
        sd.update = t;
        sd.last_event = { title: 'generated', date: t, initiator: SERVER };
        // its own archives: a chained pyramid's parent counts once, as its own stored data
        sd.size = outcome.result.bytes + (e.inject ? (sd.size ?? 0) : 0);
        sd.folder = folder;
        sd.extent = extentOf(d);
        sd.type_infos = {
          tms: d.tms,
          levels: d.levels.map((l) => l.id),
          channels_format: 'UINT8',
          channels_number: d.bands,
          compression: FORMATS[d.tileFormat].compression,
          nodata_value: d.nodata.join(','),
          interpolation: d.interpolation,
        };
      });
      return;
    }
    if (out !== dataPaths(this.opts.dataDir).pyramid(target ? pyramidFolder(target) : '')) {
      // what cannot be removed now (a read-only or failing disk) is collected at the next start
      await pyramidStorage().remove(out).catch((err) => console.error(`tuile: execution ${id}: ${errorMessage(err)}`));
    }
    const aborted = this.store.state.executions[id]?.status === 'ABORTED';
    const line = aborted
      ? 'ABORTED: stopped on request; nothing was kept'
      : this.stopping
        ? 'FAILURE: the server stopped during the execution; the build was interrupted and nothing was kept'
        : `FAILURE: ${outcome.type === 'error' ? withoutPaths(outcome.message, this.opts.dataDir) : 'build failed'}`;
    await this.finish(id, aborted ? 'ABORTED' : 'FAILURE', line);
  }

  private async finish(id: string, status: 'FAILURE' | 'ABORTED', line: string): Promise<void> {
    await this.commitEnd(id, (s) => {
      const e = s.executions[id];
      if (!e) return;
      const t = now();
      e.status = status;
      e.finish = t;
      e.update = t;
      e.last_event = { title: status === 'ABORTED' ? 'aborted' : 'failed', date: t, initiator: SERVER };
      log(e, line);
      const sd = s.stored_data[e.output.stored_data];
      if (sd && sd.status !== 'GENERATED') {
        // a failed injection leaves the stored data as it was
        sd.status = e.inject ? 'GENERATED' : 'UNSTABLE';
        sd.update = t;
      }
    });
  }

  private fuseOptions(s: Readonly<State>, e: Execution, out: string): Omit<FuseOptions, 'onProgress' | 'signal'> {
    const inputs = e.inputs.stored_data.map((id) => {
      const sd = s.stored_data[id];
      if (!sd || sd.status !== 'GENERATED' || sd.type !== PYRAMID_TYPE) throw new TuileError('InvalidInput', `stored data ${id} is not a generated pyramid`);
      return dataPaths(this.opts.dataDir).pyramid(pyramidFolder(sd));
    });
    const p = e.parameters;
    const b = p.bbox as { west: number; south: number; east: number; north: number } | undefined;
    return {
      inputs,
      out,
      top: p.top as number | undefined,
      bottom: p.bottom as number | undefined,
      bbox: b && [b.west, b.south, b.east, b.north],
      parallelization: p.parallelization as number | undefined,
    };
  }

  private async buildOptions(s: Readonly<State>, e: Execution, out: string): Promise<Omit<BuildOptions, 'onProgress' | 'signal'>> {
    const inputs: string[] = [];
    for (const u of e.inputs.upload) {
      const dir = join(dataPaths(this.opts.dataDir).upload(u), 'data');
      // the upload may have been received by another node
      await uploadStorage().fetch(u, dir);
      const files = await uploadFiles(dir);
      if (files.length === 0) throw new TuileError('InvalidInput', `upload ${u} holds no GeoTIFF`);
      inputs.push(...files);
    }
    const p = e.parameters;
    // an injection chains on its output's current pyramid
    const parentId = e.inject ? e.output.stored_data : e.inputs.stored_data[0];
    let parent: string | undefined;
    if (parentId) {
      const psd = s.stored_data[parentId];
      if (!psd || psd.status !== 'GENERATED' || psd.type !== PYRAMID_TYPE) throw new TuileError('InvalidInput', `stored data ${parentId} is not a generated pyramid`);
      parent = dataPaths(this.opts.dataDir).pyramid(pyramidFolder(psd));
    }
    // a chained build inherits what is left out from its parent; a new one takes the processing's defaults
    const dflt = <T>(v: T | undefined, d: T): T | undefined => (v !== undefined ? v : parent ? undefined : d);
    return {
      inputs,
      out,
      parent,
      format: parseFormat(String(dflt(p.compression, 'jpg'))) ?? undefined,
      interpolation: KERNEL_NAMES[String(dflt(p.interpolation, 'bicubic'))],
      bottom: p.bottom as number | undefined,
      top: dflt(p.top as number | undefined, 0),
      quality: p.quality as number | undefined,
      nodataColor: p.nodata as number[] | undefined,
      bands: p.bands as number[] | undefined,
      scale: p.scale as [number, number][] | undefined,
      workers: this.opts.workers,
    };
  }
}

/** The child: builds once, reports progress, and stops cleanly (no output left) on SIGTERM or if its parent goes. */
function child(): void {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  process.once('message', (m: ToChild) => {
    let last = -1;
    const onProgress = (done: number, total: number) => {
      const pct = Math.floor((100 * done) / Math.max(1, total));
      if (pct === last || !process.connected) return;
      last = pct;
      process.send!({ type: 'progress', done, total } satisfies FromChild);
    };
    const run = m.type === 'fuse' ? fusePyramids({ ...m.options, signal: controller.signal, onProgress }) : buildPyramid({ ...m.options, signal: controller.signal, onProgress });
    run.then(
      (result) => {
        if (process.connected) process.send!({ type: 'done', result } satisfies FromChild, () => process.exit(0));
        else process.exit(0);
      },
      (err) => {
        const message = errorMessage(err);
        if (process.connected) {
          process.send!({ type: 'error', message, interrupted: controller.signal.aborted } satisfies FromChild, () => process.exit(1));
        } else process.exit(1);
      },
    );
  });
}

if (process.argv[2] === '--child' && process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) child();
