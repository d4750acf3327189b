// PMTiles writer: streams tiles to a temporary file, de-duplicates their content, lays the archive out at finish.

import { createHash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { TuileError, errorMessage } from '../../errors.js';
import { MAX_RUN, serializeDirectory, growF64, growU32, type Entries } from './directory.js';
import {
  COMPRESSION_GZIP,
  COMPRESSION_NONE,
  HEADER_BYTES,
  ROOT_LIMIT,
  SPEC_VERSION,
  TILE_TYPE_CODES,
  TWO_32,
  encodeHeader,
  type PMTilesHeader,
  type TileType,
} from './header.js';
import { readFully } from './reader.js';
import { MAX_ZOOM, validTile, zxyToTileId } from './tileid.js';

const gzipAsync = promisify(gzip);

export interface WriterOptions {
  tileType: TileType;
  minZoom: number;
  maxZoom: number;
  bounds: [number, number, number, number]; // lon/lat w, s, e, n
  center?: [number, number, number]; // lon, lat, zoom; defaults to the middle of bounds at minZoom
  metadata?: Record<string, unknown>;
}

/**
 * Tile id -> content index, open addressing over typed arrays: a Map or Set would cost several
 * times more per tile, and would box every id above 2^31 as a heap number.
 */
class TileIdTable {
  private bits = 10;
  private keys = new Float64Array(1 << 10).fill(-1);
  private vals = new Uint32Array(1 << 10);
  size = 0;

  private slot(id: number): number {
    const lo = id >>> 0;
    const hi = Math.floor(id / TWO_32);
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> (32 - this.bits);
  }

  get(id: number): number {
    const mask = this.keys.length - 1;
    for (let i = this.slot(id); ; i = (i + 1) & mask) {
      const k = this.keys[i];
      if (k === id) return this.vals[i];
      if (k === -1) return -1;
    }
  }

  /** false if the id is already there */
  insert(id: number, val: number): boolean {
    if ((this.size + 1) * 2 > this.keys.length) this.rehash();
    const mask = this.keys.length - 1;
    for (let i = this.slot(id); ; i = (i + 1) & mask) {
      const k = this.keys[i];
      if (k === id) return false;
      if (k === -1) {
        this.keys[i] = id;
        this.vals[i] = val;
        this.size++;
        return true;
      }
    }
  }

  private rehash(): void {
    const keys = this.keys;
    const vals = this.vals;
    this.bits++;
    this.keys = new Float64Array(1 << this.bits).fill(-1);
    this.vals = new Uint32Array(1 << this.bits);
    this.size = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== -1) this.insert(keys[i], vals[i]);
  }

  sortedIds(): Float64Array {
    const out = new Float64Array(this.size);
    let n = 0;
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== -1) out[n++] = this.keys[i];
    return out.sort(); // typed array sort is numeric
  }
}

// Small tiles are gathered into one write: a syscall per 300-byte blank tile would dominate the build.
const WRITE_BUFFER_BYTES = 1 << 20;
const COPY_BATCH_BYTES = 4 << 20;
const COPY_BATCH_READS = 1024;

// Directories with at most this many entries always fit under ROOT_LIMIT: an entry serializes to at most
// 15 bytes (id delta 8, run 1, length 5, offset 1 as leaves are contiguous) and gzip only adds framing.
const ROOT_SAFE_ENTRIES = 1000;
const MIN_LEAF_ENTRIES = 4096;

type WriterState = 'open' | 'finishing' | 'done' | 'failed';

async function writeFully(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    done += bytesWritten;
  }
}

async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => {});
}

/**
 * Streams tiles to a temporary data file as they arrive (memory keeps ids, offsets and content hashes,
 * never tile bytes), then lays the archive out in tile-id order at finish(). Any failed call, a refused
 * tile included, removes the temporary files and ends the writer: a half-built archive is never worth
 * keeping, and callers need no cleanup path besides abort().
 */
