import { isMap, isSet, isUint8Array } from 'node:util/types';
import { FerryError } from '../../core/errors.js';
import type { Cell } from './cell.js';
import { CELL, handleCell, type ObjectSpace } from './object-space.js';
import type { Kind } from './record-codec.js';

/**
 * Strings are stored as CBOR text (UTF-8), which cannot hold a lone UTF-16 surrogate. A string
 * value is stored in its well-formed form (each lone surrogate becomes one U+FFFD, as
 * TextEncoder does) at once, so it reads the same before and after a reopen. A key (an object
 * key, a Map key, a Set member) is refused instead: changed, it would no longer find its entry.
 */
interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}
export function wellFormed(s: string): string {
  return (s as unknown as WellFormed).isWellFormed() ? s : (s as unknown as WellFormed).toWellFormed();
}

/** Throws HEAP_BAD_VALUE for a key that is a string with a lone surrogate. */
export function checkKey(k: unknown, path: () => string): void {
  if (typeof k === 'string' && !(k as unknown as WellFormed).isWellFormed()) throw bad(path(), 'a key with a lone UTF-16 surrogate (keys are stored as UTF-8 text; store a well-formed string)');
}

/** Encoded-size upper bounds (CBOR), used for the object size limit and the nursery budget. */
export function stringBytes(s: string): number {
  return s.length <= 64 ? s.length * 3 + 3 : Buffer.byteLength(s) + 9;
}

export function slotBytes(v: unknown): number {
  switch (typeof v) {
    case 'string': return stringBytes(v);
    case 'number': return 9;
    case 'bigint': return 20;
    case 'object': return v === null ? 1 : 5; // a Cell: tag + id
    default: return 1;
  }
}

export const CONTAINER_BYTES = 9;

export function keyBytes(k: string | number): number {
  return typeof k === 'number' ? 0 : stringBytes(k);
}

/**
 * Copies an assigned value into the heap: primitives stay inline; objects, arrays, Maps, Sets
 * and Uint8Arrays become new (nursery) objects, with shared references and cycles inside the
 * value kept; objects already in this heap are referenced, not copied. Everything is checked
 * before anything is created, so a refused value leaves the heap unchanged. Errors name the
 * path (`root.notes[3].owner`). Returns the primitive or the handle to store.
 */
export function importValue(space: ObjectSpace, value: unknown, parent: Cell, key: string | number): unknown {
  if (value === 0) return 0; // -0 is stored as 0: CBOR integers have no negative zero
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'string')) return value;
  const path = () => parent.path(key);
  checkValue(space, value, path, undefined);
  if (typeof value === 'string') return wellFormed(value);
  if (typeof value !== 'object') return value;
  return build(space, value, undefined);
}

/**
 * Imports the values of one call (`push(x, x)`, `splice(i, 0, a, b)`): all are checked before
 * any is created, and an object passed twice becomes one heap object, as it is one object in
 * the plain array. `keyOf(j)` is where value j lands, for error paths.
 */
export function importValues(space: ObjectSpace, values: readonly unknown[], parent: Cell, keyOf: (j: number) => string | number): unknown[] {
  for (let j = 0; j < values.length; j++) {
    const v = values[j];
    if (v !== null && (typeof v === 'object' || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'string')) checkValue(space, v, () => parent.path(keyOf(j)), undefined);
  }
  const made = values.length > 1 ? new Map<object, object>() : undefined;
  return values.map((v) => (v === 0 ? 0 : typeof v === 'string' ? wellFormed(v) : v !== null && typeof v === 'object' ? build(space, v, made) : v));
}

function tooLarge(space: ObjectSpace, path: string, bytes: number): FerryError {
  return new FerryError('HEAP_VALUE_TOO_LARGE', `${path} would take about ${bytes} bytes, over the ${space.maxObjectBytes}-byte object limit (split it into smaller objects)`, { field: path, bytes, limit: space.maxObjectBytes });
}

function bad(path: string, what: string): FerryError {
  return new FerryError('HEAP_BAD_VALUE', `${path} cannot be stored in the heap: ${what}`, { field: path });
}

