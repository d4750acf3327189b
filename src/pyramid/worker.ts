// Worker thread of the build pool: renders the subtree of a job tile (bottom tiles from the sources,
// overviews from children) and merges upper-level tiles, returning encoded tiles to the main thread.
// In an update build it reads the parent chain itself, so parent tiles never cross the thread boundary.

import { parentPort, workerData } from 'node:worker_threads';
import { PM, tileBounds, type TileLimits } from '../geo/tms.js';
import { GeoTiffSource, type OpenOptions } from '../raster/geotiff.js';
import { MosaicRenderer, type TargetGrid } from '../raster/render.js';
import type { Kernel } from '../raster/resample.js';
import { decodeTile, encodeTile, loadSharp, type EncodeOptions } from '../tiles/codec.js';
import { compositeOver, isBlank, isOpaque, releaseTile, toBands, type RawTile } from '../raster/tile.js';
import { downsample4 } from '../tiles/merge.js';
import { PyramidChain } from './chain.js';

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
  /**
   * Update build: the parent pyramid folder. New pixels are drawn over the chain's tiles, and only tiles
   * the new delivery changes are returned; `top` is then null when the job changed nothing.
   */
  parent?: string;
}

export interface MergeTask {
  kind: 'merge';
  tile: { z: number; x: number; y: number };
  /** null: no data, or in an update build, unchanged (then read from the parent chain) */
  children: (RawTile | null)[];
  bands: number;
  encode: EncodeOptions;
  parent?: string;
}

export interface TaskResult {
  tiles: TileOut[];
  /** raw pixels of the task's top tile, for the levels above */
  top: RawTile | null;
}

const TILE = PM.tileSize;

// png needs no libvips (codec.ts): load it now only when the build will encode or decode with it
const preloading = (workerData as { preloadSharp?: boolean } | null)?.preloadSharp ? loadSharp().catch(() => {}) : Promise.resolve();
// the pool waits for this before terminating the thread (WorkerPool.close)
void preloading.then(() => parentPort?.postMessage({ ready: true }));

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

// In an update, encodes wait here rather than in libuv's thread pool, whose few threads also serve the
// file reads and decodes of the parent's tiles: queued there, a read waited behind every tile the job had
// rendered so far. Two per worker keep the pool's four threads busy with two workers.
const ENCODES_IN_FLIGHT = 2;
let encoding = 0;
const encodeQueue: (() => void)[] = [];

async function encodeSoon(raw: RawTile, opts: EncodeOptions): Promise<Uint8Array> {
  if (encoding < ENCODES_IN_FLIGHT) encoding++;
  else await new Promise<void>((go) => encodeQueue.push(go));
  try {
    return await encodeTile(raw, opts);
  } finally {
    // hand the slot to the next encode, if any, so that none can overtake it
    const next = encodeQueue.shift();
    if (next) next();
    else encoding--;
  }
}

let chainDir = '';
let chainOpen: Promise<PyramidChain> | null = null;

// One build has one parent: keep its chain open for the worker's life (indexes read once per worker).
async function chainFor(dir: string): Promise<PyramidChain> {
  if (dir !== chainDir || !chainOpen) {
    const previous = chainOpen;
    chainDir = dir;
    chainOpen = PyramidChain.open(dir);
    chainOpen.catch(() => {
      chainOpen = null;
      chainDir = '';
    });
    // a worker runs one task at a time: nothing reads the previous chain any more
    previous?.then((c) => c.close()).catch(() => {});
  }
  return chainOpen;
}

/** The chain's tile, decoded, in the build's bands; null where the chain has none. */
async function chainTile(dir: string, z: number, x: number, y: number, bands: number): Promise<RawTile | null> {
  const hit = await (await chainFor(dir)).getTile({ z, x, y });
  return hit ? toBands(await decodeTile(hit.data), bands) : null;
}

/** Children of an updated tile: those the update did not change are the chain's. */
async function fillFromChain(kids: (RawTile | null)[], dir: string, z: number, x: number, y: number, bands: number): Promise<void> {
  await Promise.all(
    kids.map(async (k, q) => {
      kids[q] = k ?? (await chainTile(dir, z + 1, 2 * x + (q & 1), 2 * y + (q >> 1), bands));
    }),
  );
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
  // a tile's encode, which may still read its pixels (sharp does, in libuv's threads)
  const encoding = new Map<RawTile, Promise<void>>();
  const emit = (z: number, x: number, y: number, raw: RawTile) => {
    const done = (t.parent ? encodeSoon : encodeTile)(raw, t.encode).then((data) => {
      tiles.push({ z, x, y, data });
    });
    encodes.push(done);
    encoding.set(raw, done);
  };
  // children merged into their parent: their buffers serve the next tiles once encoded
  const release = (kids: (RawTile | null)[]) => {
    for (const k of kids) {
      if (!k) continue;
      const done = encoding.get(k);
      encoding.delete(k);
      if (done) done.then(() => releaseTile(k), () => {});
      else releaseTile(k);
    }
  };
  // One source read for the whole job: its tiles then warp from memory.
  const any = await mosaic.loadRegion(gridOf(t.bottom, t.job.x << depth, t.job.y << depth, 1 << depth), t.kernel);
  const make = async (z: number, x: number, y: number): Promise<RawTile | null> => {
    if (!inLimits(t.limits[z], x, y)) return null;
    let raw: RawTile | null;
    if (z === t.bottom) {
      raw = await mosaic.render(gridOf(z, x, y), t.kernel);
      if (t.parent && raw) {
        // blank: the tile is unchanged and reads through; otherwise new data over old, so that nodata,
        // alpha and masks of the delivery never erase what the chain holds
        raw = isBlank(raw) ? null : toBands(raw, t.bands);
        if (raw && !isOpaque(raw.alpha)) raw = compositeOver(await chainTile(t.parent, z, x, y, t.bands), raw);
      }
    } else {
      const child = (q: number) => make(z + 1, 2 * x + (q & 1), 2 * y + (q >> 1));
      const kids: (RawTile | null)[] = [];
      if (t.parent) {
        // an update waits on reads and decodes of the chain's tiles: siblings render meanwhile
        kids.push(...(await Promise.all([0, 1, 2, 3].map(child))));
      } else {
        for (let q = 0; q < 4; q++) kids.push(await child(q));
      }
      if (t.parent) {
        if (kids.every((k) => k === null)) return null;
        await fillFromChain(kids, t.parent, z, x, y, t.bands);
      }
      raw = downsample4(kids, TILE, t.bands);
      release(kids);
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
  const kids = t.children;
  if (t.parent) {
    if (kids.every((k) => k === null)) return { tiles: [], top: null };
    await fillFromChain(kids, t.parent, t.tile.z, t.tile.x, t.tile.y, t.bands);
  }
  const raw = downsample4(kids, TILE, t.bands);
  // the children came from other tasks' results: this thread owns them now
  for (const k of kids) if (k) releaseTile(k);
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
