// Build planning, pure math on metadata (no pixels, no files): the levels and their tile limits, the level the
// work is cut at, the jobs in quadtree order, and how many tiles each job and each parent stands for. The build
// runs this plan; the unit tests check it without a raster.

import { TuileError } from '../errors.js';
import { PM, levelForResolution, mercatorToLonLat, tileLimitsForBounds, type Bbox, type Tile, type TileLimits } from '../geo/tms.js';

export interface PlanInput {
  /** the delivery's extent in EPSG:3857 */
  bbox: Bbox;
  /** the finest resolution the inputs suggest, m/px: the bottom level when none is given */
  finest: number;
  bottom?: number;
  top?: number;
}

export interface BuildPlan {
  bbox: Bbox;
  top: number;
  bottom: number;
  /** tile limits of levels 0..bottom, null above top (and where the extent covers no tile) */
  limits: (TileLimits | null)[];
  /** the level the work is cut at: one job per tile of it, the levels above are merged from their children */
  jobLevel: number;
  /** the job tiles, in Morton order so that siblings finish together */
  jobs: Tile[];
  /** tiles of every level between top and bottom: what progress counts to */
  total: number;
}

/** Morton (Z-order) interleave of x and y: sorting jobs by it makes siblings finish together. */
export function morton(x: number, y: number): number {
  let m = 0;
  for (let b = 0; b < 26; b++) {
    m += (((x >> b) & 1) * 2 ** (2 * b)) + (((y >> b) & 1) * 2 ** (2 * b + 1));
  }
  return m;
}

/**
 * The level at which the work is cut into jobs: each job is a subtree of up to 8x8 bottom tiles, fewer
 * when the bottom level is much coarser than the source (its source window must stay small).
 */
export function jobLevel(bottom: number, top: number, sourcePerTarget: number): number {
  const maxSpan = 4096; // source pixels across one job
  let depth = 3;
  while (depth > 0 && 256 * 2 ** depth * sourcePerTarget > maxSpan) depth--;
  return Math.max(top, bottom - depth);
}

export function planLevels(bbox: Bbox, top: number, bottom: number): (TileLimits | null)[] {
  const limits: (TileLimits | null)[] = [];
  for (let z = 0; z <= bottom; z++) limits.push(z < top ? null : (tileLimitsForBounds(PM, z, bbox) ?? null));
  return limits;
}

export function lonLatOf(b: Bbox): Bbox {
  const [w, s] = mercatorToLonLat(b.minX, b.minY);
  const [e, n] = mercatorToLonLat(b.maxX, b.maxY);
  return { minX: w, minY: s, maxX: e, maxY: n };
}

export function unionLimits(a: TileLimits | null | undefined, b: TileLimits | null | undefined): TileLimits | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return { z: a.z, minX: Math.min(a.minX, b.minX), minY: Math.min(a.minY, b.minY), maxX: Math.max(a.maxX, b.maxX), maxY: Math.max(a.maxY, b.maxY) };
}

/** The levels, limits and jobs of a build over `bbox`; refuses levels PM does not have or that hold no tile. */
export function planBuild(input: PlanInput): BuildPlan {
  const { bbox, finest } = input;
  const bottom = input.bottom ?? levelForResolution(PM, finest);
  const top = input.top ?? 0;
  if (!Number.isInteger(bottom) || bottom < 0 || bottom >= PM.levels.length) {
    throw new TuileError('InvalidParameter', `bottom level ${bottom} is not a level of ${PM.id} (0-${PM.levels.length - 1})`);
  }
  if (!Number.isInteger(top) || top < 0 || top > bottom) {
    throw new TuileError('InvalidParameter', `top level ${top} must be between 0 and the bottom level ${bottom}`);
  }
  const limits = planLevels(bbox, top, bottom);
  const k = jobLevel(bottom, top, PM.levels[bottom].resolution / finest);
  const kl = limits[k];
  if (!kl) throw new TuileError('InvalidInput', 'the inputs cover no tile');
  const jobs: Tile[] = [];
  for (let y = kl.minY; y <= kl.maxY; y++) for (let x = kl.minX; x <= kl.maxX; x++) jobs.push({ z: k, x, y });
  jobs.sort((a, b) => morton(a.x, a.y) - morton(b.x, b.y));
  let total = 0;
  for (let z = top; z <= bottom; z++) {
    const l = limits[z];
    if (l) total += (l.maxX - l.minX + 1) * (l.maxY - l.minY + 1);
  }
  return { bbox, top, bottom, limits, jobLevel: k, jobs, total };
}

/** Tiles within the plan's limits in the subtree of `t`, from its level down to the bottom: what one job stands for. */
export function subtreeTiles(plan: Pick<BuildPlan, 'limits' | 'bottom'>, t: Tile): number {
  let n = 0;
  for (let zz = t.z; zz <= plan.bottom; zz++) {
    const l = plan.limits[zz]!;
    const s = zz - t.z;
    const x0 = Math.max(l.minX, t.x << s);
    const x1 = Math.min(l.maxX, ((t.x + 1) << s) - 1);
    const y0 = Math.max(l.minY, t.y << s);
    const y1 = Math.min(l.maxY, ((t.y + 1) << s) - 1);
    if (x1 >= x0 && y1 >= y0) n += (x1 - x0 + 1) * (y1 - y0 + 1);
  }
  return n;
}

/** How many of the four children of `t` lie within the plan's limits: the parent waits for that many. */
export function childrenInLimits(plan: Pick<BuildPlan, 'limits'>, t: Tile): number {
  const l = plan.limits[t.z + 1]!;
  let n = 0;
  for (let q = 0; q < 4; q++) {
    const cx = 2 * t.x + (q & 1);
    const cy = 2 * t.y + (q >> 1);
    if (cx >= l.minX && cx <= l.maxX && cy >= l.minY && cy <= l.maxY) n++;
  }
  return n;
}
