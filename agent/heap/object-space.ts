import { FerryError } from '../../core/errors.js';
import { Allocator } from './allocator.js';
import { Cell } from './cell.js';
import { MAX_SLACK, ObjectTable, SLACK_UNIT, capacityFor } from './object-table.js';
import type { Pager } from './pager.js';
import { Ref, decodeRecord, encodeRecord, type DecodedRecord, type Kind } from './record-codec.js';
import type { Marker } from './collector.js';

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
  /** Objects loaded from their lines. */
  loads: number;
}

/** Makes the app-facing handle of a cell and switches its read traps (proxies.ts). */
export interface Handles {
  /** Creates `cell.handle` and `cell.storage` (empty) for a new cell. */
  make(cell: Cell): void;
  /** Read traps on: the next read loads (unloaded) or notes a reference (armed). */
  arm(cell: Cell): void;
  /** Read traps off: reads go straight to the storage. */
  disarm(cell: Cell): void;
}

/**
 * Every handle carries its cell under this symbol (on the Proxy's target, the HeapMap/HeapSet
 * or the Uint8Array). A plain symbol property costs a few nanoseconds where a WeakMap entry or
 * a non-enumerable defineProperty costs ~180 ns, and allocation is the hot path. A copy made by
 * spreading a handle carries the symbol too, so a handle is only recognised when its cell
 * names it back (`cell.handle === h`).
 */
export const CELL: unique symbol = Symbol('ferry.heap.cell');

/** The cell behind a handle of any heap, if it is one. */
export function handleCell(h: unknown): Cell | undefined {
  if (h === null || typeof h !== 'object') return undefined;
  const c = (h as { [CELL]?: Cell })[CELL];
  return c !== undefined && c.handle === h ? c : undefined;
}

function bindHandle(holder: object, cell: Cell): void {
  (holder as { [CELL]?: Cell })[CELL] = cell;
}

/**
 * The object layer under the handles: object ids and their Cells, loading records through the
 * pager, writing changed records back (in place, or moved when they outgrew their room), the
 * nursery, the remembered set, and the undo log a savepoint keeps.
 */
export class ObjectSpace {
  readonly table: ObjectTable;
  readonly alloc: Allocator;
  handles!: Handles;
  nextOid = ROOT_OID + 1;
  freeOids: number[] = [];
  private readonly registry = new Map<number, WeakRef<Cell>>();
  private readonly finalizer = new FinalizationRegistry<number>((oid) => {
    const ref = this.registry.get(oid);
    if (ref && ref.deref() === undefined) this.registry.delete(oid);
  });
  /** Loaded placed cells by the first line of their record (unloaded when that line leaves memory). */
  private readonly lineCells = new Map<number, Set<Cell>>();
  /**
   * The nursery is not a list: new objects are unplaced cells kept alive only by what points at
   * them, so those that die young are reclaimed by the JavaScript engine's own young-generation
   * collector, and a minor collection only walks the survivors. The counters are what was
   * allocated since the last minor collection: an upper bound of the nursery's live bytes.
   */
  nurseryObjects = 0;
  nurseryBytes = 0;
  /** Placed cells changed since their record was last written. */
  readonly dirty = new Set<Cell>();
  /** Placed cells whose storage points at nursery cells (roots of a minor collection). */
  readonly remembered = new Set<Cell>();
  /**
   * Nursery cells a written record names (they got an id for it). Until the next minor
   * collection places them, this holds them: the record's owner may be paged out meanwhile,
   * which clears the storage that held them, and the registry's weak reference alone would
   * let the engine collect them — the record would then name an object that never reaches a line.
   */
  readonly namedYoung = new Set<Cell>();
  /** Undo log of the open savepoint: each changed cell's storage before the first change. */
  undo: Map<Cell, { value: unknown; approx: number }> | null = null;
  /** Lines whose loaded objects have their read traps armed (eviction candidates, CLOCK-style). */
  readonly armedLines = new Set<number>();
  /** The mark of a major collection in progress (incremental), or null. */
  marker: Marker | null = null;
  readonly stats: ObjectStats = { allocated: 0, promoted: 0, diedYoung: 0, recordsWritten: 0, relocations: 0, loads: 0 };
  private readonly refOf = (child: object): Ref => {
    const cell = handleCell(child);
    if (!cell || cell.owner !== this) throw new FerryError('HEAP_CORRUPT', `an object inside a record of app ${this.app} is not one of its heap objects`, { field: 'record', app: this.app });
    this.ensureOid(cell);
    if (!cell.placed) this.namedYoung.add(cell);
    return new Ref(cell.oid, cell.kind);
  };

