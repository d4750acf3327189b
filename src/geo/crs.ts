// Coordinate reference systems: EPSG codes (through epsg-index), GeoTIFF GeoKeys, and cached proj4 point transformers.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Converter } from 'proj4';
import { TuileError } from '../errors.js';
import { COORDINATE_FRAME_TOWGS84 } from './coordinate-frame.js';

// required, not imported: Node parses a CommonJS module imported from ESM once more for its export names,
// which doubles proj4's load time (~40 ms in every build worker)
const proj4 = createRequire(import.meta.url)('proj4') as typeof import('proj4');

export interface Crs {
  name: string;
  epsg?: number;
  /** proj4js-ready definition: datum grids that proj4js lacks are already removed (see withoutMissingGrids). */
  proj4: string;
  isGeographic: boolean;
  /** 'degree' for geographic CRSs, else the proj4 unit name ('m', 'us-ft', 'ft', 'km', ...) or 'to_meter=<factor>'. */
  units: string;
}

export interface Transformer {
  forward(x: number, y: number): [number, number];
  inverse(x: number, y: number): [number, number];
  /** In place, on x,y pairs; NaN where the point cannot be transformed. */
  forwardArray(xy: Float64Array): void;
  inverseArray(xy: Float64Array): void;
}

// Literal copies of the index entries, so that importing this module reads no file; a test checks them
// against the index.
export const WGS84: Crs = Object.freeze({
  name: 'WGS 84',
  epsg: 4326,
  proj4: '+proj=longlat +datum=WGS84 +no_defs +type=crs',
  isGeographic: true,
  units: 'degree',
});

export const WEB_MERCATOR: Crs = Object.freeze({
  name: 'WGS 84 / Pseudo-Mercator',
  epsg: 3857,
  proj4:
    '+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +nadgrids=@null +wktext +no_defs +type=crs',
  isGeographic: false,
  units: 'm',
});

const USER_DEFINED = 32767;

// ---------------------------------------------------------------------------------------------------
// proj4 strings as token lists

type Token = [key: string, value: string | undefined];

