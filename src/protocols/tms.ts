// TMS 1.0.0 (OSGeo Tile Map Service Specification): TileMapService, TileMap, and tiles with rows counted
// from the bottom. A TileMap covers its whole grid, as MapProxy's and GeoWebCache's global grids do: every
// tile of a served level is 200, blank outside the data. Errors: an XML TileMapServerError.

import { Hono } from 'hono';
import { HTTP_STATUS, TuileError } from '../errors.js';
import type { Layer } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { TILE_INDEX, tileOf, TMS } from './grammar.js';
import { XML_TYPE, xmlDocument as doc } from './xml.js';
import { apiKeyOf, baseUrl, blankTile, denial, formatFromExtension, levelOf, serveTile, tileResponse, within, type ServerContext } from './tile.js';

const XML = { 'Content-Type': XML_TYPE };

/** Any error as a TileMapServerError; one that is not a TuileError is logged and told as an internal error. */
function errorResponse(err: unknown): Response {
  if (!(err instanceof TuileError)) console.error(`tuile: tms: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  const [message, status] = err instanceof TuileError ? [err.message, HTTP_STATUS[err.code]] : ['internal error', 500];
  return new Response(doc({ TileMapServerError: { Message: message } }), { status, headers: XML });
}

/**
 * The TileMap of a layer. Its BoundingBox is the grid's extent, not the data's: GDAL's TMS reader ignores
 * Origin and numbers tiles from the BoundingBox's corner, at every level (its DataWindow), so only the
 * grid's own corner gives it the tiles' real indices. The data's extent is in the WMTS capabilities.
 */
function tileMap(base: string, layer: Layer): string {
  const f = FORMATS[layer.format];
  const tms = layer.tms;
  const b = tms.extent;
  return doc({
    TileMap: {
      '@version': '1.0.0',
      '@tilemapservice': `${base}/tms/1.0.0/`,
      Title: layer.title,
      Abstract: layer.abstract,
      // TMS 1.0.0: Metadata* and Attribution come before SRS
      Metadata: layer.metadata.length ? layer.metadata.map((m) => ({ '@type': m.type, '@mime-type': m.format, '@href': m.url })) : undefined,
      Attribution: layer.attribution
        ? {
            Title: layer.attribution.title,
            Logo: layer.attribution.logo
              ? { '@width': layer.attribution.logo.width, '@height': layer.attribution.logo.height, '@href': layer.attribution.logo.url, '@mime-type': layer.attribution.logo.format }
              : undefined,
          }
        : undefined,
      SRS: tms.crs,
      BoundingBox: { '@minx': b.minX, '@miny': b.minY, '@maxx': b.maxX, '@maxy': b.maxY },
      Origin: { '@x': tms.extent.minX, '@y': tms.extent.minY },
      TileFormat: { '@width': tms.tileSize, '@height': tms.tileSize, '@mime-type': f.mime, '@extension': f.ext },
      TileSets: {
        '@profile': 'global-mercator',
        TileSet: layer.levels.map((l) => ({
          '@href': `${base}/tms/1.0.0/${encodeURIComponent(layer.name)}/${l.z}`,
          '@units-per-pixel': tms.levels[l.z].resolution,
          '@order': l.z,
        })),
      },
    },
  });
}

export function tmsRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError(errorResponse);
  const service = (req: Request) => {
    const base = baseUrl(ctx, req);
    return doc({
      TileMapService: {
        '@version': '1.0.0',
        '@services': `${base}/tms/`,
        Title: 'tuile',
        Abstract: 'Raster tile pyramids',
        TileMaps: {
          TileMap: ctx.holder.current.visible(apiKeyOf(req)).map((l) => ({
            '@title': l.title,
            '@srs': l.tms.crs,
            '@profile': 'global-mercator',
            '@href': `${base}/tms/1.0.0/${encodeURIComponent(l.name)}`,
          })),
        },
      },
    });
  };
  app.get('/', (c) =>
    c.body(doc({ Services: { TileMapService: { '@title': 'tuile', '@version': '1.0.0', '@href': `${baseUrl(ctx, c.req.raw)}/tms/1.0.0/` } } }), 200, XML),
  );
  app.get('/1.0.0', (c) => c.body(service(c.req.raw), 200, XML));
  app.get('/1.0.0/', (c) => c.body(service(c.req.raw), 200, XML));
  app.get('/1.0.0/:layer', (c) => {
    const layer = ctx.holder.current.get(c.req.param('layer'));
    if (!layer || !layer.available) throw new TuileError('NotFound', `no layer '${c.req.param('layer')}'`);
    const denied = denial(layer, apiKeyOf(c.req.raw));
    if (denied) throw denied;
    return c.body(tileMap(baseUrl(ctx, c.req.raw), layer), 200, XML);
  });
  app.get(TMS.route, async (c) => {
    const p: Record<string, string> = c.req.param();
    const layer = ctx.holder.current.get(p.layer);
    if (!layer || !layer.available) throw new TuileError('NotFound', `no layer '${p.layer}'`);
    const denied = denial(layer, apiKeyOf(c.req.raw));
    if (denied) throw denied;
    const u = TMS.read(p);
    if (!u || !/^\w+$/.test(u.ext!) || !TILE_INDEX.test(u.level) || !TILE_INDEX.test(u.col) || !TILE_INDEX.test(u.row)) {
      throw new TuileError('InvalidParameter', 'expected /tms/1.0.0/{layer}/{z}/{x}/{y}.{ext} with non-negative integers');
    }
    if (formatFromExtension(u.ext!) !== layer.format) throw new TuileError('NotFound', `layer '${p.layer}' serves .${FORMATS[layer.format].ext} tiles`);
    const zi = Number(u.level);
    if (zi >= layer.tms.levels.length) throw new TuileError('NotFound', `level ${zi} does not exist`);
    const matrix = layer.tms.levels[zi];
    if (Number(u.row) >= matrix.matrixHeight) throw new TuileError('NotFound', `row ${u.row} does not exist at level ${zi}`);
    if (Number(u.col) >= matrix.matrixWidth) throw new TuileError('NotFound', `column ${u.col} does not exist at level ${zi}`);
    const tile = tileOf(TMS, u, layer.tms)!;
    // the TileMap advertises the whole grid at its levels: outside the data's limits (at a served level), a blank tile
    const level = levelOf(layer, zi);
    if (level && !within(level, tile)) return tileResponse(c.req.raw, await blankTile(layer), ctx.config.tileMaxAge);
    return serveTile(ctx, c.req.raw, layer, tile);
  });
  return app;
}
