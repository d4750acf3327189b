// Target-to-source pixel mapping of a tile (approximate transformer), with the kernel scale and source window.

/** Target pixels per side of the first cells: coarse enough to be cheap, fine enough that the midpoint checks
 * (a lattice at half this spacing) see a projection's curvature. */
const INITIAL_CELL = 64;
/** A cell this small with a point that does not project is transformed pixel by pixel: the domain's edge is found
 * exactly instead of being interpolated across. */
const EXACT_CELL = 8;
/** gdalwarp's slack at a source's far edge (GWKCheckAndComputeSrcOffsets); resample.ts applies the same. */
const EDGE_EPSILON = 1e-10;

/** Cell list as flat quadruples (c0, r0, c1, r1) of inclusive node indices. */
type Cells = number[];

class NodeGrid {
  readonly known: Uint8Array; // 0 unknown, 1 exact, 2 queued for the next batch
  private batchXY = new Float64Array(512);
  private batchIdx = new Int32Array(256);
  private batchLen = 0;

  constructor(
    readonly exact: (xy: Float64Array) => void,
    readonly width: number,
    readonly coords: Float64Array,
    pixels: number,
  ) {
    this.known = new Uint8Array(pixels);
  }

  request(c: number, r: number): void {
    const idx = r * this.width + c;
    if (this.known[idx] !== 0) return;
    this.known[idx] = 2;
    if (this.batchLen === this.batchIdx.length) {
      const idx2 = new Int32Array(this.batchIdx.length * 2);
      idx2.set(this.batchIdx);
      this.batchIdx = idx2;
      const xy2 = new Float64Array(this.batchXY.length * 2);
      xy2.set(this.batchXY);
      this.batchXY = xy2;
    }
    this.batchIdx[this.batchLen] = idx;
    this.batchXY[2 * this.batchLen] = c + 0.5;
    this.batchXY[2 * this.batchLen + 1] = r + 0.5;
    this.batchLen++;
  }

  /** One call of the exact transformer for everything requested since the last flush: its per-call cost (PROJ
   * set-up, worker messages) is paid once per refinement level instead of once per node. */
  flush(): void {
    const n = this.batchLen;
    if (n === 0) return;
    const xy = this.batchXY.subarray(0, 2 * n);
    this.exact(xy);
    const coords = this.coords;
    const known = this.known;
    const idx = this.batchIdx;
    for (let k = 0; k < n; k++) {
      const i = idx[k];
      const x = xy[2 * k];
      const y = xy[2 * k + 1];
      // an infinity from a failing projection is as useless as NaN, and would poison the interpolation
      const ok = x - x === 0 && y - y === 0;
      coords[2 * i] = ok ? x : NaN;
      coords[2 * i + 1] = ok ? y : NaN;
      known[i] = 1;
    }
    this.batchLen = 0;
  }
}

/** Fills a Float64Array of 2*width*height source pixel coordinates (sx, sy) for the target pixel CENTRES
 * (col+0.5, row+0.5) of a width x height target grid.
 * `exact(xy)` transforms in place an array of target pixel positions (pairs, in target pixel space, i.e.
 * col+0.5,row+0.5 style values) to source pixel positions (NaN where it fails).
 * Transform exactly on a coarse grid of nodes and interpolate between them, refining (splitting cells) wherever the
 * interpolation error at a checked midpoint exceeds maxError source pixels (default 0.125, gdalwarp's -et).
 * Nodes and checked points keep their exact values. Cells touching a point that does not project are split down to
 * EXACT_CELL pixels and then transformed pixel by pixel. `out` (at least 2*width*height long) avoids an allocation. */
