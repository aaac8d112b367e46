import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import { fsBlockIo, openStore, type BlockIo, type CommitResult, type Durability, type Store, type StoreOptions, type WriteTransaction } from '../../store/index.js';
import { DEVICE_RESERVE_BYTES } from '../../store/segment-space.js';
import { caught } from '../helpers/ferry-error.js';
import { xorshift as rng } from '../helpers/prng.mjs';

/**
 * I/O faults: failures injected on the write and sync path make the transaction abort cleanly
 * with the previous version intact. The faults:
 *  - a wrapping BlockIo that fails the Nth pwrite or the Nth fdatasync of the segment file, for
 *    every N a commit, a restore or a compaction reaches, in both durability modes;
 *  - a segment file that cannot grow (the wrapper refuses writes past its end with ENOSPC);
 *  - a real full device (a small tmpfs, root only): filled by the store itself (the segment file
 *    stops at the reserve kept for heap.db), and filled by another writer (ENOSPC on the segment
 *    file, SQLITE_FULL on the WAL);
 *  - a real failure inside SQLite's own commit (the WAL may not grow past RLIMIT_FSIZE: EFBIG).
 * After every failure: the error is a FerryError with the right code and a message naming what
 * failed, the transaction is finished, every kept version of every app reads back exactly as
 * before (lines and state), integrityCheck() passes, a later commit succeeds, and all of it
 * still holds after close and reopen.
 */

