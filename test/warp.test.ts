import proj4 from 'proj4';
import { describe, expect, it } from 'vitest';
import { approxSourceCoords, sourceScale, sourceWindow } from '../src/raster/warp.js';

type Fn = (x: number, y: number) => [number, number];

/** an exact transformer over a point function, counting the points it is asked for and its calls */
function counted(f: Fn): { exact: (xy: Float64Array) => void; points: () => number; calls: () => number } {
  let points = 0;
  let calls = 0;
  return {
    exact: (xy) => {
      calls++;
      points += xy.length / 2;
      for (let i = 0; i < xy.length; i += 2) {
        const [a, b] = f(xy[i], xy[i + 1]);
        xy[i] = a;
        xy[i + 1] = b;
      }
    },
    points: () => points,
    calls: () => calls,
  };
}

function exactGrid(f: Fn, width: number, height: number): Float64Array {
  const c = new Float64Array(2 * width * height);
  for (let r = 0; r < height; r++) {
    for (let q = 0; q < width; q++) {
      const [a, b] = f(q + 0.5, r + 0.5);
      c[2 * (r * width + q)] = a;
      c[2 * (r * width + q) + 1] = b;
    }
  }
  return c;
}

/** largest |dx| + |dy| between finite pairs, and how many pixels disagree on being finite */
function compare(approx: Float64Array, exact: Float64Array): { maxError: number; finiteMismatch: number } {
  let maxError = 0;
  let finiteMismatch = 0;
  for (let i = 0; i < exact.length; i += 2) {
    const e = Number.isFinite(exact[i]) && Number.isFinite(exact[i + 1]);
    const a = Number.isFinite(approx[i]) && Number.isFinite(approx[i + 1]);
    if (e !== a) finiteMismatch++;
    else if (e) maxError = Math.max(maxError, Math.abs(approx[i] - exact[i]) + Math.abs(approx[i + 1] - exact[i + 1]));
  }
  return { maxError, finiteMismatch };
}

// Web Mercator tile pixels to the pixels of a Lambert-93 raster: the warp tuile does for French deliveries
const LAMBERT93 =
  '+proj=lcc +lat_0=46.5 +lon_0=3 +lat_1=49 +lat_2=44 +x_0=700000 +y_0=6600000 +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs';
const HALF = 20037508.342789244;
function tileToLambert(z: number, tx: number, ty: number, srcRes: number): Fn {
  const toL93 = proj4('EPSG:3857', LAMBERT93);
  const res = (2 * HALF) / 256 / 2 ** z;
  const minX = -HALF + tx * 256 * res;
  const maxY = HALF - ty * 256 * res;
  return (x, y) => {
    const [e, n] = toL93.forward([minX + x * res, maxY - y * res]);
    return [e / srcRes, (7200000 - n) / srcRes];
  };
}

describe('approxSourceCoords', () => {
  it('is exact for an affine mapping with a handful of evaluations', () => {
    const f: Fn = (x, y) => [12.5 + 1.3 * x - 0.2 * y, 40 + 0.1 * x + 0.9 * y];
    for (const [w, h] of [[256, 256], [100, 37], [1, 1], [1, 9], [9, 1], [2, 2], [65, 3]]) {
      const t = counted(f);
      const c = approxSourceCoords(t.exact, w, h);
      expect(c.length).toBe(2 * w * h);
      expect(compare(c, exactGrid(f, w, h)).maxError).toBeLessThan(1e-9);
      if (w === 256) {
        expect(t.points()).toBe(81); // a 5x5 grid of nodes and the 56 midpoints that confirm it
        expect(t.calls()).toBe(2); // the transformer is called once per refinement level, not per node
      }
    }
  });

  it('returns an empty array for an empty grid and fills a caller buffer', () => {
    expect(approxSourceCoords(counted((x, y) => [x, y]).exact, 0, 10).length).toBe(0);
    const buf = new Float64Array(2 * 16 * 16);
    const c = approxSourceCoords(counted((x, y) => [2 * x, y]).exact, 16, 16, 0.125, buf);
    expect(c).toBe(buf);
    expect(c[2 * 17]).toBeCloseTo(3, 12);
  });

  it.each([
    // z, tile x, tile y, source metres per pixel (about one source pixel per target pixel)
    [1, 0, 0, 50000],
    [3, 4, 2, 20000],
    [5, 16, 11, 3000],
    [8, 130, 90, 500],
    [12, 2075, 1450, 30],
    [17, 66400, 46400, 1],
  ])('stays within maxError of a real projection, z%i (tile %i,%i)', (z, tx, ty, res) => {
    const f = tileToLambert(z, tx, ty, res);
    const exact = exactGrid(f, 256, 256);
    for (const maxError of [0.125, 0.02]) {
      const t = counted(f);
      const c = approxSourceCoords(t.exact, 256, 256, maxError);
      const cmp = compare(c, exact);
      expect(cmp.finiteMismatch).toBe(0);
      expect(cmp.maxError).toBeLessThanOrEqual(maxError);
      // far fewer exact evaluations than pixels; gdalwarp's row-wise scheme needs at least 3 per row (768)
      expect(t.points()).toBeLessThan(z <= 1 ? 0.6 * 65536 : 0.07 * 65536);
      if (z >= 8 && maxError === 0.125) expect(t.points()).toBeLessThan(768);
    }
  });

  it('finds the edge of a projection domain exactly (orthographic-like, NaN outside a disc)', () => {
    const f: Fn = (x, y) => {
      const u = (x - 300) / 200, v = (y - 128) / 200;
      const rho2 = u * u + v * v;
      if (rho2 > 1) return [Number.NaN, Number.NaN];
      return [500 + 400 * Math.atan2(u, Math.sqrt(1 - rho2)), 300 + 400 * Math.asin(v)];
    };
    const t = counted(f);
    const c = approxSourceCoords(t.exact, 256, 256);
    const cmp = compare(c, exactGrid(f, 256, 256));
    expect(cmp.finiteMismatch).toBe(0);
    expect(cmp.maxError).toBeLessThanOrEqual(0.125);
    expect(t.points()).toBeLessThan(65536);
  });

  it('handles NaN holes, half-planes and infinities that the nodes straddle', () => {
    const cases: Fn[] = [
      (x, y) => ((x - 100) ** 2 + (y - 140) ** 2 < 30 ** 2 ? [Number.NaN, Number.NaN] : [x, y + 0.0005 * x * x]),
      (x, y) => (0.7 * x + 0.3 * y > 120 ? [Number.NaN, Number.NaN] : [1.3 * x + 0.001 * x * y, 0.9 * y]),
      (x, y) => (x > 200 ? [Infinity, 0] : [x, y]),
      (x, y) => (y < 3 ? [5, Number.NaN] : [x, y]),
    ];
    for (const f of cases) {
      const t = counted(f);
      const c = approxSourceCoords(t.exact, 256, 256);
      const cmp = compare(c, exactGrid(f, 256, 256));
      expect(cmp.finiteMismatch).toBe(0);
      expect(cmp.maxError).toBeLessThanOrEqual(0.125);
      // a failing coordinate never leaks as a finite half-pair
      for (let i = 0; i < c.length; i += 2) expect(Number.isNaN(c[i])).toBe(Number.isNaN(c[i + 1]));
    }
    const none = counted(() => [Number.NaN, Number.NaN]);
    expect(approxSourceCoords(none.exact, 40, 30).every((v) => Number.isNaN(v))).toBe(true);
  });
});

