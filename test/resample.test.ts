import { describe, expect, it } from 'vitest';
import {
  effectiveScale,
  kernelPadding,
  kernelRadius,
  resample,
  type Kernel,
  type SourceWindow,
} from '../src/raster/resample.js';
import { approxSourceCoords, sourceScale, sourceWindow } from '../src/raster/warp.js';
import { rng } from './helpers/random.js';

const KERNELS: Kernel[] = ['nearest', 'bilinear', 'bicubic', 'lanczos'];

function randomWindow(width: number, height: number, bands: number, seed = 1, x0 = 0, y0 = 0): SourceWindow {
  const r = rng(seed);
  const data = new Uint8Array(width * height * bands);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  return { x0, y0, width, height, bands, data, alpha: null };
}

function fnWindow(width: number, height: number, bands: number, f: (x: number, y: number, b: number) => number): SourceWindow {
  const data = new Uint8Array(width * height * bands);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) for (let b = 0; b < bands; b++) data[(y * width + x) * bands + b] = f(x, y, b);
  }
  return { x0: 0, y0: 0, width, height, bands, data, alpha: null };
}

/** coords of target pixel centres through a function of (col + 0.5, row + 0.5) */
function mapCoords(width: number, height: number, f: (x: number, y: number) => [number, number]): Float64Array {
  const c = new Float64Array(2 * width * height);
  for (let r = 0; r < height; r++) {
    for (let q = 0; q < width; q++) {
      const [sx, sy] = f(q + 0.5, r + 0.5);
      c[2 * (r * width + q)] = sx;
      c[2 * (r * width + q) + 1] = sy;
    }
  }
  return c;
}

function pixel(src: SourceWindow, x: number, y: number, b: number): number {
  return src.data[((y - src.y0) * src.width + (x - src.x0)) * src.bands + b];
}

/** the value resample() stores for a real result: rounded half up, clamped */
function byte(v: number): number {
  return Math.min(255, Math.max(0, Math.floor(v + 0.5)));
}

function keys(d: number): number {
  const a = Math.abs(d);
  if (a <= 1) return 1.5 * a ** 3 - 2.5 * a ** 2 + 1;
  if (a < 2) return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2;
  return 0;
}

function lanczos3(d: number): number {
  if (d === 0) return 1;
  if (Math.abs(d) >= 3) return 0;
  const p = Math.PI * d;
  return (3 * Math.sin(p) * Math.sin(p / 3)) / (p * p);
}

/** Independent reference for one target pixel: the separable filter at distance/scale over the taps within the
 * support and inside the source, normalised (no alpha). */
function reference(src: SourceWindow, sx: number, sy: number, f: (d: number) => number, radius: number, s: number, b: number): number {
  let acc = 0;
  let wsum = 0;
  for (let y = 0; y < src.height; y++) {
    const dy = (y + 0.5 - sy) / s;
    if (Math.abs(dy) > radius) continue;
    for (let x = 0; x < src.width; x++) {
      const dx = (x + 0.5 - sx) / s;
      if (Math.abs(dx) > radius) continue;
      const w = f(dx) * f(dy);
      acc += w * pixel(src, x, y, b);
      wsum += w;
    }
  }
  return acc / wsum;
}

describe('kernel parameters', () => {
  it('has gdalwarp radii', () => {
    expect(KERNELS.map(kernelRadius)).toEqual([0, 1, 2, 3]);
    expect(() => kernelRadius('cubicspline' as Kernel)).toThrow(/unknown resampling kernel/);
  });

  it('snaps scales the way GDALWarpKernel does', () => {
    expect(effectiveScale(0.5)).toBe(1); // upsampling never narrows the kernel
    expect(effectiveScale(Number.NaN)).toBe(1);
    expect(effectiveScale(1.04)).toBe(1);
    expect(effectiveScale(1.97)).toBe(2);
    expect(effectiveScale(2.3)).toBe(2.3);
    expect(effectiveScale(1000)).toBe(16);
    expect(kernelPadding('bicubic', 1.5, 2.3)).toBeCloseTo(4.6, 12);
    expect(kernelPadding('nearest', 3, 3)).toBe(0);
  });
});

