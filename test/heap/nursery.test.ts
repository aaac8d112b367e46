import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type HeapOptions } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, codeOf, sameGraph } from './graph.js';

/**
 * The nursery: new objects live unplaced until a minor collection (at a checkpoint, or when the
 * nursery's share of the budget fills) promotes the ones still reachable; the rest die young
 * and never reach a line or the store. The same workload therefore writes clearly fewer bytes
 * to the store's segment file with the nursery on than with `nurseryFraction: 0`. Promoted
 * objects read back after a reopen; objects reachable only from a pinned handle survive
 * collections and reopen (`heap.pinned()`), and go once unpinned.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

/**
 * Scratch objects that die before the next checkpoint (replaced, popped, deleted) and a few
 * survivors per round; a checkpoint every 10 rounds. Returns the store's written bytes, the
 * heap's stats and the graph as committed.
 */
function workload(nurseryFraction?: number) {
  const store = temp.store({ profile });
  const options: HeapOptions = { store, app: 'young', profile, ...(nurseryFraction === undefined ? {} : { nurseryFraction }) };
  const heap = openHeap(options);
  const root = heap.root as Record<string, any>;
  root.kept = [];
  root.queue = [];
  let promotedAtCheckpoints = 0;
  for (let round = 0; round < 100; round++) {
    for (let j = 0; j < 5; j++) {
      // replaced at once: dead after the next assignment
      root.scratch = { round, j, body: 's'.repeat(300), parts: [j, { deep: 'd'.repeat(100) }] };
      // a queue entry consumed before the checkpoint
      root.queue.push({ job: `${round}.${j}`, payload: new Uint8Array(200).fill(j) });
    }
    while (root.queue.length > 0) root.queue.pop();
    root.temp = new Map([['a', { t: 't'.repeat(200) }]]);
    delete root.temp;
    if (round % 4 === 0) root.kept.push({ round, note: `kept ${round}`, tags: new Set([round % 3]) });
    if (round % 10 === 9) promotedAtCheckpoints += heap.checkpoint().promoted;
  }
  delete root.scratch;
  heap.checkpoint();
  const stats = heap.stats();
  const written = store.stats().segmentBytesWritten;
  const committed = heap.toPlain(heap.root);
  heap.close();
  const again = openHeap(options);
  const reopened = again.toPlain(again.root);
  again.close();
  expect(store.integrityCheck().ok).toBe(true);
  return { written, stats, committed, reopened, promotedAtCheckpoints };
}

