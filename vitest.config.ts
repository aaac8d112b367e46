import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at once even on two cores (vitest's default there is one): most suites spend their
    // time waiting on agent processes, brokers and timers, not computing (CI 19 min → under 12).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // App modules run in node:vm module contexts (agent/runtime/sandbox.ts), as in the agent process.
    execArgv: ['--experimental-vm-modules', '--disable-warning=ExperimentalWarning'],
  },
});