export class PMTilesWriter {
  private state: WriterState = 'open';
  private readonly ids = new TileIdTable();
  // per unique content: where it lies in the temporary data file
  private contentTemp: Float64Array = new Float64Array(1024);
  private contentLength: Uint32Array = new Uint32Array(1024);
  private contents = 0;
  // content hash -> content index: identical tiles (blank ones above all) are stored once
  private byHash = new Map<string, number>();
  private dataSize = 0;
  private buffer: Uint8Array = new Uint8Array(WRITE_BUFFER_BYTES);
  private readonly spareBuffers: Uint8Array[] = [];
  private buffered = 0;
  private bufferStart = 0; // position of buffer[0] in the data file
  private readonly writes = new Set<Promise<void>>();
  private writeFailure: unknown = null;
  private readonly tmpArchive: string;

  private constructor(
    private readonly path: string,
    private readonly opts: WriterOptions,
    private readonly metadataJson: string,
    private readonly tmpData: string,
    private data: FileHandle | null,
  ) {
    this.tmpArchive = `${path}.tmp`;
  }

  static async create(path: string, opts: WriterOptions): Promise<PMTilesWriter> {
    if (!Object.hasOwn(TILE_TYPE_CODES, opts.tileType)) {
      throw new TuileError('InvalidParameter', `tile type ${String(opts.tileType)} is not png, jpg or webp`);
    }
    const zoomOk = (z: number) => Number.isInteger(z) && z >= 0 && z <= MAX_ZOOM;
    if (!zoomOk(opts.minZoom) || !zoomOk(opts.maxZoom) || opts.minZoom > opts.maxZoom) {
      throw new TuileError('InvalidParameter', `zoom range ${opts.minZoom}..${opts.maxZoom} is not within 0..${MAX_ZOOM}`);
    }
    const [w, s, e, n] = opts.bounds;
    const lonOk = (v: number) => Number.isFinite(v) && v >= -180 && v <= 180;
    const latOk = (v: number) => Number.isFinite(v) && v >= -90 && v <= 90;
    if (!lonOk(w) || !lonOk(e) || !latOk(s) || !latOk(n) || w > e || s > n) {
      throw new TuileError('InvalidParameter', `bounds ${opts.bounds.join(',')} are not lon/lat w,s,e,n`);
    }
    if (opts.center) {
      const [lon, lat, z] = opts.center;
      if (!lonOk(lon) || !latOk(lat) || !Number.isInteger(z) || z < 0 || z > 255) {
        throw new TuileError('InvalidParameter', `center ${opts.center.join(',')} is not lon, lat, zoom`);
      }
    }
    let metadataJson: string;
    try {
      metadataJson = JSON.stringify(opts.metadata ?? {});
    } catch (err) {
      throw new TuileError('InvalidParameter', `metadata is not JSON: ${errorMessage(err)}`);
    }
    const tmpData = `${path}.data.tmp`;
    let fh: FileHandle;
    try {
      fh = await open(tmpData, 'w+');
    } catch (err) {
      throw new TuileError('OutputError', `cannot write ${tmpData}: ${errorMessage(err)}`);
    }
    return new PMTilesWriter(path, { ...opts }, metadataJson, tmpData, fh);
  }

