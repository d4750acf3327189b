#!/usr/bin/env node
// Command line: `tuile build`, `tuile merge`, `tuile inspect`. Any error: one line on stderr and a non-zero exit.

import { parseArgs } from 'node:util';
import { TuileError, errorMessage } from './errors.js';
import type { BuildOptions } from './pyramid/build.js';
import { isAbsolute, resolve } from 'node:path';
import { ARCHIVE } from './pyramid/descriptor.js';
import { PMTilesReader } from './pyramid/pmtiles/reader.js';
import { pyramidStorage, readDescriptor } from './pyramid/storage.js';
import { formatOfName } from './formats.js';
import { KERNEL_NAMES } from './raster/resample.js';
import { parseScale } from './raster/scale.js';
import { WorkerPool } from './pyramid/workers.js';

const USAGE = `usage:
  tuile build <input.tif>... --out DIR [--parent DIR] [--bottom N] [--top N] [--compression jpg|png|webp]
              [--interpolation nn|linear|bicubic|lanczos] [--quality Q] [--png-level L]
              [--nodata V[,V,V]] [--bands B[,B,B]] [--scale MIN,MAX[,MIN,MAX...]] [--workers N] [--quiet]
      --scale: maps MIN..MAX onto 0..255 (one pair for all bands or one per band), as gdal_translate -scale;
               16-bit inputs without it use each band's minimum and maximum
      --parent DIR: an update of that pyramid: only the tiles the inputs change are stored, the rest
                    read through its chain; levels, compression, interpolation, quality and nodata
                    default to the parent's
  tuile merge DIR... --out DIR [--top N] [--bottom N] [--bbox=W,S,E,N] [--parallelization N] [--quiet]
      one standalone pyramid from a chained pyramid, or from several pyramids of one format (later ones
      over earlier ones): tiles one input holds are copied byte for byte, overlapping ones composited
  tuile inspect DIR [--json]   (the pyramid, its levels and its parent chain, nearest first)
  tuile serve [--layer NAME=DIR]... [--port N]   (without --layer: the server of npm start, layers from the management API)`;

function intOption(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new TuileError('InvalidParameter', `--${name} must be an integer from ${min} to ${max}, not '${v}'`);
  return n;
}

function intList(v: string | undefined, name: string): number[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) throw new TuileError('InvalidParameter', `--${name}: '${v}' is not a list of integers`);
  return parts;
}

