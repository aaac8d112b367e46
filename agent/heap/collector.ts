import { isFerryError } from '../../core/errors.js';
import { Cell } from './cell.js';
import { children, childrenOf, type ObjectSpace } from './object-space.js';

export type CompactMode = 'none' | 'sparse' | 'full';

export interface MinorResult {
  promoted: number;
  died: number;
}

export interface MajorResult extends MinorResult {
  marked: number;
  swept: number;
  moved: number;
  freedLines: number;
}

/**
 * Minor collection: the nursery's survivors (reachable from the remembered set, the pinned
 * handles and an open savepoint's undo log) are placed in lines in depth-first order, so an
 * object and what it points at land together; the rest die without ever reaching flash.
 */
export function collectNursery(space: ObjectSpace, extraRoots: Iterable<Cell>): MinorResult {
  // Nothing allocated since the last minor collection is not enough to skip it: a detached
  // nursery object (it died young but app code kept it) assigned back is in no counter, only
  // reachable from the remembered set.
  if (space.nurseryObjects === 0 && space.remembered.size === 0) return { promoted: 0, died: 0 };
  const order: Cell[] = [];
  const seen = new Set<Cell>();
  const visit = (start: Cell) => {
    const stack = [start];
    while (stack.length > 0) {
      const c = stack.pop()!;
      if (c.placed || seen.has(c) || c.dead) continue;
      seen.add(c);
      order.push(c);
      const kids = [...children(c)];
      for (let i = kids.length - 1; i >= 0; i--) if (!kids[i]!.placed) stack.push(kids[i]!);
    }
  };
  const fromParent = (p: Cell) => {
    if (p.dead) return;
    space.load(p);
    for (const k of children(p)) if (!k.placed) visit(k);
  };
  // Nursery objects a written record already names must be placed, whatever else reaches them:
  // after a minor collection that failed halfway (no space), a placed object may name a child
  // that nothing in the remembered set leads to.
  for (const c of [...space.namedYoung]) visit(c);
  for (const p of [...space.remembered]) fromParent(p);
  for (const r of extraRoots) {
    if (r.placed) fromParent(r);
    else visit(r);
  }
  if (space.undo) {
    for (const [cell, before] of space.undo) for (const k of childrenOf(cell.kind, before.value)) if (!k.placed) visit(k);
  }
  for (const c of order) space.writeBack(c);
  // The rest of the nursery is unreachable: the engine reclaims it; nothing reached a line.
  const died = Math.max(0, space.nurseryObjects - order.length);
  space.nurseryObjects = 0;
  space.nurseryBytes = 0;
  space.remembered.clear();
  space.namedYoung.clear();
  space.stats.promoted += order.length;
  space.stats.diedYoung += died;
  return { promoted: order.length, died };
}

/**
 * The mark phase of a major collection, incremental: `step` marks until it has faulted in one
 * working set of lines (or the graph is done), so a collection can be spread over several
 * bookmarks and no single step pages more than the working set in. Objects already loaded are
 * marked first; the rest are queued and taken in address order, so each line is faulted in
 * about once. While a mark is in progress the write barrier keeps it correct
 * (snapshot-at-the-beginning): before an object changes for the first time in the cycle, the
 * objects it points at are marked (`ObjectSpace.changed`), and objects that get an id during
 * the cycle are marked at once — everything reachable when the cycle began, and everything
 * new, survives it.
 */
export class Marker {
  private marked: Uint8Array;
  private hot: Cell[] = [];
  private cold: Cell[] = [];
  /** Nursery objects passed through (see push). */
  private readonly young = new Set<Cell>();
  count = 0;
  readonly epoch: number;
  private static epochs = 0;

  constructor(private readonly space: ObjectSpace, roots: Iterable<Cell>, conservative: boolean) {
    this.epoch = ++Marker.epochs;
    this.marked = new Uint8Array(Math.max(space.nextOid, 2));
    for (const c of roots) this.push(c);
    // Conservative (a collection started inside app code): any object app code may still hold
    // in a local variable has a live cell, so every live cell is a root.
    if (conservative) space.forEachPlacedCell((c) => this.push(c));
    // An open savepoint may put back values the graph no longer reaches: they stay alive.
    if (space.undo) for (const [cell, before] of space.undo) for (const k of childrenOf(cell.kind, before.value)) this.push(k);
  }

  isMarked(oid: number): boolean {
    return oid < this.marked.length && this.marked[oid] === 1;
  }

  /** Marks an object (and queues it to have its children marked). */
  push(c: Cell): void {
    if (c.dead) return;
    if (c.oid === 0) {
      // Nursery objects are not swept by a major collection, but what they point at is live:
      // normally they were all promoted first; after a promotion that found no room, not.
      if (c.placed || this.young.has(c)) return;
      this.young.add(c);
      for (const k of children(c)) this.push(k);
      return;
    }
    if (c.oid >= this.marked.length) {
      const m = new Uint8Array(Math.max(c.oid + 1, this.marked.length * 2));
      m.set(this.marked);
      this.marked = m;
    }
    if (this.marked[c.oid]) return;
    this.marked[c.oid] = 1;
    if (c.loaded) this.hot.push(c);
    else this.cold.push(c);
  }

