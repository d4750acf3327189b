// Pyramid builds: plans levels, limits and jobs with pure math, runs the pixel work on the worker pool
// in quadtree order, streams tiles into a PMTiles archive, and publishes the folder by one rename.
// An update build (`parent`) stores only the tiles its delivery changes; the rest read through (DESIGN 5).

import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, stat, open } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { TuileError, errorMessage } from '../errors.js';
import { transformer, WEB_MERCATOR, WGS84 } from '../geo/crs.js';
import {
  PM,
  levelForResolution,
  lonLatToMercator,
  mercatorToLonLat,
  tileLimitsForBounds,
  type Bbox,
  type TileLimits,
} from '../geo/tms.js';
import { GeoTiffSource, type OpenOptions, type RasterInfo } from '../raster/geotiff.js';
import type { ScaleRange } from '../raster/scale.js';
import type { Kernel } from '../raster/resample.js';
import type { EncodeOptions, TileFormat } from '../tiles/codec.js';
import type { RawTile } from '../tiles/merge.js';
import { PyramidChain } from './chain.js';
import { pyramidStorage } from './storage.js';
import { ARCHIVE, DESCRIPTOR, type LevelInfo, type PyramidDescriptor } from './descriptor.js';
import { zxyToTileId } from './pmtiles/tileid.js';
import { PMTilesWriter } from './pmtiles/writer.js';
import type { MergeTask, SubtreeTask, TaskResult } from './worker.js';
import { WorkerPool } from './workers.js';

export interface BuildOptions {
  inputs: string[];
  out: string;
  bottom?: number;
  top?: number;
  format?: TileFormat;
  interpolation?: Kernel;
  quality?: number;
  pngLevel?: number;
  nodataColor?: number[];
  bands?: number[];
  /** MIN,MAX mapped onto 0-255 per band or for all (gdal_translate -scale); 16-bit inputs without it use their own */
  scale?: ScaleRange[];
  /**
   * Parent pyramid folder: build an update of its chain. Format, interpolation, quality, nodata colour
   * and levels left out are the parent's; a format, level or band count other than the parent's is
   * refused. The archive then holds only the tiles the inputs change, the new pixels drawn over the
   * parent's where they are valid, and every other tile reads through to the chain.
   */
  parent?: string;
  workers?: number;
  /**
   * A pool the caller started before loading this module (the CLI does: the workers then load their own modules
   * meanwhile). The build uses it and leaves it open.
   */
  pool?: WorkerPool;
  maxPixels?: number;
  onProgress?: (done: number, total: number) => void;
  /** aborting stops the build; it then rejects and leaves nothing behind */
  signal?: AbortSignal;
}

export interface BuildResult {
  descriptor: PyramidDescriptor;
  tiles: number;
  bytes: number;
  seconds: number;
}