function progressBar(): (done: number, total: number) => void {
  if (!process.stderr.isTTY) return () => {};
  let last = -1;
  return (done, total) => {
    const pct = total ? Math.floor((1000 * done) / total) : 1000;
    if (pct === last) return;
    last = pct;
    const width = 30;
    const filled = Math.round((width * pct) / 1000);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(pct / 10).toFixed(1)}% ${done}/${total} tiles`);
    if (done >= total) process.stderr.write('\n');
  };
}

async function build(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      parent: { type: 'string' },
      bottom: { type: 'string' },
      top: { type: 'string' },
      compression: { type: 'string' },
      format: { type: 'string' },
      interpolation: { type: 'string' },
      quality: { type: 'string' },
      'png-level': { type: 'string' },
      nodata: { type: 'string' },
      bands: { type: 'string' },
      scale: { type: 'string' },
      workers: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length === 0) throw new TuileError('InvalidParameter', 'build needs at least one input GeoTIFF');
  if (!values.out) throw new TuileError('InvalidParameter', 'build needs --out DIR');
  // left out: the parent's in an update, the defaults of buildPyramid otherwise
  const fmtName = values.compression ?? values.format;
  const format = fmtName === undefined ? undefined : formatOfName(fmtName);
  if (fmtName !== undefined && !format) throw new TuileError('InvalidParameter', `unknown compression '${fmtName}' (jpg, png, webp)`);
  const kname = values.interpolation;
  const kernel = kname === undefined ? undefined : KERNEL_NAMES[kname];
  if (kname !== undefined && !kernel) throw new TuileError('InvalidParameter', `unknown interpolation '${kname}' (nn, linear, bicubic, lanczos)`);
  // Ctrl-C or SIGTERM: stop the build, which then removes its temporary folder
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const opts: BuildOptions = {
    signal: controller.signal,
    inputs: positionals,
    out: values.out,
    parent: values.parent,
    bottom: intOption(values.bottom, 'bottom', 0, 24),
    top: intOption(values.top, 'top', 0, 24),
    format,
    interpolation: kernel,
    quality: intOption(values.quality, 'quality', 1, 100),
    pngLevel: intOption(values['png-level'], 'png-level', 0, 9),
    nodataColor: intList(values.nodata, 'nodata'),
    bands: intList(values.bands, 'bands'),
    scale: values.scale === undefined ? undefined : parseScale(values.scale),
    workers: intOption(values.workers, 'workers', 1, 256),
    onProgress: values.quiet ? undefined : progressBar(),
  };
  // The workers start before this thread loads the builder's modules (geotiff, proj4: ~0.1 s), and load theirs
  // meanwhile; the pool is started as buildPyramid would.
  const pool = new WorkerPool(opts.workers, opts.format !== 'png' || opts.parent !== undefined);
  let result;
  try {
    const { buildPyramid } = await import('./pyramid/build.js');
    result = await buildPyramid({ ...opts, pool });
  } finally {
    await pool.close();
  }
  const d = result.descriptor;
  if (!values.quiet) {
    const over = d.parents.length > 0 ? ` (update of ${d.parents[0].id}, chain of ${d.parents.length + 1})` : '';
    console.log(
      `built ${values.out}: ${result.tiles} tiles, ${result.bytes} bytes, levels ${d.top}-${d.bottom}, ${d.tileFormat}, ${result.seconds.toFixed(2)} s${over}`,
    );
  }
}

async function merge(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      top: { type: 'string' },
      bottom: { type: 'string' },
      bbox: { type: 'string' },
      parallelization: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length === 0) throw new TuileError('InvalidParameter', 'merge needs at least one pyramid folder');
  if (!values.out) throw new TuileError('InvalidParameter', 'merge needs --out DIR');
  let bbox: [number, number, number, number] | undefined;
  if (values.bbox !== undefined) {
    const v = values.bbox.split(',').map((s) => Number(s.trim()));
    if (v.length !== 4 || v.some((x) => !Number.isFinite(x))) throw new TuileError('InvalidParameter', `--bbox takes W,S,E,N in degrees, not '${values.bbox}'`);
    bbox = v as [number, number, number, number];
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const { fusePyramids } = await import('./pyramid/fuse.js');
  const r = await fusePyramids({
    inputs: positionals,
    out: values.out,
    top: intOption(values.top, 'top', 0, 24),
    bottom: intOption(values.bottom, 'bottom', 0, 24),
    bbox,
    parallelization: intOption(values.parallelization, 'parallelization', 1, 64),
    signal: controller.signal,
    onProgress: values.quiet ? undefined : progressBar(),
  });
  const d = r.descriptor;
  if (!values.quiet) {
    console.log(
      `merged ${values.out}: ${r.tiles} tiles (${r.copied} copied, ${r.composited} composited), ${r.bytes} bytes, levels ${d.top}-${d.bottom}, ${d.tileFormat}, ${r.seconds.toFixed(2)} s`,
    );
  }
}

async function inspect(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new TuileError('InvalidParameter', 'inspect needs one pyramid folder');
  const dir = positionals[0];
  const d = await readDescriptor(dir);
  const reader = await PMTilesReader.open(await pyramidStorage().openArchive(dir));
  const archiveTiles = reader.tileCount;
  await reader.close();
  // where each parent is, and whether it is still there: a broken chain is what an operator looks for
  const chain = await Promise.all(
    d.parents.map(async (p) => {
      const folder = isAbsolute(p.path) ? p.path : resolve(dir, p.path);
      const found = await readDescriptor(folder).then(
        (pd) => (pd.id === p.id ? 'ok' : `holds pyramid ${pd.id}`),
        () => 'missing',
      );
      return { id: p.id, path: p.path, folder, status: found };
    }),
  );
  if (values.json) {
    console.log(JSON.stringify({ ...d, archive: { file: ARCHIVE, tiles: archiveTiles }, chain }, null, 2));
    return;
  }
  const b = d.bboxLonLat;
  const lines = [
    `pyramid ${d.id} (${dir})`,
    `  tms ${d.tms}, ${d.tileSize} px tiles, ${d.tileFormat}, ${d.bands} band(s), interpolation ${d.interpolation}, nodata ${d.nodata.join(',')}`,
    `  levels ${d.top}-${d.bottom}, extent lon ${b.minX.toFixed(5)}..${b.maxX.toFixed(5)} lat ${b.minY.toFixed(5)}..${b.maxY.toFixed(5)}`,
    `  archive ${ARCHIVE}: ${archiveTiles} tiles, ${d.stats.bytes} bytes; sources ${d.sources.join(', ')}`,
    `  chain: ${d.parents.length === 0 ? 'none (root pyramid)' : `${d.parents.length} parent(s), nearest first`}`,
    ...chain.map((p, i) => `  parent ${i + 1}: ${p.id} ${p.folder}${p.status === 'ok' ? '' : ` (${p.status})`}`),
    ...(d.fusedFrom ? [`  merged from ${d.fusedFrom.length} pyramid(s), none of which it reads: ${d.fusedFrom.join(', ')}`] : []),
    ...d.levels.map((l) => `  level ${l.id.padStart(2)}: x ${l.limits.minX}-${l.limits.maxX}, y ${l.limits.minY}-${l.limits.maxY}, ${l.tiles} tiles`),
  ];
  console.log(lines.join('\n'));
}

async function serveCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { layer: { type: 'string', multiple: true }, port: { type: 'string' } } });
  // the server stack takes about a second to load: `build` and `inspect` must not pay for it
  const [{ loadConfig }, { start }] = await Promise.all([import('./config.js'), import('./main.js')]);
  const cfg = loadConfig();
  if (values.port !== undefined) cfg.port = intOption(values.port, 'port', 0, 65535)!;
  const layers = values.layer?.map((l) => {
    const i = l.indexOf('=');
    if (i <= 0) throw new TuileError('InvalidParameter', `--layer takes NAME=DIR, not '${l}'`);
    return { name: l.slice(0, i), dir: resolve(l.slice(i + 1)) };
  });
  await start(cfg, { layers });
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'build':
      return build(rest);
    case 'merge':
      return merge(rest);
    case 'inspect':
      return inspect(rest);
    case 'serve':
      return serveCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return;
    default:
      throw new TuileError('InvalidParameter', `unknown command '${cmd}'\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof TuileError && (err.message === 'build interrupted' || err.message === 'merge interrupted')) {
    process.stderr.write(`tuile: ${err.message}, nothing written\n`);
    process.exit(130);
  }
  process.stderr.write(`tuile: ${errorMessage(err).split('\n')[0]}\n`);
  // 2 for a command line we could not take (bad option or value), 1 for everything else
  const usage = (err instanceof TuileError && err.code === 'InvalidParameter') || String((err as { code?: string }).code).startsWith('ERR_PARSE_ARGS');
  process.exit(usage ? 2 : 1);
});
