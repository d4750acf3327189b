// Pyramids in S3-compatible object storage (DESIGN 8): a pyramid folder `.../pyramids/{name}` is the
// objects `{prefix}/pyramids/{name}/pyramid.json` and `.../tiles.pmtiles`. Archives are read by ranged
// GETs behind the ByteSource seam and written by multipart upload; loaded only when the storage is S3.

import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TuileError, errorMessage } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { ARCHIVE, DESCRIPTOR, parseDescriptor, type PyramidDescriptor } from './descriptor.js';

/**
 * Bytes fetched at open: the PMTiles header and root directory lie in the first 16 KiB (spec v3, "Root
 * Directory"), and usually the metadata too, so the reader's open costs one request, then one for the leaves.
 */
const PREFETCH = 16384;
// parts of the archive upload: S3's minimum is 5 MiB; four in flight keep a link busy without holding much memory
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

function isMissing(err: unknown): boolean {
  return err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata.httpStatusCode === 404);
}

/** An archive object read by ranges; every range is asked for the version the reader opened (If-Match). */
class S3Source implements ByteSource {
  private constructor(
    readonly key: string,
    readonly size: number,
    readonly etag: string | undefined,
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly object: string,
    private readonly head: Uint8Array,
  ) {}

  static async open(client: S3Client, bucket: string, object: string): Promise<S3Source> {
    const key = `s3://${bucket}/${object}`;
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: object, Range: `bytes=0-${PREFETCH - 1}` }));
      const head = res.Body ? await res.Body.transformToByteArray() : new Uint8Array(0);
      // "bytes 0-16383/123456": the total is the archive's size; without a range the whole object came
      const total = /\/(\d+)$/.exec(res.ContentRange ?? '');
      return new S3Source(key, total ? Number(total[1]) : head.length, res.ETag, client, bucket, object, head);
    } catch (err) {
      if (isMissing(err)) throw new TuileError('NotFound', `cannot open ${key}: no such object`);
      // an empty object has no byte 0 to range over: the reader then calls it shorter than a header
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 416) {
        return new S3Source(key, 0, undefined, client, bucket, object, new Uint8Array(0));
      }
      // the store failing is the server's trouble, not a bad input: 500, as a failing disk
      throw new TuileError('Internal', `cannot read ${key}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async getBytes(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return new Uint8Array(0);
    if (end <= this.head.length) return this.head.slice(offset, end);
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.object, Range: `bytes=${offset}-${end - 1}`, IfMatch: this.etag }),
      );
      return res.Body ? await res.Body.transformToByteArray() : new Uint8Array(0);
    } catch (err) {
      const replaced = err instanceof S3ServiceException && err.$metadata.httpStatusCode === 412;
      throw new TuileError(
        replaced ? 'InvalidInput' : 'Internal',
        replaced ? `${this.key} was replaced since it was opened` : `cannot read ${this.key} at ${offset}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }

  async close(): Promise<void> {
    // the client and its sockets are the storage's, shared by every archive
  }
}

/** A client of the store: path-style addressing at a custom endpoint, region and credentials from the SDK's usual chain. */
export function newS3Client(endpoint: string | undefined): S3Client {
  // The SDK prints, once per process, that its releases from 2027 on need Node 22: on stderr, where the CLI
  // promises one line per error. It is a notice about future releases, for whoever updates package.json.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // the SDK's default CRC trailers (aws-chunked uploads) are newer than several S3-compatible stores
    // (Swift's s3api, older Ceph); S3 itself accepts either
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

// a PyramidStorage (storage.ts checks it where it loads this module: an import back would be a loop)
export class S3Storage {
  readonly url: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly client: S3Client;

  /** `client`: another client of the same store (tests give one that counts requests). */
  constructor(url: string, { bucket, prefix }: { bucket: string; prefix: string }, endpoint?: string, client = newS3Client(endpoint)) {
    this.url = url;
    this.bucket = bucket;
    this.prefix = prefix;
    this.client = client;
  }

  /** The key of a file of the pyramid folder `dir`: folders are named by their last path segment. */
  private keyOf(dir: string, file?: string): string {
    return [this.prefix, 'pyramids', basename(resolve(dir)), file].filter(Boolean).join('/');
  }

  async readDescriptor(dir: string): Promise<PyramidDescriptor> {
    const key = this.keyOf(dir, DESCRIPTOR);
    let text: string;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      text = res.Body ? await res.Body.transformToString('utf8') : '';
    } catch (err) {
      if (isMissing(err)) throw new TuileError('NotFound', `${dir}: not a pyramid folder (no object s3://${this.bucket}/${key})`);
      throw new TuileError('Internal', `${dir}: cannot read s3://${this.bucket}/${key}: ${errorMessage(err)}`, { cause: err });
    }
    return parseDescriptor(text, dir);
  }

  openArchive(dir: string): Promise<ByteSource> {
    return S3Source.open(this.client, this.bucket, this.keyOf(dir, ARCHIVE));
  }

  async publish(tmp: string, out: string): Promise<void> {
    const params = (file: string, ContentType: string) => ({ Bucket: this.bucket, Key: this.keyOf(out, file), ContentType });
    try {
      // streamed from the file in parts (one PUT when smaller than a part): memory stays a few parts whatever the size
      const Body = createReadStream(join(tmp, ARCHIVE));
      await new Upload({ client: this.client, params: { ...params(ARCHIVE, 'application/vnd.pmtiles'), Body }, partSize: PART_BYTES, queueSize: PARTS_IN_FLIGHT }).done();
      // the descriptor last: a pyramid is there once its descriptor is, and its archive is whole by then
      await this.client.send(new PutObjectCommand({ ...params(DESCRIPTOR, 'application/json'), Body: await readFile(join(tmp, DESCRIPTOR)) }));
    } catch (err) {
      await this.remove(out).catch(() => {});
      throw new TuileError('OutputError', `cannot store ${basename(out)} in ${this.url}: ${errorMessage(err)}`, { cause: err });
    }
    await rm(tmp, { recursive: true, force: true });
  }

  async remove(dir: string): Promise<void> {
    // descriptor first: a half-removed pyramid reads as absent, never as a pyramid without its archive
    for (const file of [DESCRIPTOR, ARCHIVE]) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(dir, file) }));
      } catch (err) {
        if (!isMissing(err)) throw new TuileError('OutputError', `cannot remove ${this.keyOf(dir, file)} from ${this.url}: ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  async folders(): Promise<string[]> {
    const under = `${[this.prefix, 'pyramids'].filter(Boolean).join('/')}/`;
    const names: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: under, Delimiter: '/', ContinuationToken: token }));
      for (const p of res.CommonPrefixes ?? []) if (p.Prefix) names.push(p.Prefix.slice(under.length).replace(/\/$/, ''));
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return names;
  }
}
