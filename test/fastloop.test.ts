// The generated fast loops of the separable kernels: the dumped source is the code that runs.

import { describe, expect, it } from 'vitest';
import { fastLoopSource, separableFastLoop } from '../src/raster/fastloop.js';
import { FILTER_CUBIC, FILTER_LANCZOS, FILTER_TENT } from '../src/raster/taps.js';

describe('fastLoopSource', () => {
  it('is the body of the function separableFastLoop compiles, taps unrolled', () => {
    for (const [filter, nX, nY, bands, hasAlpha] of [
      [FILTER_TENT, 3, 3, 1, false],
      [FILTER_CUBIC, 5, 5, 3, true],
      [FILTER_LANCZOS, 7, 13, 4, false], // more rows than are unrolled: a loop over them
    ] as const) {
      const source = fastLoopSource(filter, nX, nY, bands, hasAlpha);
      const fn = separableFastLoop(filter, nX, nY, bands, hasAlpha);
      expect(fn).not.toBeNull();
      expect(fn!.toString()).toContain(source);
      expect(source).toContain(`let w${nX - 1} = 0;`);
      expect(source).not.toContain(`let w${nX} = 0;`);
      expect(source).toContain(`let a${bands - 1} = 0;`);
      expect(source).not.toContain(`let a${bands} = 0;`);
      expect(source.includes('runs[r]')).toBe(hasAlpha);
      expect(source.includes('table[i]')).toBe(filter === FILTER_LANCZOS);
    }
  });

  it('gives the same loop for the same configuration', () => {
    expect(separableFastLoop(FILTER_CUBIC, 5, 5, 3, false)).toBe(separableFastLoop(FILTER_CUBIC, 5, 5, 3, false));
  });
});
