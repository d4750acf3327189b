// Configuration: the environment, over an optional JSON file (TUILE_CONFIG), over defaults (DESIGN 10).
// The one module that reads process.env for settings.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { TuileError, errorMessage } from './errors.js';

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  adminToken?: string;
  demo: boolean;
  cacheMB: number;
  workers: number;
  publicUrl?: string;
  /** max-age of tiles in Cache-Control */
  tileMaxAge: number;
  /** largest file an upload accepts (413 beyond) */
  uploadMaxBytes: number;
  /** largest raster (width x height) the upload checks and the builds accept */
  maxPixels: number;
  /** most tiles a pyramid's bottom level may have (upload checks and executions) */
  maxTiles: number;
  /** wall-clock limit of an upload check, seconds */
  checkTimeout: number;
  /** memory limit of an upload check's process, MiB */
  checkMemoryMB: number;
  /** largest JSON body of the management API (413 beyond) */
  jsonMaxBytes: number;
  /** time a request other than an upload push has to send its body, seconds */
  bodyTimeout: number;
  /** slowest average rate a push may have, bytes/s: its time is `uploadMaxBytes` at this rate */
  uploadMinRate: number;
  /** the contact address uploads and stored data carry, as the platform gives its community's */
  contact: string;
  /** PostgreSQL URL of a state shared by several nodes; unset, the state is the data folder's JSON file */
  stateUrl?: string;
}

const DEFAULTS: Config = {
  port: 8080,
  host: '0.0.0.0',
  dataDir: './data',
  demo: true,
  cacheMB: 256,
  workers: availableParallelism(),
  tileMaxAge: 3600,
  uploadMaxBytes: 4 * 1024 ** 3,
  maxPixels: 4 * 1024 ** 3,
  maxTiles: 50_000_000,
  checkTimeout: 120,
  checkMemoryMB: 512,
  jsonMaxBytes: 2 ** 20,
  bodyTimeout: 60,
  uploadMinRate: 2 ** 20,
  contact: 'tuile@localhost',
};

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

function coerce(key: keyof Config, v: unknown, from: string): unknown {
  switch (key) {
    case 'port':
    case 'cacheMB':
    case 'workers':
    case 'tileMaxAge':
    case 'uploadMaxBytes':
    case 'maxPixels':
    case 'maxTiles':
    case 'checkMemoryMB':
    case 'jsonMaxBytes':
    case 'uploadMinRate': {
      const n = Number(v);
      const max = key === 'port' ? 65535 : ['uploadMaxBytes', 'maxPixels', 'maxTiles', 'jsonMaxBytes', 'uploadMinRate'].includes(key) ? 2 ** 50 : 1e6;
      if (!Number.isInteger(n) || n < (key === 'port' || key === 'tileMaxAge' ? 0 : 1) || n > max) {
        throw new TuileError('InvalidParameter', `${from}: '${String(v)}' is not a valid ${key}`);
      }
      return n;
    }
    case 'checkTimeout':
    case 'bodyTimeout': {
      // seconds, fractions allowed
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0 || n > 1e6) throw new TuileError('InvalidParameter', `${from}: '${String(v)}' is not a valid ${key}`);
      return n;
    }
    case 'contact':
      if (typeof v !== 'string' || !/^[^\s@]{1,64}@[^\s@]{1,190}$/.test(v)) throw new TuileError('InvalidParameter', `${from}: '${String(v)}' is not an e-mail address`);
      return v;
    case 'stateUrl':
      if (typeof v !== 'string' || !/^postgres(ql)?:\/\//.test(v)) throw new TuileError('InvalidParameter', `${from}: a state URL is postgres://user:password@host:port/database`);
      return v;
    case 'demo':
      return !(v === false || v === 0 || v === '0' || v === 'false' || v === 'no');
    default:
      return String(v);
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cfg: Config = { ...DEFAULTS };
  if (env.TUILE_CONFIG) {
    let file: Record<string, unknown>;
    try {
      file = JSON.parse(readFileSync(env.TUILE_CONFIG, 'utf8'));
    } catch (err) {
      throw new TuileError('InvalidParameter', `TUILE_CONFIG ${env.TUILE_CONFIG}: ${errorMessage(err)}`);
    }
    for (const [k, v] of Object.entries(file)) {
      if (!(k in DEFAULTS) && k !== 'adminToken' && k !== 'publicUrl' && k !== 'stateUrl') throw new TuileError('InvalidParameter', `TUILE_CONFIG: unknown setting '${k}'`);
      (cfg as unknown as Record<string, unknown>)[k] = coerce(k as keyof Config, v, `TUILE_CONFIG ${k}`);
    }
  }
  for (const [name, key] of Object.entries(VARS)) {
    const v = env[name];
    if (v !== undefined && v !== '') (cfg as unknown as Record<string, unknown>)[key] = coerce(key, v, name);
  }
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
