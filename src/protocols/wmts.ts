// WMTS 1.0.0 (OGC 07-057r7): GetCapabilities, GetTile and GetFeatureInfo in the KVP and RESTful encodings
// (the capabilities document itself: wmts-capabilities.ts).

import { Hono } from 'hono';
import { TuileError } from '../errors.js';
import { mercatorToLonLat, type Tile } from '../geo/tms.js';
import type { Layer, Registry } from '../registry.js';
import { FORMATS, pixelAt } from '../tiles/codec.js';
import { WMTS_REST } from './grammar.js';
import { exceptionResponse } from './ows.js';
import { findInfoFormat, INFO_FORMATS, renderFeatureInfo, type FeatureInfo, type InfoFormat } from './featureinfo.js';
import { capabilities, matrixCount, SECTIONS, STYLE, VERSION } from './wmts-capabilities.js';
import { apiKeyOf, baseUrl, denial, formatFromExtension, levelOf, readTile, serveTile, type ServerContext } from './tile.js';

const XML_TYPE = 'application/xml; charset=utf-8';

// ---------------------------------------------------------------------------------------------------
// Request parsing. Parameter names are case-insensitive, values case-sensitive (the KVP encoding of OWS
// Common 1.1, 11.5.2, which 07-057r7 8 follows). Locators are the parameter names in upper case.

type Params = (name: string) => string | undefined;

function kvpParams(url: URL): Params {
  const map = new Map<string, string>();
  for (const [k, v] of url.searchParams) {
    const key = k.toUpperCase();
    if (!map.has(key)) map.set(key, v);
  }
  return (name) => map.get(name);
}

function requirePresent(p: Params, names: string[]): void {
  for (const name of names) {
    const v = p(name);
    if (v === undefined || v === '') throw new TuileError('MissingParameter', `missing parameter ${name}`, { locator: name });
  }
}

const NON_NEGATIVE = /^\d+$/;

interface TileAddress {
  layer: Layer;
  tile: Tile;
}

/**
 * Validates the GetTile part of a request (07-057r7 7.2, exceptions of table 23) against a layer:
 * unknown values are InvalidParameterValue; a tile matrix the layer does not serve, or a row or column
 * outside its TileMatrixLimits, is TileOutOfRange.
 */
function tileAddress(reg: Registry, p: Params): TileAddress {
  const name = p('LAYER')!;
  const layer = reg.get(name);
  if (!layer || !layer.available) throw new TuileError('InvalidParameter', `unknown layer '${name}'`, { locator: 'LAYER' });
  const denied = denial(layer, p('APIKEY'));
  if (denied) throw denied;
  const style = p('STYLE')!;
  if (style !== STYLE) throw new TuileError('InvalidParameter', `unknown style '${style}' for layer '${name}' (styles: ${STYLE})`, { locator: 'STYLE' });
  const format = p('FORMAT');
  const mime = FORMATS[layer.format].mime;
  // FORMAT is optional here because GetFeatureInfo clients (GDAL's KVP template) leave it out
  if (format !== undefined && format !== mime) throw new TuileError('InvalidParameter', `layer '${name}' serves ${mime}, not '${format}'`, { locator: 'FORMAT' });
  const tmsId = p('TILEMATRIXSET')!;
  if (tmsId !== layer.tms.id) throw new TuileError('InvalidParameter', `unknown tile matrix set '${tmsId}' for layer '${name}' (sets: ${layer.tms.id})`, { locator: 'TILEMATRIXSET' });
  const matrix = p('TILEMATRIX')!;
  const z = layer.tms.levels.findIndex((m) => m.id === matrix);
  if (z < 0 || z >= matrixCount(reg, layer.tms)) throw new TuileError('InvalidParameter', `unknown tile matrix '${matrix}' in tile matrix set ${tmsId}`, { locator: 'TILEMATRIX' });
  const limits = levelOf(layer, z);
  if (!limits) {
    const zs = layer.levels.map((l) => l.z);
    throw new TuileError('TileOutOfRange', `layer '${name}' serves tile matrices ${Math.min(...zs)} to ${Math.max(...zs)}, not ${matrix}`, { locator: 'TILEMATRIX' });
  }
  const rowText = p('TILEROW')!;
  const colText = p('TILECOL')!;
  if (!NON_NEGATIVE.test(rowText)) throw new TuileError('InvalidParameter', `TILEROW '${rowText}' is not a non-negative integer`, { locator: 'TILEROW' });
  if (!NON_NEGATIVE.test(colText)) throw new TuileError('InvalidParameter', `TILECOL '${colText}' is not a non-negative integer`, { locator: 'TILECOL' });
  const row = Number(rowText);
  const col = Number(colText);
  if (row < limits.minY || row > limits.maxY) {
    throw new TuileError('TileOutOfRange', `row ${rowText} is outside layer '${name}' at tile matrix ${matrix} (rows ${limits.minY} to ${limits.maxY})`, { locator: 'TILEROW' });
  }
  if (col < limits.minX || col > limits.maxX) {
    throw new TuileError('TileOutOfRange', `column ${colText} is outside layer '${name}' at tile matrix ${matrix} (columns ${limits.minX} to ${limits.maxX})`, { locator: 'TILECOL' });
  }
  return { layer, tile: { z, x: col, y: row } };
}

