// The GetTile shared by every protocol: layer and level lookup, limits, read through the cache, blank tile
// inside the limits, and the HTTP side (ETag/304, Cache-Control, HEAD). Protocols only parse and render errors.

import { TileCache } from '../cache.js';
import { publicBaseUrl } from '../base-url.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { jsonError, TuileError } from '../errors.js';
import type { Tile, TileLimits } from '../geo/tms.js';
import { formatOfName } from '../formats.js';
import { access, chainAt, type Layer, type LayerSource } from '../registry.js';
import { blankImage, FORMATS, type TileFormat } from '../tiles/codec.js';

export interface ServedTile {
  data: Uint8Array;
  etag: string;
  mime: string;
  blank: boolean;
}

export function levelOf(layer: Layer, z: number): TileLimits | undefined {
  return layer.levels.find((l) => l.z === z);
}

/** Whether a tile (y from the top) is inside a level's limits. */
export function within(level: TileLimits, t: Tile): boolean {
  return t.x >= level.minX && t.x <= level.maxX && t.y >= level.minY && t.y <= level.maxY;
}

/**
 * The tile {z, x, y} (y from the top) of a layer. Throws OutOfRange outside its levels or limits, with
 * the allowed range in the message; inside them, a tile with no data is the layer's blank tile.
 */
export async function readTile(cache: TileCache, layer: Layer, t: Tile): Promise<ServedTile> {
  const { z, x, y } = t;
  const level = levelOf(layer, z);
  if (!level) {
    const zs = layer.levels.map((l) => l.z);
    throw new TuileError('OutOfRange', `level ${z} is not served by layer ${layer.name} (levels ${Math.min(...zs)} to ${Math.max(...zs)})`);
  }
  if (!within(level, t)) {
    throw new TuileError(
      'OutOfRange',
      `tile ${z}/${x}/${y} is outside layer ${layer.name} at level ${z} (columns ${level.minX}-${level.maxX}, rows ${level.minY}-${level.maxY})`,
    );
  }
  const chain = chainAt(layer, z);
  const holder = chain.locate(t);
  const mime = FORMATS[layer.format].mime;
  if (holder) {
    const data = await cache.get(TileCache.key(holder, z, x, y), async () => (await chain.getTile(t))?.data ?? null);
    if (data) return { data, etag: `"${holder}-${z}-${x}-${y}"`, mime, blank: false };
  }
  return blankTile(layer);
}

/** The layer's tile with no data (transparent png/webp, nodata-coloured jpeg). */
export async function blankTile(layer: Layer): Promise<ServedTile> {
  return {
    data: await blankImage(layer.format, layer.bands, layer.nodata),
    etag: `"blank-${layer.format}-${layer.bands}-${layer.nodata.join('.')}"`,
    mime: FORMATS[layer.format].mime,
    blank: true,
  };
}

/** Response headers a browser may read across origins. */
export const CORS_EXPOSE = ['ETag', 'Content-Length', 'Content-Range'];

/**
 * The CORS headers of every diffusion answer, errors and 304 included: without them a browser hides the
 * status (MapLibre logs "blocked by CORS policy" for each tile outside the limits, Chromium ERR_BLOCKED_BY_ORB).
 */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': CORS_EXPOSE.join(', '),
};

/** Headers of a tile answer. CORS is set here, not by the middleware, which tile answers skip (app.ts). */
export function tileHeaders(tile: ServedTile, maxAge: number): Record<string, string> {
  return {
    'Content-Type': tile.mime,
    ETag: tile.etag,
    'Cache-Control': `public, max-age=${maxAge}`,
    ...CORS_HEADERS,
  };
}

/** Whether an If-None-Match header names the tile's current version. */
export function isFresh(ifNoneMatch: string | null | undefined, etag: string): boolean {
  return !!ifNoneMatch && ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === '*');
}

export function formatFromExtension(ext: string): TileFormat | undefined {
  return formatOfName(ext);
}

/** The HTTP answer for a tile: 304 when the client has it, no body for HEAD. */
export function tileResponse(req: Request, tile: ServedTile, maxAge: number): Response {
  // a plain header object, not Headers: @hono/node-server then writes it as is (measurably faster)
  const headers = tileHeaders(tile, maxAge);
  if (isFresh(req.headers.get('If-None-Match'), tile.etag)) return new Response(null, { status: 304, headers });
  headers['Content-Length'] = String(tile.data.byteLength);
  return new Response(req.method === 'HEAD' ? null : (tile.data as Uint8Array<ArrayBuffer>), { status: 200, headers });
}

/** What every protocol handler needs: the live registry, the tile cache, settings and metrics. */
export interface ServerContext {
  config: Config;
  holder: LayerSource;
  /** the path the protocols are mounted under: '' for the open endpoint, '/private' for the private one */
  prefix?: string;
  cache: TileCache;
  metrics: Metrics;
}

/** Base URL written into capabilities and links (base-url.ts), under the endpoint's path. */
export function baseUrl(ctx: ServerContext, req: Request): string {
  return publicBaseUrl(req, ctx.config.publicUrl) + (ctx.prefix ?? '');
}

/** Serves a tile with timing, for the protocols' GetTile handlers. */
export async function serveTile(ctx: ServerContext, req: Request, layer: Layer, t: Tile): Promise<Response> {
  const t0 = performance.now();
  const tile = await readTile(ctx.cache, layer, t);
  const res = tileResponse(req, tile, ctx.config.tileMaxAge);
  ctx.metrics.tile((performance.now() - t0) / 1000);
  return res;
}

/** The API key of a request: the `apikey` query parameter (any case) or the `apikey` header. */
export function apiKeyOf(req: Request): string | undefined {
  const q = req.url.indexOf('?');
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(req.url.slice(q + 1))) if (k.toLowerCase() === 'apikey' && v) return v;
  }
  return req.headers.get('apikey') || undefined;
}

/**
 * Why a request may not use a layer, or null: Unauthorized (401) without a key, Forbidden (403) with one that
 * does not open it; the locator is where the key goes.
 */
export function denial(layer: Layer, key: string | undefined): TuileError | null {
  const a = access(layer, key);
  if (a === 'granted') return null;
  return a === 'no-key'
    ? new TuileError('Unauthorized', `layer ${layer.name} needs an API key (apikey= parameter or apikey header)`, { locator: 'apikey' })
    : new TuileError('Forbidden', `this API key does not give access to layer ${layer.name}, or its permission has ended`, { locator: 'apikey' });
}

/** The onError of the protocols that answer errors in JSON (XYZ, OGC API, the app): a server error is logged. */
export function jsonErrorResponse(err: Error, c: Context): Response {
  const e = jsonError(err);
  if (e.status >= 500) console.error(`tuile: ${c.req.method} ${new URL(c.req.url).pathname}: ${err.stack ?? err.message}`);
  return c.json(e.body, e.status as ContentfulStatusCode);
}
