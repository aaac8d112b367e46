import { afterAll, describe, expect, it } from 'vitest';
import { importObjects, installLines, openHeap, type ExportedObject, type Heap, type InstallLine, type ObjectImage } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { Temp, caught, sameGraph } from './graph.js';

/**
 * What migration takes from a heap. Line level (same line size): the committed version's lines
 * with content hashes and types, their bytes and the metadata blob, installed into another
 * store as the app's next version — with bytes left out for lines the receiver already holds
 * (it finds them by hash). Object level (another line or word size): a streamed export of every
 * live record by id, imported on an `rpi-4b` profile. Bad images are refused with
 * HEAP_BAD_IMAGE naming the field, and nothing is committed.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const j2me = getProfile('j2me-phone');
const rpi = getProfile('rpi-4b');
const STATE = new Uint8Array([0xfe, 1, 2, 3, 0]);

/** A graph with shared references, cycles, every container kind and enough data for many lines. */
function populate(heap: Heap): void {
  const root = heap.root as Record<string, any>;
  root.title = 'notes — ноты — 笔记';
  root.items = [];
  for (let i = 0; i < 60; i++) root.items.push({ i, text: `${i}:${'t'.repeat(150 + (i % 40))}`, big: 2n ** BigInt(40 + i) });
  // A plain value is copied into the heap on assignment; the heap object it became is shared.
  const plain = { shared: true, n: NaN };
  root.a = { ref: plain, list: [plain, plain] };
  const shared = root.a.ref;
  root.b = { ref: shared };
  root.cycle = { name: 'c' };
  root.cycle.self = root.cycle;
  root.cycle.back = root;
  root.map = new Map<unknown, unknown>([['k', 1], [2, shared], ['items', root.items]]);
  root.set = new Set<unknown>(['x', 3, shared]);
  root.bytes = new Uint8Array([0, 1, 2, 254, 255]);
  // Holes are not kept across a reopen (agent/heap/DESIGN.md): an explicit undefined is.
  root.undef = [1, undefined, 3];
  root.pinnedOnly = { secret: 's' };
  heap.pin(root.pinnedOnly);
  delete root.pinnedOnly;
}

function exportAll(heap: Heap): { objects: ExportedObject[]; image: ObjectImage } {
  const gen = heap.exportObjects();
  const objects: ExportedObject[] = [];
  for (;;) {
    const r = gen.next();
    if (r.done) return { objects, image: r.value };
    objects.push(r.value);
  }
}

function lineImage(heap: Heap, omit: (hash: Uint8Array) => boolean = () => false): { lineSize: number; maxLines: number; lines: InstallLine[]; meta: Uint8Array; omitted: number } {
  const list = heap.listLines();
  const bytes = heap.readLines(list.map((l) => l.line));
  let omitted = 0;
  const lines = list.map((l, i): InstallLine => {
    if (omit(l.hash)) {
      omitted++;
      return { line: l.line, hash: l.hash };
    }
    return { line: l.line, hash: l.hash, bytes: bytes[i]! };
  });
  return { lineSize: j2me.cacheLineBytes, maxLines: heap.options.store.appInfo(heap.app).maxLines, lines, meta: heap.readMeta(), omitted };
}

function origin(app = 'mover'): { store: Store; heap: Heap } {
  const store = temp.store({ profile: j2me });
  const heap = openHeap({ store, app, profile: j2me });
  populate(heap);
  heap.checkpoint({ state: STATE });
  return { store, heap };
}

