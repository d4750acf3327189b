// The quadtree bookkeeping of a build: levels above the job level are made from their four children, so a
// parent is merged as soon as every child within the plan's limits has arrived, and the merged parent arrives
// in turn at its own parent, up to the top level. The pixel work is the caller's (`merge`); this holds the
// children in waiting and knows when each parent is complete.

import type { Tile } from '../geo/tms.js';
import type { RawTile } from '../raster/tile.js';
import { childrenInLimits, type BuildPlan } from './plan.js';

export interface MergeSteps {
  /** every child of `tile` has arrived, some with data: merge them into it (the caller encodes and stores it) */
  merge(tile: Tile, children: (RawTile | null)[]): Promise<RawTile | null>;
  /** every child of `tile` has arrived, none with data: nothing to merge or store */
  skip(tile: Tile): void;
}

export class QuadtreeMerger {
  private readonly waiting = new Map<string, { kids: (RawTile | null)[]; left: number }>();
  private readonly merges: Promise<void>[] = [];

  constructor(
    private readonly plan: Pick<BuildPlan, 'limits' | 'top'>,
    private readonly steps: MergeSteps,
  ) {}

  /** The result of `tile` is in (`raw` null where it holds no data, or nothing changed in an update). */
  arrived(tile: Tile, raw: RawTile | null): void {
    const { z, x, y } = tile;
    if (z === this.plan.top) return;
    const parent: Tile = { z: z - 1, x: x >> 1, y: y >> 1 };
    const key = `${parent.z}/${parent.x}/${parent.y}`;
    let e = this.waiting.get(key);
    if (!e) {
      e = { kids: [null, null, null, null], left: childrenInLimits(this.plan, parent) };
      this.waiting.set(key, e);
    }
    e.kids[(x & 1) + 2 * (y & 1)] = raw;
    if (--e.left > 0) return;
    this.waiting.delete(key);
    if (e.kids.every((c) => c === null)) {
      this.steps.skip(parent);
      this.arrived(parent, null);
      return;
    }
    const m = this.steps.merge(parent, e.kids).then((top) => this.arrived(parent, top));
    m.catch(() => {}); // awaited by settled(); this only keeps an early failure from being "unhandled"
    this.merges.push(m);
  }

  /** Every merge started so far and those they start in turn; rejects with the first failure. */
  async settled(): Promise<void> {
    // merges can add merges: wait until the list stops growing
    for (let i = 0; i < this.merges.length; i++) await this.merges[i];
  }
}
