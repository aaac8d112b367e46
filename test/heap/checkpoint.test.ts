import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, reasonOf, withReason } from '../../agent/heap/index.js';
import { decodeMeta, encodeMeta, MAX_REASON } from '../../agent/heap/heap-meta.js';
import { encodeValue } from '../../agent/heap/record-codec.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, caught, faultyIo, sameGraph } from './graph.js';
import { FerryError } from '../../core/errors.js';
import { fsBlockIo, type BlockIo } from '../../store/index.js';

/**
 * Checkpoints: versions grow and older ones reopen with the same graph; bad options name the
 * field; a checkpoint whose fdatasync fails leaves the store's head unchanged and the heap
 * restricted with its changes in memory, and the next checkpoint after the fault succeeds —
 * unless dirty lines had been paged out into the failed transaction, in which case the heap
 * goes back to the last committed version.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

describe('heap checkpoints', () => {
  it('versions grow; each kept version reopens (read-only, or restored read-write) with its graph', () => {
    const dir = temp.dir();
    const store = temp.store({ dir, keepVersions: 8 });
    const heap = openHeap({ store, app: 'v', profile });
    const root = heap.root as Record<string, any>;
    const snaps = new Map<number, unknown>();
    let last = 0;
    for (let i = 0; i < 5; i++) {
      root[`k${i}`] = { i, list: [i, 'ü'], shared: root };
      if (i > 0) root[`k${i}`].prev = root[`k${i - 1}`];
      const v = heap.checkpoint().version;
      expect(v).toBeGreaterThan(last);
      last = v;
      snaps.set(v, heap.toPlain(heap.root));
    }
    heap.close();
    for (const [v, snap] of snaps) {
      const old = openHeap({ store, app: 'v', profile, version: v, readOnly: true });
      expect(old.version).toBe(v);
      expect(sameGraph(old.toPlain(old.root), snap), `version ${v}`).toBeNull();
      old.close();
    }
    const [first, firstSnap] = [...snaps][1]!;
    const restored = openHeap({ store, app: 'v', profile, version: first });
    expect(sameGraph(restored.toPlain(restored.root), firstSnap)).toBeNull();
    (restored.root as Record<string, any>).after = true;
    expect(restored.checkpoint().version).toBeGreaterThan(last);
    restored.close();
  });

  it('bad options → BAD_OPTION naming options.<field>', () => {
    const store = temp.store();
    const bad: [Record<string, unknown>, string][] = [
      [{ budgetBytes: 100 }, 'options.budgetBytes'],
      [{ nurseryFraction: 0.9 }, 'options.nurseryFraction'],
      [{ maxObjectBytes: 1 }, 'options.maxObjectBytes'],
      [{ evictBatch: 0 }, 'options.evictBatch'],
      [{ checkpointIntervalMs: -1 }, 'options.checkpointIntervalMs'],
      [{ gcLowSpaceFraction: 2 }, 'options.gcLowSpaceFraction'],
      [{ readOnly: 'yes' }, 'options.readOnly'],
      [{ stateProvider: 5 }, 'options.stateProvider'],
      [{ nosuch: 1 }, 'options.nosuch'],
      [{ app: 42 }, 'options.app'],
    ];
    for (const [extra, field] of bad) {
      const e = caught(() => openHeap({ store, app: 'opts', profile, ...extra } as never));
      expect(e.code, field).toBe('BAD_OPTION');
      expect(String(e.details.field), field).toBe(field);
      expect(e.message).toContain(field);
    }
    expect(store.hasApp('opts')).toBe(false);
  });

  it('fdatasync fails: HEAP_CHECKPOINT_FAILED, head unchanged, restricted with changes kept; the next checkpoint succeeds', () => {
    const dir = temp.dir();
    const { io, fail } = faultyIo();
    const store = temp.store({ dir, io });
    const heap = openHeap({ store, app: 'f', profile });
    const root = heap.root as Record<string, any>;
    root.base = { n: 1 };
    const v1 = heap.checkpoint().version;
    root.base.n = 2;
    root.more = Array.from({ length: 20 }, (_, i) => ({ i, s: 'é'.repeat(i) }));
    const want = heap.toPlain(heap.root);
    fail.sync = true;
    const e = caught(() => heap.checkpoint());
    expect(e.code).toBe('HEAP_CHECKPOINT_FAILED');
    expect(e.details.rolledBack).toBe(false);
    expect(store.headVersion('f')).toBe(v1);
    expect(heap.version).toBe(v1);
    expect(heap.stats().restricted).toBe(true);
    expect(heap.stats().failedCheckpoints).toBe(1);
    expect(sameGraph(heap.toPlain(heap.root), want), 'changes stay in memory').toBeNull();
    fail.sync = false;
    const v2 = heap.checkpoint().version;
    expect(v2).toBeGreaterThan(v1);
    expect(heap.stats().restricted).toBe(false);
    heap.close();
    const again = openHeap({ store, app: 'f', profile });
    expect(sameGraph(again.toPlain(again.root), want)).toBeNull();
    again.close();
    expect(store.integrityCheck().ok).toBe(true);
  });

  it('fdatasync fails after dirty lines were paged out: the heap rolls back to the committed version', () => {
    const dir = temp.dir();
    const { io, fail } = faultyIo();
    const store = temp.store({ dir, io });
    const heap = openHeap({ store, app: 'r', profile, budgetBytes: 8 * 1024, maxObjectBytes: 2048 });
    const root = heap.root as Record<string, any>;
    root.items = [];
    for (let i = 0; i < 10; i++) root.items.push({ i, pad: 'a'.repeat(600) });
    heap.checkpoint();
    const committed = heap.toPlain(heap.root);
    for (let i = 0; i < 30; i++) root.items.push({ i: 100 + i, pad: 'b'.repeat(600) });
    for (let i = 0; i < 10; i++) root.items[i].pad = 'c'.repeat(600);
    expect(heap.stats().evictions).toBeGreaterThan(0);
    fail.sync = true;
    const e = caught(() => heap.checkpoint());
    expect(e.code).toBe('HEAP_CHECKPOINT_FAILED');
    expect(e.details.rolledBack).toBe(true);
    expect(sameGraph(heap.toPlain(heap.root), committed), 'back at the committed snapshot').toBeNull();
    fail.sync = false;
    (heap.root as Record<string, any>).after = 1;
    heap.checkpoint();
    heap.close();
    const again = openHeap({ store, app: 'r', profile });
    const got = again.toPlain(again.root) as Record<string, unknown>;
    expect(got.after).toBe(1);
    delete got.after;
    expect(sameGraph(got, committed)).toBeNull();
    again.close();
    expect(store.integrityCheck().ok).toBe(true);
  });
});

describe('a line write that fails while paging out (the store aborts the open transaction)', () => {
  it('never reads back stale bytes: the lines already paged out are known lost, and the next checkpoint goes back to the committed version', () => {
    const fail = { write: false, writes: 0 };
    const io: BlockIo = {
      ...fsBlockIo,
      pwrite(fd, data, position) {
        if (fail.write) {
          fail.writes++;
          throw Object.assign(new Error('EIO: injected write failure'), { code: 'EIO' });
        }
        fsBlockIo.pwrite(fd, data, position);
      },
    };
    const store = temp.store({ io });
    const options = { store, app: 'lost', profile, budgetBytes: 8 * 1024, maxObjectBytes: 2048 };
    const heap = openHeap(options);
    const root = heap.root as Record<string, any>;
    for (let i = 0; i < 40; i++) root[`k${i}`] = { i, pad: 'c'.repeat(600) };
    heap.checkpoint();
    const committed = heap.toPlain(heap.root);
    // Change every object: dirty lines are paged out into the open transaction as the walk goes on.
    const evictions = heap.stats().evictions;
    for (let i = 0; i < 40; i++) root[`k${i}`].pad = 'n'.repeat(600);
    expect(heap.stats().evictions).toBeGreaterThan(evictions);
    // Now a write-out fails: the store aborts the transaction, and with it what was paged out into it.
    fail.write = true;
    let refused = 0;
    for (let i = 0; i < 40; i++) {
      try {
        root[`k${i}`].more = 'x'.repeat(300);
      } catch (e) {
        refused++;
        expect((e as FerryError).code).toMatch(/^(HEAP|STORE)_/);
      }
    }
    expect(fail.writes).toBeGreaterThan(0);
    fail.write = false;
    // Reading an object whose newest bytes were lost is refused; it never shows the older bytes as if current.
    for (let i = 0; i < 40; i++) {
      try {
        const pad = root[`k${i}`].pad as string;
        expect(pad[0], `k${i} read back`).toBe('n');
      } catch (e) {
        if (!(e instanceof FerryError)) throw e;
        expect(['HEAP_CHECKPOINT_FAILED', 'HEAP_CLOSED']).toContain(e.code);
      }
    }
    const e = caught(() => heap.checkpoint());
    expect(e.code).toBe('HEAP_CHECKPOINT_FAILED');
    expect(e.details.rolledBack).toBe(true);
    // Back at the committed version, and working.
    expect(sameGraph(heap.toPlain(heap.root), committed)).toBeNull();
    (heap.root as Record<string, any>).after = 1;
    heap.checkpoint();
    heap.close();
    const again = openHeap(options);
    expect((again.root as Record<string, any>).k3.pad[0]).toBe('c');
    expect((again.root as Record<string, any>).after).toBe(1);
    expect(refused).toBeGreaterThanOrEqual(0);
    again.close();
  });
});

describe('the reason a checkpoint records (heap metadata, format 1)', () => {
  const base = { lineSize: 64, hwm: 3, nextOid: 7, tablePages: [1], pins: [2], user: new Uint8Array([1, 2, 3]) };

  it('round-trips a reason, cuts a long one, and reads metadata written before the field as having none', () => {
    expect(decodeMeta(encodeMeta({ ...base, reason: 'group' }), 'a')).toEqual({ ...base, reason: 'group' });
    expect(reasonOf(encodeMeta({ ...base, reason: 'x'.repeat(100) }))).toBe('x'.repeat(MAX_REASON));
    const before = encodeValue({ ferryHeap: 1, ...base }); // as an older Ferry wrote it
    expect(decodeMeta(before, 'a')).toEqual(base);
    expect(reasonOf(before)).toBeUndefined();
    // A reason that is not text labels nothing; it does not make the metadata invalid.
    expect(decodeMeta(encodeValue({ ferryHeap: 1, ...base, reason: 7 }), 'a')).toEqual(base);
    expect(reasonOf(new Uint8Array([0xff]))).toBeUndefined();
    expect(reasonOf(withReason(before, 'a', 'restore of 2'))).toBe('restore of 2');
    expect(decodeMeta(withReason(before, 'a', 'restore of 2'), 'a').user).toEqual(base.user);
  });
});
