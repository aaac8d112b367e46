/**
 * Store benchmark: Ferry's store against a naive baseline (one SQLite row per line, default
 * settings), same workload, same run. `npm run bench:store -- --json [--quick]`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, report, round } from './lib/args.js';
import { makeLoopFs } from './lib/loop-device.js';
import { processWriteBytes } from './lib/proc-io.js';
import { baselineTarget, ferryTarget, runWorkload, type Workload, type WorkloadTarget } from './lib/store-workloads.js';

const args = parseBenchArgs();
const self = fileURLToPath(import.meta.url);

const workload: Workload = {
  lines: 2048,
  lineSize: 4096,
  dirtyPerCheckpoint: 32,
  checkpoints: args.quick ? 400 : 1500,
  reads: args.quick ? 20_000 : 100_000,
  mixedCheckpoints: args.quick ? 100 : 400,
  mixedReadsPerCheckpoint: 32,
  seed: 42,
};

type Make = (dir: string) => WorkloadTarget;
const targets: Record<string, Make> = {
  ferry: (dir) => ferryTarget(dir, workload),
  baseline: (dir) => baselineTarget(dir),
};

if (args.rest[0] === 'child') {
  // Child mode, for counting fsyncs under strace: run `checkpoints` checkpoints and exit.
  const [, name, dir, checkpoints] = args.rest;
  runWorkload(targets[name!]!(dir!), { ...workload, checkpoints: Number(checkpoints), reads: 0, mixedCheckpoints: 0 });
  process.exit(0);
}

interface Measured {
  writeAmplification: number;
  steadyWriteAmplification: number;
  checkpointsPerSec: number;
  lineReadsPerSec: number;
  mixedOpsPerSec: number;
  blockWriteAmplification?: number;
  avgBlockRequestKiB?: number;
  fsyncsPerCheckpoint?: number;
  extra?: Record<string, unknown>;
}

function measureProcess(name: string): Measured {
  const dir = mkdtempSync(join(tmpdir(), `ferry-bench-${name}-`));
  try {
    const target = targets[name]!(dir);
    const before = processWriteBytes();
    let afterPopulate = before;
    let afterCheckpoints = before;
    const times = runWorkload(target, workload, (phase) => {
      if (phase === 'populated') afterPopulate = processWriteBytes();
      if (phase === 'checkpointed') afterCheckpoints = processWriteBytes();
    });
    const total = processWriteBytes() - before;
    const steadyDirty = workload.checkpoints * workload.dirtyPerCheckpoint * workload.lineSize;
    const extra: Record<string, unknown> = {};
    return {
      writeAmplification: round(total / times.dirtyBytes),
      steadyWriteAmplification: round((afterCheckpoints - afterPopulate) / steadyDirty),
      checkpointsPerSec: round(workload.checkpoints / (times.checkpointMs / 1000), 1),
      lineReadsPerSec: round(workload.reads / (times.readMs / 1000), 0),
      mixedOpsPerSec: round(times.mixedOps / (times.mixedMs / 1000), 0),
      extra,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function measureBlock(name: string, workDir: string): { blockWriteAmplification: number; avgBlockRequestKiB: number } {
  const fs = makeLoopFs(workDir);
  try {
    fs.flush();
    const before = fs.writeStats();
    const times = runWorkload(targets[name]!(fs.mountPoint), { ...workload, reads: 0, mixedReadsPerCheckpoint: 0 });
    fs.flush();
    const after = fs.writeStats();
    const bytes = (after.sectors - before.sectors) * 512;
    const requests = after.requests - before.requests;
    return { blockWriteAmplification: round(bytes / times.dirtyBytes), avgBlockRequestKiB: round(bytes / 1024 / Math.max(1, requests), 1) };
  } finally {
    fs.dispose();
  }
}

function countFsyncs(name: string): number | string {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'not counted: strace is not installed';
  const n = 60;
  const counts: number[] = [];
  for (const checkpoints of [0, n]) {
    const dir = mkdtempSync(join(tmpdir(), `ferry-fsync-${name}-`));
    const out = join(dir, 'strace.txt');
    try {
      execFileSync('strace', ['-f', '-qq', '-c', '-o', out, '-e', 'trace=fsync,fdatasync', process.execPath, '--import', 'tsx', self, 'child', name, dir, String(checkpoints)], { stdio: 'pipe' });
      const text = readFileSync(out, 'utf8');
      let calls = 0;
      for (const m of text.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/gm)) calls += Number(m[1]);
      counts.push(calls);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return round((counts[1]! - counts[0]!) / n, 2);
}

const results: Record<string, Measured> = {};
for (const name of ['ferry', 'baseline']) results[name] = measureProcess(name);

let blockNote: string | undefined;
const blockDir = mkdtempSync(join(tmpdir(), 'ferry-bench-block-'));
try {
  for (const name of ['ferry', 'baseline']) Object.assign(results[name]!, measureBlock(name, blockDir));
} catch (e) {
  blockNote = `no loop device could be made here (${(e as Error).message.split('\n')[0]}); block-level figures not measured`;
} finally {
  rmSync(blockDir, { recursive: true, force: true });
}
for (const name of ['ferry', 'baseline']) {
  const f = countFsyncs(name);
  if (typeof f === 'number') results[name]!.fsyncsPerCheckpoint = f;
  else results[name]!.extra = { ...results[name]!.extra, fsyncsPerCheckpoint: f };
}

const ferry = results.ferry!;
const base = results.baseline!;
const targetsMet = {
  writeAmplification: ferry.writeAmplification <= 1.25,
  blockWriteAmplification: ferry.blockWriteAmplification === undefined ? null : ferry.blockWriteAmplification <= 1.4,
  avgBlockRequestKiB: ferry.avgBlockRequestKiB === undefined ? null : ferry.avgBlockRequestKiB >= 2 * base.avgBlockRequestKiB!,
  checkpointsPerSec: ferry.checkpointsPerSec >= base.checkpointsPerSec,
};
const { extra: _fe, ...ferryOut } = ferry;
const { extra: _be, ...baseOut } = base;
const result = {
  bench: 'store',
  quick: args.quick,
  workload,
  ...ferryOut,
  baseline: baseOut,
  checkpointsPerSecRatio: round(ferry.checkpointsPerSec / base.checkpointsPerSec, 2),
  lineReadsPerSecRatio: round(ferry.lineReadsPerSec / base.lineReadsPerSec, 2),
  mixedOpsPerSecRatio: round(ferry.mixedOpsPerSec / base.mixedOpsPerSec, 2),
  targetsMet,
  ...(blockNote ? { blockNote } : {}),
  ...(ferry.extra?.fsyncsPerCheckpoint ? { fsyncNote: ferry.extra.fsyncsPerCheckpoint } : {}),
};
report(args, result, [
  `store benchmark (${args.quick ? 'quick' : 'full'}): ${workload.lines} lines of ${workload.lineSize} B, ${workload.checkpoints} checkpoints of ${workload.dirtyPerCheckpoint} dirty lines`,
  `  write amplification  ferry ${ferry.writeAmplification} (steady ${ferry.steadyWriteAmplification})  baseline ${base.writeAmplification}`,
  `  block WA             ferry ${ferry.blockWriteAmplification ?? '-'}  baseline ${base.blockWriteAmplification ?? '-'}${blockNote ? ` (${blockNote})` : ''}`,
  `  avg block request    ferry ${ferry.avgBlockRequestKiB ?? '-'} KiB  baseline ${base.avgBlockRequestKiB ?? '-'} KiB`,
  `  checkpoints/s        ferry ${ferry.checkpointsPerSec}  baseline ${base.checkpointsPerSec}`,
  `  line reads/s         ferry ${ferry.lineReadsPerSec}  baseline ${base.lineReadsPerSec}`,
  `  mixed ops/s          ferry ${ferry.mixedOpsPerSec}  baseline ${base.mixedOpsPerSec} (${workload.mixedReadsPerCheckpoint} reads + 1 checkpoint)`,
  `  fsyncs/checkpoint    ferry ${ferry.fsyncsPerCheckpoint ?? '-'}  baseline ${base.fsyncsPerCheckpoint ?? '-'}`,
]);
