// Per-thread free lists of pixel buffers, by length: a build makes ~0.3 MB of tile pixels a tile and 0.8 MB of
// decoded source a block, and fresh buffers cost page faults (expensive in a VM) and collections.

/** Byte order of typed-array reads and writes: the word-wise pixel loops assume little-endian (s390x is not). */
export const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

const spare = new Map<number, Uint8Array[]>();
const MAX_SPARE = 16;

/** A buffer of n bytes of any content: one released before when there is one. */
export function spareBuffer(n: number): Uint8Array {
  return spare.get(n)?.pop() ?? new Uint8Array(n);
}

/** A zeroed buffer of n bytes: one released before when there is one. */
export function zeroedBuffer(n: number): Uint8Array {
  const b = spare.get(n)?.pop();
  return b ? b.fill(0) : new Uint8Array(n);
}

/** Gives a buffer to this thread's next spareBuffer/zeroedBuffer: nothing may use it afterwards. */
export function releaseBuffer(b: Uint8Array): void {
  // only whole buffers: a view may share its buffer with something else
  if (b.byteOffset !== 0 || b.byteLength !== b.buffer.byteLength || !(b.buffer instanceof ArrayBuffer)) return;
  let list = spare.get(b.length);
  if (!list) spare.set(b.length, (list = []));
  if (list.length < MAX_SPARE && !list.includes(b)) list.push(b);
}
