// The tile URL forms of every protocol in one table: the Hono routes are declared from it and the fast
// path (fastpath.ts) matches URLs with it, so a form is written once. A form names the tile in its own
// words (level id or number, row from the top or the bottom); `tileOf` turns that into the one address,
// `{z, x, y}` with y from the top, which travels to readTile.

import type { Tile, TileMatrixSet } from '../geo/tms.js';

/** A tile index in a URL: a non-negative integer in canonical form, small enough for any level. */
export const TILE_INDEX = /^(0|[1-9]\d{0,8})$/;

/** What a tile URL says, before any layer is looked up. */
export interface TileUrl {
  layer: string;
  /** the level: its number (XYZ, TMS) or its tile matrix id (WMTS, OGC API) */
  level: string;
  col: string;
  row: string;
  /** the file extension, where the form has one */
  ext?: string;
  style?: string;
  /** the tile matrix set named in the URL (WMTS: tuile's id, OGC API: OGC's) */
  matrixSet?: string;
}

export interface TileForm {
  /** the path the protocol's sub-app is mounted at */
  mount: string;
  /** the Hono route pattern under the mount */
  route: string;
  /** whether `level` is a tile matrix id (else the level's number) */
  levelById: boolean;
  /** rows counted from the bottom of the grid (TMS 1.0.0) */
  rowsFromBottom: boolean;
  /** what the route's parameters say, or null when they cannot name a tile (a file without an extension) */
  read(p: Readonly<Record<string, string>>): TileUrl | null;
}

/** `12.png` -> ['12', 'png'] */
function splitFile(file: string): [string, string] | null {
  const i = file.lastIndexOf('.');
  return i > 0 ? [file.slice(0, i), file.slice(i + 1)] : null;
}

/** `{layer}/{z}/{x}/{y}.{ext}`, the XYZ and TMS forms (which differ in where rows start). */
const zxyFile: TileForm['read'] = (p) => {
  const f = splitFile(p.file);
  return f && { layer: p.layer, level: p.z, col: p.x, row: f[0], ext: f[1] };
};

export const XYZ: TileForm = {
  mount: '/tiles',
  route: '/:layer/:z/:x/:file',
  levelById: false,
  rowsFromBottom: false,
  read: zxyFile,
};

export const TMS: TileForm = {
  mount: '/tms',
  route: '/1.0.0/:layer/:z/:x/:file',
  levelById: false,
  rowsFromBottom: true,
  read: zxyFile,
};

export const WMTS_REST: TileForm = {
  mount: '/wmts',
  route: '/1.0.0/:layer/:style/:tms/:z/:row/:file',
  levelById: true,
  rowsFromBottom: false,
  read(p) {
    const f = splitFile(p.file);
    return f && { layer: p.layer, style: p.style, matrixSet: p.tms, level: p.z, row: p.row, col: f[0], ext: f[1] };
  },
};

export const OGCAPI: TileForm = {
  mount: '/ogcapi',
  route: '/collections/:layer/map/tiles/:tms/:tileMatrix/:tileRow/:tileCol',
  levelById: true,
  rowsFromBottom: false,
  read: (p) => ({ layer: p.layer, matrixSet: p.tms, level: p.tileMatrix, row: p.tileRow, col: p.tileCol }),
};

export const TILE_FORMS: readonly TileForm[] = [XYZ, TMS, WMTS_REST, OGCAPI];

/**
 * The tile a URL names, y from the top (a TMS row is turned over here, once, on the grid's height), or null
 * when an index is not a canonical integer, a level id is not in the grid, or a TMS level or row is outside
 * it. Limits are readTile's to check.
 */
export function tileOf(form: TileForm, u: TileUrl, tms: TileMatrixSet): Tile | null {
  if (!TILE_INDEX.test(u.col) || !TILE_INDEX.test(u.row)) return null;
  const z = form.levelById ? tms.levels.findIndex((m) => m.id === u.level) : TILE_INDEX.test(u.level) ? Number(u.level) : -1;
  if (z < 0) return null;
  const x = Number(u.col);
  const row = Number(u.row);
  if (!form.rowsFromBottom) return { z, x, y: row };
  const height = tms.levels[z]?.matrixHeight;
  return height !== undefined && row < height ? { z, x, y: height - 1 - row } : null;
}

interface Compiled {
  form: TileForm;
  /** the full pattern, as Hono reports it in routePath (metrics label) */
  pattern: string;
  /** per path segment: a literal, or the parameter's name after ':' */
  segments: string[];
}

const COMPILED: Compiled[] = TILE_FORMS.map((form) => {
  const pattern = form.mount + form.route;
  return { form, pattern, segments: pattern.split('/') };
});

export interface TileMatch {
  form: TileForm;
  pattern: string;
  url: TileUrl;
}

/** The tile form a path (no query) takes, and what it says; null for any other path. */
export function matchTilePath(path: string): TileMatch | null {
  const parts = path.split('/');
  for (const c of COMPILED) {
    const segs = c.segments;
    if (segs.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 1; i < segs.length; i++) {
      const s = segs[i];
      if (s.charCodeAt(0) === 58 /* ':' */) {
        if (parts[i] === '') {
          ok = false;
          break;
        }
        params[s.slice(1)] = parts[i];
      } else if (s !== parts[i]) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    const url = c.form.read(params);
    if (url) return { form: c.form, pattern: c.pattern, url };
  }
  return null;
}
