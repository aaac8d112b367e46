/**
 * Heap benchmark: `npm run bench:heap -- --json [--quick]`. Runs the compiled heap (dist/, as
 * the agent runs it) and measures every figure against a baseline taken in the same run:
 * plain objects, the nursery switched off, no pre-flush, no compaction, an unlimited budget.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, percentile, prng, report, round } from './lib/args.js';

const args = parseBenchArgs();
const root = join(fileURLToPath(import.meta.url), '..', '..');
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

type HeapModule = typeof import('../agent/heap/index.js');
type StoreModule = typeof import('../store/index.js');
type ProfilesModule = typeof import('../hw-profiles/index.js');
const { openHeap } = (await import(join(root, 'dist/agent/heap/index.js'))) as HeapModule;
const { openStore } = (await import(join(root, 'dist/store/index.js'))) as StoreModule;
const { getProfile } = (await import(join(root, 'dist/hw-profiles/index.js'))) as ProfilesModule;
type Heap = ReturnType<HeapModule['openHeap']>;
type Opts = Omit<Parameters<HeapModule['openHeap']>[0], 'store' | 'app'>;

const dirs: string[] = [];
function fresh(app: string, opts: Opts): { heap: Heap; store: ReturnType<StoreModule['openStore']> } {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-heap-'));
  dirs.push(dir);
  const store = openStore({ dir, profile: opts.profile });
  return { heap: openHeap({ store, app, ...opts }), store };
}
const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

// ---- 1. overhead of the object layer on resident data ----
/* eslint-disable @typescript-eslint/no-explicit-any */
function setupState(r: any): void {
  r.counters = { requests: 0, bytes: 0, errors: 0 };
  r.config = { name: 'sensor-7', limit: 12, enabled: true };
  r.log = [];
  let head: any = null;
  for (let i = 0; i < 16; i++) head = { value: i, label: `n${i}`, next: head };
  r.list = head;
}
function handlerOp(r: any, i: number): number {
  const c = r.config;
  if (!c.enabled) return 0;
  r.counters.requests++;
  r.counters.bytes += c.limit;
  r.log.push({ at: i, n: r.counters.requests });
  if (r.log.length >= 64) r.log.length = 0;
  let sum = 0;
  for (let n = r.list; n !== null; n = n.next) sum += n.value;
  return sum;
}
function overhead(): { overheadRatio: number; plainNsPerOp: number; heapNsPerOp: number } {
  const { heap } = fresh('overhead', { profile: getProfile('rpi-4b') });
  const plain: any = {};
  setupState(plain);
  setupState(heap.root);
  heap.checkpoint();
  const ops = args.quick ? 20_000 : 100_000;
  const rounds = args.quick ? 5 : 9;
  const run = (r: any) => {
    const t0 = process.hrtime.bigint();
    let x = 0;
    for (let i = 0; i < ops; i++) x += handlerOp(r, i);
    if (x < 0) console.log(x);
    return Number(process.hrtime.bigint() - t0) / ops;
  };
  run(plain);
  run(heap.root);
  const p: number[] = [];
  const h: number[] = [];
  for (let k = 0; k < rounds; k++) {
    p.push(run(plain));
    h.push(run(heap.root));
  }
  heap.close();
  return { overheadRatio: round(median(h) / median(p), 2), plainNsPerOp: round(median(p), 1), heapNsPerOp: round(median(h), 1) };
}

// ---- 2. nursery: bytes reaching the store when 90% of new objects die young ----
function nurseryRun(nurseryFraction: number): { bytes: number; diedYoung: number } {
  const { heap, store } = fresh('nursery', { profile: getProfile('rpi-4b'), nurseryFraction, budgetBytes: 4 * 2 ** 20 });
  const r: any = heap.root;
  r.kept = [];
  r.scratch = null;
  const steps = args.quick ? 3000 : 12_000;
  const before = store.stats().segmentBytesWritten;
  for (let i = 0; i < steps; i++) {
    // Nine intermediate results per step, one summary kept: 90% of new objects die young.
    for (let k = 0; k < 9; k++) r.scratch = { step: i, k, sum: i * k, min: k, max: i + k, label: `partial result ${k} of step ${i}, sensor-7` };
    const keep = { step: i, mean: i / 2 };
    if (r.kept.length >= 200) r.kept = [];
    r.kept.push(keep);
    if (i % 1000 === 999) heap.collect(); // as the heap's interval trigger would
    if (i % 100 === 99) heap.checkpoint();
  }
  heap.checkpoint();
  const bytes = store.stats().segmentBytesWritten - before;
  const diedYoung = heap.stats().diedYoung;
  heap.close();
  return { bytes, diedYoung };
}

