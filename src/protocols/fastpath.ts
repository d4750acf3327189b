// The hot path of tile serving on node:http directly: path-form tile URLs of every protocol (XYZ, TMS,
// WMTS REST, OGC API), matched with the tile grammar (grammar.ts) the Hono routes are declared from, and
// answered without building web Request/Response objects, which cost more than the tile itself. Only
// success (200/304) is answered here; anything else falls through to the Hono app, so errors keep each
// protocol's own form and no rule is written twice.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { TileCache } from '../cache.js';
import type { Tile } from '../geo/tms.js';
import type { Count, LayerCount } from '../metrics.js';
import { chainAt, type Layer, type Registry } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { matchTilePath, OGCAPI, tileOf, WMTS_REST, type TileMatch } from './grammar.js';
import { ogcTmsId } from './ogcapi.js';
import { isFresh, levelOf, readTile, tileHeaders, within, type ServedTile, type ServerContext } from './tile.js';

/** Whether the layer serves what the URL names besides the tile: open, its extension, style and matrix set. */
function acceptable(m: TileMatch, layer: Layer): boolean {
  if (!layer.available || !layer.open) return false;
  const { ext, style, matrixSet } = m.url;
  if (ext !== undefined && ext !== FORMATS[layer.format].ext && !(ext === 'jpeg' && layer.format === 'jpg')) return false;
  if (m.form === WMTS_REST) return style === 'normal' && matrixSet === layer.tms.id;
  if (m.form === OGCAPI) return matrixSet === ogcTmsId(layer.tms);
  return true;
}

/** How many URLs the fast path remembers; past it the memo starts again (a crawl of distinct URLs stays bounded). */
const KNOWN_URLS = 16_384;

/** What a tile URL resolved to in the current registry: kept so that the next request of that URL skips the parse. */
interface Known {
  layer: Layer;
  name: string;
  pattern: string;
  t: Tile;
  /** the cache key of the tile's bytes and their ETag, or, when no archive holds the tile, the layer's blank tile once read */
  key?: string;
  etag?: string;
  blank?: ServedTile;
  /**
   * the headers of a 200 for bytes of `length` (the key's bytes never change: only their length is in the
   * headers), and of a 304; the bytes themselves are not kept, the cache's budget holds them
   */
  length?: number;
  ok?: Record<string, string | number>;
  notModified?: Record<string, string>;
  /** the counters it adds to, taken on first use (a counter is listed by /metrics from its creation) */
  okCount?: Count;
  notModifiedCount?: Count;
  layerCount?: LayerCount | null;
}

/**
 * Answers a tile request when it can: true (answered), false (hands the request to the full application),
 * or, when the tile is not in the cache, a promise of either. A cached tile is answered in the request's own
 * tick: the promise hops of an await per request showed in the profile of the hot tile. A URL seen before in
 * the current registry is not parsed again: its layer, tile, cache key, headers and counters are remembered
 * (the profile's next largest parts after Node's own write, once the request listeners were one).
 */
export function tileFastPath(ctx: ServerContext): (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> {
  const maxAge = ctx.config.tileMaxAge;
  const metrics = ctx.metrics;
  const answer = (req: IncomingMessage, res: ServerResponse, tile: ServedTile, name: string, route: string, t0: number): true => {
    const inm = req.headers['if-none-match'];
    const fresh = inm !== undefined && isFresh(inm, tile.etag);
    if (fresh) {
      res.writeHead(304, tileHeaders(tile, maxAge));
      res.end();
    } else {
      const headers: Record<string, string | number> = tileHeaders(tile, maxAge);
      headers['Content-Length'] = tile.data.byteLength;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : tile.data);
    }
    metrics.tile((performance.now() - t0) / 1000);
    metrics.request(route, fresh ? 304 : 200);
    metrics.layer(name, route);
    return true;
  };
  // the memo is of one registry: a layer switch starts it again (and lets the old registry go)
  let known = new Map<string, Known>();
  let knownIn: Registry | undefined;
  /** The URL's tile in the current registry, when the fast path may serve it. */
  const resolve = (url: string, registry: Registry): Known | undefined => {
    const m = matchTilePath(url);
    if (!m) return undefined;
    let name: string;
    try {
      name = decodeURIComponent(m.url.layer);
    } catch {
      return undefined;
    }
    const layer = registry.get(name);
    if (!layer || !acceptable(m, layer)) return undefined;
    const t = tileOf(m.form, m.url, layer.tms);
    // outside the layer's levels or limits: the protocol's own answer (an error, or TMS's blank tile)
    const level = t && levelOf(layer, t.z);
    if (!t || !level || !within(level, t)) return undefined;
    const holder = chainAt(layer, t.z).locate(t);
    const k: Known = {
      layer,
      name,
      pattern: m.pattern,
      t,
      key: holder === undefined ? undefined : TileCache.key(holder, t.z, t.x, t.y),
      etag: holder === undefined ? undefined : `"${holder}-${t.z}-${t.x}-${t.y}"`,
    };
    if (known.size >= KNOWN_URLS) known = new Map();
    known.set(url, k);
    return k;
  };
  return (req, res) => {
    const url = req.url;
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !url || url.includes('?')) return false;
    const registry = ctx.holder.current;
    if (registry !== knownIn) {
      known = new Map();
      knownIn = registry;
    }
    const k = known.get(url) ?? resolve(url, registry);
    if (!k) return false;
    const t0 = performance.now();
    const data = k.key !== undefined ? ctx.cache.peek(k.key) : k.blank?.data;
    if (!data) {
      return readTile(ctx.cache, k.layer, k.t).then((tile) => {
        // a tile no archive holds is the layer's blank tile for as long as this registry is current
        if (k.key === undefined && tile.blank) {
          k.blank = tile;
          k.etag = tile.etag;
        }
        return answer(req, res, tile, k.name, k.pattern, t0);
      });
    }
    const inm = req.headers['if-none-match'];
    if (inm !== undefined && isFresh(inm, k.etag!)) {
      k.notModified ??= tileHeaders({ data, etag: k.etag!, mime: FORMATS[k.layer.format].mime, blank: k.key === undefined }, maxAge);
      res.writeHead(304, k.notModified);
      res.end();
      (k.notModifiedCount ??= metrics.requestCount(k.pattern, 304)).n++;
    } else {
      if (data.byteLength !== k.length) {
        k.ok = tileHeaders({ data, etag: k.etag!, mime: FORMATS[k.layer.format].mime, blank: k.key === undefined }, maxAge);
        k.ok['Content-Length'] = data.byteLength;
        k.length = data.byteLength;
      }
      res.writeHead(200, k.ok);
      res.end(req.method === 'HEAD' ? undefined : data);
      (k.okCount ??= metrics.requestCount(k.pattern, 200)).n++;
    }
    metrics.tile((performance.now() - t0) / 1000);
    k.layerCount ??= metrics.layerCount(k.name, k.pattern) ?? null;
    if (k.layerCount) metrics.countLayer(k.layerCount);
    return true;
  };
}
