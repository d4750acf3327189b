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
import { isFresh, levelOf, readTile, tileHeaders, within, type ServerContext } from './tile.js';

/** Whether the layer serves what the URL names besides the tile: open, its extension, style and matrix set. */
function acceptable(m: TileMatch, layer: Layer): boolean {
  if (!layer.available || !layer.open) return false;
  const { ext, style, matrixSet } = m.url;
  if (ext !== undefined && ext !== FORMATS[layer.format].ext && !(ext === 'jpeg' && layer.format === 'jpg')) return false;
  if (m.form === WMTS_REST) return style === 'normal' && matrixSet === layer.tms.id;
  if (m.form === OGCAPI) return matrixSet === ogcTmsId(layer.tms);
  return true;
}

/** Answers a tile request when it can; false hands the request to the full application. */
export function tileFastPath(ctx: ServerContext): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
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
    const tile = await readTile(ctx.cache, layer, t);
    const fresh = isFresh(req.headers['if-none-match'], tile.etag);
    const headers: Record<string, string | number> = tileHeaders(tile, ctx.config.tileMaxAge);
    if (fresh) {
      res.writeHead(304, headers);
      res.end();
    } else {
      headers['Content-Length'] = tile.data.byteLength;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : tile.data);
    }
    ctx.metrics.tile((performance.now() - t0) / 1000);
    ctx.metrics.request(m.pattern, fresh ? 304 : 200);
    ctx.metrics.layer(name, m.pattern);
    return true;
  };
}