// ---- 3. checkpoint after 32 dirty lines, with and without pre-flush ----
function checkpoints(preflush: boolean): { p50: number; p99: number; linesPerCommit: number; linesInCommit: number } {
  const profile = getProfile('rpi-4b');
  const { heap } = fresh('checkpoint', { profile });
  const r: any = heap.root;
  const n = 1024;
  const text = 'x'.repeat(profile.cacheLineBytes - 200);
  r.data = [];
  for (let i = 0; i < n; i++) r.data.push({ i, text, gen: 0 });
  heap.checkpoint();
  const rnd = prng(7);
  const ms: number[] = [];
  const lines: number[] = [];
  const inCommit: number[] = [];
  const count = args.quick ? 60 : 300;
  for (let c = 0; c < count; c++) {
    const flushesBefore = heap.stats().flushes;
    const chosen = new Set<number>();
    while (chosen.size < 32) chosen.add(Math.floor(rnd() * n));
    for (const i of chosen) r.data[i].gen = c + 1;
    if (preflush) heap.preflush(1000);
    const res = heap.checkpoint();
    ms.push(res.ms);
    lines.push(heap.stats().flushes - flushesBefore);
    inCommit.push(res.linesWritten);
  }
  heap.close();
  const sorted = [...ms].sort((a, b) => a - b);
  const mean = (xs: number[]) => round(xs.reduce((a, b) => a + b, 0) / xs.length, 1);
  // linesPerCommit: every line the checkpoint put into its store version (pre-flushed ones
  // included); linesInCommit: those the commit call itself had to write.
  return { p50: round(percentile(sorted, 50), 3), p99: round(percentile(sorted, 99), 3), linesPerCommit: mean(lines), linesInCommit: mean(inCommit) };
}

// ---- 4. faults per walk before and after compaction ----
function compaction(): { before: number; after: number; ratio: number } {
  const profile = getProfile('j2me-phone');
  const { heap } = fresh('compaction', { profile });
  const r: any = heap.root;
  const lists = 300;
  const len = 20;
  r.lists = [];
  for (let l = 0; l < lists; l++) r.lists.push({ id: l, head: null });
  // Interleaved creation: node k of every list is made before node k+1 of any list, so each
  // list's nodes end up spread over many lines.
  for (let k = 0; k < len; k++) {
    for (let l = 0; l < lists; l++) {
      const list = r.lists[l];
      list.head = { list: l, k, pad: 'p'.repeat(40), next: list.head };
    }
    heap.checkpoint();
  }
  const rnd = prng(11);
  const walks = args.quick ? 1500 : 6000;
  const measure = () => {
    const f0 = heap.stats().faults;
    let sum = 0;
    for (let w = 0; w < walks; w++) {
      const list = r.lists[Math.floor(rnd() * lists)];
      for (let n = list.head; n !== null; n = n.next) sum += n.k;
    }
    if (sum < 0) console.log(sum);
    return (heap.stats().faults - f0) / walks;
  };
  measure();
  const before = measure();
  heap.collect({ compact: 'full' });
  heap.checkpoint();
  measure();
  const after = measure();
  heap.close();
  return { before: round(before, 2), after: round(after, 2), ratio: round(before / Math.max(after, 1e-9), 2) };
}

