// Renders regions of the target grid (Web Mercator) from delivery files: CRS transform, source window
// planning, approximate transformer and resampling, then mosaicking of several files.

import { TuileError } from '../errors.js';
import { transformer, WEB_MERCATOR, type Transformer } from '../geo/crs.js';
import type { GeoTransform } from './georef.js';
import { invertGeoTransform, type GeoTiffSource } from './geotiff.js';
import { kernelRadius, resample, type Kernel, type SourceWindow } from './resample.js';
import { compositeOver, isBlank, toBands, type RawTile } from './tile.js';
import { approxSourceCoords, sourceScale } from './warp.js';

/** A north-up grid of target pixels: top-left corner, pixel size, size in pixels. */
export interface TargetGrid {
  minX: number;
  maxY: number;
  res: number;
  width: number;
  height: number;
}

interface Window {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

const PLAN_STEPS = 32; // coarse sampling of a region when planning its source window

/** Free coordinate buffers of warp(). */
const coordsFree: Float64Array[] = [];

/**
 * Largest error of the approximate transformer, in source pixels: gdalwarp's default 1/8 for the
 * interpolating kernels, whose output moves smoothly with it; far less for nearest, where an error of e
 * flips the chosen pixel for about 2e of the pixels (1/8 would change ~5 % of them against an exact warp).
 */
function maxError(kernel: Kernel): number {
  return kernel === 'nearest' ? 0.01 : 0.125;
}

/** Bounding box of source positions, NaN and infinite ones left out. */
class Extent {
  x0 = Infinity;
  y0 = Infinity;
  x1 = -Infinity;
  y1 = -Infinity;

  add(x: number, y: number): void {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    if (x < this.x0) this.x0 = x;
    if (x > this.x1) this.x1 = x;
    if (y < this.y0) this.y0 = y;
    if (y > this.y1) this.y1 = y;
  }

  /** Whole source pixels covering the box plus `pad`, clamped to the source; null when that is empty. */
  window(pad: number, srcW: number, srcH: number): Window | null {
    const w = {
      x0: Math.max(0, Math.floor(this.x0) - pad),
      y0: Math.max(0, Math.floor(this.y0) - pad),
      x1: Math.min(srcW, Math.ceil(this.x1) + pad),
      y1: Math.min(srcH, Math.ceil(this.y1) + pad),
    };
    return w.x0 < w.x1 && w.y0 < w.y1 ? w : null;
  }
}

/**
 * The source window under a grid from the coordinates of its outline only: for a continuous mapping the
 * outline's bounding box holds the whole grid's, at 1/64 of the cost of scanning every pixel.
 */
function perimeterWindow(coords: Float64Array, w: number, h: number, srcW: number, srcH: number, pad: number): Window | null {
  const e = new Extent();
  for (let c = 0; c < w; c++) {
    e.add(coords[2 * c], coords[2 * c + 1]);
    const b = (h - 1) * w + c;
    e.add(coords[2 * b], coords[2 * b + 1]);
  }
  for (let r = 1; r < h - 1; r++) {
    e.add(coords[2 * r * w], coords[2 * r * w + 1]);
    const b = r * w + w - 1;
    e.add(coords[2 * b], coords[2 * b + 1]);
  }
  return e.window(pad, srcW, srcH);
}

export class SourceRenderer {
  private readonly toSrc: Transformer;
  private readonly inv: GeoTransform;
  private loaded: SourceWindow | null = null;
  private spare: Uint8Array | null = null;

  constructor(readonly source: GeoTiffSource) {
    this.toSrc = transformer(WEB_MERCATOR, source.info.crs);
    this.inv = invertGeoTransform(source.info.geoTransform);
  }

  /** Transforms target pixel positions (pairs, in place) of `grid` to source pixel positions. */
  private exact(grid: TargetGrid): (xy: Float64Array) => void {
    const inv = this.inv;
    return (xy: Float64Array) => {
      for (let i = 0; i < xy.length; i += 2) {
        xy[i] = grid.minX + xy[i] * grid.res;
        xy[i + 1] = grid.maxY - xy[i + 1] * grid.res;
      }
      this.toSrc.forwardArray(xy);
      for (let i = 0; i < xy.length; i += 2) {
        const X = xy[i];
        const Y = xy[i + 1];
        xy[i] = inv[0] + X * inv[1] + Y * inv[2];
        xy[i + 1] = inv[3] + X * inv[4] + Y * inv[5];
      }
    };
  }

