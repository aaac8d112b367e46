import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type Heap, type HeapOptions } from '../../agent/heap/index.js';
import { getProfile, type HwProfile } from '../../hw-profiles/index.js';
import { Temp, caught, sameGraph } from './graph.js';

/**
 * Space: a heap whose live data fits never reports full (freed runs of lines come back), and a
 * heap that really is full refuses writes without changing anything — every write path, with
 * and without the nursery — and fails its checkpoint with HEAP_CHECKPOINT_FAILED, keeping the
 * changes in memory until space is freed.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const j2me = getProfile('j2me-phone');

describe('freed space comes back', () => {
  it('replacing one 8,000-byte record 600 times on j2me-phone (128 KiB budget, 2 MiB virtual heap) never fills the heap', () => {
    const heap = openHeap({ store: temp.store({ profile: j2me }), app: 'blob', profile: j2me });
    const root = heap.root as Record<string, unknown>;
    let maxVirtual = 0;
    for (let i = 0; i < 600; i++) {
      root.blob = new Uint8Array(8000).fill(i & 255);
      heap.checkpoint();
      heap.collect();
      maxVirtual = Math.max(maxVirtual, heap.stats().virtualBytes);
    }
    // Before the fix the run of lines of every replaced record stayed unusable: HEAP_FULL at ~255.
    expect(maxVirtual).toBeLessThanOrEqual(32 * 1024);
    expect((root.blob as Uint8Array)[0]).toBe(599 & 255);
    heap.close();
  });

  it('random records of 1 B to 30 KiB set and dropped, live data ≤ 30% of the virtual heap: never full (property)', () => {
    type Op = { k: number; size: number } | { k: number; drop: true } | { checkpoint: true } | { collect: 'sparse' | 'full' | 'none' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { arbitrary: fc.record({ k: fc.nat({ max: 19 }), size: fc.integer({ min: 1, max: 30_000 }) }), weight: 10 },
      { arbitrary: fc.record({ k: fc.nat({ max: 19 }), drop: fc.constant(true as const) }), weight: 3 },
      { arbitrary: fc.constant({ checkpoint: true as const }), weight: 2 },
      { arbitrary: fc.record({ collect: fc.constantFrom('sparse' as const, 'full' as const, 'none' as const) }), weight: 1 },
    );
    let ops = 0;
    fc.assert(fc.property(fc.array(op, { minLength: 50, maxLength: 250 }), (seq) => {
      const store = temp.store({ profile: j2me });
      const heap = openHeap({ store, app: 'rand', profile: j2me });
      try {
        const root = heap.root as Record<string, unknown>;
        const live = new Map<number, number>();
        for (const o of seq) {
          if ('size' in o) {
            // Keep the live data at or below 30% of the 2 MiB virtual heap (20 keys × 30 KB max = 600 KB).
            root[`k${o.k}`] = new Uint8Array(o.size).fill(o.size & 255);
            live.set(o.k, o.size);
          } else if ('drop' in o) {
            delete root[`k${o.k}`];
            live.delete(o.k);
          } else if ('checkpoint' in o) {
            heap.checkpoint();
          } else if (o.collect !== 'none') {
            heap.collect({ compact: o.collect });
          }
          ops++;
        }
        heap.checkpoint();
        for (const [k, size] of live) expect((root[`k${k}`] as Uint8Array).length).toBe(size);
      } finally {
        heap.close();
        temp.close(store);
      }
    }), { numRuns: 25 });
    expect(ops).toBeGreaterThan(25 * 50);
  });
});

/** A j2me-phone with a 32 KiB virtual heap (31 lines of 1 KiB): easy to fill. */
const tiny: HwProfile = { ...j2me, name: 'tiny', virtualHeapBytes: 32 * 1024 };

/**
 * Fills a tiny heap: 900-byte records, each checkpointed, until a checkpoint cannot place the
 * newest one. Returns the heap (with that record still in the nursery, or placed objects
 * lacking room) and the failed checkpoint's error.
 */
function fullHeap(nursery: boolean): { heap: Heap; options: HeapOptions; lastKey: string; error: ReturnType<typeof caught> } {
  const options: HeapOptions = { store: temp.store({ profile: tiny }), app: 'full', profile: tiny, budgetBytes: 8 * 1024, nurseryFraction: nursery ? 0.25 : 0, maxObjectBytes: 2048 };
  const heap = openHeap(options);
  const root = heap.root as Record<string, any>;
  root.obj = { a: 1, b: 'two' };
  root.arr = [1, 2, 3];
  root.map = new Map<unknown, unknown>([['k', 1]]);
  root.set = new Set<unknown>([1, 'x']);
  heap.checkpoint();
  for (let i = 0; i < 100; i++) {
    const key = `f${i}`;
    let error: ReturnType<typeof caught> | undefined;
    try {
      root[key] = { pad: 'x'.repeat(900), i };
    } catch (e) {
      // Nursery off: the record is placed at once, and the write itself finds the heap full.
      error = caught(() => { throw e; });
      return { heap, options, lastKey: key, error };
    }
    try {
      heap.checkpoint();
    } catch (e) {
      error = caught(() => { throw e; });
      return { heap, options, lastKey: key, error };
    }
  }
  throw new Error('the tiny heap never filled');
}

/** A value needing more room than the heap has: three 900-byte objects (over the nursery's 2 KiB share). */
const big = () => ({ a: { p: 'a'.repeat(900) }, b: { p: 'b'.repeat(900) }, c: { p: 'c'.repeat(900) } });

