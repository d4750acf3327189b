import { defineConfig } from 'vitest/config';

// `npm run test:unit` runs the unit project only: pure code, no server, no child process (no CLI, no GDAL), so a
// newcomer gets an answer in under a minute without a build. `npm test` runs both projects.
const UNIT = [
  'test/codec.test.ts',
  'test/config.test.ts',
  'test/crs.test.ts',
  'test/deflate.test.ts',
  'test/georef.test.ts',
  'test/geotiff.test.ts',
  'test/merge.test.ts',
  'test/plan.test.ts',
  'test/pmtiles.test.ts',
  'test/resample.test.ts',
  'test/tms.test.ts',
  'test/warp.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // builds use a worker pool as large as the cores: running test files in parallel on top of it
    // only oversubscribes a 2-core machine
    fileParallelism: false,
    projects: [
      // no build worker pool in these files: they may share the cores
      { extends: true, test: { name: 'unit', include: UNIT, fileParallelism: true } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: UNIT } },
    ],
  },
});
