import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../../store/index.js';
import { prng } from './args.js';

/** The store benchmark's workload: N lines of `lineSize`, checkpoints dirtying `dirtyPerCheckpoint` random lines, then random reads. */
export interface Workload {
  lines: number;
  lineSize: number;
  dirtyPerCheckpoint: number;
  checkpoints: number;
  reads: number;
  /** Checkpoints of the mixed phase, each preceded by `mixedReadsPerCheckpoint` random reads. */
  mixedCheckpoints: number;
  mixedReadsPerCheckpoint: number;
  seed: number;
}

/** One implementation under test: Ferry's store or the naive baseline. */
export interface WorkloadTarget {
  name: string;
  populate(lines: Uint8Array[]): void;
  checkpoint(dirty: Array<[number, Uint8Array]>): void;
  read(line: number): Uint8Array | undefined;
  close(): void;
}

export interface PhaseTimes {
  populateMs: number;
  checkpointMs: number;
  readMs: number;
  /** Reads and checkpoints interleaved, as a running app does them. */
  mixedMs: number;
  mixedOps: number;
  closeMs: number;
  dirtyBytes: number;
}

function lineBytes(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  const r = prng(seed);
  // Half random, half repeated: realistic heap lines, not all-zero pages a layer could elide.
  for (let i = 0; i < size; i += 4) b[i] = (r() * 256) | 0;
  return b;
}

/** Runs the workload; every phase's bytes and times are measured by the caller around it. */
export function runWorkload(target: WorkloadTarget, w: Workload, between?: (phase: string) => void): PhaseTimes {
  const r = prng(w.seed);
  const t0 = performance.now();
  target.populate(Array.from({ length: w.lines }, (_, i) => lineBytes(w.lineSize, i + 1)));
  const t1 = performance.now();
  between?.('populated');
  let dirtyBytes = w.lines * w.lineSize;
  for (let c = 0; c < w.checkpoints; c++) {
    const chosen = new Set<number>();
    while (chosen.size < w.dirtyPerCheckpoint) chosen.add((r() * w.lines) | 0);
    target.checkpoint([...chosen].map((l) => [l, lineBytes(w.lineSize, (c + 2) * 100_003 + l)]));
    dirtyBytes += w.dirtyPerCheckpoint * w.lineSize;
  }
  const t2 = performance.now();
  between?.('checkpointed');
  let sum = 0;
  for (let i = 0; i < w.reads; i++) sum += target.read((r() * w.lines) | 0)?.[0] ?? 0;
  const t3 = performance.now();
  let mixedOps = 0;
  for (let c = 0; c < w.mixedCheckpoints; c++) {
    for (let i = 0; i < w.mixedReadsPerCheckpoint; i++) sum += target.read((r() * w.lines) | 0)?.[0] ?? 0;
    const chosen = new Set<number>();
    while (chosen.size < w.dirtyPerCheckpoint) chosen.add((r() * w.lines) | 0);
    target.checkpoint([...chosen].map((l) => [l, lineBytes(w.lineSize, (c + 1) * 7_000_003 + l)]));
    dirtyBytes += w.dirtyPerCheckpoint * w.lineSize;
    mixedOps += w.mixedReadsPerCheckpoint + 1;
  }
  const t4 = performance.now();
  target.close();
  const t5 = performance.now();
  if (sum < 0) throw new Error('unreachable');
  return { populateMs: t1 - t0, checkpointMs: t2 - t1, readMs: t3 - t2, mixedMs: t4 - t3, mixedOps, closeMs: t5 - t4, dirtyBytes };
}

export function ferryTarget(dir: string, w: Workload, segmentBytes = 128 * 1024): WorkloadTarget & { store: Store } {
  const store = openStore({ dir: join(dir, 'ferry'), segmentBytes });
  store.createApp('bench', { lineSize: w.lineSize, maxLines: w.lines });
  return {
    name: 'ferry',
    store,
    populate(lines) {
      const tx = store.begin('bench');
      lines.forEach((b, i) => tx.write(i, b));
      tx.commit();
    },
    checkpoint(dirty) {
      const tx = store.begin('bench');
      for (const [l, b] of dirty) tx.write(l, b);
      tx.commit();
    },
    read: (line) => store.readLine('bench', line),
    close: () => store.close(),
  };
}

/** The naive baseline: one SQLite row per line, updated in place, default settings. */
export function baselineTarget(dir: string): WorkloadTarget {
  const db = new Database(join(dir, 'baseline.db'));
  db.exec('CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  const put = db.prepare('INSERT OR REPLACE INTO lines (id, data) VALUES (?, ?)');
  const get = db.prepare('SELECT data FROM lines WHERE id = ?').pluck();
  const write = db.transaction((rows: Array<[number, Uint8Array]>) => { for (const [l, b] of rows) put.run(l, b); });
  return {
    name: 'baseline',
    populate: (lines) => write(lines.map((b, i) => [i, b] as [number, Uint8Array])),
    checkpoint: (dirty) => write(dirty),
    read: (line) => get.get(line) as Uint8Array | undefined,
    close: () => db.close(),
  };
}
