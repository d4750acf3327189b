// PMTiles reader: every directory read once at open into typed arrays, then one positioned read per tile.

import { open, type FileHandle } from 'node:fs/promises';
import { TuileError, errorMessage } from '../../errors.js';
import { decompress, deserializeDirectory, growF64, growU32, serializeDirectory, type Entries } from './directory.js';
import { HEADER_BYTES, corrupt, decodeHeader, type PMTilesHeader } from './header.js';
import { tileIdToZxy, validTile, zxyToTileId } from './tileid.js';


export async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

// Leaf directories may nest (spec "Directory Hierarchy"); a cycle in a corrupt file must not recurse forever.
const MAX_DEPTH = 4;

async function readExact(fh: FileHandle, position: number, length: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  const got = await readFully(fh, buf, position);
  if (got !== length) throw corrupt(`${what} is truncated`);
  return buf;
}

/**
 * Reads every directory once at open into typed arrays: lookups are then pure memory and a tile costs
 * one positioned read.
 */
export class PMTilesReader {
  readonly tileCount: number;
  private fh: FileHandle | null;

  private constructor(
    readonly path: string,
    fh: FileHandle,
    readonly header: PMTilesHeader,
    readonly metadata: Record<string, unknown>,
    private readonly entries: Entries, // tile entries only, sorted by id, offsets absolute in the file
  ) {
    this.fh = fh;
    let n = 0;
    for (let i = 0; i < entries.count; i++) n += entries.runs[i];
    this.tileCount = n;
  }

  static async open(path: string): Promise<PMTilesReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TuileError(code === 'ENOENT' ? 'NotFound' : 'InvalidInput', `cannot open ${path}: ${errorMessage(err)}`);
    }
    try {
      const size = (await fh.stat()).size;
      if (size < HEADER_BYTES) throw corrupt(`${size} bytes is shorter than the header`);
      const header = decodeHeader(await readExact(fh, 0, HEADER_BYTES, 'header'));
      const section = (offset: number, length: number, what: string) => {
        if (offset + length > size) throw corrupt(`${what} ends at ${offset + length}, past the end of the file (${size})`);
      };
      section(header.rootDirectoryOffset, header.rootDirectoryLength, 'root directory');
      section(header.jsonMetadataOffset, header.jsonMetadataLength, 'metadata');
      section(header.leafDirectoryOffset, header.leafDirectoryLength, 'leaf directories');
      section(header.tileDataOffset, header.tileDataLength, 'tile data');

      const metadata = await readMetadata(fh, header);
      const rootBytes = await readExact(fh, header.rootDirectoryOffset, header.rootDirectoryLength, 'root directory');
      const root = deserializeDirectory(await decompress(rootBytes, header.internalCompression, 'root directory'));
      const hasLeaves = root.runs.subarray(0, root.count).some((r) => r === 0);
      // one read for the whole leaf section rather than one per leaf
      const leaves = hasLeaves
        ? await readExact(fh, header.leafDirectoryOffset, header.leafDirectoryLength, 'leaf directories')
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
      return new PMTilesReader(path, fh, header, metadata, entries);
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof TuileError) {
        if (err.code === 'InvalidInput') throw new TuileError('InvalidInput', `${path}: ${err.message}`, { cause: err });
        throw err;
      }
      throw new TuileError('InvalidInput', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Index of the entry holding the tile, or -1. */
  private find(z: number, x: number, y: number): number {
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

  has(z: number, x: number, y: number): boolean {
    return this.find(z, x, y) >= 0;
  }

  async getTile(z: number, x: number, y: number): Promise<Uint8Array | undefined> {
    const fh = this.fh;
    if (!fh) throw new TuileError('Internal', `PMTiles reader for ${this.path} is closed`);
    const i = this.find(z, x, y);
    if (i < 0) return undefined;
    const length = this.entries.lengths[i];
    const buf = new Uint8Array(length);
    const { bytesRead } = await fh.read(buf, 0, length, this.entries.offsets[i]);
    if (bytesRead !== length) {
      throw new TuileError('InvalidInput', `${this.path}: tile ${z}/${x}/${y} is truncated`);
    }
    return buf;
  }

  *tiles(): Iterable<{ z: number; x: number; y: number }> {
    const e = this.entries;
    for (let i = 0; i < e.count; i++) {
      const end = e.ids[i] + e.runs[i];
      for (let id = e.ids[i]; id < end; id++) yield tileIdToZxy(id);
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

async function readMetadata(fh: FileHandle, header: PMTilesHeader): Promise<Record<string, unknown>> {
  if (header.jsonMetadataLength === 0) return {};
  const raw = await readExact(fh, header.jsonMetadataOffset, header.jsonMetadataLength, 'metadata');
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
