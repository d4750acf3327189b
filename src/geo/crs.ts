// Coordinate reference systems: EPSG codes (through epsg-index), identifiers, equivalence, and cached proj4 point
// transformers (GeoTIFF GeoKeys: geokeys.ts).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Converter } from 'proj4';
import { TuileError } from '../errors.js';
import { COORDINATE_FRAME_TOWGS84 } from './coordinate-frame.js';

// required, not imported: Node parses a CommonJS module imported from ESM once more for its export names,
// which doubles proj4's load time in every build worker
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

export const USER_DEFINED = 32767;

// ---------------------------------------------------------------------------------------------------
// proj4 strings as token lists

export type Token = [key: string, value: string | undefined];

export function tokenize(def: string): Token[] {
  const out: Token[] = [];
  // values may be quoted and hold spaces: +nadgrids="National 84 (02.07.01).gsb"
  const re = /\+([A-Za-z_][\w]*)(?:=("[^"]*"|\S+))?/g;
  for (let m = re.exec(def); m !== null; m = re.exec(def)) out.push([m[1], m[2]]);
  return out;
}

export function joinTokens(tokens: Token[]): string {
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

export function unitsOf(tokens: Token[]): string {
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

export interface IndexEntry {
  code: string;
  kind: string;
  name: string;
  wkt: string | null;
  proj4: string | null;
  bbox: [number, number, number, number] | null; // north, west, south, east
}

let indexDir: string | undefined;

export function epsgIndexDir(): string {
  if (indexDir === undefined) {
    // epsg-index is data only (its main module exports null): read its per-code JSON files directly
    const require = createRequire(import.meta.url);
    indexDir = join(dirname(require.resolve('epsg-index/package.json')), 's');
  }
  return indexDir;
}

export function indexEntry(code: number): IndexEntry | undefined {
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

export function crsFromProj4(def: string, name: string): Crs {
  const tokens = withoutMissingGrids(tokenize(def));
  const proj = tokenValue(tokens, 'proj');
  if (!proj) throw new TuileError('UnsupportedCrs', `'${def}' has no +proj`);
  const clean = joinTokens(tokens);
  const isGeographic = GEOGRAPHIC_PROJ.has(proj);
  checkUsable(clean, name, isGeographic ? [0.5, 0.5] : probeNearOrigin(tokens));
  return { name, proj4: clean, isGeographic, units: unitsOf(tokens) };
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
