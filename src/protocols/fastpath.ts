// The hot path of tile serving on node:http directly: path-form tile URLs of every protocol (XYZ, TMS,
// WMTS REST, OGC API) answered without building web Request/Response objects, which cost more than the
// tile itself. Only success (200/304) is answered here; anything else falls through to the Hono app,
// so errors keep each protocol's own form and no rule is written twice.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { TuileError } from '../errors.js';
import { flipY } from '../geo/tms.js';
import type { Layer } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { isFresh, readTile, TILE_INDEX, tileHeaders, type ServerContext } from './tile.js';

interface Match {
  route: string; // the Hono route pattern the request would have matched, for metrics
  layer: string;
  z: number;
  x: number;
  /** row from the top, or from the bottom when `tms` */
  y: number;
  tmsRow: boolean;
  ext?: string;
  style?: string;
  matrixSet?: string;
}

const num = (s: string) => (TILE_INDEX.test(s) ? Number(s) : NaN);

function splitExt(file: string): [string, string] | null {
  const i = file.lastIndexOf('.');
  return i > 0 ? [file.slice(0, i), file.slice(i + 1)] : null;
}

function match(path: string): Match | null {
  const p = path.split('/');
  // ['', 'tiles', layer, z, x, 'y.ext']
  if (p[1] === 'tiles' && p.length === 6) {
    const f = splitExt(p[5]);
    if (!f) return null;
    return { route: '/tiles/:layer/:z/:x/:file', layer: p[2], z: num(p[3]), x: num(p[4]), y: num(f[0]), tmsRow: false, ext: f[1] };
  }
  // ['', 'tms', '1.0.0', layer, z, x, 'y.ext']
  if (p[1] === 'tms' && p[2] === '1.0.0' && p.length === 7) {
    const f = splitExt(p[6]);
    if (!f) return null;
    return { route: '/tms/1.0.0/:layer/:z/:x/:file', layer: p[3], z: num(p[4]), x: num(p[5]), y: num(f[0]), tmsRow: true, ext: f[1] };
  }
  // ['', 'wmts', '1.0.0', layer, style, tms, z, row, 'col.ext']
  if (p[1] === 'wmts' && p[2] === '1.0.0' && p.length === 9) {
    const f = splitExt(p[8]);
    if (!f) return null;
    return { route: '/wmts/1.0.0/:layer/:style/:tms/:z/:row/:file', layer: p[3], style: p[4], matrixSet: p[5], z: num(p[6]), y: num(p[7]), x: num(f[0]), tmsRow: false, ext: f[1] };
  }
  // ['', 'ogcapi', 'collections', layer, 'map', 'tiles', 'WebMercatorQuad', z, row, col]
  if (p[1] === 'ogcapi' && p[2] === 'collections' && p[4] === 'map' && p[5] === 'tiles' && p[6] === 'WebMercatorQuad' && p.length === 10) {
    return { route: '/ogcapi/collections/:layer/map/tiles/:tms/:tileMatrix/:tileRow/:tileCol', layer: p[3], z: num(p[7]), y: num(p[8]), x: num(p[9]), tmsRow: false };
  }
  return null;
}

function acceptable(m: Match, layer: Layer): boolean {
  if (!layer.available || !layer.open) return false;
  if (m.ext !== undefined && m.ext !== FORMATS[layer.format].ext && !(m.ext === 'jpeg' && layer.format === 'jpg')) return false;
  if (m.style !== undefined && m.style !== 'normal') return false;
  if (m.matrixSet !== undefined && m.matrixSet !== layer.tms.id) return false;
  return Number.isInteger(m.z) && Number.isInteger(m.x) && Number.isInteger(m.y) && m.z < layer.tms.levels.length;
}

/** Answers a tile request when it can; false hands the request to the full application. */
export function tileFastPath(ctx: ServerContext): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url || req.url.includes('?')) return false;
    const m = match(req.url);
    if (!m) return false;
    let name: string;
    try {
      name = decodeURIComponent(m.layer);
    } catch {
      return false;
    }
    const layer = ctx.holder.current.get(name);
    if (!layer || !acceptable(m, layer)) return false;
    if (m.tmsRow) {
      if (m.y >= layer.tms.levels[m.z].matrixHeight) return false;
      m.y = flipY(layer.tms, m.z, m.y);
    }
    const t0 = performance.now();
    let tile;
    try {
      tile = await readTile(ctx.cache, layer, m.z, m.x, m.y);
    } catch (err) {
      if (err instanceof TuileError && err.code === 'OutOfRange') return false;
      throw err;
    }
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
    ctx.metrics.request(m.route, fresh ? 304 : 200);
    ctx.metrics.layer(name, m.route);
    return true;
  };
}
