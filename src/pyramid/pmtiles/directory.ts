// PMTiles directories: entries in typed columns, their varint serialization and internal decompression
// (spec "Directory Serialization").

import { promisify } from 'node:util';
import { brotliDecompress, gunzip } from 'node:zlib';
import { TuileError, errorMessage } from '../../errors.js';
import { COMPRESSION_BROTLI, COMPRESSION_GZIP, COMPRESSION_NONE, COMPRESSION_UNKNOWN, TWO_32, corrupt } from './header.js';

const gunzipAsync = promisify(gunzip);
const brotliAsync = promisify(brotliDecompress);

export const MAX_RUN = TWO_32 - 1; // RunLength is a uint32


/** Entries in columns: a directory of millions of tiles stays a few typed arrays, not objects. */
export interface Entries {
  count: number;
  ids: Float64Array;
  offsets: Float64Array;
  lengths: Uint32Array;
  runs: Uint32Array;
}

export function growF64(a: Float64Array, need: number): Float64Array {
  if (need <= a.length) return a;
  const b = new Float64Array(Math.max(need, a.length * 2, 16));
  b.set(a);
  return b;
}

export function growU32(a: Uint32Array, need: number): Uint32Array {
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

export function serializeDirectory(e: Entries, from: number, to: number): Uint8Array {
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

export function deserializeDirectory(buf: Uint8Array): Entries {
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

export async function decompress(data: Uint8Array, compression: number, what: string): Promise<Uint8Array> {
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
