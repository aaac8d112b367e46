import { FerryError, isFerryError } from '../../core/errors.js';
import { Cell } from './cell.js';
import { Marker, collectMajor, collectNursery, finishCollection, promoteIfRoom, type CompactMode, type MajorResult } from './collector.js';
import { encodeMeta, withReason } from './heap-meta.js';
import { reopenSpace } from './heap-open.js';
import { toPlain } from './plain-copy.js';
import { decodeRecord } from './record-codec.js';
import { ObjectSpace, ROOT_OID, handleCell } from './object-space.js';
import { heapClosed, resolveHeapOptions, type HeapOptions, type ResolvedHeapOptions } from './options.js';
import { Pager } from './pager.js';
import type { SystemArea } from './system-area.js';
import { ProxyFactory, type ProxyHost } from './proxies.js';
import { exportObjects, listLines, readLines, readMeta, type ExportedObject, type LineImage, type ObjectImage } from './migration.js';

export interface CheckpointResult {
  version: number;
  /** Lines the commit wrote (dirty at the checkpoint; pre-flushed ones were written earlier). */
  linesWritten: number;
  linesDeleted: number;
  /** Nursery objects promoted by this checkpoint. */
  promoted: number;
  /** Why it ran: `request`, `dirty-lines`, `interval`, `after-gc`, `suspend`. */
  reason: string;
  ms: number;
}

export interface HeapStats {
  faults: number;
  evictions: number;
  flushes: number;
  bytesFlushed: number;
  accesses: number;
  minorCollections: number;
  majorCollections: number;
  checkpoints: number;
  failedCheckpoints: number;
  objectsAllocated: number;
  promoted: number;
  diedYoung: number;
  /** Promoted ÷ (promoted + died young): how much of the nursery survives. */
  nurserySurvival: number;
  /** Resident lines × line size plus the nursery's bytes; never above the budget. */
  residentBytes: number;
  budgetBytes: number;
  /** Lines in use × line size. */
  virtualBytes: number;
  dirtyLines: number;
  /** True after a failed checkpoint until one succeeds: dirty lines cannot be paged out. */
  restricted: boolean;
}

/** @internal */
export interface HeapInternals {
  pager: Pager;
  space: ObjectSpace;
  /** A record as committed (the heap must have no changes since its last checkpoint). */
  committedRecord(oid: number): Uint8Array;
  installRecords(objects: Iterable<[number, Uint8Array]>, image: { nextOid: number; pins: number[] }, bad: (field: string, what: string) => FerryError): void;
}

export interface Savepoint {
  /** Puts every object changed since the savepoint back as it was. */
  rollback(): void;
  /** Keeps the changes. */
  release(): void;
  /** True once any heap object was written since the savepoint (a call that changed nothing needs no checkpoint). */
  changed(): boolean;
}

/** Opens an app's virtual persistent heap (creating it on first use). */
export function openHeap(options: HeapOptions): Heap {
  return new Heap(resolveHeapOptions(options));
}

/**
 * One app's virtual persistent heap: `root` is a plain-looking object graph whose objects live
 * in cache lines paged between a bounded in-memory arena and the store, checkpointed as store
 * versions. See agent/heap/DESIGN.md.
 */
export class Heap implements ProxyHost {
  space!: ObjectSpace;
  private pager!: Pager;
  private proxies!: ProxyFactory;
  private rootCell!: Cell;
  private closed = false;
  private userState: Uint8Array = new Uint8Array(0);
  private pins = new Map<Cell, number>();
  private collecting = false;
  /** A major collection spread over bookmarks (`collectStep`), or null. */
  private cycle: { marker: Marker; compact: CompactMode } | null = null;
  private firstChangeAt = 0;
  private lastGcAt = 0;
  /** Free lines right after the last major collection (see lowOnSpace). */
  private lowSpaceFloor = Infinity;
  private gcSinceCheckpoint = false;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private faultWindow = { accesses: 0, faults: 0 };
  private counters = { minor: 0, major: 0, checkpoints: 0, failedCheckpoints: 0 };
  /** The committed version the heap is at (0 before the first checkpoint). */
  version = 0;

