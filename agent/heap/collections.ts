import { inspect, type InspectOptions } from 'node:util';
import type { Cell } from './cell.js';
import type { ProxyFactory } from './proxies.js';
import { inspectHeapObject } from './targets.js';
import { CONTAINER_BYTES, checkKey, slotBytes } from './values.js';

/** HeapMap/HeapSet read barrier: load, or note the reference of an armed (sampled) object. */
function ready(c: Cell, f: ProxyFactory): void {
  if (!c.loaded || c.armed || c.dead) f.read(c);
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

  #ready(): void {
    ready(this.#cell, this.#f);
  }

  override get size(): number {
    this.#ready();
    return super.size;
  }

  override get(k: K): V | undefined {
    this.#ready();
    return super.get(k);
  }

  override has(k: K): boolean {
    this.#ready();
    return super.has(k);
  }

  override set(k: K, v: V): this {
    this.#ready();
    const label = typeof k === 'string' ? JSON.stringify(k) : String(k);
    checkKey(k, () => this.#cell.path('.<key>'));
    this.#f.assign(this.#cell, `.get(${label})`, [k, v], ([sk, sv]) => (super.has(sk as K) ? slotBytes(sv) - slotBytes(super.get(sk as K)) : slotBytes(sk) + slotBytes(sv)),
      ([sk, sv]) => { super.set(sk as K, sv as V); });
    return this;
  }

  override delete(k: K): boolean {
    this.#ready();
    if (!super.has(k)) return false;
    const cost = slotBytes(k) + slotBytes(super.get(k));
    this.#f.mutate(this.#cell, -cost, () => super.delete(k));
    return true;
  }

  override clear(): void {
    this.#ready();
    if (super.size === 0) return;
    this.#f.mutate(this.#cell, CONTAINER_BYTES - this.#cell.approxBytes, () => super.clear());
  }

  // Iteration works on a snapshot: the loop body may page this Map out (its entries are
  // cleared when its line leaves memory), and a live iterator would then stop early.
  override forEach(fn: (v: V, k: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }

  override entries(): MapIterator<[K, V]> {
    this.#ready();
    return [...super.entries()][Symbol.iterator]() as MapIterator<[K, V]>;
  }

  override keys(): MapIterator<K> {
    this.#ready();
    return [...super.keys()][Symbol.iterator]() as MapIterator<K>;
  }

  override values(): MapIterator<V> {
    this.#ready();
    return [...super.values()][Symbol.iterator]() as MapIterator<V>;
  }

  override [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  [inspect.custom](depth: number, options: InspectOptions): string {
    return inspectHeapObject.call(this, depth, options);
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

  #ready(): void {
    ready(this.#cell, this.#f);
  }

  override get size(): number {
    this.#ready();
    return super.size;
  }

  override has(v: T): boolean {
    this.#ready();
    return super.has(v);
  }

  override add(v: T): this {
    this.#ready();
    if (super.has(v)) return this;
    checkKey(v, () => this.#cell.path('<member>'));
    this.#f.assign(this.#cell, '<member>', [v], ([x]) => slotBytes(x), ([x]) => { super.add(x as T); });
    return this;
  }

  override delete(v: T): boolean {
    this.#ready();
    if (!super.has(v)) return false;
    this.#f.mutate(this.#cell, -slotBytes(v), () => super.delete(v));
    return true;
  }

  override clear(): void {
    this.#ready();
    if (super.size === 0) return;
    this.#f.mutate(this.#cell, CONTAINER_BYTES - this.#cell.approxBytes, () => super.clear());
  }

  // Iteration works on a snapshot (see HeapMap).
  override forEach(fn: (v: T, v2: T, set: Set<T>) => void, thisArg?: unknown): void {
    for (const v of this.values()) fn.call(thisArg, v, v, this);
  }

  override values(): SetIterator<T> {
    this.#ready();
    return [...super.values()][Symbol.iterator]() as SetIterator<T>;
  }

  override keys(): SetIterator<T> {
    return this.values();
  }

  override entries(): SetIterator<[T, T]> {
    this.#ready();
    return [...super.entries()][Symbol.iterator]() as SetIterator<[T, T]>;
  }

  override [Symbol.iterator](): SetIterator<T> {
    return this.values();
  }

  [inspect.custom](depth: number, options: InspectOptions): string {
    return inspectHeapObject.call(this, depth, options);
  }
}
