// GetFeatureInfo answers (WMTS 07-057r7 7.3): the fields of one pixel and their rendering in each InfoFormat.
// Feature formats are what GIS clients parse into features (QGIS Identify in feature mode): a GeoJSON
// FeatureCollection and MapServer-style GML 2, each with one point feature at the pixel centre.

import { html } from 'hono/html';
import { xmlDocument } from './xml.js';

export interface InfoFormat {
  mime: string;
  /** extension of the RESTful FeatureInfo resource */
  ext: string;
}

/** Advertised in the capabilities, in this order. */
export const INFO_FORMATS: InfoFormat[] = [
  { mime: 'text/plain', ext: 'txt' },
  { mime: 'application/json', ext: 'json' },
  { mime: 'text/html', ext: 'html' },
  { mime: 'application/vnd.ogc.gml', ext: 'gml' },
];

/**
 * Accepted, not advertised: text/xml, which tuile advertised before and QGIS reads as GML; it answers the
 * same GML document. Not advertised, because QGIS keeps the last feature format of the list.
 */
export const EXTRA_INFO_FORMATS: InfoFormat[] = [{ mime: 'text/xml', ext: 'xml' }];

export function findInfoFormat(by: 'mime' | 'ext', value: string): InfoFormat | undefined {
  return [...INFO_FORMATS, ...EXTRA_INFO_FORMATS].find((f) => f[by] === value);
}

/**
 * The fields of every format: layer, tilematrixset, tilematrix, row, col, i, j, x and y (pixel centre in
 * the set's CRS), lon and lat (when the CRS is EPSG:3857), values (one per band; empty where there is no
 * data), alpha, nodata.
 */
export interface FeatureInfo {
  layer: string;
  tilematrixset: string;
  tilematrix: string;
  row: number;
  col: number;
  i: number;
  j: number;
  x: number;
  y: number;
  lon?: number;
  lat?: number;
  values: number[];
  alpha: number;
  nodata: boolean;
}

function infoFields(info: FeatureInfo): [string, string][] {
  return Object.entries(info).map(([k, v]) => [k, Array.isArray(v) ? v.join(' ') : String(v)]);
}

/** The feature's attributes: the fields, with one attribute per band (band_1...) beside the values list. */
function properties(info: FeatureInfo): Record<string, string | number | boolean | number[]> {
  const out: Record<string, string | number | boolean | number[]> = { ...info };
  info.values.forEach((v, b) => (out[`band_${b + 1}`] = v));
  return out;
}

/** A GeoJSON FeatureCollection of one point (RFC 7946: lon/lat; the crs member says so for older readers). */
function geoJson(info: FeatureInfo, crs: string): string {
  const lonLat = info.lon !== undefined && info.lat !== undefined;
  const name = lonLat ? 'urn:ogc:def:crs:OGC:1.3:CRS84' : `urn:ogc:def:crs:${crs.replace(':', '::')}`;
  return JSON.stringify({
    type: 'FeatureCollection',
    crs: { type: 'name', properties: { name } },
    features: [
      {
        type: 'Feature',
        id: `${info.layer}.${info.tilematrix}.${info.row}.${info.col}.${info.j}.${info.i}`,
        geometry: { type: 'Point', coordinates: lonLat ? [info.lon, info.lat] : [info.x, info.y] },
        properties: properties(info),
      },
    ],
  });
}

/** An XML element name from a layer name (which may hold ':' and start with a digit). */
function elementName(layer: string): string {
  const n = layer.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z_]/.test(n) ? n : `_${n}`;
}

/**
 * GML 2 as MapServer answers GetFeatureInfo (msGMLOutput, LAYER_layer, LAYER_feature), the form QGIS's
 * GML reader and OpenLayers' WMSGetFeatureInfo format recognise, with the pixel centre as a gml:Point.
 */
function gml(info: FeatureInfo, crs: string): string {
  const name = elementName(info.layer);
  const point = `${info.x},${info.y}`;
  const attributes: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(properties(info))) attributes[k] = Array.isArray(v) ? v.join(' ') : String(v);
  return (
    xmlDocument({
      msGMLOutput: {
        '@xmlns:gml': 'http://www.opengis.net/gml',
        '@xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
        [`${name}_layer`]: {
          'gml:name': info.layer,
          [`${name}_feature`]: {
            'gml:boundedBy': { 'gml:Box': { '@srsName': crs, 'gml:coordinates': `${point} ${point}` } },
            geometry: { 'gml:Point': { '@srsName': crs, 'gml:coordinates': point } },
            ...attributes,
          },
        },
      },
    })
  );
}

/** The answer in one format; `crs` is the tile matrix set's, in which x and y are. */
export function renderFeatureInfo(info: FeatureInfo, format: InfoFormat, crs = 'EPSG:3857'): Response {
  const type = (mime: string) => ({ 'Content-Type': `${mime}; charset=utf-8` });
  switch (format.mime) {
    case 'application/json':
      return new Response(geoJson(info, crs), { headers: type('application/json') });
    case 'text/html': {
      const rows = infoFields(info).map(([k, v], n) => html`${n ? '\n' : ''}<tr><th>${k}</th><td>${v}</td></tr>`);
      const title = `GetFeatureInfo ${info.layer}`;
      return new Response(String(html`<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head><body>\n<table>\n${rows}\n</table>\n</body></html>\n`), {
        headers: type('text/html'),
      });
    }
    case 'application/vnd.ogc.gml':
    case 'text/xml':
      return new Response(gml(info, crs), { headers: type(format.mime) });
    default:
      return new Response(infoFields(info).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n', { headers: type('text/plain') });
  }
}
