// OGC API - Tiles Part 1 (OGC 20-057): landing page, conformance, tile matrix sets (OGC 17-083r4 JSON),
// one collection per visible layer with its map tileset, and tiles. Errors as JSON, 404 outside limits.

import { Hono, type Context } from 'hono';
import { TuileError } from '../errors.js';
import { getTms, type TileMatrixSet } from '../geo/tms.js';
import type { Layer } from '../registry.js';
import { FORMATS, parseFormat, type TileFormat } from '../tiles/codec.js';
import { apiKeyOf, baseUrl, denial, jsonErrorResponse, serveTile, type ServerContext } from './tile.js';
import { OGCAPI, TILE_INDEX as INDEX, tileOf } from './grammar.js';

const JSON_TYPE = 'application/json';
const REL = 'http://www.opengis.net/def/rel/ogc/1.0/';
const TILES_CONF = 'http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/';
const TMS_CONF = 'http://www.opengis.net/spec/tms/2.0/conf/';
const CRS84 = 'http://www.opengis.net/def/crs/OGC/1.3/CRS84';

/** What OGC registers for a tuile tile matrix set; a layer on a set missing here has no OGC API tileset. */
interface OgcTms {
  id: string;
  title: string;
  uri: string;
  crs: string;
  orderedAxes: [string, string];
  wellKnownScaleSet?: string;
}

const OGC_TMS: Record<string, OgcTms> = {
  PM: {
    id: 'WebMercatorQuad',
    title: 'Google Maps Compatible for the World',
    uri: 'http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad',
    crs: 'http://www.opengis.net/def/crs/EPSG/0/3857',
    orderedAxes: ['E', 'N'],
    wellKnownScaleSet: 'http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible',
  },
};

/** The OGC id of a tuile tile matrix set (PM: WebMercatorQuad), the one its OGC API tile URLs name. */
export function ogcTmsId(tms: TileMatrixSet): string | undefined {
  return OGC_TMS[tms.id]?.id;
}

const BY_OGC_ID = new Map(Object.entries(OGC_TMS).map(([tuileId, o]) => [o.id, tuileId]));

interface Link {
  href: string;
  rel: string;
  type: string;
  title: string;
  templated?: boolean;
}

/** Media type names of `?f=` (OGC API convention) for each tile format. */
const F_NAME: Record<TileFormat, string> = { png: 'png', jpg: 'jpeg', webp: 'webp' };

/** 17-083r4 clause 7.2 (JSON encoding of a 2D TileMatrixSet), from tuile's data object. */
function tileMatrixSetJson(tms: TileMatrixSet): Record<string, unknown> {
  const o = OGC_TMS[tms.id];
  if (!o) throw new TuileError('NotFound', `tile matrix set ${tms.id} has no OGC definition`);
  return {
    id: o.id,
    title: o.title,
    uri: o.uri,
    crs: o.crs,
    orderedAxes: o.orderedAxes,
    ...(o.wellKnownScaleSet ? { wellKnownScaleSet: o.wellKnownScaleSet } : {}),
    tileMatrices: tms.levels.map((m) => ({
      id: m.id,
      scaleDenominator: m.scaleDenominator,
      cellSize: m.resolution,
      cornerOfOrigin: 'topLeft',
      pointOfOrigin: [tms.originX, tms.originY],
      tileWidth: tms.tileSize,
      tileHeight: tms.tileSize,
      matrixWidth: m.matrixWidth,
      matrixHeight: m.matrixHeight,
    })),
  };
}

/** 17-083r4 TileMatrixSetLimits: one entry per served level, rows from the top like our {z, x, y}. */
function tileMatrixSetLimits(layer: Layer): Record<string, unknown>[] {
  return layer.levels.map((l) => ({
    tileMatrix: layer.tms.levels[l.z].id,
    minTileRow: l.minY,
    maxTileRow: l.maxY,
    minTileCol: l.minX,
    maxTileCol: l.maxX,
  }));
}

