import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // App modules run in node:vm module contexts (agent/runtime/sandbox.ts), as in the agent process.
    execArgv: ['--experimental-vm-modules', '--disable-warning=ExperimentalWarning'],
  },
});
