import { FerryError } from '../../core/errors.js';
import { contentHash, type Store } from '../../store/index.js';
import { decodeMeta, encodeMeta } from './heap-meta.js';
import type { Heap } from './heap.js';
import { LineType } from './line-table.js';
import { ROOT_OID } from './object-space.js';
import { Ref, decodeRecord } from './record-codec.js';
import { openHeap } from './heap.js';
import type { HeapOptions } from './options.js';

/**
 * What migration needs from a heap (WO 01/95094 Figures 5-6; DESIGN.md "Migration"):
 * line-level images for a peer with the same line size (send only the lines it lacks, by
 * content hash), and an object-level export for a peer whose line size or word size differs.
 */

export interface LineImage {
  line: number;
  /** Content hash (the store's): the peer answers which it already holds. */
  hash: Uint8Array;
  type: 'user' | 'table';
  len: number;
}

/** Lines of the committed version the heap is at (checkpoint first to include recent changes). */
export function listLines(heap: Heap): LineImage[] {
  const { store, app } = heap.options;
  if (heap.version === 0) return [];
  const meta = decodeMeta(store.readState(app, { version: heap.version }), app);
  const table = new Set(meta.tablePages);
  return store.listLines(app, { version: heap.version }).map((l) => ({ line: l.line, hash: l.hash, len: l.len, type: table.has(l.line) ? 'table' : 'user' }));
}

/** Raw committed bytes of lines (what a same-profile peer installs). */
export function readLines(heap: Heap, lines: readonly number[]): Uint8Array[] {
  const { store, app } = heap.options;
  return store.read(app, lines, { version: heap.version }).map((b, i) => {
    if (!b) throw new FerryError('HEAP_BAD_IMAGE', `line ${lines[i]} of app ${app} is not in version ${heap.version}`, { field: `lines[${i}]`, app });
    return b;
  });
}

/** The heap's metadata blob of its committed version (goes with the lines). */
export function readMeta(heap: Heap): Uint8Array {
  return heap.options.store.readState(heap.options.app, { version: heap.version });
}

export interface InstallLine {
  line: number;
  hash: Uint8Array;
  /** The bytes; omitted when the receiver already holds a line with this hash (any app, any version). */
  bytes?: Uint8Array;
}

/**
 * Installs a heap image received from a peer as the app's next committed version, atomically:
 * every line of the image (bytes sent, or found locally by hash), lines the image does not
 * have deleted, the metadata as the state blob. Returns the version. The heap must not be open.
 * Lines whose hash equals the app's newest version's are neither read nor written again, so
 * installing the image of each pre-copy round in turn writes only what changed.
 */
export function installLines(store: Store, app: string, image: { lineSize: number; maxLines: number; lines: InstallLine[]; meta: Uint8Array }): number {
  const bad = (field: string, what: string) => new FerryError('HEAP_BAD_IMAGE', `heap image for app ${app}: ${field} ${what}`, { field, app });
  const meta = (() => {
    try {
      return decodeMeta(image.meta, app);
    } catch (e) {
      throw bad('meta', `is invalid (${(e as Error).message})`);
    }
  })();
  if (meta.lineSize !== image.lineSize) throw bad('meta.lineSize', `is ${meta.lineSize}, the image says ${image.lineSize}`);
  if (store.hasApp(app) && store.appInfo(app).lineSize !== image.lineSize) throw bad('lineSize', `${image.lineSize} differs from the ${store.appInfo(app).lineSize}-byte lines already stored; use the object-level import`);
  const head = new Map<number, string>();
  if (store.hasApp(app) && store.appInfo(app).head > 0) for (const l of store.listLines(app)) head.set(l.line, Buffer.from(l.hash).toString('hex'));
  const bytesOf: Array<Uint8Array | undefined> = image.lines.map((l, i) => {
    if (!Number.isInteger(l.line) || l.line < 1 || l.line >= image.maxLines) throw bad(`lines[${i}].line`, `must be an integer in 1..${image.maxLines - 1}, got ${String(l.line)}`);
    if (!(l.hash instanceof Uint8Array)) throw bad(`lines[${i}].hash`, 'must be a byte string');
    if (l.bytes === undefined && head.get(l.line) === Buffer.from(l.hash).toString('hex')) return undefined; // unchanged here
    const b = l.bytes ?? store.readByHash(l.hash);
    if (!b) throw bad(`lines[${i}].bytes`, `are missing and no local line has hash ${Buffer.from(l.hash).toString('hex')}`);
    if (b.length !== image.lineSize) throw bad(`lines[${i}].bytes`, `must be ${image.lineSize} bytes, got ${b.length}`);
    if (Buffer.compare(Buffer.from(contentHash(b)), Buffer.from(l.hash)) !== 0) throw bad(`lines[${i}].hash`, 'does not match the bytes');
    return b;
  });
  if (!store.hasApp(app)) store.createApp(app, { lineSize: image.lineSize, maxLines: image.maxLines });
  const tx = store.begin(app);
  try {
    const keep = new Set(image.lines.map((l) => l.line));
    for (const line of head.keys()) if (!keep.has(line)) tx.delete(line);
    image.lines.forEach((l, i) => {
      const b = bytesOf[i];
      if (b !== undefined && head.get(l.line) !== Buffer.from(l.hash).toString('hex')) tx.write(l.line, b);
    });
    tx.setState(encodeMeta({ ...meta, reason: 'arrived' }));
    return tx.commit().version;
  } finally {
    tx.abort();
  }
}

