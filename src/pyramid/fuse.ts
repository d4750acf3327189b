// Pyramid fusion ("Fusion de pyramides raster"): one standalone pyramid (no parent) from a chained pyramid, or
// from several pyramids of one tile matrix set and format, later ones drawn over earlier ones. A tile that one
// input alone holds is copied byte for byte, so the fused archive serves exactly what the chain served; only a
// tile that several inputs hold, and that the uppermost does not cover whole, is decoded, composited and
// encoded again. The work follows the tiles copied; the folder is published in one step (publish.ts), as a build's.

import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { TuileError } from '../errors.js';
import { PM, lonLatToMercator, tileLimitsForBounds, unionBbox, type Bbox, type TileLimits } from '../geo/tms.js';
import { decodeTile, encodeTile, type EncodeOptions } from '../tiles/codec.js';
import { compositeOver, isOpaque, toBands, type RawTile } from '../raster/tile.js';
import { PyramidChain } from './chain.js';
import type { LevelInfo, PyramidDescriptor } from './descriptor.js';
import { lonLatOf, unionLimits } from './plan.js';
import { tileIdToZxy, zxyToTileId } from './pmtiles/tileid.js';
import { PyramidOutput, prepareOut } from './publish.js';

export interface FuseOptions {
  /** Pyramid folders, each read with its parent chain; a later one is drawn over the earlier ones. */
  inputs: string[];
  out: string;
  /** Levels kept; by default every level of the inputs. A fusion computes no level the inputs lack. */
  top?: number;
  bottom?: number;
  /** lon/lat west, south, east, north: only the tiles that meet it are kept */
  bbox?: [number, number, number, number];
  /** tiles read, and composited, at once (default 4) */
  parallelization?: number;
  onProgress?: (done: number, total: number) => void;
  /** aborting stops the fusion; it then rejects and leaves nothing behind */
  signal?: AbortSignal;
}

export interface FuseResult {
  descriptor: PyramidDescriptor;
  tiles: number;
  bytes: number;
  seconds: number;
  /** tiles whose bytes were copied as they were */
  copied: number;
  /** tiles several inputs held, decoded, composited and encoded again */
  composited: number;
}

export const INTERRUPTED = 'merge interrupted';

// Web Mercator stops at this latitude: a bbox reaching the poles is clamped to it
const MAX_LAT = 85.0511287798066;

/** The inputs' levels and limits, cut to the asked levels and bbox: what the fused pyramid may hold. */
export function fusionLimits(
  descriptors: PyramidDescriptor[],
  top: number,
  bottom: number,
  bbox?: Bbox,
): (TileLimits | null)[] {
  const limits: (TileLimits | null)[] = [];
  for (let z = 0; z <= bottom; z++) {
    let l: TileLimits | null = null;
    if (z >= top) for (const d of descriptors) l = unionLimits(l, d.levels.find((v) => v.limits.z === z)?.limits);
    if (l && bbox) {
      const b = tileLimitsForBounds(PM, z, bbox);
      const cut = b && { z, minX: Math.max(l.minX, b.minX), maxX: Math.min(l.maxX, b.maxX), minY: Math.max(l.minY, b.minY), maxY: Math.min(l.maxY, b.maxY) };
      l = cut && cut.minX <= cut.maxX && cut.minY <= cut.maxY ? cut : null;
    }
    limits.push(l);
  }
  return limits;
}

/** A lon/lat bbox (w, s, e, n) checked and turned into Web Mercator. */
export function mercatorBbox(b: [number, number, number, number]): Bbox {
  const [w, s, e, n] = b;
  const ok = b.length === 4 && b.every(Number.isFinite) && w >= -180 && e <= 180 && s >= -90 && n <= 90 && w < e && s < n;
  if (!ok) throw new TuileError('InvalidParameter', `bbox ${b.join(',')} is not west,south,east,north in degrees (west < east, south < north)`);
  const [minX, minY] = lonLatToMercator(w, Math.max(-MAX_LAT, s));
  const [maxX, maxY] = lonLatToMercator(e, Math.min(MAX_LAT, n));
  if (!(minY < maxY)) throw new TuileError('InvalidParameter', `bbox ${b.join(',')} lies beyond the latitudes of ${PM.id}`);
  return { minX, minY, maxX, maxY };
}

