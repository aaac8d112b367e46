import { FerryError } from '../../core/errors.js';
import { Cell } from './cell.js';
import type { ObjectSpace } from './object-space.js';
import type { Kind } from './record-codec.js';

/** Which heap a proxy (or HeapMap/HeapSet) belongs to, and its cell. Module-wide, so a foreign heap's objects are recognised. */
export const proxyCells = new WeakMap<object, { cell: Cell; space: ObjectSpace }>();

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
 * path (`root.notes[3].owner`).
 */
export function importValue(space: ObjectSpace, value: unknown, path: string): unknown {
  checkValue(space, value, path, new Set());
  return build(space, value, new Map());
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
function checkValue(space: ObjectSpace, v: unknown, path: string, seen: Set<object>): void {
  switch (typeof v) {
    case 'string':
      if (stringBytes(v) > space.maxObjectBytes && Buffer.byteLength(v) + 9 > space.maxObjectBytes) throw tooLarge(space, path, Buffer.byteLength(v));
      return;
    case 'number': case 'boolean': case 'undefined': case 'bigint':
      return;
    case 'function':
      throw bad(path, 'a function');
    case 'symbol':
      throw bad(path, 'a symbol');
    default:
      break;
  }
  if (v === null) return;
  const o = v as object;
  const owned = proxyCells.get(o);
  if (owned) {
    if (owned.space !== space) {
      throw new FerryError('HEAP_FOREIGN_OBJECT', `${path} is an object of another heap (app ${owned.space.app}); copy it (heap.toPlain) before storing it here`, { field: path });
    }
    if (owned.cell.dead) throw new FerryError('HEAP_CLOSED', `${path} refers to an object that was removed from the heap`, { field: path });
    return;
  }
  if (seen.has(o)) return;
  seen.add(o);
  const kind = kindOf(o);
  if (!kind) {
    const name = (o as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
    throw bad(path, `an instance of ${name} (store plain objects, arrays, Map, Set, Uint8Array, strings, numbers, booleans, null)`);
  }
  let bytes = CONTAINER_BYTES;
  switch (kind) {
    case 'bytes':
      bytes += (o as Uint8Array).length;
      break;
    case 'array': {
      const a = o as unknown[];
      for (let i = 0; i < a.length; i++) {
        checkValue(space, a[i], fmt(path, i), seen);
        bytes += slotBytes(a[i]);
      }
      break;
    }
    case 'object':
      for (const k of Object.keys(o)) {
        if (k === '__proto__') throw bad(fmt(path, k), 'the key __proto__ is reserved');
        const d = Object.getOwnPropertyDescriptor(o, k)!;
        if (d.get || d.set) throw bad(fmt(path, k), 'an accessor property (getter/setter)');
        checkValue(space, d.value, fmt(path, k), seen);
        bytes += keyBytes(k) + slotBytes(d.value);
      }
      if (Object.getOwnPropertySymbols(o).length > 0) throw bad(path, 'an object with symbol keys');
      break;
    case 'map':
      for (const [k, x] of o as Map<unknown, unknown>) {
        checkValue(space, k, `${path}.<key>`, seen);
        checkValue(space, x, `${path}.get(${typeof k === 'string' ? JSON.stringify(k) : String(k)})`, seen);
        bytes += slotBytes(k) + slotBytes(x);
      }
      break;
    case 'set':
      for (const x of o as Set<unknown>) {
        checkValue(space, x, `${path}.<member>`, seen);
        bytes += slotBytes(x);
      }
      break;
  }
  if (bytes > space.maxObjectBytes) throw tooLarge(space, path, bytes);
}

export function kindOf(o: object): Kind | undefined {
  if (Array.isArray(o)) return 'array';
  if (o instanceof Uint8Array) return 'bytes';
  if (o instanceof Map) return 'map';
  if (o instanceof Set) return 'set';
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return 'object';
  return undefined;
}

/** Creates the cells of an already checked value. */
function build(space: ObjectSpace, v: unknown, made: Map<object, Cell>): unknown {
  if (v === null || typeof v !== 'object') return v;
  const owned = proxyCells.get(v);
  if (owned) return owned.cell;
  const done = made.get(v);
  if (done) return done;
  const kind = kindOf(v)!;
  const cell = space.create(kind, undefined, 0);
  made.set(v, cell);
  let value: unknown;
  let bytes = CONTAINER_BYTES;
  const link = (x: unknown): unknown => {
    const y = build(space, x, made);
    if (y instanceof Cell) space.pointsAt(cell, y);
    bytes += slotBytes(y);
    return y;
  };
  switch (kind) {
    case 'bytes':
      value = new Uint8Array(v as Uint8Array);
      bytes += (v as Uint8Array).length;
      break;
    case 'array': {
      const a = v as unknown[];
      const out = new Array<unknown>(a.length);
      for (let i = 0; i < a.length; i++) {
        out[i] = link(a[i]);
        if (out[i] instanceof Cell && (out[i] as Cell).parent === cell) (out[i] as Cell).key ??= i;
      }
      value = out;
      break;
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v)) {
        const y = link((v as Record<string, unknown>)[k]);
        if (y instanceof Cell && y.parent === cell) y.key ??= k;
        out[k] = y;
        bytes += keyBytes(k);
      }
      value = out;
      break;
    }
    case 'map': {
      const out = new Map<unknown, unknown>();
      for (const [k, x] of v as Map<unknown, unknown>) out.set(link(k), link(x));
      value = out;
      break;
    }
    case 'set': {
      const out = new Set<unknown>();
      for (const x of v as Set<unknown>) out.add(link(x));
      value = out;
      break;
    }
  }
  space.initialise(cell, value, bytes);
  return cell;
}
