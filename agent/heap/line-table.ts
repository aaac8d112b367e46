/**
 * The line table: one entry per cache line of an app's virtual heap, held as parallel typed
 * arrays (a struct of arrays) so a heap of 100,000 lines costs about 1.5 MiB of table, not
 * 100,000 JavaScript objects. The arrays grow with the highest line in use, never to the
 * whole virtual size up front.
 */

/** Line states (the seed's Figure 3). */
export const LineState = {
  /** Never written, or freed: holds nothing, in memory or in the store. */
  Empty: 0,
  /** In memory, same bytes as the store (or all zero and never stored). */
  Resident: 1,
  /** In memory, changed since it was last written to the store. */
  Dirty: 2,
  /** Being written to the store right now (write-locked for the length of the flush). */
  Flushing: 3,
  /** Not in memory; the committed store version holds it. */
  Persistent: 4,
  /** Not in memory; written into the open (uncommitted) store transaction by eviction or pre-flush. */
  Staged: 5,
} as const;
export type LineStateValue = (typeof LineState)[keyof typeof LineState];

/** Line types: user lines hold the app's objects; table lines hold the object table. */
export const LineType = { User: 0, Table: 1, System: 2 } as const;

export class LineTable {
  state = new Uint8Array(64);
  type = new Uint8Array(64);
  /** In-memory slot, or −1. */
  slot = new Int32Array(64).fill(-1);
  /** Bytes of live object records on the line (the allocator's count; table lines count as full). */
  live = new Uint32Array(64);
  /** Last barrier access (a logical tick), for LRU. */
  lastUse = new Float64Array(64);
  /** Whether the committed store version holds the line (so freeing it must delete it there). */
  stored = new Uint8Array(64);
  /** Lines currently dirty (resident or staged-and-changed) — the checkpoint trigger. */
  dirtyCount = 0;

  constructor(readonly maxLines: number) {}

  get capacity(): number {
    return this.state.length;
  }

  /** Makes sure entries up to `line` exist. */
  ensure(line: number): void {
    if (line < this.state.length) return;
    let n = this.state.length;
    while (n <= line) n *= 2;
    n = Math.min(n, this.maxLines);
    const grow = <T extends Uint8Array | Int32Array | Uint32Array | Float64Array>(a: T, fill?: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      if (fill !== undefined) b.fill(fill);
      b.set(a);
      return b;
    };
    this.state = grow(this.state);
    this.type = grow(this.type);
    this.slot = grow(this.slot, -1);
    this.live = grow(this.live);
    this.lastUse = grow(this.lastUse);
    this.stored = grow(this.stored);
  }

  setState(line: number, s: LineStateValue): void {
    const before = this.state[line];
    if (before === LineState.Dirty && s !== LineState.Dirty) this.dirtyCount--;
    else if (before !== LineState.Dirty && s === LineState.Dirty) this.dirtyCount++;
    this.state[line] = s;
  }

  isResident(line: number): boolean {
    const s = this.state[line];
    return s === LineState.Resident || s === LineState.Dirty || s === LineState.Flushing;
  }
}
