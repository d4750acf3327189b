// geotiff.js's deflate decoder on Node's native zlib, inflating into pooled buffers, and the 8-bit horizontal
// predictor; registered with geotiff.js when this module loads.

import { createRequire } from 'node:module';
import { Inflate, constants as zlibConstants, deflateSync, inflateSync } from 'node:zlib';
import { releaseBuffer, spareBuffer } from './buffers.js';

// geotiff.js's CommonJS build, required as geotiff.ts does: one instance, whose decoder table this module fills
const { addDecoder, BaseDecoder } = createRequire(import.meta.url)('geotiff') as typeof import('geotiff');

// geotiff.js inflates with pako, in JavaScript: Node's zlib is native and much faster, and deflate is
// the most common compression of deliveries. The 8-bit horizontal predictor is undone here in one pass
// (geotiff.js's generic one cost as much as the inflate); others stay geotiff.js's.
class NativeDeflateDecoder extends BaseDecoder {
  decodeBlock(buffer: ArrayBufferLike): ArrayBufferLike {
    const out = inflateSync(new Uint8Array(buffer));
    return out.byteOffset === 0 && out.byteLength === out.buffer.byteLength
      ? out.buffer
      : out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
  }

  async decode(buffer: ArrayBufferLike): Promise<ArrayBufferLike> {
    const p = (this as unknown as { parameters: { predictor: number; tileWidth: number; bitsPerSample: number | number[]; planarConfiguration: number } }).parameters;
    const bits = Array.isArray(p.bitsPerSample) || ArrayBuffer.isView(p.bitsPerSample) ? Array.from(p.bitsPerSample as number[]) : [p.bitsPerSample];
    if (p.predictor !== 2 || !bits.every((b) => b === 8)) return super.decode(buffer);
    // one output chunk a little larger than the block: zlib's default 16 KB chunks cost an allocation each and a
    // concatenation; the few spare bytes at the end of the buffer are never read (rows are indexed)
    const expected = p.tileWidth * ((p as { tileHeight?: number }).tileHeight ?? 1) * (p.planarConfiguration === 2 ? 1 : bits.length);
    const inflated = inflateBlock(new Uint8Array(buffer), expected + 1024);
    const decoded =
      inflated.byteOffset === 0
        ? inflated.buffer
        : inflated.buffer.slice(inflated.byteOffset, inflated.byteOffset + inflated.byteLength);
    // readBlocks undoes the predictor itself while it copies rows out (one pass over the block instead of two)
    if ((p as { deferPredictor?: boolean }).deferPredictor) return decoded;
    const spp = p.planarConfiguration === 2 ? 1 : bits.length;
    undoPredictor8(new Uint8Array(decoded, 0, inflated.byteLength), p.tileWidth * spp, spp);
    return decoded;
  }
}

/** Buffers inflateBlock handed out (buffers.ts's): only those go back, other codecs' outputs may be geotiff.js's. */
const pooled = new WeakSet<ArrayBufferLike>();

/** Gives a decoded block's buffer back once its pixels are copied. */
export function releaseBlock(buffer: ArrayBufferLike): void {
  if (pooled.has(buffer)) releaseBuffer(new Uint8Array(buffer));
}

/**
 * Inflates into a buffer of `size` bytes, reused when one is free (a fresh output per block cost more than the
 * inflate itself). Node's zlib has no public way to inflate into a given buffer: its synchronous path writes
 * into the stream's `_outBuffer` (`_chunkSize` bytes), which is set here. Checked once at start-up against a
 * known stream; without it, inflateSync.
 */
function inflateBlock(input: Uint8Array, size: number): Uint8Array {
  if (!inflateIntoSupported) return inflateSync(input, { chunkSize: Math.max(64, size) });
  const target = spareBuffer(size);
  const out = inflateInto(input, target);
  if (out.buffer === target.buffer) pooled.add(target.buffer);
  return out;
}

function inflateInto(input: Uint8Array, target: Uint8Array): Uint8Array {
  const engine = new Inflate({ chunkSize: 64 }) as unknown as {
    _outBuffer: Uint8Array;
    _chunkSize: number;
    _outOffset: number;
    _processChunk(chunk: Uint8Array, flush: number): Buffer;
  };
  // a Buffer: zlib hands out slices of it, views for a Buffer but copies for a plain Uint8Array
  engine._outBuffer = Buffer.from(target.buffer, target.byteOffset, target.length);
  engine._chunkSize = target.length;
  engine._outOffset = 0;
  // the output is a view of `target` when it fits, several chunks concatenated otherwise
  return engine._processChunk(input, zlibConstants.Z_FINISH);
}

/** Whether this Node lets inflateInto write into a given buffer (a test checks that it does). */
export const inflateIntoSupported = ((): boolean => {
  try {
    const sample = Buffer.from('tuile inflates blocks into buffers it reuses');
    const target = new Uint8Array(256);
    const out = inflateInto(deflateSync(sample), target);
    return out.buffer === target.buffer && Buffer.from(out).equals(sample);
  } catch {
    return false;
  }
})();

/** In place, the 8-bit horizontal predictor over rows of rowBytes bytes of spp interleaved samples. */
export function undoPredictor8(b: Uint8Array, rowBytes: number, spp: number): void {
  for (let r = 0; r + rowBytes <= b.length; r += rowBytes) {
    const end = r + rowBytes;
    if (spp === 3) {
      // three independent running sums in registers instead of one chain through memory
      let c0 = b[r];
      let c1 = b[r + 1];
      let c2 = b[r + 2];
      for (let i = r + 3; i < end; i += 3) {
        c0 = (c0 + b[i]) & 255;
        c1 = (c1 + b[i + 1]) & 255;
        c2 = (c2 + b[i + 2]) & 255;
        b[i] = c0;
        b[i + 1] = c1;
        b[i + 2] = c2;
      }
    } else {
      for (let i = r + spp; i < end; i++) b[i] = (b[i] + b[i - spp]) & 255;
    }
  }
}
addDecoder([8, 32946], async () => NativeDeflateDecoder as unknown as typeof BaseDecoder);