  /**
   * Tiles may come in any order. Large tiles are written straight from `data`: keep it unchanged until
   * the promise settles.
   */
  async addTile(z: number, x: number, y: number, data: Uint8Array): Promise<void> {
    this.assertOpen();
    try {
      if (!validTile(z, x, y) || z < this.opts.minZoom || z > this.opts.maxZoom) {
        throw new TuileError(
          'InvalidParameter',
          `tile ${z}/${x}/${y} is not in zoom ${this.opts.minZoom}..${this.opts.maxZoom} of ${this.path}`,
        );
      }
      if (data.length === 0 || data.length > MAX_RUN) {
        // spec 3.1: an entry length must be > 0; the Length field is a uint32
        throw new TuileError('InvalidParameter', `tile ${z}/${x}/${y} has ${data.length} bytes`);
      }
      const id = zxyToTileId(z, x, y);
      if (this.ids.get(id) !== -1) {
        throw new TuileError('InvalidParameter', `tile ${z}/${x}/${y} was added twice to ${this.path}`);
      }
      // All bookkeeping happens before the first await, so concurrent calls cannot interleave it.
      const hash = createHash('sha256').update(data).digest().toString('latin1');
      let content = this.byHash.get(hash);
      let pending: Promise<void> | null = null;
      if (content === undefined) {
        content = this.contents++;
        this.contentTemp = growF64(this.contentTemp, this.contents);
        this.contentLength = growU32(this.contentLength, this.contents);
        this.contentTemp[content] = this.dataSize;
        this.contentLength[content] = data.length;
        this.byHash.set(hash, content);
        pending = this.append(data);
      }
      this.ids.insert(id, content);
      if (pending) await pending;
      if (this.writeFailure) throw this.writeFailure;
    } catch (err) {
      await this.fail();
      throw asOutputError(err, `cannot write tile ${z}/${x}/${y} to ${this.tmpData}`);
    }
  }

  /** Appends at dataSize; returns the write to wait for when a buffer went out, so producers slow down. */
  private append(data: Uint8Array): Promise<void> | null {
    const at = this.dataSize;
    this.dataSize += data.length;
    if (this.buffered + data.length <= this.buffer.length) {
      if (this.buffered === 0) this.bufferStart = at;
      this.buffer.set(data, this.buffered);
      this.buffered += data.length;
      return null;
    }
    const flushed = this.flush();
    if (data.length > this.buffer.length / 2) {
      return Promise.all([flushed, this.track(writeFully(this.data!, data, at))]).then(() => {});
    }
    this.bufferStart = at;
    this.buffer.set(data, 0);
    this.buffered = data.length;
    return flushed;
  }

  private flush(): Promise<void> {
    if (this.buffered === 0) return Promise.resolve();
    const full = this.buffer;
    const chunk = full.subarray(0, this.buffered);
    // another buffer while the write of this one runs; this one is reused once written (fresh ones are page faults)
    this.buffer = this.spareBuffers.pop() ?? new Uint8Array(WRITE_BUFFER_BYTES);
    this.buffered = 0;
    return this.track(
      writeFully(this.data!, chunk, this.bufferStart).then(() => {
        if (this.spareBuffers.length < 2) this.spareBuffers.push(full);
      }),
    );
  }

  private track(p: Promise<void>): Promise<void> {
    const t = p.then(
      () => {
        this.writes.delete(t);
      },
      (err: unknown) => {
        this.writes.delete(t);
        this.writeFailure ??= err;
      },
    );
    this.writes.add(t);
    return t;
  }

