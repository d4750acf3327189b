// Writing a pyramid folder and publishing it: the archive and descriptor are written into a temporary folder
// beside the output, and the finished folder is put in place in one step (publishPyramid), so that a failed or
// interrupted build or merge leaves nothing at the output. Builds and merges both write through PyramidOutput.

import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TuileError, errorMessage } from '../errors.js';
import type { Bbox } from '../geo/tms.js';
import type { TileFormat } from '../formats.js';
import { ARCHIVE, DESCRIPTOR, type PyramidDescriptor } from './descriptor.js';
import { lonLatOf } from './plan.js';
import { PMTilesWriter } from './pmtiles/writer.js';
import { pyramidStorage } from './storage.js';

/** Refuses an output that exists and is not an empty folder: checked before any work starts. */
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

/**
 * Puts the finished pyramid folder `tmp` in place at `out`: the one step after which it exists for readers.
 * `out` is absent or an empty folder (prepareOut), so removing it loses nothing.
 */
export async function publishPyramid(tmp: string, out: string): Promise<void> {
  await pyramidStorage().publish(tmp, out);
}

/** A pyramid being written beside its output folder: its archive, then its descriptor, then published whole. */
export class PyramidOutput {
  private constructor(
    readonly out: string,
    readonly tmp: string,
    readonly writer: PMTilesWriter,
  ) {}

  /** Opens the temporary folder and the archive of a pyramid to be published at `out` (see prepareOut). */
  static async create(out: string, format: TileFormat, top: number, bottom: number, bbox: Bbox): Promise<PyramidOutput> {
    const tmp = await tempBeside(out);
    try {
      return new PyramidOutput(out, tmp, await createArchive(tmp, out, format, top, bottom, bbox));
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /**
   * Finishes the archive, writes the descriptor `describe` makes from the archive's size, and publishes the
   * folder. On failure the caller discards it.
   */
  async publish(describe: (archiveBytes: number) => PyramidDescriptor): Promise<{ descriptor: PyramidDescriptor; bytes: number }> {
    const { bytes } = await this.writer.finish();
    const descriptor = describe(bytes);
    await writeFileSynced(join(this.tmp, DESCRIPTOR), JSON.stringify(descriptor, null, 2) + '\n');
    await publishPyramid(this.tmp, this.out);
    return { descriptor, bytes };
  }

  /** Drops everything written: the archive's temporary files and the folder. Never throws. */
  async discard(): Promise<void> {
    await this.writer.abort().catch(() => {});
    await rm(this.tmp, { recursive: true, force: true }).catch(() => {});
  }
}
