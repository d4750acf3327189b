// Upload files in object storage (#17): with TUILE_STORAGE_URL, a file pushed to an upload is copied to
// `{prefix}/uploads/{id}/{path}` once received whole, so that any node can check or build the upload. The
// data folder's `uploads/{id}/data/` stays the working copy the checks and builds read; a node that lacks
// files fetches them from the store first. Without the variable every call here does nothing.

import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, posix, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { TuileError, errorMessage } from './errors.js';
import { parseStorageUrl } from './pyramid/storage.js';

export interface UploadStorage {
  /** After the file `file`, at `rel` under the upload's data folder, was received whole. */
  saved(id: string, rel: string, file: string): Promise<void>;
  /** After the file or folder `rel` of the upload was removed, or the whole upload (`rel` undefined). */
  removed(id: string, rel?: string): Promise<void>;
  /** Before the files are read: brings into `dir` (the upload's data folder) the files it lacks. */
  fetch(id: string, dir: string): Promise<void>;
}

const nothing: UploadStorage = {
  saved: async () => {},
  removed: async () => {},
  fetch: async () => {},
};

// parts of a file's upload, as for archives (S3's minimum is 5 MiB)
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

class S3Uploads implements UploadStorage {
  private client: Promise<S3Client> | undefined;

  constructor(
    private readonly url: string,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly endpoint: string | undefined,
  ) {}

  // the SDK is loaded at first use: the pyramid storage's client settings (path style, checksums), and its own socket pool
  private s3(): Promise<S3Client> {
    return (this.client ??= import('./pyramid/s3.js').then((m) => m.newS3Client(this.endpoint)));
  }

  private keyOf(id: string, rel = ''): string {
    return [this.prefix, 'uploads', id, rel.split(sep).join(posix.sep)].filter(Boolean).join('/');
  }

  async saved(id: string, rel: string, file: string): Promise<void> {
    const [{ Upload }, client] = await Promise.all([import('@aws-sdk/lib-storage'), this.s3()]);
    try {
      const Body = createReadStream(file);
      await new Upload({ client, params: { Bucket: this.bucket, Key: this.keyOf(id, rel), Body }, partSize: PART_BYTES, queueSize: PARTS_IN_FLIGHT }).done();
    } catch (err) {
      throw new TuileError('OutputError', `cannot store ${rel} of upload ${id} in ${this.url}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Keys and sizes under the upload's prefix (or one path of it). */
  private async list(id: string, rel?: string): Promise<{ key: string; size: number }[]> {
    const [{ ListObjectsV2Command }, client] = await Promise.all([import('@aws-sdk/client-s3'), this.s3()]);
    const out: { key: string; size: number }[] = [];
    const base = `${this.keyOf(id)}/`;
    const under = rel ? this.keyOf(id, rel) : base;
    let token: string | undefined;
    do {
      const r = await client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: under, ContinuationToken: token }));
      for (const o of r.Contents ?? []) {
        // `a/b` must not take `a/bc` along: the path itself, or what lies under it
        if (o.Key && (o.Key === under || o.Key.startsWith(under.endsWith('/') ? under : `${under}/`))) out.push({ key: o.Key.slice(base.length), size: o.Size ?? 0 });
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async removed(id: string, rel?: string): Promise<void> {
    const [{ DeleteObjectCommand }, client] = await Promise.all([import('@aws-sdk/client-s3'), this.s3()]);
    try {
      for (const o of await this.list(id, rel)) await client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(id, o.key) }));
    } catch (err) {
      throw new TuileError('OutputError', `cannot remove upload ${id}${rel ? `'s ${rel}` : ''} from ${this.url}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async fetch(id: string, dir: string): Promise<void> {
    const [{ GetObjectCommand }, client] = await Promise.all([import('@aws-sdk/client-s3'), this.s3()]);
    for (const o of await this.list(id)) {
      const target = join(dir, ...o.key.split('/'));
      if (relative(dir, target).startsWith('..')) continue;
      const here = await stat(target).catch(() => null);
      if (here?.isFile() && here.size === o.size) continue;
      // through a .part file, which listings skip and the orphan collection removes: never a half file in place
      const tmp = join(dirname(target), `.${randomUUID().slice(0, 8)}.part`);
      try {
        await mkdir(dirname(target), { recursive: true });
        const r = await client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(id, o.key) }));
        await pipeline(r.Body as Readable, createWriteStream(tmp));
        await rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => {});
        throw new TuileError('Internal', `cannot fetch ${o.key} of upload ${id} from ${this.url}: ${errorMessage(err)}`, { cause: err });
      }
    }
  }
}

let current: UploadStorage | undefined;

/** Where uploads are kept beside the data folder: the store of TUILE_STORAGE_URL, or nowhere else. */
export function uploadStorage(): UploadStorage {
  if (!current) {
    const url = process.env.TUILE_STORAGE_URL;
    if (!url) current = nothing;
    else {
      const { bucket, prefix } = parseStorageUrl(url);
      current = new S3Uploads(url, bucket, prefix, process.env.TUILE_S3_ENDPOINT || undefined);
    }
  }
  return current;
}
