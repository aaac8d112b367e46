import { FerryError } from '../../core/errors.js';
import { Allocator } from './allocator.js';
import { Cell } from './cell.js';
import { ObjectTable, capacityFor } from './object-table.js';
import type { Pager } from './pager.js';
import { decodeRecord, encodeRecord, registerRefClass, setRefHooks, type Kind } from './record-codec.js';

registerRefClass(Cell);

/** The object id of `root`. */
export const ROOT_OID = 1;

export interface ObjectStats {
  /** Objects created (nursery allocations, or direct placements with the nursery off). */
  allocated: number;
  /** Nursery objects that survived into lines. */
  promoted: number;
  /** Nursery objects that died before reaching a line. */
  diedYoung: number;
  /** Records written to lines. */
  recordsWritten: number;
  /** Records moved to a new place (grew past their room, or compaction). */
  relocations: number;
}

/**
 * The object layer under the proxies: object ids and their Cells, loading records through the
 * pager, writing changed records back (in place, or moved when they outgrew their room), the
 * nursery, the remembered set, and the undo log a savepoint keeps.
 */
export class ObjectSpace {
  readonly table: ObjectTable;
  readonly alloc: Allocator;
  nextOid = ROOT_OID + 1;
  freeOids: number[] = [];
  private readonly registry = new Map<number, WeakRef<Cell>>();
  private readonly finalizer = new FinalizationRegistry<number>((oid) => {
    const ref = this.registry.get(oid);
    if (ref && ref.deref() === undefined) this.registry.delete(oid);
  });
  /** Loaded placed cells by the first line of their record (dropped when that line leaves memory). */
  private readonly lineCells = new Map<number, Set<Cell>>();
  /** Cells not yet placed in a line: the nursery. Held strongly: nothing else may keep them alive. */
  readonly nursery = new Set<Cell>();
  nurseryBytes = 0;
  /** Placed cells changed since their record was last written. */
  readonly dirty = new Set<Cell>();
  /** Placed cells whose value points at nursery cells (roots of a minor collection). */
  readonly remembered = new Set<Cell>();
  /** Undo log of the open savepoint: each changed cell's value before the first change. */
  undo: Map<Cell, { value: unknown; approx: number }> | null = null;
  readonly stats: ObjectStats = { allocated: 0, promoted: 0, diedYoung: 0, recordsWritten: 0, relocations: 0 };

  private readonly resolve = (oid: number): Cell => this.cellFor(oid);

  constructor(readonly pager: Pager, readonly app: string, readonly maxObjectBytes: number, readonly useNursery: boolean) {
    this.alloc = new Allocator(pager, app);
    this.table = new ObjectTable(pager, this.alloc);
  }

  // ---- identity ----

  /** The Cell of an object id (unloaded until `load`). */
  cellFor(oid: number): Cell {
    const c = this.registry.get(oid)?.deref();
    if (c) return c;
    const cell = new Cell(oid, 'object');
    this.track(cell);
    return cell;
  }

  private track(cell: Cell): void {
    this.registry.set(cell.oid, new WeakRef(cell));
    this.finalizer.register(cell, cell.oid);
  }

  private allocOid(): number {
    return this.freeOids.pop() ?? this.nextOid++;
  }

  /** A new object. In the nursery unless the nursery is off, in which case it is placed at once. */
  create(kind: Kind, value: unknown, approx: number): Cell {
    const cell = new Cell(this.allocOid(), kind);
    cell.value = value;
    cell.approxBytes = approx;
    this.track(cell);
    this.stats.allocated++;
    if (this.useNursery) {
      this.nursery.add(cell);
      this.nurseryBytes += approx;
    } else {
      cell.placed = true;
      cell.dirty = true;
      this.dirty.add(cell);
    }
    return cell;
  }

  /** Gives a just-created object its value and size (no undo entry: a new object has no before). */
  initialise(cell: Cell, value: unknown, approx: number): void {
    cell.value = value;
    cell.approxBytes = approx;
    if (!cell.placed) this.nurseryBytes += approx;
  }

  // ---- loading ----