const TILE_PARAMS = ['LAYER', 'STYLE', 'FORMAT', 'TILEMATRIXSET', 'TILEMATRIX', 'TILEROW', 'TILECOL'];
const INFO_PARAMS = ['LAYER', 'STYLE', 'TILEMATRIXSET', 'TILEMATRIX', 'TILEROW', 'TILECOL', 'J', 'I', 'INFOFORMAT'];

async function getTile(ctx: ServerContext, req: Request, reg: Registry, p: Params): Promise<Response> {
  requirePresent(p, TILE_PARAMS);
  const t = tileAddress(reg, p);
  // the limits were checked above, on this same layer: readTile finds no other
  return serveTile(ctx, req, t.layer, t.tile);
}

// ---------------------------------------------------------------------------------------------------
// GetFeatureInfo: the pixel values at (I, J) of the tile (07-057r7 7.3), rendered by featureinfo.ts.

function pixelIndex(p: Params, name: 'I' | 'J', size: number): number {
  const v = p(name)!;
  if (!/^-?\d+$/.test(v)) throw new TuileError('InvalidParameter', `${name} '${v}' is not an integer`, { locator: name });
  const n = Number(v);
  if (n < 0 || n >= size) throw new TuileError('PointOutOfRange', `${name} ${v} is outside the tile (0 to ${size - 1})`, { locator: name });
  return n;
}

function infoFormat(layer: Layer, value: string): InfoFormat {
  if (!layer.featureInfo) throw new TuileError('InvalidParameter', `layer '${layer.name}' is not queryable: it offers no InfoFormat`, { locator: 'INFOFORMAT' });
  const f = findInfoFormat('mime', value);
  if (!f) throw new TuileError('InvalidParameter', `unknown InfoFormat '${value}' (formats: ${INFO_FORMATS.map((x) => x.mime).join(', ')})`, { locator: 'INFOFORMAT' });
  return f;
}

async function featureInfo(ctx: ServerContext, t: TileAddress, i: number, j: number): Promise<FeatureInfo> {
  const { layer } = t;
  const { z, x: col, y: row } = t.tile;
  const tms = layer.tms;
  const tile = await readTile(ctx.cache, layer, t.tile);
  const px = tile.blank ? undefined : await pixelAt(tile.data, i, j);
  const nodata = !px || px.alpha === 0;
  const res = tms.levels[z].resolution;
  const x = tms.originX + (col * tms.tileSize + i + 0.5) * res;
  const y = tms.originY - (row * tms.tileSize + j + 0.5) * res;
  // lon/lat only where the set's CRS is the one mercatorToLonLat inverts
  const lonLat = tms.crs === 'EPSG:3857' ? mercatorToLonLat(x, y) : undefined;
  const info: FeatureInfo = {
    layer: layer.name,
    tilematrixset: tms.id,
    tilematrix: tms.levels[z].id,
    row,
    col,
    i,
    j,
    x: Math.round(x * 100) / 100,
    y: Math.round(y * 100) / 100,
    ...(lonLat ? { lon: Math.round(lonLat[0] * 1e7) / 1e7, lat: Math.round(lonLat[1] * 1e7) / 1e7 } : {}),
    values: px && !nodata ? px.values : [],
    alpha: px ? px.alpha : 0,
    nodata,
  };
  return info;
}

async function getFeatureInfo(ctx: ServerContext, reg: Registry, p: Params): Promise<Response> {
  requirePresent(p, INFO_PARAMS);
  const t = tileAddress(reg, p);
  const format = infoFormat(t.layer, p('INFOFORMAT')!);
  const j = pixelIndex(p, 'J', t.layer.tms.tileSize);
  const i = pixelIndex(p, 'I', t.layer.tms.tileSize);
  return renderFeatureInfo(await featureInfo(ctx, t, i, j), format, t.layer.tms.crs);
}

// ---------------------------------------------------------------------------------------------------
// Routes

