// A zlib stream (RFC 1950) holding one deflate block (RFC 1951) of Huffman-coded literals only: no string
// matching. On png rows that a predictor has filtered (residuals clustered around 0) this is nearly as small as
// zlib level 1 in far less time (bench/README.md), which makes it the png tile encoder of builds (codec.ts). It is
// what zlib writes with Z_HUFFMAN_ONLY, with one code for the whole input instead of one per 16 K symbols.

import { LITTLE_ENDIAN } from '../raster/buffers.js';

const EOB = 256;
/**
 * Longest literal code. Deflate allows 15; 12 lets two codes (24 bits) join a bit buffer holding fewer than 8
 * in one 32-bit word, so that writeLiterals codes two bytes a step. Only symbols rarer than 1 in 4096 lose.
 */
const MAX_LITERAL_BITS = 12;
/** Order in which the code-length code's lengths are sent (RFC 1951 3.2.7). */
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const ADLER_MOD = 65521;
/** Bytes summed before the Adler-32 sums are reduced: a multiple of 4 that keeps them below 2^31. */
const ADLER_RUN = 2600;

// per-thread scratch: encoding is synchronous
const freq = new Uint32Array(257);
const counts4 = new Uint32Array(4 * 256);
const litLength = new Uint8Array(257);
/** code (bit-reversed, as deflate sends codes from their top bit into a stream filled from the low bits)
 * | length << 16 */
const litCode = new Int32Array(257);
let out = new Uint8Array(0);

/**
 * Code lengths of an optimal prefix code over the symbols with a non-zero count, at most maxLength bits
 * (lengths[s] = 0 for the others). At least two symbols must have a count.
 */
export function huffmanLengths(counts: Uint32Array, n: number, maxLength: number, lengths: Uint8Array): void {
  // symbols by count, then by value: one numeric sort of count * 512 + symbol (a comparator sort is much slower)
  const keys = new Float64Array(n);
  let m = 0;
  for (let s = 0; s < n; s++) {
    lengths[s] = 0;
    if (counts[s] > 0) keys[m++] = counts[s] * 512 + s;
  }
  if (m < 2) throw new Error('a Huffman code needs two symbols');
  const sorted = keys.subarray(0, m).sort();
  const syms = new Uint16Array(m);
  for (let i = 0; i < m; i++) syms[i] = sorted[i] % 512;
  // Moffat and Katajainen's in-place computation of the code lengths from the sorted weights
  const A = new Float64Array(m);
  for (let i = 0; i < m; i++) A[i] = counts[syms[i]];
  let leaf = 0;
  let root = 0;
  for (let next = 0; next < m - 1; next++) {
    let sum: number;
    if (leaf >= m || (root < next && A[root] < A[leaf])) {
      sum = A[root];
      A[root++] = next;
    } else {
      sum = A[leaf++];
    }
    if (leaf >= m || (root < next && A[root] < A[leaf])) {
      sum += A[root];
      A[root++] = next;
    } else {
      sum += A[leaf++];
    }
    A[next] = sum;
  }
  A[m - 2] = 0;
  for (let next = m - 3; next >= 0; next--) A[next] = A[A[next]] + 1;
  let avail = 1;
  let used = 0;
  let depth = 0;
  root = m - 2;
  let next = m - 1;
  while (avail > 0) {
    while (root >= 0 && A[root] === depth) {
      used++;
      root--;
    }
    while (avail > used) {
      A[next--] = depth;
      avail--;
    }
    avail = 2 * used;
    depth++;
    used = 0;
  }
  // A[i] is now the length of the i-th lightest symbol. Longer than maxLength: clamp, then restore the Kraft
  // equality by lengthening the longest codes shorter than maxLength (miniz's method; only rare symbols move).
  const perLength = new Uint32Array(Math.max(maxLength, 32) + 1);
  for (let i = 0; i < m; i++) perLength[Math.min(A[i], maxLength)]++;
  let kraft = 0;
  for (let l = 1; l <= maxLength; l++) kraft += perLength[l] * 2 ** (maxLength - l);
  while (kraft > 2 ** maxLength) {
    perLength[maxLength]--;
    for (let l = maxLength - 1; l > 0; l--) {
      if (perLength[l] > 0) {
        perLength[l]--;
        perLength[l + 1] += 2;
        break;
      }
    }
    kraft--;
  }
  // the lightest symbols get the longest codes
  let k = 0;
  for (let l = maxLength; l > 0; l--) for (let c = perLength[l]; c > 0; c--) lengths[syms[k++]] = l;
}

/** Canonical codes of the lengths, bit-reversed, with their length in bits 16 and up. */
function canonicalCodes(lengths: Uint8Array, n: number, codes: Int32Array): void {
  const count = new Uint16Array(16);
  for (let s = 0; s < n; s++) count[lengths[s]]++;
  count[0] = 0;
  const next = new Uint16Array(16);
  let code = 0;
  for (let l = 1; l < 16; l++) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
  for (let s = 0; s < n; s++) {
    const l = lengths[s];
    if (l === 0) continue;
    let v = next[l]++;
    let r = 0;
    for (let j = 0; j < l; j++) {
      r = (r << 1) | (v & 1);
      v >>= 1;
    }
    codes[s] = r | (l << 16);
  }
}

