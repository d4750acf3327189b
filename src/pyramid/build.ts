// Pyramid builds: plans levels, limits and jobs with pure math (plan.ts), runs the pixel work on the worker pool
// in quadtree order (quadtree.ts merges finished children into parents), streams tiles into a PMTiles archive,
// and publishes the folder in one step (publish.ts).
// An update build (`parent`) stores only the tiles its delivery changes; the rest read through (DESIGN 5).

import { randomUUID } from 'node:crypto';
import { basename, isAbsolute, relative, resolve } from 'node:path';
import { TuileError } from '../errors.js';
import { PM, unionBbox, type TileLimits } from '../geo/tms.js';
import { deliveryFootprint } from '../raster/footprint.js';
import { GeoTiffSource, type OpenOptions, type RasterInfo } from '../raster/geotiff.js';
import type { ScaleRange } from '../raster/scale.js';
import type { Kernel } from '../raster/resample.js';
import type { TileFormat } from '../formats.js';
import type { EncodeOptions } from '../tiles/codec.js';
import { PyramidChain } from './chain.js';
import type { LevelInfo, PyramidDescriptor } from './descriptor.js';
import { lonLatOf, planBuild, subtreeTiles, unionLimits, type BuildPlan } from './plan.js';
import { zxyToTileId } from './pmtiles/tileid.js';
import type { PMTilesWriter } from './pmtiles/writer.js';
import { PyramidOutput, prepareOut } from './publish.js';
import { QuadtreeMerger } from './quadtree.js';
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

/** The parent and its own parents, nearest first, with paths rebased onto the new pyramid folder. */
export function chainParents(parentDir: string, parent: PyramidDescriptor, out: string): { id: string; path: string }[] {
  const rel = (dir: string) => relative(out, dir) || '.';
  return [
    { id: parent.id, path: rel(parentDir) },
    ...parent.parents.map((p) => ({ id: p.id, path: rel(isAbsolute(p.path) ? p.path : resolve(parentDir, p.path)) })),
  ];
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

/** The metadata of every input, and for 16-bit files without a range their bands' ranges, read once into `openOpts`. */
async function readInputs(inputs: string[], openOpts: OpenOptions): Promise<RasterInfo[]> {
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
  return infos;
}

/** Streams the encoded tiles of task results into the archive, and counts what the descriptor reports. */
class TileCollector {
  /** the extent of the tiles stored, per level */
  readonly present: (TileLimits | null)[];
  readonly counts: number[];
  tiles = 0;
  private done = 0;
  private stopped = false; // after a failure, late results are dropped instead of written
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly writer: PMTilesWriter,
    private readonly plan: BuildPlan,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {
    this.present = plan.limits.map(() => null);
    this.counts = plan.limits.map(() => 0);
  }

  /** A task's tiles, standing for `processed` tiles of the plan (those it found blank or unchanged included). */
  accept(r: TaskResult, processed: number): void {
    if (this.stopped) return;
    // in tile id order: a job's tiles of a level are then one run of the archive's final (Hilbert) order in its
    // temporary file, which finish() copies in a few large reads instead of one per tile
    const ids = new Map(r.tiles.map((t) => [t, zxyToTileId(t.z, t.x, t.y)]));
    r.tiles.sort((a, b) => ids.get(a)! - ids.get(b)!);
    for (const t of r.tiles) {
      const p = this.present[t.z];
      this.present[t.z] = p
        ? { z: t.z, minX: Math.min(p.minX, t.x), maxX: Math.max(p.maxX, t.x), minY: Math.min(p.minY, t.y), maxY: Math.max(p.maxY, t.y) }
        : { z: t.z, minX: t.x, maxX: t.x, minY: t.y, maxY: t.y };
      this.counts[t.z]++;
      this.tiles++;
      this.writing = this.writing.then(() => this.writer.addTile(t.z, t.x, t.y, t.data));
      this.writing.catch(() => {}); // awaited at the end; a failure must not go unhandled before that
    }
    this.done += processed;
    this.onProgress?.(this.done, this.plan.total);
  }

  /** Every accepted tile handed to the archive; rejects with the first write failure. */
  written(): Promise<void> {
    return this.writing;
  }

  /** Drops whatever arrives from now on (the build failed). */
  stop(): void {
    this.stopped = true;
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
  const infos = await readInputs(inputs, openOpts);
  const { bbox, finest } = deliveryFootprint(infos);
  const plan = planBuild({ bbox, finest, bottom: opts.bottom ?? pd?.bottom, top: opts.top ?? pd?.top });
  const { top, bottom, limits } = plan;
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

  const output = await PyramidOutput.create(out, format, top, bottom, bbox);
  const collector = new TileCollector(output.writer, plan, opts.onProgress);
  try {
    // Levels above the job level: a parent is merged on the pool as soon as its children in limits have arrived.
    const merger = new QuadtreeMerger(plan, {
      merge: async (tile, children) => {
        const task: MergeTask = { kind: 'merge', tile, children, bands, encode, parent: parent?.dir };
        const transfer = children.flatMap((c) => (c ? [c.data.buffer as ArrayBuffer, c.alpha.buffer as ArrayBuffer] : []));
        const r = await pool.run<TaskResult>(task, transfer, true);
        collector.accept(r, 1);
        return r.top;
      },
      // nothing below changed (update) or holds data: no task, and nothing to store
      skip: () => collector.accept({ tiles: [], top: null }, 1),
    });

    // Bounded in-flight jobs keep memory flat whatever the size of the input.
    const maxInFlight = pool.size * 2;
    const inFlight = new Set<Promise<void>>();
    let failure: { err: unknown } | null = null;
    const onAbort = () => {
      failure ??= { err: new TuileError('Internal', 'build interrupted') };
    };
    opts.signal?.addEventListener('abort', onAbort);
    if (opts.signal?.aborted) onAbort();
    for (const job of plan.jobs) {
      while (inFlight.size >= maxInFlight && !failure) await Promise.race(inFlight);
      if (failure) break;
      const task: SubtreeTask = { kind: 'subtree', sources: inputs, open: openOpts, job, bottom, limits, kernel, bands, encode, parent: parent?.dir };
      const p: Promise<void> = pool.run<TaskResult>(task).then((r) => {
        collector.accept(r, subtreeTiles(plan, job));
        merger.arrived(job, r.top);
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
    await merger.settled();
    await collector.written();

    // limits cover the whole chain: a level this update left alone still has the parent's tiles
    const levels: LevelInfo[] = [];
    for (let z = top; z <= bottom; z++) {
      const l = unionLimits(collector.present[z], pd?.levels.find((pl) => pl.limits.z === z)?.limits);
      if (l) levels.push({ id: String(z), limits: l, tiles: collector.counts[z] });
    }
    if (opts.signal?.aborted) throw new TuileError('Internal', 'build interrupted');
    const tiles = collector.tiles;
    if (tiles === 0) {
      throw new TuileError('InvalidInput', parent ? `the inputs change no tile of ${parent.dir}` : 'the inputs hold no data at these levels');
    }
    let seconds = 0;
    const { descriptor, bytes } = await output.publish((archiveBytes) => {
      seconds = (Date.now() - started) / 1000;
      const chainBbox = pd ? unionBbox([bbox, pd.bbox]) : bbox;
      return {
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
        stats: { tiles, bytes: archiveBytes, seconds },
      };
    });
    return { descriptor, tiles, bytes, seconds };
  } catch (err) {
    collector.stop();
    await collector.written().catch(() => {});
    await output.discard();
    throw err;
  }
}