function getCapabilities(reg: Registry, base: string, p: Params): Response {
  // OWS Common 7.3: versions are negotiated with AcceptVersions; a VERSION other than ours fails the same way
  const accept = p('ACCEPTVERSIONS');
  if (accept !== undefined && !accept.split(',').map((v) => v.trim()).includes(VERSION)) {
    throw new TuileError('VersionNegotiationFailed', `this server speaks WMTS ${VERSION} only, not ${accept}`, { locator: 'ACCEPTVERSIONS' });
  }
  const version = p('VERSION');
  if (version !== undefined && version !== '' && version !== VERSION) {
    throw new TuileError('VersionNegotiationFailed', `this server speaks WMTS ${VERSION} only, not ${version}`, { locator: 'VERSION' });
  }
  let sections: Set<string> | undefined;
  const s = p('SECTIONS');
  if (s !== undefined && s !== '') {
    sections = new Set(s.split(',').map((x) => x.trim()));
    for (const x of sections) if (!SECTIONS.includes(x)) throw new TuileError('InvalidParameter', `unknown section '${x}' (sections: ${SECTIONS.join(', ')})`, { locator: 'SECTIONS' });
  }
  return new Response(capabilities(reg, base, sections, p('APIKEY')), { headers: { 'Content-Type': XML_TYPE } });
}

async function kvp(ctx: ServerContext, req: Request): Promise<Response> {
  const reg = ctx.holder.current;
  const p = withKey(kvpParams(new URL(req.url)), req);
  requirePresent(p, ['SERVICE']);
  if (p('SERVICE') !== 'WMTS') throw new TuileError('InvalidParameter', `SERVICE must be WMTS, not '${p('SERVICE')}'`, { locator: 'SERVICE' });
  requirePresent(p, ['REQUEST']);
  const request = p('REQUEST')!;
  if (request === 'GetCapabilities') return getCapabilities(reg, baseUrl(ctx, req), p);
  if (request !== 'GetTile' && request !== 'GetFeatureInfo') {
    throw new TuileError('NotSupported', `operation '${request}' is not supported (operations: GetCapabilities, GetTile, GetFeatureInfo)`, { locator: 'REQUEST' });
  }
  // VERSION is mandatory in GetTile and GetFeatureInfo (07-057r7 7.2, 7.3); we accept its absence, not another value
  const version = p('VERSION');
  if (version !== undefined && version !== VERSION) throw new TuileError('InvalidParameter', `VERSION must be ${VERSION}, not '${version}'`, { locator: 'VERSION' });
  return request === 'GetTile' ? getTile(ctx, req, reg, p) : getFeatureInfo(ctx, reg, p);
}

/** RESTful path segments as the KVP parameters they stand for, with FORMAT from the extension. */
function restParams(segments: Record<string, string>): Params {
  return (name) => segments[name];
}

/** APIKEY from the query (any case) or the header. */
function withKey(p: Params, req: Request): Params {
  const key = apiKeyOf(req);
  return (name) => (name === 'APIKEY' ? key : p(name));
}

function splitExtension(file: string): [string, string] {
  const dot = file.lastIndexOf('.');
  return dot < 0 ? [file, ''] : [file.slice(0, dot), file.slice(dot + 1)];
}

export function wmtsRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError((err) => exceptionResponse(err, 'wmts'));
  app.get('/', (c) => kvp(ctx, c.req.raw));
  app.get('/1.0.0/WMTSCapabilities.xml', (c) =>
    new Response(capabilities(ctx.holder.current, baseUrl(ctx, c.req.raw), undefined, apiKeyOf(c.req.raw)), { headers: { 'Content-Type': XML_TYPE } }),
  );
  // the grammar's route; its parameters are validated as the KVP ones they stand for (a file without an
  // extension included), so that both encodings give the same exceptions
  app.get(WMTS_REST.route, (c) => {
    const { layer, style, tms, z, row, file }: Record<string, string> = c.req.param();
    const [col, ext] = splitExtension(file);
    const format = formatFromExtension(ext);
    const p = restParams({
      LAYER: layer,
      STYLE: style,
      FORMAT: format ? FORMATS[format].mime : `.${ext}`,
      TILEMATRIXSET: tms,
      TILEMATRIX: z,
      TILEROW: row,
      TILECOL: col,
    });
    return getTile(ctx, c.req.raw, ctx.holder.current, withKey(p, c.req.raw));
  });
  app.get('/1.0.0/:layer/:style/:tms/:z/:row/:col/:j/:file', (c) => {
    const { layer, style, tms, z, row, col, j, file } = c.req.param();
    const [i, ext] = splitExtension(file);
    const f = findInfoFormat('ext', ext);
    const p = restParams({
      LAYER: layer,
      STYLE: style,
      TILEMATRIXSET: tms,
      TILEMATRIX: z,
      TILEROW: row,
      TILECOL: col,
      J: j,
      I: i,
      INFOFORMAT: f ? f.mime : `.${ext}`,
    });
    return getFeatureInfo(ctx, ctx.holder.current, withKey(p, c.req.raw));
  });
  return app;
}