describe('a full heap refuses writes and changes nothing', () => {
  const writes: [string, (r: Record<string, any>) => unknown][] = [
    ['object property set', (r) => { r.obj.v = big(); }],
    ['new root property', (r) => { r.extra = big(); }],
    ['replacing a property', (r) => { r.obj.b = big(); }],
    ['array index set', (r) => { r.arr[1] = big(); }],
    ['array index at the end', (r) => { r.arr[3] = big(); }],
    ['push', (r) => r.arr.push(4, big())],
    ['unshift', (r) => r.arr.unshift(big(), 0)],
    ['splice', (r) => r.arr.splice(1, 1, big(), 9)],
    ['fill', (r) => r.arr.fill(big(), 1)],
    ['Map.set', (r) => r.map.set('k2', big())],
    ['Map.set replacing a value', (r) => r.map.set('k', big())],
    ['Set.add', (r) => r.set.add(big())],
    ['a new graph with a cycle and shared parts', (r) => {
      const g: Record<string, unknown> = big();
      g.self = g;
      g.again = g.a;
      r.obj.g = g;
    }],
  ];

  for (const nursery of [true, false]) {
    describe(nursery ? 'nursery on' : 'nursery off', () => {
      it('the last checkpoint failed with HEAP_CHECKPOINT_FAILED (cause HEAP_FULL), or the write with HEAP_FULL; the version stays current', () => {
        const { heap, error, lastKey } = fullHeap(nursery);
        const version = heap.version;
        if (nursery) {
          expect(error.code).toBe('HEAP_CHECKPOINT_FAILED');
          expect(error.details.cause).toBe('HEAP_FULL');
          expect(error.message).toContain(`version ${version} stays current`);
          // The change stays in memory.
          expect((heap.root as Record<string, any>)[lastKey].i).toBe(Number(lastKey.slice(1)));
        } else {
          expect(error.code).toBe('HEAP_FULL');
          expect(lastKey in heap.root).toBe(false);
        }
        expect(error.message).not.toContain('a collection may free space');
        expect(heap.stats().failedCheckpoints).toBe(nursery ? 1 : 0);
        heap.close();
      });

      for (const [what, write] of writes) {
        it(`${what}: HEAP_FULL, and the heap is exactly as it was; it works again once space is freed`, () => {
          const { heap, options } = fullHeap(nursery);
          const root = heap.root as Record<string, any>;
          const before = heap.toPlain(root);
          const e = caught(() => write(root));
          expect(e.code).toBe('HEAP_FULL');
          expect(e.message).toMatch(/lines of 1024 bytes are in use/);
          expect(sameGraph(heap.toPlain(root), before)).toBeNull();
          // Deleting needs no room; after a collection the same write succeeds and is kept.
          for (let i = 0; i < 6; i++) delete root[`f${i}`];
          heap.collect();
          write(root);
          const after = heap.toPlain(root);
          heap.checkpoint();
          heap.close();
          const again = openHeap(options);
          expect(sameGraph(again.toPlain(again.root), after)).toBeNull();
          again.close();
        });
      }

      it('deletes, pop and shift need no room: they work on a full heap', () => {
        const { heap } = fullHeap(nursery);
        const root = heap.root as Record<string, any>;
        expect(root.arr.pop()).toBe(3);
        expect(root.arr.shift()).toBe(1);
        expect(root.map.delete('k')).toBe(true);
        expect(root.set.delete('x')).toBe(true);
        delete root.obj.a;
        expect(heap.toPlain(root.arr)).toEqual([2]);
        expect(Object.keys(root.obj)).toEqual(['b']);
        heap.close();
      });
    });
  }
});

describe('array methods return what the plain methods return', () => {
  it('push returns the new length even when the push pages the array out (8 KiB budget)', () => {
    const heap = openHeap({ store: temp.store({ profile: j2me }), app: 'push', profile: j2me, budgetBytes: 8 * 1024 });
    const root = heap.root as Record<string, any>;
    root.arr = [];
    const evictions = heap.stats().evictions;
    for (let i = 0; i < 60; i++) expect(root.arr.push({ i, pad: 'y'.repeat(1200) })).toBe(i + 1);
    expect(heap.stats().evictions, 'the pushes did page').toBeGreaterThan(evictions);
    expect(root.arr.length).toBe(60);
    heap.close();
  });

  it('push(x, x) stores one object twice, as a plain array does', () => {
    const heap = openHeap({ store: temp.store({ profile: j2me }), app: 'same', profile: j2me });
    const root = heap.root as Record<string, any>;
    root.arr = [];
    const x = { n: 1 };
    root.arr.push(x, x);
    root.arr.splice(0, 0, x, x);
    expect(root.arr[0]).toBe(root.arr[1]);
    expect(root.arr[2]).toBe(root.arr[3]);
    expect(root.arr[0]).not.toBe(root.arr[2]); // two calls, two copies
    heap.close();
  });

  it('a refused element halfway through splice or unshift changes nothing', () => {
    const heap = openHeap({ store: temp.store({ profile: j2me }), app: 'half', profile: j2me });
    const root = heap.root as Record<string, any>;
    root.arr = [1, 2, 3];
    const e = caught(() => root.arr.splice(1, 1, 'ok', () => 1, 'never'));
    expect(e.code).toBe('HEAP_BAD_VALUE');
    expect(e.details.field).toBe('root.arr[2]');
    expect(caught(() => root.arr.unshift(0, new Date())).details.field).toBe('root.arr[1]');
    expect(heap.toPlain(root.arr)).toEqual([1, 2, 3]);
    heap.close();
  });
});
