// Fast loops of the separable kernels, generated with `new Function` per filter, tap counts and band count;
// fastLoopSource() gives the source of one, to read or profile it.

import { EDGE_EPSILON, FILTER_CUBIC, FILTER_TENT, LANCZOS_STEPS, MIN_WEIGHT, type Job } from './taps.js';

/** Widest row of taps the fast loops unroll: Lanczos up to a scale of ~5, cubic ~8, bilinear always. */
export const MAX_UNROLL = 32;
/** Most rows of taps the fast loops unroll (beyond, a loop over the rows). */
const MAX_UNROLL_ROWS = 8;

/** Runs the fast path over a tile; returns how many pixels it stored in `slow` for separable(). */
type FastLoop = (
  job: Job,
  runs: Uint8Array | null,
  slow: Int32Array,
  supportX: number,
  supportY: number,
  invScaleX: number,
  invScaleY: number,
  table: Float64Array,
) => number;

const fastLoops = new Map<string, FastLoop | null>();

/**
 * The loop over a tile's pixels for one filter, band count and nX x nY block of taps, generated (once per such
 * configuration: a handful per build) so that a row of taps is unrolled, its weights in locals: a loop over a
 * Float64Array of 2 or 3 weights costs about twice the arithmetic, and a build spends most of its time here. The
 * source text holds nothing but numbers computed here.
 *
 * Per pixel, separable()'s work without its tests: a support of s covers nX = floor(2s) + 1 or nX - 1 pixel
 * centres per axis, so the taps are xlo .. xlo + nX - 1 or one fewer (two unrolled rows, chosen per pixel) on cy
 * rows; the weights come from axisWeights' arithmetic and are summed in separable()'s order (0 + x being x): the
 * same bits. Pixels are left to separable() (listed in `slow`) when their block of taps may leave the region, when
 * it covers a pixel with alpha < 255 (the opaque run at the start of one of its rows is shorter than the block) or
 * when rounding made the support cover another number of centres.
 */
export function separableFastLoop(filter: number, nX: number, nY: number, bands: number, hasAlpha: boolean): FastLoop | null {
  const key = `${filter}/${nX}/${nY}/${bands}/${hasAlpha}`;
  let fn = fastLoops.get(key);
  if (fn !== undefined) return fn;
  try {
    fn = new Function(...FAST_LOOP_PARAMS, fastLoopSource(filter, nX, nY, bands, hasAlpha)) as FastLoop;
  } catch {
    fn = null; // code generation disallowed (node --disallow-code-generation-from-strings): separable() for all
  }
  fastLoops.set(key, fn);
  return fn;
}

const FAST_LOOP_PARAMS = ['job', 'runs', 'slow', 'supportX', 'supportY', 'invScaleX', 'invScaleY', 'table'];

/** The body of separableFastLoop's function for a filter (FILTER_TENT, FILTER_CUBIC, FILTER_LANCZOS), its nX x nY
 * taps, band count and alpha; its parameters are those of FastLoop. */
