import { FerryError } from '../../core/errors.js';
import type { Cell } from './cell.js';
import { CELL, handleCell, type Handles, type ObjectSpace } from './object-space.js';
import { HeapMap, HeapSet } from './collections.js';
import { HeapArrayTarget, HeapObjectTarget, elementBytes } from './targets.js';
import { checkKey, importValue, importValues, keyBytes, slotBytes } from './values.js';

/** What handles need from their heap. */
export interface ProxyHost {
  readonly space: ObjectSpace;
  /** Throws unless the heap is open (and, for writes, writable). */
  check(write: boolean): void;
  /** Before a write stores `values`: the nursery budget (may throw for want of space; nothing is stored yet). */
  beforeStore(values: readonly unknown[]): void;
  /** After every write: triggers. Never throws. */
  afterWrite(): void;
}

/**
 * The object layer app code sees: `root` and everything reached from it behave as plain
 * objects, arrays, Maps, Sets and Uint8Arrays.
 *
 * Reads: a loaded object's Proxy has no read trap, so reads run at nearly native speed on its
 * storage. The read traps are switched on (`arm`) while the object is not loaded — the next
 * read loads it through the pager — and while its line is an eviction candidate, so a read
 * tells the pager the line is in use (CLOCK-style reference sampling).
 * Writes always trap: validation with the path, the object size limit, the undo log, dirty
 * marking and the nursery's remembered set (`assign`). A write is all or nothing: everything
 * that can fail (validation, the size limit, promotion for want of nursery room, faulting the
 * object in) happens before the store, and nothing after it throws.
 */
export class ProxyFactory implements Handles {
  constructor(private readonly host: ProxyHost) {}

  make(cell: Cell): void {
    switch (cell.kind) {
      case 'object':
      case 'array': {
        const target = cell.kind === 'array' ? new HeapArrayTarget() : new HeapObjectTarget();
        const h = Object.create(cell.kind === 'array' ? this.arrayTraps : this.objectTraps) as CellHandler;
        h.cell = cell;
        h.get = undefined;
        h.has = undefined;
        h.ownKeys = undefined;
        h.getOwnPropertyDescriptor = undefined;
        cell.handler = h;
        cell.storage = target;
        cell.handle = new Proxy(target, h);
        break;
      }
      case 'map': {
        const m = new HeapMap(cell, this);
        cell.storage = m;
        cell.handle = m;
        break;
      }
      case 'set': {
        const s = new HeapSet(cell, this);
        cell.storage = s;
        cell.handle = s;
        break;
      }
      case 'bytes':
        // The Uint8Array itself is the handle; it exists once the bytes are known.
        cell.storage = { bytes: new Uint8Array(0) };
        cell.handle = (cell.storage as { bytes: Uint8Array }).bytes;
        break;
    }
  }

  arm(cell: Cell): void {
    cell.armed = true;
    const h = cell.handler;
    if (!h) return;
    h.get = this.traps.get as ProxyHandler<object>['get'];
    h.has = this.traps.has as ProxyHandler<object>['has'];
    h.ownKeys = this.traps.ownKeys as ProxyHandler<object>['ownKeys'];
    h.getOwnPropertyDescriptor = this.traps.getOwnPropertyDescriptor as ProxyHandler<object>['getOwnPropertyDescriptor'];
  }

  disarm(cell: Cell): void {
    cell.armed = false;
    const h = cell.handler;
    if (!h) return;
    h.get = undefined;
    h.has = undefined;
    h.ownKeys = undefined;
    h.getOwnPropertyDescriptor = undefined;
  }

  /** The read barrier's slow path: load, or note the reference of an armed object. */
  read(cell: Cell): void {
    if (cell.dead) throw this.host.space.stale(cell);
    this.host.check(false);
    if (!cell.loaded) this.host.space.load(cell);
    else this.host.space.referenced(cell);
  }

  /** Read traps shared by all proxies (`this` is the cell's handler). */
  private readonly traps = (() => {
    const f = this;
    return {
      get(this: CellHandler, target: object, key: string | symbol, receiver: unknown) {
        if (key === CELL) return this.cell;
        f.read(this.cell);
        return Reflect.get(target, key, receiver);
      },
      has(this: CellHandler, target: object, key: string | symbol) {
        if (key === CELL) return true;
        f.read(this.cell);
        return Reflect.has(target, key);
      },
      ownKeys(this: CellHandler, target: object) {
        f.read(this.cell);
        return Reflect.ownKeys(target);
      },
      getOwnPropertyDescriptor(this: CellHandler, target: object, key: string | symbol) {
        f.read(this.cell);
        return Reflect.getOwnPropertyDescriptor(target, key);
      },
    };
  })();

  private readonly objectTraps = this.writeTraps(false);
  private readonly arrayTraps = this.writeTraps(true);