/** Footprint of a raster in Web Mercator, from its densified outline (latitudes clamped to the TMS). */
export function footprint3857(info: RasterInfo): Bbox {
  const toLonLat = transformer(info.crs, WGS84);
  const g = info.geoTransform;
  const steps = 32;
  const pts = new Float64Array((steps + 1) * 4 * 2);
  let k = 0;
  for (let i = 0; i <= steps; i++) {
    const f = i / steps;
    for (const [c, r] of [
      [f * info.width, 0],
      [f * info.width, info.height],
      [0, f * info.height],
      [info.width, f * info.height],
    ]) {
      pts[k++] = g[0] + c * g[1] + r * g[2];
      pts[k++] = g[3] + c * g[4] + r * g[5];
    }
  }
  toLonLat.forwardArray(pts);
  // Longitudes past ±180 (a geographic raster over the antimeridian): PM has no room for them, proj wraps them to
  // the other side of the world, and gdalwarp -t_srs EPSG:3857 fails on such a file; refused, not cut silently.
  // Up to a pixel beyond is cut as before: global grids registered on pixel centres reach half a pixel past 180,
  // a column that repeats the other edge.
  const slack = info.crs.isGeographic ? Math.hypot(g[1], g[4]) : 0;
  let west = Infinity;
  let east = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    if (Number.isFinite(pts[i])) {
      west = Math.min(west, pts[i]);
      east = Math.max(east, pts[i]);
    }
  }
  if (west < -180 - slack || east > 180 + slack) {
    throw new TuileError(
      'UnsupportedRaster',
      west < 180 && east > -180
        ? `${info.path}: it spans longitudes ${west.toFixed(6)} to ${east.toFixed(6)}, across the antimeridian; split it at 180° (gdalwarp -te) and deliver both parts`
        : `${info.path}: its longitudes ${west.toFixed(6)} to ${east.toFixed(6)} lie outside -180..180`,
    );
  }
  const b: Bbox = { minX: Infinity, minY: Infinity, maxX: -Infinity, maxY: -Infinity };
  for (let i = 0; i < pts.length; i += 2) {
    if (!Number.isFinite(pts[i]) || !Number.isFinite(pts[i + 1])) continue;
    const [x, y] = lonLatToMercator(Math.max(-180, Math.min(180, pts[i])), pts[i + 1]);
    b.minX = Math.min(b.minX, x);
    b.maxX = Math.max(b.maxX, x);
    b.minY = Math.min(b.minY, y);
    b.maxY = Math.max(b.maxY, y);
  }
  if (!(b.minX < b.maxX && b.minY < b.maxY)) {
    throw new TuileError('InvalidInput', `${info.path}: its extent does not project to Web Mercator`);
  }
  return b;
}

/**
 * Resolution gdalwarp suggests for the warped raster (GDALSuggestedWarpOutput2): the distance from the raster's
 * first corner to its last in Web Mercator over the pixel diagonal. Not the extent's diagonal, which a rotated or
 * polar raster stretches (a level too coarse on the corpus's rotated and polar files). That one where a corner
 * does not project.
 */
export function suggestedResolution(info: RasterInfo, b: Bbox): number {
  const g = info.geoTransform;
  const { width: w, height: h } = info;
  const corners = new Float64Array([g[0], g[3], g[0] + w * g[1] + h * g[2], g[3] + w * g[4] + h * g[5]]);
  transformer(info.crs, WEB_MERCATOR).forwardArray(corners);
  const d = Math.hypot(corners[2] - corners[0], corners[3] - corners[1]);
  return (Number.isFinite(d) && d > 0 ? d : Math.hypot(b.maxX - b.minX, b.maxY - b.minY)) / Math.hypot(w, h);
}

export function unionBbox(boxes: Bbox[]): Bbox {
  return {
    minX: Math.min(...boxes.map((b) => b.minX)),
    minY: Math.min(...boxes.map((b) => b.minY)),
    maxX: Math.max(...boxes.map((b) => b.maxX)),
    maxY: Math.max(...boxes.map((b) => b.maxY)),
  };
}

/** Morton (Z-order) interleave of x and y: sorting jobs by it makes siblings finish together. */
export function morton(x: number, y: number): number {
  let m = 0;
  for (let b = 0; b < 26; b++) {
    m += (((x >> b) & 1) * 2 ** (2 * b)) + (((y >> b) & 1) * 2 ** (2 * b + 1));
  }
  return m;
}

/**
 * The level at which the work is cut into jobs: each job is a subtree of up to 8x8 bottom tiles, fewer
 * when the bottom level is much coarser than the source (its source window must stay small).
 */
export function jobLevel(bottom: number, top: number, sourcePerTarget: number): number {
  const maxSpan = 4096; // source pixels across one job
  let depth = 3;
  while (depth > 0 && 256 * 2 ** depth * sourcePerTarget > maxSpan) depth--;
  return Math.max(top, bottom - depth);
}

export function planLevels(bbox: Bbox, top: number, bottom: number): (TileLimits | null)[] {
  const limits: (TileLimits | null)[] = [];
  for (let z = 0; z <= bottom; z++) limits.push(z < top ? null : (tileLimitsForBounds(PM, z, bbox) ?? null));
  return limits;
}

