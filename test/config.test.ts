// Configuration (src/config.ts): defaults, the environment over the file over the defaults, and the
// one-line errors naming where a bad value came from.
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { tempDir } from './helpers/fixtures.js';

const dir = tempDir('tuile-config-');
afterAll(() => dir.cleanup());

/** A TUILE_CONFIG file holding `settings`; answers its path. */
function file(settings: unknown): string {
  const p = join(dir.path, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(p, typeof settings === 'string' ? settings : JSON.stringify(settings));
  return p;
}

describe('loadConfig', () => {
  it('defaults to the README table', () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      host: '0.0.0.0',
      dataDir: resolve('./data'),
      demo: true,
      cacheMB: 256,
      workers: availableParallelism(),
      tileMaxAge: 3600,
      uploadMaxBytes: 4294967296,
      maxPixels: 4294967296,
      maxTiles: 50_000_000,
      checkTimeout: 120,
      checkMemoryMB: 512,
      jsonMaxBytes: 1048576,
      bodyTimeout: 60,
      uploadMinRate: 1048576,
      contact: 'tuile@localhost',
    });
  });

  it('reads every variable, the environment over the file', () => {
    const cfg = loadConfig({
      TUILE_CONFIG: file({ port: 9000, cacheMB: 64, demo: false, publicUrl: 'https://tiles.example.org/', contact: 'a@b.c', checkTimeout: 2.5 }),
      PORT: '9100',
      HOST: '127.0.0.1',
      TUILE_DATA_DIR: '/srv/tuile',
      TUILE_ADMIN_TOKEN: 'secret',
      TUILE_WORKERS: '3',
      TUILE_TILE_MAX_AGE: '0',
      TUILE_UPLOAD_MAX_BYTES: '1000',
      TUILE_MAX_PIXELS: '2000',
      TUILE_MAX_TILES: '3000',
      TUILE_CHECK_MEMORY_MB: '128',
      TUILE_JSON_MAX_BYTES: '4096',
      TUILE_BODY_TIMEOUT: '0.5',
      TUILE_UPLOAD_MIN_RATE: '10',
      TUILE_CONTACT: 'team@example.org',
      TUILE_CACHE_MB: '',
    });
    expect(cfg).toEqual({
      port: 9100,
      host: '127.0.0.1',
      dataDir: '/srv/tuile',
      adminToken: 'secret',
      demo: false,
      cacheMB: 64,
      workers: 3,
      publicUrl: 'https://tiles.example.org',
      tileMaxAge: 0,
      uploadMaxBytes: 1000,
      maxPixels: 2000,
      maxTiles: 3000,
      checkTimeout: 2.5,
      checkMemoryMB: 128,
      jsonMaxBytes: 4096,
      bodyTimeout: 0.5,
      uploadMinRate: 10,
      contact: 'team@example.org',
    });
    for (const off of ['0', 'false', 'no']) expect(loadConfig({ TUILE_DEMO: off }).demo).toBe(false);
    expect(loadConfig({ TUILE_DEMO: '1' }).demo).toBe(true);
  });

  it('refuses bad values in one line naming their source', () => {
    const bad: [Record<string, string>, string][] = [
      [{ PORT: '70000' }, "PORT: '70000' is not a valid port"],
      [{ TUILE_WORKERS: '0' }, "TUILE_WORKERS: '0' is not a valid workers"],
      [{ TUILE_CACHE_MB: '1.5' }, "TUILE_CACHE_MB: '1.5' is not a valid cacheMB"],
      [{ TUILE_TILE_MAX_AGE: '-1' }, "TUILE_TILE_MAX_AGE: '-1' is not a valid tileMaxAge"],
      [{ TUILE_CHECK_TIMEOUT: '0' }, "TUILE_CHECK_TIMEOUT: '0' is not a valid checkTimeout"],
      [{ TUILE_BODY_TIMEOUT: 'soon' }, "TUILE_BODY_TIMEOUT: 'soon' is not a valid bodyTimeout"],
      [{ TUILE_CONTACT: 'nobody' }, "TUILE_CONTACT: 'nobody' is not an e-mail address"],
      [{ TUILE_CONFIG: file({ port: 'x' }) }, "TUILE_CONFIG port: 'x' is not a valid port"],
      [{ TUILE_CONFIG: file({ colour: 'red' }) }, "TUILE_CONFIG: unknown setting 'colour'"],
    ];
    for (const [env, message] of bad) expect(() => loadConfig(env), message).toThrow(message);
    const broken = file('{ not json');
    expect(() => loadConfig({ TUILE_CONFIG: broken })).toThrow(`TUILE_CONFIG ${broken}: `);
  });
});