  /** The source window a grid needs with the kernel's padding, or null when it misses the source. */
  planWindow(grid: TargetGrid, kernel: Kernel): Window | null {
    const n = PLAN_STEPS + 1;
    const xy = new Float64Array(n * n * 2);
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        xy[(j * n + i) * 2] = (i / PLAN_STEPS) * grid.width;
        xy[(j * n + i) * 2 + 1] = (j / PLAN_STEPS) * grid.height;
      }
    }
    this.exact(grid)(xy);
    const { scaleX, scaleY } = sourceScale(xy, n, n);
    // sourceScale measures source pixels per sample step; a step is grid.width / PLAN_STEPS pixels
    const perPixel = Math.max(scaleX / (grid.width / PLAN_STEPS), scaleY / (grid.height / PLAN_STEPS), 1);
    const pad = Math.ceil((kernelRadius(kernel) + 1) * perPixel) + 2 + Math.ceil(perPixel * 2);
    // Bound every finite sample, inside the source or not: with a source smaller than the sample step
    // no sample may fall inside it although the region covers it.
    const e = new Extent();
    for (let i = 0; i < xy.length; i += 2) e.add(xy[i], xy[i + 1]);
    return e.window(pad, this.source.info.width, this.source.info.height);
  }

  /** Reads (and keeps) the source pixels of a window, replacing any window loaded before. */
  async load(w: Window): Promise<void> {
    const spare = this.spare ?? this.loaded?.data;
    this.loaded = null;
    this.spare = null;
    // the whole buffer the previous window's pixels were a view of
    const scratch = spare?.byteOffset === 0 ? new Uint8Array(spare.buffer) : undefined;
    this.loaded = await this.source.readWindow(w.x0, w.y0, w.x1, w.y1, scratch);
  }

  /** Drops the loaded window; its buffer is kept for the next load (a build job's window is ~15 MB: reusing it
   * spares the allocation, its page faults and a second one alive until the collector runs). */
  unload(): void {
    if (this.loaded) this.spare = this.loaded.data;
    this.loaded = null;
  }

  /** Warps one grid from the loaded window (reading a window of its own if the loaded one falls short). */
  async warp(grid: TargetGrid, kernel: Kernel): Promise<RawTile | null> {
    // coordinates live only until resample() has run: their 1 MB per tile comes from a small free list
    // (renders of one worker may interleave at the awaits, so not one shared buffer)
    const n = 2 * grid.width * grid.height;
    let scratch = coordsFree.pop();
    if (!scratch || scratch.length < n) scratch = new Float64Array(n);
    try {
      return await this.warpWith(grid, kernel, scratch);
    } finally {
      if (coordsFree.length < 4) coordsFree.push(scratch);
    }
  }

  private async warpWith(grid: TargetGrid, kernel: Kernel, scratch: Float64Array): Promise<RawTile | null> {
    const n = 2 * grid.width * grid.height;
    const coords = approxSourceCoords(this.exact(grid), grid.width, grid.height, maxError(kernel), scratch.subarray(0, n));
    let { scaleX, scaleY } = sourceScale(coords, grid.width, grid.height);
    scaleX = Math.max(1, scaleX);
    scaleY = Math.max(1, scaleY);
    const pad = Math.ceil(kernelRadius(kernel) * Math.max(scaleX, scaleY)) + 1;
    const need = perimeterWindow(coords, grid.width, grid.height, this.source.info.width, this.source.info.height, pad);
    if (!need) return null;
    let win = this.loaded;
    if (!win || need.x0 < win.x0 || need.y0 < win.y0 || need.x1 > win.x0 + win.width || need.y1 > win.y0 + win.height) {
      win = await this.source.readWindow(need.x0, need.y0, need.x1, need.y1);
    }
    const t = resample(win, coords, grid.width, grid.height, kernel, scaleX, scaleY);
    return isBlank(t) ? null : t;
  }
}

/** Mosaics several delivery files: later files are drawn over earlier ones where they have data. */
export class MosaicRenderer {
  private readonly renderers: SourceRenderer[];
  readonly bands: number;

  constructor(sources: GeoTiffSource[]) {
    if (sources.length === 0) throw new TuileError('InvalidParameter', 'no input file');
    this.renderers = sources.map((s) => new SourceRenderer(s));
    this.bands = Math.max(...sources.map((s) => s.info.bands));
  }

  /** Loads, for each file, the window a whole region (a build job) needs, so its tiles decode the source once. */
  async loadRegion(grid: TargetGrid, kernel: Kernel): Promise<boolean> {
    let any = false;
    for (const r of this.renderers) {
      const w = r.planWindow(grid, kernel);
      if (w) {
        await r.load(w);
        any = true;
      } else {
        r.unload();
      }
    }
    return any;
  }

  unload(): void {
    for (const r of this.renderers) r.unload();
  }

  async render(grid: TargetGrid, kernel: Kernel): Promise<RawTile | null> {
    let out: RawTile | null = null;
    for (const r of this.renderers) {
      const t = await r.warp(grid, kernel);
      if (t) out = compositeOver(out, toBands(t, this.bands));
    }
    return out;
  }
}
