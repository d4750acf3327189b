// Byte-bounded LRU of tile bytes keyed by pyramid id and tile (DESIGN 6): a synchronised layer reads
// new keys, so nothing needs purging. Concurrent misses for one key share one load.

import { LRUCache } from 'lru-cache';

export interface CacheStats {
  hits: number;
  misses: number;
  loads: number;
  bytes: number;
  entries: number;
  maxBytes: number;
}

/** What a load found: bytes, or nothing (absent tiles are cached too, as empty entries). */
type Loaded = Uint8Array | null;

const EMPTY_WEIGHT = 64; // the key and bookkeeping of an absent tile

export class TileCache {
  private readonly lru: LRUCache<string, { v: Loaded }>;
  private readonly pending = new Map<string, Promise<Loaded>>();
  private hits = 0;
  private misses = 0;
  private loads = 0;

  constructor(readonly maxBytes: number) {
    this.lru = new LRUCache<string, { v: Loaded }>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (e, k) => (e.v ? e.v.byteLength : EMPTY_WEIGHT) + k.length,
    });
  }

  static key(pyramidId: string, z: number, x: number, y: number): string {
    return `${pyramidId}/${z}/${x}/${y}`;
  }

  /** The entry when it is cached (counted as a hit), without waiting: the serving fast path's synchronous answer. */
  peek(key: string): Loaded | undefined {
    const hit = this.lru.get(key);
    if (!hit) return undefined;
    this.hits++;
    return hit.v;
  }

  async get(key: string, load: () => Promise<Loaded>): Promise<Loaded> {
    const hit = this.lru.get(key);
    if (hit) {
      this.hits++;
      return hit.v;
    }
    this.misses++;
    const waiting = this.pending.get(key);
    if (waiting) return waiting;
    this.loads++;
    const p = load().then(
      (bytes) => {
        this.pending.delete(key);
        // kept as a Buffer (a view, no copy): node:http turns any other Uint8Array into one on every write
        const v = bytes && !Buffer.isBuffer(bytes) ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
        this.lru.set(key, { v });
        return v;
      },
      (err) => {
        // a failed load is not remembered: the next request tries again
        this.pending.delete(key);
        throw err;
      },
    );
    this.pending.set(key, p);
    return p;
  }

  stats(): CacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      loads: this.loads,
      bytes: this.lru.calculatedSize,
      entries: this.lru.size,
      maxBytes: this.maxBytes,
    };
  }
}