  async finish(): Promise<{ tiles: number; uniqueContents: number; bytes: number }> {
    this.assertOpen();
    this.state = 'finishing';
    let out = null as FileHandle | null;
    try {
      await this.flush();
      while (this.writes.size > 0) await Promise.all([...this.writes]);
      if (this.writeFailure) throw this.writeFailure;
      const tiles = this.ids.size;
      if (tiles === 0) {
        // spec 3.1: directories must be non-empty, so there is no valid empty archive
        throw new TuileError('InvalidParameter', `no tile was added to ${this.path}`);
      }

      const { entries, order, tileDataLength } = this.layout();
      const { root, leaves } = await buildDirectories(entries);
      const metadata = await gzipAsync(Buffer.from(this.metadataJson, 'utf8'));

      const o = this.opts;
      const header: PMTilesHeader = {
        specVersion: SPEC_VERSION,
        rootDirectoryOffset: HEADER_BYTES,
        rootDirectoryLength: root.length,
        jsonMetadataOffset: HEADER_BYTES + root.length,
        jsonMetadataLength: metadata.length,
        leafDirectoryOffset: HEADER_BYTES + root.length + metadata.length,
        leafDirectoryLength: leaves.length,
        tileDataOffset: HEADER_BYTES + root.length + metadata.length + leaves.length,
        tileDataLength,
        numAddressedTiles: tiles,
        numTileEntries: entries.count,
        numTileContents: this.contents,
        clustered: true,
        internalCompression: COMPRESSION_GZIP,
        tileCompression: COMPRESSION_NONE, // PNG/JPEG/WebP are compressed already
        tileType: o.tileType,
        tileTypeCode: TILE_TYPE_CODES[o.tileType],
        minZoom: o.minZoom,
        maxZoom: o.maxZoom,
        bounds: o.bounds,
        center: o.center ?? [(o.bounds[0] + o.bounds[2]) / 2, (o.bounds[1] + o.bounds[3]) / 2, o.minZoom],
      };
      const head = Buffer.concat([encodeHeader(header), root, metadata, leaves]);

      try {
        out = await open(this.tmpArchive, 'w');
      } catch (err) {
        throw new TuileError('OutputError', `cannot write ${this.tmpArchive}: ${errorMessage(err)}`);
      }
      await writeFully(out, head, 0);
      await this.copyTiles(out, order, header.tileDataOffset);
      // flushed before the rename so that a power cut cannot leave a renamed but empty archive
      await out.sync();
      await out.close();
      out = null;
      if (this.aborted()) throw new TuileError('OutputError', `${this.path} was aborted`);
      await rename(this.tmpArchive, this.path);
      this.state = 'done';
      await this.closeData();
      await removeQuietly(this.tmpData);
      return { tiles, uniqueContents: this.contents, bytes: header.tileDataOffset + tileDataLength };
    } catch (err) {
      await out?.close().catch(() => {});
      await this.fail();
      throw asOutputError(err, `cannot write ${this.path}`);
    }
  }

  /**
   * Sorts tiles by id, merges runs and places each content at its first tile, which makes the archive
   * clustered (spec: offsets are contiguous or point back to a lesser offset).
   */
  private layout(): { entries: Entries; order: Uint32Array; tileDataLength: number } {
    const sorted = this.ids.sortedIds();
    const n = sorted.length;
    const entries: Entries = {
      count: 0,
      ids: new Float64Array(n),
      offsets: new Float64Array(n),
      lengths: new Uint32Array(n),
      runs: new Uint32Array(n),
    };
    const finalOffset = new Float64Array(this.contents).fill(-1);
    const order = new Uint32Array(this.contents);
    let placed = 0;
    let dataLength = 0;
    let lastContent = -1;
    for (let i = 0; i < n; i++) {
      const id = sorted[i];
      const c = this.ids.get(id);
      if (finalOffset[c] < 0) {
        finalOffset[c] = dataLength;
        dataLength += this.contentLength[c];
        order[placed++] = c;
      }
      const m = entries.count;
      if (m > 0 && c === lastContent && entries.ids[m - 1] + entries.runs[m - 1] === id && entries.runs[m - 1] < MAX_RUN) {
        entries.runs[m - 1]++;
        continue;
      }
      entries.ids[m] = id;
      entries.offsets[m] = finalOffset[c];
      entries.lengths[m] = this.contentLength[c];
      entries.runs[m] = 1;
      entries.count++;
      lastContent = c;
    }
    return { entries, order, tileDataLength: dataLength };
  }

