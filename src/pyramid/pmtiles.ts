// PMTiles v3 archives of raster tiles (DESIGN 5): Hilbert tile ids, a streaming de-duplicating writer, an indexed reader.

import { createHash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, gzip } from 'node:zlib';
import { TuileError, errorMessage } from '../errors.js';

export type TileType = 'png' | 'jpg' | 'webp';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const brotliAsync = promisify(brotliDecompress);

// spec "Header Design": the header is a fixed 127 bytes and, with the root directory, must fit in the
// first 16384 bytes so that a client gets both with one request.
const HEADER_BYTES = 127;
const ROOT_LIMIT = 16384;
const MAGIC = 'PMTiles';
const SPEC_VERSION = 3;

// spec header enums (offsets 97-99)
const COMPRESSION_UNKNOWN = 0;
const COMPRESSION_NONE = 1;
const COMPRESSION_GZIP = 2;
const COMPRESSION_BROTLI = 3;
const TILE_TYPE_CODES: Record<TileType, number> = { png: 2, jpg: 3, webp: 4 };

// Tile ids are JS numbers: the last id of z26 is below 2^53 and the first of z27 is not.
export const MAX_ZOOM = 26;

const TWO_32 = 2 ** 32;
const MAX_RUN = TWO_32 - 1; // RunLength is a uint32

/** Number of tiles in all levels above z: (4^z - 1) / 3, the first Hilbert tile id of level z. */
function levelStart(z: number): number {
  return (4 ** z - 1) / 3;
}

function isIndex(v: number, size: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < size;
}

function validTile(z: number, x: number, y: number): boolean {
  return Number.isInteger(z) && z >= 0 && z <= MAX_ZOOM && isIndex(x, 2 ** z) && isIndex(y, 2 ** z);
}

/** Hilbert tile id of a tile, y counted from the top (spec "Entries": cumulative over levels from z0). */
export function zxyToTileId(z: number, x: number, y: number): number {
  if (!validTile(z, x, y)) {
    throw new TuileError('InvalidParameter', `no tile ${z}/${x}/${y} (zoom 0..${MAX_ZOOM}, x and y in 0..2^z-1)`);
  }
  let d = 0;
  // Products stay exact as doubles: s*s*3 < 2^53 for s <= 2^25; bit operations only touch x, y < 2^26.
  for (let s = 2 ** (z - 1); s >= 1; s /= 2) {
    const rx = (x & s) > 0 ? 1 : 0;
    const ry = (y & s) > 0 ? 1 : 0;
    d += s * s * ((3 * rx) ^ ry);
    if (ry === 0) {
      if (rx === 1) {
        x = s - 1 - x;
        y = s - 1 - y;
      }
      const t = x;
      x = y;
      y = t;
    }
  }
  return levelStart(z) + d;
}

export function tileIdToZxy(id: number): { z: number; x: number; y: number } {
  if (!Number.isInteger(id) || id < 0 || id >= levelStart(MAX_ZOOM + 1)) {
    throw new TuileError('InvalidParameter', `tile id ${id} is outside zoom levels 0..${MAX_ZOOM}`);
  }
  let z = 0;
  while (id >= levelStart(z + 1)) z++;
  let t = id - levelStart(z);
  let x = 0;
  let y = 0;
  const n = 2 ** z;
  for (let s = 1; s < n; s *= 2) {
    // t can exceed 2^32: split with arithmetic, not bit operators
    const rx = Math.floor(t / 2) % 2;
    const ry = (t % 2) ^ rx;
    if (ry === 0) {
      if (rx === 1) {
        x = s - 1 - x;
        y = s - 1 - y;
      }
      const tmp = x;
      x = y;
      y = tmp;
    }
    x += s * rx;
    y += s * ry;
    t = Math.floor(t / 4);
  }
  return { z, x, y };
}

// ---------------------------------------------------------------------------------------------------
// Directories (spec "Directory Serialization")

/** Entries in columns: a directory of millions of tiles stays a few typed arrays, not objects. */
interface Entries {
  count: number;
  ids: Float64Array;
  offsets: Float64Array;
  lengths: Uint32Array;
  runs: Uint32Array;
}

function growF64(a: Float64Array, need: number): Float64Array {
  if (need <= a.length) return a;
  const b = new Float64Array(Math.max(need, a.length * 2, 16));
  b.set(a);
  return b;
}

function growU32(a: Uint32Array, need: number): Uint32Array {
  if (need <= a.length) return a;
  const b = new Uint32Array(Math.max(need, a.length * 2, 16));
  b.set(a);
  return b;
}

