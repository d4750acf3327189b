// XYZ tiles: /tiles/{layer}/{z}/{x}/{y}.{ext}, y counted from the top; errors as JSON, 404 outside limits.

import { Hono } from 'hono';
import { TuileError } from '../errors.js';
import { FORMATS } from '../tiles/codec.js';
import { tileOf, XYZ } from './grammar.js';
import { apiKeyOf, denial, formatFromExtension, jsonErrorResponse, serveTile, type ServerContext } from './tile.js';

export function xyzRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError(jsonErrorResponse);
  app.get(XYZ.route, async (c) => {
    const p: Record<string, string> = c.req.param();
    const layer = ctx.holder.current.get(p.layer);
    if (!layer || !layer.available) throw new TuileError('NotFound', `no layer '${p.layer}'`);
    const denied = denial(layer, apiKeyOf(c.req.raw));
    if (denied) throw denied;
    const u = XYZ.read(p);
    const tile = u && /^\w+$/.test(u.ext!) ? tileOf(XYZ, u, layer.tms) : null;
    if (!u || !tile) throw new TuileError('InvalidParameter', 'expected /tiles/{layer}/{z}/{x}/{y}.{ext} with non-negative integers');
    if (formatFromExtension(u.ext!) !== layer.format) throw new TuileError('NotFound', `layer '${p.layer}' serves .${FORMATS[layer.format].ext} tiles, not .${u.ext}`);
    return serveTile(ctx, c.req.raw, layer, tile);
  });
  return app;
}
