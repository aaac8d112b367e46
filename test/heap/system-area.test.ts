import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, openSystemArea } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { contentHash, type Store } from '../../store/index.js';
import { Temp, caught } from './graph.js';

/**
 * System lines: entries (module source, descriptions, shared tables) in their own store segment
 * (`ferry.system`), each starting on a line boundary. A checkpoint commits only when something
 * changed; an unchanged entry keeps its lines (same line numbers, same content hashes) while a
 * changed one gets new lines and its old ones are deleted. Reopening loads the entries. A heap
 * opened with the area sees it read-only through `heap.system` (copies).
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');
const LS = profile.cacheLineBytes;
const APP = 'ferry.system';

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  // Not periodic: no two lines of any entry have the same content.
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Content hashes of an entry's lines (each chunk zero-padded to a line). */
function hashesOf(b: Uint8Array): string[] {
  const out: string[] = [];
  for (let off = 0; off < Math.max(1, b.length); off += LS) {
    const line = new Uint8Array(LS);
    line.set(b.subarray(off, off + LS));
    out.push(Buffer.from(contentHash(line)).toString('hex'));
  }
  return out;
}

function stored(store: Store): Map<string, number> {
  return new Map(store.listLines(APP).map((l) => [Buffer.from(l.hash).toString('hex'), l.line]));
}

