// The embedded state store (DESIGN 8): the whole state as one JSON snapshot, changed only through a serial
// queue of updates, each written atomically (temp file, fsync, rename, fsync of the folder) before it
// becomes the current state; commit listeners (the layer registry, the job queue) run after each commit.
// The snapshot it replaces stays as `<file>.1`: a current snapshot that cannot be read (a disk that lied,
// an editor) is set aside and the store starts from that previous generation, loudly.
// The PostgreSQL store (postgres.ts) keeps the same interface, `StateStore` below; `openStateStore` (open.ts)
// picks one from the configuration.

import { randomUUID } from 'node:crypto';
import { link, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TuileError, errorMessage } from '../errors.js';
import { emptyState, type State } from './model.js';

export type WriteStep = 'open' | 'write' | 'fsync' | 'previous' | 'rename' | 'dirsync';

export interface StoreOptions {
  /** called before each step of a snapshot write; throwing there simulates a crash at that step */
  beforeStep?: (step: WriteStep) => void;
}

export type CommitListener = (state: Readonly<State>, previous: Readonly<State>) => void | Promise<void>;

/** What the rest of tuile sees of the state, whichever backend holds it. */
export interface StateStore {
  /** The committed state, read synchronously from memory; never mutate it (updates get their own copy). */
  readonly state: Readonly<State>;
  /** no state existed: a new data folder, or an empty database */
  readonly isNew: boolean;
  /** other tuile processes share this state (and the uploads and pyramids folders): see `claim` */
  readonly shared: boolean;
  /** this process's name among the nodes sharing the state */
  readonly node: string;
  /**
   * Runs `change` on a copy of the state, after every update queued before it (on every node, for a
   * shared store). If it throws, nothing changes. Otherwise the copy is committed, the listeners run with
   * it, it becomes the state, and the promise resolves with what `change` returned. Listeners must not
   * wait for another update.
   */
  update<T>(change: (draft: State) => T): Promise<T>;
  /** Called after each commit, this process's own and, for a shared store, every other node's. */
  onCommit(listener: CommitListener): void;
  /** Takes a WAITING execution for this node: true for exactly one node (always true when not shared). */
  claim(execution: string): Promise<boolean>;
  /**
   * Takes the check of a CHECKING upload for this node: true for exactly one node, unless the node that
   * took it died (its heartbeat stopped) or is this one before a restart (always true when not shared).
   */
  claimCheck(upload: string): Promise<boolean>;
  /**
   * Executions in PROGRESS that no live node runs: every one when not shared; otherwise those of a node
   * whose heartbeat stopped, and this node's own when `mine` (its previous run, at start).
   */
  abandoned(mine: boolean): Promise<string[]>;
  close(): Promise<void>;
}

export class JsonStateStore implements StateStore {
  readonly shared = false;
  readonly node = 'local';
  private current: State;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners: CommitListener[] = [];

  private constructor(
    readonly file: string,
    state: State,
    private readonly opts: StoreOptions,
    /** no snapshot existed: a new data folder */
    readonly isNew: boolean,
  ) {
    this.current = state;
  }

  /**
   * Opens the snapshot, or starts an empty state when there is none (temporary files of a crash are
   * removed). A snapshot that cannot be read is renamed `<file>.corrupt-<time>` and the previous
   * generation `<file>.1` is used instead, with a warning on stderr; with neither readable, it throws.
   */
  static async open(file: string, opts: StoreOptions = {}): Promise<JsonStateStore> {
    const current = await readSnapshot(file);
    if (current.state) {
      const store = new JsonStateStore(file, current.state, opts, false);
      await store.removeTemporaries();
      return store;
    }
    const previous = await readSnapshot(`${file}.1`);
    if (!current.error && !previous.state && !previous.error) {
      const store = new JsonStateStore(file, emptyState(randomUUID()), opts, true);
      await store.removeTemporaries();
      return store;
    }
    if (!previous.state) {
      const why = [current.error, previous.error].filter(Boolean).join('; ');
      throw new TuileError('InvalidInput', `state ${file} cannot be read and there is no readable previous generation: ${why}`);
    }
    let aside = '';
    if (current.error) {
      // kept for a post-mortem, and out of the way: the next commit must not make it the previous generation
      aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(file, aside);
    }
    const bar = '!'.repeat(100);
    console.error(
      [
        bar,
        `tuile: WARNING: the state ${file} ${current.error ? `cannot be read (${current.error})` : 'is missing'}.`,
        `tuile: WARNING: starting from the previous generation ${file}.1: the last committed change is lost.`,
        ...(aside ? [`tuile: WARNING: the unreadable file is kept as ${aside}.`] : []),
        bar,
      ].join('\n'),
    );
    const store = new JsonStateStore(file, previous.state, opts, false);
    await store.removeTemporaries();
    return store;
  }

