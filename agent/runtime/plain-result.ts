import { FerryError } from '../../core/errors.js';
import { kindOf } from '../heap/index.js';

/**
 * A deep copy of what a handler returned, in the agent's realm: heap objects are
 * copied by the heap (`heapPlain`), plain objects, arrays, maps, sets and bytes of
 * any realm are copied here; anything else (a function, a symbol, a class
 * instance) is refused with HEAP_BAD_VALUE naming where it was. Runs inside the
 * call's time limit, so the app's getters cannot hold the agent.
 */
export function plainResult(value: unknown, heapPlain: (v: unknown) => unknown, field: string): unknown {
  const made = new Map<object, unknown>();
  const copy = (v: unknown, path: string): unknown => {
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'undefined') return v;
    if (typeof v !== 'object') throw new FerryError('HEAP_BAD_VALUE', `${path} is a ${typeof v}, which is not plain data`, { field: path });
    const fromHeap = heapPlain(v);
    if (fromHeap !== v) return fromHeap;
    const seen = made.get(v);
    if (seen !== undefined) return seen;
    switch (kindOf(v)) {
      case 'array': {
        const out: unknown[] = [];
        made.set(v, out);
        const a = v as unknown[];
        for (let i = 0; i < a.length; i++) out[i] = copy(a[i], `${path}[${i}]`);
        return out;
      }
      case 'bytes': {
        const b = new Uint8Array(v as Uint8Array);
        made.set(v, b);
        return b;
      }
      case 'map': {
        const out = new Map();
        made.set(v, out);
        for (const [k, x] of v as Map<unknown, unknown>) out.set(copy(k, `${path}.<key>`), copy(x, `${path}.get(${String(k)})`));
        return out;
      }
      case 'set': {
        const out = new Set();
        made.set(v, out);
        for (const x of v as Set<unknown>) out.add(copy(x, `${path}.<item>`));
        return out;
      }
      case 'object': {
        const out: Record<string, unknown> = {};
        made.set(v, out);
        for (const k of Object.keys(v)) out[k] = copy((v as Record<string, unknown>)[k], `${path}.${k}`);
        return out;
      }
      default:
        throw new FerryError('HEAP_BAD_VALUE', `${path} is not plain data (an object of a class, a date or a function)`, { field: path });
    }
  };
  return copy(value, field);
}
