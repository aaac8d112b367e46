#!/usr/bin/env node
// Usage: node scripts/test-arm64.mjs [--dir <dir>] [--scale <f>] [--all] [--no-native] [files or folders...]
//
// The ARM64 job of `npm test`: runs the store, heap and runtime suites on an emulated ARM64
// Node (the Raspberry Pi's architecture) and reports how much slower they ran.
// 1. Prepares (or brings up to date) the ARM64 tree of this checkout in <dir> (default
//    .arm64/ here; scripts/arm64-tree.mjs says how; cached, ~75 s the first time).
// 2. Runs the files natively (this Node), then with vitest itself on the emulated Node in the
//    tree (vitest.arm64.config.ts: its workers too), both with the same iteration counts.
// 3. Prints each file's time natively and emulated, the slowdown, and every test that did not
//    pass emulated.
// 4. Runs the cross-architecture suites (vitest.cross-arch.config.ts, test/arm64/: x86-64 and
//    ARM64 agents together) on this Node, FERRY_ARM64_TREE naming the tree; not when files are named.
// Exits non-zero if a test failed.
// Emulated, everything is 5–20x slower (the three folders in full: ~25 min on two cores), so
// the job, to stay within a few minutes:
// - runs the tests with fewer iterations: FERRY_TEST_SCALE (test/helpers/scale.ts) scales the
//   crash tests' kills and the store property test's runs (--scale, default JOB_SCALE; 1 = full);
// - tells the tests the emulated Node is ~10x slower: FERRY_TEST_SLOWDOWN (scale.ts) stretches
//   the work time a crash child gets before its kill and the runaway guards (the native run
//   keeps 1: both then do about the same work, and the ratio of their times is the slowdown);
// - leaves out LEFT_OUT (agent processes driven through the CLI and brokers: time spent starting
//   emulated Node processes), and says so; `--all` (or FERRY_ARM64_ALL=1) runs them too.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { prepareArm64Tree } from './arm64/prepare.mjs';
import { say } from './arm64/run.mjs';
import { printSlowdown, readReport } from './arm64/vitest-report.mjs';

const ROOT = join(import.meta.dirname, '..');
const CROSS_ARCH_CONFIG = join(ROOT, 'vitest.cross-arch.config.ts');
const SUITES = ['test/store', 'test/heap', 'test/runtime'];
/** The job's iteration scale: keeps the emulated run within a few minutes on two cores. */
const JOB_SCALE = '0.1';
/** FERRY_TEST_SLOWDOWN of the emulated run. */
const JOB_SLOWDOWN = '10';
/**
 * Files of the three suites the default job leaves out for time: [emulated, native] seconds
 * measured on two cores. Each starts many agent or CLI processes (~1 s of emulated Node start each).
 */
const LEFT_OUT = {
  'test/runtime/cli.test.ts': [290, 31],
  'test/runtime/agent-process.test.ts': [140, 19],
  'test/runtime/service.test.ts': [115, 10],
  'test/runtime/broker-tls.test.ts': [75, 13],
  'test/runtime/broker-auth.test.ts': [65, 5],
  'test/runtime/package-install.test.ts': [50, 6],
  'test/runtime/cli-times.test.ts': [45, 3],
  'test/runtime/logs.test.ts': [35, 4],
  'test/runtime/broker-state.test.ts': [18, 2],
};

/** The test files under `folder`, relative to the checkout. */
function testFiles(folder) {
  return readdirSync(join(ROOT, folder), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => relative(ROOT, join(ROOT, folder, f)))
    .sort();
}

function parseArgs(argv) {
  const o = { dir: process.env.FERRY_ARM64_DIR || join(ROOT, '.arm64'), scale: process.env.FERRY_TEST_SCALE || JOB_SCALE, all: process.env.FERRY_ARM64_ALL === '1', native: true, files: [], leftOut: [], crossArch: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dir') o.dir = resolve(argv[++i] ?? '');
    else if (a === '--scale') o.scale = argv[++i] ?? '';
    else if (a === '--no-native') o.native = false;
    else if (a === '--all') o.all = true;
    else if (a.startsWith('-')) throw new Error(`unknown option ${a} (usage: node scripts/test-arm64.mjs [--dir <dir>] [--scale <f>] [--no-native] [files...])`);
    else o.files.push(a);
  }
  if (o.files.length === 0) {
    o.crossArch = existsSync(CROSS_ARCH_CONFIG);
    const all = SUITES.flatMap(testFiles);
    o.leftOut = o.all ? [] : all.filter((f) => f in LEFT_OUT);
    o.files = all.filter((f) => !o.leftOut.includes(f));
  }
  return o;
}

