// ByteSource: the bytes of one archive, read by range (DESIGN 8), as the `pmtiles` package's `Source` is
// the seam under its reader. The local file is the first implementation; object storage the second.

import { open, type FileHandle } from 'node:fs/promises';
import { TuileError, errorMessage } from '../errors.js';

export interface ByteSource {
  /** Where the bytes are (a path, a URL): names the archive in error messages. */
  readonly key: string;
  /** Total length in bytes, known at open. */
  readonly size: number;
  /** Version of the bytes when the store has one (an object's ETag); a reader opened on one version reads only that one. */
  readonly etag?: string;
  /** `length` bytes at `offset`; fewer only where the source ends before `offset + length`. */
  getBytes(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Reads until `into` is full or the file ends (a positioned read may return less than asked). */
export async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** A local file on one handle kept open: each range is one positioned read, with no seek state to share. */
export class FileSource implements ByteSource {
  private fh: FileHandle | null;

  private constructor(
    readonly key: string,
    fh: FileHandle,
    readonly size: number,
  ) {
    this.fh = fh;
  }

  static async open(path: string): Promise<FileSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TuileError(code === 'ENOENT' ? 'NotFound' : 'InvalidInput', `cannot open ${path}: ${errorMessage(err)}`);
    }
    try {
      return new FileSource(path, fh, (await fh.stat()).size);
    } catch (err) {
      await fh.close().catch(() => {});
      throw new TuileError('InvalidInput', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async getBytes(offset: number, length: number): Promise<Uint8Array> {
    const fh = this.fh;
    if (!fh) throw new TuileError('Internal', `${this.key} is closed`);
    const buf = new Uint8Array(length);
    // one read is the whole range but for a short read at the end of the file (a tile read stays one syscall)
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    if (bytesRead === length) return buf;
    const rest = bytesRead === 0 ? 0 : await readFully(fh, buf.subarray(bytesRead), offset + bytesRead);
    return buf.subarray(0, bytesRead + rest);
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}