  /** The cell's decoded value, loading its record through the pager (the read barrier). */
  load(cell: Cell): unknown {
    if (cell.value !== undefined) {
      if (cell.firstLine >= 0) this.pager.slotOffset(cell.firstLine); // LRU touch
      return cell.value;
    }
    if (cell.dead) throw new FerryError('HEAP_CLOSED', `object ${cell.path()} was removed from the heap of app ${this.app}`, { field: cell.path(), app: this.app });
    const p = this.table.get(cell.oid);
    if (!p) throw new FerryError('HEAP_CORRUPT', `object #${cell.oid} of app ${this.app} has no record (dangling reference from ${cell.path()})`, { field: cell.path(), app: this.app, oid: cell.oid });
    const bytes = this.pager.read(p.addr, p.len);
    setRefHooks(refOid, this.resolve);
    const rec = decodeRecord(bytes, `object #${cell.oid} of app ${this.app}`);
    cell.kind = rec.kind;
    cell.value = rec.value;
    cell.placed = true;
    cell.approxBytes = p.len;
    this.register(cell, p.addr);
    return cell.value;
  }

  private register(cell: Cell, addr: number): void {
    this.unregister(cell);
    const line = Math.floor(addr / this.pager.lineSize);
    cell.firstLine = line;
    cell.lineCount = 1;
    let set = this.lineCells.get(line);
    if (!set) this.lineCells.set(line, (set = new Set()));
    set.add(cell);
  }

  private unregister(cell: Cell): void {
    if (cell.firstLine < 0) return;
    const set = this.lineCells.get(cell.firstLine);
    set?.delete(cell);
    if (set && set.size === 0) this.lineCells.delete(cell.firstLine);
    cell.firstLine = -1;
    cell.lineCount = 0;
  }

  // ---- changes ----

  /** The write barrier: records the undo entry, marks the cell (and its line) changed. */
  changed(cell: Cell, approxDelta: number): void {
    if (cell.dead) throw new FerryError('HEAP_CLOSED', `object ${cell.path()} was removed from the heap of app ${this.app}`, { field: cell.path(), app: this.app });
    if (this.undo && !this.undo.has(cell)) this.undo.set(cell, { value: shallowCopy(cell.kind, cell.value), approx: cell.approxBytes });
    cell.approxBytes += approxDelta;
    if (!cell.placed) {
      this.nurseryBytes += approxDelta;
      return;
    }
    if (!cell.dirty) {
      cell.dirty = true;
      this.dirty.add(cell);
    }
    if (cell.firstLine >= 0) {
      this.pager.slotOffset(cell.firstLine);
      this.pager.markDirty(cell.firstLine);
    }
  }

  /** Notes that `parent` now points at `child` (the remembered set of the nursery). */
  pointsAt(parent: Cell, child: Cell): void {
    if (parent.placed && !child.placed) this.remembered.add(parent);
    if (child.parent === null && child.oid !== ROOT_OID && child !== parent) {
      child.parent = parent;
    }
  }

  /** Writes a changed (or new) record to its line, moving it when it outgrew its room. */
  writeBack(cell: Cell): void {
    const bytes = encodeRecord(cell.kind, cell.value);
    if (bytes.length > this.maxObjectBytes) {
      throw new FerryError('HEAP_VALUE_TOO_LARGE', `${cell.path()} encodes to ${bytes.length} bytes, over the ${this.maxObjectBytes}-byte object limit`, { field: cell.path(), app: this.app, bytes: bytes.length });
    }
    const old = this.table.get(cell.oid);
    if (old && bytes.length <= old.cap) {
      this.pager.write(old.addr, bytes);
      if (bytes.length !== old.len) this.table.set(cell.oid, { addr: old.addr, len: bytes.length, cap: old.cap });
      this.register(cell, old.addr);
    } else {
      this.place(cell, bytes, old);
    }
    cell.approxBytes = bytes.length;
    cell.placed = true;
    cell.dirty = false;
    this.dirty.delete(cell);
    this.stats.recordsWritten++;
  }

