import { defineConfig } from 'vitest/config';
import { nodeCommand } from './agent/runtime/node-command.js';
import base from './vitest.config.js';

/**
 * The suites on the emulated ARM64 Node (scripts/test-arm64.mjs runs vitest itself on it, in the
 * tree scripts/arm64-tree.mjs prepared). Everything as in vitest.config.ts, except:
 * - vitest starts its workers with child_process.fork, which runs process.execPath and vitest 4
 *   has no option for another command: under qemu-user without binfmt_misc that is the arm64
 *   binary, which the kernel refuses. So this process's execPath becomes the tree's wrapper
 *   (FERRY_NODE), which runs the same Node through the emulator.
 * - no global setup: the tree's dist/ was compiled by the host's tsc when the tree was prepared
 *   (the same JavaScript; tsc emulated would take a minute).
 * - default timeouts 5× longer: they catch hangs, and emulated code is 10–20× slower (a test's
 *   own timeout and its assertions are unchanged).
 */
process.execPath = nodeCommand();

// Spread, not mergeConfig: that would concatenate globalSetup with the base's.
export default defineConfig({ ...base, test: { ...base.test, globalSetup: [], testTimeout: 5 * 60_000, hookTimeout: 5 * 60_000 } });
