// XYZ tiles: /tiles/{layer}/{z}/{x}/{y}.{ext}, y counted from the top; errors as JSON, 404 outside limits.

import { Hono } from 'hono';
import { TuileError } from '../errors.js';
import { FORMATS } from '../tiles/codec.js';
import { apiKeyOf, denial, formatFromExtension, jsonErrorResponse, serveTile, TILE_INDEX as INDEX, type ServerContext } from './tile.js';

export function xyzRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError(jsonErrorResponse);
  app.get('/:layer/:z/:x/:file', async (c) => {
    const { layer: name, z, x, file } = c.req.param();
    const m = /^(\d+)\.(\w+)$/.exec(file);
    const layer = ctx.holder.current.get(name);
    if (!layer || !layer.available) throw new TuileError('NotFound', `no layer '${name}'`);
    const denied = denial(layer, apiKeyOf(c.req.raw));
    if (denied) throw denied;
    if (!m || !INDEX.test(z) || !INDEX.test(x) || !INDEX.test(m[1])) {
      throw new TuileError('InvalidParameter', 'expected /tiles/{layer}/{z}/{x}/{y}.{ext} with non-negative integers');
    }
    const format = formatFromExtension(m[2]);
    if (format !== layer.format) throw new TuileError('NotFound', `layer '${name}' serves .${FORMATS[layer.format].ext} tiles, not .${m[2]}`);
    return serveTile(ctx, c.req.raw, layer, Number(z), Number(x), Number(m[1]));
  });
  return app;
}