  constructor(readonly pager: Pager, readonly app: string, readonly maxObjectBytes: number, readonly useNursery: boolean) {
    this.alloc = new Allocator(pager, app);
    this.table = new ObjectTable(pager, this.alloc);
  }

  // ---- identity ----

  cellOf(handle: unknown): Cell | undefined {
    if (handle === null || typeof handle !== 'object') return undefined;
    const cell = handleCell(handle);
    return cell && cell.owner === this ? cell : undefined;
  }

  /** The handle of an object id, making an unloaded one when none is in memory. Bytes load at once (a Uint8Array cannot be a stub). */
  handleFor(oid: number, kind: Kind): object {
    const c = this.registry.get(oid)?.deref();
    if (c) return c.handle;
    const cell = this.newCell(oid, kind);
    this.track(cell);
    cell.placed = true;
    if (kind === 'bytes') this.load(cell);
    else this.handles.arm(cell);
    return cell.handle;
  }

  /** The cell of an object id (made unloaded if not in memory). */
  cellFor(oid: number, kind: Kind): Cell {
    return handleCell(this.handleFor(oid, kind))!;
  }

  private newCell(oid: number, kind: Kind): Cell {
    const cell = new Cell(oid, kind, this);
    this.handles.make(cell);
    bindHandle(cell.handler ? cell.storage : cell.handle, cell);
    return cell;
  }

  /** A bytes object's Uint8Array is its handle: bind it once the bytes are known. */
  bindBytes(cell: Cell, bytes: Uint8Array): void {
    (cell.storage as { bytes: Uint8Array }).bytes = bytes;
    cell.handle = bytes;
    bindHandle(bytes, cell);
  }

  private track(cell: Cell): void {
    this.registry.set(cell.oid, new WeakRef(cell));
    this.finalizer.register(cell, cell.oid);
  }

  private allocOid(): number {
    return this.freeOids.pop() ?? this.nextOid++;
  }

  /** Lowest ids first, so reused ids cluster in few object-table lines. */
  sortFreeOids(): void {
    this.freeOids.sort((a, b) => b - a);
  }

  /**
   * Object ids are given when an object first needs one (placed, or written into a record), not
   * at birth: nursery objects that die never take one, and survivors get ids in promotion
   * order, so their object-table entries share table lines.
   */
  ensureOid(cell: Cell): void {
    if (cell.oid !== 0) return;
    cell.oid = this.allocOid();
    this.track(cell);
    this.marker?.push(cell); // new during a collection: it survives it
  }

  /** A new object, loaded and empty. In the nursery unless the nursery is off (then placed, dirty). */
  create(kind: Kind): Cell {
    const cell = this.newCell(0, kind);
    cell.loaded = true;
    this.stats.allocated++;
    if (this.useNursery) {
      this.nurseryObjects++;
    } else {
      this.ensureOid(cell);
      cell.placed = true;
      cell.dirty = true;
      this.dirty.add(cell);
    }
    return cell;
  }

  /** The root object of a new heap. */
  createRoot(): Cell {
    const cell = this.newCell(ROOT_OID, 'object');
    this.track(cell);
    cell.loaded = true;
    cell.placed = true;
    cell.dirty = true;
    cell.approxBytes = 9;
    this.dirty.add(cell);
    return cell;
  }

  /** Gives a just-created object its size (no undo entry: a new object has no before); without a nursery it is placed at once. */
  sized(cell: Cell, approx: number): void {
    cell.approxBytes = approx;
    if (!cell.placed) this.nurseryBytes += approx;
    else if (cell.dirty) this.writeBack(cell);
  }

  // ---- loading ----

