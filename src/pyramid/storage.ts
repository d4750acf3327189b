// Pyramid storage: where a pyramid folder's descriptor and archive are read from. Pyramids are named by
// their folder path everywhere (state, descriptors' parent paths, layer specs); the storage decides
// what that folder is: the local folder itself, or objects in a store (DESIGN 8).

import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TuileError, errorMessage } from '../errors.js';
import { FileSource, type ByteSource } from './byte-source.js';
import { ARCHIVE, DESCRIPTOR, parseDescriptor, type PyramidDescriptor } from './descriptor.js';

export interface PyramidStorage {
  /** `file`, or the store's URL: names the storage in messages. */
  readonly url: string;
  /** The descriptor of the pyramid folder `dir`; NotFound when there is no pyramid there. */
  readDescriptor(dir: string): Promise<PyramidDescriptor>;
  /** The bytes of the pyramid's archive, for a PMTilesReader (which closes them). */
  openArchive(dir: string): Promise<ByteSource>;
  /**
   * Makes the complete local folder `tmp` (descriptor and archive) the pyramid `out`, all at once for its
   * readers: nothing is at `out` until the whole pyramid is. `tmp` is gone afterwards.
   */
  publish(tmp: string, out: string): Promise<void>;
  /** Removes the pyramid `dir`, if there is one. */
  remove(dir: string): Promise<void>;
  /** Names of the pyramid folders under `root` (the data folder's pyramids/). */
  folders(root: string): Promise<string[]>;
}

/** Pyramids as folders on the local file system: the embedded default. */
export const localStorage: PyramidStorage = {
  url: 'file',
  async readDescriptor(dir: string): Promise<PyramidDescriptor> {
    let text: string;
    try {
      text = await readFile(join(dir, DESCRIPTOR), 'utf8');
    } catch (err) {
      throw new TuileError('NotFound', `${dir}: not a pyramid folder (${errorMessage(err)})`);
    }
    return parseDescriptor(text, dir);
  },
  openArchive(dir: string): Promise<ByteSource> {
    return FileSource.open(join(dir, ARCHIVE));
  },
  async publish(tmp: string, out: string): Promise<void> {
    await rm(out, { recursive: true, force: true }); // the build made sure it is absent or empty
    await rename(tmp, out);
  },
  async remove(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  },
  async folders(root: string): Promise<string[]> {
    return existsSync(root) ? readdir(root) : [];
  },
};

/** Bucket and key prefix of `s3://bucket/prefix` (the prefix without slashes at its ends, maybe empty). */
export function parseStorageUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new TuileError('InvalidParameter', `TUILE_STORAGE_URL: ${url} is not s3://bucket[/prefix]`);
  return { bucket: m[1], prefix: (m[2] ?? '').replace(/^\/+|\/+$/g, '') };
}

/** S3-compatible storage, its SDK loaded at first use: the local default never pays for it. */
function objectStorage(url: string, endpoint: string | undefined): PyramidStorage {
  const where = parseStorageUrl(url);
  let s3: Promise<PyramidStorage> | undefined;
  const load = () => (s3 ??= import('./s3.js').then((m) => new m.S3Storage(url, where, endpoint)));
  return {
    url,
    readDescriptor: async (dir) => (await load()).readDescriptor(dir),
    openArchive: async (dir) => (await load()).openArchive(dir),
    publish: async (tmp, out) => (await load()).publish(tmp, out),
    remove: async (dir) => (await load()).remove(dir),
    folders: async (root) => (await load()).folders(root),
  };
}

let current: PyramidStorage | undefined;

/**
 * The storage of this process's pyramids: S3 when `TUILE_STORAGE_URL` is set (`TUILE_S3_ENDPOINT` for a
 * store other than AWS), the local folders otherwise. Read from the environment here, not from the config,
 * because build worker threads and check processes open pyramids too and inherit the environment only.
 */
export function pyramidStorage(): PyramidStorage {
  if (!current) {
    const url = process.env.TUILE_STORAGE_URL;
    current = url ? objectStorage(url, process.env.TUILE_S3_ENDPOINT || undefined) : localStorage;
  }
  return current;
}

/** Reads the descriptor of a pyramid folder from the process's storage. */
export function readDescriptor(dir: string): Promise<PyramidDescriptor> {
  return pyramidStorage().readDescriptor(dir);
}