describe('resample: exact mappings', () => {
  const src = randomWindow(23, 17, 3, 7, 100, 50);

  it.each(KERNELS)('identity reproduces the source exactly (%s)', (kernel) => {
    const coords = mapCoords(src.width, src.height, (x, y) => [x + src.x0, y + src.y0]);
    const t = resample(src, coords, src.width, src.height, kernel);
    expect(t.bands).toBe(3);
    expect(Array.from(t.data)).toEqual(Array.from(src.data));
    expect(t.alpha.every((a) => a === 255)).toBe(true);
  });

  it.each(KERNELS)('integer translation reproduces the source exactly (%s)', (kernel) => {
    // target pixel (q, r) looks at source pixel (q + 3, r - 2): valid where that is inside the window
    const W = 20, H = 20;
    const coords = mapCoords(W, H, (x, y) => [x + src.x0 + 3, y + src.y0 - 2]);
    const t = resample(src, coords, W, H, kernel);
    for (let r = 0; r < H; r++) {
      for (let q = 0; q < W; q++) {
        const x = q + 3, y = r - 2;
        const inside = x < src.width && y >= 0 && y < src.height;
        expect(t.alpha[r * W + q]).toBe(inside ? 255 : 0);
        for (let b = 0; b < 3; b++) {
          expect(t.data[(r * W + q) * 3 + b]).toBe(inside ? pixel(src, x + src.x0, y + src.y0, b) : 0);
        }
      }
    }
  });

  it.each([1, 2, 4])('handles %i interleaved band(s)', (bands) => {
    const s = randomWindow(9, 8, bands, 3);
    for (const kernel of KERNELS) {
      const coords = mapCoords(9, 8, (x, y) => [x, y]);
      expect(Array.from(resample(s, coords, 9, 8, kernel).data)).toEqual(Array.from(s.data));
    }
  });
});