  /** The cell of a placed object known only by id (collections): in memory, or loaded now. */
  cellById(oid: number): Cell {
    const c = this.peek(oid);
    if (c) return c;
    const { rec, len, addr } = this.readRecord(oid, `object #${oid}`);
    const cell = this.newCell(oid, rec.kind);
    this.track(cell);
    cell.placed = true;
    this.fill(cell, rec, len, addr);
    return cell;
  }

  private readRecord(oid: number, from: string): { rec: DecodedRecord; len: number; addr: number } {
    const p = this.table.get(oid);
    if (!p) throw new FerryError('HEAP_CORRUPT', `object #${oid} of app ${this.app} has no record (dangling reference from ${from})`, { field: from, app: this.app, oid });
    const bytes = this.pager.read(p.addr, p.len);
    return { rec: decodeRecord(bytes, `object #${oid} of app ${this.app}`), len: p.len, addr: p.addr };
  }

  /** Loads a cell's record into its storage through the pager (the read barrier's slow path). */
  load(cell: Cell): void {
    if (cell.loaded) return;
    if (cell.dead) throw this.stale(cell);
    const { rec, len, addr } = this.readRecord(cell.oid, cell.path());
    this.fill(cell, rec, len, addr);
  }

  private fill(cell: Cell, rec: DecodedRecord, len: number, addr: number): void {
    if (rec.kind !== cell.kind) throw new FerryError('HEAP_CORRUPT', `object #${cell.oid} of app ${this.app} is a ${rec.kind} but is referenced as a ${cell.kind}`, { field: cell.path(), app: this.app, oid: cell.oid });
    const h = (v: unknown): unknown => {
      if (!(v instanceof Ref)) return v;
      const child = this.handleFor(v.oid, v.kind);
      const cc = handleCell(child)!;
      if (cc.parent === null && cc.oid !== ROOT_OID) {
        cc.parent = cell;
        cc.key = '<child>';
      }
      return child;
    };
    const st = cell.storage;
    switch (cell.kind) {
      case 'object': {
        const o = rec.value as Record<string, unknown>;
        for (const k of Object.keys(o)) (st as Record<string, unknown>)[k] = h(o[k]);
        for (const k of Object.keys(st)) if (typeof (st as Record<string, unknown>)[k] === 'object' && (st as Record<string, unknown>)[k] !== null) this.nameChild((st as Record<string, unknown>)[k] as object, cell, k);
        break;
      }
      case 'array': {
        const a = rec.value as unknown[];
        const t = st as unknown[];
        t.length = a.length;
        for (let i = 0; i < a.length; i++) {
          t[i] = h(a[i]);
          if (typeof t[i] === 'object' && t[i] !== null) this.nameChild(t[i] as object, cell, i);
        }
        break;
      }
      case 'map':
        for (const [k, v] of rec.value as Map<unknown, unknown>) Map.prototype.set.call(st, h(k), h(v));
        break;
      case 'set':
        for (const v of rec.value as Set<unknown>) Set.prototype.add.call(st, h(v));
        break;
      case 'bytes':
        this.bindBytes(cell, rec.value as Uint8Array);
        break;
    }
    cell.loaded = true;
    cell.placed = true;
    cell.approxBytes = len;
    this.stats.loads++;
    this.register(cell, addr);
    this.handles.disarm(cell);
  }

  private nameChild(child: object, parent: Cell, key: string | number): void {
    const cc = handleCell(child);
    if (cc && cc.parent === parent && cc.key === '<child>') cc.key = key;
  }

  /** Clears a loaded cell's storage (its line left memory) and arms its read traps. */
  private unload(cell: Cell): void {
    const st = cell.storage;
    switch (cell.kind) {
      case 'object':
        for (const k of Object.keys(st)) delete (st as Record<string, unknown>)[k];
        break;
      case 'array':
        (st as unknown[]).length = 0;
        break;
      case 'map':
        Map.prototype.clear.call(st);
        break;
      case 'set':
        Set.prototype.clear.call(st);
        break;
      case 'bytes':
        // A Uint8Array cannot be emptied: it stays loaded as long as what holds it, but its
        // line no longer holds it (else every bytes object ever read would stay in memory).
        this.unregister(cell);
        return;
    }
    cell.loaded = false;
    this.unregister(cell);
    this.handles.arm(cell);
  }