export function approxSourceCoords(
  exact: (xy: Float64Array) => void,
  width: number,
  height: number,
  maxError = 0.125,
  out?: Float64Array,
): Float64Array {
  const n = width * height;
  const coords = out !== undefined && out.length >= 2 * n ? out : new Float64Array(2 * n);
  if (n === 0) return coords;
  const grid = new NodeGrid(exact, width, coords, n);
  const known = grid.known;

  let cells: Cells = [];
  const xs = splitPoints(width - 1);
  const ys = splitPoints(height - 1);
  for (let j = 0; j + 1 < ys.length; j++) {
    for (let i = 0; i + 1 < xs.length; i++) cells.push(xs[i], ys[j], xs[i + 1], ys[j + 1]);
  }
  for (const y of ys) for (const x of xs) grid.request(x, y);
  grid.flush();

  const leaves: Cells = [];
  const exactCells: Cells = [];
  while (cells.length > 0) {
    for (let k = 0; k < cells.length; k += 4) requestChecks(grid, cells[k], cells[k + 1], cells[k + 2], cells[k + 3]);
    grid.flush();
    const next: Cells = [];
    for (let k = 0; k < cells.length; k += 4) {
      const c0 = cells[k];
      const r0 = cells[k + 1];
      const c1 = cells[k + 2];
      const r1 = cells[k + 3];
      const splitX = c1 - c0 > 1;
      const splitY = r1 - r0 > 1;
      const err = cellError(coords, width, c0, r0, c1, r1, splitX, splitY);
      if (err === Infinity) {
        if (c1 - c0 <= EXACT_CELL && r1 - r0 <= EXACT_CELL) exactCells.push(c0, r0, c1, r1);
        else split(next, c0, r0, c1, r1, splitX, splitY);
      } else if (err > maxError && (splitX || splitY)) {
        split(next, c0, r0, c1, r1, splitX, splitY);
      } else {
        leaves.push(c0, r0, c1, r1);
      }
    }
    cells = next;
  }

  // every pixel belongs to exactly one cell: columns [c0, c1) and rows [r0, r1), the grid's last ones included
  for (let k = 0; k < exactCells.length; k += 4) {
    const c0 = exactCells[k];
    const r0 = exactCells[k + 1];
    const cEnd = ownedEnd(exactCells[k + 2], width);
    const rEnd = ownedEnd(exactCells[k + 3], height);
    for (let r = r0; r < rEnd; r++) for (let c = c0; c < cEnd; c++) grid.request(c, r);
  }
  grid.flush();
  for (let k = 0; k < leaves.length; k += 4) {
    fillCell(coords, known, width, height, leaves[k], leaves[k + 1], leaves[k + 2], leaves[k + 3]);
  }
  return coords;
}

function splitPoints(last: number): number[] {
  const parts = Math.max(1, Math.ceil(last / INITIAL_CELL));
  const pts: number[] = [];
  for (let i = 0; i <= parts; i++) pts.push(Math.round((i * last) / parts));
  return pts;
}

function ownedEnd(end: number, size: number): number {
  return end === size - 1 ? size : end;
}

function requestChecks(grid: NodeGrid, c0: number, r0: number, c1: number, r1: number): void {
  const splitX = c1 - c0 > 1;
  const splitY = r1 - r0 > 1;
  const cm = (c0 + c1) >> 1;
  const rm = (r0 + r1) >> 1;
  if (splitX) {
    grid.request(cm, r0);
    grid.request(cm, r1);
  }
  if (splitY) {
    grid.request(c0, rm);
    grid.request(c1, rm);
  }
  if (splitX && splitY) grid.request(cm, rm);
}

/** Largest |dx|+|dy| (GDAL's error measure) between the exact value and the bilinear interpolation of the
 * corners at the checked points; Infinity when a corner or a checked point did not project. */