  get done(): boolean {
    return this.hot.length === 0 && this.cold.length === 0;
  }

  /** Marks until about `maxFaults` lines were faulted in; true when the whole graph is marked. */
  step(maxFaults: number): boolean {
    const space = this.space;
    const f0 = space.pager.stats.faults;
    while (!this.done && space.pager.stats.faults - f0 < maxFaults) {
      if (this.hot.length === 0) {
        // Next working set: the queued objects in address order.
        const placed = this.cold.map((c) => ({ c, addr: space.table.get(c.oid)?.addr ?? 0 }));
        placed.sort((a, b) => b.addr - a.addr);
        for (const p of placed) this.hot.push(p.c);
        this.cold = [];
      }
      const cell = this.hot.pop()!;
      if (cell.dead) continue;
      space.load(cell);
      this.count++;
      for (const k of children(cell)) this.push(k);
    }
    return this.done;
  }
}

/**
 * Major collection, all at once: mark from the root and the pinned handles, sweep, compact.
 * Sweep frees unreachable records (lines left empty are deleted from the store at the next
 * checkpoint). Compaction moves objects out of sparse lines (`sparse`) or re-lays the whole
 * heap in traversal order (`full`), so objects used together share lines.
 */
export function collectMajor(space: ObjectSpace, root: Cell, pinned: Iterable<Cell>, compact: CompactMode, conservative = false): MajorResult {
  const pins = [...pinned];
  const minor = promoteIfRoom(space, pins);
  const marker = new Marker(space, [root, ...pins], conservative);
  space.marker = marker;
  try {
    marker.step(Infinity);
  } finally {
    space.marker = null;
  }
  const done = finishCollection(space, root, marker, compact);
  return { ...(minor ?? promoteIfRoom(space, pins) ?? { promoted: 0, died: 0 }), ...done };
}

/**
 * A minor collection that gives way when the heap has no room to place the survivors
 * (HEAP_FULL, HEAP_NO_MEMORY): a major collection must still run then — it is what frees the
 * room. The unplaced survivors stay in the nursery, and the mark passes through them.
 */
export function promoteIfRoom(space: ObjectSpace, roots: Iterable<Cell>): MinorResult | null {
  try {
    return collectNursery(space, roots);
  } catch (e) {
    if (isFerryError(e) && (e.code === 'HEAP_FULL' || e.code === 'HEAP_NO_MEMORY')) return null;
    throw e;
  }
}

/** Sweep and compaction after a completed mark. */
export function finishCollection(space: ObjectSpace, root: Cell, marker: Marker, compact: CompactMode): Omit<MajorResult, 'promoted' | 'died'> {
  const count = marker.count;
  let swept = 0;
  const sparse = new Map<number, number[]>();
  const ls = space.pager.lineSize;
  const dead: number[] = [];
  space.table.forEach((oid, p) => {
    if (!marker.isMarked(oid)) {
      dead.push(oid);
      return;
    }
    if (compact === 'sparse') {
      const line = Math.floor(p.addr / ls);
      if (p.cap <= ls && space.pager.table.live[line]! < ls / 2) {
        let list = sparse.get(line);
        if (!list) sparse.set(line, (list = []));
        list.push(oid);
      }
    }
  });
  for (const oid of dead) {
    space.kill(space.peek(oid), oid);
    swept++;
  }
  space.sortFreeOids();

  let moved = 0;
  const before = space.alloc.freeLineCount();
  // Compaction moves objects into fresh lines; in a nearly full heap there may be none. It
  // then stops where it is: every object is still in one place, and the sweep has freed what
  // it could (a collection must not fail for want of the room it is there to make).
  let stuck = false;
  const move = (cell: Cell) => {
    try {
      space.relocate(cell);
      moved++;
    } catch (e) {
      if (!isFerryError(e) || (e.code !== 'HEAP_FULL' && e.code !== 'HEAP_NO_MEMORY')) throw e;
      stuck = true;
    }
  };
  if (compact === 'sparse' && sparse.size > 1) {
    space.alloc.newCursor();
    for (const oids of sparse.values()) for (const oid of oids) if (!stuck) move(space.cellById(oid));
  } else if (compact === 'full') {
    space.alloc.newCursor();
    const done = new Uint8Array(space.nextOid);
    const stack: Cell[] = [root];
    while (stack.length > 0 && !stuck) {
      const cell = stack.pop()!;
      if (done[cell.oid]) continue;
      done[cell.oid] = 1;
      space.load(cell);
      const kids = [...children(cell)];
      move(cell);
      for (let i = kids.length - 1; i >= 0; i--) if (!done[kids[i]!.oid]) stack.push(kids[i]!);
    }
  }
  space.alloc.newCursor();
  return { marked: count, swept, moved, freedLines: Math.max(0, space.alloc.freeLineCount() - before) };
}
