import { inspect } from 'node:util';
import { FerryError } from '../../core/errors.js';
import { Cell } from './cell.js';
import type { ObjectSpace } from './object-space.js';
import { CONTAINER_BYTES, importValue, keyBytes, proxyCells, slotBytes } from './values.js';

/** What proxies need from their heap. */
export interface ProxyHost {
  readonly space: ObjectSpace;
  /** Throws unless the heap is open (and, for writes, writable). */
  check(write: boolean): void;
  /** After every write: nursery budget, checkpoint triggers. */
  afterWrite(): void;
  /** A plain deep copy for inspection. */
  toPlain(value: unknown): unknown;
}

/**
 * The object layer app code sees: `root` and everything reached from it behave as plain
 * objects, arrays, Maps, Sets and Uint8Arrays. Every property read goes through `load` (the
 * read barrier, which faults the object's line in); every write through `assign` (the write
 * barrier: validation with the path, undo log, dirty marking, remembered set).
 */
export class ProxyFactory {
  constructor(private readonly host: ProxyHost) {}

  /** The app-facing form of a stored slot value. */
  out(parent: Cell, key: string | number, v: unknown): unknown {
    if (!(v instanceof Cell)) return v;
    if (v.oid !== 1 && v !== parent) {
      // The path errors name is the one app code used last.
      v.parent = parent;
      v.key = key;
    }
    return this.of(v);
  }

  of(cell: Cell): unknown {
    if (cell.proxy) {
      if (cell.kind === 'bytes' && cell.value === undefined) this.host.space.load(cell);
      return cell.proxy;
    }
    this.host.space.load(cell);
    let p: object;
    switch (cell.kind) {
      case 'object': p = new Proxy({}, this.objectHandler(cell, false)); break;
      case 'array': p = new Proxy([], this.objectHandler(cell, true)); break;
      case 'map': p = new HeapMap(cell, this); break;
      case 'set': p = new HeapSet(cell, this); break;
      case 'bytes': p = cell.value as Uint8Array; break;
    }
    proxyCells.set(p, { cell, space: this.host.space });
    cell.proxy = p;
    return p;
  }

  load(cell: Cell): unknown {
    this.host.check(false);
    return this.host.space.load(cell);
  }

  /**
   * The write barrier for a slot: imports the new values (validated, with the path), checks the
   * object size limit, records the undo entry and marks the object changed, then stores.
   * `cost` gives the change in encoded size; nothing is changed if anything is refused.
   */
  assign(cell: Cell, key: string | number, values: unknown[], cost: (stored: unknown[]) => number, store: (stored: unknown[]) => void): void {
    this.host.check(true);
    const space = this.host.space;
    space.load(cell);
    const stored = values.map((v) => importValue(space, v, cell.path(key)));
    const delta = cost(stored);
    if (cell.approxBytes + delta > space.maxObjectBytes) {
      throw new FerryError('HEAP_VALUE_TOO_LARGE', `${cell.path(key)}: storing it would make ${cell.path()} about ${cell.approxBytes + delta} bytes, over the ${space.maxObjectBytes}-byte object limit (split it into smaller objects)`, { field: cell.path(key), limit: space.maxObjectBytes });
    }
    space.changed(cell, delta);
    store(stored);
    for (const s of stored) {
      if (!(s instanceof Cell)) continue;
      const fresh = s.parent === null;
      space.pointsAt(cell, s);
      if (fresh && s.parent === cell) s.key = key;
    }
    this.host.afterWrite();
  }

  /** A mutation without a new value (delete, truncate, clear, sort). */
  mutate(cell: Cell, delta: number, fn: () => void): void {
    this.host.check(true);
    this.host.space.load(cell);
    this.host.space.changed(cell, delta);
    fn();
    this.host.afterWrite();
  }

