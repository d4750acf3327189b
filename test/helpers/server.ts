// Test helper: pyramids built once per test run from real fixtures, and a real HTTP server on 127.0.0.1:0
// serving them through the full application.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
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

/** Builds (or reuses, within and across runs) a pyramid of fixtures; the key names the folder. */
export async function testPyramid(key: string, opts: Omit<BuildOptions, 'out' | 'inputs'> & { inputs: string[] }): Promise<string> {
  const out = join(PYRAMIDS, key);
  if (!existsSync(join(out, 'pyramid.json'))) {
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