  private register(cell: Cell, addr: number): void {
    this.unregister(cell);
    const line = Math.floor(addr / this.pager.lineSize);
    cell.firstLine = line;
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
  }

  stale(cell: Cell): FerryError {
    return new FerryError('HEAP_CLOSED', `object ${cell.path()} is no longer in the heap of app ${this.app} (removed, or the heap was closed or rolled back)`, { field: cell.path(), app: this.app });
  }

  // ---- reference sampling (CLOCK) ----

  /** Arms the read traps of a line's loaded objects; false when it holds none (nothing to sample). */
  armLine(line: number): boolean {
    const set = this.lineCells.get(line);
    if (!set || set.size === 0) return false;
    for (const c of set) if (c.kind !== 'bytes') this.handles.arm(c);
    this.armedLines.add(line);
    return true;
  }

  /** An armed read trap fired: the object was used. */
  referenced(cell: Cell): void {
    this.handles.disarm(cell);
    if (cell.firstLine >= 0) {
      this.armedLines.delete(cell.firstLine);
      this.pager.slotOffset(cell.firstLine);
    }
  }

  // ---- changes ----

  /** The write barrier: records the undo entry, marks the cell (and its line) changed. */
  changed(cell: Cell, approxDelta: number): void {
    if (cell.dirty && this.undo === null && this.marker === null) {
      // Already dirty, so its line is too (a line is only cleaned after its objects are written back).
      cell.approxBytes += approxDelta;
      return;
    }
    if (cell.dead) throw this.stale(cell);
    if (!cell.loaded && cell.placed) this.load(cell);
    this.snapshotForMark(cell);
    if (this.undo && !this.undo.has(cell)) this.undo.set(cell, { value: snapshot(cell), approx: cell.approxBytes });
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

  /**
   * Snapshot-at-the-beginning barrier of an incremental mark: before an object changes for the
   * first time in the cycle, what it points at now is marked, so nothing reachable when the
   * cycle began can be lost by being moved behind an already-marked object.
   */
  snapshotForMark(cell: Cell): void {
    const m = this.marker;
    if (m === null || cell.markEpoch === m.epoch || !cell.loaded) return;
    cell.markEpoch = m.epoch;
    for (const k of children(cell)) m.push(k);
  }

  /** Notes that `parent` now points at `child` (the nursery's remembered set; the error path). */
  pointsAt(parent: Cell, child: Cell, key: string | number): void {
    if (parent.placed && !child.placed) this.remembered.add(parent);
    // The latest store names the path (an object moved to root.q is reported there, not where
    // it was made); a rollback's re-linking ('<child>') only fills a missing one.
    if (child.oid !== ROOT_OID && child !== parent && (key !== '<child>' || child.parent === null)) {
      child.parent = parent;
      child.key = key;
    }
  }

  /** Encodes a loaded cell's record. */
  encode(cell: Cell): Uint8Array {
    return encodeRecord(cell.kind, cell.kind === 'bytes' ? (cell.storage as { bytes: Uint8Array }).bytes : cell.storage, this.refOf);
  }

  /** Writes a changed (or new) record to its line, moving it when it outgrew its room. */
  writeBack(cell: Cell): void {
    const bytes = this.encode(cell);
    if (bytes.length > this.maxObjectBytes) {
      throw new FerryError('HEAP_VALUE_TOO_LARGE', `${cell.path()} encodes to ${bytes.length} bytes, over the ${this.maxObjectBytes}-byte object limit`, { field: cell.path(), app: this.app, bytes: bytes.length });
    }
    // Clean before anything can page: an eviction inside the allocation or the write below must
    // not write this object back a second time (it would move it under our feet).
    this.setClean(cell);
    try {
      const old = cell.placed || cell.oid !== 0 ? this.table.get(cell.oid) : undefined;
      if (old && bytes.length <= old.cap && old.cap - bytes.length <= MAX_SLACK) {
        this.pager.write(old.addr, bytes);
        if (bytes.length !== old.len) {
          // The table names the room beyond len in whole 16-byte units: the odd bytes it cannot
          // name are given back, or the line's live count would never drop to zero (a leak).
          const cap = bytes.length + Math.floor((old.cap - bytes.length) / SLACK_UNIT) * SLACK_UNIT;
          this.table.set(cell.oid, { addr: old.addr, len: bytes.length, cap });
          if (cap < old.cap) this.alloc.free(old.addr + cap, old.cap - cap);
        }
        if (cell.loaded) this.register(cell, old.addr);
      } else {
        this.place(cell, bytes, old);
      }
    } catch (e) {
      this.setDirty(cell);
      throw e;
    }
    cell.approxBytes = bytes.length;
    this.stats.recordsWritten++;
  }

  /** Moves a placed object to the allocation cursor (compaction). */
  relocate(cell: Cell): void {
    this.load(cell);
    const bytes = this.encode(cell);
    const wasDirty = cell.dirty;
    this.setClean(cell);
    try {
      this.place(cell, bytes, this.table.get(cell.oid));
    } catch (e) {
      // Not moved (no room): it stays where it is, with its unwritten changes still dirty.
      if (wasDirty) this.setDirty(cell);
      throw e;
    }
  }

  private setClean(cell: Cell): void {
    cell.dirty = false;
    this.dirty.delete(cell);
  }

  private setDirty(cell: Cell): void {
    cell.dirty = true;
    this.dirty.add(cell);
  }

  /** Places a record at a new address (new object, grown object, or compaction). */
  place(cell: Cell, bytes: Uint8Array, old: { addr: number; cap: number } | undefined): void {
    const ls = this.pager.lineSize;
    // Room to grow only for objects that have grown (moved because they outgrew their place):
    // most objects never change size, and slack on each would cost flash on every checkpoint.
    const grew = old !== undefined && bytes.length > old.cap;
    let cap = grew ? capacityFor(bytes.length, cell.kind !== 'bytes') : bytes.length;
    if (bytes.length <= ls && cap > ls) cap = bytes.length + Math.floor((ls - bytes.length) / SLACK_UNIT) * SLACK_UNIT;
    this.ensureOid(cell);
    const addr = this.alloc.alloc(cap);
    try {
      this.pager.write(addr, bytes);
      // A new id may need a new table line, and the heap may have none left.
      this.table.set(cell.oid, { addr, len: bytes.length, cap });
    } catch (e) {
      this.alloc.free(addr, cap);
      throw e;
    }
    if (!cell.placed) this.marker?.push(cell); // placed during a collection: it survives it
    cell.placed = true;
    if (cell.loaded) this.register(cell, addr);
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

  /** Pager hook: unload the objects of a line that left memory. */
  afterEvict(line: number): void {
    this.armedLines.delete(line);
    const set = this.lineCells.get(line);
    if (!set) return;
    for (const cell of [...set]) {
      if (cell.dirty) continue; // written back by beforeEvict; never dropped while changed
      this.unload(cell);
    }
  }

  /** Removes an object for good (a collection found it unreachable). */
  kill(cell: Cell | undefined, oid: number): void {
    if (oid === 0) {
      if (cell) this.bury(cell);
      return;
    }
    const p = cell?.placed === false ? undefined : this.table.get(oid);
    if (p) {
      this.alloc.free(p.addr, p.cap);
      this.table.clear(oid);
    }
    if (cell) this.bury(cell);
    this.registry.delete(oid);
    this.freeOids.push(oid);
  }

  /** Makes a cell's handle stale for good. */
  bury(cell: Cell): void {
    this.unregister(cell);
    this.dirty.delete(cell);
    this.remembered.delete(cell);
    cell.dead = true;
    if (cell.loaded) this.unload(cell);
    cell.loaded = false;
    this.handles.arm(cell);
  }

  /** Drops a buried cell's id from the registry (its id is about to name another object). */
  forget(cell: Cell): void {
    if (this.registry.get(cell.oid)?.deref() === cell) this.registry.delete(cell.oid);
  }

  /** A cell of an object id if one is in memory (collections). */
  peek(oid: number): Cell | undefined {
    return this.registry.get(oid)?.deref();
  }

  /** Every placed cell still alive in memory (held by app code or by a loaded object). */
  forEachPlacedCell(fn: (cell: Cell) => void): void {
    for (const ref of [...this.registry.values()]) {
      const c = ref.deref();
      if (c && c.placed && !c.dead) fn(c);
    }
  }

  /** Every placed cell in memory, and every nursery cell the heap still reaches (closing, rolling back). */
  forEachCell(fn: (cell: Cell) => void): void {
    const young: Cell[] = [];
    const seen = new Set<Cell>();
    const reach = (start: Cell) => {
      const stack = [start];
      while (stack.length > 0) {
        const c = stack.pop()!;
        if (c.kind === 'bytes' || !c.loaded) continue;
        for (const k of children(c)) {
          if (k.placed || seen.has(k)) continue;
          seen.add(k);
          young.push(k);
          stack.push(k);
        }
      }
    };
    for (const ref of this.registry.values()) {
      const c = ref.deref();
      if (c) reach(c);
    }
    for (const ref of [...this.registry.values()]) {
      const c = ref.deref();
      if (c) fn(c);
    }
    for (const c of young) fn(c);
  }

  // ---- savepoints ----

  rollback(): void {
    const undo = this.undo;
    this.undo = null;
    if (!undo) return;
    for (const [cell, before] of undo) {
      if (cell.dead) continue;
      if (!cell.loaded) this.load(cell);
      this.snapshotForMark(cell);
      restore(cell, before.value);
      const delta = before.approx - cell.approxBytes;
      this.changed(cell, delta);
      for (const child of children(cell)) this.pointsAt(cell, child, '<child>');
    }
  }
}

/** Child cells of a loaded cell. */
export function children(cell: Cell): Generator<Cell> {
  return childrenOf(cell.kind, cell.kind === 'bytes' ? null : cell.storage);
}

export function* childrenOf(kind: Kind, st: unknown): Generator<Cell> {
  const cellOf = handleCell;
  switch (kind) {
    case 'object':
      for (const k of Object.keys(st as object)) {
        const c = cellOf((st as Record<string, unknown>)[k]);
        if (c) yield c;
      }
      break;
    case 'array':
      for (const x of st as unknown[]) {
        const c = cellOf(x);
        if (c) yield c;
      }
      break;
    case 'map':
      for (const [k, x] of Map.prototype.entries.call(st as Map<unknown, unknown>)) {
        const a = cellOf(k);
        if (a) yield a;
        const b = cellOf(x);
        if (b) yield b;
      }
      break;
    case 'set':
      for (const x of Set.prototype.values.call(st as Set<unknown>)) {
        const c = cellOf(x);
        if (c) yield c;
      }
      break;
    default:
      break;
  }
}

/** A copy of a cell's storage for the undo log (as a plain value of the same kind). */
export function snapshot(cell: Cell): unknown {
  const st = cell.storage;
  switch (cell.kind) {
    case 'object': return { ...(st as object) };
    case 'array': return (st as unknown[]).slice();
    case 'map': return new Map(Map.prototype.entries.call(st as Map<unknown, unknown>));
    case 'set': return new Set(Set.prototype.values.call(st as Set<unknown>));
    case 'bytes': return (st as { bytes: Uint8Array }).bytes.slice();
  }
}

function restore(cell: Cell, value: unknown): void {
  const st = cell.storage;
  switch (cell.kind) {
    case 'object':
      for (const k of Object.keys(st)) delete (st as Record<string, unknown>)[k];
      Object.assign(st, value);
      break;
    case 'array': {
      const a = st as unknown[];
      a.length = 0;
      const v = value as unknown[];
      a.length = v.length;
      for (let i = 0; i < v.length; i++) if (i in v) a[i] = v[i];
      break;
    }
    case 'map':
      Map.prototype.clear.call(st);
      for (const [k, v] of value as Map<unknown, unknown>) Map.prototype.set.call(st, k, v);
      break;
    case 'set':
      Set.prototype.clear.call(st);
      for (const v of value as Set<unknown>) Set.prototype.add.call(st, v);
      break;
    case 'bytes':
      (st as { bytes: Uint8Array }).bytes.set(value as Uint8Array);
      break;
  }
}
