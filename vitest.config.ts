import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';
import { SlowestFirst } from './test/slowest-first.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Handoffs between an x86-64 and an ARM64 agent need an ARM64 tree: scripts/test-arm64.mjs
    // prepares one and runs them (vitest.cross-arch.config.ts).
    exclude: [...configDefaults.exclude, 'test/arm64/**'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at once even on two cores (vitest's default there is one): most suites spend their
    // time waiting on agent processes, brokers and timers, not computing (CI 19 min → under 12).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The slowest files first, so no long one runs alone at the end (test/slowest-first.ts).
    sequence: { sequencer: SlowestFirst },
    // App modules run in node:vm module contexts (agent/runtime/sandbox.ts), as in the agent process.
    execArgv: ['--experimental-vm-modules', '--disable-warning=ExperimentalWarning'],
  },
});
