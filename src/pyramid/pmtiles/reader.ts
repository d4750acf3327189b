// PMTiles reader on a byte source: every directory read once at open into typed arrays, then one range
// read per tile.

import { TuileError, errorMessage } from '../../errors.js';
import type { Tile } from '../../geo/tms.js';
import { FileSource, type ByteSource } from '../byte-source.js';
import { decompress, deserializeDirectory, growF64, growU32, type Entries } from './directory.js';
import { HEADER_BYTES, corrupt, decodeHeader, type PMTilesHeader } from './header.js';
import { tileIdToZxy, validTile, zxyToTileId } from './tileid.js';

// Leaf directories may nest (spec "Directory Hierarchy"); a cycle in a corrupt file must not recurse forever.
const MAX_DEPTH = 4;

async function readExact(source: ByteSource, position: number, length: number, what: string): Promise<Uint8Array> {
  const buf = await source.getBytes(position, length);
  if (buf.length !== length) throw corrupt(`${what} is truncated`);
  return buf;
}

/**
 * Reads every directory once at open into typed arrays: lookups are then pure memory and a tile costs
 * one range read of its source.
 */
export class PMTilesReader {
  readonly tileCount: number;
  private closed = false;

  private constructor(
    private readonly source: ByteSource,
    readonly header: PMTilesHeader,
    readonly metadata: Record<string, unknown>,
    private readonly entries: Entries, // tile entries only, sorted by id, offsets absolute in the source
  ) {
    let n = 0;
    for (let i = 0; i < entries.count; i++) n += entries.runs[i];
    this.tileCount = n;
  }

  /** Where the archive is read from (a path or a URL). */
  get key(): string {
    return this.source.key;
  }