describe('system area', () => {
  it('put / get / remove / keys; checkpoint only when changed; reopen loads the entries', () => {
    const store = temp.store({ profile });
    const area = openSystemArea({ store, profile });
    expect(area.keys()).toEqual([]);
    expect(area.checkpoint(), 'nothing to commit').toBeNull();
    const code = bytes(2500, 1);
    const desc = new TextEncoder().encode('{"name":"notes"}');
    area.put('apps/notes/main.js', code);
    area.put('apps/notes/app.json', desc);
    area.put('tmp', bytes(10, 3));
    area.put('empty', new Uint8Array(0));
    expect(area.keys()).toEqual(['apps/notes/main.js', 'apps/notes/app.json', 'tmp', 'empty']);
    expect(area.get('apps/notes/main.js')).toEqual(code);
    expect(area.get('empty')).toEqual(new Uint8Array(0));
    expect(area.get('nope')).toBeUndefined();
    expect(area.remove('tmp')).toBe(true);
    expect(area.remove('tmp')).toBe(false);
    expect(area.stats().dirty).toBe(true);
    const v1 = area.checkpoint();
    expect(v1).toBeGreaterThan(0);
    expect(store.headVersion(APP)).toBe(v1);
    expect(area.checkpoint(), 'unchanged: no version').toBeNull();
    area.put('apps/notes/main.js', code.slice()); // same content: a no-op
    expect(area.checkpoint()).toBeNull();
    expect(store.headVersion(APP)).toBe(v1);
    // 3 lines of code, 1 of description, 1 for the empty entry; 'tmp' never reached the store.
    expect(store.listLines(APP)).toHaveLength(5);

    const again = openSystemArea({ store, profile });
    expect(again.keys()).toEqual(['apps/notes/main.js', 'apps/notes/app.json', 'empty']);
    expect(again.get('apps/notes/main.js')).toEqual(code);
    expect(again.get('apps/notes/app.json')).toEqual(desc);
    expect(again.get('empty')).toEqual(new Uint8Array(0));
    expect(again.checkpoint()).toBeNull();
    // Changes after a reopen go on lines after the loaded ones.
    again.put('later', bytes(100, 9));
    expect(again.checkpoint()).toBeGreaterThan(v1!);
    const third = openSystemArea({ store, profile });
    expect(third.get('later')).toEqual(bytes(100, 9));
    expect(third.get('apps/notes/main.js')).toEqual(code);
  });

  it('an unchanged entry keeps its lines across checkpoints; a changed one gets new lines and its old ones are deleted', () => {
    const store = temp.store({ profile });
    const area = openSystemArea({ store, profile });
    const a = bytes(3000, 1);
    const b1 = bytes(1500, 2);
    const b2 = bytes(1800, 5);
    area.put('a', a);
    area.put('b', b1);
    area.checkpoint();
    const s1 = stored(store);
    for (const h of [...hashesOf(a), ...hashesOf(b1)]) expect(s1.has(h)).toBe(true);
    expect(s1.size).toBe(hashesOf(a).length + hashesOf(b1).length);

    area.put('b', b2);
    const v2 = area.checkpoint();
    expect(v2).not.toBeNull();
    const s2 = stored(store);
    for (const h of hashesOf(a)) expect(s2.get(h), 'entry a keeps its line').toBe(s1.get(h));
    for (const h of hashesOf(b2)) expect(s2.has(h), 'entry b has new lines').toBe(true);
    for (const h of hashesOf(b1)) expect(s2.has(h), 'the old lines of b are gone').toBe(false);
    expect(s2.size).toBe(hashesOf(a).length + hashesOf(b2).length);
    expect(store.versions(APP).find((v) => v.version === v2)?.lineCount).toBe(s2.size);

    area.remove('a');
    area.checkpoint();
    const s3 = stored(store);
    expect(s3.size).toBe(hashesOf(b2).length);
    for (const h of hashesOf(a)) expect(s3.has(h)).toBe(false);
    expect(openSystemArea({ store, profile }).keys()).toEqual(['b']);
  });

  it('bad key / bad bytes / bad options → BAD_OPTION naming the field; the area is unchanged', () => {
    const store = temp.store({ profile });
    const area = openSystemArea({ store, profile });
    area.put('ok', bytes(5, 1));
    area.checkpoint();
    const badKeys: unknown[] = ['', ' lead', '../up', 'a b', 'x'.repeat(201), 42, null, 'ключ'];
    for (const key of badKeys) {
      const e = caught(() => area.put(key as string, bytes(3, 1)));
      expect(e.code, String(key)).toBe('BAD_OPTION');
      expect(e.details.field).toBe('key');
    }
    for (const b of ['text', [1, 2], null, new Uint16Array(2), Buffer.alloc(0).buffer]) {
      const e = caught(() => area.put('k', b as unknown as Uint8Array));
      expect(e.code).toBe('BAD_OPTION');
      expect(e.details.field).toBe('bytes');
    }
    expect(area.keys()).toEqual(['ok']);
    expect(area.checkpoint()).toBeNull();
    const noStore = caught(() => openSystemArea({ store: null as never, profile }));
    expect([noStore.code, noStore.details.field]).toEqual(['BAD_OPTION', 'options.store']);
    const noProfile = caught(() => openSystemArea({ store, profile: {} as never }));
    expect([noProfile.code, noProfile.details.field]).toEqual(['BAD_OPTION', 'options.profile']);
    const notArea = caught(() => openHeap({ store, app: 'h', profile, system: {} as never }));
    expect([notArea.code, notArea.details.field]).toEqual(['BAD_OPTION', 'options.system']);
  });

  it('openHeap({ system }) exposes heap.system read-only: get returns copies; no put', () => {
    const store = temp.store({ profile });
    const area = openSystemArea({ store, profile });
    const src = new TextEncoder().encode('export default () => 1;');
    area.put('apps/x/main.js', src);
    area.checkpoint();
    const heap = openHeap({ store, app: 'x', profile, system: area });
    const sys = heap.system!;
    expect(sys.keys()).toEqual(['apps/x/main.js']);
    const copy = sys.get('apps/x/main.js')!;
    expect(copy).toEqual(src);
    copy[0] = copy[0]! ^ 0xff;
    copy.fill(0, 1);
    expect(sys.get('apps/x/main.js')).toEqual(src);
    expect(area.get('apps/x/main.js')).toEqual(src);
    expect((sys as Record<string, unknown>).put).toBeUndefined();
    expect((sys as Record<string, unknown>).remove).toBeUndefined();
    expect((sys as Record<string, unknown>).checkpoint).toBeUndefined();
    expect(area.stats().dirty).toBe(false);
    // The app's checkpoints do not touch the system segment.
    const v = store.headVersion(APP);
    (heap.root as Record<string, unknown>).n = 1;
    heap.checkpoint();
    expect(store.headVersion(APP)).toBe(v);
    heap.close();
    const plain = openHeap({ store, app: 'x', profile });
    expect(plain.system).toBeUndefined();
    plain.close();
  });
});