function fmt(path: string, k: string | number): string {
  if (typeof k === 'number') return `${path}[${k}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
}

/** Validates a value and its whole graph; returns nothing, throws on the first bad part. */
function checkValue(space: ObjectSpace, v: unknown, pathOf: () => string, seen: Set<object> | undefined): void {
  const path = (): string => pathOf();
  switch (typeof v) {
    case 'string':
      if (stringBytes(v) > space.maxObjectBytes && Buffer.byteLength(v) + 9 > space.maxObjectBytes) throw tooLarge(space, path(), Buffer.byteLength(v));
      return;
    case 'number': case 'boolean': case 'undefined': case 'bigint':
      return;
    case 'function':
      throw bad(path(), 'a function');
    case 'symbol':
      throw bad(path(), 'a symbol');
    default:
      break;
  }
  if (v === null) return;
  const o = v as object;
  const owned = handleCell(o);
  if (owned) {
    if (owned.owner !== space) {
      throw new FerryError('HEAP_FOREIGN_OBJECT', `${path()} is an object of another heap (app ${(owned.owner as ObjectSpace).app}); copy it (heap.toPlain) before storing it here`, { field: path() });
    }
    if (owned.dead) throw new FerryError('HEAP_CLOSED', `${path()} refers to an object that is no longer in the heap`, { field: path() });
    return;
  }
  if (seen?.has(o)) return;
  seen?.add(o);
  const kind = kindOf(o);
  // Children: plain numbers, short strings and the like need no call (and no path closure);
  // the first nested object starts the cycle-detection set.
  const child = (x: unknown, at: () => string) => {
    if (!needsCheck(space, x)) return;
    if (x !== null && typeof x === 'object') seen ??= new Set([o]);
    checkValue(space, x, at, seen);
  };
  if (!kind) {
    const name = (o as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
    throw bad(path(), `an instance of ${name} (store plain objects, arrays, Map, Set, Uint8Array, strings, numbers, BigInts, booleans, null, undefined)`);
  }
  let bytes = CONTAINER_BYTES;
  switch (kind) {
    case 'bytes':
      bytes += (o as Uint8Array).length;
      break;
    case 'array': {
      const a = o as unknown[];
      for (let i = 0; i < a.length; i++) {
        if (needsCheck(space, a[i])) child(a[i], () => fmt(path(), i));
        bytes += slotBytes(a[i]);
      }
      break;
    }
    case 'object':
      // Own enumerable string keys, read like structuredClone reads them (a getter's current value).
      for (const k of Object.keys(o)) {
        if (k === '__proto__') throw bad(fmt(path(), k), 'the key __proto__ is reserved');
        checkKey(k, () => fmt(path(), k));
        const x = (o as Record<string, unknown>)[k];
        if (needsCheck(space, x)) child(x, () => fmt(path(), k));
        bytes += keyBytes(k) + slotBytes(x);
      }
      for (const sym of Object.getOwnPropertySymbols(o)) if (sym !== CELL) throw bad(path(), `an object with a symbol key (${String(sym)})`);
      break;
    case 'map':
      for (const [k, x] of o as Map<unknown, unknown>) {
        checkKey(k, () => `${path()}.<key>`);
        child(k, () => `${path()}.<key>`);
        child(x, () => `${path()}.get(${typeof k === 'string' ? JSON.stringify(k) : String(k)})`);
        bytes += slotBytes(k) + slotBytes(x);
      }
      break;
    case 'set':
      for (const x of o as Set<unknown>) {
        checkKey(x, () => `${path()}.<member>`);
        child(x, () => `${path()}.<member>`);
        bytes += slotBytes(x);
      }
      break;
  }
  if (bytes > space.maxObjectBytes) throw tooLarge(space, path(), bytes);
}

function needsCheck(space: ObjectSpace, x: unknown): boolean {
  switch (typeof x) {
    case 'number': case 'boolean': case 'undefined': case 'bigint': return false;
    case 'string': return stringBytes(x) > space.maxObjectBytes;
    case 'object': return x !== null;
    default: return true;
  }
}

/**
 * `Object.prototype`s of other realms whose plain objects the heap takes: the runtime runs
 * each app in a `node:vm` context of its own, and the objects an app builds there have that
 * context's prototypes. Registered with `acceptRealm`; weakly held.
 */
const realmObjectPrototypes = new WeakSet<object>();

/** Lets the heap take plain objects, arrays, maps, sets and bytes made in another realm (a vm context), given that realm's `Object.prototype`. */
export function acceptRealm(objectPrototype: object): void {
  realmObjectPrototypes.add(objectPrototype);
}

export function kindOf(o: object): Kind | undefined {
  if (Array.isArray(o)) return 'array';
  if (o instanceof Uint8Array) return 'bytes';
  if (o instanceof Map) return 'map';
  if (o instanceof Set) return 'set';
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return 'object';
  // Another realm's built-ins fail `instanceof` above; the brand checks below do not (slower, so second).
  if (isUint8Array(o)) return 'bytes';
  if (isMap(o)) return 'map';
  if (isSet(o)) return 'set';
  if (realmObjectPrototypes.has(proto)) return 'object';
  return undefined;
}

/** Creates the objects of an already checked value; returns the handle. */
function build(space: ObjectSpace, v: object, made: Map<object, object> | undefined): object {
  const owned = handleCell(v);
  if (owned) return owned.handle;
  const done = made?.get(v);
  if (done) return done;
  const kind = kindOf(v)!;
  const cell = space.create(kind);
  if (kind === 'bytes') {
    // A bytes object's handle is its own Uint8Array: bind it before anything refers to it.
    space.bindBytes(cell, new Uint8Array(v as Uint8Array));
    made?.set(v, cell.handle);
    space.sized(cell, CONTAINER_BYTES + (v as Uint8Array).length);
    return cell.handle;
  }
  made?.set(v, cell.handle);
  let bytes = CONTAINER_BYTES;
  const link = (x: unknown, key: string | number): unknown => {
    if (x === 0) return 0; // -0 is stored as 0
    if (x === null || typeof x !== 'object') {
      bytes += slotBytes(x);
      return typeof x === 'string' ? wellFormed(x) : x;
    }
    made ??= new Map([[v, cell.handle]]);
    const h = build(space, x, made);
    space.pointsAt(cell, handleCell(h)!, key);
    bytes += 5;
    return h;
  };
  switch (kind) {
    case 'array': {
      const a = v as unknown[];
      const out = cell.storage as unknown[];
      out.length = a.length;
      for (let i = 0; i < a.length; i++) if (i in a) out[i] = link(a[i], i);
      break;
    }
    case 'object': {
      const out = cell.storage as Record<string, unknown>;
      for (const k of Object.keys(v)) {
        out[k] = link((v as Record<string, unknown>)[k], k);
        bytes += keyBytes(k);
      }
      break;
    }
    case 'map':
      for (const [k, x] of v as Map<unknown, unknown>) Map.prototype.set.call(cell.storage, link(k, '<key>'), link(x, `.get(${String(k)})`));
      break;
    case 'set':
      for (const x of v as Set<unknown>) Set.prototype.add.call(cell.storage, link(x, '<member>'));
      break;
  }
  space.sized(cell, bytes);
  return cell.handle;
}