function pushVarint(out: Uint8Array, pos: number, v: number): number {
  // values reach 2^53: divide instead of shifting, which would truncate to 32 bits
  while (v >= 0x80) {
    out[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  out[pos++] = v;
  return pos;
}

function serializeDirectory(e: Entries, from: number, to: number): Uint8Array {
  const n = to - from;
  // 8 varint bytes hold 56 bits, enough for any value below 2^53
  const out = new Uint8Array(10 + n * 4 * 8);
  let p = pushVarint(out, 0, n);
  let last = 0;
  for (let i = from; i < to; i++) {
    p = pushVarint(out, p, e.ids[i] - last);
    last = e.ids[i];
  }
  for (let i = from; i < to; i++) p = pushVarint(out, p, e.runs[i]);
  for (let i = from; i < to; i++) p = pushVarint(out, p, e.lengths[i]);
  for (let i = from; i < to; i++) {
    // 0 means "right after the previous entry", which is most entries of a clustered archive
    const contiguous = i > from && e.offsets[i] === e.offsets[i - 1] + e.lengths[i - 1];
    p = pushVarint(out, p, contiguous ? 0 : e.offsets[i] + 1);
  }
  return out.subarray(0, p);
}

function corrupt(what: string): TuileError {
  return new TuileError('InvalidInput', `corrupt PMTiles archive: ${what}`);
}

class VarintReader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  next(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length) throw corrupt('directory ends inside a varint');
      const b = this.buf[this.pos++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 49) throw corrupt('varint beyond 2^53');
    }
    return v;
  }
}

function deserializeDirectory(buf: Uint8Array): Entries {
  const r = new VarintReader(buf);
  const n = r.next();
  // every entry takes at least 4 bytes: a huge count in a small buffer is corruption, not an allocation
  if (n * 4 > r.remaining) throw corrupt(`directory announces ${n} entries in ${buf.length} bytes`);
  const e: Entries = {
    count: n,
    ids: new Float64Array(n),
    offsets: new Float64Array(n),
    lengths: new Uint32Array(n),
    runs: new Uint32Array(n),
  };
  let id = 0;
  for (let i = 0; i < n; i++) {
    id += r.next();
    e.ids[i] = id;
  }
  for (let i = 0; i < n; i++) {
    const v = r.next();
    if (v > MAX_RUN) throw corrupt('run length beyond uint32');
    e.runs[i] = v;
  }
  for (let i = 0; i < n; i++) {
    const v = r.next();
    if (v === 0 || v > MAX_RUN) throw corrupt(`entry length ${v}`); // spec 3.1: lengths are > 0
    e.lengths[i] = v;
  }
  for (let i = 0; i < n; i++) {
    const v = r.next();
    if (v === 0) {
      if (i === 0) throw corrupt('first directory entry has no offset');
      e.offsets[i] = e.offsets[i - 1] + e.lengths[i - 1];
    } else {
      e.offsets[i] = v - 1;
    }
  }
  return e;
}

async function decompress(data: Uint8Array, compression: number, what: string): Promise<Uint8Array> {
  try {
    switch (compression) {
      case COMPRESSION_UNKNOWN:
      case COMPRESSION_NONE:
        return data;
      case COMPRESSION_GZIP:
        return await gunzipAsync(data);
      case COMPRESSION_BROTLI:
        return await brotliAsync(data);
    }
  } catch (err) {
    throw corrupt(`cannot decompress the ${what}: ${errorMessage(err)}`);
  }
  // zstd (4) needs Node >= 22.15
  throw new TuileError('InvalidInput', `PMTiles internal compression ${compression} is not supported`);
}

// ---------------------------------------------------------------------------------------------------
// Header (spec "Header Design": little-endian, 127 bytes)

export interface PMTilesHeader {
  specVersion: number;
  rootDirectoryOffset: number;
  rootDirectoryLength: number;
  jsonMetadataOffset: number;
  jsonMetadataLength: number;
  leafDirectoryOffset: number;
  leafDirectoryLength: number;
  tileDataOffset: number;
  tileDataLength: number;
  numAddressedTiles: number; // 0 if unknown
  numTileEntries: number;
  numTileContents: number;
  clustered: boolean;
  internalCompression: number; // 0 unknown, 1 none, 2 gzip, 3 brotli, 4 zstd
  tileCompression: number; // same enum; raster tiles are stored as is (1)
  tileType: TileType | 'other'; // 'other' covers unknown, MVT, AVIF, ...
  tileTypeCode: number;
  minZoom: number;
  maxZoom: number;
  bounds: [number, number, number, number]; // lon/lat w, s, e, n
  center: [number, number, number]; // lon, lat, zoom
}

