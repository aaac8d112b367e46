import { inspect, type InspectOptions } from 'node:util';
import type { Cell } from './cell.js';
import { CELL, handleCell, type ObjectSpace } from './object-space.js';
import { toPlain } from './plain-copy.js';
import type { ProxyFactory } from './proxies.js';
import { slotBytes } from './values.js';

/*
 * The targets behind heap object and array handles: a plain object whose prototype carries
 * util.inspect's hook, and a real Array whose changing methods go through the write barrier
 * all or nothing (ProxyFactory.push / arrayOp).
 */

/**
 * util.inspect shows a heap object as its plain value (loading it if needed), not the handle's
 * storage with its cell (hundreds of lines of internals). Node formats a Proxy's target, so the
 * hook sits on the targets' prototypes, and on HeapMap, HeapSet and the bytes' cell.
 */
export function inspectHeapObject(this: object, _depth: number, options: InspectOptions): string {
  const cell = handleCell(this) ?? (this as { [CELL]?: Cell })[CELL];
  if (!cell) return '[heap object]';
  if (cell.dead) return `[heap object ${cell.path()}: no longer in the heap]`;
  try {
    return inspect(toPlain(cell.handle), options);
  } catch (e) {
    return `[heap object ${cell.path()}: ${(e as Error).message}]`;
  }
}
/** The target of a heap object: a plain object but for this prototype (the inspect hook; `constructor` stays Object). */
export class HeapObjectTarget {}
Object.defineProperty(HeapObjectTarget.prototype, 'constructor', { value: Object, writable: true, configurable: true });
Object.defineProperty(HeapObjectTarget.prototype, inspect.custom, { value: inspectHeapObject });

/**
 * The target of a heap array: a real Array (so `Array.isArray` holds) whose prototype adds a
 * fast `push`. `constructor` stays `Array`, so `map`, `filter` and `slice` return plain arrays.
 */
export class HeapArrayTarget extends Array {
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }
}
Object.defineProperty(HeapArrayTarget.prototype, 'constructor', { value: Array, writable: true, configurable: true });
Object.defineProperty(HeapArrayTarget.prototype, inspect.custom, { value: inspectHeapObject });
Object.defineProperty(HeapArrayTarget.prototype, 'push', {
  value: function push(this: unknown[], ...items: unknown[]): number {
    const cell = handleCell(this);
    if (!cell) return Array.prototype.push.apply(this, items);
    return ((cell.owner as ObjectSpace).handles as ProxyFactory).push(cell, items);
  },
  writable: true,
  configurable: true,
});

/** Encoded-size estimate of an array's elements (a hole counts as one byte, as `undefined`). */
export function elementBytes(a: unknown[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += i in a ? slotBytes(a[i]) : 1;
  return n;
}

/**
 * The changing methods besides push, each through `arrayOp`: which of its arguments are stored
 * values (imported first) and where the j-th lands (for error paths).
 */
const ARRAY_OPS: Record<string, (args: unknown[], len: number) => { items: unknown[]; keyOf: (j: number) => number }> = {
  pop: () => ({ items: [], keyOf: (j) => j }),
  shift: () => ({ items: [], keyOf: (j) => j }),
  reverse: () => ({ items: [], keyOf: (j) => j }),
  sort: () => ({ items: [], keyOf: (j) => j }),
  copyWithin: () => ({ items: [], keyOf: (j) => j }),
  unshift: (args) => ({ items: args, keyOf: (j) => j }),
  splice: (args, len) => {
    const s = Math.trunc(Number(args[0]) || 0);
    const start = s < 0 ? Math.max(0, len + s) : Math.min(s, len);
    return { items: args.slice(2), keyOf: (j) => start + j };
  },
  fill: (args, len) => {
    const s = Math.trunc(Number(args[1]) || 0);
    return { items: args.slice(0, 1), keyOf: () => (s < 0 ? Math.max(0, len + s) : Math.min(s, len)) };
  },
};
for (const name of Object.keys(ARRAY_OPS)) {
  const plain = (Array.prototype as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
  const shape = ARRAY_OPS[name]!;
  Object.defineProperty(HeapArrayTarget.prototype, name, {
    value: function (this: unknown[], ...args: unknown[]): unknown {
      const cell = handleCell(this);
      if (!cell) return plain.apply(this, args);
      const f = (cell.owner as ObjectSpace).handles as ProxyFactory;
      const { items, keyOf } = shape(args, cell.loaded ? (cell.storage as unknown[]).length : 0);
      return f.arrayOp(cell, items, keyOf, (copy, xs) => {
        // splice(start) removes to the end, splice(start, undefined) removes nothing: keep the arity.
        if (name === 'splice') return args.length < 2 ? plain.apply(copy, args) : plain.call(copy, args[0], args[1], ...xs);
        if (name === 'unshift') return plain.apply(copy, xs);
        if (name === 'fill') return plain.call(copy, xs[0], args[1], args[2]);
        return plain.apply(copy, args);
      });
    },
    writable: true,
    configurable: true,
  });
}
