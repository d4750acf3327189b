// WMTS GetCapabilities document (07-057r7 7.1) and the tile matrices it advertises per registry.

import { PM, type TileMatrixSet } from '../geo/tms.js';
import type { Layer, Registry } from '../registry.js';
import { FORMATS } from '../tiles/codec.js';
import { INFO_FORMATS } from './featureinfo.js';
import { xmlDocument as doc } from './xml.js';

export const VERSION = '1.0.0';
/** The one style of every layer: tiles are pre-rendered, but STYLE is a mandatory GetTile parameter (07-057r7 7.2). */
export const STYLE = 'normal';
/** Tile matrices advertised when no layer is published (DESIGN 3: level ids "0".."21"). */
const DEFAULT_MATRICES = 22;

/** OGC URN of a CRS code such as EPSG:3857, the form 07-057r7's examples give ows:SupportedCRS. */
function crsUrn(crs: string): string {
  const [auth, code] = crs.split(':');
  return `urn:ogc:def:crs:${auth}::${code}`;
}

const matrixCounts = new WeakMap<Registry, Map<string, number>>();

/**
 * Tile matrices advertised for a set: levels 0 to the deepest one a layer serves. GDAL reads a layer at the
 * resolution of the set's last TileMatrix whatever the layer's TileMatrixSetLimits say, so matrices deeper
 * than any data would make its full-resolution raster one of missing tiles. A subset of the well-known scale
 * set's scales still conforms to it (07-057r7 annex E).
 */
export function matrixCount(reg: Registry, tms: TileMatrixSet): number {
  // every GetTile asks: computed once per registry, which is immutable (DESIGN 7)
  let counts = matrixCounts.get(reg);
  if (!counts) {
    counts = new Map();
    for (const l of reg.layers.values()) if (l.available) for (const lv of l.levels) counts.set(l.tms.id, Math.max(counts.get(l.tms.id) ?? 0, lv.z + 1));
    matrixCounts.set(reg, counts);
  }
  return Math.min(tms.levels.length, counts.get(tms.id) ?? DEFAULT_MATRICES);
}

// GetCapabilities. Element order follows the 1.0.0 schemas: wmtsGetCapabilities_response.xsd (Capabilities
// = ows:CapabilitiesBaseType, then Contents, Themes*, WSDL*, ServiceMetadataURL*), wmts.xsd (LayerType,
// TileMatrixSet, TileMatrix, TileMatrixSetLink, TileMatrixLimits, Style) and owsDataIdentification.xsd /
// owsContents.xsd (DatasetDescriptionSummaryBaseType = Title*, Abstract*, Keywords*, WGS84BoundingBox*,
// Identifier, BoundingBox*, Metadata*, DatasetDescriptionSummary*). Object key order is document order.

export const SECTIONS = ['ServiceIdentification', 'ServiceProvider', 'OperationsMetadata', 'Contents', 'Themes', 'All'];

function resourceTemplate(base: string, layer: Layer): string {
  return `${base}/wmts/1.0.0/${encodeURIComponent(layer.name)}/{Style}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}`;
}

function layerElement(base: string, l: Layer, keyQuery: string): Record<string, unknown> {
  const wgs = l.bboxLonLat;
  const b = l.bbox;
  const mime = FORMATS[l.format].mime;
  const template = resourceTemplate(base, l);
  return {
    'ows:Title': l.title,
    'ows:Abstract': l.abstract || undefined,
    'ows:Keywords': l.keywords.length > 0 ? { 'ows:Keyword': l.keywords } : undefined,
    'ows:WGS84BoundingBox': { 'ows:LowerCorner': `${wgs.minX} ${wgs.minY}`, 'ows:UpperCorner': `${wgs.maxX} ${wgs.maxY}` },
    'ows:Identifier': l.name,
    // the extent in the tile matrix set's own CRS: GDAL takes it in priority over reprojecting the WGS84 box
    'ows:BoundingBox': { '@crs': crsUrn(l.tms.crs), 'ows:LowerCorner': `${b.minX} ${b.minY}`, 'ows:UpperCorner': `${b.maxX} ${b.maxY}` },
    'ows:Metadata': metadataElements(l),
    Style: { '@isDefault': 'true', 'ows:Identifier': STYLE },
    Format: mime,
    InfoFormat: l.featureInfo ? INFO_FORMATS.map((f) => f.mime) : undefined,
    TileMatrixSetLink: {
      TileMatrixSet: l.tms.id,
      // the tiles that exist (07-057r7 7.1, TileMatrixSetLimits): one TileMatrixLimits per served level
      TileMatrixSetLimits: {
        TileMatrixLimits: l.levels.map((lv) => ({
          TileMatrix: l.tms.levels[lv.z].id,
          MinTileRow: lv.minY,
          MaxTileRow: lv.maxY,
          MinTileCol: lv.minX,
          MaxTileCol: lv.maxX,
        })),
      },
    },
    ResourceURL: [
      { '@format': mime, '@resourceType': 'tile', '@template': `${template}.${FORMATS[l.format].ext}${keyQuery}` },
      ...(l.featureInfo
        ? INFO_FORMATS.map((f) => ({ '@format': f.mime, '@resourceType': 'FeatureInfo', '@template': `${template}/{J}/{I}.${f.ext}${keyQuery}` }))
        : []),
    ],
  };
}

