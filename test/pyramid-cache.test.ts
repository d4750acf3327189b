// The cached test pyramids of test/helpers/server.ts: keyed by the code that builds them and by the options, so
// the HTTP tests never check a pyramid made by an older encoder or warp.
import { describe, expect, it } from 'vitest';
import { buildSources, pyramidKey } from './helpers/server.js';
import { ROOT } from './helpers/fixtures.js';

describe('test pyramid cache key', () => {
  it('covers the planner, the warp, the resampling, the encoder and the archive writer', () => {
    const files = buildSources().map((f) => f.slice(ROOT.length + 1));
    for (const f of ['src/pyramid/build.ts', 'src/pyramid/worker.ts', 'src/raster/warp.ts', 'src/raster/resample.ts', 'src/tiles/codec.ts', 'src/pyramid/pmtiles/writer.ts', 'src/raster/taps.ts', 'src/raster/fastloop.ts', 'src/geo/tms.ts']) {
      expect(files).toContain(f);
    }
    // only code: the HTTP side does not make pyramids
    expect(files.filter((f) => f.startsWith('src/protocols/') || f.startsWith('src/api/'))).toEqual([]);
  });

  it('changes with the options and not between calls', () => {
    const a = pyramidKey({ inputs: ['a.tif'], format: 'png', bottom: 7 });
    expect(pyramidKey({ inputs: ['a.tif'], format: 'png', bottom: 7 })).toBe(a);
    expect(pyramidKey({ inputs: ['a.tif'], format: 'png', bottom: 8 })).not.toBe(a);
    expect(pyramidKey({ inputs: ['a.tif'], format: 'jpg', bottom: 7 })).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{12}$/);
  });
});