  get state(): Readonly<State> {
    return this.current;
  }

  onCommit(listener: CommitListener): void {
    this.listeners.push(listener);
  }

  // one process owns the data folder (its lock): whatever it queues is its own to run
  async claim(): Promise<boolean> {
    return true;
  }

  async claimCheck(): Promise<boolean> {
    return true;
  }

  async abandoned(): Promise<string[]> {
    return Object.values(this.current.executions)
      .filter((e) => e.status === 'PROGRESS')
      .map((e) => e._id);
  }

  async close(): Promise<void> {
    await this.queue;
  }

  update<T>(change: (draft: State) => T): Promise<T> {
    const run = async (): Promise<T> => {
      const draft = structuredClone(this.current);
      const result = change(draft);
      await this.write(draft);
      await runListeners(this.listeners, draft, this.current);
      this.current = draft;
      return result;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  private async write(state: State): Promise<void> {
    const step = this.opts.beforeStep ?? (() => {});
    const tmp = join(dirname(this.file), `.${basename(this.file)}.${randomUUID().slice(0, 8)}.tmp`);
    const text = JSON.stringify(state);
    try {
      step('open');
      const fh = await open(tmp, 'w', 0o600);
      try {
        step('write');
        await fh.writeFile(text);
        step('fsync');
        await fh.sync();
      } finally {
        await fh.close();
      }
      // the snapshot being replaced becomes the previous generation, linked (not copied) and renamed
      // over the older one, so that some complete generation is at both names at every moment
      step('previous');
      await this.keepPrevious();
      step('rename');
      await rename(tmp, this.file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new TuileError('Internal', `cannot save the state: ${errorMessage(err)}`);
    }
    // the rename is durable once the folder is synced; a failure here leaves the new state in place
    try {
      step('dirsync');
      const dh = await open(dirname(this.file), 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      console.warn(`tuile: state folder not synced: ${errorMessage(err)}`);
    }
  }

  private async keepPrevious(): Promise<void> {
    const tmp = join(dirname(this.file), `.${basename(this.file)}.1.tmp`);
    await rm(tmp, { force: true });
    try {
      await link(this.file, tmp);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // the first snapshot
      throw err;
    }
    await rename(tmp, `${this.file}.1`);
  }

  private async removeTemporaries(): Promise<void> {
    const prefix = `.${basename(this.file)}.`;
    let names: string[] = [];
    try {
      names = await readdir(dirname(this.file));
    } catch {
      return;
    }
    await Promise.all(names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp')).map((n) => rm(join(dirname(this.file), n), { force: true })));
  }
}

/**
 * Runs the commit listeners in order, each failure logged and none stopping the others. The caller makes
 * `next` the state after this resolves: readers see a commit once the listeners are done, so that a status
 * read after it describes what every serving process already does.
 */
export async function runListeners(listeners: readonly CommitListener[], next: Readonly<State>, previous: Readonly<State>): Promise<void> {
  for (const l of listeners) {
    try {
      await l(next, previous);
    } catch (err) {
      console.error(`tuile: after a state commit: ${errorMessage(err)}`);
    }
  }
}

/** A snapshot: its state, or why it cannot be used; neither when the file does not exist. */
async function readSnapshot(file: string): Promise<{ state?: State; error?: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { error: errorMessage(err) };
  }
  let state: State;
  try {
    state = JSON.parse(text) as State;
  } catch (err) {
    return { error: `invalid JSON: ${errorMessage(err)}` };
  }
  if (state === null || typeof state !== 'object') return { error: 'not a JSON object' };
  if (state.version !== 1) return { error: `unknown version ${String(state.version)}` };
  const missing = (['datastores', 'uploads', 'executions', 'stored_data', 'configurations', 'offerings'] as const).filter(
    (k) => state[k] === null || typeof state[k] !== 'object',
  );
  if (missing.length) return { error: `no ${missing.join(', ')}` };
  return { state };
}