// ---- 5. a heap 10× the budget on j2me-phone, beside an unlimited budget ----
function bigHeap(budgetBytes: number | undefined): { opsPerSec: number; liveBytes: number; faults: number } {
  const profile = getProfile('j2me-phone');
  const { heap } = fresh('big', { profile, ...(budgetBytes ? { budgetBytes } : {}) });
  const r: any = heap.root;
  const groups = 160;
  const per = 32;
  r.groups = [];
  for (let g = 0; g < groups; g++) {
    const items = [];
    for (let i = 0; i < per; i++) items.push({ g, i, count: 0, text: 't'.repeat(220) });
    r.groups.push({ g, items });
    if (g % 8 === 7) heap.checkpoint();
  }
  heap.checkpoint();
  const live = heap.stats().virtualBytes;
  const rnd = prng(5);
  const ops = args.quick ? 20_000 : 100_000;
  const f0 = heap.stats().faults;
  const t0 = performance.now();
  for (let o = 0; o < ops; o++) {
    const grp = r.groups[Math.floor(rnd() * groups)];
    const item = grp.items[Math.floor(rnd() * per)];
    if (o % 4 === 0) item.count++;
    else if (item.text.length !== 220) throw new Error('bad read');
    if (o % 2000 === 1999) heap.checkpoint();
  }
  const secs = (performance.now() - t0) / 1000;
  const faults = heap.stats().faults - f0;
  heap.close();
  return { opsPerSec: Math.round(ops / secs), liveBytes: live, faults };
}

try {
  const o = overhead();
  const withNursery = nurseryRun(0.25);
  const withoutNursery = nurseryRun(0);
  const cpPlain = checkpoints(false);
  const cpPre = checkpoints(true);
  const comp = compaction();
  const j2me = getProfile('j2me-phone');
  const small = bigHeap(undefined);
  const unlimited = bigHeap(j2me.heapBudgetBytes * 64);
  const nurseryFlashReduction = round(withoutNursery.bytes / Math.max(1, withNursery.bytes), 2);
  const result = {
    bench: 'heap',
    quick: args.quick,
    overheadRatio: o.overheadRatio,
    overheadPlainNsPerOp: o.plainNsPerOp,
    overheadHeapNsPerOp: o.heapNsPerOp,
    nurseryFlashReduction,
    nurseryBytesWritten: withNursery.bytes,
    noNurseryBytesWritten: withoutNursery.bytes,
    checkpointLinesPerCommit: cpPlain.linesPerCommit,
    checkpointMsP50: cpPlain.p50,
    checkpointMsP99: cpPlain.p99,
    checkpointLinesWrittenByCommit: cpPlain.linesInCommit,
    checkpointPreflushLinesPerCommit: cpPre.linesPerCommit,
    checkpointPreflushMsP50: cpPre.p50,
    checkpointPreflushMsP99: cpPre.p99,
    checkpointPreflushLinesWrittenByCommit: cpPre.linesInCommit,
    faultsPerOpBeforeCompaction: comp.before,
    faultsPerOpAfterCompaction: comp.after,
    compactionFaultReduction: comp.ratio,
    bigHeapOpsPerSec: small.opsPerSec,
    bigHeapUnlimitedOpsPerSec: unlimited.opsPerSec,
    bigHeapLiveBytes: small.liveBytes,
    bigHeapBudgetBytes: j2me.heapBudgetBytes,
    bigHeapOverBudget: round(small.liveBytes / j2me.heapBudgetBytes, 1),
    bigHeapFaults: small.faults,
    targets: {
      overheadRatio: o.overheadRatio <= 10,
      nurseryFlashReduction: nurseryFlashReduction >= 5,
      compactionHalvesFaults: comp.ratio >= 2,
      bigHeapTenTimesBudget: small.liveBytes >= 10 * j2me.heapBudgetBytes,
    },
  };
  report(args, result, [
    `overhead: ${o.heapNsPerOp} ns/op through root vs ${o.plainNsPerOp} plain → ${o.overheadRatio}× (target ≤ 10)`,
    `nursery: ${withNursery.bytes} bytes written vs ${withoutNursery.bytes} without → ${nurseryFlashReduction}× (target ≥ 5)`,
    `checkpoint (32 dirty lines, ${cpPlain.linesPerCommit} lines per version): p50 ${cpPlain.p50} ms p99 ${cpPlain.p99} ms, ${cpPlain.linesInCommit} written by the commit; pre-flushed: p50 ${cpPre.p50} ms p99 ${cpPre.p99} ms, ${cpPre.linesInCommit} written by the commit`,
    `faults per walk: ${comp.before} before compaction, ${comp.after} after (${comp.ratio}×, target ≥ 2)`,
    `j2me heap ${round(small.liveBytes / 1024)} KiB in a ${j2me.heapBudgetBytes / 1024} KiB budget: ${small.opsPerSec} ops/s vs ${unlimited.opsPerSec} unlimited`,
  ]);
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