function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % TWO_32, true);
  v.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

function getU64(v: DataView, at: number, field: string): number {
  const hi = v.getUint32(at + 4, true);
  if (hi >= 2 ** 21) throw corrupt(`${field} beyond 2^53`);
  return hi * TWO_32 + v.getUint32(at, true);
}

// spec: longitudes and latitudes are signed 32-bit integers of degrees * 10^7
const e7 = (deg: number): number => Math.round(deg * 1e7);

function encodeHeader(h: PMTilesHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_BYTES);
  const v = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint8(7, h.specVersion);
  setU64(v, 8, h.rootDirectoryOffset);
  setU64(v, 16, h.rootDirectoryLength);
  setU64(v, 24, h.jsonMetadataOffset);
  setU64(v, 32, h.jsonMetadataLength);
  setU64(v, 40, h.leafDirectoryOffset);
  setU64(v, 48, h.leafDirectoryLength);
  setU64(v, 56, h.tileDataOffset);
  setU64(v, 64, h.tileDataLength);
  setU64(v, 72, h.numAddressedTiles);
  setU64(v, 80, h.numTileEntries);
  setU64(v, 88, h.numTileContents);
  v.setUint8(96, h.clustered ? 1 : 0);
  v.setUint8(97, h.internalCompression);
  v.setUint8(98, h.tileCompression);
  v.setUint8(99, h.tileTypeCode);
  v.setUint8(100, h.minZoom);
  v.setUint8(101, h.maxZoom);
  v.setInt32(102, e7(h.bounds[0]), true);
  v.setInt32(106, e7(h.bounds[1]), true);
  v.setInt32(110, e7(h.bounds[2]), true);
  v.setInt32(114, e7(h.bounds[3]), true);
  v.setUint8(118, h.center[2]);
  v.setInt32(119, e7(h.center[0]), true);
  v.setInt32(123, e7(h.center[1]), true);
  return buf;
}

function decodeHeader(buf: Uint8Array): PMTilesHeader {
  if (new TextDecoder('latin1').decode(buf.subarray(0, 7)) !== MAGIC) {
    throw new TuileError('InvalidInput', 'not a PMTiles archive (bad magic number)');
  }
  if (buf[7] !== SPEC_VERSION) {
    throw new TuileError('InvalidInput', `PMTiles spec version ${buf[7]} is not supported (only ${SPEC_VERSION})`);
  }
  const v = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  const code = v.getUint8(99);
  const type = (Object.keys(TILE_TYPE_CODES) as TileType[]).find((t) => TILE_TYPE_CODES[t] === code);
  return {
    specVersion: buf[7],
    rootDirectoryOffset: getU64(v, 8, 'root directory offset'),
    rootDirectoryLength: getU64(v, 16, 'root directory length'),
    jsonMetadataOffset: getU64(v, 24, 'metadata offset'),
    jsonMetadataLength: getU64(v, 32, 'metadata length'),
    leafDirectoryOffset: getU64(v, 40, 'leaf directories offset'),
    leafDirectoryLength: getU64(v, 48, 'leaf directories length'),
    tileDataOffset: getU64(v, 56, 'tile data offset'),
    tileDataLength: getU64(v, 64, 'tile data length'),
    numAddressedTiles: getU64(v, 72, 'addressed tiles'),
    numTileEntries: getU64(v, 80, 'tile entries'),
    numTileContents: getU64(v, 88, 'tile contents'),
    clustered: v.getUint8(96) === 1,
    internalCompression: v.getUint8(97),
    tileCompression: v.getUint8(98),
    tileType: type ?? 'other',
    tileTypeCode: code,
    minZoom: v.getUint8(100),
    maxZoom: v.getUint8(101),
    bounds: [
      v.getInt32(102, true) / 1e7,
      v.getInt32(106, true) / 1e7,
      v.getInt32(110, true) / 1e7,
      v.getInt32(114, true) / 1e7,
    ],
    center: [v.getInt32(119, true) / 1e7, v.getInt32(123, true) / 1e7, v.getUint8(118)],
  };
}

// ---------------------------------------------------------------------------------------------------
// Writer

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

async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
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
      // one buffer for every batch (a fresh 4 MB each time was a thousand page faults a batch)
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

// ---------------------------------------------------------------------------------------------------
// Reader

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