export function fastLoopSource(filter: number, nX: number, nY: number, bands: number, hasAlpha: boolean): string {
  // the weight of a tap at distance d (in source pixels / scale, non-negative) into `out`: axisWeights' code
  const weight = (out: string, d: string): string =>
    filter === FILTER_TENT
      ? `${out} = ${d} < 1 ? 1 - ${d} : 0;`
      : filter === FILTER_CUBIC
        ? `${out} = ${d} <= 1 ? ${d} * ${d} * (1.5 * ${d} - 2.5) + 1 ` +
          `: ${d} < 2 ? ${d} * ${d} * (-0.5 * ${d} + 2.5) - 4 * ${d} + 2 : 0;`
        : `{ const a = ${d} * ${LANCZOS_STEPS}; if (a >= ${3 * LANCZOS_STEPS}) { ${out} = 0; } ` +
          `else { const i = a | 0; const v = table[i]; ${out} = v + (table[i + 1] - v) * (a - i); } }`;
  const B = bands;
  const L: string[] = [];
  // 3 bands: one 32-bit little-endian load per tap instead of three byte loads (its 4th byte is the next pixel's;
  // the loop keeps blocks off the window's last row, where that may be past the data)
  const packed = B === 3;
  L.push(
    'const { data, alpha, coords, out, outAlpha } = job;',
    // int32 locals, not tagged values to untag at each use
    'const w = job.w | 0, h = job.h | 0, n = job.n | 0;',
    'const rx0 = job.rx0 | 0, ry0 = job.ry0 | 0, rx1 = job.rx1 | 0, ry1 = job.ry1 | 0;',
    'const x0 = +job.x0, y0 = +job.y0;',
    'const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);',
    'const sX = +supportX, sY = +supportY, iX = +invScaleX, iY = +invScaleY;',
    'const rw = rx1 - rx0;',
    `const rowStride = w * ${B};`,
    'let ns = 0;',
  );
  if (!hasAlpha) {
    // Coordinates this far inside the region have their block of taps in it and are inside the window (a 1/2 pixel
    // margin over the bounds of ceil(t - s) >= rx0 and ceil(t - s) + nX <= rx1, t = l - 1/2): one test for both.
    // The few others go to separable() if inside the window.
    L.push(
      'const loX = rx0 + sX, loY = ry0 + sY;',
      `const hiX = rx1 - ${nX} + sX, hiY = (${packed ? 'ry1 === h ? ry1 - 1 : ry1' : 'ry1'}) - ${nY} + sY;`,
      'for (let p = 0; p < n; p++) {',
      '  const lx = coords[2 * p] - x0;',
      '  const ly = coords[2 * p + 1] - y0;',
      '  if (!(lx >= loX && lx <= hiX && ly >= loY && ly <= hiY)) {',
      `    if (lx >= 0 && ly >= 0 && lx + ${EDGE_EPSILON} <= w && ly + ${EDGE_EPSILON} <= h) slow[ns++] = p;`,
      '    continue;',
      '  }',
      '  const alp = 255;',
    );
  } else {
    L.push(
      'for (let p = 0; p < n; p++) {',
      '  const lx = coords[2 * p] - x0;',
      '  const ly = coords[2 * p + 1] - y0;',
      `  if (!(lx >= 0 && ly >= 0 && lx + ${EDGE_EPSILON} <= w && ly + ${EDGE_EPSILON} <= h)) continue;`,
    );
  }
  if (hasAlpha) {
    L.push(
      `  let ix = (lx + ${EDGE_EPSILON}) | 0;`,
      `  let iy = (ly + ${EDGE_EPSILON}) | 0;`,
      '  if (ix === w) ix--;',
      '  if (iy === h) iy--;',
      '  const alp = alpha[iy * w + ix];',
      '  if (alp === 0) continue;',
    );
  }
  L.push(
    '  const tx = lx - 0.5;',
    '  const ty = ly - 0.5;',
    '  const xlo = Math.ceil(tx - sX) | 0;',
    '  const ylo = Math.ceil(ty - sY) | 0;',
    // the last tap within the support is floor(t + s); for an integer m, m <= floor(v) exactly when m <= v
    '  const xhi = tx + sX;',
    '  const yhi = ty + sY;',
    // the support covering nX or nX - 1 centres per axis, as it does but on a rounding edge
    `  let fast = xlo + ${nX - 2} <= xhi && xlo + ${nX} > xhi && ylo + ${nY - 2} <= yhi && ylo + ${nY} > yhi` +
      (hasAlpha ? ` && xlo >= rx0 && ylo >= ry0 && xlo + ${nX} <= rx1 && ylo + ${nY} <= ry1` : '') +
      (hasAlpha && packed ? ` && (ylo + ${nY} < h || xlo + ${nX} < w);` : ';'),
  );
  if (hasAlpha) {
    L.push(
      '  if (fast) {',
      `    for (let j = 0, r = (ylo - ry0) * rw + xlo - rx0; j < ${nY}; j++, r += rw) {`,
      `      if (runs[r] < ${nX}) { fast = false; break; }`,
      '    }',
      '  }',
    );
  }
  L.push(
    '  if (!fast) {',
    '    slow[ns++] = p;',
    '    continue;',
    '  }',
    '  let d;',
    // a full row of nX taps, or nX - 1 when the last is past the support; rows: nY or nY - 1
    `  const fullX = xlo + ${nX - 1} <= xhi;`,
    `  const cy = ylo + ${nY - 1} <= yhi ? ${nY} : ${nY - 1};`,
  );
  for (let i = 0; i < nX; i++) {
    L.push(`  let w${i} = 0;`);
    // a support > 1 puts the first tap left of the centre and the last one right of it: |d| without a test
    const dist =
      i === 0
        ? 'd = (tx - xlo) * iX;'
        : i === nX - 1
          ? `d = (xlo + ${i} - tx) * iX;`
          : `d = Math.abs((xlo + ${i} - tx) * iX);`;
    L.push(i === nX - 1 ? `  if (fullX) { ${dist} ${weight(`w${i}`, 'd')} }` : `  ${dist} ${weight(`w${i}`, 'd')}`);
  }
  L.push(`  const sumX = ${Array.from({ length: nX }, (_, i) => `w${i}`).join(' + ')};`);
  L.push('  let wsum = 0;');
  for (let b = 0; b < B; b++) L.push(`  let a${b} = 0;`);
  const row = (taps: number): void => {
    if (packed) {
      for (let i = 0; i < taps; i++) L.push(`      const u${i} = dv.getUint32((k + ${3 * i}) | 0, true);`);
      const shift = ['', ' >>> 8', ' >>> 16'];
      for (let b = 0; b < 3; b++) {
        const terms = Array.from({ length: taps }, (_, i) => `w${i} * ((u${i}${shift[b]}) & 255)`);
        L.push(`      a${b} += wy * (${terms.join(' + ')});`);
      }
    } else {
      for (let b = 0; b < B; b++) {
        const terms = Array.from({ length: taps }, (_, i) => `w${i} * data[(k + ${i * B + b}) | 0]`);
        L.push(`      a${b} += wy * (${terms.join(' + ')});`);
      }
    }
  };
  const rowPair = (): void => {
    L.push('    if (fullX) {');
    row(nX);
    L.push('    } else {');
    row(nX - 1);
    L.push('    }');
  };
  // the cy rows within the support, each with nX taps or nX - 1
  if (nY <= MAX_UNROLL_ROWS) {
    // unrolled like the taps of a row (the row weights' distances signed as the column weights'), the last row
    // only when the support reaches it; the same sums in the same order as the loop below
    L.push(`  const k0 = (ylo * w + xlo) * ${B};`, '  let wy, k;');
    for (let j = 0; j < nY; j++) {
      const dist =
        j === 0 ? 'd = (ty - ylo) * iY;' : j === nY - 1 ? `d = (ylo + ${j} - ty) * iY;` : `d = Math.abs((ylo + ${j} - ty) * iY);`;
      L.push(
        j === nY - 1 ? `  if (cy === ${nY}) {` : '  {',
        `    ${dist} ${weight('wy', 'd')}`,
        '    wsum += wy * sumX;',
        `    k = (k0 + ${j} * rowStride) | 0;`,
      );
      rowPair();
      L.push('  }');
    }
  } else {
    L.push(
      `  for (let j = 0, k = (ylo * w + xlo) * ${B}; j < cy; j = (j + 1) | 0, k = (k + rowStride) | 0) {`,
      `    d = Math.abs((ylo + j - ty) * iY); let wy; ${weight('wy', 'd')}`,
      '    wsum += wy * sumX;',
    );
    rowPair();
    L.push('  }');
  }
  L.push(`  if (wsum < ${MIN_WEIGHT}) continue;`, '  const inv = 1 / wsum;');
  for (let b = 0; b < B; b++) {
    L.push(`  { const v = a${b} * inv; out[p * ${B} + ${b}] = v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5; }`);
  }
  L.push('  outAlpha[p] = alp;', '}', 'return ns;');
  return L.join('\n');
}
