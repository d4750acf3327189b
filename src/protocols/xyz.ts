// XYZ tiles: /tiles/{layer}/{z}/{x}/{y}.{ext}, y counted from the top; errors as JSON, 404 outside limits.

import { Hono } from 'hono';
import { TuileError } from '../errors.js';
import { FORMATS } from '../tiles/codec.js';
import { apiKeyOf, denial, formatFromExtension, serveTile, TILE_INDEX as INDEX, type ServerContext } from './tile.js';


export function xyzRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.get('/:layer/:z/:x/:file', async (c) => {
    const { layer: name, z, x, file } = c.req.param();
    const m = /^(\d+)\.(\w+)$/.exec(file);
    const layer = ctx.holder.current.get(name);
    if (!layer || !layer.available) return c.json({ error: 'not_found', error_description: [`no layer '${name}'`] }, 404);
    const denied = denial(layer, apiKeyOf(c.req.raw));
    if (denied) return c.json({ error: denied.status === 401 ? 'unauthorized' : 'forbidden', error_description: [denied.message] }, denied.status);
    if (!m || !INDEX.test(z) || !INDEX.test(x) || !INDEX.test(m[1])) {
      return c.json({ error: 'bad_request', error_description: ['expected /tiles/{layer}/{z}/{x}/{y}.{ext} with non-negative integers'] }, 400);
    }
    const format = formatFromExtension(m[2]);
    if (format !== layer.format) {
      return c.json({ error: 'not_found', error_description: [`layer '${name}' serves .${FORMATS[layer.format].ext} tiles, not .${m[2]}`] }, 404);
    }
    try {
      return await serveTile(ctx, c.req.raw, layer, Number(z), Number(x), Number(m[1]));
    } catch (err) {
      if (err instanceof TuileError && err.code === 'OutOfRange') return c.json({ error: 'not_found', error_description: [err.message] }, 404);
      throw err;
    }
  });
  return app;
}