/** One object of an object-level export: its id and its record (standard CBOR, see DESIGN.md). */
export type ExportedObject = [oid: number, record: Uint8Array];

export interface ObjectImage {
  format: 'ferry.heap.objects/1';
  /** Word size of the exporting device; records do not depend on it (CBOR numbers are sized by value). */
  wordBits: number;
  nextOid: number;
  pins: number[];
  /** The non-heap state blob. */
  user: Uint8Array;
}

/**
 * Object-level export of the heap's committed version: every live object's record by id, in
 * traversal order from the root. Line-size independent; a generator, so a large heap streams.
 */
export function* exportObjects(heap: Heap): Generator<ExportedObject, ObjectImage> {
  const { store, app } = heap.options;
  const meta = decodeMeta(store.readState(app, { version: heap.version }), app);
  const reader = heap.internals;
  const seen = new Set<number>();
  const stack = [...meta.pins].reverse().concat(ROOT_OID); // root first, then the pins
  while (stack.length > 0) {
    const oid = stack.pop()!;
    if (seen.has(oid)) continue;
    seen.add(oid);
    const record = reader.committedRecord(oid);
    yield [oid, record];
    const refs: number[] = [];
    collectRefs(decodeRecord(record, `object #${oid} of app ${app}`).value, refs);
    for (let i = refs.length - 1; i >= 0; i--) if (!seen.has(refs[i]!)) stack.push(refs[i]!);
  }
  return { format: 'ferry.heap.objects/1', wordBits: heap.options.profile.wordBits, nextOid: meta.nextOid, pins: meta.pins, user: meta.user };
}

function collectRefs(v: unknown, out: number[]): void {
  if (v === null || typeof v !== 'object') return;
  if (v instanceof Ref) {
    out.push(v.oid);
    return;
  }
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) for (const x of v) collectRefs(x, out);
  else if (v instanceof Map) for (const [k, x] of v) { collectRefs(k, out); collectRefs(x, out); }
  else if (v instanceof Set) for (const x of v) collectRefs(x, out);
  else for (const k of Object.keys(v)) collectRefs((v as Record<string, unknown>)[k], out);
}

/** Line-type name for a line-table type. */
export function lineTypeName(t: number): 'user' | 'table' | 'system' {
  return t === LineType.Table ? 'table' : t === LineType.System ? 'system' : 'user';
}

/**
 * Builds a heap from an object-level export (a peer with another line size or word size): each
 * record is validated and placed by this device's allocator under its original id, then the
 * whole heap is committed as one checkpoint. The app must not exist yet.
 */
export function importObjects(options: HeapOptions, objects: Iterable<ExportedObject>, image: ObjectImage): Heap {
  const app = options.app;
  const bad = (field: string, what: string) => new FerryError('HEAP_BAD_IMAGE', `object image for app ${app}: ${field} ${what}`, { field, app });
  if (image?.format !== 'ferry.heap.objects/1') throw bad('format', `must be "ferry.heap.objects/1", got ${JSON.stringify(image?.format)}`);
  if (options.store.hasApp(app) && options.store.appInfo(app).head > 0) throw bad('app', 'already has a heap here; remove it first');
  const heap = openHeap(options);
  try {
    heap.internals.installRecords(objects, image, bad);
    heap.checkpoint({ state: image.user, reason: 'import' });
    return heap;
  } catch (e) {
    heap.close();
    throw e;
  }
}