/**
 * zlib stream of `data`: one final deflate block with a dynamic Huffman code over its bytes. The result is a
 * view of a buffer the next call overwrites: copy it (the png writer does) before calling again.
 *
 * null, without writing anything, when the code would spend fewer than `minBitsPerByte` bits a byte, or when more
 * than a `maxRunShare` of the bytes lie in runs of equal bytes (from their 4th on): string matching (zlib) does
 * far better on such data (smooth, or with flat areas), Huffman coding never going under a bit a byte.
 */
export function huffmanZlib(data: Uint8Array, minBitsPerByte = 0, maxRunShare = 1): Uint8Array | null {
  const n = data.length;
  const adler = countBytes(data);
  if (runBytes > n * maxRunShare) return null;
  freq[EOB] = 1;
  // an empty input still needs a symbol besides EOB
  let distinct = 0;
  for (let s = 0; s < 256 && distinct < 2; s++) if (freq[s] > 0) distinct++;
  if (distinct === 0) freq[0] = 1;
  huffmanLengths(freq, 257, MAX_LITERAL_BITS, litLength);
  if (minBitsPerByte > 0) {
    let bits = 0;
    for (let s = 0; s < 256; s++) bits += freq[s] * litLength[s];
    if (bits < n * minBitsPerByte) return null;
  }
  canonicalCodes(litLength, 257, litCode);

  // The code lengths of 257 literal/length codes and of 2 distance codes (never used, but decoders want a
  // complete distance code; zlib sends two as well), run-length coded with the code-length alphabet.
  const lens = new Uint8Array(259);
  lens.set(litLength.subarray(0, 257));
  lens[257] = 1;
  lens[258] = 1;
  const clSyms: number[] = [];
  const clExtra: number[] = [];
  for (let i = 0; i < lens.length; ) {
    const v = lens[i];
    let run = 1;
    while (i + run < lens.length && lens[i + run] === v) run++;
    i += run;
    if (v === 0) {
      for (; run >= 11; ) {
        const k = Math.min(run, 138);
        clSyms.push(18);
        clExtra.push(k - 11);
        run -= k;
      }
      if (run >= 3) {
        clSyms.push(17);
        clExtra.push(run - 3);
        run = 0;
      }
    } else {
      clSyms.push(v);
      clExtra.push(0);
      run--;
      for (; run >= 3; ) {
        const k = Math.min(run, 6);
        clSyms.push(16);
        clExtra.push(k - 3);
        run -= k;
      }
    }
    for (; run > 0; run--) {
      clSyms.push(v);
      clExtra.push(0);
    }
  }
  const clFreq = new Uint32Array(19);
  for (const s of clSyms) clFreq[s]++;
  // two different lengths at least (EOB's and a byte's), so two code-length symbols at least
  const clLength = new Uint8Array(19);
  const clCode = new Int32Array(19);
  huffmanLengths(clFreq, 19, 7, clLength);
  canonicalCodes(clLength, 19, clCode);
  let hclen = 19;
  while (hclen > 4 && clLength[CL_ORDER[hclen - 1]] === 0) hclen--;

  // at most 15 bits a byte, plus headers
  const need = 2 + ((n + 1) * 15) / 8 + 300 + 4 + 2;
  if (out.length < need) out = new Uint8Array(Math.ceil(need * 1.25));
  const w = new BitWriter(out);
  w.put(0x78, 8); // deflate, 32 KB window
  w.put(0x01, 8); // "fastest" level, no dictionary (0x7801 is a multiple of 31)
  w.put(1, 1); // final block
  w.put(2, 2); // dynamic Huffman codes
  w.put(257 - 257, 5); // HLIT
  w.put(2 - 1, 5); // HDIST
  w.put(hclen - 4, 4);
  for (let i = 0; i < hclen; i++) w.put(clLength[CL_ORDER[i]], 3);
  for (let i = 0; i < clSyms.length; i++) {
    const s = clSyms[i];
    w.put(clCode[s] & 0xffff, clCode[s] >>> 16);
    if (s === 16) w.put(clExtra[i], 2);
    else if (s === 17) w.put(clExtra[i], 3);
    else if (s === 18) w.put(clExtra[i], 7);
  }
  writeLiterals(data, w);
  w.put(litCode[EOB] & 0xffff, litCode[EOB] >>> 16);
  if (w.count > 0) w.put(0, 8 - w.count); // to the byte boundary
  w.put(adler >>> 24, 8);
  w.put((adler >>> 16) & 255, 8);
  w.put((adler >>> 8) & 255, 8);
  w.put(adler & 255, 8);
  return out.subarray(0, w.at);
}

/** Bytes that are the 4th or later of a run of equal bytes, in countBytes' last data (its first n - n % 4). */
let runBytes = 0;

