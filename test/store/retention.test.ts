import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, type StoreOptions } from '../../store/index.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const line = (fill: number) => new Uint8Array(1024).fill(fill);

/** Version 1 writes 40 lines (a base); later versions rewrite lines 0 and 1 (small deltas, so the rows before them stay as links). */
function commit(store: ReturnType<typeof openStore>, fill: number): number {
  const tx = store.begin('a');
  const lines = fill === 1 ? 40 : 2;
  for (let l = 0; l < lines; l++) tx.write(l, line(fill));
  return tx.commit().version;
}

describe('retention', () => {
  for (const durability of ['full', 'batched'] as const) {
    it(`(${durability}) a removed version leaves a gap: no older version comes back, not even after reopen`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'ferry-retention-'));
      dirs.push(dir);
      const options: StoreOptions = { dir, segmentBytes: 4096, keepVersions: 3, durability, spaceFactor: 1.25 };
      let store = openStore(options);
      store.createApp('a', { lineSize: 1024, maxLines: 64 });
      for (let v = 1; v <= 5; v++) commit(store, v);
      expect(store.versions('a').map((v) => v.version)).toEqual([3, 4, 5]);
      store.removeVersion('a', 4);
      expect(store.versions('a').map((v) => v.version)).toEqual([3, 5]);
      store.close();
      store = openStore(options);
      // Versions 1 and 2 still have rows (links of the delta chain) but are not kept: they must not return.
      expect(store.versions('a').map((v) => v.version)).toEqual([3, 5]);
      // Churn so that the segments versions 1, 2 and 4 used are reclaimed and reused.
      store.sync();
      for (let i = 0; i < 2; i++) store.compact('a');
      store.close();
      store = openStore(options);
      const kept = store.versions('a').map((v) => v.version);
      expect(kept).not.toContain(2);
      expect(kept).not.toContain(4);
      for (const v of kept) expect(store.integrityCheck().ok && store.readLine('a', 0, { version: v })?.length).toBe(1024);
      expect(() => store.readLine('a', 0, { version: 2 })).toThrowError(expect.objectContaining({ code: 'STORE_UNKNOWN_VERSION' }));
      store.close();
    });
  }

  it('keeps exactly the newest keepVersions versions as checkpoints go on', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-retention-'));
    dirs.push(dir);
    const store = openStore({ dir, segmentBytes: 4096, keepVersions: 2 });
    store.createApp('a', { lineSize: 1024, maxLines: 64 });
    for (let v = 1; v <= 6; v++) {
      commit(store, v);
      const kept = store.versions('a').map((x) => x.version);
      expect(kept).toEqual(v === 1 ? [1] : [v - 1, v]);
      expect(store.readLine('a', 0, { version: kept[0] })).toEqual(line(kept[0]!));
    }
    store.close();
  });
});
