import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type Heap, type HeapOptions } from '../../agent/heap/index.js';
import type { FerryError } from '../../core/errors.js';
import { getProfile, type HwProfile } from '../../hw-profiles/index.js';
import { Temp, caught, faultyIo, sameGraph } from './graph.js';

/**
 * When checkpoints and collections run: `checkpointDue()` and `collectionDue()` answer from an
 * injected clock and the heap's counters (dirty lines, first change, free lines, fault rate);
 * `runDue()` runs what is due and sends a failed checkpoint to `onCheckpointError` instead of
 * throwing; `autoCheckpoint` checkpoints by itself between tasks with the `stateProvider`'s
 * blob; `preflush()` moves line writes ahead of the checkpoint; a checkpoint cannot run inside
 * a collection; and a heap whose live data sits below the low-space reserve does not run a
 * collection on every write.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');
/** j2me lines and budget, but a 64 KiB virtual heap (63 lines): low space is easy to reach. */
const smallHeap: HwProfile = { ...profile, name: 'j2me-small-heap', virtualHeapBytes: 64 * 1024 };

function manualClock(start = 1_000_000): { clock: { now(): number }; at: { t: number } } {
  const at = { t: start };
  return { clock: { now: () => at.t }, at };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const line = (c: string) => c.repeat(900);

describe('checkpointDue', () => {
  it("'dirty-lines' once checkpointDirtyLines lines changed; null right after a checkpoint", () => {
    const { clock } = manualClock();
    const heap = openHeap({ store: temp.store(), app: 'dl', profile, clock, nurseryFraction: 0, checkpointIntervalMs: 0, checkpointDirtyLines: 6 });
    const root = heap.root as Record<string, any>;
    root.items = [];
    heap.checkpoint();
    expect(heap.checkpointDue()).toBeNull();
    let pushes = 0;
    while (heap.checkpointDue() === null && pushes < 20) {
      root.items.push({ s: line(String.fromCharCode(97 + pushes)) });
      pushes++;
    }
    expect(heap.checkpointDue()).toBe('dirty-lines');
    // Each push dirties at least one new line: due after a few, not after the first.
    expect(pushes).toBeGreaterThan(1);
    expect(pushes).toBeLessThanOrEqual(6);
    const r = heap.checkpoint({ reason: 'dirty-lines' });
    expect(r.reason).toBe('dirty-lines');
    expect(r.linesWritten).toBeGreaterThanOrEqual(pushes);
    expect(heap.checkpointDue()).toBeNull();
    heap.close();
  });

  it("'interval' checkpointIntervalMs after the first change (not after the last checkpoint); 'after-gc' after collect()", () => {
    const { clock, at } = manualClock();
    const heap = openHeap({ store: temp.store(), app: 'iv', profile, clock, checkpointIntervalMs: 5000 });
    const root = heap.root as Record<string, any>;
    root.a = 1;
    heap.checkpoint();
    expect(heap.checkpointDue()).toBeNull();
    at.t += 60_000; // time alone, with nothing changed, makes nothing due
    expect(heap.checkpointDue()).toBeNull();
    root.a = 2; // first change at t
    at.t += 3000;
    root.b = { x: 1 }; // a later change does not move the deadline
    at.t += 1999;
    expect(heap.checkpointDue()).toBeNull();
    at.t += 1;
    expect(heap.checkpointDue()).toBe('interval');
    heap.checkpoint();
    expect(heap.checkpointDue()).toBeNull();

    heap.collect();
    expect(heap.checkpointDue()).toBe('after-gc');
    heap.checkpoint();
    expect(heap.checkpointDue()).toBeNull();
    heap.close();
  });
});

describe('collectionDue', () => {
  it("'interval' gcIntervalMs after the last collection", () => {
    const { clock, at } = manualClock();
    const heap = openHeap({ store: temp.store(), app: 'gi', profile, clock, gcIntervalMs: 1000 });
    (heap.root as Record<string, any>).a = { b: 1 };
    expect(heap.collectionDue()).toBeNull();
    at.t += 999;
    expect(heap.collectionDue()).toBeNull();
    at.t += 1;
    expect(heap.collectionDue()).toBe('interval');
    heap.collect();
    expect(heap.collectionDue()).toBeNull();
    at.t += 1000;
    expect(heap.collectionDue()).toBe('interval');
    heap.close();
  });

  it("'low-space' when free lines fall below gcLowSpaceFraction of a small virtual heap; runDue collects, then checkpoints 'after-gc'", () => {
    const { clock } = manualClock();
    const store = temp.store();
    // A big nursery: the objects take no lines until the checkpoint promotes them.
    const heap = openHeap({ store, app: 'ls', profile: smallHeap, clock, nurseryFraction: 0.5, gcLowSpaceFraction: 0.5, checkpointIntervalMs: 0 });
    const root = heap.root as Record<string, any>;
    root.items = [];
    for (let i = 0; i < 40; i++) root.items.push({ i, s: 'l'.repeat(800) });
    expect(heap.collectionDue()).toBeNull();
    expect(heap.stats().minorCollections).toBe(0);
    heap.checkpoint();
    expect(heap.stats().virtualBytes).toBeGreaterThan(32 * 1024);
    expect(heap.collectionDue()).toBe('low-space');
    const before = heap.stats();
    heap.runDue();
    const after = heap.stats();
    expect(after.majorCollections).toBe(before.majorCollections + 1);
    expect(after.checkpoints, 'runDue checkpointed after the collection').toBe(before.checkpoints + 1);
    expect(heap.checkpointDue()).toBeNull();
    heap.close();

    const off = openHeap({ store, app: 'ls', profile: smallHeap, clock, gcLowSpaceFraction: 0 });
    expect(off.collectionDue()).toBeNull();
    off.close();
  });

  it('live data below the low-space reserve: writes do not each run a collection', () => {
    const heap = openHeap({ store: temp.store(), app: 'thrash', profile: smallHeap, nurseryFraction: 0, gcLowSpaceFraction: 0.5 });
    const root = heap.root as Record<string, any>;
    root.items = [];
    let n = 0;
    while (heap.stats().majorCollections === 0 && n < 60) root.items.push({ n: n++, s: 'm'.repeat(400) });
    expect(heap.stats().majorCollections, 'the reserve was reached').toBe(1);
    const want = heap.toPlain(heap.root);
    // In-place writes allocate nothing: the space left is what the last collection left.
    for (let i = 0; i < 200; i++) root.items[i % n].n = i % n;
    expect(heap.stats().majorCollections).toBeLessThanOrEqual(2);
    expect(sameGraph(heap.toPlain(heap.root), want)).toBeNull();
    // Allocating on eats into the reserve: collections come back, but not one per write.
    const m0 = heap.stats().majorCollections;
    let pushes = 0;
    while (heap.stats().majorCollections === m0 && pushes < 30) {
      root.items.push({ n: n++, s: 'q'.repeat(400) });
      pushes++;
    }
    expect(heap.stats().majorCollections, 'a collection came back as the reserve shrank').toBe(m0 + 1);
    expect(pushes).toBeGreaterThan(3);
    heap.checkpoint();
    heap.close();
  });

  it("'paging' on a tiny budget under a scattered walk; not with a roomy budget or with gcPagingFaultRate 0", () => {
    const r = (seed: number) => {
      let a = seed;
      return () => ((a = (a * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    };
    const walk = (options: Partial<HeapOptions>): { due: string | null; faults: number } => {
      const heap = openHeap({ store: temp.store(), app: 'pg', profile, nurseryFraction: 0, gcLowSpaceFraction: 0, ...options });
      const root = heap.root as Record<string, any>;
      root.items = [];
      for (let i = 0; i < 240; i++) root.items.push({ i, s: 'w'.repeat(300) });
      heap.checkpoint();
      heap.collectionDue(); // starts a fresh window
      const f0 = heap.stats().faults;
      const rand = r(5);
      let due: string | null = null;
      for (let n = 0; n < 30_000 && due === null; n++) {
        const k = Math.floor(rand() * 240);
        if (root.items[k].i !== k) throw new Error(`item ${k}`);
        if (n % 250 === 249) due = heap.collectionDue();
      }
      const faults = heap.stats().faults - f0;
      heap.close();
      return { due, faults };
    };
    const tiny = walk({ budgetBytes: 8 * 1024 });
    expect(tiny.faults).toBeGreaterThan(1000);
    expect(tiny.due).toBe('paging');
    expect(walk({ budgetBytes: 8 * 1024, gcPagingFaultRate: 0 }).due).toBeNull();
    const roomy = walk({});
    expect(roomy.due).toBeNull();
    expect(roomy.faults).toBeLessThan(100);
  });
});

describe('runDue, autoCheckpoint, preflush', () => {
  it('runDue never throws: a failing checkpoint goes to onCheckpointError; the next runDue commits', () => {
    const { io, fail } = faultyIo();
    const store = temp.store({ io });
    const errors: FerryError[] = [];
    const { clock, at } = manualClock();
    const heap = openHeap({ store, app: 'rd', profile, clock, gcIntervalMs: 1000, onCheckpointError: (e) => errors.push(e) });
    const root = heap.root as Record<string, any>;
    root.a = { list: [1, 2, 3] };
    const v1 = heap.checkpoint().version;
    root.a.list.push(4);
    at.t += 1000;
    expect(heap.collectionDue()).toBe('interval');
    fail.sync = true;
    expect(() => heap.runDue()).not.toThrow();
    expect(heap.stats().majorCollections, 'the collection ran').toBe(1);
    expect(errors.map((e) => e.code)).toEqual(['HEAP_CHECKPOINT_FAILED']);
    expect(heap.stats().failedCheckpoints).toBe(1);
    expect(store.headVersion('rd')).toBe(v1);
    fail.sync = false;
    heap.runDue();
    expect(errors).toHaveLength(1);
    expect(store.headVersion('rd')).toBeGreaterThan(v1);
    expect(heap.checkpointDue()).toBeNull();
    heap.close();
    const again = openHeap({ store, app: 'rd', profile });
    expect(again.toPlain(again.root)).toEqual({ a: { list: [1, 2, 3, 4] } });
    again.close();
  });

  it('autoCheckpoint with a stateProvider: checkpoints on its own between tasks, once per burst, with the provider blob', async () => {
    const store = temp.store();
    let calls = 0;
    const stateProvider = () => new Uint8Array([7, ++calls]);
    const heap = openHeap({ store, app: 'auto', profile, autoCheckpoint: true, stateProvider, checkpointDirtyLines: 1 });
    const root = heap.root as Record<string, any>;
    root.a = 1;
    root.b = { x: [1, 2] };
    root.c = new Map([['k', 'v']]);
    // Synchronously nothing happens: the checkpoint waits for the current task to end.
    expect(heap.stats().checkpoints).toBe(0);
    expect(store.headVersion('auto')).toBe(0);
    await tick();
    expect(heap.stats().checkpoints).toBe(1);
    expect(calls).toBe(1);
    expect(heap.version).toBe(store.headVersion('auto'));
    expect([...heap.state]).toEqual([7, 1]);
    root.a = 2;
    await tick();
    expect(heap.stats().checkpoints).toBe(2);
    expect([...heap.state]).toEqual([7, 2]);
    await tick();
    expect(heap.stats().checkpoints, 'nothing changed: no checkpoint').toBe(2);
    heap.close();
    const again = openHeap({ store, app: 'auto', profile });
    expect([...again.state]).toEqual([7, 2]);
    expect(sameGraph(again.toPlain(again.root), { a: 2, b: { x: [1, 2] }, c: new Map([['k', 'v']]) })).toBeNull();
    again.close();
  });

  it('preflush writes dirty lines ahead: the next checkpoint writes fewer; lines changed after the pre-flush are still committed', () => {
    const store = temp.store();
    const heap = openHeap({ store, app: 'pf', profile, nurseryFraction: 0 });
    const root = heap.root as Record<string, any>;
    root.items = [];
    for (let i = 0; i < 40; i++) root.items.push({ i, s: line('0') });
    heap.checkpoint();
    const round = (c: string) => {
      for (let i = 0; i < 40; i++) root.items[i].s = line(c);
    };
    round('a');
    const w1 = heap.checkpoint().linesWritten;
    expect(w1).toBeGreaterThanOrEqual(40);
    round('b');
    const flushes = heap.stats().flushes;
    const pre = heap.preflush(1000);
    expect(pre).toBeGreaterThanOrEqual(40);
    expect(heap.stats().flushes - flushes).toBe(pre);
    root.items[3].s = line('z'); // dirties one line again after its pre-flush
    const w2 = heap.checkpoint().linesWritten;
    expect(w2).toBeGreaterThanOrEqual(1);
    expect(w2).toBeLessThan(w1 / 4);
    heap.close();
    const again = openHeap({ store, app: 'pf', profile });
    const items = (again.root as Record<string, any>).items;
    expect(items[3].s).toBe(line('z'));
    for (const i of [0, 1, 2, 4, 39]) expect(items[i].s).toBe(line('b'));
    again.close();
  });

  it('a checkpoint inside a collection is refused with HEAP_BUSY (reached through the injected clock, which the collector reads)', () => {
    let hook: (() => void) | null = null;
    const heap: Heap = openHeap({
      store: temp.store(), app: 'busy', profile,
      clock: {
        now: () => {
          const h = hook;
          hook = null;
          h?.();
          return 1_000_000;
        },
      },
    });
    const root = heap.root as Record<string, any>;
    root.a = { b: [1, 2, { c: 3 }] };
    let inside: FerryError | undefined;
    let dueInside: string | null = 'unset';
    hook = () => {
      inside = caught(() => heap.checkpoint());
      dueInside = heap.collectionDue();
    };
    heap.collect();
    expect(inside, 'the clock was read during the collection').toBeDefined();
    expect(inside!.code).toBe('HEAP_BUSY');
    expect(dueInside).toBeNull();
    // After the collection the heap checkpoints normally.
    expect(heap.checkpoint().version).toBeGreaterThan(0);
    expect(heap.toPlain(heap.root)).toEqual({ a: { b: [1, 2, { c: 3 }] } });
    heap.close();
  });
});
