// Upload checks and footprints: what a delivery is (its GeoTIFF files), whether it can be built, and where it lands.
// The checks run in a child process with a memory cap and a time limit: a delivery is hostile input, and
// parsing it in the process that owns the state and the API once took the server down (a TIFF whose IFD chain
// looped grew the heap until the primary died, and again at each restart). A check that goes over its limits
// is killed and reported as failed; serving never waits on one.
//
// This module is also the child's entry: `node checks.js --child` checks what its parent sends.

import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from './errors.js';
import { crsFromEpsg, parseCrs, sameCrs } from './geo/crs.js';
import { PM, levelForResolution, tileLimitsForBounds, unionBbox, type Bbox } from './geo/tms.js';
import { footprint3857, suggestedResolution } from './raster/footprint.js';
import { GeoTiffSource } from './raster/geotiff.js';

export interface CheckRequest {
  /** the upload's data folder */
  root: string;
  /** the declared CRS */
  srs: string;
  maxPixels: number;
  maxTiles: number;
}

export interface CheckResult {
  ok: boolean;
  logs: string[];
  /** the delivery's extent in EPSG:3857 and its bottom level, when the checks pass */
  footprint?: Footprint;
}

export interface CheckLimits {
  /** wall-clock time of one check run, ms */
  timeoutMs: number;
  /** memory of the check process (V8 heap cap and resident size), MiB */
  memoryMB: number;
}

/** How often the parent reads the child's resident size. */
const RSS_POLL_MS = 50;
/** Checks at once: each is a process of its own, on machines that also serve and build. */
const CONCURRENT = 2;

/** A checked delivery's extent in EPSG:3857 and the bottom level its resolution makes. */
export type Footprint = Bbox & { level: number };

const RASTER_FILE = /\.tiff?$/i;

/** GeoTIFF files of an upload, sorted: the delivery the checks read and an execution builds. */
export async function uploadFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && RASTER_FILE.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** Tiles of the bottom level `z` over an extent in EPSG:3857. */
export function tilesAt(b: Bbox, z: number): number {
  const l = tileLimitsForBounds(PM, z, b);
  return l ? (l.maxX - l.minX + 1) * (l.maxY - l.minY + 1) : 0;
}

/**
 * The bottom level a build of several checked deliveries makes (`bottom`, or the finest of theirs) and its tile
 * count over their union: what an execution is refused on before it runs.
 */
export function deliveriesTiles(prints: readonly Footprint[], bottom?: number): { bottom: number; tiles: number } {
  const z = bottom ?? Math.max(...prints.map((f) => f.level));
  return { bottom: z, tiles: tilesAt(unionBbox(prints), z) };
}

/** The checks themselves: every GeoTIFF of the delivery readable, georeferenced, in the declared CRS, of sane size. */
async function checkDelivery(req: CheckRequest): Promise<CheckResult> {
  const logs: string[] = [];
  let ok = true;
  const fail = (line: string) => {
    ok = false;
    logs.push(`ERROR ${line}`);
  };
  const files = await uploadFiles(req.root);
  let declared = null;
  try {
    declared = parseCrs(req.srs);
  } catch (err) {
    fail(`declared srs ${req.srs}: ${errorMessage(err)}`);
  }
  if (files.length === 0) fail('the upload holds no GeoTIFF file (.tif, .tiff)');
  const boxes: Bbox[] = [];
  let finest = Infinity;
  for (const f of files) {
    const name = relative(req.root, f);
    try {
      const src = await GeoTiffSource.open(f, { maxPixels: req.maxPixels });
      const info = src.info;
      await src.close();
      const box = footprint3857(info);
      boxes.push(box);
      finest = Math.min(finest, suggestedResolution(info, box));
      if (declared && !sameCrs(info.crs, declared)) {
        // an EPSG code in the file that names the declared CRS also counts as equal
        const same = info.crs.epsg !== undefined && declared.epsg !== undefined && sameCrs(crsFromEpsg(info.crs.epsg), declared);
        if (!same) fail(`${name}: its CRS (${info.crs.name}) is not the declared ${req.srs}`);
      }
      const validity = [info.nodata !== null ? `nodata ${info.nodata}` : '', info.alphaSample !== null ? 'alpha' : '', info.hasMask ? 'mask' : ''].filter(Boolean).join(', ') || 'all pixels valid';
      logs.push(`INFO ${name}: ${info.width}x${info.height} px, ${info.bands} band(s), ${info.crs.name}, ${validity}`);
    } catch (err) {
      // the file's name in the upload, not the server's path to it
      fail(`${name}: ${errorMessage(err).replaceAll(`${f}: `, '').replaceAll(f, name)}`);
    }
  }
  let footprint: CheckResult['footprint'];
  if (ok && boxes.length > 0) {
    const b = unionBbox(boxes);
    footprint = { ...b, level: levelForResolution(PM, finest) };
    const n = tilesAt(b, footprint.level);
    if (n > req.maxTiles) fail(`the delivery makes ${n} tiles at level ${footprint.level}, over the limit of ${req.maxTiles}`);
  }
  return { ok, logs, footprint: ok ? footprint : undefined };
}