export function lonLatOf(b: Bbox): Bbox {
  const [w, s] = mercatorToLonLat(b.minX, b.minY);
  const [e, n] = mercatorToLonLat(b.maxX, b.maxY);
  return { minX: w, minY: s, maxX: e, maxY: n };
}

/** The parent and its own parents, nearest first, with paths rebased onto the new pyramid folder. */
export function chainParents(parentDir: string, parent: PyramidDescriptor, out: string): { id: string; path: string }[] {
  const rel = (dir: string) => relative(out, dir) || '.';
  return [
    { id: parent.id, path: rel(parentDir) },
    ...parent.parents.map((p) => ({ id: p.id, path: rel(isAbsolute(p.path) ? p.path : resolve(parentDir, p.path)) })),
  ];
}

export async function prepareOut(out: string): Promise<void> {
  try {
    const s = await stat(out);
    if (!s.isDirectory()) throw new TuileError('OutputError', `${out} exists and is not a folder`);
    if ((await readdir(out)).length > 0) throw new TuileError('OutputError', `${out} exists and is not empty`);
  } catch (err) {
    if (err instanceof TuileError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new TuileError('OutputError', `${out}: ${errorMessage(err)}`);
    }
  }
}

/**
 * The temporary folder a pyramid is written into, beside `out`: published with one rename, so a crash leaves
 * no half pyramid at `out` (and the rename stays on one file system).
 */
export async function tempBeside(out: string): Promise<string> {
  await mkdir(dirname(out), { recursive: true }).catch((err) => {
    throw new TuileError('OutputError', `cannot create ${dirname(out)}: ${errorMessage(err)}`);
  });
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomUUID().slice(0, 8)}`);
  try {
    await mkdir(tmp);
  } catch (err) {
    throw new TuileError('OutputError', `cannot write in ${dirname(out)}: ${errorMessage(err)}`);
  }
  return tmp;
}

/** The archive of a pyramid being written into `tmp`, with the header fields readers show (bounds, centre, name). */
export function createArchive(tmp: string, out: string, format: TileFormat, top: number, bottom: number, bbox: Bbox): Promise<PMTilesWriter> {
  const lonlat = lonLatOf(bbox);
  return PMTilesWriter.create(join(tmp, ARCHIVE), {
    tileType: format,
    minZoom: top,
    maxZoom: bottom,
    bounds: [lonlat.minX, lonlat.minY, lonlat.maxX, lonlat.maxY],
    center: [(lonlat.minX + lonlat.maxX) / 2, (lonlat.minY + lonlat.maxY) / 2, Math.max(top, bottom - 4)],
    metadata: { name: basename(out), generator: 'tuile' },
  });
}

export async function writeFileSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function unionLimits(a: TileLimits | null | undefined, b: TileLimits | null | undefined): TileLimits | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return { z: a.z, minX: Math.min(a.minX, b.minX), minY: Math.min(a.minY, b.minY), maxX: Math.max(a.maxX, b.maxX), maxY: Math.max(a.maxY, b.maxY) };
}

/** The parent's descriptor, checked to be one an update can be built on with these options. */
async function openParent(dir: string, opts: BuildOptions): Promise<{ dir: string; descriptor: PyramidDescriptor }> {
  // opening the whole chain proves that every member is there and readable before any work starts
  const chain = await PyramidChain.open(dir);
  const d = chain.descriptor;
  await chain.close();
  const refuse = (what: string) => {
    throw new TuileError('InvalidParameter', `${what}: an update keeps the tile matrix set, levels, format, bands and nodata of its parent ${chain.dir}`);
  };
  if (d.tms !== PM.id || d.tileSize !== PM.tileSize) refuse(`the parent's tile matrix set ${d.tms} (${d.tileSize} px) is not ${PM.id}`);
  if (opts.format !== undefined && opts.format !== d.tileFormat) refuse(`format ${opts.format} differs from the parent's ${d.tileFormat}`);
  if (opts.bottom !== undefined && opts.bottom !== d.bottom) refuse(`bottom level ${opts.bottom} differs from the parent's ${d.bottom}`);
  if (opts.top !== undefined && opts.top !== d.top) refuse(`top level ${opts.top} differs from the parent's ${d.top}`);
  // one value stands for every band (EncodeOptions.nodataColor): compare colours, not spellings
  const colour = (v: number[]) => Array.from({ length: d.bands }, (_, b) => v[b] ?? v[0]).join(',');
  if (opts.nodataColor !== undefined && colour(opts.nodataColor) !== colour(d.nodata)) {
    refuse(`nodata colour ${opts.nodataColor.join(',')} differs from the parent's ${d.nodata.join(',')}`);
  }
  return { dir: chain.dir, descriptor: d };
}

