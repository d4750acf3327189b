// PMTiles tile ids: the Hilbert curve numbering of z/x/y tiles, cumulative over levels (spec "Entries").

import { TuileError } from '../../errors.js';

// Tile ids are JS numbers: the last id of z26 is below 2^53 and the first of z27 is not.
export const MAX_ZOOM = 26;

/** Number of tiles in all levels above z: (4^z - 1) / 3, the first Hilbert tile id of level z. */
function levelStart(z: number): number {
  return (4 ** z - 1) / 3;
}

function isIndex(v: number, size: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < size;
}

export function validTile(z: number, x: number, y: number): boolean {
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
