import { describe, expect, it } from 'vitest';
import { DigestTable, digestOf } from '../../agent/runtime/spent-ids.js';
import { xorshift } from '../helpers/prng.mjs';

describe('spent ids: the in-memory digest table', () => {
  it('is a multiset: adds, finds and deletes copies like a reference map, through growth, shrinking and wrap-around', () => {
    for (const seed of [1, 2, 3]) {
      const rnd = xorshift(seed);
      const t = new DigestTable();
      const ref = new Map<string, number>();
      // Few distinct low halves: long probe runs that wrap around the table's end, and duplicates.
      const pick = (): [number, number] => [Math.floor(rnd() * 8), Math.floor(rnd() * 4096) >>> 0];
      const live: Array<[number, number]> = [];
      for (let step = 0; step < 20_000; step++) {
        const r = rnd();
        if (r < 0.55 || live.length === 0) {
          const d = rnd() < 0.1 && live.length > 0 ? live[Math.floor(rnd() * live.length)]! : pick();
          t.add(d[0], d[1]);
          live.push(d);
          ref.set(d.join(':'), (ref.get(d.join(':')) ?? 0) + 1);
        } else if (r < 0.9) {
          const i = Math.floor(rnd() * live.length);
          const d = live[i]!;
          live[i] = live[live.length - 1]!;
          live.pop();
          expect(t.delete(d[0], d[1])).toBe(true);
          const k = d.join(':');
          if (ref.get(k) === 1) ref.delete(k);
          else ref.set(k, ref.get(k)! - 1);
        } else {
          const d = pick();
          expect(t.has(d[0], d[1])).toBe(ref.has(d.join(':')));
        }
        expect(t.size).toBe(live.length);
      }
      for (const k of ref.keys()) {
        const [h, l] = k.split(':').map(Number) as [number, number];
        expect(t.has(h, l)).toBe(true);
      }
      // Drain: everything goes, nothing is found after.
      for (const d of live) expect(t.delete(d[0], d[1])).toBe(true);
      expect(t.size).toBe(0);
      expect(t.has(live[0]![0], live[0]![1])).toBe(false);
      expect(t.delete(1, 1)).toBe(false);
    }
  });

  it('the all-zero digest is a digest like any other', () => {
    const t = new DigestTable();
    expect(t.has(0, 0)).toBe(false);
    t.add(0, 0);
    expect(t.has(0, 0)).toBe(true);
    expect(t.delete(0, 0)).toBe(true);
    expect(t.has(0, 0)).toBe(false);
  });

  it('ids digest to the first 64 bits of their SHA-256', () => {
    const d = new Uint32Array(2);
    digestOf('abc', d);
    // SHA-256("abc") = ba7816bf 8f01cfea ...
    expect([d[0]!.toString(16), d[1]!.toString(16)]).toEqual(['ba7816bf', '8f01cfea']);
  });
});