const dirs: string[] = [];
const openStores = new Set<Store>();
afterAll(() => {
  for (const s of openStores) s.close();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ferry-iofaults-'));
  dirs.push(d);
  return d;
}

function open(options: StoreOptions): Store {
  const s = openStore(options);
  openStores.add(s);
  return s;
}

function close(s: Store): void {
  s.close();
  openStores.delete(s);
}

// ---- deterministic content ----

/** Distinct, non-uniform bytes per (app, tag, line): a misplaced or stale line is always detected. */
function lineBytes(size: number, app: string, tag: number, line: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (tag * 2654435761 + line * 40503 + app.charCodeAt(0) * 97 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function stateBytes(app: string, tag: number, size = 8 + (tag % 40)): Uint8Array {
  return lineBytes(size, app, tag + 1_000_000, 0);
}

// ---- the model: what every kept version must hold ----

interface Snapshot {
  lines: Map<number, Uint8Array>;
  state: Uint8Array;
}

/** One app as the test expects it: kept versions (the newest `keep`, minus removed ones), each whole. */
class Model {
  readonly versions = new Map<number, Snapshot>();
  head = 0;

  constructor(readonly app: string, readonly keep: number) {}

  get current(): Snapshot {
    return this.versions.get(this.head) ?? { lines: new Map(), state: new Uint8Array(0) };
  }

  get oldest(): number {
    return Math.min(...this.versions.keys());
  }

  committed(version: number, snap: Snapshot): void {
    expect(version, `app ${this.app}: the commit's version`).toBe(this.head + 1);
    this.head = version;
    this.versions.set(version, snap);
    for (const v of [...this.versions.keys()]) if (v <= version - this.keep) this.versions.delete(v);
  }

  removed(version: number): void {
    expect(this.versions.delete(version)).toBe(true);
  }
}

/** Every kept version of every app reads back exactly as the model says; the integrity check passes. */
function expectIntact(store: Store, models: readonly Model[]): void {
  expect(store.listApps().sort()).toEqual(models.map((m) => m.app).sort());
  for (const m of models) {
    expect(store.headVersion(m.app), `app ${m.app} head`).toBe(m.head);
    const kept = [...m.versions.keys()].sort((a, b) => a - b);
    expect(store.versions(m.app).map((v) => v.version), `app ${m.app} kept versions`).toEqual(kept);
    // every line any kept version holds, plus a few that none does
    const probe = new Set<number>([0, 1, 2]);
    for (const s of m.versions.values()) for (const l of s.lines.keys()) probe.add(l);
    const lines = [...probe].sort((a, b) => a - b);
    for (const v of kept) {
      const snap = m.versions.get(v)!;
      expect(store.listLines(m.app, { version: v }).map((l) => l.line), `app ${m.app} v${v} line list`).toEqual([...snap.lines.keys()].sort((a, b) => a - b));
      const got = store.read(m.app, lines, { version: v });
      const wrong: string[] = [];
      lines.forEach((l, i) => {
        const want = snap.lines.get(l);
        const have = got[i];
        if (want === undefined ? have !== undefined : have === undefined || !Buffer.from(have).equals(want)) wrong.push(`line ${l}: ${have === undefined ? 'missing' : 'wrong bytes'}${want === undefined ? ' (expected none)' : ''}`);
      });
      expect(wrong, `app ${m.app} version ${v}`).toEqual([]);
      expect(Buffer.from(store.readState(m.app, { version: v })).equals(snap.state), `app ${m.app} v${v} state`).toBe(true);
    }
  }
  const report = store.integrityCheck();
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
}


function expectFailure(fn: () => unknown, code: ErrorCode, message?: RegExp): FerryError {
  const e = caught(fn);
  expect(e.code, e.message).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

/** A finished transaction refuses every further use with STORE_ABORTED. */
function expectAborted(tx: WriteTransaction, lineSize: number): void {
  expect(tx.isOpen).toBe(false);
  expectFailure(() => tx.write(0, new Uint8Array(lineSize)), 'STORE_ABORTED', /was aborted/);
  expectFailure(() => tx.delete(0), 'STORE_ABORTED');
  expectFailure(() => tx.read(0), 'STORE_ABORTED');
  expectFailure(() => tx.setState(new Uint8Array(1)), 'STORE_ABORTED');
  expectFailure(() => tx.commit(), 'STORE_ABORTED');
  tx.abort(); // still safe to repeat
}

// ---- workload ----

interface Plan {
  writes: number[];
  deletes: number[];
  state: Uint8Array;
}

function randomPlan(app: string, tag: number, maxLine: number, writes: number, deletes: number): Plan {
  const r = rng(tag * 7919 + app.charCodeAt(0));
  const w = new Set<number>();
  while (w.size < writes) w.add(Math.floor(r() * maxLine));
  const d = new Set<number>();
  while (d.size < deletes) {
    const l = Math.floor(r() * maxLine);
    if (!w.has(l)) d.add(l);
  }
  return { writes: [...w], deletes: [...d], state: stateBytes(app, tag) };
}

/** Runs a plan in one transaction; returns the snapshot it should commit, the outcome, and where it failed. */
function runPlan(store: Store, m: Model, lineSize: number, tag: number, plan: Plan): { expected: Snapshot; tx: WriteTransaction; result?: CommitResult; error?: unknown; phase: 'write' | 'commit' } {
  const lines = new Map(m.current.lines);
  for (const l of plan.writes) lines.set(l, lineBytes(lineSize, m.app, tag, l));
  for (const l of plan.deletes) lines.delete(l);
  const expected = { lines, state: plan.state };
  const tx = store.begin(m.app);
  let phase: 'write' | 'commit' = 'write';
  try {
    for (const l of plan.writes) tx.write(l, lineBytes(lineSize, m.app, tag, l));
    for (const l of plan.deletes) tx.delete(l);
    tx.setState(plan.state);
    phase = 'commit';
    return { expected, tx, result: tx.commit(), phase };
  } catch (error) {
    return { expected, tx, error, phase };
  }
}

function commitPlan(store: Store, m: Model, lineSize: number, tag: number, plan: Plan): CommitResult {
  const r = runPlan(store, m, lineSize, tag, plan);
  if (r.error) throw r.error;
  m.committed(r.result!.version, r.expected);
  return r.result!;
}

// ---- a BlockIo that fails on demand ----

type FaultOp = 'pwrite' | 'fdatasync';

function errnoError(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault, ${syscall}`), { code, syscall, errno: code === 'EIO' ? -5 : -28 });
}

/** Wraps the real segment-file I/O; once armed, the Nth call of one kind throws (once). */
class FaultIo implements BlockIo {
  calls: Record<FaultOp, number> = { pwrite: 0, fdatasync: 0 };
  fired = false;
  /** While true the device is full: a write past the file's end writes what fits inside it, then fails with ENOSPC. */
  deviceFull = false;
  private fault: { op: FaultOp; n: number; code: string } | undefined;

  arm(op: FaultOp, n: number, code = 'EIO'): void {
    this.calls = { pwrite: 0, fdatasync: 0 };
    this.fault = { op, n, code };
    this.fired = false;
  }

  disarm(): void {
    this.fault = undefined;
  }

  private tick(op: FaultOp, syscall: string): void {
    this.calls[op]++;
    if (this.fault?.op === op && this.calls[op] === this.fault.n) {
      this.fired = true;
      throw errnoError(this.fault.code, syscall);
    }
  }

  open(path: string): number { return fsBlockIo.open(path); }
  pwrite(fd: number, data: Uint8Array, position: number): void {
    this.tick('pwrite', 'write');
    const end = fsBlockIo.size(fd);
    if (this.deviceFull && position + data.length > end) {
      if (position < end) fsBlockIo.pwrite(fd, data.subarray(0, end - position), position);
      throw errnoError('ENOSPC', 'write');
    }
    fsBlockIo.pwrite(fd, data, position);
  }
  pread(fd: number, into: Uint8Array, position: number): number { return fsBlockIo.pread(fd, into, position); }
  fdatasync(fd: number): void {
    this.tick('fdatasync', 'fdatasync');
    fsBlockIo.fdatasync(fd);
  }
  truncate(fd: number, size: number): void { fsBlockIo.truncate(fd, size); }
  size(fd: number): number { return fsBlockIo.size(fd); }
  close(fd: number): void { fsBlockIo.close(fd); }
}

// ---- 1. injected faults on every pwrite and every fdatasync an operation makes ----

describe('injected segment-file faults abort the transaction and leave every kept version intact', () => {
  const SEG = 16 * 1024;
  const LS = 1024; // 16 lines per segment
  const MAX = 160;
  type Operation = 'commit' | 'restore' | 'compact';
  const operations: Operation[] = ['commit', 'restore', 'compact'];
  const configs: Array<{ durability: Durability; extra: Partial<StoreOptions> }> = [
    { durability: 'full', extra: {} },
    // syncEveryCommits 1: every commit is followed by the automatic sync()
    { durability: 'batched', extra: { syncEveryCommits: 1 } },
  ];

  for (const { durability, extra } of configs) {
    for (const op of operations) {
      for (const faultOp of ['pwrite', 'fdatasync'] as const) {
        it(`(${durability}) ${op}: EIO on the Nth ${faultOp}, for every N`, () => {
          const dir = tempDir();
          const options = (io?: BlockIo): StoreOptions => ({ dir, segmentBytes: SEG, keepVersions: 3, durability, ...extra, ...(io ? { io } : {}) });
          const a = new Model('a', 3);
          const b = new Model('b', 3);
          const models = [a, b];
          let tag = 1;
          let store = open(options());
          store.createApp('a', { lineSize: LS, maxLines: MAX });
          store.createApp('b', { lineSize: LS, maxLines: MAX });
          // a history with partly dead segments (compaction has victims) and versions that differ (restore has work)
          for (let i = 0; i < 6; i++) {
            commitPlan(store, a, LS, tag, randomPlan('a', tag, MAX, i === 0 ? 100 : 30, i === 0 ? 0 : 4));
            tag++;
            if (i % 2 === 0) { commitPlan(store, b, LS, tag, randomPlan('b', tag, MAX, 20, 2)); tag++; }
          }
          expectIntact(store, models);
          close(store);

          const failures = { write: 0, commit: 0, afterCommitPoint: 0 };
          let n = 1;
          for (; ; n++) {
            expect(n, 'the operation never completed without reaching the fault').toBeLessThan(60);
            const io = new FaultIo();
            store = open(options(io));
            expectIntact(store, models);
            const aborts = store.stats().aborts;
            io.arm(faultOp, n);
            // run the operation with the fault armed
            let expected: Snapshot;
            let result: CommitResult | undefined;
            let error: unknown;
            let tx: WriteTransaction | undefined;
            let phase: 'write' | 'commit' = 'commit';
            const opTag = tag++;
            if (op === 'commit') {
              // 40 lines: two segments fill and are written during write() (pre-flush), the rest at commit
              const r = runPlan(store, a, LS, opTag, randomPlan('a', opTag, MAX, 40, 3));
              ({ expected, result, error, tx, phase } = r);
            } else {
              const v = op === 'restore' ? a.oldest : a.head;
              expected = { lines: new Map(a.versions.get(v)!.lines), state: a.versions.get(v)!.state };
              try {
                result = op === 'restore' ? store.restore('a', v) : store.compact('a');
              } catch (e) {
                error = e;
              }
            }
            io.disarm();

            if (!io.fired) {
              // the operation made fewer than n calls: it must have succeeded, and the loop is over
              if (error) throw error;
              a.committed(result!.version, expected);
              if (op === 'compact') expect(result!.compactedLines, 'forced compaction copied nothing: no fault on its path was tested').toBeGreaterThan(0);
              expectIntact(store, models);
              close(store);
              store = open(options());
              expectIntact(store, models);
              close(store);
              break;
            }

            if (error === undefined) {
              // Only batched mode's automatic sync() runs after the commit point (the SQLite commit);
              // its failure must not turn a commit that happened into a reported failure.
              expect({ durability, faultOp }, 'the fault fired but the operation reported success').toEqual({ durability: 'batched', faultOp: 'fdatasync' });
              failures.afterCommitPoint++;
              a.committed(result!.version, expected);
              expectIntact(store, models);
              store.sync(); // the deferred sync succeeds now
            } else {
              expect(error).toBeInstanceOf(FerryError);
              const fe = error as FerryError;
              expect(fe.code, fe.message).toBe('STORE_IO');
              expect(fe.message).toMatch(faultOp === 'pwrite' ? /the segment file write failed: EIO: injected fault, write/ : /the segment file sync failed: EIO: injected fault, fdatasync/);
              expect((fe.cause as NodeJS.ErrnoException).code).toBe('EIO');
              failures[phase]++;
              if (tx) expectAborted(tx, LS);
              expect(store.stats().aborts).toBe(aborts + 1);
              // nothing changed: same head, same kept versions, same bytes and state
              expectIntact(store, models);
            }

            // the store goes on: begin is not blocked, a commit without faults succeeds and reads back
            commitPlan(store, a, LS, tag, randomPlan('a', tag, MAX, 24, 2));
            tag++;
            commitPlan(store, b, LS, tag, randomPlan('b', tag, MAX, 8, 1));
            tag++;
            expectIntact(store, models);
            close(store);
            // and after reopening with the plain I/O
            store = open(options());
            expectIntact(store, models);
            close(store);
          }

          // how many distinct failure points the loop went through
          const total = failures.write + failures.commit + failures.afterCommitPoint;
          expect(total).toBe(n - 1);
          if (faultOp === 'pwrite') {
            expect(total, 'pwrite faults tested').toBeGreaterThanOrEqual(op === 'compact' ? 1 : 2);
            if (op === 'commit') {
              expect(failures.write, 'failures during write() (pre-flush)').toBeGreaterThanOrEqual(2);
              expect(failures.commit, 'failures during commit()').toBeGreaterThanOrEqual(1);
            }
          } else {
            // one segment sync per commit; batched mode adds the automatic sync() after it
            expect(failures.commit).toBe(1);
            expect(failures.afterCommitPoint).toBe(durability === 'batched' ? 1 : 0);
          }
        });
      }
    }
  }
});

// ---- a segment file that cannot grow (injected ENOSPC past its end; needs no root) ----

describe('a segment file that cannot grow: STORE_NO_SPACE, and room freed inside it is used again', () => {
  for (const durability of ['full', 'batched'] as const) {
    it(`(${durability}) fills, fails in write() and in commit(), recovers after removeVersion and removeApp, reopens`, () => {
      const SEG = 16 * 1024;
      const LS = 1024;
      const PER = SEG / LS;
      const dir = tempDir();
      const io = new FaultIo();
      const options = (withIo: boolean): StoreOptions => ({ dir, segmentBytes: SEG, keepVersions: 3, durability, ...(withIo ? { io } : {}) });
      let store = open(options(true));
      const hist = new Model('hist', 3);
      const victim = new Model('victim', 3);
      const fill = new Model('fill', 3);
      const models = [hist, victim, fill];
      for (const m of models) store.createApp(m.app, { lineSize: LS, maxLines: 1024 });
      const range = (from: number, n = PER) => Array.from({ length: n }, (_, i) => from + i);
      let tag = 1;
      const plan = (m: Model, lines: number[]): Plan => ({ writes: lines, deletes: [], state: stateBytes(m.app, tag) });
      for (let i = 0; i < 3; i++) { commitPlan(store, hist, LS, tag, plan(hist, range(0))); tag++; }
      for (let i = 0; i < 2; i++) { commitPlan(store, victim, LS, tag, plan(victim, range(i * PER))); tag++; }
      if (durability === 'batched') store.sync(); // reclaimed segments leave quarantine only at a sync
      expectIntact(store, models);

      io.deviceFull = true;
      let next = 0;
      const attempt = (lines: number[], failsIn?: 'write' | 'commit'): FerryError | undefined => {
        const r = runPlan(store, fill, LS, tag, plan(fill, lines));
        tag++;
        if (failsIn) expect(r.phase, 'where the transaction failed').toBe(failsIn);
        if (!r.error) {
          fill.committed(r.result!.version, r.expected);
          return undefined;
        }
        const e = r.error as FerryError;
        expect(e).toBeInstanceOf(FerryError);
        expect(e.code, e.message).toBe('STORE_NO_SPACE');
        expect(e.message).toMatch(/the segment file (write|sync) failed: the device is full \(ENOSPC\)/);
        expectAborted(r.tx, LS);
        return e;
      };
      // a whole segment of lines: the write that fails is the pre-flush inside write()
      expect(attempt(range(next), 'write')).toBeDefined();
      expectIntact(store, models);
      // half a segment: the write that fails is the one in commit()
      expect(attempt(range(next, PER / 2), 'commit')).toBeDefined();
      expectIntact(store, models);

      // removing two versions of hist frees two segments inside the file: two commits fit, the third does not
      store.removeVersion('hist', hist.oldest); hist.removed(hist.oldest);
      store.removeVersion('hist', hist.oldest); hist.removed(hist.oldest);
      if (durability === 'batched') store.sync();
      expectIntact(store, models);
      for (let i = 0; i < 2; i++) { expect(attempt(range(next))).toBeUndefined(); next += PER; }
      expect(attempt(range(next))).toBeDefined();
      expectIntact(store, models);

      // removing an app frees its segments too
      store.removeApp('victim');
      models.splice(models.indexOf(victim), 1);
      if (durability === 'batched') store.sync();
      for (let i = 0; i < 2; i++) { expect(attempt(range(next))).toBeUndefined(); next += PER; }
      expect(attempt(range(next))).toBeDefined();
      expectIntact(store, models);
      close(store);

      store = open(options(false));
      expectIntact(store, models);
      commitPlan(store, fill, LS, tag, plan(fill, range(next))); tag++;
      expectIntact(store, models);
      close(store);
    });
  }
});

// ---- 2 and 3. real faults: a full device, and SQLite's own commit failing ----

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('io-faults: the full-device (ENOSPC) tests need root to mount a tmpfs; they are skipped (CI runs as root)');
const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;
if (!hasPrlimit) console.warn('io-faults: the SQLite-commit fault test needs prlimit (util-linux) to set RLIMIT_FSIZE; it is skipped');

const mounts: string[] = [];
afterAll(() => {
  for (const s of openStores) s.close();
  openStores.clear();
  for (const m of mounts) {
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
    rmSync(m, { recursive: true, force: true });
  }
});

function mountTmpfs(bytes: number): string {
  const d = mkdtempSync(join(tmpdir(), 'ferry-enospc-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', d]);
  mounts.push(d);
  return d;
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Writes a file until the device refuses with ENOSPC; returns its size. */
function fillDevice(path: string): number {
  const fd = openSync(path, 'w');
  let size = 0;
  try {
    for (const chunk of [256 * 1024, 4096, 1]) {
      const buf = new Uint8Array(chunk).fill(0x5a);
      for (;;) {
        try {
          size += writeSync(fd, buf, 0, chunk, size);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return size;
}

function fileSize(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}

describe('a real full device (tmpfs): STORE_NO_SPACE, previous version intact, room comes back', () => {
  it.skipIf(!isRoot)('the store fills the device itself: growth stops at the reserve; removing versions and an app frees room; reopen', () => {
    const SEG = 32 * 1024;
    const LS = 4096;
    const PER = SEG / LS; // lines per commit: one segment, written during the last write() (pre-flush)
    const mount = mountTmpfs(6 * 1024 * 1024);
    const dir = join(mount, 'store');
    const options: StoreOptions = { dir, segmentBytes: SEG, keepVersions: 3 };
    let store = open(options);
    const keep = new Model('keep', 3);
    const victim = new Model('victim', 3);
    const hist = new Model('hist', 3);
    const fill = new Model('fill', 3);
    const models = [keep, victim, hist, fill];
    for (const m of models) store.createApp(m.app, { lineSize: LS, maxLines: 4096 });
    const range = (from: number) => Array.from({ length: PER }, (_, i) => from + i);
    let tag = 1;
    const plan = (m: Model, lines: number[]): Plan => ({ writes: lines, deletes: [], state: stateBytes(m.app, tag) });
    commitPlan(store, keep, LS, tag, plan(keep, range(0))); tag++;
    for (let i = 0; i < 4; i++) { commitPlan(store, victim, LS, tag, plan(victim, range(i * PER))); tag++; }
    // hist rewrites the same lines: each kept version holds its own segment
    for (let i = 0; i < 3; i++) { commitPlan(store, hist, LS, tag, plan(hist, range(0))); tag++; }
    expectIntact(store, models);

    let fillNext = 0;
    /** Commits the next PER new lines of `fill`; on failure checks the error and that the transaction is finished. */
    const fillOnce = (): FerryError | undefined => {
      const r = runPlan(store, fill, LS, tag, plan(fill, range(fillNext)));
      tag++;
      if (!r.error) {
        fill.committed(r.result!.version, r.expected);
        fillNext += PER;
        return undefined;
      }
      expect(r.error).toBeInstanceOf(FerryError);
      const e = r.error as FerryError;
      expect(e.code, e.message).toBe('STORE_NO_SPACE');
      // the segment that would not fit is opened by the first write()
      expect(r.phase).toBe('write');
      expect(e.message).toMatch(new RegExp(`^the device is full: \\d+ bytes free, and another ${SEG}-byte segment would leave less than the ${DEVICE_RESERVE_BYTES} bytes kept for heap\\.db$`));
      expect(e.details.free).toBeLessThan(SEG + DEVICE_RESERVE_BYTES);
      expectAborted(r.tx, LS);
      return e;
    };
    const fillUntilFull = (): number => {
      for (let commits = 0; commits < 500; commits++) if (fillOnce()) return commits;
      throw new Error('the device never filled');
    };

    const first = fillUntilFull();
    expect(first, 'commits before the device filled').toBeGreaterThan(60);
    const free = freeBytes(mount);
    expect(free).toBeLessThan(SEG + DEVICE_RESERVE_BYTES);
    expect(free, 'the reserve is still there for heap.db').toBeGreaterThan(DEVICE_RESERVE_BYTES / 2);
    expectIntact(store, models);
    // still full: failing again changes nothing either
    expect(fillOnce()).toBeDefined();
    expectIntact(store, models);

    // removing two kept versions of hist frees their two segments inside the segment file
    store.removeVersion('hist', hist.oldest); hist.removed(hist.oldest);
    store.removeVersion('hist', hist.oldest); hist.removed(hist.oldest);
    expectIntact(store, models);
    expect(fillUntilFull(), 'commits after removing two versions').toBe(2);
    expectIntact(store, models);

    // removing an app frees its four segments
    store.removeApp('victim');
    models.splice(models.indexOf(victim), 1);
    expectIntact(store, models);
    expect(fillOnce()).toBeUndefined();
    expect(fillOnce()).toBeUndefined();
    expectIntact(store, models);
    close(store);

    store = open(options);
    expectIntact(store, models);
    // the two segments victim left, and more: closing checkpointed and removed the WAL, whose room
    // the segment file may now take, down to the reserve again
    expect(fillUntilFull(), 'commits after reopen').toBeGreaterThanOrEqual(2);
    expectIntact(store, models);
    close(store);
    store = open(options);
    expectIntact(store, models);
    close(store);
  });

  it.skipIf(!isRoot)('a device filled by someone else: ENOSPC on the segment file and on SQLite\'s WAL; room comes back', () => {
    const SEG = 16 * 1024;
    const LS = 1024;
    const PER = SEG / LS;
    const mount = mountTmpfs(4 * 1024 * 1024);
    const dir = join(mount, 'store');
    // a page cache big enough that SQLite writes the large state at COMMIT, not by spilling earlier
    const options: StoreOptions = { dir, segmentBytes: SEG, keepVersions: 3, cacheKiB: 16 * 1024 };
    let store = open(options);
    const a = new Model('a', 3);
    const models = [a];
    store.createApp('a', { lineSize: LS, maxLines: 256 });
    store.createApp('x', { lineSize: LS, maxLines: 256 });
    let tag = 1;
    for (let i = 0; i < 3; i++) { commitPlan(store, a, LS, tag, randomPlan('a', tag, 64, PER, 1)); tag++; }
    // x: half a segment, then (after a reopen, so the next segment starts past it) eight whole ones.
    // The half segment's second half is never written: a hole in the file that takes room to fill.
    const xCommit = (n: number) => {
      const tx = store.begin('x');
      for (let l = 0; l < n; l++) tx.write(l, lineBytes(LS, 'x', n, l));
      tx.commit();
    };
    xCommit(PER / 2);
    close(store);
    store = open(options);
    xCommit(8 * PER);
    store.removeApp('x'); // its segments are free inside the file, the half-written one first
    // (the last one is still the open segment: it comes free when the next transaction leaves it)
    expect(store.stats().freeSegments).toBe(8);
    expectIntact(store, models);

    const filler = join(mount, 'filler');
    const walBefore = fileSize(join(dir, 'heap.db-wal'));
    const blocksBefore = fileSize(join(dir, 'heap.blocks'));
    fillDevice(filler);
    expect(freeBytes(mount)).toBe(0);

    // 1. the segment file: a whole segment goes into the half-written free one and meets the hole
    const seg = runPlan(store, a, LS, tag, randomPlan('a', tag, 64, PER, 0));
    tag++;
    expect(seg.phase, 'the full segment is written by write() (pre-flush)').toBe('write');
    expect(seg.error).toBeInstanceOf(FerryError);
    const e1 = seg.error as FerryError;
    expect(e1.code, e1.message).toBe('STORE_NO_SPACE');
    expect(e1.message).toBe('the segment file write failed: the device is full (ENOSPC)');
    expect((e1.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expectAborted(seg.tx, LS);
    expectIntact(store, models);

    // 2. SQLite: a few lines land in the written half of that segment, but the large state must
    // grow the WAL past anything it held so far, and the device is full
    const p: Plan = { writes: [1, 2, 3], deletes: [], state: stateBytes('a', 999, walBefore + 256 * 1024) };
    const sql = runPlan(store, a, LS, tag, p);
    expect(sql.phase).toBe('commit');
    expect(sql.error).toBeInstanceOf(FerryError);
    const e2 = sql.error as FerryError;
    expect(e2.code, e2.message).toBe('STORE_NO_SPACE');
    expect(e2.message).toBe('commit failed: the metadata database is full (SQLITE_FULL); the transaction was aborted');
    expect((e2.cause as { code?: string }).code).toBe('SQLITE_FULL');
    expect(fileSize(join(dir, 'heap.blocks')), 'no commit grew the segment file').toBe(blocksBefore);
    expectAborted(sql.tx, LS);
    expectIntact(store, models);

    // room comes back: both commits now succeed
    rmSync(filler);
    commitPlan(store, a, LS, tag, p);
    commitPlan(store, a, LS, tag + 1, randomPlan('a', tag, 64, PER, 0));
    tag += 2;
    expectIntact(store, models);
    close(store);
    store = open(options);
    expectIntact(store, models);
    commitPlan(store, a, LS, tag, randomPlan('a', tag, 64, 8, 1));
    expectIntact(store, models);
    close(store);
  });
});

describe('a fault inside SQLite\'s own commit', () => {
  it.skipIf(!hasPrlimit)('the WAL may not grow (RLIMIT_FSIZE, EFBIG): STORE_IO, previous version intact, later commits succeed', () => {
    const SEG = 16 * 1024;
    const LS = 1024;
    const dir = tempDir();
    const options: StoreOptions = { dir, segmentBytes: SEG, keepVersions: 3, cacheKiB: 16 * 1024 };
    let store = open(options);
    const a = new Model('a', 3);
    const models = [a];
    store.createApp('a', { lineSize: LS, maxLines: 256 });
    store.createApp('x', { lineSize: LS, maxLines: 256 });
    let tag = 1;
    for (let i = 0; i < 3; i++) { commitPlan(store, a, LS, tag, randomPlan('a', tag, 64, 16, 1)); tag++; }
    const tx = store.begin('x');
    for (let l = 0; l < 128; l++) tx.write(l, lineBytes(LS, 'x', 0, l));
    tx.commit();
    store.removeApp('x');
    expect(store.stats().freeSegments).toBeGreaterThanOrEqual(4);
    expectIntact(store, models);

    // No file of this process may grow past the largest store file: the segment write lands in a
    // free segment inside the file, but the WAL must grow to hold the large state.
    const files = ['heap.blocks', 'heap.db', 'heap.db-wal'].map((f) => fileSize(join(dir, f)));
    const limit = Math.ceil(Math.max(...files) / 4096) * 4096;
    const p: Plan = { writes: [1, 2], deletes: [], state: stateBytes('a', 999, limit + 256 * 1024) };
    const pid = String(process.pid);
    const soft = execFileSync('prlimit', ['--pid', pid, '--fsize', '--raw', '--noheadings', '--output=SOFT']).toString().trim();
    let r: ReturnType<typeof runPlan>;
    execFileSync('prlimit', ['--pid', pid, `--fsize=${limit}:`]);
    try {
      r = runPlan(store, a, LS, tag, p);
    } finally {
      execFileSync('prlimit', ['--pid', pid, `--fsize=${soft}:`]);
    }
    expect(r.phase).toBe('commit');
    expect(r.error).toBeInstanceOf(FerryError);
    const e = r.error as FerryError;
    expect(e.code, e.message).toBe('STORE_IO');
    expect(e.message).toMatch(/commit failed: SQLITE_IOERR\w*: disk I\/O error/);
    expect(e.details.field).toBe('heap.db');
    expectAborted(r.tx, LS);
    expectIntact(store, models);

    commitPlan(store, a, LS, tag, p);
    tag++;
    commitPlan(store, a, LS, tag, randomPlan('a', tag, 64, 8, 1));
    tag++;
    expectIntact(store, models);
    close(store);
    store = open(options);
    expectIntact(store, models);
    close(store);
  });
});