  /**
   * The write barrier for a slot: imports the new values (validated, with the path), checks the
   * object size limit, records the undo entry and marks the object changed, then stores.
   * `cost` gives the change in encoded size; nothing changes if anything is refused.
   */
  assign(cell: Cell, key: string | number, values: unknown[], cost: (stored: unknown[]) => number, store: (stored: unknown[]) => void): void {
    this.host.check(true);
    const space = this.host.space;
    if (cell.dead) throw space.stale(cell);
    // Import first: without a nursery, new objects are placed at once and may page this one
    // out; it is (re)loaded after, so the undo snapshot and the change see its storage.
    const stored = values.length === 1 ? [importValue(space, values[0], cell, key)] : importValues(space, values, cell, () => key);
    this.host.beforeStore(stored);
    if (!cell.loaded) space.load(cell);
    const delta = cost(stored);
    if (cell.approxBytes + delta > space.maxObjectBytes) {
      throw new FerryError('HEAP_VALUE_TOO_LARGE', `${cell.path(key)}: storing it would make ${cell.path()} about ${cell.approxBytes + delta} bytes, over the ${space.maxObjectBytes}-byte object limit (split it into smaller objects)`, { field: cell.path(key), limit: space.maxObjectBytes });
    }
    space.changed(cell, delta);
    store(stored);
    for (const s of stored) {
      if (s === null || typeof s !== 'object') continue;
      const child = handleCell(s)!;
      space.pointsAt(cell, child, key);
    }
    this.host.afterWrite();
  }

  /** Write barrier fast path, step 1: checks, loads, imports the value (objects and arrays). */
  prepare(cell: Cell, key: string | number, value: unknown): unknown {
    this.host.check(true);
    const space = this.host.space;
    if (cell.dead) throw space.stale(cell);
    let x = value;
    if (value === 0) x = 0; // -0 is stored as 0: CBOR integers have no negative zero
    else if (value !== null && (typeof value === 'object' || typeof value === 'string' || typeof value === 'function' || typeof value === 'symbol')) {
      x = importValue(space, value, cell, key);
      if (typeof x === 'object') this.host.beforeStore([x]);
    }
    // Loaded after the import (which may page, see assign), before the caller reads the slot.
    if (!cell.loaded) space.load(cell);
    return x;
  }

  /** Step 2: size limit, undo entry, dirty marking — before the slot changes. */
  change(cell: Cell, key: string | number, delta: number): void {
    const space = this.host.space;
    if (cell.approxBytes + delta > space.maxObjectBytes) {
      throw new FerryError('HEAP_VALUE_TOO_LARGE', `${cell.path(key)}: storing it would make ${cell.path()} about ${cell.approxBytes + delta} bytes, over the ${space.maxObjectBytes}-byte object limit (split it into smaller objects)`, { field: cell.path(key), limit: space.maxObjectBytes });
    }
    space.changed(cell, delta);
  }

  /** Step 3, after the slot changed: remembered set, triggers. */
  stored(cell: Cell, key: string | number, x: unknown): void {
    if (x !== null && typeof x === 'object') this.host.space.pointsAt(cell, handleCell(x)!, key);
    this.host.afterWrite();
  }

  /** `push` on a heap array without the generic per-element [[Set]] round trips; all or nothing. */
  push(cell: Cell, items: unknown[]): number {
    this.host.check(true);
    const space = this.host.space;
    if (cell.dead) throw space.stale(cell);
    const base = cell.loaded ? (cell.storage as unknown[]).length : 0;
    const xs = importValues(space, items, cell, (j) => base + j);
    this.host.beforeStore(xs);
    if (!cell.loaded) space.load(cell);
    const a = cell.storage as unknown[];
    let delta = 0;
    for (const x of xs) delta += slotBytes(x);
    const at = a.length;
    this.change(cell, at, delta);
    for (let j = 0; j < xs.length; j++) a[at + j] = xs[j];
    for (let j = 0; j < xs.length; j++) {
      const x = xs[j];
      if (x !== null && typeof x === 'object') space.pointsAt(cell, handleCell(x)!, at + j);
    }
    // The length before afterWrite: a collection there may page this array out (and empty it).
    const length = at + xs.length;
    this.host.afterWrite();
    return length;
  }