export async function buildPyramid(opts: BuildOptions): Promise<BuildResult> {
  if (opts.pool) return buildWith(opts.pool, opts, Date.now());
  // the workers load their modules (geotiff, proj4, and sharp unless a png build has no parent to read: a few
  // hundred ms, as much as a small update's pixel work) while this thread opens and plans
  const pool = new WorkerPool(opts.workers, opts.format !== 'png' || opts.parent !== undefined);
  try {
    return await buildWith(pool, opts, Date.now());
  } finally {
    await pool.close();
  }
}

async function buildWith(pool: WorkerPool, opts: BuildOptions, started: number): Promise<BuildResult> {
  const parent = opts.parent === undefined ? null : await openParent(opts.parent, opts);
  const pd = parent?.descriptor;
  const format = opts.format ?? pd?.tileFormat ?? 'png';
  const kernel = opts.interpolation ?? pd?.interpolation ?? 'bilinear';
  const quality = opts.quality ?? pd?.quality;
  const openOpts: OpenOptions = { bands: opts.bands, maxPixels: opts.maxPixels, scale: opts.scale };
  const inputs = opts.inputs.map((p) => resolve(p));
  if (inputs.length === 0) throw new TuileError('InvalidParameter', 'no input file');
  const out = resolve(opts.out);
  await prepareOut(out);

  // Plan on the main thread from metadata only.
  const infos: RasterInfo[] = [];
  for (const p of inputs) {
    const s = await GeoTiffSource.open(p, openOpts);
    try {
      // a 16-bit file without a range gets its bands' minimum and maximum, as gdal_translate -scale does; once here,
      // for every thread of the build
      if (s.info.sampleBits !== 8 && !s.info.scale) (openOpts.fileScales ??= {})[p] = await s.sampleRanges();
      infos.push(s.info);
    } finally {
      await s.close();
    }
  }
  const boxes = infos.map(footprint3857);
  const bbox = unionBbox(boxes);
  const finest = Math.min(...infos.map((info, i) => suggestedResolution(info, boxes[i])));
  const bottom = opts.bottom ?? pd?.bottom ?? levelForResolution(PM, finest);
  const top = opts.top ?? pd?.top ?? 0;
  if (!Number.isInteger(bottom) || bottom < 0 || bottom >= PM.levels.length) {
    throw new TuileError('InvalidParameter', `bottom level ${bottom} is not a level of ${PM.id} (0-${PM.levels.length - 1})`);
  }
  if (!Number.isInteger(top) || top < 0 || top > bottom) {
    throw new TuileError('InvalidParameter', `top level ${top} must be between 0 and the bottom level ${bottom}`);
  }
  const inputBands = Math.max(...infos.map((i) => i.bands));
  if (pd && inputBands > pd.bands) {
    throw new TuileError(
      'InvalidParameter',
      `the inputs have ${inputBands} bands and the parent ${parent!.dir} ${pd.bands}: an update keeps its parent's bands (choose them with --bands)`,
    );
  }
  // grey deliveries onto an RGB parent are made RGB (toBands), never the other way
  const bands = pd?.bands ?? inputBands;
  const nodataColor = opts.nodataColor ?? pd?.nodata ?? new Array(bands).fill(format === 'jpg' ? 255 : 0);
  const encode: EncodeOptions = { format, quality, pngLevel: opts.pngLevel, nodataColor };
  const limits = planLevels(bbox, top, bottom);
  const k = jobLevel(bottom, top, PM.levels[bottom].resolution / finest);
  const kl = limits[k];
  if (!kl) throw new TuileError('InvalidInput', 'the inputs cover no tile');
  const jobs: { x: number; y: number }[] = [];
  for (let y = kl.minY; y <= kl.maxY; y++) for (let x = kl.minX; x <= kl.maxX; x++) jobs.push({ x, y });
  jobs.sort((a, b) => morton(a.x, a.y) - morton(b.x, b.y));
  let total = 0;
  for (let z = top; z <= bottom; z++) {
    const l = limits[z];
    if (l) total += (l.maxX - l.minX + 1) * (l.maxY - l.minY + 1);
  }

  const tmp = await tempBeside(out);
  let writer: PMTilesWriter | null = null;
  let stopped = false; // after a failure, late results are dropped instead of written
  let writing: Promise<void> = Promise.resolve();
  try {
    writer = await createArchive(tmp, out, format, top, bottom, bbox);
    const w = writer;
    const present: (TileLimits | null)[] = limits.map(() => null);
    const counts = limits.map(() => 0);
    let bytes = 0;
    let tilesWritten = 0;
    let done = 0;
    const accept = (r: TaskResult, processed: number) => {
      if (stopped) return;
      // in tile id order: a job's tiles of a level are then one run of the archive's final (Hilbert) order in its
      // temporary file, which finish() copies in a few large reads instead of one per tile
      const ids = new Map(r.tiles.map((t) => [t, zxyToTileId(t.z, t.x, t.y)]));
      r.tiles.sort((a, b) => ids.get(a)! - ids.get(b)!);
      for (const t of r.tiles) {
        const p = present[t.z];
        present[t.z] = p
          ? { z: t.z, minX: Math.min(p.minX, t.x), maxX: Math.max(p.maxX, t.x), minY: Math.min(p.minY, t.y), maxY: Math.max(p.maxY, t.y) }
          : { z: t.z, minX: t.x, maxX: t.x, minY: t.y, maxY: t.y };
        counts[t.z]++;
        bytes += t.data.byteLength;
        tilesWritten++;
        writing = writing.then(() => w.addTile(t.z, t.x, t.y, t.data));
        writing.catch(() => {}); // awaited at the end; a failure must not go unhandled before that
      }
      done += processed;
      opts.onProgress?.(done, total);
    };

    // Levels above the job level: a parent is merged as soon as its children in limits have arrived.
    const waiting = new Map<string, { kids: (RawTile | null)[]; left: number }>();
    const merges: Promise<void>[] = [];
    const childrenInLimits = (z: number, x: number, y: number): number => {
      const l = limits[z + 1]!;
      let n = 0;
      for (let q = 0; q < 4; q++) {
        const cx = 2 * x + (q & 1);
        const cy = 2 * y + (q >> 1);
        if (cx >= l.minX && cx <= l.maxX && cy >= l.minY && cy <= l.maxY) n++;
      }
      return n;
    };
    const arrived = (z: number, x: number, y: number, raw: RawTile | null) => {
      if (z === top) return;
      const px = x >> 1;
      const py = y >> 1;
      const key = `${z - 1}/${px}/${py}`;
      let e = waiting.get(key);
      if (!e) {
        e = { kids: [null, null, null, null], left: childrenInLimits(z - 1, px, py) };
        waiting.set(key, e);
      }
      e.kids[(x & 1) + 2 * (y & 1)] = raw;
      if (--e.left > 0) return;
      waiting.delete(key);
      if (e.kids.every((c) => c === null)) {
        // nothing below changed (update) or holds data: no task, and nothing to store
        accept({ tiles: [], top: null }, 1);
        arrived(z - 1, px, py, null);
        return;
      }
      const task: MergeTask = { kind: 'merge', tile: { z: z - 1, x: px, y: py }, children: e.kids, bands, encode, parent: parent?.dir };
      const transfer = e.kids.flatMap((c) => (c ? [c.data.buffer as ArrayBuffer, c.alpha.buffer as ArrayBuffer] : []));
      const m = pool.run<TaskResult>(task, transfer, true).then((r) => {
        accept(r, 1);
        arrived(z - 1, px, py, r.top);
      });
      m.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"
      merges.push(m);
    };

    const perJob = (z: number, x: number, y: number): number => {
      let n = 0;
      for (let zz = z; zz <= bottom; zz++) {
        const l = limits[zz]!;
        const s = zz - z;
        const x0 = Math.max(l.minX, x << s);
        const x1 = Math.min(l.maxX, ((x + 1) << s) - 1);
        const y0 = Math.max(l.minY, y << s);
        const y1 = Math.min(l.maxY, ((y + 1) << s) - 1);
        if (x1 >= x0 && y1 >= y0) n += (x1 - x0 + 1) * (y1 - y0 + 1);
      }
      return n;
    };
    // Bounded in-flight jobs keep memory flat whatever the size of the input.
    const maxInFlight = pool.size * 2;
    const inFlight = new Set<Promise<void>>();
    let failure: { err: unknown } | null = null;
    const onAbort = () => {
      failure ??= { err: new TuileError('Internal', 'build interrupted') };
    };
    opts.signal?.addEventListener('abort', onAbort);
    if (opts.signal?.aborted) onAbort();
    for (const j of jobs) {
      while (inFlight.size >= maxInFlight && !failure) await Promise.race(inFlight);
      if (failure) break;
      const task: SubtreeTask = {
        kind: 'subtree',
        sources: inputs,
        open: openOpts,
        job: { z: k, x: j.x, y: j.y },
        bottom,
        limits,
        kernel,
        bands,
        encode,
        parent: parent?.dir,
      };
      const p: Promise<void> = pool.run<TaskResult>(task).then((r) => {
        accept(r, perJob(k, j.x, j.y));
        arrived(k, j.x, j.y, r.top);
      });
      const tracked: Promise<void> = p
        .catch((err) => {
          failure ??= { err };
        })
        .finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    await Promise.all(inFlight);
    opts.signal?.removeEventListener('abort', onAbort);
    if (failure) throw (failure as { err: unknown }).err;
    // merges can add merges: wait until the list stops growing
    for (let i = 0; i < merges.length; i++) await merges[i];
    await writing;

    // limits cover the whole chain: a level this update left alone still has the parent's tiles
    const levels: LevelInfo[] = [];
    for (let z = top; z <= bottom; z++) {
      const l = unionLimits(present[z], pd?.levels.find((pl) => pl.limits.z === z)?.limits);
      if (l) levels.push({ id: String(z), limits: l, tiles: counts[z] });
    }
    if (opts.signal?.aborted) throw new TuileError('Internal', 'build interrupted');
    if (tilesWritten === 0) {
      throw new TuileError('InvalidInput', parent ? `the inputs change no tile of ${parent.dir}` : 'the inputs hold no data at these levels');
    }
    const stats = await w.finish();
    writer = null;
    const seconds = (Date.now() - started) / 1000;
    const chainBbox = pd ? unionBbox([bbox, pd.bbox]) : bbox;
    const descriptor: PyramidDescriptor = {
      format: 'tuile-pyramid',
      version: 1,
      id: randomUUID(),
      tms: PM.id,
      tileSize: PM.tileSize,
      tileFormat: format,
      bands,
      nodata: nodataColor,
      interpolation: kernel,
      quality: format === 'png' ? undefined : (quality ?? 85),
      bottom,
      top,
      levels,
      bbox: chainBbox,
      bboxLonLat: lonLatOf(chainBbox),
      // paths relative to the published folder, so that a tree of pyramids can be moved whole
      parents: parent ? chainParents(parent.dir, pd!, out) : [],
      sources: inputs.map((p) => basename(p)),
      created: new Date().toISOString(),
      stats: { tiles: tilesWritten, bytes: stats.bytes, seconds },
    };
    await writeFileSynced(join(tmp, DESCRIPTOR), JSON.stringify(descriptor, null, 2) + '\n');
    await pyramidStorage().publish(tmp, out);
    return { descriptor, tiles: tilesWritten, bytes: stats.bytes, seconds };
  } catch (err) {
    stopped = true;
    await writing.catch(() => {});
    await writer?.abort().catch(() => {});
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}
