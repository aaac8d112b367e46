import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type Heap } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, caught, codeOf, sameGraph } from './graph.js';

/**
 * Refused values and refused uses: each gives a typed FerryError whose message and
 * `details.field` name the path app code used, and leaves the heap exactly as it was (a refused
 * nested value creates no object). Read-only heaps refuse every write; a closed heap refuses
 * everything, also through objects read from it before.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

function fresh(): Heap {
  const heap = openHeap({ store: temp.store(), app: 'notes', profile, maxObjectBytes: 1024 });
  const root = heap.root as Record<string, any>;
  root.notes = [{ t: 'a' }, { t: 'b' }, { t: 'c' }, { t: 'd', tags: ['x'] }];
  root.meta = new Map([['k', 1]]);
  return heap;
}

class Custom {
  x = 1;
}

describe('refused values', () => {
  const cases: [string, (root: Record<string, any>) => void, string, string][] = [
    ['a function', (r) => { r.notes[3].owner = () => 1; }, 'HEAP_BAD_VALUE', 'root.notes[3].owner'],
    ['a symbol', (r) => { r.notes[3].owner = Symbol('s'); }, 'HEAP_BAD_VALUE', 'root.notes[3].owner'],
    ['a Date', (r) => { r.notes[3].owner = new Date(); }, 'HEAP_BAD_VALUE', 'root.notes[3].owner'],
    ['a custom class instance', (r) => { r.notes[3].owner = new Custom(); }, 'HEAP_BAD_VALUE', 'root.notes[3].owner'],
    ['a function deep in a new value', (r) => { r.notes[3].owner = { name: 'n', tags: [1, { f: () => 1 }] }; }, 'HEAP_BAD_VALUE', 'root.notes[3].owner.tags[1].f'],
    ['a __proto__ key set directly', (r) => { r.notes[3]['__proto__'] = {}; }, 'HEAP_BAD_VALUE', 'root.notes[3].__proto__'],
    ['a __proto__ key inside a new value', (r) => { r.notes[3].owner = JSON.parse('{"a":1,"__proto__":{"b":2}}'); }, 'HEAP_BAD_VALUE', 'root.notes[3].owner.__proto__'],
    ['a string over maxObjectBytes', (r) => { r.notes[3].owner = 'x'.repeat(2000); }, 'HEAP_VALUE_TOO_LARGE', 'root.notes[3].owner'],
    ['bytes over maxObjectBytes', (r) => { r.notes[3].owner = { b: new Uint8Array(2000) }; }, 'HEAP_VALUE_TOO_LARGE', 'root.notes[3].owner.b'],
    // The string alone fits; the object holding it would not.
    ['an object that grows past maxObjectBytes', (r) => { r.notes[3].big = 'x'.repeat(1010); }, 'HEAP_VALUE_TOO_LARGE', 'root.notes[3].big'],
    ['a Date as a Map value', (r) => { r.meta.set('when', new Date()); }, 'HEAP_BAD_VALUE', 'root.meta'],
  ];

  for (const [what, write, code, field] of cases) {
    it(`${what} → ${code} naming ${field}, heap unchanged`, () => {
      const heap = fresh();
      const before = heap.toPlain(heap.root);
      const allocated = heap.stats().objectsAllocated;
      const e = caught(() => write(heap.root as Record<string, any>));
      expect(e.code).toBe(code);
      expect(String(e.details.field)).toContain(field);
      expect(e.message).toContain(field);
      expect(sameGraph(heap.toPlain(heap.root), before)).toBeNull();
      expect(heap.stats().objectsAllocated, 'a refused value creates no object').toBe(allocated);
      // Still usable, and a checkpoint holds only the accepted graph.
      (heap.root as Record<string, any>).after = 1;
      heap.checkpoint();
      heap.close();
    });
  }

  it('an object of another heap → HEAP_FOREIGN_OBJECT naming the path; heap.toPlain copies are accepted', () => {
    const a = fresh();
    const b = openHeap({ store: temp.store(), app: 'other', profile });
    (b.root as Record<string, any>).thing = { v: 1 };
    const before = a.toPlain(a.root);
    const e = caught(() => { (a.root as Record<string, any>).notes[3].owner = (b.root as Record<string, any>).thing; });
    expect(e.code).toBe('HEAP_FOREIGN_OBJECT');
    expect(e.details.field).toBe('root.notes[3].owner');
    expect(e.message).toContain('root.notes[3].owner');
    expect(sameGraph(a.toPlain(a.root), before)).toBeNull();
    (a.root as Record<string, any>).notes[3].owner = b.toPlain((b.root as Record<string, any>).thing);
    expect(a.toPlain((a.root as Record<string, any>).notes[3].owner)).toEqual({ v: 1 });
    a.close();
    b.close();
  });

  // CBOR integers have no negative zero: the heap stores -0 as 0 at assignment, so it reads the
  // same in memory, after eviction and after reopen.
  it('NaN, ±Infinity, non-ASCII strings and big integers read back exactly, also after reopen; -0 reads back as 0 both times', () => {
    const store = temp.store();
    const heap = openHeap({ store, app: 'nums', profile });
    const root = heap.root as Record<string, any>;
    const value = { nan: NaN, inf: Infinity, ninf: -Infinity, zero: -0, tiny: 5e-324, s: 'ключ 日本語 𝄞 é', big: 2n ** 70n };
    root.v = value;
    const expected = { ...value, zero: 0 };
    expect(sameGraph(heap.toPlain(root.v), expected)).toBeNull();
    heap.checkpoint();
    heap.close();
    const again = openHeap({ store, app: 'nums', profile });
    expect(sameGraph(again.toPlain((again.root as Record<string, any>).v), expected)).toBeNull();
    again.close();
  });
});

describe('read-only and closed heaps', () => {
  it('a heap opened read-only at an older version refuses every write with HEAP_READ_ONLY and keeps its graph', () => {
    const store = temp.store();
    const heap = openHeap({ store, app: 'ro', profile });
    const root = heap.root as Record<string, any>;
    root.list = [1, 2];
    root.m = new Map([['a', 1]]);
    root.s = new Set([1]);
    const v1 = heap.checkpoint().version;
    const snap = heap.toPlain(heap.root);
    root.list.push(3);
    heap.checkpoint();
    heap.close();
    const ro = openHeap({ store, app: 'ro', profile, version: v1, readOnly: true });
    const r = ro.root as Record<string, any>;
    expect(sameGraph(ro.toPlain(ro.root), snap)).toBeNull();
    const writes: [string, () => unknown][] = [
      ['set', () => { r.x = 1; }], ['delete', () => { delete r.list; }], ['push', () => r.list.push(9)],
      ['length', () => { r.list.length = 0; }], ['map set', () => r.m.set('b', 2)], ['map delete', () => r.m.delete('a')],
      ['set add', () => r.s.add(2)], ['checkpoint', () => ro.checkpoint()], ['collect', () => ro.collect()], ['savepoint', () => ro.savepoint()],
    ];
    for (const [what, w] of writes) expect(codeOf(w), what).toBe('HEAP_READ_ONLY');
    expect(sameGraph(ro.toPlain(ro.root), snap)).toBeNull();
    ro.close();
    // The newest version is still the head.
    const latest = openHeap({ store, app: 'ro', profile });
    expect((latest.toPlain(latest.root) as Record<string, any>).list).toEqual([1, 2, 3]);
    latest.close();
  });

  it('after close: root, objects read before, checkpoint and collect throw HEAP_CLOSED', () => {
    const heap = fresh();
    const notes = (heap.root as Record<string, any>).notes;
    const meta = (heap.root as Record<string, any>).meta;
    heap.close();
    expect(codeOf(() => heap.root)).toBe('HEAP_CLOSED');
    expect(codeOf(() => notes[0])).toBe('HEAP_CLOSED');
    expect(codeOf(() => { notes[0] = 1; })).toBe('HEAP_CLOSED');
    expect(codeOf(() => meta.get('k'))).toBe('HEAP_CLOSED');
    expect(codeOf(() => heap.checkpoint())).toBe('HEAP_CLOSED');
    expect(codeOf(() => heap.collect())).toBe('HEAP_CLOSED');
    expect(codeOf(() => heap.savepoint())).toBe('HEAP_CLOSED');
  });
});