/** Runs vitest (`node` with `args`) in `cwd`, its output shown; returns the wall time, s, and whether it passed. */
function vitest(node, args, cwd, env) {
  const t0 = performance.now();
  const r = spawnSync(node, args, { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) throw r.error;
  return { wall: (performance.now() - t0) / 1000, ok: r.status === 0 };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const slowdown = process.env.FERRY_TEST_SLOWDOWN || JOB_SLOWDOWN;
  const t0 = performance.now();
  say(`ARM64 job: ${o.files.length} test files on an emulated arm64 Node; iteration counts scaled by FERRY_TEST_SCALE=${o.scale}, FERRY_TEST_SLOWDOWN=${slowdown} emulated`);
  if (o.leftOut.length > 0) say(`left out of this run for time (--all runs them): ${o.leftOut.map((f) => `${f} (~${LEFT_OUT[f][0]} s emulated, ${LEFT_OUT[f][1]} s native)`).join(', ')}`);
  const tree = await prepareArm64Tree(o.dir, ROOT);
  const out = mkdtempSync(join(tmpdir(), 'ferry-arm64-job-'));
  try {
    const env = { ...process.env, FERRY_TEST_SCALE: o.scale, FERRY_TEST_SLOWDOWN: '1' };
    let native;
    let nativeWall = NaN;
    if (o.native) {
      say('native run of the same files (for the slowdown)...');
      const r = vitest(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', ...o.files, '--reporter=dot', '--reporter=json', `--outputFile=${join(out, 'native.json')}`], ROOT, env);
      if (!r.ok) throw new Error('the native run of these files failed (see above): the emulated run would not tell anything more');
      native = readReport(join(out, 'native.json'), ROOT);
      nativeWall = r.wall;
    }
    say('emulated run (vitest and its workers on the arm64 Node)...');
    const e = vitest(tree.node, [join(tree.tree, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'vitest.arm64.config.ts', ...o.files, '--reporter=default', '--reporter=json', `--outputFile=${join(out, 'arm64.json')}`], tree.tree, { ...env, FERRY_TEST_SLOWDOWN: slowdown });
    const emulated = readReport(join(out, 'arm64.json'), tree.tree);
    say(`slowdown of the emulated arm64 Node ${tree.nodeVersion} (qemu-user) against this machine's Node ${process.version}, FERRY_TEST_SCALE=${o.scale}:`);
    const totals = printSlowdown({ emulated, native, emulatedWall: e.wall, nativeWall, say });
    let ok = e.ok && totals.failed === 0;
    let crossWall = 0;
    if (o.crossArch) {
      say('cross-architecture suites (x86-64 and ARM64 agents together, vitest.cross-arch.config.ts)...');
      const c = vitest(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--config', CROSS_ARCH_CONFIG, '--reporter=default', '--reporter=json', `--outputFile=${join(out, 'cross.json')}`], ROOT, { ...env, FERRY_ARM64_TREE: tree.dir });
      crossWall = c.wall;
      for (const [f, r] of readReport(join(out, 'cross.json'), ROOT)) {
        totals.passed += r.passed;
        totals.failed += r.failed;
        totals.skipped += r.skipped;
        for (const t of r.notPassed) say(`  ${t.status}: ${f} > ${t.title}${t.message ? ` — ${t.message}` : ''}`);
      }
      ok &&= c.ok;
    }
    say(`the job took ${((performance.now() - t0) / 1000).toFixed(0)} s (tree ${tree.seconds.toFixed(0)} s, native ${Number.isFinite(nativeWall) ? nativeWall.toFixed(0) : '-'} s, emulated ${e.wall.toFixed(0)} s${o.crossArch ? `, cross-architecture ${crossWall.toFixed(0)} s` : ''})`);
    if (o.leftOut.length > 0) say(`not run emulated (for time; --all runs them): ${o.leftOut.join(' ')}`);
    // The closing line: the emulated (and cross-architecture) runs' count (vitest's summaries are above it).
    console.log(`arm64: ${totals.passed} passed, ${totals.failed} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}`);
    return ok && totals.failed === 0 ? 0 : 1;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`[arm64-tree] the ARM64 job failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