  constructor(readonly options: ResolvedHeapOptions) {
    const { store, app } = options;
    if (!store.hasApp(app)) {
      if (options.readOnly) throw new FerryError('STORE_UNKNOWN_APP', `app ${app} has no heap to open read-only`, { field: 'options.app', app });
      store.createApp(app, { lineSize: options.lineSize, maxLines: options.maxLines + 1 });
    }
    const info = store.appInfo(app);
    if (info.lineSize !== options.lineSize) {
      throw new FerryError('HEAP_BAD_IMAGE', `app ${app} has ${info.lineSize}-byte lines but profile ${options.profile.name} uses ${options.lineSize}; move it at object level (exportObjects/importObjects)`, { field: 'options.profile', app });
    }
    let version = info.head;
    if (options.version !== undefined && options.version !== info.head) {
      if (!store.versions(app).some((v) => v.version === options.version)) {
        throw new FerryError('STORE_UNKNOWN_VERSION', `app ${app} has no checkpoint version ${options.version}`, { field: 'options.version', app });
      }
      version = options.readOnly ? options.version : store.restore(app, options.version, withReason(store.readState(app, { version: options.version }), app, `restore of ${options.version}`)).version;
    }
    this.load(version);
    this.lastGcAt = options.clock.now();
    if (options.autoCheckpoint && options.checkpointIntervalMs > 0) {
      this.timer = setInterval(() => this.runDue(), Math.min(options.checkpointIntervalMs, options.gcIntervalMs || Infinity));
      this.timer.unref();
    }
  }

  get app(): string {
    return this.options.app;
  }

  /** The app's object graph. */
  get root(): Record<string, unknown> {
    this.check(false);
    return this.rootCell.handle as Record<string, unknown>;
  }

  /** The device's system lines (read-only for apps), when the heap was opened with them. */
  get system(): Pick<SystemArea, 'get' | 'keys'> | undefined {
    const sys = this.options.system;
    return sys && { get: (k: string) => sys.get(k), keys: () => sys.keys() };
  }

  /** The non-heap state blob of the version the heap was opened at (or last checkpointed with). */
  get state(): Uint8Array {
    return this.userState.slice();
  }

  // ---- opening ----

  private load(version: number): void {
    const o = this.options;
    this.pager = new Pager(
      { store: o.store, app: o.app, lineSize: o.lineSize, slots: o.slots, evictBatch: o.evictBatch, freeSlots: o.freeSlots, readOnly: o.readOnly, readVersion: version },
      o.maxLines,
      { beforeEvict: (l) => this.space.beforeEvict(l), afterEvict: (l) => this.space.afterEvict(l), armLine: (l) => this.space.armLine(l), isArmed: (l) => this.space.armedLines.has(l) },
    );
    this.space = new ObjectSpace(this.pager, o.app, o.maxObjectBytes, o.nurseryBytes > 0);
    this.proxies = new ProxyFactory(this);
    this.space.handles = this.proxies;
    this.pins = new Map();
    this.cycle = null;
    this.version = version;
    this.firstChangeAt = 0;
    if (version === 0) {
      this.userState = new Uint8Array(0);
      this.rootCell = this.space.createRoot();
      return;
    }
    const meta = reopenSpace(o, this.pager, this.space, version);
    this.userState = meta.user;
    this.rootCell = this.space.cellFor(ROOT_OID, 'object');
    for (const oid of meta.pins) this.pins.set(this.space.cellById(oid), 1);
  }

  // ---- ProxyHost ----

  check(write: boolean): void {
    if (this.closed) throw heapClosed(this.options.app);
    if (write && this.options.readOnly) throw new FerryError('HEAP_READ_ONLY', `the heap of app ${this.options.app} was opened read-only at version ${this.version}`, { field: 'heap', app: this.options.app });
  }