  private objectHandler(cell: Cell, isArray: boolean): ProxyHandler<object> {
    const f = this;
    const val = () => f.load(cell) as Record<string, unknown> & unknown[];
    const index = (key: string): number => {
      const n = Number(key);
      return Number.isInteger(n) && n >= 0 && String(n) === key ? n : -1;
    };
    return {
      get(target, key, receiver) {
        if (typeof key === 'symbol') {
          if (key === inspect.custom) return () => f.host.toPlain(receiver);
          return Reflect.get(target, key, receiver);
        }
        const v = val();
        if (Object.hasOwn(v, key)) return f.out(cell, isArray ? Number(key) : key, v[key as never]);
        return Reflect.get(target, key, receiver);
      },
      set(_t, key, value) {
        if (typeof key === 'symbol') throw new FerryError('HEAP_BAD_VALUE', `${cell.path()} cannot take a symbol key`, { field: cell.path() });
        if (isArray) {
          if (key === 'length') {
            const a = val();
            const n = Number(value);
            if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1) throw new FerryError('HEAP_BAD_VALUE', `${cell.path()}.length must be an integer ≥ 0, got ${String(value)}`, { field: `${cell.path()}.length` });
            let delta = 0;
            for (let i = n; i < a.length; i++) delta -= slotBytes(a[i]);
            delta += Math.max(0, n - a.length);
            f.mutate(cell, delta, () => { a.length = n; });
            return true;
          }
          const i = index(key);
          if (i < 0) throw new FerryError('HEAP_BAD_VALUE', `${cell.path()}[${JSON.stringify(key)}] is not an array index (arrays hold only indexed elements)`, { field: `${cell.path()}[${JSON.stringify(key)}]` });
          f.assign(cell, i, [value], ([x]) => {
            const a = val();
            return slotBytes(x) - (i < a.length ? slotBytes(a[i]) : -(i - a.length));
          }, ([x]) => { val()[i] = x; });
          return true;
        }
        if (key === '__proto__') throw new FerryError('HEAP_BAD_VALUE', `${cell.path(key)} cannot be stored in the heap: the key __proto__ is reserved`, { field: cell.path(key) });
        f.assign(cell, key, [value], ([x]) => {
          const o = val();
          return keyBytes(key) + slotBytes(x) - (Object.hasOwn(o, key) ? keyBytes(key) + slotBytes(o[key]) : 0);
        }, ([x]) => { val()[key] = x; });
        return true;
      },
      deleteProperty(_t, key) {
        if (typeof key === 'symbol') return true;
        const v = val();
        if (!Object.hasOwn(v, key)) return true;
        const cost = (isArray ? 0 : keyBytes(key)) + slotBytes(v[key as never]);
        f.mutate(cell, isArray ? 1 - cost : -cost, () => { delete v[key as never]; });
        return true;
      },
      has(target, key) {
        if (typeof key === 'symbol') return Reflect.has(target, key);
        return Object.hasOwn(val(), key) || Reflect.has(target, key);
      },
      ownKeys() {
        const keys = Reflect.ownKeys(val());
        return isArray && !keys.includes('length') ? [...keys, 'length'] : keys;
      },
      getOwnPropertyDescriptor(_t, key) {
        const v = val();
        if (isArray && key === 'length') return { value: v.length, writable: true, enumerable: false, configurable: false };
        if (typeof key === 'symbol' || !Object.hasOwn(v, key)) return undefined;
        return { value: f.out(cell, isArray ? Number(key) : key, v[key as never]), writable: true, enumerable: true, configurable: true };
      },
      defineProperty(_t, key, desc) {
        if (desc.get || desc.set || typeof key === 'symbol') throw new FerryError('HEAP_BAD_VALUE', `${cell.path(String(key))} cannot be stored in the heap: only plain data properties`, { field: cell.path(String(key)) });
        if ('value' in desc) (f.of(cell) as Record<string, unknown>)[key] = desc.value;
        return true;
      },
      setPrototypeOf() {
        throw new FerryError('HEAP_BAD_VALUE', `${cell.path()} cannot change its prototype`, { field: cell.path() });
      },
      preventExtensions() {
        throw new FerryError('HEAP_BAD_VALUE', `${cell.path()} cannot be frozen or sealed`, { field: cell.path() });
      },
    };
  }
}

/** A Map whose entries live in the heap. Keys that are heap objects compare by identity. */
export class HeapMap<K = unknown, V = unknown> extends Map<K, V> {
  #cell: Cell;
  #f: ProxyFactory;

  constructor(cell: Cell, f: ProxyFactory) {
    super();
    this.#cell = cell;
    this.#f = f;
  }

