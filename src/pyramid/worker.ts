// Worker thread of the build pool: renders the subtree of a job tile (bottom tiles from the sources,
// overviews from children) and merges upper-level tiles, returning encoded tiles to the main thread.

import { parentPort } from 'node:worker_threads';
import { PM, tileBounds, type TileLimits } from '../geo/tms.js';
import { GeoTiffSource, type OpenOptions } from '../raster/geotiff.js';
import { MosaicRenderer, type TargetGrid } from '../raster/render.js';
import type { Kernel } from '../raster/resample.js';
import { encodeTile, type EncodeOptions } from '../tiles/codec.js';
import { downsample4, type RawTile } from '../tiles/merge.js';

export interface TileOut {
  z: number;
  x: number;
  y: number;
  data: Uint8Array;
}

export interface SubtreeTask {
  kind: 'subtree';
  sources: string[];
  open: OpenOptions;
  job: { z: number; x: number; y: number };
  bottom: number;
  /** limits by level, indexed by z (only job.z..bottom are read) */
  limits: (TileLimits | null)[];
  kernel: Kernel;
  bands: number;
  encode: EncodeOptions;
}

export interface MergeTask {
  kind: 'merge';
  tile: { z: number; x: number; y: number };
  children: (RawTile | null)[];
  bands: number;
  encode: EncodeOptions;
}

export interface TaskResult {
  tiles: TileOut[];
  /** raw pixels of the task's top tile, for the levels above */
  top: RawTile | null;
}

const TILE = PM.tileSize;

let cachedKey = '';
let cached: Promise<MosaicRenderer> | null = null;

async function mosaicFor(paths: string[], open: OpenOptions): Promise<MosaicRenderer> {
  const key = JSON.stringify([paths, open]);
  if (key !== cachedKey || !cached) {
    cachedKey = key;
    cached = Promise.all(paths.map((p) => GeoTiffSource.open(p, open))).then((s) => new MosaicRenderer(s));
    cached.catch(() => {
      cached = null;
      cachedKey = '';
    });
  }
  return cached;
}

function gridOf(z: number, x: number, y: number, tiles = 1): TargetGrid {
  const b = tileBounds(PM, { z, x, y });
  return { minX: b.minX, maxY: b.maxY, res: PM.levels[z].resolution, width: TILE * tiles, height: TILE * tiles };
}

function inLimits(l: TileLimits | null | undefined, x: number, y: number): boolean {
  return !!l && x >= l.minX && x <= l.maxX && y >= l.minY && y <= l.maxY;
}

async function subtree(t: SubtreeTask): Promise<TaskResult> {
  const mosaic = await mosaicFor(t.sources, t.open);
  const depth = t.bottom - t.job.z;
  const tiles: TileOut[] = [];
  const encodes: Promise<void>[] = [];
  const emit = (z: number, x: number, y: number, raw: RawTile) => {
    encodes.push(
      encodeTile(raw, t.encode).then((data) => {
        tiles.push({ z, x, y, data });
      }),
    );
  };
  // One source read for the whole job: its tiles then warp from memory.
  const any = await mosaic.loadRegion(gridOf(t.bottom, t.job.x << depth, t.job.y << depth, 1 << depth), t.kernel);
  const make = async (z: number, x: number, y: number): Promise<RawTile | null> => {
    if (!inLimits(t.limits[z], x, y)) return null;
    let raw: RawTile | null;
    if (z === t.bottom) {
      raw = await mosaic.render(gridOf(z, x, y), t.kernel);
    } else {
      const kids: (RawTile | null)[] = [];
      for (let q = 0; q < 4; q++) kids.push(await make(z + 1, 2 * x + (q & 1), 2 * y + (q >> 1)));
      raw = downsample4(kids, TILE, t.bands);
    }
    if (raw) emit(z, x, y, raw);
    return raw;
  };
  const top = any ? await make(t.job.z, t.job.x, t.job.y) : null;
  mosaic.unload();
  await Promise.all(encodes);
  return { tiles, top };
}

async function merge(t: MergeTask): Promise<TaskResult> {
  const raw = downsample4(t.children, TILE, t.bands);
  if (!raw) return { tiles: [], top: null };
  const data = await encodeTile(raw, t.encode);
  return { tiles: [{ ...t.tile, data }], top: raw };
}

function transferables(r: TaskResult): ArrayBuffer[] {
  const list = new Set<ArrayBuffer>();
  for (const t of r.tiles) list.add(t.data.buffer as ArrayBuffer);
  if (r.top) {
    list.add(r.top.data.buffer as ArrayBuffer);
    list.add(r.top.alpha.buffer as ArrayBuffer);
  }
  return [...list];
}

parentPort?.on('message', async (task: SubtreeTask | MergeTask) => {
  try {
    const result = task.kind === 'subtree' ? await subtree(task) : await merge(task);
    // sharp returns Buffers that may share a pooled ArrayBuffer: copy those so transfer is safe.
    for (const t of result.tiles) {
      if (t.data.byteOffset !== 0 || t.data.byteLength !== t.data.buffer.byteLength) t.data = new Uint8Array(t.data);
    }
    if (result.top) {
      const tp = result.top;
      if (tp.data.byteOffset !== 0 || tp.data.byteLength !== tp.data.buffer.byteLength) tp.data = new Uint8Array(tp.data);
      if (tp.alpha.byteOffset !== 0 || tp.alpha.byteLength !== tp.alpha.buffer.byteLength) tp.alpha = new Uint8Array(tp.alpha);
      if (tp.data.buffer === tp.alpha.buffer) tp.alpha = new Uint8Array(tp.alpha);
    }
    parentPort!.postMessage({ ok: true, result }, transferables(result));
  } catch (err) {
    const e = err as { code?: string; message?: string };
    parentPort!.postMessage({ ok: false, error: { code: e.code, message: e.message ?? String(err) } });
  }
});