  /**
   * Every other array method that changes the array (pop, shift, unshift, splice, sort, reverse,
   * fill, copyWithin), all or nothing: `items` (the values the call stores) are imported first,
   * `run` applies the plain method to a copy of the elements, and the copy replaces them in one
   * change. The generic Proxy path would store element by element, so a refused value or a
   * failure halfway left the array half changed. Returns what the plain method returns.
   */
  arrayOp<R>(cell: Cell, items: readonly unknown[], keyOf: (j: number) => number, run: (copy: unknown[], items: unknown[]) => R): R {
    this.host.check(true);
    const space = this.host.space;
    if (cell.dead) throw space.stale(cell);
    const xs = importValues(space, items, cell, keyOf);
    this.host.beforeStore(xs);
    if (!cell.loaded) space.load(cell);
    const copy = (cell.storage as unknown[]).slice();
    const before = elementBytes(copy);
    const result = run(copy, xs);
    const out = copy === result ? cell.handle as R : result;
    // `run` may run app code (a comparator) that pages this array out: change() loads it again.
    this.change(cell, '<array>', elementBytes(copy) - before);
    const a = cell.storage as unknown[];
    a.length = 0;
    a.length = copy.length;
    for (let i = 0; i < copy.length; i++) if (i in copy) a[i] = copy[i];
    for (let i = 0; i < copy.length; i++) {
      const x = copy[i];
      if (x !== null && typeof x === 'object') space.pointsAt(cell, handleCell(x)!, i);
    }
    this.host.afterWrite();
    return out;
  }

  /** A mutation that stores no new value (delete, truncate, clear). */
  mutate(cell: Cell, delta: number, fn: () => void): void {
    this.host.check(true);
    const space = this.host.space;
    if (cell.dead) throw space.stale(cell);
    if (!cell.loaded) space.load(cell);
    space.changed(cell, delta);
    fn();
    this.host.afterWrite();
  }

  /** Write traps shared by every proxy of one kind (`this` is the cell's handler). */
  private writeTraps(isArray: boolean): ProxyHandler<object> {
    const f = this;
    const bad = (path: string, what: string) => new FerryError('HEAP_BAD_VALUE', `${path} ${what}`, { field: path });
    return {
      set(this: CellHandler, target, key, value) {
        const cell = this.cell;
        if (typeof key === 'symbol') throw bad(cell.path(), 'cannot take a symbol key');
        if (isArray) {
          const a = target as unknown[];
          if (key === 'length') {
            const n = Number(value);
            if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1) throw bad(`${cell.path()}.length`, `must be an integer ≥ 0, got ${String(value)}`);
            f.mutate(cell, 0, () => {
              let delta = 0;
              for (let i = n; i < a.length; i++) delta -= slotBytes(a[i]);
              delta += Math.max(0, n - a.length);
              cell.approxBytes += delta;
              if (!cell.placed) f.host.space.nurseryBytes += delta;
              a.length = n;
            });
            return true;
          }
          const i = arrayIndex(key);
          if (i < 0) throw bad(`${cell.path()}[${JSON.stringify(key)}]`, 'cannot be stored in the heap: arrays hold only indexed elements');
          const x = f.prepare(cell, i, value);
          f.change(cell, i, slotBytes(x) - (i < a.length ? slotBytes(a[i]) : -(i - a.length)));
          a[i] = x;
          f.stored(cell, i, x);
          return true;
        }
        if (key === '__proto__') throw bad(cell.path(key), 'cannot be stored in the heap: the key __proto__ is reserved');
        checkKey(key, () => cell.path(key));
        const o = target as Record<string, unknown>;
        const x = f.prepare(cell, key, value);
        f.change(cell, key, Object.hasOwn(o, key) ? slotBytes(x) - slotBytes(o[key]) : keyBytes(key) + slotBytes(x));
        o[key] = x;
        f.stored(cell, key, x);
        return true;
      },
      deleteProperty(this: CellHandler, target, key) {
        const cell = this.cell;
        if (typeof key === 'symbol') return true;
        if (!cell.loaded) f.read(cell);
        const o = target as Record<string, unknown>;
        if (!Object.hasOwn(o, key)) return true;
        const cost = (isArray ? 0 : keyBytes(key)) + slotBytes(o[key]);
        f.mutate(cell, isArray ? 1 - cost : -cost, () => { delete o[key]; });
        return true;
      },
      defineProperty(this: CellHandler, _target, key, desc) {
        const cell = this.cell;
        if (desc.get || desc.set || typeof key === 'symbol' || !('value' in desc)) throw bad(cell.path(String(key)), 'cannot be stored in the heap: only plain data properties');
        (cell.handle as Record<string, unknown>)[key] = desc.value;
        return true;
      },
      setPrototypeOf(this: CellHandler) {
        throw bad(this.cell.path(), 'cannot change its prototype');
      },
      // The storage of an object inherits util.inspect's hook (HeapObjectTarget); app code sees
      // a plain object's prototype. Arrays keep their own (Array.prototype's methods wrapped).
      ...(isArray ? {} : { getPrototypeOf: () => Object.prototype }),
      preventExtensions(this: CellHandler) {
        throw bad(this.cell.path(), 'cannot be frozen or sealed');
      },
    };
  }
}

function arrayIndex(key: string): number {
  const n = Number(key);
  return Number.isInteger(n) && n >= 0 && n < 2 ** 32 - 1 && String(n) === key ? n : -1;
}

/** A proxy's handler: traps come from a shared prototype; read traps are own properties, switched on and off. */
interface CellHandler extends ProxyHandler<object> {
  cell: Cell;
}