function tokenize(def: string): Token[] {
  const out: Token[] = [];
  // values may be quoted and hold spaces: +nadgrids="National 84 (02.07.01).gsb"
  const re = /\+([A-Za-z_][\w]*)(?:=("[^"]*"|\S+))?/g;
  for (let m = re.exec(def); m !== null; m = re.exec(def)) out.push([m[1], m[2]]);
  return out;
}

function joinTokens(tokens: Token[]): string {
  return tokens.map(([k, v]) => (v === undefined ? `+${k}` : `+${k}=${v}`)).join(' ');
}

function tokenValue(tokens: Token[], key: string): string | undefined {
  return tokens.find(([k]) => k === key)?.[1];
}

const GEOGRAPHIC_PROJ = new Set(['longlat', 'latlong', 'lonlat', 'latlon']);

/**
 * proj4js refuses to transform through a datum grid it has not been given (every point becomes NaN), and we
 * ship none. Without the grid PROJ falls back to the best transformation it has without one: for NAD27
 * (Clarke 1866) in the conterminous US that is the Helmert shift EPSG:1173 "NAD27 to WGS 84 (4)"
 * (-8, 160, 176 m, about 10 m accurate), which is what gdalwarp applies; for any other grid datum it is a
 * "ballpark" conversion that keeps the ellipsoid and applies no shift. '@null' is kept: it is how
 * EPSG:3857 says "already WGS 84" and proj4js knows it. Vertical grids do not matter for 2D rasters.
 */
const NAD27_TO_WGS84 = '-8,160,176';

/**
 * Datums whose index definition is not the shift PROJ applies (gdalwarp's, without grids), each checked against
 * GDAL 3.6 / PROJ 9.1 to the millimetre by the corpus (test/fixtures/corpus): OSGB 1936 names the OSTN15 grid,
 * whose fallback is the Helmert EPSG:1314 "OSGB36 to WGS 84 (6)"; Amersfoort's index rotations are not the ones
 * PROJ applies (its 0.5 m Molodensky-Badekas, written here as the same Helmert about the geocentre); S-JTSK's
 * index shift is the 6 m EPSG:15965 where PROJ takes the 1 m EPSG:5239 (rotations as position vector). DHDN names
 * the BETA2007 grid; its Helmert EPSG:1777 is 0.4 m from it. NTF has no shift at all in the index; PROJ applies
 * EPSG:1193. Beyond these, COORDINATE_FRAME_TOWGS84 (generated from PROJ's database) lists the index's shifts
 * that are coordinate-frame transformations with their rotations left in that convention: BD72, Israel 1993,
 * Pulkovo 1942(58) and 1995, Hong Kong 1980, RT90, AGD66, UCS-2000... 40 to 150 m off before; their rotations are
 * negated into +towgs84's position vector (PROJ may still choose another transformation by area: Pulkovo
 * 1942(58) in eastern Germany lands 4 m from PROJ's EPSG:1645).
 */
const SHIFT_AS_PROJ: { ellps: string; pm?: string; grid?: RegExp; towgs84?: string; to: string }[] = [
  { ellps: 'airy', grid: /OSTN15/i, to: '446.448,-125.157,542.06,0.15,0.247,0.842,-20.489' },
  {
    ellps: 'bessel',
    towgs84: '565.4171,50.3319,465.5524,1.9342,-1.6677,9.1019,4.0725',
    to: '565.4171,50.3320,465.5524,-0.3989573882431337,0.3439878173782826,-1.877401639980446,4.0725',
  },
  { ellps: 'bessel', towgs84: '589,76,480,0,0,0,0', to: '572.213,85.334,461.94,4.9732,1.529,5.2484,3.5378' },
  { ellps: 'bessel', grid: /BETA2007/i, to: '598.1,73.7,418.2,0.202,0.045,-2.455,6.7' },
  // NTF (Paris) only: other Clarke 1880 (IGN) datums without a shift in the index (Voirol, Lome...) are not NTF
  { ellps: 'clrk80ign', pm: 'paris', to: '-168,-60,320' },
];

function withoutMissingGrids(tokens: Token[]): Token[] {
  let nad27Grid = false;
  let dropped = '';
  const kept = tokens.filter(([k, v]) => {
    if (k === 'nadgrids') {
      const keep = v === '@null' || v === 'null';
      // NAD27 proper names these grids; NAD27(76) and NAD27(CGQ77) name others and stay ballpark, as in PROJ
      if (!keep && /ntv2_0\.gsb|conus|ntv1_can|alaska/i.test(v ?? '')) nad27Grid = true;
      if (!keep) dropped = v ?? '';
      return keep;
    }
    return k !== 'geoidgrids' && k !== 'vunits';
  });
  const ellps = tokenValue(kept, 'ellps');
  const towgs84 = tokenValue(kept, 'towgs84');
  const asProj = SHIFT_AS_PROJ.find(
    (d) =>
      d.ellps === ellps &&
      (d.pm === undefined || d.pm === tokenValue(kept, 'pm')) &&
      (d.grid ? d.grid.test(dropped) && towgs84 === undefined : d.towgs84 === towgs84),
  );
  const positionVector =
    asProj?.to ??
    (towgs84 !== undefined && COORDINATE_FRAME_TOWGS84.has(towgs84)
      ? towgs84
          .split(',')
          .map((v, i) => (i >= 3 && i <= 5 ? String(-Number(v)) : v))
          .join(',')
      : undefined);
  if (positionVector !== undefined) {
    const out = kept.filter(([k]) => k !== 'towgs84');
    out.splice(out.findIndex(([k]) => k === 'ellps') + 1, 0, ['towgs84', positionVector]);
    return out;
  }
  const nad27 = (nad27Grid && tokenValue(kept, 'ellps') === 'clrk66') || tokenValue(kept, 'datum') === 'NAD27';
  if (nad27 && tokenValue(kept, 'towgs84') === undefined) {
    // proj4js's own NAD27 datum names grids too: spell it as its ellipsoid plus the Helmert shift
    const out = kept.filter(([k]) => k !== 'datum' && k !== 'ellps');
    const at = Math.max(1, out.findIndex(([k]) => k === 'units' || k === 'no_defs'));
    out.splice(at === 0 ? out.length : at, 0, ['ellps', 'clrk66'], ['towgs84', NAD27_TO_WGS84]);
    return out;
  }
  return kept;
}

function unitsOf(tokens: Token[]): string {
  const proj = tokenValue(tokens, 'proj') ?? '';
  if (GEOGRAPHIC_PROJ.has(proj)) return 'degree';
  const units = tokenValue(tokens, 'units');
  if (units !== undefined) return units;
  const toMeter = tokenValue(tokens, 'to_meter');
  return toMeter !== undefined ? `to_meter=${toMeter}` : 'm';
}

/**
 * Builds proj4js's view of a definition and checks that a point near `probe` survives a round trip through
 * it: proj4js accepts some definitions it then computes garbage or NaN for, and a CRS that cannot carry a
 * point is better refused here than discovered as blank tiles.
 */
function checkUsable(def: string, label: string, probe: [number, number]): void {
  let conv: Converter;
  try {
    conv = proj4(WGS84.proj4, def);
  } catch (err) {
    const proj = tokenValue(tokenize(def), 'proj');
    throw new TuileError(
      'UnsupportedCrs',
      `${label}: proj4js cannot use its definition${proj ? ` (projection '${proj}')` : ''}: ${String(err)}`,
      { cause: err },
    );
  }
  // about a metre: proj4js's inverse Helmert is approximate (decimetres for the large rotations of some
  // old datums), which is no reason to refuse a CRS; NaN or kilometres are
  let ok = false;
  try {
    const p = conv.forward([probe[0], probe[1]], true);
    const q = conv.inverse([p[0], p[1]], true);
    ok =
      Number.isFinite(p[0]) &&
      Number.isFinite(p[1]) &&
      Math.abs(q[0] - probe[0]) < 1e-5 &&
      Math.abs(q[1] - probe[1]) < 1e-5;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new TuileError('UnsupportedCrs', `${label}: proj4js does not transform points correctly with '${def}'`);
  }
}

// ---------------------------------------------------------------------------------------------------
// EPSG through epsg-index

interface IndexEntry {
  code: string;
  kind: string;
  name: string;
  wkt: string | null;
  proj4: string | null;
  bbox: [number, number, number, number] | null; // north, west, south, east
}

let indexDir: string | undefined;

function epsgIndexDir(): string {
  if (indexDir === undefined) {
    // epsg-index is data only (its main module exports null): read its per-code JSON files directly
    const require = createRequire(import.meta.url);
    indexDir = join(dirname(require.resolve('epsg-index/package.json')), 's');
  }
  return indexDir;
}

function indexEntry(code: number): IndexEntry | undefined {
  if (!Number.isInteger(code) || code <= 0 || code >= 1e7) return undefined;
  try {
    return JSON.parse(readFileSync(join(epsgIndexDir(), `${code}.json`), 'utf8')) as IndexEntry;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const KIND_NOT_USABLE: Record<string, string> = {
  'CRS-GCENCRS': 'a geocentric (3D cartesian) CRS',
  'CRS-VERTCRS': 'a vertical CRS',
  'CRS-ENGCRS': 'an engineering (local) CRS',
  'CRS-DRVDCRS': 'a derived CRS',
};

const epsgCache = new Map<number, Crs>([
  [4326, WGS84],
  [3857, WEB_MERCATOR],
]);

export function crsFromEpsg(code: number): Crs {
  const cached = epsgCache.get(code);
  if (cached) return cached;
  const entry = indexEntry(code);
  if (!entry) throw new TuileError('UnsupportedCrs', `EPSG:${code} is not a known EPSG CRS code`);
  const label = `EPSG:${code} (${entry.name})`;
  const notUsable = KIND_NOT_USABLE[entry.kind];
  if (notUsable) throw new TuileError('UnsupportedCrs', `${label} is ${notUsable}, not usable for a raster`);
  if (!entry.proj4) throw new TuileError('UnsupportedCrs', `${label} has no PROJ definition in the EPSG index`);
  const tokens = withoutMissingGrids(tokenize(entry.proj4));
  const proj = tokenValue(tokens, 'proj');
  if (!proj) throw new TuileError('UnsupportedCrs', `${label} has no horizontal projection ('${entry.proj4}')`);
  const def = joinTokens(tokens);
  const isGeographic = GEOGRAPHIC_PROJ.has(proj);
  if (!isGeographic) checkUsable(def, label, probeOf(entry.bbox));
  const crs: Crs = Object.freeze({ name: entry.name, epsg: code, proj4: def, isGeographic, units: unitsOf(tokens) });
  epsgCache.set(code, crs);
  return crs;
}

/**
 * A point inside the area of use, off its centre: the centre is often a projection's origin, where some
 * inverses are singular.
 */
function probeOf(bbox: IndexEntry['bbox']): [number, number] {
  if (!bbox) return [0.5, 0.5];
  const [n, w, s, e] = bbox;
  // an area of use crossing the antimeridian has west > east
  const width = w <= e ? e - w : e - w + 360;
  let lon = w + width * 0.6;
  if (lon > 180) lon -= 360;
  return [lon, s + (n - s) * 0.6];
}

/** Same idea for a definition without an area of use: near its origin, off the pole. */
function probeNearOrigin(tokens: Token[]): [number, number] {
  const lon0 = Number(tokenValue(tokens, 'lon_0') ?? tokenValue(tokens, 'lonc') ?? 0);
  const lat0 = Number(tokenValue(tokens, 'lat_0') ?? 0);
  return [lon0 + 0.5, Math.max(-80, Math.min(80, lat0 + 0.5))];
}

// ---------------------------------------------------------------------------------------------------
// Identifiers

const EPSG_FORMS = [
  /^epsg:(\d+)$/i,
  /^urn:ogc:def:crs:epsg:[^:]*:(\d+)$/i,
  /^https?:\/\/www\.opengis\.net\/def\/crs\/epsg\/[^/]+\/(\d+)$/i,
];
// CRS84 is WGS 84 in longitude, latitude order, which is the only order this module uses anyway
const CRS84_FORMS = [
  /^(?:crs:84|ogc:crs84)$/i,
  /^urn:ogc:def:crs:ogc:[^:]*:crs84$/i,
  /^https?:\/\/www\.opengis\.net\/def\/crs\/ogc\/[^/]+\/crs84$/i,
];

export function parseCrs(s: string): Crs {
  const text = s.trim();
  for (const re of EPSG_FORMS) {
    const m = re.exec(text);
    if (m) return crsFromEpsg(Number(m[1]));
  }
  if (CRS84_FORMS.some((re) => re.test(text))) return WGS84;
  if (text.startsWith('+')) return crsFromProj4(text, text);
  throw new TuileError(
    'UnsupportedCrs',
    `unrecognised CRS identifier '${s}' (expected EPSG:<code>, urn:ogc:def:crs:EPSG::<code>, http://www.opengis.net/def/crs/EPSG/0/<code> or a +proj string)`,
  );
}

function crsFromProj4(def: string, name: string): Crs {
  const tokens = withoutMissingGrids(tokenize(def));
  const proj = tokenValue(tokens, 'proj');
  if (!proj) throw new TuileError('UnsupportedCrs', `'${def}' has no +proj`);
  const clean = joinTokens(tokens);
  const isGeographic = GEOGRAPHIC_PROJ.has(proj);
  checkUsable(clean, name, isGeographic ? [0.5, 0.5] : probeNearOrigin(tokens));
  return { name, proj4: clean, isGeographic, units: unitsOf(tokens) };
}

// ---------------------------------------------------------------------------------------------------
// GeoTIFF GeoKeys

type GeoKeys = Record<string, unknown>;

function keyNumber(keys: GeoKeys, name: string): number | undefined {
  let v = keys[name];
  if (Array.isArray(v) && v.length === 1) v = v[0];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function firstKey(keys: GeoKeys, names: string[]): number | undefined {
  for (const n of names) {
    const v = keyNumber(keys, n);
    if (v !== undefined) return v;
  }
  return undefined;
}

function keyString(keys: GeoKeys, name: string): string | undefined {
  const v = keys[name];
  if (typeof v !== 'string') return undefined;
  const t = v.replace(/[|"\s]+$/g, '').trim();
  return t === '' || /^unnamed$|^unknown$/i.test(t) ? undefined : t;
}

/** GeoTIFF 1.1 table of ProjCoordTransGeoKey values, for messages. */
const CT_NAMES: Record<number, string> = {
  1: 'TransverseMercator',
  2: 'TransvMercator_Modified_Alaska',
  3: 'ObliqueMercator',
  4: 'ObliqueMercator_Laborde',
  5: 'ObliqueMercator_Rosenmund',
  6: 'ObliqueMercator_Spherical',
  7: 'Mercator',
  8: 'LambertConfConic_2SP',
  9: 'LambertConfConic_1SP',
  10: 'LambertAzimEqualArea',
  11: 'AlbersEqualArea',
  12: 'AzimuthalEquidistant',
  13: 'EquidistantConic',
  14: 'Stereographic',
  15: 'PolarStereographic',
  16: 'ObliqueStereographic',
  17: 'Equirectangular',
  18: 'CassiniSoldner',
  19: 'Gnomonic',
  20: 'MillerCylindrical',
  21: 'Orthographic',
  22: 'Polyconic',
  23: 'Robinson',
  24: 'Sinusoidal',
  25: 'VanDerGrinten',
  26: 'NewZealandMapGrid',
  27: 'TransvMercator_SouthOriented',
  28: 'CylindricalEqualArea',
};

export function crsFromGeoKeys(keys: Record<string, unknown>): Crs {
  if (!keys || typeof keys !== 'object' || Object.keys(keys).length === 0) {
    throw new TuileError('NotGeoreferenced', 'no GeoKeys');
  }
  const pcs = keyNumber(keys, 'ProjectedCSTypeGeoKey');
  const gcs = keyNumber(keys, 'GeographicTypeGeoKey');
  // Old writers sometimes omit the model type; the CRS codes present tell it.
  const model =
    keyNumber(keys, 'GTModelTypeGeoKey') ?? (pcs !== undefined ? 1 : gcs !== undefined ? 2 : undefined);
  if (model === undefined) {
    throw new TuileError('NotGeoreferenced', 'GeoKeys hold neither a model type nor a CRS code');
  }
  if (model === 1) {
    if (pcs !== undefined && pcs !== USER_DEFINED && pcs !== 0) return withLinearUnit(crsFromEpsg(pcs), keys);
    return userProjected(keys);
  }
  if (model === 2) {
    if (gcs !== undefined && gcs !== USER_DEFINED && gcs !== 0) {
      const crs = crsFromEpsg(gcs);
      if (!crs.isGeographic) {
        throw new TuileError('UnsupportedCrs', `GeographicTypeGeoKey EPSG:${gcs} (${crs.name}) is not a geographic CRS`);
      }
      return crs;
    }
    const unit = angularUnit(keys);
    if (unit.degrees !== 1) {
      // GDAL (3.6) converts the outline of such a file to degrees but gdalwarp then finds no pixel of it
      throw new TuileError(
        'UnsupportedCrs',
        `GeogAngularUnitsGeoKey = ${unit.code} (${ANGULAR_NAMES[unit.code] ?? 'unknown'}): a user-defined geographic CRS in another unit than degrees is not placed consistently by GDAL; only degrees are read`,
      );
    }
    const base = baseGeographic(keys, unit);
    return crsFromProj4(`+proj=longlat ${base.datum} +no_defs +type=crs`, base.name);
  }
  if (model === 3) throw new TuileError('UnsupportedCrs', 'geocentric model (GTModelTypeGeoKey = 3) is not supported');
  throw new TuileError('UnsupportedCrs', `unknown GTModelTypeGeoKey ${model}`);
}

const ANGULAR_NAMES: Record<number, string> = {
  9101: 'radian',
  9102: 'degree',
  9103: 'arc-minute',
  9104: 'arc-second',
  9105: 'grad',
  9106: 'gon',
  9110: 'sexagesimal DDD.MMSSsss',
  9122: 'degree',
  32767: 'user-defined',
};

interface AngularUnit {
  code: number;
  degrees: number; // degrees per unit, NaN for sexagesimal DDD.MMSSsss
}

function angularUnit(keys: GeoKeys): AngularUnit {
  const code = keyNumber(keys, 'GeogAngularUnitsGeoKey') ?? 9102;
  switch (code) {
    case 9102: // degree
    case 9122: // degree (supplier to define representation)
      return { code, degrees: 1 };
    case 9101:
      return { code, degrees: 180 / Math.PI };
    case 9103:
      return { code, degrees: 1 / 60 };
    case 9104:
      return { code, degrees: 1 / 3600 };
    case 9105:
    case 9106:
      return { code, degrees: 0.9 };
    case 9110:
      return { code, degrees: Number.NaN };
    case USER_DEFINED: {
      const radians = keyNumber(keys, 'GeogAngularUnitSizeGeoKey');
      if (radians !== undefined && radians > 0) return { code, degrees: (radians * 180) / Math.PI };
    }
  }
  throw new TuileError('UnsupportedCrs', `angular unit GeogAngularUnitsGeoKey = ${code} is not supported`);
}

function toDegrees(v: number, unit: AngularUnit): number {
  if (!Number.isNaN(unit.degrees)) return v * unit.degrees;
  // EPSG 9110 packs degrees, minutes and seconds as DDD.MMSSsss; go through text as libgeotiff does, so
  // that binary fractions do not turn 30' into 29'59.99"
  const [d, frac = ''] = Math.abs(v).toFixed(7).split('.');
  const deg = Number(d) + Number(frac.slice(0, 2)) / 60 + Number(`${frac.slice(2, 4)}.${frac.slice(4)}`) / 3600;
  return v < 0 ? -deg : deg;
}

interface BaseGeographic {
  datum: string; // proj4 tokens for ellipsoid, datum shift and prime meridian
  name: string;
}

const DATUM_TOKENS = new Set(['datum', 'ellps', 'a', 'b', 'rf', 'f', 'R', 'towgs84', 'nadgrids', 'pm']);

function datumTokensOf(crs: Crs): string {
  return joinTokens(tokenize(crs.proj4).filter(([k]) => DATUM_TOKENS.has(k)));
}

function baseGeographic(keys: GeoKeys, unit: AngularUnit): BaseGeographic {
  const gcs = keyNumber(keys, 'GeographicTypeGeoKey');
  if (gcs !== undefined && gcs !== USER_DEFINED && gcs !== 0) {
    const crs = crsFromEpsg(gcs);
    if (!crs.isGeographic) {
      throw new TuileError('UnsupportedCrs', `GeographicTypeGeoKey EPSG:${gcs} (${crs.name}) is not a geographic CRS`);
    }
    return { datum: datumTokensOf(crs), name: crs.name };
  }
  const name = keyString(keys, 'GeogCitationGeoKey') ?? 'user-defined geographic CRS';
  const parts: string[] = [];
  let datumKnown = false;

  const datum = keyNumber(keys, 'GeogGeodeticDatumGeoKey');
  if (datum !== undefined && datum !== USER_DEFINED) {
    const viaGcs = geographicOfDatum(datum);
    if (viaGcs) {
      parts.push(datumTokensOf(viaGcs));
      datumKnown = true;
    }
  }
  if (!datumKnown) {
    parts.push(ellipsoidTokens(keys, datum));
    const towgs84 = keys.GeogTOWGS84GeoKey;
    if (Array.isArray(towgs84) && (towgs84.length === 3 || towgs84.length === 7)) {
      parts.push(`+towgs84=${towgs84.map(Number).join(',')}`);
    }
  }
  const pmLong = keyNumber(keys, 'GeogPrimeMeridianLongGeoKey');
  const pm = keyNumber(keys, 'GeogPrimeMeridianGeoKey');
  if (pmLong !== undefined && pmLong !== 0) {
    parts.push(`+pm=${toDegrees(pmLong, unit)}`);
  } else if (pm !== undefined && pm !== 8901 && pm !== USER_DEFINED && !datumKnown) {
    throw new TuileError(
      'UnsupportedCrs',
      `prime meridian GeogPrimeMeridianGeoKey = ${pm} is not supported without GeogPrimeMeridianLongGeoKey`,
    );
  }
  return { datum: parts.join(' '), name };
}

/**
 * EPSG numbers the datum of each early geographic CRS 2000 above it (datum 6267 is the datum of CRS 4267):
 * that lets the index, which holds CRSs only, answer for a datum code. Checked against the datum code the
 * index's WKT names, when it names one.
 */
function geographicOfDatum(datum: number): Crs | undefined {
  if (datum < 6001 || datum > 6999) return undefined;
  const entry = indexEntry(datum - 2000);
  if (!entry || entry.kind !== 'CRS-GEOGCRS' || !entry.wkt) return undefined;
  const named = /DATUM\[.*?AUTHORITY\["EPSG","(\d+)"\]\],PRIMEM/.exec(entry.wkt);
  if (named && Number(named[1]) !== datum) return undefined;
  try {
    return crsFromEpsg(datum - 2000);
  } catch {
    return undefined;
  }
}

let ellipsoids: Map<number, { a: number; rf: number }> | undefined;

/** Ellipsoid codes to axes, gathered from the SPHEROID[...] of every WKT in the index (loaded on first need). */
function ellipsoidByCode(code: number): { a: number; rf: number } | undefined {
  if (!ellipsoids) {
    ellipsoids = new Map();
    const all = JSON.parse(readFileSync(join(dirname(epsgIndexDir()), 'all.json'), 'utf8')) as Record<string, IndexEntry>;
    const re = /SPHEROID\["[^"]*",([-\d.eE+]+),([-\d.eE+]+),AUTHORITY\["EPSG","(\d+)"\]\]/g;
    for (const e of Object.values(all)) {
      if (!e.wkt) continue;
      for (let m = re.exec(e.wkt); m !== null; m = re.exec(e.wkt)) {
        ellipsoids.set(Number(m[3]), { a: Number(m[1]), rf: Number(m[2]) });
      }
    }
  }
  return ellipsoids.get(code);
}

function ellipsoidTokens(keys: GeoKeys, datum: number | undefined): string {
  const code = keyNumber(keys, 'GeogEllipsoidGeoKey');
  if (code !== undefined && code !== USER_DEFINED) {
    const e = ellipsoidByCode(code);
    if (e) return e.rf === 0 ? `+a=${e.a} +b=${e.a}` : `+a=${e.a} +rf=${e.rf}`;
  }
  const a = keyNumber(keys, 'GeogSemiMajorAxisGeoKey');
  const rf = keyNumber(keys, 'GeogInvFlatteningGeoKey');
  const b = keyNumber(keys, 'GeogSemiMinorAxisGeoKey');
  if (a !== undefined && a > 0) {
    if (rf !== undefined && rf > 0) return `+a=${a} +rf=${rf}`;
    return `+a=${a} +b=${b !== undefined && b > 0 ? b : a}`;
  }
  if (code !== undefined && code !== USER_DEFINED) {
    throw new TuileError('UnsupportedCrs', `ellipsoid GeogEllipsoidGeoKey = ${code} is unknown and no axes are given`);
  }
  if (datum !== undefined && datum !== USER_DEFINED) {
    throw new TuileError('UnsupportedCrs', `datum GeogGeodeticDatumGeoKey = ${datum} is unknown and no ellipsoid is given`);
  }
  // GDAL's default when a file says nothing about its geographic base
  return '+ellps=WGS84';
}

const PROJ4_UNIT_METERS: Record<string, number> = { m: 1, km: 1000, ft: 0.3048, 'us-ft': 1200 / 3937 };

/**
 * An EPSG projected CRS whose ProjLinearUnitsGeoKey names another unit: the file's coordinates are in that unit
 * (older writers give a metre code with feet, or the reverse), and GDAL reads them so. proj4's +x_0/+y_0 stay
 * in metres whatever +units says, so changing the unit keeps the projection's origin where it is.
 */
function withLinearUnit(crs: Crs, keys: GeoKeys): Crs {
  if (keyNumber(keys, 'ProjLinearUnitsGeoKey') === undefined || crs.isGeographic) return crs;
  const lin = linearUnit(keys);
  const own = crs.units.startsWith('to_meter=') ? Number(crs.units.slice(9)) : PROJ4_UNIT_METERS[crs.units];
  if (own !== undefined && Math.abs(own - lin.meters) <= 1e-12 * lin.meters) return crs;
  const tokens = tokenize(crs.proj4).filter(([k]) => k !== 'units' && k !== 'to_meter' && k !== 'no_defs' && k !== 'type');
  const def = `${joinTokens(tokens)} ${lin.token} +no_defs +type=crs`;
  // the EPSG definition passed checkUsable already: a unit changes no projection math
  return { name: `${crs.name} in ${lin.name} (ProjLinearUnitsGeoKey)`, proj4: def, isGeographic: false, units: unitsOf(tokenize(def)) };
}

function linearUnit(keys: GeoKeys): { token: string; meters: number; name: string } {
  const code = keyNumber(keys, 'ProjLinearUnitsGeoKey') ?? 9001;
  switch (code) {
    case 9001:
      return { token: '+units=m', meters: 1, name: 'metres' };
    case 9002:
      return { token: '+units=ft', meters: 0.3048, name: 'feet' };
    case 9003:
      return { token: '+units=us-ft', meters: 1200 / 3937, name: 'US survey feet' };
    case 9036:
      return { token: '+units=km', meters: 1000, name: 'kilometres' };
    case USER_DEFINED: {
      const size = keyNumber(keys, 'ProjLinearUnitSizeGeoKey');
      if (size !== undefined && size > 0) return { token: `+to_meter=${size}`, meters: size, name: `units of ${size} m` };
    }
  }
  throw new TuileError(
    'UnsupportedCrs',
    `linear unit ProjLinearUnitsGeoKey = ${code} is not supported (metre, foot, US survey foot, kilometre)`,
  );
}

// GeoTIFF writers disagree on which key carries a parameter; each list is tried in order, as libgeotiff does.
const NAT_LON = ['ProjNatOriginLongGeoKey', 'ProjFalseOriginLongGeoKey', 'ProjCenterLongGeoKey'];
const NAT_LAT = ['ProjNatOriginLatGeoKey', 'ProjFalseOriginLatGeoKey', 'ProjCenterLatGeoKey'];
const FALSE_ORIGIN_LON = ['ProjFalseOriginLongGeoKey', 'ProjNatOriginLongGeoKey', 'ProjCenterLongGeoKey'];
const FALSE_ORIGIN_LAT = ['ProjFalseOriginLatGeoKey', 'ProjNatOriginLatGeoKey', 'ProjCenterLatGeoKey'];
const CENTER_LON = ['ProjCenterLongGeoKey', 'ProjNatOriginLongGeoKey', 'ProjFalseOriginLongGeoKey'];
const CENTER_LAT = ['ProjCenterLatGeoKey', 'ProjNatOriginLatGeoKey', 'ProjFalseOriginLatGeoKey'];
const SCALE = ['ProjScaleAtNatOriginGeoKey', 'ProjScaleAtCenterGeoKey'];
const FALSE_EASTING = ['ProjFalseEastingGeoKey', 'ProjFalseOriginEastingGeoKey', 'ProjCenterEastingGeoKey'];
const FALSE_NORTHING = ['ProjFalseNorthingGeoKey', 'ProjFalseOriginNorthingGeoKey', 'ProjCenterNorthingGeoKey'];

/** Conventional EPSG codes of UTM conversions (16001-16060 north, 16101-16160 south), as libgeotiff accepts. */
function utmFromProjectionKey(code: number | undefined): string | undefined {
  if (code === undefined) return undefined;
  if (code >= 16001 && code <= 16060) return `+proj=utm +zone=${code - 16000}`;
  if (code >= 16101 && code <= 16160) return `+proj=utm +zone=${code - 16100} +south`;
  return undefined;
}

function userProjected(keys: GeoKeys): Crs {
  const unit = angularUnit(keys);
  if (unit.degrees !== 1) {
    // GDAL (3.6) reads these parameters as degrees whatever the key says, other readers convert them: a file that
    // lands in two places depending on the reader is refused rather than placed at one of them
    throw new TuileError(
      'UnsupportedCrs',
      `GeogAngularUnitsGeoKey = ${unit.code} (${ANGULAR_NAMES[unit.code] ?? 'unknown'}): the parameters of a user-defined projection in another unit than degrees are read differently by GDAL and by the GeoTIFF specification`,
    );
  }
  const base = baseGeographic(keys, unit);
  const lin = linearUnit(keys);
  const ct = keyNumber(keys, 'ProjCoordTransGeoKey');
  const deg = (names: string[], dflt = 0): number => {
    const v = firstKey(keys, names);
    return v === undefined ? dflt : toDegrees(v, unit);
  };
  // GeoTIFF gives false eastings/northings in the projected linear unit; proj4 wants metres
  const metres = (names: string[]): number => (firstKey(keys, names) ?? 0) * lin.meters;
  const scale = (): number => firstKey(keys, SCALE) ?? 1;
  const fe = (names = FALSE_EASTING): string => `+x_0=${metres(names)}`;
  const fn = (names = FALSE_NORTHING): string => `+y_0=${metres(names)}`;
  const sp1 = (): number => deg(['ProjStdParallel1GeoKey']);
  const sp2 = (): number => deg(['ProjStdParallel2GeoKey']);

  let proj: string;
  if (ct === undefined) {
    const utm = utmFromProjectionKey(keyNumber(keys, 'ProjectionGeoKey'));
    if (!utm) {
      throw new TuileError('UnsupportedCrs', 'user-defined projected CRS without ProjCoordTransGeoKey is not supported');
    }
    proj = utm;
  } else {
    switch (ct) {
      case 1: // TransverseMercator
        proj = `+proj=tmerc +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} +k=${scale()} ${fe()} ${fn()}`;
        break;
      case 27: // TransvMercator_SouthOriented: westing/southing, as GDAL maps it
        proj = `+proj=tmerc +axis=wsu +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} +k=${scale()} ${fe()} ${fn()}`;
        break;
      case 3: {
        // Hotine variant A: GDAL writes and reads CT_ObliqueMercator as Hotine_Oblique_Mercator (no u offset)
        const gamma = firstKey(keys, ['ProjRectifiedGridAngleGeoKey']);
        proj =
          `+proj=omerc +no_uoff +lat_0=${deg(CENTER_LAT)} +lonc=${deg(CENTER_LON)}` +
          ` +alpha=${deg(['ProjAzimuthAngleGeoKey'])}` +
          (gamma === undefined ? '' : ` +gamma=${toDegrees(gamma, unit)}`) +
          ` +k=${firstKey(keys, ['ProjScaleAtCenterGeoKey', 'ProjScaleAtNatOriginGeoKey']) ?? 1} ${fe()} ${fn()}`;
        break;
      }
      case 7: {
        // Mercator 2SP carries a standard parallel, 1SP a scale factor
        const lon0 = deg(NAT_LON);
        proj =
          keyNumber(keys, 'ProjStdParallel1GeoKey') !== undefined
            ? `+proj=merc +lat_ts=${sp1()} +lon_0=${lon0} ${fe()} ${fn()}`
            : `+proj=merc +lon_0=${lon0} +k=${scale()} ${fe()} ${fn()}`;
        break;
      }
      case 8: {
        const feo = ['ProjFalseOriginEastingGeoKey', 'ProjFalseEastingGeoKey', 'ProjCenterEastingGeoKey'];
        const fno = ['ProjFalseOriginNorthingGeoKey', 'ProjFalseNorthingGeoKey', 'ProjCenterNorthingGeoKey'];
        proj =
          `+proj=lcc +lat_0=${deg(FALSE_ORIGIN_LAT)} +lon_0=${deg(FALSE_ORIGIN_LON)}` +
          ` +lat_1=${sp1()} +lat_2=${sp2()} ${fe(feo)} ${fn(fno)}`;
        break;
      }
      case 9: {
        const lat0 = deg(NAT_LAT);
        proj = `+proj=lcc +lat_1=${lat0} +lat_0=${lat0} +lon_0=${deg(NAT_LON)} +k_0=${scale()} ${fe()} ${fn()}`;
        break;
      }
      case 10:
        proj = `+proj=laea +lat_0=${deg(CENTER_LAT)} +lon_0=${deg(CENTER_LON)} ${fe()} ${fn()}`;
        break;
      case 11:
        proj =
          `+proj=aea +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)}` +
          ` +lat_1=${sp1()} +lat_2=${sp2()} ${fe()} ${fn()}`;
        break;
      case 12:
        proj = `+proj=aeqd +lat_0=${deg(CENTER_LAT)} +lon_0=${deg(CENTER_LON)} ${fe()} ${fn()}`;
        break;
      case 13:
        proj =
          `+proj=eqdc +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)}` +
          ` +lat_1=${sp1()} +lat_2=${sp2()} ${fe()} ${fn()}`;
        break;
      case 14:
        proj = `+proj=stere +lat_0=${deg(CENTER_LAT)} +lon_0=${deg(CENTER_LON)} +k=${scale()} ${fe()} ${fn()}`;
        break;
      case 15: {
        // as GDAL's SetPS: an origin on the pole means variant A (scale factor), anything else is the
        // latitude of true scale of variant B
        const lat = deg(NAT_LAT, 90);
        const lon = deg(['ProjStraightVertPoleLongGeoKey', ...NAT_LON]);
        const pole = lat < 0 ? -90 : 90;
        proj =
          Math.abs(lat) === 90
            ? `+proj=stere +lat_0=${pole} +lon_0=${lon} +k=${scale()} ${fe()} ${fn()}`
            : `+proj=stere +lat_0=${pole} +lat_ts=${lat} +lon_0=${lon} ${fe()} ${fn()}`;
        break;
      }
      case 16:
        proj = `+proj=sterea +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} +k=${scale()} ${fe()} ${fn()}`;
        break;
      case 17:
        proj = `+proj=eqc +lat_ts=${sp1()} +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 18:
        proj = `+proj=cass +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 19:
        proj = `+proj=gnom +lat_0=${deg(CENTER_LAT)} +lon_0=${deg(CENTER_LON)} ${fe()} ${fn()}`;
        break;
      case 20:
        proj = `+proj=mill +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 21:
        proj = `+proj=ortho +lat_0=${deg(CENTER_LAT)} +lon_0=${deg(CENTER_LON)} ${fe()} ${fn()}`;
        break;
      case 22:
        proj = `+proj=poly +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 23:
        proj = `+proj=robin +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 24:
        proj = `+proj=sinu +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 25:
        proj = `+proj=vandg +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 26:
        proj = `+proj=nzmg +lat_0=${deg(NAT_LAT)} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      case 28:
        proj = `+proj=cea +lat_ts=${sp1()} +lon_0=${deg(NAT_LON)} ${fe()} ${fn()}`;
        break;
      default:
        throw new TuileError(
          'UnsupportedCrs',
          `coordinate transformation ProjCoordTransGeoKey = ${ct}${CT_NAMES[ct] ? ` (CT_${CT_NAMES[ct]})` : ''} is not supported`,
        );
    }
  }
  const def = `${proj} ${base.datum} ${lin.token} +no_defs +type=crs`;
  const label = keyString(keys, 'PCSCitationGeoKey') ?? keyString(keys, 'GTCitationGeoKey');
  const name = label ?? `user-defined ${ct !== undefined ? (CT_NAMES[ct] ?? `CT ${ct}`) : 'UTM'} (${base.name})`;
  return crsFromProj4(def, name);
}

// ---------------------------------------------------------------------------------------------------
// Equivalence

// proj4js's Proj objects after init: what we compare to decide two definitions describe the same CRS.
interface ParsedProj {
  projName?: string;
  names?: string[];
  lat0?: number;
  lat1?: number;
  lat2?: number;
  lat_ts?: number;
  long0?: number;
  longc?: number;
  alpha?: number;
  rectified_grid_angle?: number;
  k0?: number;
  x0?: number;
  y0?: number;
  a?: number;
  es?: number;
  to_meter?: number;
  from_greenwich?: number;
  axis?: string;
  no_uoff?: boolean;
  nadgrids?: string;
  datum?: { datum_type?: number; datum_params?: number[] };
}

const parsedCache = new Map<string, ParsedProj | null>();

function parsed(def: string): ParsedProj | null {
  let p = parsedCache.get(def);
  if (p === undefined) {
    try {
      p = new proj4.Proj(def) as unknown as ParsedProj;
    } catch {
      p = null;
    }
    if (parsedCache.size > 256) parsedCache.clear();
    parsedCache.set(def, p);
  }
  return p;
}

// utm is tmerc with zone-derived parameters, which init has already filled in
const PROJ_FAMILY: Record<string, string> = {
  utm: 'tmerc',
  etmerc: 'tmerc',
  latlong: 'longlat',
  lonlat: 'longlat',
  latlon: 'longlat',
};

function near(a: number | undefined, b: number | undefined, dflt: number | undefined): boolean {
  const x = a ?? dflt;
  const y = b ?? dflt;
  if (x === undefined || y === undefined) return x === y;
  if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) && Number.isNaN(y);
  return Math.abs(x - y) <= 1e-10 * Math.max(1, Math.abs(x), Math.abs(y));
}

/**
 * Compared relatively and tightly: GRS80 and WGS 84 differ only from the 9th digit of their eccentricity,
 * and they are different ellipsoids.
 */
function sameEllipsoid(p: ParsedProj, q: ParsedProj): boolean {
  const rel = (x: number | undefined, y: number | undefined): boolean =>
    x !== undefined && y !== undefined && Math.abs(x - y) <= 1e-12 * Math.max(Math.abs(x), Math.abs(y));
  return rel(p.a, q.a) && rel(p.es, q.es);
}

export function sameCrs(a: Crs, b: Crs): boolean {
  if (a === b) return true;
  if (a.epsg !== undefined && a.epsg === b.epsg) return true;
  if (a.proj4 === b.proj4) return true;
  const p = parsed(a.proj4);
  const q = parsed(b.proj4);
  if (!p || !q) return false;
  const family = (x: ParsedProj) => PROJ_FAMILY[x.projName ?? ''] ?? x.projName;
  if (family(p) !== family(q)) return false;
  if ((p.axis ?? 'enu') !== (q.axis ?? 'enu') || Boolean(p.no_uoff) !== Boolean(q.no_uoff)) return false;
  const zeroDefault = ['lat0', 'long0', 'x0', 'y0', 'from_greenwich'] as const;
  for (const k of zeroDefault) if (!near(p[k], q[k], 0)) return false;
  const noDefault = ['lat2', 'lat_ts', 'longc', 'alpha', 'rectified_grid_angle'] as const;
  for (const k of noDefault) if (!near(p[k], q[k], undefined)) return false;
  // proj4js copies lat_0 into a missing lat_1 when it parses, but UTM sets lat_0 only later, in init
  if (!near(p.lat1 ?? p.lat0, q.lat1 ?? q.lat0, 0)) return false;
  if (!near(p.k0, q.k0, 1) || !near(p.to_meter, q.to_meter, 1)) return false;
  return sameEllipsoid(p, q) && datumShift(p) === datumShift(q);
}

/**
 * What a definition does to reach WGS 84, in a comparable form. No datum, a null grid and an all-zero
 * towgs84 all mean "no shift" to proj4js: between two such CRSs on the same ellipsoid the transformation
 * is the identity, so RGF93 (no towgs84 in the index) and Lambert-93 (towgs84=0,...) share a datum.
 */
function datumShift(p: ParsedProj): string {
  const grids = (p.nadgrids ?? '').split(',').filter((g) => g !== '' && g !== '@null' && g !== 'null');
  if (grids.length > 0) return `grids:${grids.join(',')}`;
  const params = p.datum?.datum_params ?? [];
  // proj4js has already turned rotations into radians and the scale into a factor
  const isNull = params.every((v, i) => (i === 6 ? v === 0 || v === 1 : v === 0));
  return isNull ? 'none' : `towgs84:${params.map((v) => v.toPrecision(12)).join(',')}`;
}

// ---------------------------------------------------------------------------------------------------
// Transformers

const IDENTITY: Transformer = Object.freeze({
  forward: (x: number, y: number): [number, number] => [x, y],
  inverse: (x: number, y: number): [number, number] => [x, y],
  forwardArray: () => {},
  inverseArray: () => {},
});

type Fn = (c: number[], enforceAxis?: boolean) => number[];

function point(f: Fn, x: number, y: number): [number, number] {
  if (!Number.isFinite(x) || !Number.isFinite(y)) return [Number.NaN, Number.NaN];
  let r: number[] | undefined;
  try {
    // enforceAxis honours +axis=wsu/swu definitions (South African Lo, Krovak), whose GeoTIFF coordinates
    // follow the CRS axes just as GDAL reads them; it is a no-op for every east/north definition
    r = f([x, y], true);
  } catch {
    return [Number.NaN, Number.NaN];
  }
  if (!r || !Number.isFinite(r[0]) || !Number.isFinite(r[1])) return [Number.NaN, Number.NaN];
  return [r[0], r[1]];
}

function inPlace(f: Fn, xy: Float64Array): void {
  for (let i = 0; i + 1 < xy.length; i += 2) {
    const [x, y] = point(f, xy[i], xy[i + 1]);
    xy[i] = x;
    xy[i + 1] = y;
  }
}

/**
 * proj4js sends every point through WGS 84 as soon as one side has a towgs84, even when both sides carry
 * the same one, and its inverse Helmert is approximate: Amersfoort -> RD New lands 5 mm off PROJ that way.
 * Between two CRSs on one datum the shift cancels, so it is left out of both.
 */
function withoutCommonShift(a: string, b: string): [string, string] {
  const p = parsed(a);
  const q = parsed(b);
  if (!p || !q || !sameEllipsoid(p, q)) return [a, b];
  const shift = datumShift(p);
  if (!shift.startsWith('towgs84:') || shift !== datumShift(q)) return [a, b];
  const strip = (def: string) => joinTokens(tokenize(def).filter(([k]) => k !== 'towgs84'));
  const ta = tokenize(a);
  const tb = tokenize(b);
  // a +datum=NAME brings its own shift, which stripping +towgs84 would not remove
  if (tokenValue(ta, 'datum') !== undefined || tokenValue(tb, 'datum') !== undefined) return [a, b];
  return [strip(a), strip(b)];
}

const transformerCache = new Map<string, Transformer>();
const TRANSFORMER_CACHE_SIZE = 64;

export function transformer(from: Crs, to: Crs): Transformer {
  const key = `${from.proj4}\u0000${to.proj4}`;
  const hit = transformerCache.get(key);
  if (hit) {
    // refresh its place: Map keeps insertion order, so the first key is the least recently used
    transformerCache.delete(key);
    transformerCache.set(key, hit);
    return hit;
  }
  let t: Transformer;
  if (sameCrs(from, to)) {
    t = IDENTITY;
  } else {
    let conv: Converter;
    try {
      conv = proj4(...withoutCommonShift(from.proj4, to.proj4));
    } catch (err) {
      throw new TuileError('UnsupportedCrs', `cannot transform from ${from.name} to ${to.name}: ${String(err)}`, {
        cause: err,
      });
    }
    const fwd = conv.forward as unknown as Fn;
    const inv = conv.inverse as unknown as Fn;
    t = {
      forward: (x, y) => point(fwd, x, y),
      inverse: (x, y) => point(inv, x, y),
      forwardArray: (xy) => inPlace(fwd, xy),
      inverseArray: (xy) => inPlace(inv, xy),
    };
  }
  if (transformerCache.size >= TRANSFORMER_CACHE_SIZE) {
    const oldest = transformerCache.keys().next().value;
    if (oldest !== undefined) transformerCache.delete(oldest);
  }
  transformerCache.set(key, t);
  return t;
}