  /**
   * Before a write stores anything: when the nursery is over its share of the budget, promote
   * it now, with the values about to be stored as extra roots. This is the step of a write
   * that can fail for want of space (HEAP_FULL, HEAP_NO_MEMORY); doing it before the store
   * keeps a write that throws from changing anything.
   */
  beforeStore(values: readonly unknown[]): void {
    if (this.collecting || this.space.nurseryBytes <= this.options.nurseryBytes) return;
    const young: Cell[] = [];
    for (const v of values) {
      const c = handleCell(v);
      if (c && !c.placed) young.push(c);
    }
    this.minorCollect(young);
  }

  /** After every write: never throws (the write has happened; see beforeStore). */
  afterWrite(): void {
    if (this.firstChangeAt === 0) this.firstChangeAt = this.options.clock.now();
    if (this.collecting) return;
    if (this.lowOnSpace()) {
      // A low-space collection is housekeeping: its failure is not the write's, and must not
      // make a write that took effect throw. It is reported like a failed automatic checkpoint.
      try {
        this.collect({ compact: 'sparse', conservative: true });
      } catch (e) {
        this.options.onCheckpointError?.(isFerryError(e) ? e : new FerryError('HEAP_CHECKPOINT_FAILED', String(e), { field: 'heap' }, { cause: e }));
      }
    }
    if (this.options.autoCheckpoint && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.runDue();
      });
    }
  }

  // ---- checkpoints ----

  /** Why a checkpoint is due now, or null. The runtime asks at bookmarks. */
  checkpointDue(): string | null {
    if (this.closed || this.options.readOnly) return null;
    if (this.gcSinceCheckpoint) return 'after-gc';
    if (this.pager.dirtySinceCheckpoint + this.space.dirty.size >= this.options.checkpointDirtyLines) return 'dirty-lines';
    const o = this.options;
    if (o.checkpointIntervalMs > 0 && this.firstChangeAt > 0 && o.clock.now() - this.firstChangeAt >= o.checkpointIntervalMs) return 'interval';
    return null;
  }

  /**
   * Free lines below the gcLowSpaceFraction reserve, and a quarter of the reserve used up since
   * the last major collection: when the live data itself fills the reserve, a collection frees
   * little, and without the second condition every write would run another one.
   */
  private lowOnSpace(): boolean {
    const o = this.options;
    if (o.gcLowSpaceFraction <= 0) return false;
    const reserve = o.gcLowSpaceFraction * o.maxLines;
    const free = this.space.alloc.freeLineCount();
    if (free >= reserve) {
      this.lowSpaceFloor = Infinity;
      return false;
    }
    return free < this.lowSpaceFloor - Math.max(1, Math.floor(reserve / 4));
  }

  /** Why a major collection is due now, or null. */
  collectionDue(): string | null {
    if (this.closed || this.options.readOnly || this.collecting) return null;
    const o = this.options;
    if (this.lowOnSpace()) return 'low-space';
    if (o.gcIntervalMs > 0 && o.clock.now() - this.lastGcAt >= o.gcIntervalMs) return 'interval';
    const s = this.pager.stats;
    const da = s.accesses - this.faultWindow.accesses;
    if (da >= 10_000) {
      const rate = (s.faults - this.faultWindow.faults) / da;
      this.faultWindow = { accesses: s.accesses, faults: s.faults };
      if (o.gcPagingFaultRate > 0 && rate > o.gcPagingFaultRate) return 'paging';
    }
    return null;
  }

  /**
   * Runs whatever collection and checkpoint is due. Never throws: failures go to
   * onCheckpointError. `bookmark: true` says no app code is in progress (the runtime calls it
   * between handlers), so the collection may be precise; the heap's own timers call it between
   * JavaScript tasks, where an async handler may still hold objects in locals, so there it is
   * conservative.
   */
  runDue(options: { bookmark?: boolean } = {}): void {
    try {
      // Collections run one working set per call (`collectStep`); excessive paging asks for a
      // full re-layout, which is done at once.
      const gc = this.cycle ? 'cycle' : this.collectionDue();
      if (gc === 'paging') this.collect({ compact: 'full', conservative: options.bookmark !== true });
      else if (gc) this.collectStep({ conservative: options.bookmark !== true });
      const why = this.checkpointDue();
      if (why) this.checkpoint({ reason: why, state: this.options.stateProvider?.() });
      // Background pre-flush: past half the dirty-line trigger, write the oldest dirty lines
      // into the open transaction now, so the checkpoint itself stays short.
      else if (this.pager.table.dirtyCount * 2 >= this.options.checkpointDirtyLines) this.preflush();
    } catch (e) {
      if (isFerryError(e)) this.options.onCheckpointError?.(e);
      else this.options.onCheckpointError?.(new FerryError('HEAP_CHECKPOINT_FAILED', String(e), { field: 'heap' }, { cause: e }));
    }
  }

  /**
   * Commits every change since the last checkpoint and `state` (the caller's non-heap state;
   * default: unchanged) as one store version. On failure the previous version stays current
   * and HEAP_CHECKPOINT_FAILED is thrown; see DESIGN.md for the restriction that follows.
   */
  checkpoint(options: { state?: Uint8Array; reason?: string } = {}): CheckpointResult {
    this.check(true);
    if (this.collecting) throw new FerryError('HEAP_BUSY', `a checkpoint cannot run during a collection (app ${this.app})`, { field: 'heap', app: this.app });
    if (options.state !== undefined && !(options.state instanceof Uint8Array)) throw new FerryError('BAD_OPTION', `options.state must be a Uint8Array`, { field: 'options.state' });
    const t0 = performance.now();
    let minor: { promoted: number; died: number };
    try {
      minor = this.minorCollect();
      // A write-back may page lines out, and eviction writes back (and unloads) other dirty cells
      // of this snapshot: write only those still dirty.
      for (const c of [...this.space.dirty]) if (c.dirty) this.space.writeBack(c);
    } catch (e) {
      // Nothing was committed and every change is still in the heap (placing is not committing):
      // the same outcome as a failed commit with no lines lost.
      this.counters.failedCheckpoints++;
      const code = isFerryError(e) ? e.code : 'INTERNAL';
      const lost = this.pager.lost.size;
      if (lost > 0) {
        // Paged-out lines were lost with an aborted transaction: the write-backs reached one.
        this.rollbackToCommitted();
        throw new FerryError('HEAP_CHECKPOINT_FAILED', `checkpoint of app ${this.app} failed: ${lost} paged-out lines were lost when the store failed a write, so the heap went back to version ${this.version}`, { field: 'heap', app: this.app, rolledBack: true, cause: code }, { cause: e });
      }
      throw new FerryError('HEAP_CHECKPOINT_FAILED', `checkpoint of app ${this.app} failed before its commit (${code}: ${(e as Error).message}); version ${this.version} stays current and changes stay in memory`, { field: 'heap', app: this.app, rolledBack: false, cause: code }, { cause: e });
    }
    const user = options.state ?? this.userState;
    const meta = encodeMeta({
      lineSize: this.options.lineSize, hwm: this.space.alloc.hwm, nextOid: this.space.nextOid,
      tablePages: this.space.table.pages, pins: [...this.pins.keys()].map((c) => c.oid), user, reason: options.reason ?? 'request',
    });
    const res = this.pager.commit(meta);
    if ('error' in res) {
      this.counters.failedCheckpoints++;
      const rolledBack = res.lostLines > 0;
      if (rolledBack) this.rollbackToCommitted();
      throw new FerryError('HEAP_CHECKPOINT_FAILED', `checkpoint of app ${this.app} failed (${res.error.code}: ${res.error.message}); version ${this.version} stays current${rolledBack ? `; ${res.lostLines} paged-out lines were lost, so the heap went back to version ${this.version}` : '; changes stay in memory and dirty lines stay resident until a checkpoint succeeds'}`, { field: 'heap', app: this.app, rolledBack, cause: res.error.code }, { cause: res.error });
    }
    this.version = res.version;
    this.userState = user.slice();
    this.firstChangeAt = 0;
    this.gcSinceCheckpoint = false;
    this.counters.checkpoints++;
    return { version: res.version, linesWritten: res.linesWritten, linesDeleted: res.linesDeleted, promoted: minor.promoted, reason: options.reason ?? 'request', ms: performance.now() - t0 };
  }

  /** Background pre-flush: writes up to `maxLines` dirty lines into the open transaction so the next checkpoint is short. */
  preflush(maxLines = this.options.evictBatch * 4): number {
    this.check(true);
    return this.pager.preflush(maxLines, (line) => this.space.beforeEvict(line));
  }

  /** After a failed checkpoint that lost paged-out lines: go back to the committed version. */
  private rollbackToCommitted(): void {
    this.space.forEachCell((c) => this.space.bury(c));
    this.pager.reset();
    this.load(this.version);
  }

  // ---- collections ----

  private minorCollect(extraRoots: Cell[] = []): { promoted: number; died: number } {
    if (this.space.nurseryObjects === 0 && this.space.remembered.size === 0) return { promoted: 0, died: 0 };
    this.collecting = true;
    try {
      this.counters.minor++;
      return collectNursery(this.space, [...this.pins.keys(), ...extraRoots]);
    } finally {
      this.collecting = false;
    }
  }

  /**
   * Major collection: mark from root, pins and an open savepoint's undo log, sweep, compact
   * (`sparse` by default). Call it at a bookmark (between handlers): objects app code holds
   * only in local variables are not roots. `conservative` also keeps every object still alive
   * in memory — what a collection started inside app code (by a write, on low space) uses.
   */
  collect(options: { compact?: CompactMode; conservative?: boolean } = {}): MajorResult {
    this.check(true);
    if (this.cycle) {
      // Finish the collection in progress at once (its snapshot keeps it correct here too).
      while (!this.collectStep({ maxLines: Infinity, compact: options.compact }).done);
      return this.lastMajor!;
    }
    this.collecting = true;
    try {
      const r = collectMajor(this.space, this.rootCell, [...this.pins.keys()], options.compact ?? 'sparse', options.conservative === true);
      this.collected(r);
      return r;
    } finally {
      this.collecting = false;
    }
  }

  private lastMajor: MajorResult | undefined;

  private collected(r: MajorResult): void {
    this.counters.major++;
    this.counters.minor++;
    this.lastGcAt = this.options.clock.now();
    this.lowSpaceFloor = this.space.alloc.freeLineCount();
    this.gcSinceCheckpoint = true;
    this.lastMajor = r;
  }

  /**
   * One step of a major collection spread over bookmarks, so no step pages more than one
   * working set (half the budget's lines) in: the first call starts the cycle (a minor
   * collection, then the mark's roots), each call marks up to `maxLines` faulted lines, and the
   * call that completes the mark sweeps and compacts. Checkpoints may run between steps. The
   * runtime calls it at bookmarks; `runDue` does too while a cycle is in progress.
   */
  collectStep(options: { maxLines?: number; conservative?: boolean; compact?: CompactMode } = {}): { done: boolean; result?: MajorResult } {
    this.check(true);
    this.collecting = true;
    try {
      if (!this.cycle) {
        promoteIfRoom(this.space, [...this.pins.keys()]);
        this.counters.minor++;
        const marker = new Marker(this.space, [this.rootCell, ...this.pins.keys()], options.conservative === true);
        this.cycle = { marker, compact: options.compact ?? 'sparse' };
        this.space.marker = marker;
      }
      const cycle = this.cycle;
      if (options.compact) cycle.compact = options.compact;
      if (!cycle.marker.step(options.maxLines ?? Math.max(1, Math.floor(this.options.slots / 2)))) return { done: false };
      // Objects created since the cycle began are placed (and so marked) before the sweep.
      const minor = promoteIfRoom(this.space, [...this.pins.keys()]);
      this.space.marker = null;
      this.cycle = null;
      const done = finishCollection(this.space, this.rootCell, cycle.marker, cycle.compact);
      const result: MajorResult = { ...(minor ?? promoteIfRoom(this.space, [...this.pins.keys()]) ?? { promoted: 0, died: 0 }), ...done };
      this.collected(result);
      return { done: true, result };
    } finally {
      this.collecting = false;
    }
  }

  // ---- savepoints, pins, helpers ----

  /** Starts an undo log: the runtime runs each handler inside one. One at a time. */
  savepoint(): Savepoint {
    this.check(true);
    if (this.space.undo) throw new FerryError('HEAP_BUSY', `app ${this.app} already has an open savepoint`, { field: 'heap', app: this.app });
    const undo = new Map();
    this.space.undo = undo;
    return {
      rollback: () => {
        if (this.space.undo === undo) this.space.rollback();
      },
      release: () => {
        if (this.space.undo === undo) this.space.undo = null;
      },
      changed: () => undo.size > 0,
    };
  }

  /** Keeps an object alive and reachable for the runtime even when nothing in `root` points at it. */
  pin(obj: object): number {
    const cell = this.cellOf(obj, 'pin');
    this.pins.set(cell, (this.pins.get(cell) ?? 0) + 1);
    this.cycle?.marker.push(cell);
    return cell.oid;
  }

  unpin(obj: object): void {
    const cell = this.cellOf(obj, 'unpin');
    const n = (this.pins.get(cell) ?? 1) - 1;
    if (n <= 0) this.pins.delete(cell);
    else this.pins.set(cell, n);
  }

  /** Objects pinned (they survive restarts: their ids are in the checkpoint). */
  pinned(): unknown[] {
    return [...this.pins.keys()].map((c) => c.handle);
  }

  /** Marks an object changed after an in-place change the barrier cannot see (a Uint8Array's bytes). */
  touch(obj: object): void {
    this.check(true);
    const cell = this.cellOf(obj, 'touch');
    if (cell.dead) throw this.space.stale(cell);
    this.space.load(cell);
    this.space.changed(cell, 0);
    this.afterWrite();
  }

  private cellOf(obj: object, what: string): Cell {
    const owned = handleCell(obj);
    if (!owned || owned.owner !== this.space) throw new FerryError('HEAP_FOREIGN_OBJECT', `${what}() takes an object read from this heap (app ${this.app})`, { field: 'obj' });
    return owned;
  }

  /** A plain deep copy of a heap value (shared references and cycles kept). */
  toPlain(value: unknown): unknown {
    return toPlain(value);
  }

  stats(): HeapStats {
    const p = this.pager.stats;
    const s = this.space.stats;
    return {
      faults: p.faults, evictions: p.evictions, flushes: p.flushes, bytesFlushed: p.bytesFlushed, accesses: p.accesses,
      minorCollections: this.counters.minor, majorCollections: this.counters.major,
      checkpoints: this.counters.checkpoints, failedCheckpoints: this.counters.failedCheckpoints,
      objectsAllocated: s.allocated, promoted: s.promoted, diedYoung: s.diedYoung,
      nurserySurvival: s.promoted + s.diedYoung === 0 ? 1 : s.promoted / (s.promoted + s.diedYoung),
      residentBytes: this.pager.residentBytes + Math.max(0, this.space.nurseryBytes),
      budgetBytes: this.options.budgetBytes,
      virtualBytes: this.space.alloc.linesInUse() * this.options.lineSize,
      dirtyLines: this.pager.dirtySinceCheckpoint,
      restricted: this.pager.restricted,
    };
  }

  /** @internal for migration and tests */
  get internals(): HeapInternals {
    const heap = this;
    return {
      pager: this.pager,
      space: this.space,
      committedRecord: (oid) => {
        if (this.space.dirty.size > 0 || this.space.nurseryObjects > 0 || this.pager.dirtySinceCheckpoint > 0) {
          throw new FerryError('HEAP_BUSY', `app ${this.app} has changes since its last checkpoint; checkpoint before exporting`, { field: 'heap', app: this.app });
        }
        const p = this.space.table.get(oid);
        if (!p) throw new FerryError('HEAP_CORRUPT', `object #${oid} of app ${this.app} has no record`, { field: 'object', app: this.app, oid });
        return this.pager.read(p.addr, p.len);
      },
      installRecords(objects, image, bad) {
        heap.installRecords(objects, image, bad);
      },
    };
  }

  private installRecords(objects: Iterable<[number, Uint8Array]>, image: { nextOid: number; pins: number[] }, bad: (field: string, what: string) => FerryError): void {
    this.check(true);
    if (this.version !== 0) throw bad('app', 'already has a heap here');
    // Drop the empty root a fresh heap starts with: the image brings its own.
    this.space.bury(this.rootCell);
    this.space.forget(this.rootCell);
    this.space.dirty.clear();
    let max = ROOT_OID;
    const placed = new Set<number>();
    let i = 0;
    for (const [oid, record] of objects) {
      const at = `objects[${i++}]`;
      if (!Number.isInteger(oid) || oid < 1 || oid >= 2 ** 31) throw bad(`${at}.oid`, `must be an integer ≥ 1, got ${String(oid)}`);
      if (placed.has(oid)) throw bad(`${at}.oid`, `${oid} appears twice`);
      if (!(record instanceof Uint8Array) || record.length === 0 || record.length > this.options.maxObjectBytes) throw bad(`${at}.record`, `must be 1..${this.options.maxObjectBytes} bytes of CBOR`);
      try {
        decodeRecord(record, at);
      } catch (e) {
        throw bad(`${at}.record`, `is not a heap record (${(e as Error).message})`);
      }
      const addr = this.space.alloc.alloc(record.length);
      this.pager.write(addr, record);
      this.space.table.set(oid, { addr, len: record.length, cap: record.length });
      placed.add(oid);
      if (oid > max) max = oid;
    }
    if (!placed.has(ROOT_OID)) throw bad('objects', 'lack the root object (id 1)');
    this.space.nextOid = Math.max(max + 1, image.nextOid);
    for (let oid = this.space.nextOid - 1; oid > ROOT_OID; oid--) if (!placed.has(oid)) this.space.freeOids.push(oid);
    this.rootCell = this.space.cellFor(ROOT_OID, 'object');
    for (const oid of image.pins) if (placed.has(oid)) this.pins.set(this.space.cellById(oid), 1);
  }

  // ---- migration (see migration.ts) ----

  /** Lines of the committed version with their content hashes and types. */
  listLines(): LineImage[] {
    this.check(false);
    return listLines(this);
  }

  /** Raw committed bytes of lines. */
  readLines(lines: readonly number[]): Uint8Array[] {
    this.check(false);
    return readLines(this, lines);
  }

  /** The metadata blob that travels with the lines. */
  readMeta(): Uint8Array {
    this.check(false);
    return readMeta(this);
  }

  /** Object-level export of the committed version (checkpoint first). */
  exportObjects(): Generator<ExportedObject, ObjectImage> {
    this.check(false);
    return exportObjects(this);
  }

  /** Checkpoints (reason `suspend`) and closes: frees the in-memory heap. */
  suspend(state?: Uint8Array): CheckpointResult {
    const r = this.checkpoint({ state, reason: 'suspend' });
    this.close();
    return r;
  }

  /** Closes without a checkpoint: changes since the last one are dropped; objects read from the heap go stale. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.pager.reset();
    this.space.forEachCell((c) => this.space.bury(c));
  }
}