  /** Places a record at a new address (new object, grown object, or compaction). */
  place(cell: Cell, bytes: Uint8Array, old: { addr: number; cap: number } | undefined): void {
    const ls = this.pager.lineSize;
    let cap = capacityFor(bytes.length, cell.kind !== 'bytes');
    if (bytes.length <= ls) cap = Math.min(cap, ls);
    const addr = this.alloc.alloc(cap);
    this.pager.write(addr, bytes);
    this.table.set(cell.oid, { addr, len: bytes.length, cap });
    this.register(cell, addr);
    if (old) {
      this.alloc.free(old.addr, old.cap);
      this.stats.relocations++;
    }
  }

  /** Pager hook: write back the changed objects on a line about to leave memory. */
  beforeEvict(line: number): void {
    const set = this.lineCells.get(line);
    if (!set) return;
    for (const cell of [...set]) if (cell.dirty) this.writeBack(cell);
  }

  /** Pager hook: forget the decoded objects of a line that left memory (clean ones only). */
  afterEvict(line: number): void {
    const set = this.lineCells.get(line);
    if (!set) return;
    for (const cell of [...set]) {
      if (cell.dirty) continue; // written back by beforeEvict; never dropped while changed
      cell.value = undefined;
      this.unregister(cell);
    }
  }

  /** Removes an object for good (a collection found it unreachable). */
  kill(cell: Cell | undefined, oid: number): void {
    const p = this.table.get(oid);
    if (p) {
      this.alloc.free(p.addr, p.cap);
      this.table.clear(oid);
    }
    if (cell) {
      this.unregister(cell);
      this.dirty.delete(cell);
      this.remembered.delete(cell);
      if (this.nursery.delete(cell)) this.nurseryBytes -= cell.approxBytes;
      cell.dead = true;
      cell.value = undefined;
    }
    this.registry.delete(oid);
    this.freeOids.push(oid);
  }

  /** A live cell of an object id if one is in memory (collections). */
  peek(oid: number): Cell | undefined {
    return this.registry.get(oid)?.deref();
  }

  /** Every cell in memory (for closing: mark all stale). */
  forEachCell(fn: (cell: Cell) => void): void {
    for (const ref of this.registry.values()) {
      const c = ref.deref();
      if (c) fn(c);
    }
  }

  // ---- savepoints ----

  rollback(): void {
    const undo = this.undo;
    this.undo = null;
    if (!undo) return;
    for (const [cell, before] of undo) {
      if (cell.dead) continue;
      cell.value = before.value;
      const delta = before.approx - cell.approxBytes;
      if (!cell.placed) {
        this.nurseryBytes += delta;
        cell.approxBytes = before.approx;
        continue;
      }
      cell.approxBytes = before.approx;
      const p = this.table.get(cell.oid);
      if (p) this.register(cell, p.addr);
      this.changed(cell, 0);
      for (const child of children(cell)) this.pointsAt(cell, child);
    }
  }
}

function refOid(value: unknown): number {
  return (value as Cell).oid;
}

/** Child cells of a loaded cell. */
export function children(cell: Cell): Generator<Cell> {
  return childrenOf(cell.kind, cell.value);
}

export function* childrenOf(kind: Kind, v: unknown): Generator<Cell> {
  switch (kind) {
    case 'object':
      for (const k in v as Record<string, unknown>) {
        const x = (v as Record<string, unknown>)[k];
        if (x instanceof Cell) yield x;
      }
      break;
    case 'array':
      for (const x of v as unknown[]) if (x instanceof Cell) yield x;
      break;
    case 'map':
      for (const [k, x] of v as Map<unknown, unknown>) {
        if (k instanceof Cell) yield k;
        if (x instanceof Cell) yield x;
      }
      break;
    case 'set':
      for (const x of v as Set<unknown>) if (x instanceof Cell) yield x;
      break;
    default:
      break;
  }
}

export function shallowCopy(kind: Kind, v: unknown): unknown {
  switch (kind) {
    case 'object': return { ...(v as object) };
    case 'array': return (v as unknown[]).slice();
    case 'map': return new Map(v as Map<unknown, unknown>);
    case 'set': return new Set(v as Set<unknown>);
    case 'bytes': return (v as Uint8Array).slice();
  }
}
