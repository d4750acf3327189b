// The hot swap of the served layers: one `LayerSwitch` (open the new chains ahead, then switch) whether
// the serving processes are this process or cluster workers, and the publisher that follows the committed
// state with it. The publisher runs outside the state store's serial queue: a stuck serving process delays
// the answers that describe what is served, never the unrelated writes queued behind a commit.

import type { Worker } from 'node:cluster';
import { errorMessage } from '../errors.js';
import { PyramidChain } from '../pyramid/chain.js';
import type { LayerSpec, RegistryHolder } from '../registry.js';
import type { State } from '../state/model.js';
import { rpc } from './rpc.js';

export interface LayerSwitch {
  /** Opens these pyramid folders' chains in every serving process ahead of a switch; throws when one cannot be served. */
  prepare(dirs: string[]): Promise<void>;
  /** Switches every serving process to these layers; resolves once each has, or has had its time. */
  publish(specs: LayerSpec[]): Promise<void>;
}

/** The serving process is this one. */
export function localSwitch(holder: RegistryHolder): LayerSwitch {
  return {
    async prepare(dirs) {
      for (const d of dirs) await holder.prepare(d);
    },
    async publish(specs) {
      await holder.load(specs, { skipBroken: true });
    },
  };
}

/** The serving processes are cluster workers; each call waits at most `timeoutMs` for their answers. */
export function clusterSwitch(workers: () => Iterable<Worker>, timeoutMs: number): LayerSwitch {
  let generation = 0;
  return {
    async prepare(dirs) {
      const a = await rpc(workers(), { name: 'prepare', dirs }, timeoutMs);
      if (a.errors.length) throw new Error(a.errors[0]);
      if (a.late) throw new Error(`the serving processes did not open ${dirs.join(', ')} within ${timeoutMs} ms`);
      // no serving process (all restarting): the check is still made, here
      if (a.values.length === 0 && a.exited === 0) for (const d of dirs) await (await PyramidChain.open(d)).close();
    },
    async publish(specs) {
      const g = ++generation;
      const a = await rpc(workers(), { name: 'layers', specs }, timeoutMs);
      if (a.late) console.error(`tuile: layers generation ${g} not confirmed by every process within ${timeoutMs} ms`);
    },
  };
}

/**
 * Publishes the layers of each committed state, in commit order, on its own queue. Commits that change
 * the layers are counted, so that an answer can wait for the switch of the commits it made or read.
 */
export class LayerPublisher {
  private count = 0;
  private publishedUpTo = 0;
  private queue: Promise<void> = Promise.resolve();
  private last: string;
  private readonly waiting: { upTo: number; resolve: () => void }[] = [];

  constructor(
    private readonly layers: LayerSwitch,
    private readonly specsOf: (state: Readonly<State>) => LayerSpec[],
    initial: Readonly<State>,
  ) {
    this.last = JSON.stringify(specsOf(initial));
  }

  /** A commit listener: returns at once, the switch follows on the publisher's queue. */
  readonly follow = (state: Readonly<State>): void => {
    const specs = this.specsOf(state);
    const text = JSON.stringify(specs);
    if (text === this.last) return;
    this.last = text;
    const n = ++this.count;
    this.queue = this.queue.then(async () => {
      // a later commit's layers supersede these (its switch, queued behind, answers for both)
      if (n !== this.count) return;
      await this.layers.publish(specs).catch((err) => console.error(`tuile: layers not switched: ${errorMessage(err)}`));
      this.publishedUpTo = n;
      for (let i = this.waiting.length - 1; i >= 0; i--) {
        if (this.waiting[i].upTo <= this.publishedUpTo) this.waiting.splice(i, 1)[0].resolve();
      }
    });
  };

  prepare(dirs: string[]): Promise<void> {
    return this.layers.prepare(dirs);
  }

  /** Commits so far that changed the layers. */
  changes(): number {
    return this.count;
  }

  /** Resolves once the layers of the `upTo`th change (by default the latest) are switched to. */
  served(upTo = this.count): Promise<void> {
    if (upTo <= this.publishedUpTo) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push({ upTo, resolve }));
  }
}
