import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../store/index.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const line = (fill: number) => new Uint8Array(256).fill(fill);

describe('a transaction reads its own writes (the heap pages dirty lines out into it)', () => {
  it('sees staged writes and deletions, else the parent version; nothing leaks to other readers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-txread-'));
    dirs.push(dir);
    const store = openStore({ dir, segmentBytes: 4096 });
    store.createApp('a', { lineSize: 256, maxLines: 64 });
    const first = store.begin('a');
    expect(first.read(0)).toBeUndefined();
    first.write(0, line(1));
    first.write(1, line(2));
    expect(first.read(0)).toEqual(line(1));
    first.commit();

    const tx = store.begin('a');
    // 40 lines of 256 B span several 4 KiB segments: some are on disk, some in the open buffer.
    for (let i = 2; i < 42; i++) tx.write(i, line(i));
    tx.write(0, line(99));
    tx.delete(1);
    expect(tx.read(0)).toEqual(line(99));
    expect(tx.read(1)).toBeUndefined();
    for (let i = 2; i < 42; i++) expect(tx.read(i)).toEqual(line(i));
    // Other readers still see the committed version only.
    expect(store.readLine('a', 0)).toEqual(line(1));
    expect(store.readLine('a', 1)).toEqual(line(2));
    expect(store.readLine('a', 5)).toBeUndefined();
    tx.abort();
    expect(() => tx.read(0)).toThrowError(expect.objectContaining({ code: 'STORE_ABORTED' }));
    expect(store.readLine('a', 0)).toEqual(line(1));
    store.close();
  });
});
