// Tile matrix sets as data objects (DESIGN 3): tile <-> bbox math, level choice, tile limits.
// Tiles are {z, x, y} with y counted from the top (the TMS origin is the top-left corner).

export interface Bbox {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

export interface TileMatrix {
  id: string;
  resolution: number; // CRS units per pixel
  scaleDenominator: number;
  matrixWidth: number;
  matrixHeight: number;
}

export interface TileMatrixSet {
  id: string;
  crs: string;
  wellKnownScaleSet?: string;
  tileSize: number;
  originX: number; // top-left corner
  originY: number;
  extent: Bbox;
  levels: TileMatrix[];
}

export interface Tile {
  z: number;
  x: number;
  y: number; // from the top
}

/** Inclusive tile index ranges of one level. */
export interface TileLimits {
  z: number;
  minX: number;
  maxX: number;
  minY: number;
  maxY: number;
}

const HALF = 20037508.342789244;
// OGC WMTS 1.0.0 annex E.4: pixel size of 0.28 mm
const PIXEL_SIZE_M = 0.00028;

function makePM(): TileMatrixSet {
  const levels: TileMatrix[] = [];
  for (let z = 0; z <= 24; z++) {
    const resolution = (2 * HALF) / 256 / 2 ** z;
    levels.push({
      id: String(z),
      resolution,
      scaleDenominator: resolution / PIXEL_SIZE_M,
      matrixWidth: 2 ** z,
      matrixHeight: 2 ** z,
    });
  }
  return {
    id: 'PM',
    crs: 'EPSG:3857',
    wellKnownScaleSet: 'urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible',
    tileSize: 256,
    originX: -HALF,
    originY: HALF,
    extent: { minX: -HALF, minY: -HALF, maxX: HALF, maxY: HALF },
    levels,
  };
}

export const PM: TileMatrixSet = makePM();

const TILE_MATRIX_SETS: Record<string, TileMatrixSet> = { PM };

export function getTms(id: string): TileMatrixSet | undefined {
  return TILE_MATRIX_SETS[id];
}

export function tileBounds(tms: TileMatrixSet, t: Tile): Bbox {
  const span = tms.levels[t.z].resolution * tms.tileSize;
  // edges from the index, not from a neighbour's edge plus a span, so that neighbours share them exactly
  return {
    minX: tms.originX + t.x * span,
    minY: tms.originY - (t.y + 1) * span,
    maxX: tms.originX + (t.x + 1) * span,
    maxY: tms.originY - t.y * span,
  };
}

/**
 * Tiles of level z that intersect bbox (open intervals: a bbox edge lying on a tile edge does not
 * pull in the neighbour), clamped to the matrix. Undefined when nothing intersects.
 */
export function tileLimitsForBounds(tms: TileMatrixSet, z: number, b: Bbox): TileLimits | undefined {
  const m = tms.levels[z];
  const span = m.resolution * tms.tileSize;
  const eps = 1e-9 * span;
  const minX = Math.max(0, Math.floor((b.minX - tms.originX + eps) / span));
  const maxX = Math.min(m.matrixWidth - 1, Math.ceil((b.maxX - tms.originX - eps) / span) - 1);
  const minY = Math.max(0, Math.floor((tms.originY - b.maxY + eps) / span));
  const maxY = Math.min(m.matrixHeight - 1, Math.ceil((tms.originY - b.minY - eps) / span) - 1);
  if (minX > maxX || minY > maxY) return undefined;
  return { z, minX, maxX, minY, maxY };
}

/** The extent of a level's tile limits in the set's CRS. */
export function limitsBounds(tms: TileMatrixSet, l: TileLimits): Bbox {
  const tl = tileBounds(tms, { z: l.z, x: l.minX, y: l.minY });
  const br = tileBounds(tms, { z: l.z, x: l.maxX, y: l.maxY });
  return { minX: tl.minX, minY: br.minY, maxX: br.maxX, maxY: tl.maxY };
}

/**
 * A box clipped to the tiles of every level: the extent a layer may advertise. Clients such as GDAL size
 * their raster from the box and ask for every tile under it at every level, so each of those tiles must
 * lie inside the level's limits. Data never lies outside the limits, so the clip loses none. Limits that
 * do not meet the box leave it unchanged.
 */
export function clipToLimits(tms: TileMatrixSet, b: Bbox, levels: readonly TileLimits[]): Bbox {
  let out = { ...b };
  for (const l of levels) {
    const e = limitsBounds(tms, l);
    out = { minX: Math.max(out.minX, e.minX), minY: Math.max(out.minY, e.minY), maxX: Math.min(out.maxX, e.maxX), maxY: Math.min(out.maxY, e.maxY) };
  }
  return out.minX < out.maxX && out.minY < out.maxY ? out : b;
}

/** The level whose resolution is nearest (in log scale) to res. */
export function levelForResolution(tms: TileMatrixSet, res: number): number {
  let best = 0;
  let bestD = Infinity;
  for (let z = 0; z < tms.levels.length; z++) {
    const d = Math.abs(Math.log(tms.levels[z].resolution / res));
    if (d < bestD) {
      bestD = d;
      best = z;
    }
  }
  return best;
}

/** TMS 1.0.0 counts rows from the bottom. */
export function flipY(tms: TileMatrixSet, z: number, y: number): number {
  return tms.levels[z].matrixHeight - 1 - y;
}

const R = 6378137;

export function lonLatToMercator(lon: number, lat: number): [number, number] {
  const clamped = Math.max(-85.0511287798066, Math.min(85.0511287798066, lat));
  const x = (R * lon * Math.PI) / 180;
  const y = R * Math.log(Math.tan(Math.PI / 4 + (clamped * Math.PI) / 360));
  return [x, y];
}

export function mercatorToLonLat(x: number, y: number): [number, number] {
  const lon = (x / R) * (180 / Math.PI);
  const lat = (2 * Math.atan(Math.exp(y / R)) - Math.PI / 2) * (180 / Math.PI);
  return [lon, lat];
}