describe('sourceScale', () => {
  it('is 1 for identity and the footprint of a pixel along each source axis otherwise', () => {
    const id = exactGrid((x, y) => [x, y], 64, 64);
    expect(sourceScale(id, 64, 64)).toEqual({ scaleX: 1, scaleY: 1 });
    const a = 0.3;
    const rot = exactGrid((x, y) => [2 * (Math.cos(a) * x - Math.sin(a) * y), 2 * (Math.sin(a) * x + Math.cos(a) * y)], 64, 48);
    const s = sourceScale(rot, 64, 48);
    expect(s.scaleX).toBeCloseTo(2 * (Math.cos(a) + Math.sin(a)), 9);
    expect(s.scaleY).toBeCloseTo(2 * (Math.cos(a) + Math.sin(a)), 9);
    const aniso = sourceScale(exactGrid((x, y) => [0.5 * x, 3 * y], 32, 32), 32, 32);
    expect(aniso.scaleX).toBeCloseTo(0.5, 12);
    expect(aniso.scaleY).toBeCloseTo(3, 12);
  });

  it('ignores NaN coords and copes with a single row', () => {
    const c = exactGrid((x, y) => (x < 10 ? [Number.NaN, Number.NaN] : [2 * x, 2 * y]), 64, 64);
    expect(sourceScale(c, 64, 64).scaleX).toBeCloseTo(2, 9);
    expect(sourceScale(exactGrid((x, y) => [1.5 * x, y], 40, 1), 40, 1).scaleX).toBeCloseTo(1.5, 9);
    expect(sourceScale(new Float64Array(8).fill(Number.NaN), 2, 2)).toEqual({ scaleX: 1, scaleY: 1 });
  });
});

describe('sourceWindow', () => {
  it('bounds the coords inside the source with padding, clamped, x1/y1 exclusive', () => {
    const c = new Float64Array([10.2, 20.7, 30.5, 25.0, Number.NaN, 3, -50, 40, 15, 1e9]);
    expect(sourceWindow(c, 100, 100, 0)).toEqual({ x0: 10, y0: 20, x1: 31, y1: 26 });
    expect(sourceWindow(c, 100, 100, 2.5)).toEqual({ x0: 7, y0: 18, x1: 34, y1: 28 });
    // (30.5, 25) falls outside a 32x24 source: only (10.2, 20.7) counts
    expect(sourceWindow(c, 32, 24, 4)).toEqual({ x0: 6, y0: 16, x1: 15, y1: 24 });
    expect(sourceWindow(c, 32, 26, 4)).toEqual({ x0: 6, y0: 16, x1: 32, y1: 26 });
  });

  it('keeps the pixel holding an integer coordinate and the last pixel at the far edge', () => {
    expect(sourceWindow(new Float64Array([5, 5]), 10, 10, 0)).toEqual({ x0: 5, y0: 5, x1: 6, y1: 6 });
    expect(sourceWindow(new Float64Array([9.99999, 0]), 10, 10, 0)).toEqual({ x0: 9, y0: 0, x1: 10, y1: 1 });
  });

  it('is null when no coord falls inside the source', () => {
    expect(sourceWindow(new Float64Array([Number.NaN, Number.NaN, -1, 5, 5, 11]), 10, 10, 3)).toBeNull();
    expect(sourceWindow(new Float64Array(0), 10, 10, 3)).toBeNull();
  });
});
