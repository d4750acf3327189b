// An opened pyramid and its parent chain: tile lookups go through in-memory archive indexes, nearest
// pyramid first, so a tile absent from an update is read from the pyramid it was built on (DESIGN 5).

import { isAbsolute, resolve } from 'node:path';
import { TuileError } from '../errors.js';
import type { Tile } from '../geo/tms.js';
import type { PyramidDescriptor } from './descriptor.js';
import { PMTilesReader } from './pmtiles/reader.js';
import { pyramidStorage, type PyramidStorage } from './storage.js';
import type { TileHit, TileSource } from './tile-source.js';

export class PyramidChain implements TileSource {
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly descriptor: PyramidDescriptor,
    /** this pyramid first, then its parents, nearest first */
    private readonly members: { id: string; reader: PMTilesReader }[],
  ) {}

  get id(): string {
    return this.descriptor.id;
  }

  /** Ids of the pyramids of the chain, this one first, then its parents nearest first. */
  get ids(): string[] {
    return this.members.map((m) => m.id);
  }

  /**
   * Opens a pyramid folder and every parent its descriptor names, checking that each one opens. The
   * descriptor lists the whole chain, so the members open side by side and each archive exactly once.
   */
  static async open(dir: string, storage: PyramidStorage = pyramidStorage()): Promise<PyramidChain> {
    const root = resolve(dir);
    const descriptor = await storage.readDescriptor(root);
    const ids = [descriptor.id, ...descriptor.parents.map((p) => p.id)];
    const dirs = [root, ...descriptor.parents.map((p) => (isAbsolute(p.path) ? p.path : resolve(root, p.path)))];
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) throw new TuileError('InvalidInput', `${root}: pyramid ${id} appears twice in its parent chain`);
      seen.add(id);
    }
    const opened = await Promise.allSettled(
      dirs.map(async (d, i) => {
        if (i > 0) {
          const pd = await storage.readDescriptor(d);
          if (pd.id !== ids[i]) throw new TuileError('InvalidInput', `${root}: parent ${d} is pyramid ${pd.id}, not ${ids[i]}`);
        }
        return { id: ids[i], reader: await PMTilesReader.open(await storage.openArchive(d)) };
      }),
    );
    const members = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all(members.map((m) => m.reader.close()));
      throw failed.reason;
    }
    return new PyramidChain(root, descriptor, members);
  }

  /** Which pyramid of the chain holds a tile (in memory, no I/O); undefined when none does. */
  locate(t: Tile): string | undefined {
    for (const m of this.members) if (m.reader.has(t)) return m.id;
    return undefined;
  }

  /** Every tile of every member's archive, member after member: a tile several members hold comes once for each. */
  *tiles(): Iterable<Tile> {
    for (const m of this.members) yield* m.reader.tiles();
  }

  async getTile(t: Tile): Promise<TileHit | undefined> {
    for (const m of this.members) {
      if (m.reader.has(t)) {
        const data = await m.reader.getTile(t);
        if (data) return { pyramidId: m.id, data };
      }
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.members.map((m) => m.reader.close()));
  }
}
