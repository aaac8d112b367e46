import type { Cell } from './cell.js';
import { handleCell } from './object-space.js';
import type { HeapMap, HeapSet } from './collections.js';

/** A plain deep copy of a heap value (shared references and cycles kept); other values pass through. */
export function toPlain(value: unknown): unknown {
  const made = new Map<Cell, unknown>();
  const copy = (v: unknown): unknown => {
    const cell = handleCell(v);
    if (!cell) return v;
    if (made.has(cell)) return made.get(cell);
    switch (cell.kind) {
      case 'bytes': {
        const b = new Uint8Array(v as Uint8Array);
        made.set(cell, b);
        return b;
      }
      case 'array': {
        const out: unknown[] = [];
        made.set(cell, out);
        const a = v as unknown[];
        out.length = a.length;
        for (let i = 0; i < a.length; i++) if (i in a) out[i] = copy(a[i]);
        return out;
      }
      case 'map': {
        const out = new Map();
        made.set(cell, out);
        for (const [k, x] of v as HeapMap) out.set(copy(k), copy(x));
        return out;
      }
      case 'set': {
        const out = new Set();
        made.set(cell, out);
        for (const x of v as HeapSet) out.add(copy(x));
        return out;
      }
      default: {
        const out: Record<string, unknown> = {};
        made.set(cell, out);
        for (const k of Object.keys(v as object)) out[k] = copy((v as Record<string, unknown>)[k]);
        return out;
      }
    }
  };
  return copy(value);
}
