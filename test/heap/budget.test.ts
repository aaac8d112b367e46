import { afterAll, describe, expect, it } from 'vitest';
import { openHeap, type Heap } from '../../agent/heap/index.js';
import { getProfile } from '../../hw-profiles/index.js';
import { Temp, sameGraph } from './graph.js';

/**
 * The in-memory budget holds on a heap ten times larger than it: on profile `j2me-phone`
 * (128 KiB budget, 1 KiB lines, 2 MiB virtual heap) a graph of more than 1.3 MiB (groups of
 * objects with ~200-byte strings, arrays, Maps with shared references, Sets, bytes) is built
 * and then read and written at random. After every single operation `residentBytes` (resident
 * lines plus the nursery) must be within `budgetBytes`; the run must have faulted and evicted;
 * after a checkpoint the reopened heap equals a plain model of the same operations. Run with
 * the nursery on (default share) and off.
 */

const temp = new Temp();
afterAll(() => temp.cleanup());
const profile = getProfile('j2me-phone');

/** Deterministic PRNG (mulberry32): the same operations on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const GROUPS = 120;
const ITEMS = 50;

function text(r: () => number, tag: string): string {
  const n = 205 + Math.floor(r() * 30);
  const c = String.fromCharCode(97 + Math.floor(r() * 26));
  return `${tag}:${c.repeat(n)}`;
}

interface Item {
  i: number;
  s: string;
}
interface Group {
  id: number;
  items: Item[];
  index: Map<string, Item>;
  tags: Set<string>;
  bytes: Uint8Array;
}

function runBudget(nurseryFraction: number | undefined): { faults: number; evictions: number; peak: number; ops: number } {
  const store = temp.store({ profile });
  const options = { store, app: 'big', profile, ...(nurseryFraction === undefined ? {} : { nurseryFraction }) };
  let heap: Heap = openHeap(options);
  const budget = heap.stats().budgetBytes;
  expect(budget).toBe(128 * 1024);
  let peak = 0;
  let ops = 0;
  const sample = (what: string) => {
    ops++;
    const s = heap.stats();
    if (s.residentBytes > peak) peak = s.residentBytes;
    if (s.residentBytes > budget) throw new Error(`op ${ops} (${what}): residentBytes ${s.residentBytes} > budget ${budget}`);
  };
  const r = rng(nurseryFraction === 0 ? 7 : 11);
  const model: { groups: Group[] } = { groups: [] };
  const root = heap.root as { groups: Group[] };
  root.groups = [];
  sample('groups');
  let liveChars = 0;

  // Build: more than ten budgets of live data.
  for (let g = 0; g < GROUPS; g++) {
    const mk = (): Group => ({ id: g, items: [], index: new Map(), tags: new Set(['g', `g${g % 7}`]), bytes: new Uint8Array([g & 255, 1, 2, 3]) });
    model.groups.push(mk());
    root.groups.push(mk());
    sample(`group ${g}`);
    const hg = root.groups[g]!;
    const mg = model.groups[g]!;
    for (let i = 0; i < ITEMS; i++) {
      const s = text(r, `${g}.${i}`);
      liveChars += s.length;
      mg.items.push({ i, s });
      hg.items.push({ i, s });
      sample(`push ${g}.${i}`);
      // The Map shares the item with the array (a shared reference the reopen must keep).
      mg.index.set(`k${i}`, mg.items[i]!);
      hg.index.set(`k${i}`, hg.items[i]!);
      sample(`index ${g}.${i}`);
    }
  }
  expect(liveChars, "live string data alone is over ten budgets").toBeGreaterThan(10 * budget);
  expect(heap.stats().virtualBytes, 'the virtual heap holds more than ten budgets').toBeGreaterThan(10 * budget);

  // Random reads and writes all over the heap.
  for (let n = 0; n < 3000; n++) {
    const g = Math.floor(r() * GROUPS);
    const hg = root.groups[g]!;
    const mg = model.groups[g]!;
    const k = Math.floor(r() * mg.items.length);
    const p = r();
    if (p < 0.45) {
      // read: the item through the array and through the Map
      const got = hg.items[k]!.s;
      if (got !== mg.items[k]!.s) throw new Error(`read ${g}.${k}: ${got.slice(0, 20)} vs ${mg.items[k]!.s.slice(0, 20)}`);
      const via = hg.index.get(`k${mg.items[k]!.i}`);
      if (mg.index.has(`k${mg.items[k]!.i}`) && via?.i !== mg.items[k]!.i) throw new Error(`map read ${g}.${k}`);
      sample('read');
    } else if (p < 0.75) {
      const s = text(r, `w${n}`);
      mg.items[k]!.s = s;
      hg.items[k]!.s = s;
      sample('write string');
    } else if (p < 0.85) {
      const s = text(r, `n${n}`);
      const i = ITEMS + n;
      mg.items.push({ i, s });
      hg.items.push({ i, s });
      mg.index.set(`k${i}`, mg.items[mg.items.length - 1]!);
      hg.index.set(`k${i}`, hg.items[hg.items.length - 1]!);
      sample('append');
    } else if (p < 0.93) {
      // drop an item from the Map only (the array still holds it), or from both
      const key = `k${mg.items[k]!.i}`;
      mg.index.delete(key);
      hg.index.delete(key);
      if (r() < 0.5 && mg.items.length > 2) {
        mg.items.splice(k, 1);
        hg.items.splice(k, 1);
      }
      sample('delete');
    } else {
      mg.tags.add(`t${n % 13}`);
      hg.tags.add(`t${n % 13}`);
      mg.bytes[0] = n & 255;
      hg.bytes[0] = n & 255;
      heap.touch(hg.bytes);
      sample('tags and bytes');
    }
    if (n % 1000 === 999) {
      heap.checkpoint();
      sample('checkpoint');
    }
  }
  const s = heap.stats();
  expect(s.faults, 'lines were faulted in').toBeGreaterThan(100);
  expect(s.evictions, 'lines were evicted').toBeGreaterThan(100);
  heap.checkpoint();
  sample('final checkpoint');
  heap.close();

  heap = openHeap(options);
  const plain = heap.toPlain(heap.root);
  sample('reopen walk');
  expect(sameGraph(plain, model)).toBeNull();
  heap.close();
  expect(store.integrityCheck().ok).toBe(true);
  temp.close(store);
  return { faults: s.faults, evictions: s.evictions, peak, ops };
}

describe('in-memory budget on j2me-phone (heap > 10× budget)', () => {
  it('nursery on: residentBytes ≤ budgetBytes after every operation; faults and evictions; reopen equals the model', () => {
    const r = runBudget(undefined);
    expect(r.ops).toBeGreaterThan(GROUPS * ITEMS * 2);
    expect(r.peak).toBeGreaterThan(0);
  });

  it('nursery off (nurseryFraction 0): the same', () => {
    const r = runBudget(0);
    expect(r.ops).toBeGreaterThan(GROUPS * ITEMS * 2);
  });
});
