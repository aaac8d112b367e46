import { Cell } from './cell.js';
import { LineType } from './line-table.js';
import { ROOT_OID, children, childrenOf, type ObjectSpace } from './object-space.js';
import { encodeRecord } from './record-codec.js';

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
  if (space.nursery.size === 0) {
    space.remembered.clear();
    return { promoted: 0, died: 0 };
  }
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
    if (p.value === undefined) space.load(p);
    for (const k of children(p)) if (!k.placed) visit(k);
  };
  for (const p of [...space.remembered]) fromParent(p);
  for (const r of extraRoots) {
    if (r.placed) fromParent(r);
    else visit(r);
  }
  if (space.undo) {
    for (const before of space.undo.values()) {
      for (const k of childrenOf(kindOfValue(before.value), before.value)) if (!k.placed) visit(k);
    }
  }
  for (const c of order) {
    space.nursery.delete(c);
    space.nurseryBytes -= c.approxBytes;
    space.writeBack(c);
  }
  let died = 0;
  for (const c of [...space.nursery]) {
    space.kill(c, c.oid);
    died++;
  }
  space.nursery.clear();
  space.nurseryBytes = 0;
  space.remembered.clear();
  space.stats.promoted += order.length;
  space.stats.diedYoung += died;
  return { promoted: order.length, died };
}

function kindOfValue(v: unknown): Cell['kind'] {
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'map';
  if (v instanceof Set) return 'set';
  if (v instanceof Uint8Array) return 'bytes';
  return 'object';
}

/**
 * Major collection: mark from the root and the pinned handles, sweep, compact. Marking walks
 * the graph one working set at a time: objects whose lines are in memory are marked first,
 * the rest are queued and taken in address order, so each line is faulted in about once and
 * the resident set never exceeds the budget. Sweep frees unreachable records (lines left
 * empty are deleted from the store at the next checkpoint). Compaction moves objects out of
 * sparse lines (`sparse`) or re-lays the whole heap in traversal order (`full`), so objects
 * used together share lines.
 */
export function collectMajor(space: ObjectSpace, pinned: Iterable<Cell>, compact: CompactMode): MajorResult {
  const minor = collectNursery(space, pinned);
  const marked = new Uint8Array(space.nextOid);
  const hot: number[] = [];
  let cold: number[] = [];
  const push = (oid: number) => {
    if (oid >= marked.length || marked[oid]) return;
    marked[oid] = 1;
    const c = space.peek(oid);
    if (c && c.value !== undefined) hot.push(oid);
    else cold.push(oid);
  };
  push(ROOT_OID);
  for (const c of pinned) push(c.oid);
  // An open savepoint may put back values the graph no longer reaches: they stay alive.
  if (space.undo) for (const before of space.undo.values()) for (const k of childrenOf(kindOfValue(before.value), before.value)) push(k.oid);
  let count = 0;
  while (hot.length > 0 || cold.length > 0) {
    if (hot.length === 0) {
      // Next working set: the queued objects in address order.
      const placed = cold.map((oid) => ({ oid, addr: space.table.get(oid)?.addr ?? 0 }));
      placed.sort((a, b) => a.addr - b.addr);
      hot.push(...placed.map((p) => p.oid).reverse());
      cold = [];
    }
    const oid = hot.pop()!;
    const cell = space.cellFor(oid);
    space.load(cell);
    count++;
    for (const k of children(cell)) push(k.oid);
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

  let moved = 0;
  const before = space.alloc.freeLineCount();
  const move = (oid: number) => {
    const cell = space.cellFor(oid);
    space.load(cell);
    const old = space.table.get(oid);
    space.place(cell, encodeRecord(cell.kind, cell.value), old);
    if (cell.dirty) {
      cell.dirty = false;
      space.dirty.delete(cell);
    }
    moved++;
  };
  if (compact === 'sparse' && sparse.size > 1) {
    space.alloc.newCursor();
    for (const oids of sparse.values()) for (const oid of oids) move(oid);
  } else if (compact === 'full') {
    space.alloc.newCursor();
    const done = new Uint8Array(space.nextOid);
    const stack = [ROOT_OID];
    while (stack.length > 0) {
      const oid = stack.pop()!;
      if (done[oid]) continue;
      done[oid] = 1;
      const cell = space.cellFor(oid);
      space.load(cell);
      const kids = [...children(cell)];
      if (space.pager.table.type[Math.floor((space.table.get(oid)?.addr ?? 0) / ls)]! === LineType.User) move(oid);
      for (let i = kids.length - 1; i >= 0; i--) if (!done[kids[i]!.oid]) stack.push(kids[i]!.oid);
    }
  }
  space.alloc.newCursor();
  return { ...minor, marked: count, swept, moved, freedLines: Math.max(0, space.alloc.freeLineCount() - before) };
}