describe('resample: kernel weights', () => {
  it('half-pixel shifts give the 2x2 and 1-D averages expected', () => {
    const src = randomWindow(12, 10, 1, 11);
    const W = 11, H = 9;
    const diag = mapCoords(W, H, (x, y) => [x + 0.5, y + 0.5]);
    const t = resample(src, diag, W, H, 'bilinear');
    for (let r = 0; r < H; r++) {
      for (let q = 0; q < W; q++) {
        const mean =
          (pixel(src, q, r, 0) + pixel(src, q + 1, r, 0) + pixel(src, q, r + 1, 0) + pixel(src, q + 1, r + 1, 0)) / 4;
        expect(t.data[r * W + q]).toBe(byte(mean));
      }
    }
    // cubic, half a pixel along x only: (-1, 9, 9, -1) / 16 on the interior
    const along = mapCoords(W, H, (x, y) => [x + 0.5, y]);
    const c = resample(src, along, W, H, 'bicubic');
    for (let r = 0; r < H; r++) {
      for (let q = 1; q + 2 < src.width - 1; q++) {
        const v =
          (-pixel(src, q - 1, r, 0) + 9 * pixel(src, q, r, 0) + 9 * pixel(src, q + 1, r, 0) - pixel(src, q + 2, r, 0)) / 16;
        if (r >= 1 && r + 2 < src.height) expect(c.data[r * W + q]).toBe(byte(v));
      }
    }
  });

  it.each(KERNELS)('weights sum to 1: a constant stays constant at any offset and scale (%s)', (kernel) => {
    const src = fnWindow(40, 40, 3, (_x, _y, b) => 37 + 90 * b);
    for (const s of [1, 1.3, 2, 3.7]) {
      const W = Math.floor(36 / s);
      const coords = mapCoords(W, W, (x, y) => [0.37 + x * s + 0.05 * y, 1.21 + y * s - 0.03 * x]);
      const t = resample(src, coords, W, W, kernel, s, s);
      for (let p = 0; p < W * W; p++) {
        if (t.alpha[p] === 0) continue;
        expect([t.data[3 * p], t.data[3 * p + 1], t.data[3 * p + 2]]).toEqual([37, 127, 217]);
      }
    }
  });

  it('bilinear and bicubic reproduce linear ramps exactly, lanczos within a grey level', () => {
    // v = 4 + 3 x + y at pixel (x, y), i.e. at source coordinate (sx - 0.5, sy - 0.5)
    const src = fnWindow(60, 50, 1, (x, y) => 4 + 3 * x + y);
    const W = 40, H = 30;
    const coords = mapCoords(W, H, (x, y) => [8.31 + x * 1.07 + 0.11 * y, 7.77 + y * 0.93 - 0.07 * x]);
    const tol: Record<string, number> = { bilinear: 0.5, bicubic: 0.5, lanczos: 1 };
    for (const kernel of ['bilinear', 'bicubic', 'lanczos'] as Kernel[]) {
      const t = resample(src, coords, W, H, kernel);
      for (let p = 0; p < W * H; p++) {
        const expected = 4 + 3 * (coords[2 * p] - 0.5) + (coords[2 * p + 1] - 0.5);
        expect(Math.abs(t.data[p] - expected)).toBeLessThanOrEqual(tol[kernel] + 1e-9);
      }
    }
  });

  it('downsampling by 2 with bilinear at scale 2 is the [1 3 3 1]/8 tent average', () => {
    const src = randomWindow(32, 32, 3, 5);
    const W = 16;
    const coords = mapCoords(W, W, (x, y) => [2 * x, 2 * y]);
    const t = resample(src, coords, W, W, 'bilinear', 2, 2);
    const tent = [1, 3, 3, 1];
    for (let r = 1; r < W - 1; r++) {
      for (let q = 1; q < W - 1; q++) {
        for (let b = 0; b < 3; b++) {
          let v = 0;
          for (let j = 0; j < 4; j++) {
            for (let i = 0; i < 4; i++) v += tent[i] * tent[j] * pixel(src, 2 * q - 1 + i, 2 * r - 1 + j, b);
          }
          expect(t.data[(r * W + q) * 3 + b]).toBe(byte(v / 64));
        }
      }
    }
    // the plain 2x2 kernel would be the box average of the 4 pixels under the target pixel instead
    const narrow = resample(src, coords, W, W, 'bilinear', 1, 1);
    expect(Array.from(narrow.data)).not.toEqual(Array.from(t.data));
  });

  it('widened cubic and lanczos match a direct evaluation of the filter at distance / scale', () => {
    const src = randomWindow(48, 48, 1, 9);
    for (const [kernel, f, radius] of [
      ['bicubic', keys, 2],
      ['lanczos', lanczos3, 3],
      ['bilinear', (d: number) => Math.max(0, 1 - Math.abs(d)), 1],
    ] as [Kernel, (d: number) => number, number][]) {
      for (const s of [1.5, 2.6]) {
        const W = 8;
        const coords = mapCoords(W, W, (x, y) => [14.2 + x * s * 0.9, 13.7 + y * s]);
        const t = resample(src, coords, W, W, kernel, s, s);
        for (let p = 0; p < W * W; p++) {
          const v = reference(src, coords[2 * p], coords[2 * p + 1], f, radius, s, 0);
          // the Lanczos table interpolates to < 1e-6: only a rounding tie could differ
          expect(Math.abs(t.data[p] - byte(v))).toBeLessThanOrEqual(kernel === 'lanczos' && Math.abs((v % 1) - 0.5) < 1e-4 ? 1 : 0);
        }
      }
    }
  });

  it('rounds and clamps the overshoot of cubic and lanczos on a step', () => {
    const src = fnWindow(20, 4, 1, (x) => (x < 10 ? 0 : 255));
    for (const kernel of ['bicubic', 'lanczos'] as Kernel[]) {
      const coords = mapCoords(19, 4, (x, y) => [x + 0.5, y]);
      const t = resample(src, coords, 19, 4, kernel);
      const row = Array.from(t.data.subarray(19, 38));
      // no wrap-around: left of the step stays dark, right of it stays bright
      expect(row.slice(0, 8).every((v) => v <= 10)).toBe(true);
      expect(row.slice(11).every((v) => v >= 245)).toBe(true);
      expect(row[8]).toBe(0); // -0.0625*255 clamped
      expect(row[10]).toBe(255);
    }
  });
});

