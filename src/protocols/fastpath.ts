// The hot path of tile serving on node:http directly: path-form tile URLs of every protocol (XYZ, TMS,
// WMTS REST, OGC API), matched with the tile grammar (grammar.ts) the Hono routes are declared from, and
// answered without building web Request/Response objects, which cost more than the tile itself. Only
// success (200/304) is answered here; anything else falls through to the Hono app, so errors keep each
// protocol's own form and no rule is written twice.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Layer } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { matchTilePath, OGCAPI, tileOf, WMTS_REST, type TileMatch } from './grammar.js';
import { ogcTmsId } from './ogcapi.js';
import { cachedTile, isFresh, levelOf, readTile, tileHeaders, within, type ServedTile, type ServerContext } from './tile.js';

/** Whether the layer serves what the URL names besides the tile: open, its extension, style and matrix set. */
function acceptable(m: TileMatch, layer: Layer): boolean {
  if (!layer.available || !layer.open) return false;
  const { ext, style, matrixSet } = m.url;
  if (ext !== undefined && ext !== FORMATS[layer.format].ext && !(ext === 'jpeg' && layer.format === 'jpg')) return false;
  if (m.form === WMTS_REST) return style === 'normal' && matrixSet === layer.tms.id;
  if (m.form === OGCAPI) return matrixSet === ogcTmsId(layer.tms);
  return true;
}

/** The headers of a 200 for a cached tile, built once per tile bytes (keyed by the cached buffer, checked by ETag). */
const HEADERS = new WeakMap<Uint8Array, { etag: string; headers: Record<string, string | number> }>();

function okHeaders(tile: ServedTile, maxAge: number): Record<string, string | number> {
  const memo = HEADERS.get(tile.data);
  if (memo && memo.etag === tile.etag) return memo.headers;
  const headers: Record<string, string | number> = tileHeaders(tile, maxAge);
  headers['Content-Length'] = tile.data.byteLength;
  if (!tile.blank) HEADERS.set(tile.data, { etag: tile.etag, headers });
  return headers;
}

/**
 * Answers a tile request when it can: true (answered), false (hands the request to the full application),
 * or, when the tile is not in the cache, a promise of either. A cached tile is answered in the request's own
 * tick: the promise hops of an await per request showed in the profile of the hot tile.
 */
export function tileFastPath(ctx: ServerContext): (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> {
  const answer = (req: IncomingMessage, res: ServerResponse, tile: ServedTile, name: string, route: string, t0: number): true => {
    const maxAge = ctx.config.tileMaxAge;
    const inm = req.headers['if-none-match'];
    const fresh = inm !== undefined && isFresh(inm, tile.etag);
    if (fresh) {
      res.writeHead(304, tileHeaders(tile, maxAge));
      res.end();
    } else {
      res.writeHead(200, okHeaders(tile, maxAge));
      res.end(req.method === 'HEAD' ? undefined : tile.data);
    }
    ctx.metrics.tile((performance.now() - t0) / 1000);
    ctx.metrics.request(route, fresh ? 304 : 200);
    ctx.metrics.layer(name, route);
    return true;
  };
  return (req, res) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url || req.url.includes('?')) return false;
    const m = matchTilePath(req.url);
    if (!m) return false;
    let name: string;
    try {
      name = decodeURIComponent(m.url.layer);
    } catch {
      return false;
    }
    const layer = ctx.holder.current.get(name);
    if (!layer || !acceptable(m, layer)) return false;
    const t = tileOf(m.form, m.url, layer.tms);
    // outside the layer's levels or limits: the protocol's own answer (an error, or TMS's blank tile)
    const level = t && levelOf(layer, t.z);
    if (!t || !level || !within(level, t)) return false;
    const t0 = performance.now();
    const hit = cachedTile(ctx.cache, layer, t);
    if (hit) return answer(req, res, hit, name, m.pattern, t0);
    return readTile(ctx.cache, layer, t).then((tile) => answer(req, res, tile, name, m.pattern, t0));
  };
}