function cellError(
  coords: Float64Array,
  width: number,
  c0: number,
  r0: number,
  c1: number,
  r1: number,
  splitX: boolean,
  splitY: boolean,
): number {
  const i00 = 2 * (r0 * width + c0);
  const i10 = 2 * (r0 * width + c1);
  const i01 = 2 * (r1 * width + c0);
  const i11 = 2 * (r1 * width + c1);
  const x00 = coords[i00], y00 = coords[i00 + 1];
  const x10 = coords[i10], y10 = coords[i10 + 1];
  const x01 = coords[i01], y01 = coords[i01 + 1];
  const x11 = coords[i11], y11 = coords[i11 + 1];
  // NaN propagates through the sum: one test for the four corners
  if (Number.isNaN(x00 + y00 + x10 + y10 + x01 + y01 + x11 + y11)) return Infinity;
  const cm = (c0 + c1) >> 1;
  const rm = (r0 + r1) >> 1;
  const fx = c1 > c0 ? (cm - c0) / (c1 - c0) : 0;
  const fy = r1 > r0 ? (rm - r0) / (r1 - r0) : 0;
  let err = 0;
  if (splitX) {
    err = Math.max(
      err,
      pointError(coords, 2 * (r0 * width + cm), x00 + (x10 - x00) * fx, y00 + (y10 - y00) * fx),
      pointError(coords, 2 * (r1 * width + cm), x01 + (x11 - x01) * fx, y01 + (y11 - y01) * fx),
    );
  }
  if (splitY) {
    err = Math.max(
      err,
      pointError(coords, 2 * (rm * width + c0), x00 + (x01 - x00) * fy, y00 + (y01 - y00) * fy),
      pointError(coords, 2 * (rm * width + c1), x10 + (x11 - x10) * fy, y10 + (y11 - y10) * fy),
    );
  }
  if (splitX && splitY) {
    const top = x00 + (x10 - x00) * fx;
    const bottom = x01 + (x11 - x01) * fx;
    const topY = y00 + (y10 - y00) * fx;
    const bottomY = y01 + (y11 - y01) * fx;
    err = Math.max(err, pointError(coords, 2 * (rm * width + cm), top + (bottom - top) * fy, topY + (bottomY - topY) * fy));
  }
  return err;
}

function pointError(coords: Float64Array, i: number, x: number, y: number): number {
  const e = Math.abs(coords[i] - x) + Math.abs(coords[i + 1] - y);
  return e === e ? e : Infinity;
}

function split(next: Cells, c0: number, r0: number, c1: number, r1: number, splitX: boolean, splitY: boolean): void {
  const cm = splitX ? (c0 + c1) >> 1 : c1;
  const rm = splitY ? (r0 + r1) >> 1 : r1;
  next.push(c0, r0, cm, rm);
  if (splitX) next.push(cm, r0, c1, rm);
  if (splitY) next.push(c0, rm, cm, r1);
  if (splitX && splitY) next.push(cm, rm, c1, r1);
}

function fillCell(
  coords: Float64Array,
  known: Uint8Array,
  width: number,
  height: number,
  c0: number,
  r0: number,
  c1: number,
  r1: number,
): void {
  const i00 = 2 * (r0 * width + c0);
  const i10 = 2 * (r0 * width + c1);
  const i01 = 2 * (r1 * width + c0);
  const i11 = 2 * (r1 * width + c1);
  const x00 = coords[i00], y00 = coords[i00 + 1];
  const x10 = coords[i10], y10 = coords[i10 + 1];
  const x01 = coords[i01], y01 = coords[i01 + 1];
  const x11 = coords[i11], y11 = coords[i11 + 1];
  const invW = c1 > c0 ? 1 / (c1 - c0) : 0;
  const invH = r1 > r0 ? 1 / (r1 - r0) : 0;
  const cEnd = ownedEnd(c1, width);
  const rEnd = ownedEnd(r1, height);
  for (let r = r0; r < rEnd; r++) {
    const fy = (r - r0) * invH;
    const lx = x00 + (x01 - x00) * fy;
    const ly = y00 + (y01 - y00) * fy;
    const dx = (x10 + (x11 - x10) * fy - lx) * invW;
    const dy = (y10 + (y11 - y10) * fy - ly) * invW;
    let p = r * width + c0;
    for (let c = c0; c < cEnd; c++, p++) {
      if (known[p] !== 0) continue;
      const f = c - c0;
      coords[2 * p] = lx + dx * f;
      coords[2 * p + 1] = ly + dy * f;
    }
  }
}

