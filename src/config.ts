// Configuration: the environment, over an optional JSON file (TUILE_CONFIG), over defaults (DESIGN 10).
// The one module that reads process.env for settings.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { TuileError, errorMessage } from './errors.js';

/** Whole numbers in [min, max] (Number() of the text, as before zod: a JSON `true` is 1). */
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** Seconds, fractions allowed. */
const seconds = z.coerce.number().positive().max(1e6);
const BIG = 2 ** 50;

/** The settings, their types, bounds and defaults: the one schema of the environment and the file. */
const configSchema = z.strictObject({
  port: int(0, 65535).default(8080),
  host: z.coerce.string().default('0.0.0.0'),
  dataDir: z.coerce.string().default('./data'),
  adminToken: z.coerce.string().optional(),
  demo: z.unknown().transform((v) => !(v === false || v === 0 || v === '0' || v === 'false' || v === 'no')).default(true),
  cacheMB: int(1, 1e6).default(256),
  workers: int(1, 1e6).default(availableParallelism()),
  publicUrl: z.coerce.string().optional(),
  /** max-age of tiles in Cache-Control */
  tileMaxAge: int(0, 1e6).default(3600),
  /** largest file an upload accepts (413 beyond) */
  uploadMaxBytes: int(1, BIG).default(4 * 1024 ** 3),
  /** largest raster (width x height) the upload checks and the builds accept */
  maxPixels: int(1, BIG).default(4 * 1024 ** 3),
  /** most tiles a pyramid's bottom level may have (upload checks and executions) */
  maxTiles: int(1, BIG).default(50_000_000),
  /** wall-clock limit of an upload check, seconds */
  checkTimeout: seconds.default(120),
  /** memory limit of an upload check's process, MiB */
  checkMemoryMB: int(1, 1e6).default(512),
  /** largest JSON body of the management API (413 beyond) */
  jsonMaxBytes: int(1, BIG).default(2 ** 20),
  /** time a request other than an upload push has to send its body, seconds */
  bodyTimeout: seconds.default(60),
  /** slowest average rate a push may have, bytes/s: its time is `uploadMaxBytes` at this rate */
  uploadMinRate: int(1, BIG).default(2 ** 20),
  /** the contact address uploads and stored data carry, as the platform gives its community's */
  contact: z.string().regex(/^[^\s@]{1,64}@[^\s@]{1,190}$/).default('tuile@localhost'),
  /** PostgreSQL URL of a state shared by several nodes; unset, the state is the data folder's JSON file */
  stateUrl: z.string().regex(/^postgres(ql)?:\/\//).optional(),
});

export type Config = z.infer<typeof configSchema>;

const VARS: Record<string, keyof Config> = {
  PORT: 'port',
  HOST: 'host',
  TUILE_DATA_DIR: 'dataDir',
  TUILE_ADMIN_TOKEN: 'adminToken',
  TUILE_DEMO: 'demo',
  TUILE_CACHE_MB: 'cacheMB',
  TUILE_WORKERS: 'workers',
  TUILE_PUBLIC_URL: 'publicUrl',
  TUILE_TILE_MAX_AGE: 'tileMaxAge',
  TUILE_UPLOAD_MAX_BYTES: 'uploadMaxBytes',
  TUILE_MAX_PIXELS: 'maxPixels',
  TUILE_MAX_TILES: 'maxTiles',
  TUILE_CHECK_TIMEOUT: 'checkTimeout',
  TUILE_CHECK_MEMORY_MB: 'checkMemoryMB',
  TUILE_JSON_MAX_BYTES: 'jsonMaxBytes',
  TUILE_BODY_TIMEOUT: 'bodyTimeout',
  TUILE_UPLOAD_MIN_RATE: 'uploadMinRate',
  TUILE_CONTACT: 'contact',
  TUILE_STATE_URL: 'stateUrl',
};

/**
 * Settings given without defaults (the file's, or the environment's), checked: the first problem is thrown
 * in the words a user can act on, naming where the value came from (`from(key)`).
 */
function checked(given: Record<string, unknown>, from: (key: string) => string): Partial<Config> {
  const r = configSchema.partial().strict().safeParse(given);
  // partial() still fills in the defaults: only what was given may override the settings below it
  if (r.success) return Object.fromEntries(Object.entries(r.data).filter(([k]) => k in given)) as Partial<Config>;
  const issue = r.error.issues[0];
  if (issue.code === 'unrecognized_keys') throw new TuileError('InvalidParameter', `TUILE_CONFIG: unknown setting '${issue.keys[0]}'`);
  const key = String(issue.path[0]);
  const v = String(given[key]);
  if (key === 'contact') throw new TuileError('InvalidParameter', `${from(key)}: '${v}' is not an e-mail address`);
  // not echoed: it may hold a password
  if (key === 'stateUrl') throw new TuileError('InvalidParameter', `${from(key)}: a state URL is postgres://user:password@host:port/database`);
  throw new TuileError('InvalidParameter', `${from(key)}: '${v}' is not a valid ${key}`);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  let file: Partial<Config> = {};
  if (env.TUILE_CONFIG) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(env.TUILE_CONFIG, 'utf8'));
    } catch (err) {
      throw new TuileError('InvalidParameter', `TUILE_CONFIG ${env.TUILE_CONFIG}: ${errorMessage(err)}`);
    }
    file = checked(json, (k) => `TUILE_CONFIG ${k}`);
  }
  const given: Record<string, unknown> = {};
  const names: Record<string, string> = {};
  for (const [name, key] of Object.entries(VARS)) {
    const v = env[name];
    if (v !== undefined && v !== '') {
      given[key] = v;
      names[key] = name;
    }
  }
  // the environment wins over the file, the file over the defaults
  const cfg = configSchema.parse({ ...file, ...checked(given, (k) => names[k]) });
  cfg.dataDir = resolve(cfg.dataDir);
  if (cfg.publicUrl) cfg.publicUrl = cfg.publicUrl.replace(/\/+$/, '');
  return cfg;
}

/** Where things live under the data folder (DESIGN 8). */
export function dataPaths(dataDir: string) {
  return {
    state: resolve(dataDir, 'state.json'),
    adminToken: resolve(dataDir, 'admin-token'),
    pyramids: resolve(dataDir, 'pyramids'),
    pyramid: (storedDataId: string) => resolve(dataDir, 'pyramids', storedDataId),
    uploads: resolve(dataDir, 'uploads'),
    upload: (uploadId: string) => resolve(dataDir, 'uploads', uploadId),
  };
}