describe('nursery', () => {
  it('objects that die before the checkpoint are never written: diedYoung grows, and the store writes clearly less than with nurseryFraction 0', () => {
    const on = workload();
    const off = workload(0);
    expect(sameGraph(on.reopened, on.committed)).toBeNull();
    expect(sameGraph(off.reopened, off.committed)).toBeNull();
    expect(sameGraph(on.committed, off.committed), 'same workload, same graph').toBeNull();
    expect((on.committed as { kept: unknown[] }).kept).toHaveLength(25);

    expect(on.stats.diedYoung).toBeGreaterThan(1000);
    expect(on.stats.promoted).toBeGreaterThan(0);
    expect(on.stats.nurserySurvival).toBeLessThan(0.2);
    expect(on.promotedAtCheckpoints, 'survivors promoted at checkpoints').toBeGreaterThan(0);
    expect(off.stats.diedYoung).toBe(0);
    expect(off.stats.promoted).toBe(0);
    // Nursery on: only survivors reach the store.
    expect(on.written * 3, `nursery on wrote ${on.written} bytes, off ${off.written}`).toBeLessThan(off.written);
  });

  it('the nursery budget filling up runs a minor collection that promotes the survivors, before any checkpoint', () => {
    const store = temp.store();
    const heap = openHeap({ store, app: 'fill', profile });
    const nurseryBytes = 0.25 * 128 * 1024;
    const root = heap.root as Record<string, any>;
    root.log = [];
    const model: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      const e = { i, text: `${i}:${'e'.repeat(400)}` };
      root.log.push(e);
      model.push({ i, text: e.text });
      expect(heap.stats().residentBytes).toBeLessThanOrEqual(heap.stats().budgetBytes);
    }
    const s = heap.stats();
    expect(s.checkpoints).toBe(0);
    expect(s.minorCollections, `${200 * 400} bytes through a ${nurseryBytes}-byte nursery`).toBeGreaterThanOrEqual(2);
    expect(s.promoted).toBeGreaterThan(100);
    expect(s.diedYoung).toBe(0);
    expect(s.virtualBytes, 'the promoted objects are in lines').toBeGreaterThan(50 * 1024);
    const r = heap.checkpoint();
    expect(r.promoted, 'the rest are promoted by the checkpoint').toBeGreaterThan(0);
    expect(heap.stats().promoted).toBe(s.promoted + r.promoted);
    heap.close();
    const again = openHeap({ store, app: 'fill', profile });
    expect(sameGraph(again.toPlain(again.root), { log: model })).toBeNull();
    again.close();
  });

  it('an object reachable only from a pinned handle survives minor and major collections and reopen; unpinned, it is collected', () => {
    const store = temp.store();
    const heap = openHeap({ store, app: 'pins', profile });
    const root = heap.root as Record<string, any>;
    root.slot = { name: 'pinned', inner: { list: [1, 2, { deep: true }] }, bytes: new Uint8Array([9, 8, 7]) };
    const obj = root.slot;
    expect(typeof heap.pin(obj)).toBe('number');
    delete root.slot; // still in the nursery, reachable only through the pin
    const plain = heap.toPlain(obj);
    // Fill the nursery so a minor collection runs with the pin as its only root.
    const m0 = heap.stats().minorCollections;
    for (let i = 0; i < 100; i++) root.noise = { i, pad: 'n'.repeat(500) };
    expect(heap.stats().minorCollections).toBeGreaterThan(m0);
    heap.collect({ compact: 'full' });
    expect(heap.toPlain(obj)).toEqual(plain);
    expect(heap.pinned()).toHaveLength(1);
    expect(heap.toPlain(heap.pinned()[0])).toEqual(plain);
    heap.checkpoint();
    heap.close();

    const again = openHeap({ store, app: 'pins', profile });
    expect(Object.keys(again.root)).toEqual(['noise']);
    const pins = again.pinned();
    expect(pins).toHaveLength(1);
    expect(sameGraph(again.toPlain(pins[0]), plain)).toBeNull();
    again.collect();
    again.checkpoint();
    expect(again.toPlain(again.pinned()[0])).toEqual(plain);

    // Unpinned: the next collection frees it and its handle goes stale.
    const p = again.pinned()[0] as Record<string, any>;
    const inner = p.inner;
    again.unpin(p);
    expect(again.pinned()).toHaveLength(0);
    const r = again.collect();
    expect(r.swept).toBeGreaterThanOrEqual(4); // the object, inner, list, {deep}, bytes
    expect(codeOf(() => p.name)).toBe('HEAP_CLOSED');
    expect(codeOf(() => inner.list)).toBe('HEAP_CLOSED');
    again.checkpoint();
    again.close();
    const third = openHeap({ store, app: 'pins', profile });
    expect(third.pinned()).toHaveLength(0);
    third.close();
  });

  it('pins count: pinned twice needs two unpins; pin() of a plain object is HEAP_FOREIGN_OBJECT', () => {
    const heap = openHeap({ store: temp.store(), app: 'pc', profile });
    const root = heap.root as Record<string, any>;
    root.x = { v: 1 };
    const x = root.x;
    heap.pin(x);
    heap.pin(x);
    delete root.x;
    heap.unpin(x);
    heap.collect();
    expect(x.v).toBe(1);
    heap.unpin(x);
    heap.collect();
    expect(codeOf(() => x.v)).toBe('HEAP_CLOSED');
    expect(codeOf(() => heap.pin({ v: 1 }))).toBe('HEAP_FOREIGN_OBJECT');
    heap.close();
  });
});
