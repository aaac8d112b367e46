import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { openHeap, type Heap } from '../../agent/heap/index.js';
import { Temp } from './graph.js';

/**
 * Review findings: each test pins a bug the other suites missed (allocator accounting,
 * re-entrant paging inside object-layer operations, nursery objects and the engine's GC).
 */

const temp = new Temp();
afterAll(() => temp.cleanup());

const profile = getProfile('j2me-phone');
const ls = profile.cacheLineBytes;

/**
 * Allocator accounting against the object table: every line's live count must equal the
 * bytes the table reserves on it (table lines count as full), and a line below the
 * high-water mark is either in use (live > 0, or the allocation cursor) or free. Run it with
 * no dirty objects (after a checkpoint): reading table lines may page, and must not write back.
 */
function audit(heap: Heap): string | null {
  const { space, pager } = heap.internals;
  const want = new Map<number, number>();
  const add = (line: number, n: number) => want.set(line, (want.get(line) ?? 0) + n);
  for (const p of space.table.pages) add(p, ls);
  space.table.forEach((_oid, p) => {
    let a = p.addr;
    let left = p.cap;
    while (left > 0) {
      const n = Math.min(left, ls - (a % ls));
      add(Math.floor(a / ls), n);
      a += n;
      left -= n;
    }
  });
  const alloc = space.alloc as unknown as { hwm: number; freeLines: number[]; cursorLine: number };
  const free = new Set(alloc.freeLines);
  for (let line = 1; line < alloc.hwm; line++) {
    const live = pager.table.live[line] ?? 0;
    if (live !== (want.get(line) ?? 0)) return `line ${line}: live ${live}, table reserves ${want.get(line) ?? 0}`;
    if (live === 0 && !free.has(line) && line !== alloc.cursorLine) return `line ${line}: no live bytes but neither free nor the cursor (leaked)`;
    if (live > 0 && free.has(line)) return `line ${line}: free but holds ${live} live bytes`;
  }
  return null;
}

/** The engine's garbage collector, for tests of what the heap holds only weakly. */
function engineGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('review: allocator accounting', () => {
  it('a record rewritten in place with a different length keeps the live count equal to its table entry', () => {
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'shrink', profile, nurseryFraction: 0 });
    heap.root.a = { s: 'x'.repeat(40) };
    heap.checkpoint();
    (heap.root.a as { s: string }).s = 'x'.repeat(35); // 5 bytes shorter: written in place
    heap.checkpoint();
    expect(audit(heap)).toBeNull();
    heap.close();
  });

  it('the allocation line is freed once its records are gone and allocation moves on', () => {
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'cursor', profile, nurseryFraction: 0 });
    heap.root.keep = { pad: 'k'.repeat(ls - 120) }; // fills most of a line, with the root
    heap.root.slot = 'abcd';
    heap.checkpoint();
    heap.root.slot = { pad: 'g'.repeat(ls - 120) }; // alone on the next line, the allocation cursor (the root shrinks in place)
    heap.checkpoint();
    delete heap.root.slot;
    heap.collect({ compact: 'none' });
    heap.checkpoint();
    expect(audit(heap)).toBeNull();
    heap.close();
  });
});

describe('review: nursery objects and the engine GC', () => {
  it('a nursery object named in a paged-out record survives the engine GC until the next minor collection', async () => {
    const gc = engineGc();
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'young', profile, budgetBytes: 8 * ls });
    heap.root.p = { tag: 'parent' };
    heap.root.others = Array.from({ length: 24 }, (_, i) => ({ i, pad: 'o'.repeat(ls - 100) }));
    heap.checkpoint();
    // A young object: held only by p's storage (p is placed, so it is in the remembered set).
    (heap.root.p as Record<string, unknown>).child = { v: 'young' };
    // Changing the rest of the heap pages p's line out: p is written back (its record names the
    // young object's new id) and unloaded, so nothing in memory points at the young object.
    const { space } = heap.internals;
    const pCell = space.cellOf(heap.root.p)!;
    for (let round = 0; round < 4 && pCell.loaded; round++) {
      for (const o of heap.root.others as { i: number }[]) o.i += 1; // dirty lines: p's is the oldest
    }
    expect(pCell.loaded).toBe(false);
    await new Promise((r) => setTimeout(r, 10));
    gc();
    await new Promise((r) => setTimeout(r, 10));
    heap.checkpoint();
    expect((heap.root.p as { child: { v: string } }).child.v).toBe('young');
    heap.close();
    const again = openHeap({ store, app: 'young', profile, budgetBytes: 8 * ls });
    expect((again.root.p as { child: { v: string } }).child.v).toBe('young');
    again.close();
  });
});

describe('review: detached nursery objects', () => {
  it('a detached nursery object assigned back after a minor collection is placed before the checkpoint names it', () => {
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'detached', profile });
    heap.root.a = { x: 1 };
    const held = heap.root.a as { x: number };
    delete heap.root.a;
    heap.checkpoint(); // the minor collection finds it unreachable: it died young, detached
    heap.root.b = held; // assigning it back makes it reachable again
    heap.checkpoint();
    heap.close();
    const again = openHeap({ store, app: 'detached', profile });
    expect(again.toPlain(again.root)).toEqual({ b: { x: 1 } });
    again.close();
  });
});