describe('resample: nodata, alpha and edges', () => {
  function withAlpha(src: SourceWindow, f: (x: number, y: number) => number): SourceWindow {
    const alpha = new Uint8Array(src.width * src.height);
    for (let y = 0; y < src.height; y++) for (let x = 0; x < src.width; x++) alpha[y * src.width + x] = f(x, y);
    return { ...src, alpha };
  }

  it.each(KERNELS)('a valid pixel next to nodata stays valid and exact; nodata stays nodata (%s)', (kernel) => {
    const src = withAlpha(randomWindow(16, 12, 3, 21), (x, y) => (x === 7 || (x > 11 && y > 6) ? 0 : 255));
    const coords = mapCoords(16, 12, (x, y) => [x, y]);
    const t = resample(src, coords, 16, 12, kernel);
    for (let p = 0; p < 16 * 12; p++) {
      expect(t.alpha[p]).toBe(src.alpha![p]);
      if (src.alpha![p] === 0) {
        expect(Array.from(t.data.subarray(3 * p, 3 * p + 3))).toEqual([0, 0, 0]);
      } else {
        expect(Array.from(t.data.subarray(3 * p, 3 * p + 3))).toEqual(Array.from(src.data.subarray(3 * p, 3 * p + 3)));
      }
    }
  });

  it.each(KERNELS)('colours never bleed from nodata, at any offset and scale (%s)', (kernel) => {
    // nodata pixels hold white garbage; the valid ones are all 50
    const base = fnWindow(30, 30, 3, () => 50);
    const src = withAlpha(base, (x, y) => ((x * 7 + y * 3) % 5 === 0 || (x > 20 && y < 9) ? 0 : 255));
    for (let p = 0; p < 900; p++) if (src.alpha![p] === 0) src.data.fill(255, 3 * p, 3 * p + 3);
    for (const s of [1, 1.7, 2]) {
      const W = Math.floor(28 / s);
      const coords = mapCoords(W, W, (x, y) => [0.3 + x * s, 0.6 + y * s]);
      const t = resample(src, coords, W, W, kernel, s, s);
      let valid = 0;
      for (let p = 0; p < W * W; p++) {
        if (t.alpha[p] === 0) continue;
        valid++;
        expect(Array.from(t.data.subarray(3 * p, 3 * p + 3))).toEqual([50, 50, 50]);
      }
      expect(valid).toBeGreaterThan((W * W) / 3);
    }
  });

  it.each(KERNELS)('a target pixel whose centre falls on nodata stays nodata (%s)', (kernel) => {
    // a 6x6 hole: every target centre inside it is nodata, whatever the valid pixels around
    const src = withAlpha(randomWindow(20, 20, 1, 4), (x, y) => (x >= 7 && x < 13 && y >= 7 && y < 13 ? 0 : 255));
    const coords = mapCoords(19, 19, (x, y) => [x + 0.4, y + 0.4]);
    const t = resample(src, coords, 19, 19, kernel);
    for (let r = 0; r < 19; r++) {
      for (let q = 0; q < 19; q++) {
        const x = Math.floor(q + 0.9), y = Math.floor(r + 0.9);
        const inHole = x >= 7 && x < 13 && y >= 7 && y < 13;
        if (inHole) expect(t.alpha[r * 19 + q]).toBe(0);
        else if (kernel !== 'lanczos') expect(t.alpha[r * 19 + q]).toBe(255);
      }
    }
  });

  it('lanczos gives no data where fewer than half its taps are valid (gdalwarp)', () => {
    const src = withAlpha(fnWindow(20, 20, 1, () => 100), (x, y) => (x === 10 && y === 10 ? 255 : 0));
    const coords = mapCoords(20, 20, (x, y) => [x, y]);
    expect(resample(src, coords, 20, 20, 'nearest').alpha[210]).toBe(255);
    expect(resample(src, coords, 20, 20, 'bilinear').alpha[210]).toBe(255);
    expect(resample(src, coords, 20, 20, 'lanczos').alpha[210]).toBe(0);
  });

  it('takes the alpha of the pixel under the centre and weights colours by alpha', () => {
    // two columns: colour 200 opaque, colour 0 at alpha 51 (0.2)
    const src = withAlpha(fnWindow(2, 1, 1, (x) => (x === 0 ? 200 : 0)), (x) => (x === 0 ? 255 : 51));
    const coords = new Float64Array([1.0, 0.5, 0.999, 0.5, 1.5, 0.5]);
    const t = resample(src, coords, 3, 1, 'bilinear');
    // at x = 1.0 (the boundary) the centre pixel is column 1: alpha 51; colour (0.5*200) / (0.5 + 0.5*0.2)
    expect(t.alpha[0]).toBe(51);
    expect(t.data[0]).toBe(byte(100 / 0.6));
    expect(t.alpha[1]).toBe(255);
    expect(t.alpha[2]).toBe(51);
    expect(t.data[2]).toBe(0);
  });

  it.each(KERNELS)('is valid up to the raster edge without extrapolating, and empty past it (%s)', (kernel) => {
    const src = fnWindow(10, 10, 1, () => 77);
    // GDAL's test: 0 <= x and x + 1e-10 <= size
    const edge = 9.9999999;
    const coords = new Float64Array([0, 0, 0.01, 5, 9.99, 9.99, edge, edge, 10, 5, -0.01, 5, Number.NaN, 5, 5, Infinity]);
    const t = resample(src, coords, 8, 1, kernel, 1.5, 1.5);
    expect(Array.from(t.alpha)).toEqual([255, 255, 255, 255, 0, 0, 0, 0]);
    expect(Array.from(t.data)).toEqual([77, 77, 77, 77, 0, 0, 0, 0]);
  });

  it('treats an all-opaque alpha exactly like no alpha', () => {
    const src = randomWindow(30, 30, 3, 8);
    const opaque = { ...src, alpha: new Uint8Array(900).fill(255) };
    const coords = mapCoords(20, 20, (x, y) => [3.3 + x * 1.2 + 0.1 * y, 2.1 + y * 1.1]);
    for (const kernel of KERNELS) {
      expect(Array.from(resample(opaque, coords, 20, 20, kernel, 1.2, 1.1).data)).toEqual(
        Array.from(resample(src, coords, 20, 20, kernel, 1.2, 1.1).data),
      );
    }
  });

  it.each(KERNELS)('gives the same pixels from the padded window as from the whole source: no seams (%s)', (kernel) => {
    const full = randomWindow(120, 100, 3, 13);
    const W = 32, H = 32;
    // a curved mapping downsampling by ~1.4 into the middle of the source
    const exact = (xy: Float64Array) => {
      for (let i = 0; i < xy.length; i += 2) {
        const x = xy[i], y = xy[i + 1];
        xy[i] = 30.2 + 1.4 * x + 0.004 * y * y;
        xy[i + 1] = 25.9 + 1.35 * y + 0.003 * x * y;
      }
    };
    const coords = approxSourceCoords(exact, W, H);
    const { scaleX, scaleY } = sourceScale(coords, W, H);
    const win = sourceWindow(coords, full.width, full.height, kernelPadding(kernel, scaleX, scaleY))!;
    const ww = win.x1 - win.x0, wh = win.y1 - win.y0;
    const data = new Uint8Array(ww * wh * 3);
    for (let y = 0; y < wh; y++) {
      const from = ((y + win.y0) * full.width + win.x0) * 3;
      data.set(full.data.subarray(from, from + ww * 3), y * ww * 3);
    }
    const part: SourceWindow = { x0: win.x0, y0: win.y0, width: ww, height: wh, bands: 3, data, alpha: null };
    const a = resample(full, coords, W, H, kernel, scaleX, scaleY);
    const b = resample(part, coords, W, H, kernel, scaleX, scaleY);
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    expect(Array.from(b.alpha)).toEqual(Array.from(a.alpha));
  });

  it('rejects inconsistent inputs', () => {
    const src = randomWindow(4, 4, 3);
    expect(() => resample({ ...src, bands: 5 }, new Float64Array(32), 4, 4, 'nearest')).toThrow(/band count/);
    expect(() => resample(src, new Float64Array(10), 4, 4, 'nearest')).toThrow(/coords/);
    const empty = resample({ ...src, width: 0, height: 0, data: new Uint8Array(0) }, new Float64Array(8), 2, 2, 'bilinear');
    expect(Array.from(empty.alpha)).toEqual([0, 0, 0, 0]);
  });
});