describe('line-level migration', () => {
  it('listLines / readLines / readMeta → installLines into another store → the same graph opens there', () => {
    const { heap } = origin();
    const list = heap.listLines();
    expect(list.length).toBeGreaterThan(8);
    expect(new Set(list.map((l) => l.type))).toEqual(new Set(['user', 'table']));
    for (const l of list) {
      expect(l.hash).toBeInstanceOf(Uint8Array);
      expect(l.hash.length).toBeGreaterThan(0);
      expect(l.len).toBe(j2me.cacheLineBytes);
    }
    const img = lineImage(heap);
    const store2 = temp.store({ profile: j2me });
    const v = installLines(store2, 'mover', img);
    expect(v).toBeGreaterThan(0);
    const there = openHeap({ store: store2, app: 'mover', profile: j2me });
    expect(sameGraph(there.toPlain(there.root), heap.toPlain(heap.root))).toBeNull();
    expect([...there.state]).toEqual([...STATE]);
    expect(there.pinned()).toHaveLength(1);
    expect(there.toPlain(there.pinned()[0])).toEqual({ secret: 's' });
    there.close();
    expect(store2.integrityCheck().ok).toBe(true);
    heap.close();
  });

  it('lines the receiver already holds travel as hashes only; it reads them from its own store', () => {
    const { heap } = origin();
    const store2 = temp.store({ profile: j2me });
    installLines(store2, 'mover', lineImage(heap));
    // The origin changes a little and checkpoints again: most lines are unchanged.
    const root = heap.root as Record<string, any>;
    root.items[3].text = 'changed';
    root.added = { fresh: [1, 2, 3] };
    heap.checkpoint({ state: new Uint8Array([2]) });
    const img = lineImage(heap, (h) => store2.hasHashes([h])[0]!);
    expect(img.omitted, 'most lines are already there').toBeGreaterThan(img.lines.length / 2);
    expect(img.lines.length - img.omitted, 'the changed lines are sent').toBeGreaterThan(0);
    const v1 = store2.headVersion('mover');
    expect(installLines(store2, 'mover', img)).toBeGreaterThan(v1);
    const there = openHeap({ store: store2, app: 'mover', profile: j2me });
    expect(sameGraph(there.toPlain(there.root), heap.toPlain(heap.root))).toBeNull();
    expect([...there.state]).toEqual([2]);
    there.close();
    // Hash-only lines also resolve against another app's lines in the receiving store.
    const store3 = temp.store({ profile: j2me });
    installLines(store3, 'earlier-copy', lineImage(heap));
    const img3 = lineImage(heap, () => true);
    installLines(store3, 'mover', img3);
    const third = openHeap({ store: store3, app: 'mover', profile: j2me });
    expect(sameGraph(third.toPlain(third.root), heap.toPlain(heap.root))).toBeNull();
    third.close();
    heap.close();
  });

  it('installing the next image over an installed one writes only the lines whose hash changed (a handoff round)', () => {
    const { heap } = origin();
    const store2 = temp.store({ profile: j2me });
    installLines(store2, 'mover', lineImage(heap));
    const root = heap.root as Record<string, any>;
    root.items[7].text = 'one changed item';
    heap.checkpoint({ state: STATE });
    const img = lineImage(heap);
    const changed = img.lines.filter((l) => !store2.hasHashes([l.hash])[0]).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThan(img.lines.length / 2);
    const before = store2.stats().segmentBytesWritten;
    installLines(store2, 'mover', img);
    // Every line is in the image with its bytes, and only the changed ones are written.
    expect(store2.stats().segmentBytesWritten - before).toBe(changed * j2me.cacheLineBytes);
    const there = openHeap({ store: store2, app: 'mover', profile: j2me });
    expect(sameGraph(there.toPlain(there.root), heap.toPlain(heap.root))).toBeNull();
    there.close();
    heap.close();
  });

  it('bad images → HEAP_BAD_IMAGE naming the field; nothing is committed (new app or existing one)', () => {
    const { heap } = origin();
    const good = lineImage(heap);
    const k = 2;
    const flip = (b: Uint8Array) => {
      const c = b.slice();
      c[10] = c[10]! ^ 0xff;
      return c;
    };
    const cases: [string, () => Parameters<typeof installLines>[2], string][] = [
      ['wrong line size', () => ({ ...good, lineSize: 2048 }), 'meta.lineSize'],
      ['bytes of the wrong length', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { ...l, bytes: l.bytes!.subarray(0, 512) } : l)) }), `lines[${k}].bytes`],
      ['a hash that does not match the bytes', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { ...l, bytes: flip(l.bytes!) } : l)) }), `lines[${k}].hash`],
      ['missing bytes with an unknown hash', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { line: l.line, hash: new Uint8Array(l.hash.length).fill(7) } : l)) }), `lines[${k}].bytes`],
      ['invalid meta', () => ({ ...good, meta: new Uint8Array([1, 2, 3]) }), 'meta'],
      ['line 0', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { ...l, line: 0 } : l)) }), `lines[${k}].line`],
      ['line beyond maxLines', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { ...l, line: good.maxLines + 5 } : l)) }), `lines[${k}].line`],
      ['a fractional line', () => ({ ...good, lines: good.lines.map((l, i) => (i === k ? { ...l, line: 1.5 } : l)) }), `lines[${k}].line`],
    ];
    // Into a store that does not have the app, and into one that has an older version of it.
    const fresh = temp.store({ profile: j2me });
    const existing = temp.store({ profile: j2me });
    const older = openHeap({ store: existing, app: 'mover', profile: j2me });
    (older.root as Record<string, any>).old = true;
    const vOld = older.checkpoint().version;
    older.close();
    for (const [what, make, field] of cases) {
      for (const store of [fresh, existing]) {
        const e = caught(() => installLines(store, 'mover', make()));
        expect(e.code, what).toBe('HEAP_BAD_IMAGE');
        expect(e.details.field, what).toBe(field);
        expect(e.message, what).toContain(field);
      }
      expect(fresh.hasApp('mover') && fresh.headVersion('mover') > 0, `${what}: nothing committed`).toBe(false);
      expect(existing.headVersion('mover'), `${what}: head unchanged`).toBe(vOld);
    }
    const still = openHeap({ store: existing, app: 'mover', profile: j2me });
    expect(still.toPlain(still.root)).toEqual({ old: true });
    still.close();
    // The good image still installs afterwards.
    installLines(fresh, 'mover', good);
    const ok = openHeap({ store: fresh, app: 'mover', profile: j2me });
    expect(sameGraph(ok.toPlain(ok.root), heap.toPlain(heap.root))).toBeNull();
    ok.close();
    heap.close();
  });

  it('an app stored with another line size cannot be opened or installed at line level', () => {
    const { store, heap } = origin();
    const img = lineImage(heap);
    heap.close();
    expect(caught(() => openHeap({ store, app: 'mover', profile: rpi })).code).toBe('HEAP_BAD_IMAGE');
    const rpiStore = temp.store({ profile: rpi });
    const big = openHeap({ store: rpiStore, app: 'mover', profile: rpi });
    (big.root as Record<string, any>).pi = true;
    const v = big.checkpoint().version;
    big.close();
    const e = caught(() => installLines(rpiStore, 'mover', img));
    expect(e.code).toBe('HEAP_BAD_IMAGE');
    expect(e.details.field).toBe('lineSize');
    expect(rpiStore.headVersion('mover')).toBe(v);
  });
});

