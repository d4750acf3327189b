// Test helper: pyramids built once per test run from real fixtures, and a real HTTP server on 127.0.0.1:0
// serving them through the full application.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { createListener } from '../../src/app.js';
import { TileCache } from '../../src/cache.js';
import { loadConfig, type Config } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { buildPyramid, type BuildOptions } from '../../src/pyramid/build.js';
import { RegistryHolder, type LayerSpec } from '../../src/registry.js';
import type { ServerContext } from '../../src/protocols/tile.js';
import { fixture, ROOT } from './fixtures.js';

const PYRAMIDS = join(ROOT, '.tmp/test-pyramids');

/** The source files a build runs (vitest runs src/, workers included), found by following the relative imports
 * of the build and its worker: any change to the encoder, warp or planner changes the cache key. */
export function buildSources(): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)\.js'/g)) {
      const dep = resolve(dirname(file), `${m[1]}.ts`);
      if (existsSync(dep)) visit(dep);
    }
  };
  visit(join(ROOT, 'src/pyramid/build.ts'));
  visit(join(ROOT, 'src/pyramid/worker.ts'));
  return [...seen].sort();
}

let codeHash: string | null = null;

/** A hash of the build's code (paths and contents) and of the options (inputs by content): the cache key beside the name. */
export function pyramidKey(options: unknown): string {
  if (codeHash === null) {
    const h = createHash('sha256');
    for (const file of buildSources()) h.update(relative(ROOT, file)).update('\0').update(readFileSync(file)).update('\0');
    codeHash = h.digest('hex');
  }
  return createHash('sha256').update(codeHash).update(JSON.stringify(options)).digest('hex').slice(0, 12);
}

/** Builds (or reuses, within and across runs) a pyramid of fixtures, in a folder named after the key and a hash of
 * the code, options and inputs that make it; folders of the same name from other code are removed. */
export async function testPyramid(key: string, opts: Omit<BuildOptions, 'out' | 'inputs'> & { inputs: string[] }): Promise<string> {
  const inputs = opts.inputs.map((f) => createHash('sha256').update(readFileSync(fixture(f))).digest('hex'));
  const folder = `${key}-${pyramidKey({ ...opts, inputs })}`;
  const out = join(PYRAMIDS, folder);
  if (!existsSync(join(out, 'pyramid.json'))) {
    const stale = new RegExp(`^${key.replace(/[^\w-]/g, '\\$&')}-[0-9a-f]{12}$`);
    if (existsSync(PYRAMIDS)) {
      for (const old of readdirSync(PYRAMIDS)) {
        if (old !== folder && (old === key || stale.test(old))) rmSync(join(PYRAMIDS, old), { recursive: true, force: true });
      }
    }
    await buildPyramid({ ...opts, inputs: opts.inputs.map((f) => fixture(f)), out });
  }
  return out;
}

/** The seed's north delivery as png, levels 0-7 (7 upsamples: tiles inside the limits but blank exist). */
export function northPng(): Promise<string> {
  return testPyramid('north-png', { inputs: ['france_relief_north_2154.tif'], format: 'png', bottom: 7, interpolation: 'bilinear' });
}

export function miriamJpeg(): Promise<string> {
  return testPyramid('miriam-jpg', { inputs: ['modis_miriam_4326.tif'], format: 'jpg', interpolation: 'bicubic' });
}

export interface TestServer {
  url: string;
  ctx: ServerContext;
  close(): Promise<void>;
}

export async function startServer(layers: LayerSpec[], config: Partial<Config> = {}): Promise<TestServer> {
  const cfg = { ...loadConfig({}), ...config };
  const holder = new RegistryHolder({ graceMs: 100 });
  await holder.load(layers);
  const cache = new TileCache(cfg.cacheMB * 1024 * 1024);
  const ctx: ServerContext = { config: cfg, holder, cache, metrics: new Metrics(() => cache.stats()) };
  const server: Server = createServer(createListener(ctx));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    ctx,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
