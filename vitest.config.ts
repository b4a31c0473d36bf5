import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native suites run in forked processes (a crash in the addon cannot take the runner down) and
    // one file at a time: the machine has 2 cores and each engine uses all of them.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