/** Resident size of a process in MiB (Linux); undefined where /proc cannot tell. */
async function residentMB(pid: number): Promise<number | undefined> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

let running = 0;
const waiting: (() => void)[] = [];

async function slot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= CONCURRENT) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await work();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * Checks a delivery in a child process at a lower CPU priority. Past `limits`, the child is killed and the result
 * is a failure saying which limit and what was measured; a child that dies is a failure too. Never throws.
 */
export function checkIsolated(req: CheckRequest, limits: CheckLimits): Promise<CheckResult> {
  return slot(
    () =>
      new Promise<CheckResult>((resolve) => {
        const started = Date.now();
        const child = fork(fileURLToPath(import.meta.url), ['--child'], {
          // the V8 heap cap makes a growing heap fail fast; the resident size poll catches the rest (buffers)
          execArgv: [...(import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : []), `--max-old-space-size=${limits.memoryMB}`],
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        });
        try {
          setPriority(child.pid!, 10);
        } catch {
          // not permitted here: the check runs at the server's priority
        }
        let stderr = '';
        child.stderr!.on('data', (d: Buffer) => {
          if (stderr.length < 4096) stderr += d.toString();
        });
        let peakMB = 0;
        let verdict: CheckResult | null = null;
        let stopped: string | null = null;
        const stop = (why: string) => {
          if (stopped || verdict) return;
          stopped = why;
          child.kill('SIGKILL');
        };
        const timer = setTimeout(() => stop(`the check did not finish within ${limits.timeoutMs / 1000} s`), limits.timeoutMs);
        const poll = setInterval(() => {
          void residentMB(child.pid!).then((mb) => {
            if (mb === undefined) return;
            peakMB = Math.max(peakMB, mb);
            if (mb > limits.memoryMB) stop(`the check used ${Math.round(mb)} MiB of memory, over the limit of ${limits.memoryMB} MiB`);
          });
        }, RSS_POLL_MS);
        child.on('message', (m: CheckResult) => {
          verdict = m;
        });
        child.on('error', (err) => {
          if (child.pid !== undefined) return stop(`the check process failed: ${errorMessage(err)}`);
          // never started (no memory, no process left): there will be no exit to wait for
          clearTimeout(timer);
          clearInterval(poll);
          resolve({ ok: false, logs: [`ERROR the check process could not start (${errorMessage(err)}); close the upload again later`] });
        });
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          clearInterval(poll);
          if (verdict) return resolve(verdict);
          const seconds = ((Date.now() - started) / 1000).toFixed(1);
          const outOfHeap = /heap out of memory|Allocation failed/i.test(stderr);
          const why =
            stopped ??
            (outOfHeap
              ? `the check ran out of memory (over the limit of ${limits.memoryMB} MiB)`
              : `the check process ended (${signal ?? `exit code ${code}`}) without a result`);
          const peak = peakMB > 0 ? `, ${Math.round(peakMB)} MiB at most` : '';
          resolve({ ok: false, logs: [`ERROR ${why}: stopped after ${seconds} s${peak}; the delivery is refused (a file in it is probably malformed)`] });
        });
        if (child.connected) child.send(req);
      }),
  );
}

/** The child: one check, its result sent back, then exit. */
function child(): void {
  process.once('message', (req: CheckRequest) => {
    checkDelivery(req).then(
      (result) => process.send!(result, () => process.exit(0)),
      (err) => process.send!({ ok: false, logs: [`ERROR the check failed: ${errorMessage(err)}`] } satisfies CheckResult, () => process.exit(1)),
    );
  });
  process.on('disconnect', () => process.exit(1));
}

if (process.argv[2] === '--child' && process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) child();
