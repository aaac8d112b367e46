import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * The cross-architecture suites (test/arm64/): vitest and the x86-64 agents on this machine's
 * Node, the ARM64 agents on the tree FERRY_ARM64_TREE names (scripts/test-arm64.mjs prepares
 * it and runs this config after the emulated suites).
 */
export default defineConfig({ ...base, test: { ...base.test, include: ['test/arm64/**/*.test.ts'], exclude: [] } });