function intersect(a: Bbox, b: Bbox): Bbox {
  return { minX: Math.max(a.minX, b.minX), minY: Math.max(a.minY, b.minY), maxX: Math.min(a.maxX, b.maxX), maxY: Math.min(a.maxY, b.maxY) };
}

export async function fusePyramids(opts: FuseOptions): Promise<FuseResult> {
  const started = Date.now();
  if (opts.inputs.length === 0) throw new TuileError('InvalidParameter', 'a fusion needs at least one pyramid');
  const chains: PyramidChain[] = [];
  try {
    // every member of every chain opens before any work: a missing parent fails here, not half-way
    for (const dir of opts.inputs) chains.push(await PyramidChain.open(dir));
    return await fuseChains(chains, opts, started);
  } finally {
    await Promise.all(chains.map((c) => c.close()));
  }
}

async function fuseChains(all: PyramidChain[], opts: FuseOptions, started: number): Promise<FuseResult> {
  const first = all[0].descriptor;
  for (const c of all) {
    const d = c.descriptor;
    if (d.tms !== first.tms || d.tileSize !== first.tileSize) {
      throw new TuileError('InvalidInput', `${c.dir}: tile matrix set ${d.tms} (${d.tileSize} px) is not the ${first.tms} (${first.tileSize} px) of ${all[0].dir}: fused pyramids share one`);
    }
    if (d.tileFormat !== first.tileFormat) {
      throw new TuileError('InvalidInput', `${c.dir}: format ${d.tileFormat} is not the ${first.tileFormat} of ${all[0].dir}: fused pyramids share one format, their tiles are copied`);
    }
  }
  // an input that a later input is chained on is already under it, in that input's chain
  const chains = all.filter((c, i) => !all.slice(i + 1).some((later) => later.ids.includes(c.id)));
  const ds = chains.map((c) => c.descriptor);
  const minTop = Math.min(...ds.map((d) => d.top));
  const maxBottom = Math.max(...ds.map((d) => d.bottom));
  const top = opts.top ?? minTop;
  const bottom = opts.bottom ?? maxBottom;
  if (!Number.isInteger(top) || !Number.isInteger(bottom) || top < 0 || top > bottom) {
    throw new TuileError('InvalidParameter', `levels ${top}-${bottom}: the top level must be between 0 and the bottom level`);
  }
  if (top < minTop || bottom > maxBottom) {
    throw new TuileError('InvalidParameter', `levels ${top}-${bottom} are outside the inputs' levels ${minTop}-${maxBottom}: a fusion copies tiles, it computes none`);
  }
  const box = opts.bbox ? mercatorBbox(opts.bbox) : undefined;
  const union = unionBbox(ds.map((d) => d.bbox));
  const bbox = box ? intersect(union, box) : union;
  if (!(bbox.minX < bbox.maxX && bbox.minY < bbox.maxY)) throw new TuileError('InvalidParameter', `bbox ${opts.bbox!.join(',')} does not meet the inputs' extent`);
  const limits = fusionLimits(ds, top, bottom, box);

  // the tiles to write: every tile of every member in the limits, once, in tile id (the archive's) order
  let ids = new Float64Array(1024);
  let n = 0;
  for (const c of chains) {
    for (const t of c.tiles()) {
      const l = limits[t.z];
      if (!l || t.x < l.minX || t.x > l.maxX || t.y < l.minY || t.y > l.maxY) continue;
      if (n === ids.length) {
        const grown = new Float64Array(n * 2);
        grown.set(ids);
        ids = grown;
      }
      ids[n++] = zxyToTileId(t.z, t.x, t.y);
    }
  }
  ids = ids.subarray(0, n).sort();
  let m = 0;
  for (let i = 0; i < n; i++) if (i === 0 || ids[i] !== ids[i - 1]) ids[m++] = ids[i];
  if (m === 0) throw new TuileError('InvalidInput', `the inputs hold no tile at levels ${top}-${bottom}${opts.bbox ? ` in bbox ${opts.bbox.join(',')}` : ''}`);

  const last = ds[ds.length - 1];
  const format = first.tileFormat;
  const bands = Math.max(...ds.map((d) => d.bands));
  const encode: EncodeOptions = { format, quality: last.quality, nodataColor: last.nodata };
  let copied = 0;
  let composited = 0;

  /** The tile the inputs show, uppermost first: copied when one input alone shows it. */
  const fuseTile = async (z: number, x: number, y: number): Promise<Uint8Array> => {
    const holders: PyramidChain[] = [];
    const seen = new Set<string>();
    for (let i = chains.length - 1; i >= 0; i--) {
      const id = chains[i].locate({ z, x, y });
      if (id !== undefined && !seen.has(id)) {
        seen.add(id);
        holders.push(chains[i]);
      }
    }
    const read = async (c: PyramidChain) => {
      const hit = await c.getTile({ z, x, y });
      if (!hit) throw new TuileError('InvalidInput', `${c.dir}: tile ${z}/${x}/${y} is in its index but cannot be read`);
      return hit.data;
    };
    const upper = await read(holders[0]);
    if (holders.length === 1) {
      copied++;
      return upper;
    }
    const over = await decodeTile(upper);
    // nothing under an opaque tile shows: its bytes are the fused tile's
    if (isOpaque(over.alpha)) {
      copied++;
      return upper;
    }
    let raw: RawTile | null = null;
    for (let k = holders.length - 1; k >= 1; k--) raw = compositeOver(raw, toBands(await decodeTile(await read(holders[k])), bands));
    raw = compositeOver(raw, toBands(over, bands));
    composited++;
    return encodeTile(raw!, encode);
  };

  const out = resolve(opts.out);
  await prepareOut(out);
  const output = await PyramidOutput.create(out, format, top, bottom, bbox);
  try {
    const counts = limits.map(() => 0);
    const workers = Math.max(1, Math.min(64, Math.floor(opts.parallelization ?? 4)));
    // tiles are resolved a batch at a time and written in id order: the archive's temporary file is then
    // already in its final order, and memory holds one batch of tiles
    const batchSize = Math.max(256, workers * 16);
    const data: Uint8Array[] = [];
    for (let i = 0; i < m; i += batchSize) {
      if (opts.signal?.aborted) throw new TuileError('Internal', INTERRUPTED);
      const end = Math.min(m, i + batchSize);
      let next = i;
      await Promise.all(
        Array.from({ length: Math.min(workers, end - i) }, async () => {
          while (next < end) {
            const k = next++;
            const t = tileIdToZxy(ids[k]);
            data[k - i] = await fuseTile(t.z, t.x, t.y);
          }
        }),
      );
      for (let k = i; k < end; k++) {
        const t = tileIdToZxy(ids[k]);
        await output.writer.addTile(t.z, t.x, t.y, data[k - i]);
        counts[t.z]++;
      }
      opts.onProgress?.(end, m);
    }
    if (opts.signal?.aborted) throw new TuileError('Internal', INTERRUPTED);
    const levels: LevelInfo[] = [];
    for (let z = top; z <= bottom; z++) {
      const l = limits[z];
      if (l) levels.push({ id: String(z), limits: l, tiles: counts[z] });
    }
    let seconds = 0;
    const { descriptor, bytes } = await output.publish((archiveBytes): PyramidDescriptor => {
      seconds = (Date.now() - started) / 1000;
      return {
      format: 'tuile-pyramid',
      version: 1,
      id: randomUUID(),
      tms: first.tms,
      tileSize: first.tileSize,
      tileFormat: format,
      bands,
      nodata: last.nodata,
      interpolation: last.interpolation,
      quality: format === 'png' ? undefined : last.quality,
      bottom,
      top,
      levels,
      bbox,
      bboxLonLat: lonLatOf(bbox),
      parents: [],
      sources: [...new Set(ds.flatMap((d) => d.sources))],
      fusedFrom: chains.flatMap((c) => c.ids),
      created: new Date().toISOString(),
      stats: { tiles: m, bytes: archiveBytes, seconds },
      };
    });
    return { descriptor, tiles: m, bytes, seconds, copied, composited };
  } catch (err) {
    await output.discard();
    throw err;
  }
}