describe('object-level migration (j2me-phone → rpi-4b)', () => {
  it('exportObjects streams every live record; importObjects on rpi-4b rebuilds the same graph, pins and state blob', () => {
    const { heap } = origin();
    const { objects, image } = exportAll(heap);
    expect(image.format).toBe('ferry.heap.objects/1');
    expect(image.wordBits).toBe(32);
    expect([...image.user]).toEqual([...STATE]);
    expect(image.pins).toHaveLength(1);
    expect(objects.some(([oid]) => oid === 1), 'the root is exported').toBe(true);
    expect(objects.some(([oid]) => oid === image.pins[0]), 'the pinned object is exported').toBe(true);
    expect(new Set(objects.map(([oid]) => oid)).size).toBe(objects.length);
    expect(objects.length).toBeGreaterThan(60);

    const store2 = temp.store({ profile: rpi });
    const there = importObjects({ store: store2, app: 'mover', profile: rpi }, objects, image);
    const want = heap.toPlain(heap.root);
    expect(sameGraph(there.toPlain(there.root), want)).toBeNull();
    expect([...there.state]).toEqual([...STATE]);
    expect(there.version).toBeGreaterThan(0);
    expect(store2.appInfo('mover').lineSize).toBe(rpi.cacheLineBytes);
    there.close();
    const reopened = openHeap({ store: store2, app: 'mover', profile: rpi });
    const got = reopened.toPlain(reopened.root) as Record<string, any>;
    expect(sameGraph(got, want)).toBeNull();
    expect(got.a.ref).toBe(got.b.ref);
    expect(got.a.list[1]).toBe(got.a.ref);
    expect(got.map.get(2)).toBe(got.a.ref);
    expect(got.cycle.self).toBe(got.cycle);
    expect(got.cycle.back).toBe(got);
    expect(got.map.get('items')).toBe(got.items);
    expect(got.bytes).toBeInstanceOf(Uint8Array);
    expect(reopened.toPlain(reopened.pinned()[0])).toEqual({ secret: 's' });
    // The imported heap works: change, checkpoint, reopen.
    (reopened.root as Record<string, any>).after = 1;
    reopened.checkpoint();
    reopened.close();
    const back = openHeap({ store: store2, app: 'mover', profile: rpi });
    expect((back.root as Record<string, any>).after).toBe(1);
    back.close();
    heap.close();
  });

  it('export with uncommitted changes → HEAP_BUSY', () => {
    const { heap } = origin();
    (heap.root as Record<string, any>).title = 'changed';
    expect(caught(() => exportAll(heap)).code).toBe('HEAP_BUSY');
    (heap.root as Record<string, any>).fresh = { young: true }; // a nursery object
    expect(caught(() => exportAll(heap)).code).toBe('HEAP_BUSY');
    heap.checkpoint();
    expect(exportAll(heap).objects.length).toBeGreaterThan(0);
    heap.close();
  });

  it('bad object images → HEAP_BAD_IMAGE naming the field; nothing is committed', () => {
    const { heap } = origin();
    const { objects, image } = exportAll(heap);
    heap.close();
    const store2 = temp.store({ profile: rpi });
    const dupAt = 5;
    const cases: [string, () => [ExportedObject[], ObjectImage], string][] = [
      ['bad format', () => [objects, { ...image, format: 'ferry.heap.objects/0' as never }], 'format'],
      ['no format', () => [objects, undefined as never], 'format'],
      ['duplicate oid', () => [[...objects.slice(0, dupAt), objects[1]!, ...objects.slice(dupAt)], image], `objects[${dupAt}].oid`],
      ['a record that is not CBOR', () => [objects.map((o, i): ExportedObject => (i === 3 ? [o[0], new Uint8Array([0xff, 0xff, 0x1c])] : o)), image], 'objects[3].record'],
      ['a record that is CBOR but no heap record', () => [objects.map((o, i): ExportedObject => (i === 3 ? [o[0], new Uint8Array([0x05])] : o)), image], 'objects[3].record'],
      ['an empty record', () => [objects.map((o, i): ExportedObject => (i === 3 ? [o[0], new Uint8Array(0)] : o)), image], 'objects[3].record'],
      ['oid 0', () => [objects.map((o, i): ExportedObject => (i === 4 ? [0, o[1]] : o)), image], 'objects[4].oid'],
      ['no root', () => [objects.filter(([oid]) => oid !== 1), image], 'objects'],
    ];
    for (const [what, make, field] of cases) {
      const [objs, img] = make();
      const e = caught(() => importObjects({ store: store2, app: 'mover', profile: rpi }, objs, img));
      expect(e.code, what).toBe('HEAP_BAD_IMAGE');
      expect(e.details.field, what).toBe(field);
      expect(e.message, what).toContain(field);
      expect(store2.hasApp('mover') && store2.headVersion('mover') > 0, `${what}: nothing committed`).toBe(false);
    }
    // The good image imports after all those refusals; then the app exists and a second import is refused.
    const ok = importObjects({ store: store2, app: 'mover', profile: rpi }, objects, image);
    const v = ok.version;
    ok.close();
    const e = caught(() => importObjects({ store: store2, app: 'mover', profile: rpi }, objects, image));
    expect(e.code).toBe('HEAP_BAD_IMAGE');
    expect(e.details.field).toBe('app');
    expect(store2.headVersion('mover')).toBe(v);
  });
});
