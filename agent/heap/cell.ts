import type { Kind } from './record-codec.js';

/**
 * One heap object as the object layer holds it in memory. `value` is the decoded record
 * (children that are heap objects appear as their Cells) or undefined when the object is not
 * loaded. A Cell is unique per object id while anything holds it, so identity (`root.a ===
 * root.b`) follows the heap's references.
 */
export class Cell {
  kind: Kind;
  value: unknown;
  /** Placed in a line (false: still in the nursery). */
  placed = false;
  /** Changed since its record was last written to its line. */
  dirty = false;
  /** Removed by a collection; any proxy still held by app code is stale. */
  dead = false;
  /** Encoded-size upper bound of `value`, for the object size limit and the nursery budget. */
  approxBytes = 0;
  /** Lines the loaded record sits on (first, count); count 0 when not registered. */
  firstLine = -1;
  lineCount = 0;
  /** How app code last reached it, for error paths: parent cell and key. */
  parent: Cell | null = null;
  key: string | number | null = null;
  proxy: object | undefined;

  constructor(public oid: number, kind: Kind) {
    this.kind = kind;
  }

  /** `root.notes[3].owner`-style path for error messages (last way app code reached it). */
  path(child?: string | number): string {
    const parts: string[] = [];
    if (child !== undefined) parts.push(fmtKey(child));
    let c: Cell | null = this;
    let guard = 0;
    while (c && c.parent && c.oid !== 1 && guard++ < 64) {
      parts.push(fmtKey(c.key!));
      c = c.parent;
    }
    return (c && c.oid === 1 ? 'root' : `object#${c?.oid ?? '?'}`) + parts.reverse().join('');
  }
}

function fmtKey(k: string | number): string {
  if (typeof k === 'number') return `[${k}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}