/**
 * The configuration's metadata links, then its attribution (WMTS 1.0.0 has no Attribution element: it
 * travels as ows:Metadata links whose `about` says so), each an xlink simple link (owsCommon.xsd MetadataType).
 */
function metadataElements(l: Layer): Record<string, string>[] | undefined {
  const out: Record<string, string>[] = l.metadata.map((m) => ({ '@xlink:type': 'simple', '@xlink:href': m.url, '@xlink:role': m.type, '@xlink:title': m.format }));
  const a = l.attribution;
  if (a) {
    out.push({ '@about': 'attribution', '@xlink:type': 'simple', '@xlink:href': a.url, '@xlink:title': a.title });
    if (a.logo) out.push({ '@about': 'attribution-logo', '@xlink:type': 'simple', '@xlink:href': a.logo.url, '@xlink:title': a.logo.format });
  }
  return out.length ? out : undefined;
}

function tileMatrixSetElement(tms: TileMatrixSet, count: number): Record<string, unknown> {
  const corner = `${tms.originX} ${tms.originY}`;
  return {
    'ows:Identifier': tms.id,
    'ows:SupportedCRS': crsUrn(tms.crs),
    WellKnownScaleSet: tms.wellKnownScaleSet,
    TileMatrix: tms.levels.slice(0, count).map((m) => ({
      'ows:Identifier': m.id,
      ScaleDenominator: m.scaleDenominator,
      TopLeftCorner: corner,
      TileWidth: tms.tileSize,
      TileHeight: tms.tileSize,
      MatrixWidth: m.matrixWidth,
      MatrixHeight: m.matrixHeight,
    })),
  };
}

function operation(base: string, name: string, key?: string): Record<string, unknown> {
  const encoding = (value: string) => ({ '@name': 'GetEncoding', 'ows:AllowedValues': { 'ows:Value': value } });
  const k = key ? `apikey=${encodeURIComponent(key)}` : '';
  const rest = name === 'GetCapabilities' ? `${base}/wmts/1.0.0/WMTSCapabilities.xml${k ? `?${k}` : ''}` : `${base}/wmts/1.0.0/`;
  return {
    '@name': name,
    'ows:DCP': {
      'ows:HTTP': {
        'ows:Get': [
          { '@xlink:href': `${base}/wmts?${k ? `${k}&` : ''}`, 'ows:Constraint': encoding('KVP') },
          { '@xlink:href': rest, 'ows:Constraint': encoding('RESTful') },
        ],
      },
    },
  };
}

/**
 * The capabilities document for a request bearing `key` (or none): the layers it may use, and URLs that
 * carry the key, so that a client given this document reaches the tiles it lists.
 */
export function capabilities(reg: Registry, base: string, sections?: Set<string>, key?: string): string {
  const want = (s: string) => !sections || sections.has('All') || sections.has(s);
  const layers = reg.visible(key);
  const keyQuery = key ? `?apikey=${encodeURIComponent(key)}` : '';
  const sets = new Map<string, TileMatrixSet>();
  for (const l of layers) sets.set(l.tms.id, l.tms);
  if (sets.size === 0) sets.set(PM.id, PM);
  return doc({
    Capabilities: {
      '@xmlns': 'http://www.opengis.net/wmts/1.0',
      '@xmlns:ows': 'http://www.opengis.net/ows/1.1',
      '@xmlns:xlink': 'http://www.w3.org/1999/xlink',
      '@xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
      '@xsi:schemaLocation': 'http://www.opengis.net/wmts/1.0 http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd',
      '@version': VERSION,
      'ows:ServiceIdentification': want('ServiceIdentification')
        ? {
            'ows:Title': 'tuile WMTS',
            'ows:Abstract': 'Raster tile pyramids in Web Mercator',
            'ows:ServiceType': 'OGC WMTS',
            'ows:ServiceTypeVersion': VERSION,
            'ows:Fees': 'none',
            'ows:AccessConstraints': 'none',
          }
        : undefined,
      // ServiceContact is mandatory in owsServiceProvider.xsd, all of its children optional
      'ows:ServiceProvider': want('ServiceProvider')
        ? { 'ows:ProviderName': 'tuile', 'ows:ProviderSite': { '@xlink:href': `${base}/` }, 'ows:ServiceContact': {} }
        : undefined,
      'ows:OperationsMetadata': want('OperationsMetadata')
        ? { 'ows:Operation': ['GetCapabilities', 'GetTile', 'GetFeatureInfo'].map((n) => operation(base, n, key)) }
        : undefined,
      Contents: want('Contents')
        ? {
            Layer: layers.map((l) => layerElement(base, l, keyQuery)),
            TileMatrixSet: [...sets.values()].map((t) => tileMatrixSetElement(t, matrixCount(reg, t))),
          }
        : undefined,
      // how clients of the RESTful encoding (07-057r7 10) find this document
      ServiceMetadataURL: { '@xlink:href': `${base}/wmts/1.0.0/WMTSCapabilities.xml${keyQuery}` },
    },
  });
}