export function ogcapiRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError(jsonErrorResponse);
  const root = (c: Context) => `${baseUrl(ctx, c.req.raw)}/ogcapi`;
  const layerPath = (base: string, layer: Layer) => `${base}/collections/${encodeURIComponent(layer.name)}`;
  const tilesetPath = (base: string, layer: Layer, o: OgcTms) => `${layerPath(base, layer)}/map/tiles/${o.id}`;

  /** Metadata is JSON only: an `f` asking for anything else is refused rather than answered in JSON. */
  const metadata = (c: Context, build: (base: string) => Record<string, unknown>): Response => {
    const f = c.req.query('f');
    if (f !== undefined && f !== 'json') throw new TuileError('InvalidParameter', `f=${f} is not offered here: only f=json`);
    return c.json(build(root(c)));
  };

  /** The layer when it is served and tiled on a set with an OGC definition. */
  const lookup = (name: string): { layer: Layer; o: OgcTms } | undefined => {
    const layer = ctx.holder.current.get(name);
    const o = layer && OGC_TMS[layer.tms.id];
    return layer && layer.available && o ? { layer, o } : undefined;
  };
  /** Refuses a collection the request may not use (401 or 403). */
  const allow = (c: Context, layer: Layer): void => {
    const d = denial(layer, apiKeyOf(c.req.raw));
    if (d) throw d;
  };

  const collection = (base: string, layer: Layer, o: OgcTms) => {
    const b = layer.bboxLonLat;
    return {
      id: layer.name,
      title: layer.title,
      ...(layer.abstract ? { description: layer.abstract } : {}),
      ...(layer.keywords.length ? { keywords: layer.keywords } : {}),
      dataType: 'map',
      extent: { spatial: { bbox: [[b.minX, b.minY, b.maxX, b.maxY]], crs: CRS84 } },
      links: [
        { href: layerPath(base, layer), rel: 'self', type: JSON_TYPE, title: `Collection ${layer.title}` },
        // 20-057 /req/geodata-tilesets/desc-links
        { href: `${layerPath(base, layer)}/map/tiles`, rel: `${REL}tilesets-map`, type: JSON_TYPE, title: `Map tilesets of ${layer.title}` },
      ] satisfies Link[],
    };
  };

  const tilesetItem = (base: string, layer: Layer, o: OgcTms) => ({
    title: `${layer.title} (${o.id})`,
    dataType: 'map',
    crs: o.crs,
    tileMatrixSetURI: o.uri,
    links: [
      { href: tilesetPath(base, layer, o), rel: 'self', type: JSON_TYPE, title: `${layer.title} tileset in ${o.id}` },
      { href: `${base}/tileMatrixSets/${o.id}`, rel: `${REL}tiling-scheme`, type: JSON_TYPE, title: `Tile matrix set ${o.id}` },
    ] satisfies Link[],
  });

  const landing = (c: Context) =>
    metadata(c, (base) => ({
      title: 'tuile',
      description: 'Raster tile pyramids as OGC API - Tiles: one collection per layer, map tiles in WebMercatorQuad',
      links: [
        { href: base, rel: 'self', type: JSON_TYPE, title: 'This document' },
        // the short names are what clients written for OGC API - Features 1.0 look for; the OGC URIs are
        // the relations OGC API - Common registered since
        { href: `${base}/conformance`, rel: 'conformance', type: JSON_TYPE, title: 'Conformance declaration' },
        { href: `${base}/conformance`, rel: `${REL}conformance`, type: JSON_TYPE, title: 'Conformance declaration' },
        { href: `${base}/collections`, rel: 'data', type: JSON_TYPE, title: 'Collections: one per layer' },
        { href: `${base}/collections`, rel: `${REL}data`, type: JSON_TYPE, title: 'Collections: one per layer' },
        { href: `${base}/tileMatrixSets`, rel: `${REL}tiling-schemes`, type: JSON_TYPE, title: 'Tile matrix sets' },
      ] satisfies Link[],
    }));
  app.get('/', landing);

  app.get('/conformance', (c) =>
    metadata(c, () => {
      const formats = new Set(ctx.holder.current.visible().map((l) => l.format));
      // 20-057 defines png and jpeg classes and none for webp: webp tiles are served, not claimed. No oas30:
      // no API description is served.
      return {
        conformsTo: [
          `${TILES_CONF}core`,
          `${TILES_CONF}tileset`,
          `${TILES_CONF}tilesets-list`,
          `${TILES_CONF}geodata-tilesets`,
          ...(formats.has('png') ? [`${TILES_CONF}png`] : []),
          ...(formats.has('jpg') ? [`${TILES_CONF}jpeg`] : []),
          `${TMS_CONF}tilematrixset`,
          `${TMS_CONF}json-tilematrixset`,
          `${TMS_CONF}tilesetmetadata`,
          `${TMS_CONF}json-tilesetmetadata`,
          `${TMS_CONF}tilematrixsetlimits`,
          `${TMS_CONF}json-tilematrixsetlimits`,
        ],
      };
    }),
  );

  app.get('/tileMatrixSets', (c) =>
    metadata(c, (base) => ({
      links: [{ href: `${base}/tileMatrixSets`, rel: 'self', type: JSON_TYPE, title: 'Tile matrix sets' }] satisfies Link[],
      tileMatrixSets: Object.values(OGC_TMS).map((o) => ({
        id: o.id,
        title: o.title,
        uri: o.uri,
        crs: o.crs,
        links: [{ href: `${base}/tileMatrixSets/${o.id}`, rel: 'self', type: JSON_TYPE, title: `Tile matrix set ${o.id}` }] satisfies Link[],
      })),
    })),
  );

  app.get('/tileMatrixSets/:tms', (c) =>
    metadata(c, () => {
      const tms = getTms(BY_OGC_ID.get(c.req.param('tms')) ?? '');
      if (!tms) throw new TuileError('NotFound', `no tile matrix set '${c.req.param('tms')}' (offered: ${[...BY_OGC_ID.keys()].join(', ')})`);
      return tileMatrixSetJson(tms);
    }),
  );

  app.get('/collections', (c) =>
    metadata(c, (base) => ({
      links: [{ href: `${base}/collections`, rel: 'self', type: JSON_TYPE, title: 'Collections' }] satisfies Link[],
      collections: ctx.holder.current
        .visible(apiKeyOf(c.req.raw))
        .filter((l) => OGC_TMS[l.tms.id])
        .map((l) => collection(base, l, OGC_TMS[l.tms.id])),
    })),
  );

  app.get('/collections/:layer', (c) =>
    metadata(c, (base) => {
      const found = lookup(c.req.param('layer'));
      if (!found) throw new TuileError('NotFound', `no collection '${c.req.param('layer')}'`);
      allow(c, found.layer);
      return collection(base, found.layer, found.o);
    }),
  );

  app.get('/collections/:layer/map/tiles', (c) =>
    metadata(c, (base) => {
      const found = lookup(c.req.param('layer'));
      if (!found) throw new TuileError('NotFound', `no collection '${c.req.param('layer')}'`);
      const { layer, o } = found;
      allow(c, layer);
      return {
        links: [{ href: `${layerPath(base, layer)}/map/tiles`, rel: 'self', type: JSON_TYPE, title: `Map tilesets of ${layer.title}` }] satisfies Link[],
        tilesets: [tilesetItem(base, layer, o)],
      };
    }),
  );

  app.get('/collections/:layer/map/tiles/:tms', (c) =>
    metadata(c, (base) => {
      const found = lookup(c.req.param('layer'));
      if (!found) throw new TuileError('NotFound', `no collection '${c.req.param('layer')}'`);
      const { layer, o } = found;
      allow(c, layer);
      if (c.req.param('tms') !== o.id) throw new TuileError('NotFound', `collection '${layer.name}' is tiled in ${o.id} only`);
      const f = FORMATS[layer.format];
      const b = layer.bbox;
      const path = tilesetPath(base, layer, o);
      return {
        title: layer.title,
        ...(layer.abstract ? { description: layer.abstract } : {}),
        ...(layer.keywords.length ? { keywords: layer.keywords } : {}),
        dataType: 'map',
        crs: o.crs,
        tileMatrixSetURI: o.uri,
        mediaTypes: [f.mime],
        boundingBox: { lowerLeft: [b.minX, b.minY], upperRight: [b.maxX, b.maxY], crs: o.crs },
        tileMatrixSetLimits: tileMatrixSetLimits(layer),
        links: [
          { href: path, rel: 'self', type: JSON_TYPE, title: `${layer.title} tileset in ${o.id}` },
          { href: `${base}/tileMatrixSets/${o.id}`, rel: `${REL}tiling-scheme`, type: JSON_TYPE, title: `Tile matrix set ${o.id}` },
          { href: layerPath(base, layer), rel: `${REL}geodata`, type: JSON_TYPE, title: `Collection ${layer.title}` },
          // 20-057 /req/tileset/tc-success: the tile URL template, with the variables the core names
          { href: `${path}/{tileMatrix}/{tileRow}/{tileCol}`, rel: 'item', type: f.mime, title: `${layer.title} tiles (${F_NAME[layer.format]})`, templated: true },
        ] satisfies Link[],
      };
    }),
  );

  app.get(OGCAPI.route, async (c) => {
    const { layer: name, tms, tileMatrix, tileRow, tileCol }: Record<string, string> = c.req.param();
    const found = lookup(name);
    if (!found) throw new TuileError('NotFound', `no collection '${name}'`);
    const { layer, o } = found;
    allow(c, layer);
    if (tms !== o.id) throw new TuileError('NotFound', `collection '${name}' is tiled in ${o.id} only`);
    const f = c.req.query('f');
    if (f !== undefined) {
      const asked = parseFormat(f);
      if (!asked) throw new TuileError('InvalidParameter', `f=${f} is not a tile format (png, jpeg, webp)`);
      if (asked !== layer.format) {
        throw new TuileError('NotAcceptable', `collection '${name}' serves ${F_NAME[layer.format]} tiles only, not ${F_NAME[asked]}`);
      }
    }
    if (!INDEX.test(tileMatrix) || !INDEX.test(tileRow) || !INDEX.test(tileCol)) {
      throw new TuileError('InvalidParameter', 'expected .../{tileMatrix}/{tileRow}/{tileCol} with non-negative integers');
    }
    // 20-057 /req/core/tc-error: outside the tile matrix set or the layer's limits is a 404
    const tile = tileOf(OGCAPI, OGCAPI.read(c.req.param())!, layer.tms);
    if (!tile) throw new TuileError('NotFound', `tile matrix ${tileMatrix} is not in ${o.id}`);
    return serveTile(ctx, c.req.raw, layer, tile);
  });

  return app;
}
