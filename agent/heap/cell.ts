import { inspect } from 'node:util';
import type { Kind } from './record-codec.js';

/**
 * One heap object as the object layer holds it in memory.
 *
 * `handle` is what app code holds: a Proxy (objects, arrays), a HeapMap/HeapSet, or the
 * Uint8Array itself. `storage` holds the decoded record while the object is loaded — the
 * Proxy's target, or the HeapMap/HeapSet's own entries — with children that are heap objects
 * stored as their handles, so a loaded object reads at nearly native speed (the Proxy has no
 * read trap then). Unloading clears `storage` and arms the read traps again.
 *
 * A Cell is unique per object id while anything holds it, so identity (`root.a === root.b`)
 * follows the heap's references.
 */
export class Cell {
  /** Record decoded into `storage`. */
  loaded = false;
  /** Read traps on (unloaded, dead, or an eviction candidate being sampled). */
  armed = false;
  /** Placed in a line (false: still in the nursery). */
  placed = false;
  /** Changed since its record was last written to its line. */
  dirty = false;
  /** Removed by a collection, or its heap closed: the handle throws HEAP_CLOSED. */
  dead = false;
  /** Epoch of the incremental mark whose barrier already saw this object change. */
  markEpoch = 0;
  /** Encoded-size upper bound of the record, for the object size limit and the nursery budget. */
  approxBytes = 0;
  /** First line of the record while loaded and placed (-1 otherwise). */
  firstLine = -1;
  /** Where it was last stored (first found, for loaded objects), for error paths: parent cell and key. */
  parent: Cell | null = null;
  key: string | number | null = null;
  handle!: object;
  storage!: object;
  /** Proxy handler (objects and arrays): read traps are present only while unloaded or armed. */
  handler: ProxyHandler<object> | undefined;

  constructor(public oid: number, readonly kind: Kind, readonly owner: object) {}

  /** Where util.inspect meets a cell (the bytes' Uint8Array carries it): one short line. */
  [inspect.custom](): string {
    return `[heap ${this.kind} ${this.path()}]`;
  }

  /**
   * `root.notes[3].owner`-style path for error messages: up the chain of where each object was
   * last stored. A chain that loops (cycles) or runs long stops at the object it reached,
   * named by id (`object#12.next.value`): short, and never repeated.
   */
  path(child?: string | number): string {
    const parts: string[] = [];
    if (child !== undefined) parts.push(fmtKey(child));
    let c: Cell = this;
    const seen = new Set<Cell>([c]);
    while (c.parent && c.oid !== 1 && parts.length < 32 && !seen.has(c.parent)) {
      parts.push(fmtKey(c.key!));
      c = c.parent;
      seen.add(c);
    }
    return (c.oid === 1 ? 'root' : `object#${c.oid || '(new)'}`) + parts.reverse().join('');
  }
}

function fmtKey(k: string | number): string {
  if (typeof k === 'number') return `[${k}]`;
  if (k.startsWith('.') || k.startsWith('<')) return k;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}