/** Local scale (source pixels per target pixel) along x and y over a coords grid, for kernel widening; >= 1 means
 * downsampling. Along each source axis it is the extent of a target pixel's footprint (|d/dcol| + |d/drow|):
 * under rotation this is what gdalwarp's per-chunk ratio of window sizes measures too. */
export function sourceScale(coords: Float64Array, width: number, height: number): { scaleX: number; scaleY: number } {
  // differences over a step of several pixels on a sparse lattice: the mean derivative, not a per-pixel pass
  const step = Math.max(1, Math.floor(Math.min(width, height) / 8));
  let sxCol = 0, syCol = 0, nCol = 0;
  let sxRow = 0, syRow = 0, nRow = 0;
  for (let r = 0; r < height; r += step) {
    for (let c = 0; c < width; c += step) {
      const i = 2 * (r * width + c);
      const x = coords[i];
      const y = coords[i + 1];
      if (x - x !== 0 || y - y !== 0) continue;
      if (c + step < width) {
        const dx = coords[i + 2 * step] - x;
        const dy = coords[i + 2 * step + 1] - y;
        if (dx - dx === 0 && dy - dy === 0) {
          sxCol += Math.abs(dx);
          syCol += Math.abs(dy);
          nCol += step;
        }
      }
      if (r + step < height) {
        const j = i + 2 * step * width;
        const dx = coords[j] - x;
        const dy = coords[j + 1] - y;
        if (dx - dx === 0 && dy - dy === 0) {
          sxRow += Math.abs(dx);
          syRow += Math.abs(dy);
          nRow += step;
        }
      }
    }
  }
  if (nCol === 0 && nRow === 0) return { scaleX: 1, scaleY: 1 };
  const scaleX = (nCol > 0 ? sxCol / nCol : 0) + (nRow > 0 ? sxRow / nRow : 0);
  const scaleY = (nCol > 0 ? syCol / nCol : 0) + (nRow > 0 ? syRow / nRow : 0);
  return { scaleX, scaleY };
}

/** Bounding window in source pixel space that the coords need with `padding` source pixels of padding (integers,
 * clamped to the source size; x1/y1 exclusive; null when no coord is finite / the window is empty).
 * Only coords inside the source count: the resampler gives no data elsewhere, so a tile reaching past the source
 * (or a projection wrapping around) does not inflate the read. Pass padding = kernelPadding(kernel, scaleX, scaleY)
 * from resample.ts; then every tap any target pixel uses is inside, and the result does not depend on the window
 * (no seams between tiles). */
export function sourceWindow(
  coords: Float64Array,
  srcWidth: number,
  srcHeight: number,
  padding: number,
): { x0: number; y0: number; x1: number; y1: number } | null {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const n = coords.length - 1;
  for (let i = 0; i < n; i += 2) {
    const x = coords[i];
    const y = coords[i + 1];
    // the same acceptance as the resampler (false for NaN)
    if (!(x >= 0 && y >= 0 && x + EDGE_EPSILON <= srcWidth && y + EDGE_EPSILON <= srcHeight)) continue;
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
  }
  if (minX === Infinity) return null;
  // taps lie within `padding` of a coordinate; floor(v + padding) + 1 also keeps the pixel holding v when
  // padding is 0 and v is an integer
  const x0 = Math.max(0, Math.floor(minX - padding));
  const y0 = Math.max(0, Math.floor(minY - padding));
  const x1 = Math.min(srcWidth, Math.floor(maxX + padding) + 1);
  const y1 = Math.min(srcHeight, Math.floor(maxY + padding) + 1);
  if (x1 <= x0 || y1 <= y0) return null;
  return { x0, y0, x1, y1 };
}