  /** Copies contents in placement order, reading the temporary file in concurrent batches. */
  private async copyTiles(out: FileHandle, order: Uint32Array, tileDataOffset: number): Promise<void> {
    const data = this.data!;
    let batchBuffer = new Uint8Array(0);
    let written = 0;
    let i = 0;
    while (i < order.length) {
      const reads: { temp: number; at: number; length: number }[] = [];
      let size = 0;
      while (i < order.length && reads.length < COPY_BATCH_READS) {
        const c = order[i];
        const len = this.contentLength[c];
        if (size > 0 && size + len > COPY_BATCH_BYTES) break;
        const last = reads[reads.length - 1];
        // tiles that were written one after the other are read in one go
        if (last && last.temp + last.length === this.contentTemp[c]) last.length += len;
        else reads.push({ temp: this.contentTemp[c], at: size, length: len });
        size += len;
        i++;
      }
      // one buffer for every batch (a fresh one each time page-faulted all through it)
      if (batchBuffer.length < size) batchBuffer = new Uint8Array(Math.max(size, COPY_BATCH_BYTES));
      const batch = batchBuffer.subarray(0, size);
      await Promise.all(
        reads.map(async (r) => {
          const got = await readFully(data, batch.subarray(r.at, r.at + r.length), r.temp);
          if (got !== r.length) throw new TuileError('Internal', `${this.tmpData} is shorter than written`);
        }),
      );
      await writeFully(out, batch, tileDataOffset + written);
      written += size;
    }
  }

  /** Removes every temporary file; a finished archive stays. */
  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'failed') return;
    await this.fail();
  }

  // a method, so that TypeScript does not keep the narrowing of `state` made before the awaits
  private aborted(): boolean {
    return this.state !== 'finishing';
  }

  private assertOpen(): void {
    if (this.state !== 'open') {
      throw new TuileError('Internal', `PMTiles writer for ${this.path} is ${this.state}`);
    }
  }

  private async closeData(): Promise<void> {
    const fh = this.data;
    this.data = null;
    // FileHandle.close waits for the writes still running on it
    await fh?.close().catch(() => {});
  }

  private async fail(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'failed';
    this.byHash = new Map();
    await this.closeData();
    await removeQuietly(this.tmpData);
    await removeQuietly(this.tmpArchive);
  }
}

function asOutputError(err: unknown, context: string): TuileError {
  if (err instanceof TuileError) return err;
  return new TuileError('OutputError', `${context}: ${errorMessage(err)}`, { cause: err });
}

async function buildDirectories(e: Entries): Promise<{ root: Uint8Array; leaves: Uint8Array }> {
  const maxRoot = ROOT_LIMIT - HEADER_BYTES;
  // a root-only archive costs readers one request less; gzip makes some larger directories fit too
  if (e.count <= 16384) {
    const root = await gzipAsync(serializeDirectory(e, 0, e.count));
    if (root.length <= maxRoot) return { root, leaves: new Uint8Array(0) };
  }
  // one level of leaves; the root stays under ROOT_SAFE_ENTRIES so that it always fits
  let leafSize = Math.max(MIN_LEAF_ENTRIES, Math.ceil(e.count / ROOT_SAFE_ENTRIES));
  for (;;) {
    const leafCount = Math.ceil(e.count / leafSize);
    const rootEntries: Entries = {
      count: leafCount,
      ids: new Float64Array(leafCount),
      offsets: new Float64Array(leafCount),
      lengths: new Uint32Array(leafCount),
      runs: new Uint32Array(leafCount), // 0: the entry points to a leaf directory
    };
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (let l = 0; l < leafCount; l++) {
      const from = l * leafSize;
      const leaf = await gzipAsync(serializeDirectory(e, from, Math.min(e.count, from + leafSize)));
      rootEntries.ids[l] = e.ids[from];
      rootEntries.offsets[l] = offset;
      rootEntries.lengths[l] = leaf.length;
      parts.push(leaf);
      offset += leaf.length;
    }
    const root = await gzipAsync(serializeDirectory(rootEntries, 0, leafCount));
    if (root.length <= maxRoot) return { root, leaves: Buffer.concat(parts) };
    leafSize *= 2; // unreachable given ROOT_SAFE_ENTRIES, kept so a wrong estimate cannot break the spec
  }
}
