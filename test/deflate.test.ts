// The png tiles' Huffman-only zlib streams: zlib reads them back byte for byte, whatever the byte counts, and the
// code lengths stay a complete prefix code within the limit.
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { huffmanLengths, huffmanZlib } from '../src/tiles/deflate.js';

function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x80000000;
  };
}

function roundTrips(data: Uint8Array): void {
  const z = huffmanZlib(data);
  expect(z).not.toBeNull();
  expect(Buffer.from(inflateSync(z!)).equals(Buffer.from(data))).toBe(true);
}

describe('Huffman-only zlib streams', () => {
  it('read back through zlib for empty, one-value, uniform, skewed and odd-length inputs', () => {
    roundTrips(new Uint8Array(0));
    roundTrips(new Uint8Array(1).fill(7));
    roundTrips(new Uint8Array(100_001).fill(0));
    const rnd = random(1);
    roundTrips(Uint8Array.from({ length: 70_000 }, () => Math.floor(rnd() * 256)));
    // residuals of a filtered image: most near 0, a long tail
    roundTrips(Uint8Array.from({ length: 197_377 }, () => Math.round(Math.log(rnd() + 1e-12) * 6 * (rnd() < 0.5 ? 1 : -1)) & 255));
    // a view at an odd offset of a larger buffer
    const big = Uint8Array.from({ length: 5001 }, (_, i) => (i * 7) & 255);
    roundTrips(big.subarray(1, 4000));
  });

  it('declines data it would code in fewer bits a byte than asked (smooth data is for string matching)', () => {
    const smooth = new Uint8Array(10_000).fill(3);
    expect(huffmanZlib(smooth, 2.5)).toBeNull();
    const rnd = random(2);
    const noisy = Uint8Array.from({ length: 10_000 }, () => Math.floor(rnd() * 256));
    expect(huffmanZlib(noisy, 2.5)).not.toBeNull();
  });

  it('limits code lengths and keeps the code complete when counts are Fibonacci-skewed', () => {
    // Fibonacci counts make an unbounded Huffman code as deep as the symbol count
    const counts = new Uint32Array(257);
    let a = 1;
    let b = 1;
    for (let s = 0; s < 30; s++) {
      counts[s] = a;
      [a, b] = [b, a + b];
    }
    counts[200] = 1;
    const lengths = new Uint8Array(257);
    huffmanLengths(counts, 257, 12, lengths);
    let kraft = 0;
    for (let s = 0; s < 257; s++) {
      if (counts[s] === 0) expect(lengths[s]).toBe(0);
      else {
        expect(lengths[s]).toBeGreaterThan(0);
        expect(lengths[s]).toBeLessThanOrEqual(12);
        kraft += 2 ** -lengths[s];
      }
    }
    expect(kraft).toBe(1);
    // the most frequent symbol has the shortest code
    expect(lengths[29]).toBe(Math.min(...[...lengths].filter((l) => l > 0)));
    const data: number[] = [];
    for (let s = 0; s < 30; s++) for (let k = 0; k < counts[s] && data.length < 2_000_000; k++) data.push(s);
    roundTrips(Uint8Array.from(data));
  });

  it('matches an optimal code without the limit (lengths of a known Huffman code)', () => {
    // counts 1, 1, 2, 4 give lengths 3, 3, 2, 1
    const counts = Uint32Array.of(1, 1, 2, 4);
    const lengths = new Uint8Array(4);
    huffmanLengths(counts, 4, 15, lengths);
    expect([...lengths]).toEqual([3, 3, 2, 1]);
  });
});
