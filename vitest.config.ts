import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // builds use a worker pool as large as the cores: running test files in parallel on top of it
    // only oversubscribes a 2-core machine
    fileParallelism: false,
  },
});
