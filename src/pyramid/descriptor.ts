// pyramid.json: what a pyramid folder holds (levels with tile limits, format, bands, nodata, extent,
// parent chain) and its parsing; storage.ts reads it from where the pyramid is.

import { TuileError, errorMessage } from '../errors.js';
import type { Bbox, TileLimits } from '../geo/tms.js';
import type { TileFormat } from '../formats.js';
import type { Kernel } from '../raster/resample.js';

export const DESCRIPTOR = 'pyramid.json';
export const ARCHIVE = 'tiles.pmtiles';

export interface LevelInfo {
  id: string;
  /** Tile index ranges of the tiles present at this level in the whole chain (y from the top). */
  limits: TileLimits;
  /** Tiles stored in this pyramid's own archive at this level. */
  tiles: number;
}

export interface PyramidDescriptor {
  format: 'tuile-pyramid';
  version: 1;
  id: string;
  tms: string;
  tileSize: number;
  tileFormat: TileFormat;
  /** Colour bands of the tiles: 1 grey or 3 RGB (png/webp add alpha where there is nodata). */
  bands: number;
  /** Colour under nodata in jpeg tiles, one value per band. */
  nodata: number[];
  interpolation: Kernel;
  quality?: number;
  bottom: number;
  top: number;
  levels: LevelInfo[];
  /** Extent in the TMS CRS and in WGS84 (lon/lat). */
  bbox: Bbox;
  bboxLonLat: Bbox;
  /** Parent pyramid folders, nearest first (read-through chain). */
  parents: { id: string; path: string }[];
  sources: string[];
  /** A fusion's record of the pyramids it copied from (each input's chain); it reads none of them. */
  fusedFrom?: string[];
  created: string;
  stats: { tiles: number; bytes: number; seconds: number };
}

/** A descriptor from its text; `where` names it in messages (a folder, an object key). */
export function parseDescriptor(text: string, where: string): PyramidDescriptor {
  let d: PyramidDescriptor;
  try {
    d = JSON.parse(text) as PyramidDescriptor;
  } catch (err) {
    throw new TuileError('InvalidInput', `${where}/${DESCRIPTOR}: invalid JSON (${errorMessage(err)})`);
  }
  if (d === null || typeof d !== 'object' || d.format !== 'tuile-pyramid' || d.version !== 1) {
    throw new TuileError('InvalidInput', `${where}/${DESCRIPTOR}: not a tuile pyramid descriptor`);
  }
  return d;
}
