// GeoTIFF GeoKeys to a CRS: an EPSG code when the keys give one, else the user-defined datum, units and
// projection parameters as a proj4 definition, read as libgeotiff does.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TuileError } from '../errors.js';
import {
  USER_DEFINED,
  crsFromEpsg,
  crsFromProj4,
  epsgIndexDir,
  indexEntry,
  joinTokens,
  tokenize,
  unitsOf,
  type Crs,
  type IndexEntry,
} from './crs.js';

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
