import { afterAll, describe, expect, it } from 'vitest';
import { openHeap } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, codeOf, sameGraph } from './graph.js';

/**
 * The major collector: sweep frees unreachable objects and the next checkpoint deletes the
 * lines left empty from the store; `full` compaction re-lays the heap in traversal order (so a
 * walk in that order faults less under a small budget); `sparse` compaction empties sparse
 * lines; a savepoint opened before a collection still rolls back; the stats count major and
 * minor collections.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

describe('major collection', () => {
  it('sweep frees unreachable objects; the next checkpoint deletes their lines from the store', () => {
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'sweep', profile });
    const root = heap.root as Record<string, any>;
    root.keep = { n: 1, list: ['a', 'b'] };
    root.big = [];
    for (let i = 0; i < 50; i++) root.big.push({ i, pad: 'g'.repeat(900) });
    heap.checkpoint();
    const n1 = store.listLines('sweep').length;
    expect(n1).toBeGreaterThan(50);
    const big = root.big;
    const first = big[0];
    delete root.big;
    // Unreachable but not yet collected: the store keeps the lines.
    heap.checkpoint();
    expect(store.listLines('sweep').length).toBe(n1);
    const r = heap.collect();
    expect(r.swept).toBeGreaterThanOrEqual(51);
    expect(codeOf(() => first.pad)).toBe('HEAP_CLOSED');
    expect(codeOf(() => big.length)).toBe('HEAP_CLOSED');
    const c = heap.checkpoint();
    expect(c.linesDeleted).toBeGreaterThanOrEqual(45);
    const n2 = store.listLines('sweep').length;
    expect(n2).toBeLessThan(n1 - 45);
    expect(heap.stats().virtualBytes).toBeLessThan(10 * 1024);
    heap.close();
    const again = openHeap({ store, app: 'sweep', profile });
    expect(again.toPlain(again.root)).toEqual({ keep: { n: 1, list: ['a', 'b'] } });
    again.close();
    expect(store.integrityCheck().ok).toBe(true);
  });

  it("collect({ compact: 'full' }) lays objects out in traversal order: a walk in that order faults less under a small budget", () => {
    const store = temp.store({ profile });
    // Nursery off: objects are placed in creation order.
    const opts = { store, app: 'full', profile, nurseryFraction: 0, budgetBytes: 8 * 1024 };
    const heap = openHeap(opts);
    const root = heap.root as Record<string, any>;
    const N = 240;
    root.pool = [];
    for (let i = 0; i < N; i++) root.pool.push({ i, pad: 'f'.repeat(220) });
    // The traversal order (root.list) is a fixed shuffle of the creation order.
    const order = Array.from({ length: N }, (_, i) => (i * 97) % N);
    root.list = order.map((i) => root.pool[i]);
    delete root.pool;
    heap.checkpoint();
    const walk = () => {
      const f0 = heap.stats().faults;
      for (let pass = 0; pass < 3; pass++) {
        const list = root.list;
        for (let k = 0; k < N; k++) if (list[k].i !== order[k]) throw new Error(`list[${k}]`);
      }
      return heap.stats().faults - f0;
    };
    const before = walk();
    const want = heap.toPlain(heap.root);
    const r = heap.collect({ compact: 'full' });
    expect(r.moved).toBeGreaterThanOrEqual(N);
    heap.checkpoint();
    const after = walk();
    expect(before).toBeGreaterThan(N);
    expect(after * 2, `faults of the walk: ${before} before, ${after} after`).toBeLessThan(before);
    expect(sameGraph(heap.toPlain(heap.root), want)).toBeNull();
    heap.close();
    const again = openHeap(opts);
    expect(sameGraph(again.toPlain(again.root), want)).toBeNull();
    again.close();
  });

  it("sparse compaction moves the survivors out of sparse lines and frees those lines", () => {
    const store = temp.store({ profile });
    const opts = { store, app: 'sparse', profile, nurseryFraction: 0 };
    const heap = openHeap(opts);
    const root = heap.root as Record<string, any>;
    root.items = [];
    for (let i = 0; i < 120; i++) root.items.push({ i, pad: 's'.repeat(220) });
    heap.checkpoint();
    // Keep one object in four: most lines are left a quarter full.
    root.items = root.items.filter((_: unknown, i: number) => i % 4 === 0);
    const want = heap.toPlain(heap.root);
    const none = heap.collect({ compact: 'none' });
    expect(none.swept).toBeGreaterThanOrEqual(90);
    expect(none.moved).toBe(0);
    heap.checkpoint();
    const linesBefore = store.listLines('sparse').length;
    const vBefore = heap.stats().virtualBytes;
    const r = heap.collect({ compact: 'sparse' });
    expect(r.moved).toBeGreaterThan(10);
    expect(r.freedLines).toBeGreaterThan(5);
    expect(heap.stats().virtualBytes).toBeLessThan(vBefore - 5 * 1024);
    const c = heap.checkpoint();
    expect(c.linesDeleted).toBeGreaterThan(5);
    expect(store.listLines('sparse').length).toBeLessThan(linesBefore - 5);
    expect(sameGraph(heap.toPlain(heap.root), want)).toBeNull();
    heap.close();
    const again = openHeap(opts);
    expect(sameGraph(again.toPlain(again.root), want)).toBeNull();
    again.close();
  });

  it('a savepoint rolls back changes made before and after a collection, under a small budget', () => {
    const store = temp.store({ profile });
    const heap = openHeap({ store, app: 'undo', profile, budgetBytes: 8 * 1024 });
    const root = heap.root as Record<string, any>;
    root.tree = { kids: [] as unknown[] };
    for (let i = 0; i < 40; i++) root.tree.kids.push({ i, pad: 'u'.repeat(300), leaf: { i } });
    root.other = { x: 1 };
    heap.checkpoint();
    const snap = heap.toPlain(heap.root);
    const sp = heap.savepoint();
    const kids = root.tree.kids;
    delete root.tree; // only the undo log keeps the subtree alive now
    root.other.x = 2;
    root.added = { fresh: 'f'.repeat(400) };
    const r = heap.collect({ compact: 'full' });
    expect(r.swept, 'the undo log kept the detached subtree alive').toBe(0);
    root.other.y = 3;
    kids[0].pad = 'changed after the collection';
    sp.rollback();
    expect(sameGraph(heap.toPlain(heap.root), snap)).toBeNull();
    heap.collect();
    expect(sameGraph(heap.toPlain(heap.root), snap)).toBeNull();
    heap.checkpoint();
    heap.close();
    const again = openHeap({ store, app: 'undo', profile });
    expect(sameGraph(again.toPlain(again.root), snap)).toBeNull();
    again.close();
  });

  it('stats count major and minor collections', () => {
    const heap = openHeap({ store: temp.store(), app: 'counts', profile });
    const root = heap.root as Record<string, any>;
    const s0 = heap.stats();
    expect([s0.majorCollections, s0.minorCollections]).toEqual([0, 0]);
    root.a = { b: 1 }; // a nursery object: the checkpoint runs a minor collection
    heap.checkpoint();
    const s1 = heap.stats();
    expect([s1.majorCollections, s1.minorCollections]).toEqual([0, 1]);
    root.a.b = 2; // no new object: no minor collection at the checkpoint
    heap.checkpoint();
    expect(heap.stats().minorCollections).toBe(1);
    heap.collect();
    heap.collect({ compact: 'full' });
    const s2 = heap.stats();
    expect(s2.majorCollections).toBe(2);
    expect(s2.minorCollections, 'each major collection includes a minor one').toBe(3);
    heap.close();
  });
});
