// The engines of the scale-out mode, as scripts/engines.sh starts them, answer what tuile asks of them:
// PostgreSQL a query, a transaction and LISTEN/NOTIFY through `pg`; the object store a put, a ranged get,
// a multipart upload of more than 5 MB and a delete through the AWS SDK. Skipped with one logged line
// without the engines, required when TUILE_REQUIRE_ENGINES=1.
import { createHash, randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { enginesOrSkip, freshStorageUrl, parseStorageUrl, s3Client } from './helpers/engines.js';
import { rng } from './helpers/random.js';

const WHAT = 'engines.test';

describe('PostgreSQL', () => {
  it('answers a query, keeps a committed transaction and drops a rolled back one', async () => {
    const e = enginesOrSkip(WHAT);
    if (!e) return;
    const client = new pg.Client({ connectionString: e.stateUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ v: string; n: number }>('SELECT version() AS v, $1::int + 1 AS n', [41]);
      expect(rows[0].v).toMatch(/^PostgreSQL 15\./);
      expect(rows[0].n).toBe(42);
      await client.query('CREATE TEMP TABLE t (k text PRIMARY KEY, doc jsonb)');
      await client.query('BEGIN');
      await client.query(`INSERT INTO t VALUES ('kept', '{"a": 1}')`);
      await client.query('COMMIT');
      await client.query('BEGIN');
      await client.query(`INSERT INTO t VALUES ('dropped', '{"a": 2}')`);
      await client.query('ROLLBACK');
      const kept = await client.query<{ k: string; a: number }>(`SELECT k, (doc->>'a')::int AS a FROM t ORDER BY k`);
      expect(kept.rows).toEqual([{ k: 'kept', a: 1 }]);
    } finally {
      await client.end();
    }
  });

  it('carries a NOTIFY from one connection to another listening', async () => {
    const e = enginesOrSkip(WHAT);
    if (!e) return;
    const listener = new pg.Client({ connectionString: e.stateUrl });
    const sender = new pg.Client({ connectionString: e.stateUrl });
    await listener.connect();
    await sender.connect();
    try {
      const channel = `engines_test_${process.pid}`;
      const got = new Promise<string | undefined>((res) => listener.once('notification', (n) => res(n.payload)));
      await listener.query(`LISTEN ${channel}`);
      await sender.query('SELECT pg_notify($1, $2)', [channel, 'version 7']);
      expect(await got).toBe('version 7');
    } finally {
      await listener.end();
      await sender.end();
    }
  });
});

describe('object store (S3 API)', () => {
  let s3: S3Client | undefined;
  const keys: { bucket: string; key: string }[] = [];

  afterAll(async () => {
    for (const k of keys) await s3?.send(new DeleteObjectCommand({ Bucket: k.bucket, Key: k.key })).catch(() => {});
    s3?.destroy();
  });

  function target(name: string): { bucket: string; key: string } | undefined {
    const e = enginesOrSkip(WHAT);
    if (!e) return undefined;
    s3 ??= s3Client(e);
    const { bucket, prefix } = parseStorageUrl(freshStorageUrl(e, name));
    const t = { bucket, key: `${prefix}/object.bin` };
    keys.push(t);
    return t;
  }

  async function body(key: { bucket: string; key: string }, range?: string): Promise<{ bytes: Buffer; status?: number; contentRange?: string }> {
    const r = await s3!.send(new GetObjectCommand({ Bucket: key.bucket, Key: key.key, Range: range }));
    return { bytes: Buffer.from(await r.Body!.transformToByteArray()), status: r.$metadata.httpStatusCode, contentRange: r.ContentRange };
  }

  it('takes a put and serves ranges of it, as the archive reader asks for headers and directories', async () => {
    const t = target('put');
    if (!t) return;
    const random = rng(17);
    const data = Buffer.from(Array.from({ length: 100_000 }, () => Math.floor(random() * 256)));
    await s3!.send(new PutObjectCommand({ Bucket: t.bucket, Key: t.key, Body: data, ContentType: 'application/octet-stream' }));
    const head = await s3!.send(new HeadObjectCommand({ Bucket: t.bucket, Key: t.key }));
    expect(head.ContentLength).toBe(data.length);
    expect(head.ETag).toBe(`"${createHash('md5').update(data).digest('hex')}"`);
    const first = await body(t, 'bytes=0-126');
    expect(first.status).toBe(206);
    expect(first.contentRange).toBe(`bytes 0-126/${data.length}`);
    expect(first.bytes.equals(data.subarray(0, 127))).toBe(true);
    const middle = await body(t, 'bytes=54321-60000');
    expect(middle.bytes.equals(data.subarray(54321, 60001))).toBe(true);
    const tail = await body(t, 'bytes=-10');
    expect(tail.bytes.equals(data.subarray(data.length - 10))).toBe(true);
  });

  it('assembles a multipart upload of more than 5 MB and lists, then deletes it', async () => {
    const t = target('multipart');
    if (!t) return;
    // 12 MB in 5 MB parts: three parts, the last one short, as a build streaming an archive writes them
    const data = randomBytes(12 << 20);
    const upload = new Upload({ client: s3!, params: { Bucket: t.bucket, Key: t.key, Body: data }, partSize: 5 << 20, queueSize: 2 });
    const done = await upload.done();
    expect(done.$metadata.httpStatusCode).toBe(200);
    // a multipart ETag is the MD5 of the parts' MD5s, then "-" and the count of parts
    expect(done.ETag).toMatch(/-3"$/);
    const whole = await body(t);
    expect(whole.bytes.length).toBe(data.length);
    expect(createHash('sha256').update(whole.bytes).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    // a range across the boundary of the first two parts
    const across = await body(t, `bytes=${(5 << 20) - 100}-${(5 << 20) + 99}`);
    expect(across.bytes.equals(data.subarray((5 << 20) - 100, (5 << 20) + 100))).toBe(true);
    const prefix = t.key.slice(0, t.key.lastIndexOf('/') + 1);
    const listed = await s3!.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix }));
    expect(listed.Contents?.map((c) => [c.Key, c.Size])).toEqual([[t.key, data.length]]);

    await s3!.send(new DeleteObjectCommand({ Bucket: t.bucket, Key: t.key }));
    const gone = await s3!.send(new HeadObjectCommand({ Bucket: t.bucket, Key: t.key })).then(
      () => 200,
      (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode,
    );
    expect(gone).toBe(404);
    const empty = await s3!.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix }));
    expect(empty.KeyCount ?? 0).toBe(0);
  });
});