/**
 * Counts the byte values of `data` into freq (and runBytes) and returns its Adler-32, in one pass four bytes a step: four
 * tables of counts, so that equal neighbours do not wait on each other's increments.
 */
function countBytes(data: Uint8Array): number {
  const n = data.length;
  counts4.fill(0);
  const n4 = n & ~3;
  // the last n % 4 bytes first, in sums of their own: nothing but the reductions follows the main loop (code
  // optimised in the middle of a loop has no type feedback for what comes after it, and is thrown away there)
  let ta = 0;
  let tb = 0;
  for (let i = n4; i < n; i++) {
    counts4[data[i]]++;
    ta += data[i];
    tb += ta;
  }
  let a = 1;
  let b = 0;
  let inRuns = 0;
  let run = 0;
  let prev = -1;
  for (let i = 0; i < n4; ) {
    const end = Math.min(n4, i + ADLER_RUN);
    for (; i < end; i += 4) {
      const v0 = data[i];
      const v1 = data[i + 1];
      const v2 = data[i + 2];
      const v3 = data[i + 3];
      counts4[v0]++;
      counts4[256 + v1]++;
      counts4[512 + v2]++;
      counts4[768 + v3]++;
      b += 4 * a + 4 * v0 + 3 * v1 + 2 * v2 + v3;
      a += v0 + v1 + v2 + v3;
      // the length of the run of equal bytes each one ends; from 4 bytes on, string matching can code it
      run = v0 === prev ? run + 1 : 0;
      inRuns += run >= 3 ? 1 : 0;
      run = v1 === v0 ? run + 1 : 0;
      inRuns += run >= 3 ? 1 : 0;
      run = v2 === v1 ? run + 1 : 0;
      inRuns += run >= 3 ? 1 : 0;
      run = v3 === v2 ? run + 1 : 0;
      inRuns += run >= 3 ? 1 : 0;
      prev = v3;
    }
    a %= ADLER_MOD;
    b %= ADLER_MOD;
  }
  runBytes = inRuns;
  // the last k = n - n4 bytes: a gains their sum; b gains k * a plus each byte times its distance to the end + 1,
  // which is the sum of their running sums above
  b = (b + (n - n4) * a + tb) % ADLER_MOD;
  a = (a + ta) % ADLER_MOD;
  for (let s = 0; s < 256; s++) freq[s] = counts4[s] + counts4[256 + s] + counts4[512 + s] + counts4[768 + s];
  return ((b << 16) | a) >>> 0;
}

/** Codes of two bytes (the first one's in the low bits) by their 16-bit read, with their length in bits 24 and up. */
const pairCode = new Int32Array(65536);

/**
 * The data, two bytes a step through pairCode (a code of at most 24 bits), with the writer's state in locals:
 * the bit buffer holds fewer than 8 bits before a step (BitWriter.put leaves it so) and at most 31 after; its four bytes are stored every
 * time and the whole ones kept. No branch to mispredict, and half the steps of a byte at a time (each step
 * waits on the previous one's bit count).
 */
function writeLiterals(data: Uint8Array, w: BitWriter): void {
  const n = data.length;
  for (let b1 = 0; b1 < 256; b1++) {
    const c1 = litCode[b1] & 0xffff;
    const l1 = litCode[b1] >> 16;
    for (let b0 = 0; b0 < 256; b0++) {
      const l0 = litCode[b0] >> 16;
      pairCode[LITTLE_ENDIAN ? (b1 << 8) | b0 : (b0 << 8) | b1] = (litCode[b0] & 0xffff) | (c1 << l0) | ((l0 + l1) << 24);
    }
  }
  const view = new DataView(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength);
  let bits = w.bits;
  let count = w.count;
  let o = w.at;
  const pairs = n >> 1;
  // 16-bit reads need an even offset (the png writer's rows have one)
  const even = data.byteOffset % 2 === 0 ? data : data.slice();
  const d16 = new Uint16Array(even.buffer, even.byteOffset, pairs);
  for (let p = 0; p < pairs; p++) {
    const e = pairCode[d16[p]];
    bits |= (e & 0xffffff) << count;
    count += e >> 24;
    view.setInt32(o, bits, true);
    const whole = count >> 3; // at most 3
    o += whole;
    // bits < 2^31: >> keeps it an int32 where >>> would type it as a uint32
    bits >>= whole << 3;
    count &= 7;
  }
  w.bits = bits;
  w.count = count;
  w.at = o;
  if (n & 1) w.put(litCode[data[n - 1]] & 0xffff, litCode[data[n - 1]] >> 16);
}

/** Bits into bytes, least significant first (RFC 1951 3.1.1); multi-byte header fields are sent a byte at a time. */
class BitWriter {
  bits = 0;
  count = 0;
  at = 0;

  constructor(readonly bytes: Uint8Array) {}

  put(value: number, length: number): void {
    this.bits |= value << this.count;
    this.count += length;
    while (this.count >= 8) {
      this.bytes[this.at++] = this.bits & 255;
      this.bits >>>= 8;
      this.count -= 8;
    }
  }
}
