import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type HeapOptions } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, caught } from './graph.js';

/**
 * What the heap stores of a value, the same before and after a reopen: lone surrogates,
 * undefined, BigInt; how a heap object looks in util.inspect; and the path an error names.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

function heapAt(app: string): { options: HeapOptions; root: () => Record<string, any>; reopen: () => Record<string, any>; close: () => void } {
  const options: HeapOptions = { store: temp.store({ profile }), app, profile };
  let heap = openHeap(options);
  return {
    options,
    root: () => heap.root as Record<string, any>,
    reopen: () => {
      heap.checkpoint();
      heap.close();
      heap = openHeap(options);
      return heap.root as Record<string, any>;
    },
    close: () => heap.close(),
  };
}

describe('strings with lone surrogates', () => {
  it('a value is stored well-formed at once: one U+FFFD per lone surrogate, before and after reopen', () => {
    const h = heapAt('sur');
    const r = h.root();
    r.s = '\ud800x';
    r.list = ['a\udc00', 'ok'];
    r.m = new Map([['k', 'z\ud83d']]);
    const expected = { s: '\ufffdx', list: ['a\ufffd', 'ok'], m: 'z\ufffd' };
    const read = (x: Record<string, any>) => ({ s: x.s, list: [...x.list], m: x.m.get('k') });
    expect(read(r)).toEqual(expected);
    expect(r.s.length).toBe(2);
    expect(read(h.reopen())).toEqual(expected);
    // A well-formed pair is kept as it is.
    h.root().emoji = '\ud83d\ude00';
    expect(h.reopen().emoji).toBe('😀');
    h.close();
  });

  it('a key with a lone surrogate is refused (changed, it would not find its entry): object key, Map key, Set member', () => {
    const h = heapAt('surkey');
    const r = h.root();
    r.o = {};
    r.m = new Map();
    r.set = new Set();
    const cases: [() => unknown, string][] = [
      [() => { r.o['\ud800'] = 1; }, 'root.o'],
      [() => { r.o.inner = { ['a\udfff']: 1 }; }, 'root.o.inner'],
      [() => r.m.set('\ud800', 1), 'root.m'],
      [() => r.set.add('\udc00'), 'root.set'],
      [() => { r.o.v = new Map([['\ud800', 1]]); }, 'root.o.v'],
    ];
    for (const [write, field] of cases) {
      const e = caught(write);
      expect(e.code).toBe('HEAP_BAD_VALUE');
      expect(String(e.details.field)).toContain(field);
      expect(e.message).toContain('lone UTF-16 surrogate');
    }
    expect(Object.keys(r.o)).toEqual([]);
    expect(r.m.size + r.set.size).toBe(0);
    h.close();
  });
});

describe('undefined and BigInt', () => {
  it('undefined in arrays and objects, and BigInts of any size, round-trip through a reopen', () => {
    const h = heapAt('prims');
    const r = h.root();
    r.arr = [1, undefined, 3];
    r.obj = { u: undefined, n: 1 };
    r.big = [0n, -1n, 2n ** 70n, -(2n ** 64n) - 1n, 9007199254740993n];
    const check = (x: Record<string, any>) => {
      expect([...x.arr]).toEqual([1, undefined, 3]);
      expect(1 in x.arr).toBe(true);
      expect(Object.keys(x.obj)).toEqual(['u', 'n']);
      expect(x.obj.u).toBeUndefined();
      expect([...x.big]).toEqual([0n, -1n, 2n ** 70n, -(2n ** 64n) - 1n, 9007199254740993n]);
      for (const b of x.big) expect(typeof b).toBe('bigint');
    };
    check(r);
    check(h.reopen());
    h.close();
  });
});

describe('util.inspect of heap objects', () => {
  it('shows the plain value (cycles, Map, Set, bytes), not the handle internals, loaded or not', () => {
    const h = heapAt('insp');
    const r = h.root();
    r.a = { b: [1, 2, { c: new Map([['k', new Set([1, 'two'])]]) }], bytes: new Uint8Array([1, 2]) };
    r.a.self = r.a;
    const plain: any = { a: { b: [1, 2, { c: new Map([['k', new Set([1, 'two'])]]) }], bytes: new Uint8Array([1, 2]), self: null as unknown } };
    plain.a.self = plain.a;
    const opts = { depth: Infinity };
    expect(inspect(r, opts)).toBe(inspect(plain, opts));
    expect(inspect(r.a.b[2].c, opts)).toBe(inspect(plain.a.b[2].c, opts));
    expect(inspect(r.a.b[2].c.get('k'), opts)).toBe(inspect(plain.a.b[2].c.get('k'), opts));
    // After a reopen nothing is loaded: inspect loads what it shows.
    const again = h.reopen();
    const shown = inspect(again, opts);
    expect(shown).toBe(inspect(plain, opts));
    expect(shown).not.toMatch(/Cell|ferry\.heap|storage|handler/);
    // Still a plain object to app code.
    expect(Object.getPrototypeOf(again)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(again.a.b)).not.toBe(Object.prototype);
    expect(Array.isArray(again.a.b)).toBe(true);
    h.close();
  });
});

describe('the path an error names', () => {
  it('is where the object was last stored, not where it was made', () => {
    const h = heapAt('path');
    const r = h.root();
    r.p = { d: { x: 1 } };
    r.q = r.p.d;
    delete r.p.d;
    const e = caught(() => { r.q.bad = () => 1; });
    expect(e.details.field).toBe('root.q.bad');
    expect(e.message).toContain('root.q.bad');
    h.close();
  });

  it('through a cycle it is short and never repeats', () => {
    const h = heapAt('cycle');
    const r = h.root();
    const a: Record<string, unknown> = { name: 'a' };
    const b: Record<string, unknown> = { name: 'b', a };
    a.b = b;
    r.ring = a;
    let o = r.ring;
    for (let i = 0; i < 50; i++) o = o.b.a;
    const e = caught(() => { o.b.bad = () => 1; });
    const field = String(e.details.field);
    expect(field.endsWith('.bad')).toBe(true);
    expect(field.length).toBeLessThan(40);
    expect(field.split('.b.a').length).toBeLessThanOrEqual(2);
    h.close();
  });
});
