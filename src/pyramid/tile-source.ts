// TileSource: the one interface tiles are served and read through (DESIGN 8), as martin's `Source` trait
// is its seam. PyramidChain (a pyramid and its parents) implements it.

import type { Tile } from '../geo/tms.js';
import type { PyramidDescriptor } from './descriptor.js';

export interface TileHit {
  /** id of the pyramid of the chain that holds the tile */
  pyramidId: string;
  data: Uint8Array;
}

export interface TileSource {
  /** The pyramid's id: what cache keys and ETags are made of. */
  readonly id: string;
  readonly descriptor: PyramidDescriptor;
  /** Which pyramid holds a tile, from indexes in memory (no I/O); undefined when none does. */
  locate(t: Tile): string | undefined;
  getTile(t: Tile): Promise<TileHit | undefined>;
  /** Every stored tile: a tile several pyramids hold comes once for each. */
  tiles(): Iterable<Tile>;
  close(): Promise<void>;
}