describe('resample: fast paths against a direct implementation of the rules', () => {
  /** One target pixel tap by tap from the rules in resample()'s doc comment, without any fast path: the rounded
   * band values and alpha, or null for no data. */
  function direct(
    src: SourceWindow,
    kernel: Kernel,
    scaleX: number,
    scaleY: number,
    X: number,
    Y: number,
  ): { v: number[]; a: number } | null {
    const { width: w, height: h, bands, data, alpha } = src;
    const lx = X - src.x0;
    const ly = Y - src.y0;
    if (!(lx >= 0 && ly >= 0 && lx + 1e-10 <= w && ly + 1e-10 <= h)) return null;
    const ix = Math.min(Math.floor(lx + 1e-10), w - 1);
    const iy = Math.min(Math.floor(ly + 1e-10), h - 1);
    const alphaAt = (x: number, y: number) => (alpha === null ? 255 : alpha[y * w + x]);
    const a = alphaAt(ix, iy);
    if (a === 0) return null;
    const at = (x: number, y: number, b: number) => data[(y * w + x) * bands + b];
    const inside = (x: number, y: number) => x >= 0 && y >= 0 && x < w && y < h;
    const tx = lx - 0.5;
    const ty = ly - 0.5;
    // sum over taps of weight(x, y) * alpha / 255, normalised; null below minWeight
    const weighted = (taps: [number, number, number][], minWeight: number): number[] | null => {
      const acc = new Array<number>(bands).fill(0);
      let wsum = 0;
      for (const [x, y, wt] of taps) {
        const wa = (wt * alphaAt(x, y)) / 255;
        wsum += wa;
        for (let b = 0; b < bands; b++) acc[b] += wa * at(x, y, b);
      }
      return wsum < minWeight ? null : acc.map((v) => byte(v / wsum));
    };
    const bilinear4 = (): number[] | null => {
      const x0 = Math.floor(tx), y0 = Math.floor(ty);
      const taps: [number, number, number][] = [];
      for (let y = y0; y <= y0 + 1; y++) {
        for (let x = x0; x <= x0 + 1; x++) {
          if (inside(x, y)) taps.push([x, y, (1 - Math.abs(x - tx)) * (1 - Math.abs(y - ty))]);
        }
      }
      return weighted(taps, 1e-5);
    };
    const sx = effectiveScale(scaleX);
    const sy = effectiveScale(scaleY);
    const fourSample = sx <= 1 / 0.95 && sy <= 1 / 0.95;
    let v: number[] | null;
    if (kernel === 'nearest') {
      v = Array.from({ length: bands }, (_, b) => at(ix, iy, b));
    } else if (kernel === 'bilinear' && fourSample) {
      v = bilinear4();
    } else if (kernel === 'bicubic' && fourSample) {
      // all 16 taps inside and not transparent, else bilinear
      const x0 = Math.floor(tx), y0 = Math.floor(ty);
      const taps: [number, number, number][] = [];
      let complete = true;
      for (let y = y0 - 1; y <= y0 + 2; y++) {
        for (let x = x0 - 1; x <= x0 + 2; x++) {
          if (!inside(x, y) || alphaAt(x, y) === 0) complete = false;
          else taps.push([x, y, keys(x - tx) * keys(y - ty)]);
        }
      }
      v = complete ? (weighted(taps, 1e-6) ?? bilinear4()) : bilinear4();
    } else {
      const r = kernelRadius(kernel);
      const tent = (d: number) => Math.max(0, 1 - Math.abs(d));
      const f = kernel === 'lanczos' ? lanczos3 : kernel === 'bicubic' ? keys : tent;
      const taps: [number, number, number][] = [];
      let count = 0, valid = 0;
      for (let y = Math.max(0, Math.ceil(ty - r * sy)); y <= Math.min(h - 1, Math.floor(ty + r * sy)); y++) {
        for (let x = Math.max(0, Math.ceil(tx - r * sx)); x <= Math.min(w - 1, Math.floor(tx + r * sx)); x++) {
          count++;
          if (alphaAt(x, y) > 0) valid++;
          taps.push([x, y, f((x - tx) / sx) * f((y - ty) / sy)]);
        }
      }
      // Lanczos: no data with fewer than half of its taps valid
      v = kernel === 'lanczos' && valid < count >> 1 ? null : weighted(taps, 1e-6);
    }
    return v === null ? null : { v, a };
  }

  function withRandomAlpha(src: SourceWindow, seed: number): SourceWindow {
    const r = rng(seed);
    const alpha = new Uint8Array(src.width * src.height);
    for (let y = 0; y < src.height; y++) {
      for (let x = 0; x < src.width; x++) {
        const hole = (x - 20) ** 2 + (y - 25) ** 2 < 40 || r() < 0.01;
        const partial = x > 45 && y < 15;
        alpha[y * src.width + x] = hole ? 0 : partial ? 1 + Math.floor(r() * 254) : 255;
      }
    }
    return { ...src, alpha };
  }

  const cases: [Kernel, number][] = [];
  for (const kernel of KERNELS) for (const s of [1, 1.03, 1.09, 1.36, 1.5, 2, 2.6]) cases.push([kernel, s]);

  it.each(cases)('%s at scale %s: within a grey level of the direct rules, same alpha', (kernel, s) => {
    let compared = 0, differing = 0;
    const failures: string[] = [];
    // rotated by ~4 degrees and scaled, reaching a few pixels past the 64 x 56 windows on every side
    const rot = (4 * Math.PI) / 180;
    const W = Math.ceil(70 / s), H = Math.ceil(62 / s);
    const coords = mapCoords(W, H, (x, y) => [
      997.13 + s * (Math.cos(rot) * x - Math.sin(rot) * y) + 2,
      1997.41 + s * (Math.sin(rot) * x + Math.cos(rot) * y),
    ]);
    const kinds = [
      [3, 'none'],
      [3, 'random'],
      [3, 'opaque'],
      [3, 'frame'],
      [3, 'tight'],
      [1, 'random'],
      [4, 'none'],
    ] as const;
    for (const [bands, alphaKind] of kinds) {
      let src: SourceWindow;
      if (alphaKind === 'frame' || alphaKind === 'tight') {
        // 'frame': nodata beyond the pixels that the tile's taps reach, an alpha that only the window has, which
        // resample() drops; 'tight': nodata from one pixel past the coordinates, within reach of the taps
        src = randomWindow(144, 120, bands, 100 + bands, 960, 1960);
        let [x0, y0, x1, y1] = [984, 1984, 1084, 2076];
        if (alphaKind === 'tight') {
          const xs = coords.filter((_, i) => i % 2 === 0), ys = coords.filter((_, i) => i % 2 === 1);
          [x0, y0] = [Math.floor(Math.min(...xs)) - 1, Math.floor(Math.min(...ys)) - 1];
          [x1, y1] = [Math.floor(Math.max(...xs)) + 2, Math.floor(Math.max(...ys)) + 2];
        }
        const alpha = new Uint8Array(144 * 120);
        for (let y = y0; y < y1; y++) alpha.fill(255, (y - 1960) * 144 + x0 - 960, (y - 1960) * 144 + x1 - 960);
        src = { ...src, alpha };
      } else {
        const plain = randomWindow(64, 56, bands, 100 + bands, 1000, 2000);
        src =
          alphaKind === 'none'
            ? plain
            : alphaKind === 'opaque'
              ? { ...plain, alpha: new Uint8Array(64 * 56).fill(255) }
              : withRandomAlpha(plain, 7 + bands);
      }
      const t = resample(src, coords, W, H, kernel, s, s);
      for (let p = 0; p < W * H; p++) {
        const want = direct(src, kernel, s, s, coords[2 * p], coords[2 * p + 1]);
        const got = Array.from(t.data.subarray(p * bands, (p + 1) * bands));
        const where = `${bands} bands, alpha ${alphaKind}, pixel ${p % W},${Math.floor(p / W)}`;
        const wantAlpha = want === null ? 0 : want.a;
        if (t.alpha[p] !== wantAlpha) failures.push(`${where}: alpha ${t.alpha[p]}, want ${wantAlpha}`);
        if (want === null) {
          if (got.some((v) => v !== 0)) failures.push(`${where}: no data but ${got}`);
          continue;
        }
        for (let b = 0; b < bands; b++) {
          const d = Math.abs(got[b] - want.v[b]);
          if (d > 1) failures.push(`${where}: ${got}, want ${want.v}`);
          compared++;
          if (d !== 0) differing++;
        }
      }
    }
    expect(failures.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(5000);
    // only rounding ties may differ (float sums in another order, the Lanczos table)
    expect(differing / compared).toBeLessThan(0.002);
  });
});