  #m(): Map<unknown, unknown> {
    return this.#f.load(this.#cell) as Map<unknown, unknown>;
  }

  /** A key as stored: heap objects by their cell; other objects are not valid keys unless stored. */
  #key(k: unknown): unknown {
    if (k !== null && typeof k === 'object') return proxyCells.get(k)?.cell ?? k;
    return k;
  }

  override get size(): number {
    return this.#m().size;
  }

  override get(k: K): V | undefined {
    const m = this.#m();
    const sk = this.#key(k);
    return m.has(sk) ? (this.#f.out(this.#cell, String(k), m.get(sk)) as V) : undefined;
  }

  override has(k: K): boolean {
    return this.#m().has(this.#key(k));
  }

  override set(k: K, v: V): this {
    const label = typeof k === 'string' ? JSON.stringify(k) : String(k);
    const known = this.#key(k);
    this.#f.assign(this.#cell, `.get(${label})`, [k, v], ([sk, sv]) => {
      const m = this.#m();
      const key = known instanceof Cell ? known : sk;
      return m.has(key) ? slotBytes(sv) - slotBytes(m.get(key)) : slotBytes(sk) + slotBytes(sv);
    }, ([sk, sv]) => {
      const m = this.#m();
      m.set(m.has(known) ? known : sk, sv);
    });
    return this;
  }

  override delete(k: K): boolean {
    const m = this.#m();
    const sk = this.#key(k);
    if (!m.has(sk)) return false;
    this.#f.mutate(this.#cell, -(slotBytes(sk) + slotBytes(m.get(sk))), () => m.delete(sk));
    return true;
  }

  override clear(): void {
    const m = this.#m();
    if (m.size === 0) return;
    this.#f.mutate(this.#cell, CONTAINER_BYTES - this.#cell.approxBytes, () => m.clear());
  }

  override forEach(fn: (v: V, k: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }

  override *entries(): MapIterator<[K, V]> {
    for (const [k, v] of [...this.#m()]) yield [this.#f.out(this.#cell, '<key>', k) as K, this.#f.out(this.#cell, String(k), v) as V];
  }

  override *keys(): MapIterator<K> {
    for (const k of [...this.#m().keys()]) yield this.#f.out(this.#cell, '<key>', k) as K;
  }

  override *values(): MapIterator<V> {
    for (const [k, v] of [...this.#m()]) yield this.#f.out(this.#cell, String(k), v) as V;
  }

  override [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  [inspect.custom](): unknown {
    return this.#f['host'].toPlain(this);
  }
}

/** A Set whose members live in the heap. */
export class HeapSet<T = unknown> extends Set<T> {
  #cell: Cell;
  #f: ProxyFactory;

  constructor(cell: Cell, f: ProxyFactory) {
    super();
    this.#cell = cell;
    this.#f = f;
  }

  #s(): Set<unknown> {
    return this.#f.load(this.#cell) as Set<unknown>;
  }

  #key(k: unknown): unknown {
    if (k !== null && typeof k === 'object') return proxyCells.get(k)?.cell ?? k;
    return k;
  }

  override get size(): number {
    return this.#s().size;
  }

  override has(v: T): boolean {
    return this.#s().has(this.#key(v));
  }

  override add(v: T): this {
    if (this.has(v)) return this;
    this.#f.assign(this.#cell, '<member>', [v], ([x]) => slotBytes(x), ([x]) => { this.#s().add(x); });
    return this;
  }

  override delete(v: T): boolean {
    const s = this.#s();
    const k = this.#key(v);
    if (!s.has(k)) return false;
    this.#f.mutate(this.#cell, -slotBytes(k), () => s.delete(k));
    return true;
  }

  override clear(): void {
    const s = this.#s();
    if (s.size === 0) return;
    this.#f.mutate(this.#cell, CONTAINER_BYTES - this.#cell.approxBytes, () => s.clear());
  }

  override forEach(fn: (v: T, v2: T, set: Set<T>) => void, thisArg?: unknown): void {
    for (const v of this.values()) fn.call(thisArg, v, v, this);
  }

  override *values(): SetIterator<T> {
    for (const v of [...this.#s()]) yield this.#f.out(this.#cell, '<member>', v) as T;
  }

  override keys(): SetIterator<T> {
    return this.values();
  }

  override *entries(): SetIterator<[T, T]> {
    for (const v of this.values()) yield [v, v];
  }

  override [Symbol.iterator](): SetIterator<T> {
    return this.values();
  }

  [inspect.custom](): unknown {
    return this.#f['host'].toPlain(this);
  }
}