  /** Opens an archive: a path is a local file; the reader owns the source and closes it. */
  static async open(from: string | ByteSource): Promise<PMTilesReader> {
    const source = typeof from === 'string' ? await FileSource.open(from) : from;
    const key = source.key;
    try {
      const size = source.size;
      if (size < HEADER_BYTES) throw corrupt(`${size} bytes is shorter than the header`);
      const header = decodeHeader(await readExact(source, 0, HEADER_BYTES, 'header'));
      const section = (offset: number, length: number, what: string) => {
        if (offset + length > size) throw corrupt(`${what} ends at ${offset + length}, past the end of the file (${size})`);
      };
      section(header.rootDirectoryOffset, header.rootDirectoryLength, 'root directory');
      section(header.jsonMetadataOffset, header.jsonMetadataLength, 'metadata');
      section(header.leafDirectoryOffset, header.leafDirectoryLength, 'leaf directories');
      section(header.tileDataOffset, header.tileDataLength, 'tile data');

      const metadata = await readMetadata(source, header);
      const rootBytes = await readExact(source, header.rootDirectoryOffset, header.rootDirectoryLength, 'root directory');
      const root = deserializeDirectory(await decompress(rootBytes, header.internalCompression, 'root directory'));
      const hasLeaves = root.runs.subarray(0, root.count).some((r) => r === 0);
      // one read for the whole leaf section rather than one per leaf
      const leaves = hasLeaves
        ? await readExact(source, header.leafDirectoryOffset, header.leafDirectoryLength, 'leaf directories')
        : new Uint8Array(0);
      // the header count is a hint only: a corrupt one must not allocate gigabytes
      const cap = Math.max(16, Math.min(header.numTileEntries, 1 << 20));
      const acc: Entries = {
        count: 0,
        ids: new Float64Array(cap),
        offsets: new Float64Array(cap),
        lengths: new Uint32Array(cap),
        runs: new Uint32Array(cap),
      };
      await collect(root, 0, header, leaves, acc);
      const entries: Entries = {
        count: acc.count,
        ids: acc.ids.slice(0, acc.count),
        offsets: acc.offsets.slice(0, acc.count),
        lengths: acc.lengths.slice(0, acc.count),
        runs: acc.runs.slice(0, acc.count),
      };
      return new PMTilesReader(source, header, metadata, entries);
    } catch (err) {
      await source.close().catch(() => {});
      if (err instanceof TuileError) {
        if (err.code === 'InvalidInput') throw new TuileError('InvalidInput', `${key}: ${err.message}`, { cause: err });
        throw err;
      }
      throw new TuileError('InvalidInput', `cannot read ${key}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Index of the entry holding the tile, or -1. */
  private find({ z, x, y }: Tile): number {
    if (!validTile(z, x, y)) return -1;
    const id = zxyToTileId(z, x, y);
    const ids = this.entries.ids;
    // last entry whose id <= tile id
    let lo = 0;
    let hi = this.entries.count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (ids[mid] <= id) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && id < ids[found] + this.entries.runs[found] ? found : -1;
  }

  has(t: Tile): boolean {
    return this.find(t) >= 0;
  }

  async getTile(t: Tile): Promise<Uint8Array | undefined> {
    if (this.closed) throw new TuileError('Internal', `PMTiles reader for ${this.key} is closed`);
    const i = this.find(t);
    if (i < 0) return undefined;
    const length = this.entries.lengths[i];
    const buf = await this.source.getBytes(this.entries.offsets[i], length);
    if (buf.length !== length) {
      throw new TuileError('InvalidInput', `${this.key}: tile ${t.z}/${t.x}/${t.y} is truncated`);
    }
    return buf;
  }

  *tiles(): Iterable<Tile> {
    const e = this.entries;
    for (let i = 0; i < e.count; i++) {
      const end = e.ids[i] + e.runs[i];
      for (let id = e.ids[i]; id < end; id++) yield tileIdToZxy(id);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
  }
}

async function readMetadata(source: ByteSource, header: PMTilesHeader): Promise<Record<string, unknown>> {
  if (header.jsonMetadataLength === 0) return {};
  const raw = await readExact(source, header.jsonMetadataOffset, header.jsonMetadataLength, 'metadata');
  const bytes = await decompress(raw, header.internalCompression, 'metadata');
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw corrupt(`metadata is not JSON: ${errorMessage(err)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw corrupt('metadata is not a JSON object');
  return value as Record<string, unknown>;
}

/** Appends the tile entries of a directory and of its leaves, in id order, with absolute offsets. */
async function collect(dir: Entries, depth: number, header: PMTilesHeader, leaves: Uint8Array, acc: Entries): Promise<void> {
  for (let i = 0; i < dir.count; i++) {
    const id = dir.ids[i];
    const offset = dir.offsets[i];
    const length = dir.lengths[i];
    const run = dir.runs[i];
    if (run === 0) {
      if (depth + 1 >= MAX_DEPTH) throw corrupt(`leaf directories nest deeper than ${MAX_DEPTH}`);
      if (offset + length > leaves.length) throw corrupt('a leaf directory lies outside the leaf section');
      const bytes = await decompress(leaves.subarray(offset, offset + length), header.internalCompression, 'leaf directory');
      const leaf = deserializeDirectory(bytes);
      if (leaf.count > 0 && leaf.ids[0] < id) throw corrupt('a leaf directory starts before its root entry');
      await collect(leaf, depth + 1, header, leaves, acc);
      continue;
    }
    if (offset + length > header.tileDataLength) throw corrupt(`tile ${id} lies outside the tile data section`);
    const n = acc.count;
    if (n > 0 && id < acc.ids[n - 1] + acc.runs[n - 1]) throw corrupt(`tile entries are not sorted at tile id ${id}`);
    if (n === acc.ids.length) {
      acc.ids = growF64(acc.ids, n + 1);
      acc.offsets = growF64(acc.offsets, n + 1);
      acc.lengths = growU32(acc.lengths, n + 1);
      acc.runs = growU32(acc.runs, n + 1);
    }
    acc.ids[n] = id;
    acc.offsets[n] = header.tileDataOffset + offset;
    acc.lengths[n] = length;
    acc.runs[n] = run;
    acc.count++;
  }
}