describe('review: bytes objects and paging', () => {
  it('a bytes object whose line left memory is no longer held by the line it left', () => {
    const store = temp.store({ profile });
    const opts = { store, app: 'bytes', profile, budgetBytes: 8 * ls };
    const heap = openHeap(opts);
    heap.root.list = Array.from({ length: 40 }, (_, i) => new Uint8Array(ls - 64).fill(i));
    heap.checkpoint();
    heap.close();
    const again = openHeap(opts);
    let sum = 0;
    for (const b of again.root.list as Uint8Array[]) sum += b[0]!;
    expect(sum).toBe((39 * 40) / 2);
    // The object layer holds loaded cells by line only while that line is resident: the
    // budget bounds what stays in memory, not what was ever read.
    const { space, pager } = again.internals;
    const lineCells = (space as unknown as { lineCells: Map<number, Set<{ kind: string }>> }).lineCells;
    const held = [...lineCells].filter(([line, cells]) => pager.table.slot[line]! < 0 && [...cells].some((c) => c.kind === 'bytes'));
    expect(held.map(([line]) => line)).toEqual([]);
    again.close();
  });
});

describe('collections started inside app code', () => {
  it('a low-space collection during a write keeps objects app code holds only in locals', () => {
    const small = { ...profile, name: 'j2me-small-heap', virtualHeapBytes: 64 * 1024 };
    const heap = openHeap({ store: temp.store({ profile: small }), app: 'swap', profile: small, nurseryFraction: 0.5, gcLowSpaceFraction: 0.5 });
    try {
      const root = heap.root as Record<string, any>;
      root.a = { name: 'a', pad: 'x'.repeat(300) };
      root.b = { name: 'b', pad: 'y'.repeat(300) };
      root.items = [];
      for (let i = 0; i < 40; i++) root.items.push({ i, pad: 'z'.repeat(800) });
      heap.checkpoint();
      const before = heap.stats().majorCollections;
      // Between these statements `t` is the only reference to the old root.a.
      for (let k = 0; k < 6; k++) {
        const t = root.a;
        root.a = root.b;
        root.b = t;
        root.items.push({ k, pad: 'w'.repeat(800) });
      }
      expect(heap.stats().majorCollections).toBeGreaterThan(before);
      expect([root.a.name, root.b.name]).toEqual(['a', 'b']);
      heap.checkpoint();
    } finally {
      heap.close();
    }
  });
});

describe('incremental major collection', () => {
  it('spreads a cycle over steps of one working set each, keeps what app code moves between steps, frees the garbage', () => {
    const heap = openHeap({ store: temp.store({ profile }), app: 'steps', profile });
    try {
      const root = heap.root as Record<string, any>;
      root.keep = [];
      root.drop = [];
      for (let i = 0; i < 1000; i++) {
        root.keep.push({ i, pad: 'k'.repeat(200) });
        root.drop.push({ i, pad: 'd'.repeat(200) });
      }
      // A deep chain laid out after everything else, so the mark reaches its end last.
      let node: any = { leaf: { id: 'X' } };
      for (let d = 0; d < 20; d++) node = { d, pad: 'c'.repeat(900), next: node };
      root.chain = node;
      heap.checkpoint();
      const drop = root.drop;
      root.drop = null; // 1,000 objects of garbage
      heap.checkpoint();
      // Read everything in keep, so the chain's lines are paged out when the cycle starts.
      let total = 0;
      for (const o of root.keep) total += o.pad.length;
      expect(total).toBe(200_000);
      const slots = heap.options.slots;
      let steps = 0;
      let result;
      const rescued: any[] = [];
      for (;;) {
        const f0 = heap.stats().faults;
        const r = heap.collectStep();
        steps++;
        // A step faults in about one working set (half the budget's lines), plus the lines of the
        // last object it was marking.
        expect(heap.stats().faults - f0).toBeLessThanOrEqual(Math.floor(slots / 2) + 4);
        if (r.done) {
          result = r.result!;
          break;
        }
        // Between steps app code moves objects around: an object only reachable from a part the
        // mark may already have passed gets a new home, new objects appear.
        if (steps === 1) {
          // Move the chain's leaf behind root (already marked) before the mark gets to it: only
          // the write barrier's snapshot keeps it alive.
          let p = root.chain;
          while (p.next) p = p.next;
          root.rescued = p.leaf;
          p.leaf = null;
        }
        const k = root.keep;
        const moved = k.pop();
        root.keep.unshift(moved);
        root[`new${steps}`] = { steps, list: [moved] };
        rescued.push(moved.i);
      }
      expect(steps).toBeGreaterThan(2);
      expect(result.swept).toBeGreaterThanOrEqual(1000);
      expect(() => drop[0].i).toThrow(/no longer in the heap/);
      heap.checkpoint();
      heap.close();
      const reopened = openHeap({ store: heap.options.store, app: 'steps', profile });
      const r2 = reopened.root as Record<string, any>;
      expect(r2.rescued.id).toBe('X');
      expect(r2.keep.length).toBe(1000);
      expect(new Set(r2.keep.map((o: any) => o.i)).size).toBe(1000);
      for (let s = 1; s < steps; s++) expect(r2[`new${s}`].list[0].i).toBe(rescued[s - 1]);
      reopened.close();
    } finally {
      heap.close();
    }
  });
});
