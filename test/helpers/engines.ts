// The scale-out engines of the tests (PostgreSQL, the S3-compatible store) as scripts/engines.sh started
// them: their settings come from process.env, else from the env file engines.sh writes
// ($ENGINES_DIR/../engines.env, .tmp/engines.env by default). A test that needs them calls
// `enginesOrSkip`: without them it logs one line and returns undefined, and fails instead when
// TUILE_REQUIRE_ENGINES=1 (CI starts the engines and sets it).
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { ROOT } from './fixtures.js';

export interface Engines {
  /** postgres://user:password@127.0.0.1:port/db */
  stateUrl: string;
  /** s3://bucket/prefix */
  storageUrl: string;
  /** http://127.0.0.1:port */
  s3Endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** every KEY=value of the env file (or process.env's values of those keys), to pass to a spawned node */
  env: Record<string, string>;
}

const KEYS = [
  'TUILE_TEST_STATE_URL',
  'TUILE_TEST_STORAGE_URL',
  'TUILE_S3_ENDPOINT',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_REGION',
  'AWS_REQUEST_CHECKSUM_CALCULATION',
  'AWS_RESPONSE_CHECKSUM_VALIDATION',
];
const REQUIRED = KEYS.slice(0, 6);

export function enginesEnvFile(): string {
  const dir = process.env.ENGINES_DIR ? resolve(process.env.ENGINES_DIR) : join(ROOT, '.tmp/engines');
  return join(dirname(dir), 'engines.env');
}

export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].trim();
  }
  return out;
}

/** The engines' settings, or undefined when neither process.env nor the env file names them all. */
export function engines(): Engines | undefined {
  let values: Record<string, string> = {};
  if (REQUIRED.every((k) => process.env[k])) {
    for (const k of KEYS) if (process.env[k]) values[k] = process.env[k]!;
  } else {
    const file = enginesEnvFile();
    if (!existsSync(file)) return undefined;
    values = parseEnvFile(readFileSync(file, 'utf8'));
    if (!REQUIRED.every((k) => values[k])) return undefined;
  }
  return {
    stateUrl: values.TUILE_TEST_STATE_URL,
    storageUrl: values.TUILE_TEST_STORAGE_URL,
    s3Endpoint: values.TUILE_S3_ENDPOINT,
    accessKeyId: values.AWS_ACCESS_KEY_ID,
    secretAccessKey: values.AWS_SECRET_ACCESS_KEY,
    region: values.AWS_REGION,
    env: values,
  };
}

const logged = new Set<string>();

/** The engines, or undefined after one logged line (per test file) saying what did not run. */
export function enginesOrSkip(what: string): Engines | undefined {
  const e = engines();
  if (e) return e;
  expect(process.env.TUILE_REQUIRE_ENGINES, `PostgreSQL and the object store are required (TUILE_REQUIRE_ENGINES=1): run scripts/engines.sh up`).not.toBe('1');
  if (!logged.has(what)) {
    logged.add(what);
    console.warn(`${what}: no engines (scripts/engines.sh up writes ${enginesEnvFile()}): these checks did NOT run`);
  }
  return undefined;
}

/** The bucket and key prefix of an s3://bucket/prefix URL (prefix without slashes at its ends). */
export function parseStorageUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new Error(`not an s3://bucket/prefix URL: ${url}`);
  return { bucket: m[1], prefix: m[2].replace(/^\/+|\/+$/g, '') };
}

/** A storage URL under the engines' own prefix that no other test uses, so tests share one bucket. */
export function freshStorageUrl(e: Engines, name: string): string {
  const { bucket, prefix } = parseStorageUrl(e.storageUrl);
  return `s3://${bucket}/${[prefix, `${name}-${randomUUID().slice(0, 8)}`].filter(Boolean).join('/')}`;
}

/** An S3 client on the engines' store: path-style addressing, as Swift's s3api and most stores other than AWS want. */
export function s3Client(e: Engines): S3Client {
  return new S3Client({
    endpoint: e.s3Endpoint,
    region: e.region,
    forcePathStyle: true,
    credentials: { accessKeyId: e.accessKeyId, secretAccessKey: e.secretAccessKey },
    // the SDK's default CRC trailers (aws-chunked uploads) are newer than Swift 2.30's s3api
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
