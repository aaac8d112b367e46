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
 * Major collection: mark from the root and the pinned handles, sweep, compact. Marking walks
 * the graph one working set at a time: objects already loaded are marked first, the rest are
 * queued and taken in address order, so each line is faulted in about once and the resident
 * set never exceeds the budget. Sweep frees unreachable records (lines left empty are deleted
 * from the store at the next checkpoint). Compaction moves objects out of sparse lines
 * (`sparse`) or re-lays the whole heap in traversal order (`full`), so objects used together
 * share lines.
 */
export function collectMajor(space: ObjectSpace, root: Cell, pinned: Iterable<Cell>, compact: CompactMode, conservative = false): MajorResult {
  const minor = collectNursery(space, pinned);
  const marked = new Uint8Array(space.nextOid);
  const hot: Cell[] = [];
  let cold: Cell[] = [];
  const push = (c: Cell) => {
    if (c.oid >= marked.length || marked[c.oid]) return;
    marked[c.oid] = 1;
    if (c.loaded) hot.push(c);
    else cold.push(c);
  };
  push(root);
  for (const c of pinned) push(c);
  // Conservative (a collection started inside app code, by a write): any object app code may
  // still hold in a local variable has a live cell, so every live cell is a root.
  if (conservative) space.forEachPlacedCell(push);
  // An open savepoint may put back values the graph no longer reaches: they stay alive.
  if (space.undo) for (const [cell, before] of space.undo) for (const k of childrenOf(cell.kind, before.value)) push(k);
  let count = 0;
  while (hot.length > 0 || cold.length > 0) {
    if (hot.length === 0) {
      // Next working set: the queued objects in address order.
      const placed = cold.map((c) => ({ c, addr: space.table.get(c.oid)?.addr ?? 0 }));
      placed.sort((a, b) => b.addr - a.addr);
      for (const p of placed) hot.push(p.c);
      cold = [];
    }
    const cell = hot.pop()!;
    space.load(cell);
    count++;
    for (const k of children(cell)) push(k);
  }

  let swept = 0;
  const sparse = new Map<number, number[]>();
  const ls = space.pager.lineSize;
  const dead: number[] = [];
  space.table.forEach((oid, p) => {
    if (!marked[oid]) {
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
  const move = (cell: Cell) => {
    space.relocate(cell);
    moved++;
  };
  if (compact === 'sparse' && sparse.size > 1) {
    space.alloc.newCursor();
    for (const oids of sparse.values()) for (const oid of oids) move(space.cellById(oid));
  } else if (compact === 'full') {
    space.alloc.newCursor();
    const done = new Uint8Array(space.nextOid);
    const stack: Cell[] = [root];
    while (stack.length > 0) {
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
  return { ...minor, marked: count, swept, moved, freedLines: Math.max(0, space.alloc.freeLineCount() - before) };
}
