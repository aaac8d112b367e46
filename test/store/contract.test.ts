import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { contentHash, HASH_BYTES, openStore, type Store, type StoreOptions } from '../../store/index.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ferry-contract-'));
  dirs.push(d);
  return d;
}

/** Distinct, non-uniform bytes per (tag, line) so a misplaced line is always detected. */
function bytesFor(size: number, tag: number, line: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (tag * 2654435761 + line * 40503 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** readState as a plain Uint8Array (the store may hand back a Buffer, a Uint8Array subclass). */
function stateOf(store: Store, app: string, options?: { version?: number }): Uint8Array {
  const st = store.readState(app, options);
  expect(st).toBeInstanceOf(Uint8Array);
  return new Uint8Array(st);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryError);
    return (e as FerryError).code;
  }
  return undefined;
}

/**
 * The store's contract. `makeOptions(dir)` gives the options to open a store in `dir` with; the
 * suite runs against every configuration handed to it.
 */
export function storeContract(name: string, makeOptions: (dir: string) => StoreOptions): void {
  describe(`store contract: ${name}`, () => {
    const open = (dir: string): Store => openStore(makeOptions(dir));
    const fresh = (): { dir: string; store: Store } => {
      const dir = tempDir();
      return { dir, store: open(dir) };
    };
    const LS = 256;
    const line = (tag: number, l: number) => bytesFor(LS, tag, l);
    /** Writes lines `lines` with tag `tag` and commits; returns the version. */
    const commitLines = (store: Store, app: string, tag: number, lines: number[], state?: Uint8Array): number => {
      const tx = store.begin(app);
      for (const l of lines) tx.write(l, line(tag, l));
      if (state) tx.setState(state);
      return tx.commit().version;
    };
    const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

    it('createApp is idempotent with the same options and refuses conflicting ones', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 100 });
      store.createApp('a', { lineSize: LS, maxLines: 100 });
      expect(store.listApps()).toEqual(['a']);
      expect(store.appInfo('a')).toEqual({ lineSize: LS, maxLines: 100, head: 0 });
      for (const conflicting of [{ lineSize: 512, maxLines: 100 }, { lineSize: LS, maxLines: 101 }]) {
        let err: unknown;
        try { store.createApp('a', conflicting); } catch (e) { err = e; }
        expect((err as FerryError).code).toBe('STORE_BAD_INPUT');
        expect((err as FerryError).message).toMatch(/app a exists/);
      }
      expect(store.appInfo('a')).toEqual({ lineSize: LS, maxLines: 100, head: 0 });
      store.close();
    });

    it('writes, commits and reads back; unwritten lines are undefined', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 100 });
      const tx = store.begin('a');
      for (const l of [0, 5, 99]) tx.write(l, line(1, l));
      tx.setState(new Uint8Array([1, 2, 3]));
      const r = tx.commit();
      expect(r).toMatchObject({ version: 1, linesWritten: 3, linesDeleted: 0 });
      expect(store.headVersion('a')).toBe(1);
      expect(store.readLine('a', 0)).toEqual(line(1, 0));
      expect(store.readLine('a', 5)).toEqual(line(1, 5));
      expect(store.readLine('a', 99)).toEqual(line(1, 99));
      expect(store.readLine('a', 1)).toBeUndefined();
      expect(stateOf(store, 'a')).toEqual(new Uint8Array([1, 2, 3]));
      store.close();
    });

    it('a written buffer mutated after write() does not change what was committed', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 10 });
      const buf = line(1, 0);
      const tx = store.begin('a');
      tx.write(0, buf);
      buf.fill(0xee);
      tx.commit();
      expect(store.readLine('a', 0)).toEqual(line(1, 0));
      store.close();
    });

    it('reads a set of lines atomically at a given version', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      const v1 = commitLines(store, 'a', 1, range(10));
      const v2 = commitLines(store, 'a', 2, [0, 2, 4, 11]);
      const lines = [0, 1, 2, 3, 4, 11];
      expect(store.read('a', lines, { version: v1 })).toEqual([line(1, 0), line(1, 1), line(1, 2), line(1, 3), line(1, 4), undefined]);
      expect(store.read('a', lines, { version: v2 })).toEqual([line(2, 0), line(1, 1), line(2, 2), line(1, 3), line(2, 4), line(2, 11)]);
      expect(store.read('a', lines)).toEqual(store.read('a', lines, { version: v2 }));
      // an open transaction is invisible to readers
      const tx = store.begin('a');
      tx.write(1, line(3, 1));
      expect(store.read('a', [1])).toEqual([line(1, 1)]);
      tx.abort();
      store.close();
    });

    it('deletes lines; older versions still see them', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      const v1 = commitLines(store, 'a', 1, range(6));
      const tx = store.begin('a');
      tx.delete(2);
      tx.delete(3);
      tx.delete(40); // never written: allowed, changes nothing
      const r = tx.commit();
      expect(r.linesDeleted).toBe(2);
      expect(store.read('a', [1, 2, 3, 4])).toEqual([line(1, 1), undefined, undefined, line(1, 4)]);
      expect(store.readLine('a', 2, { version: v1 })).toEqual(line(1, 2));
      const vs = store.versions('a');
      expect(vs.map((v) => v.lineCount)).toEqual([6, 4]);
      expect(store.listLines('a').map((l) => l.line)).toEqual([0, 1, 4, 5]);
      // re-write a deleted line
      commitLines(store, 'a', 5, [2]);
      expect(store.readLine('a', 2)).toEqual(line(5, 2));
      expect(store.versions('a').at(-1)!.lineCount).toBe(5);
      store.close();
    });

    it('state blob: set per version, kept when a commit leaves it unset, empty before any set', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 8 });
      const v1 = commitLines(store, 'a', 1, [0]);
      expect(stateOf(store, 'a')).toEqual(new Uint8Array(0));
      const v2 = commitLines(store, 'a', 2, [0], new Uint8Array([9, 8, 7]));
      const v3 = commitLines(store, 'a', 3, [1]);
      expect(stateOf(store, 'a', { version: v1 })).toEqual(new Uint8Array(0));
      expect(stateOf(store, 'a', { version: v2 })).toEqual(new Uint8Array([9, 8, 7]));
      expect(stateOf(store, 'a', { version: v3 })).toEqual(new Uint8Array([9, 8, 7]));
      // a state-only commit
      const tx = store.begin('a');
      tx.setState(new Uint8Array(1000).fill(4));
      const v4 = tx.commit().version;
      expect(stateOf(store, 'a')).toEqual(new Uint8Array(1000).fill(4));
      expect(store.readLine('a', 1, { version: v4 })).toEqual(line(3, 1));
      expect(store.versions('a').find((v) => v.version === v4)!.stateBytes).toBe(1000);
      store.close();
    });

    it('versions(): retention keeps the newest keepVersions, current flag, lineCount and bytes', () => {
      const { store } = fresh();
      const keep = makeOptions('x').keepVersions ?? 4;
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      for (let v = 1; v <= keep + 3; v++) commitLines(store, 'a', v, [v]); // version v holds lines 1..v
      const vs = store.versions('a');
      expect(vs.map((v) => v.version)).toEqual(range(keep, 4));
      expect(vs.map((v) => v.current)).toEqual(range(keep).map((i) => i === keep - 1));
      for (const v of vs) {
        expect(v.lineCount).toBe(v.version);
        expect(v.bytes).toBe(v.version * LS);
        expect(v.createdAt).toBeGreaterThan(Date.now() - 60_000);
        expect(v.createdAt).toBeLessThanOrEqual(Date.now());
      }
      expect(codeOf(() => store.readLine('a', 1, { version: 3 }))).toBe('STORE_UNKNOWN_VERSION');
      expect(store.readLine('a', 1, { version: 4 })).toEqual(line(1, 1));
      store.close();
    });

    it('removeVersion removes a kept version, never the current one', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'a', 1, [0, 1]);
      const v2 = commitLines(store, 'a', 2, [0]);
      const v3 = commitLines(store, 'a', 3, [1]);
      store.removeVersion('a', v2);
      expect(store.versions('a').map((v) => v.version)).toEqual([1, 3]);
      expect(codeOf(() => store.read('a', [0], { version: v2 }))).toBe('STORE_UNKNOWN_VERSION');
      expect(store.read('a', [0, 1], { version: 1 })).toEqual([line(1, 0), line(1, 1)]);
      expect(store.read('a', [0, 1])).toEqual([line(2, 0), line(3, 1)]);
      let err: FerryError | undefined;
      try { store.removeVersion('a', v3); } catch (e) { err = e as FerryError; }
      expect(err?.code).toBe('STORE_BAD_INPUT');
      expect(err?.message).toMatch(/current version/);
      expect(store.integrityCheck()).toMatchObject({ ok: true, problems: [] });
      store.close();
    });

    it('restore makes an old version current as a new version equal to it (lines, deletions, state)', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      const v1 = commitLines(store, 'a', 1, [0, 1, 2], new Uint8Array([1]));
      commitLines(store, 'a', 2, [0, 3], new Uint8Array([2, 2]));
      const tx = store.begin('a');
      tx.delete(1);
      tx.commit();
      const linesV1 = store.listLines('a', { version: v1 });
      const r = store.restore('a', v1);
      expect(r.version).toBe(4);
      expect(store.headVersion('a')).toBe(4);
      expect(store.read('a', [0, 1, 2, 3])).toEqual([line(1, 0), line(1, 1), line(1, 2), undefined]);
      expect(stateOf(store, 'a')).toEqual(new Uint8Array([1]));
      expect(store.listLines('a')).toEqual(linesV1);
      // the versions in between are untouched
      expect(store.read('a', [0, 1, 3], { version: 3 })).toEqual([line(2, 0), undefined, line(2, 3)]);
      expect(store.versions('a').at(-1)).toMatchObject({ version: 4, current: true, lineCount: 3 });
      // restore leaves no open transaction behind
      store.begin('a').abort();
      expect(store.integrityCheck().ok).toBe(true);
      store.close();
    });

    it('removeApp removes every version and reclaims the space', () => {
      const { store } = fresh();
      store.createApp('keep', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'keep', 1, range(8));
      const before = store.stats().liveBytes;
      expect(before).toBe(8 * LS);
      store.createApp('gone', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'gone', 1, range(20));
      commitLines(store, 'gone', 2, range(5));
      const hashGone = contentHash(line(1, 10));
      expect(store.hasHashes([hashGone])).toEqual([true]);
      expect(store.stats().liveBytes).toBe(before + 25 * LS);
      const tx = store.begin('gone');
      tx.write(0, line(9, 0));
      store.removeApp('gone'); // aborts the open transaction
      expect(tx.isOpen).toBe(false);
      expect(store.stats().liveBytes).toBe(before);
      expect(store.hasApp('gone')).toBe(false);
      expect(store.listApps()).toEqual(['keep']);
      expect(store.hasHashes([hashGone])).toEqual([false]);
      expect(codeOf(() => store.readLine('gone', 0))).toBe('STORE_UNKNOWN_APP');
      expect(store.read('keep', range(8))).toEqual(range(8).map((l) => line(1, l)));
      // the name is free again, starting from nothing
      store.createApp('gone', { lineSize: 512, maxLines: 4 });
      expect(store.appInfo('gone').head).toBe(0);
      expect(store.integrityCheck().ok).toBe(true);
      store.close();
    });

    it('content hashes: hasHashes / readByHash; a hash no kept version sees is gone', () => {
      const { store } = fresh();
      const keep = makeOptions('x').keepVersions ?? 4;
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'a', 1, [0, 1]);
      const h0 = contentHash(line(1, 0));
      const h1 = contentHash(line(1, 1));
      expect(h0.length).toBe(HASH_BYTES);
      const absent = contentHash(line(77, 0));
      expect(store.hasHashes([h0, absent, h1])).toEqual([true, false, true]);
      expect(store.readByHash(h1)).toEqual(line(1, 1));
      expect(store.readByHash(absent)).toBeUndefined();
      expect(store.listLines('a')).toEqual([
        { line: 0, hash: h0, len: LS },
        { line: 1, hash: h1, len: LS },
      ]);
      // overwrite line 0 keep times: version 1 (the only one that saw h0) leaves the kept set
      for (let v = 2; v <= keep + 1; v++) commitLines(store, 'a', v, [0]);
      expect(store.versions('a')[0]!.version).toBe(2);
      expect(store.hasHashes([h0, h1])).toEqual([false, true]);
      expect(store.readByHash(h0)).toBeUndefined();
      expect(store.readByHash(h1)).toEqual(line(1, 1));
      store.close();
    });

    it('listLines lists the lines of a version in order with hash and length', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'a', 1, [30, 2, 17]);
      const v2 = commitLines(store, 'a', 2, [5]);
      expect(store.listLines('a', { version: 1 }).map((l) => l.line)).toEqual([2, 17, 30]);
      const l2 = store.listLines('a', { version: v2 });
      expect(l2.map((l) => l.line)).toEqual([2, 5, 17, 30]);
      for (const l of l2) {
        expect(l.len).toBe(LS);
        expect(l.hash).toEqual(contentHash(store.readLine('a', l.line)!));
      }
      // the returned hash is a copy
      l2[0]!.hash.fill(0);
      expect(store.listLines('a')[0]!.hash).toEqual(contentHash(line(1, 2)));
      store.close();
    });

    it('a new version shares unchanged lines: only dirty lines are written', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 256 });
      commitLines(store, 'a', 1, range(100));
      const w1 = store.stats().segmentBytesWritten;
      expect(w1).toBe(100 * LS);
      const r = store.begin('a');
      for (const l of [3, 50, 99]) r.write(l, line(2, l));
      const res = r.commit();
      expect(res.compactedLines).toBe(0);
      expect(store.stats().segmentBytesWritten - w1).toBe(3 * LS);
      expect(store.stats().liveBytes).toBe(103 * LS);
      expect(store.stats().bytesCommitted).toBe(103 * LS);
      expect(store.read('a', [2, 3, 50, 99])).toEqual([line(1, 2), line(2, 3), line(2, 50), line(2, 99)]);
      // a state-only commit writes no line bytes
      const w2 = store.stats().segmentBytesWritten;
      const tx = store.begin('a');
      tx.setState(new Uint8Array([1]));
      tx.commit();
      expect(store.stats().segmentBytesWritten).toBe(w2);
      store.close();
    });

    it('apps side by side are independent (versions, lines, state, line sizes)', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      store.createApp('b.2:x-y_z', { lineSize: 1024, maxLines: 8 });
      const ta = store.begin('a');
      const tb = store.begin('b.2:x-y_z'); // one open transaction per app, not per store
      ta.write(0, line(1, 0));
      tb.write(0, bytesFor(1024, 2, 0));
      tb.setState(new Uint8Array([42]));
      tb.commit();
      ta.commit();
      commitLines(store, 'a', 3, [1]);
      expect(store.headVersion('a')).toBe(2);
      expect(store.headVersion('b.2:x-y_z')).toBe(1);
      expect(store.readLine('a', 0)).toEqual(line(1, 0));
      expect(store.readLine('b.2:x-y_z', 0)).toEqual(bytesFor(1024, 2, 0));
      expect(stateOf(store, 'a')).toEqual(new Uint8Array(0));
      expect(stateOf(store, 'b.2:x-y_z')).toEqual(new Uint8Array([42]));
      expect(store.listApps().sort()).toEqual(['a', 'b.2:x-y_z']);
      store.close();
    });

    it('close and reopen preserves versions, bytes, state and hashes', () => {
      const { dir, store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      store.createApp('b', { lineSize: 128, maxLines: 64 });
      for (let v = 1; v <= 6; v++) commitLines(store, 'a', v, [v % 4, 10 + v], new Uint8Array([v]));
      const tx = store.begin('a');
      tx.delete(10 + 6);
      tx.commit();
      const tb = store.begin('b');
      tb.write(3, bytesFor(128, 5, 3));
      tb.commit();
      const vs = store.versions('a');
      if (vs.length > 2) store.removeVersion('a', vs[1]!.version);
      const snapshot = (s: Store) => ({
        apps: s.listApps(),
        versions: s.versions('a'),
        contents: s.versions('a').map((v) => ({
          lines: s.listLines('a', { version: v.version }),
          bytes: s.read('a', range(20), { version: v.version }),
          state: stateOf(s, 'a', { version: v.version }),
        })),
        b: s.read('b', [3]),
        hashes: s.hasHashes([contentHash(line(6, 6)), contentHash(bytesFor(128, 5, 3)), contentHash(line(1, 99))]),
        live: s.stats().liveBytes,
      });
      const before = snapshot(store);
      store.close();
      expect(store.isClosed).toBe(true);
      store.close(); // safe to repeat
      const again = open(dir);
      expect(snapshot(again)).toEqual(before);
      expect(again.integrityCheck().ok).toBe(true);
      // hashes and state handed out after reopen are plain copies: mutating them changes nothing
      const listed = again.listLines('a');
      expect(Object.getPrototypeOf(listed[0]!.hash)).toBe(Uint8Array.prototype);
      expect(Object.getPrototypeOf(again.readState('a'))).toBe(Uint8Array.prototype);
      for (const l of listed) l.hash.fill(0);
      expect(again.listLines('a')).toEqual(before.contents.at(-1)!.lines);
      // and it goes on from there
      expect(commitLines(again, 'a', 9, [0])).toBe(8);
      again.close();
    });

    it('compaction keeps the segment file bounded over many checkpoints; integrityCheck passes', () => {
      const { dir, store } = fresh();
      const opts = makeOptions('x');
      const seg = opts.segmentBytes!;
      const spaceFactor = opts.spaceFactor ?? 3;
      const LS2 = 1024;
      const lines = (4 * seg) / LS2; // live data: four segments
      const perCommit = lines / 16;
      const commits = 200;
      store.createApp('a', { lineSize: LS2, maxLines: lines });
      let tx = store.begin('a');
      for (let l = 0; l < lines; l++) tx.write(l, bytesFor(LS2, 0, l));
      tx.commit();
      // Rewrite scattered lines: superseded copies are left all over the segments.
      let maxUsed = 0;
      let seed = 1;
      const current = new Map<number, number>();
      for (let c = 1; c <= commits; c++) {
        tx = store.begin('a');
        for (let k = 0; k < perCommit; k++) {
          seed = (seed * 48271) % 2147483647;
          const l = seed % lines;
          tx.write(l, bytesFor(LS2, c, l));
          current.set(l, c);
        }
        tx.commit();
        maxUsed = Math.max(maxUsed, store.stats().usedSegments);
      }
      // live grows only by the kept versions' superseded lines; batched mode also holds segments
      // in quarantine until the next (automatic) sync
      const quarantine = opts.durability === 'batched' ? (opts.syncEveryCommits ?? 16) * perCommit * LS2 : 0;
      const liveBound = spaceFactor * lines * LS2 * 1.1 + quarantine;
      expect(maxUsed * seg).toBeLessThanOrEqual(liveBound + 6 * seg);
      const s = store.stats();
      // the file grows only as far as the compaction threshold (plus slack), not with the 900 rewrites
      expect(s.segments * seg).toBeLessThanOrEqual(liveBound + 6 * seg);
      // far below what the rewrites alone would take without reclaiming
      expect(s.segments * seg * 2).toBeLessThan(commits * perCommit * LS2);
      expect(s.fileBytes).toBeLessThanOrEqual(s.segments * seg);
      expect(s.compactionBytes).toBeGreaterThan(0);
      const report = store.integrityCheck();
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      for (let l = 0; l < lines; l++) expect(store.readLine('a', l)).toEqual(bytesFor(LS2, current.get(l) ?? 0, l));
      // explicit compaction keeps the lines as they are
      const r = store.compact('a');
      expect(r.linesWritten).toBe(0);
      for (let l = 0; l < lines; l++) expect(store.readLine('a', l)).toEqual(bytesFor(LS2, current.get(l) ?? 0, l));
      store.close();
      const again = open(dir);
      expect(again.integrityCheck().ok).toBe(true);
      for (let l = 0; l < lines; l++) expect(again.readLine('a', l)).toEqual(bytesFor(LS2, current.get(l) ?? 0, l));
      again.close();
    });

    it('abort leaves nothing: version unchanged, reads unchanged, reopen identical', () => {
      const { dir, store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      commitLines(store, 'a', 1, range(4), new Uint8Array([1]));
      const live = store.stats().liveBytes;
      const tx = store.begin('a');
      for (const l of range(40)) tx.write(l, line(2, l));
      tx.delete(0);
      tx.setState(new Uint8Array([2]));
      tx.abort();
      tx.abort(); // safe to repeat
      expect(store.headVersion('a')).toBe(1);
      expect(store.versions('a').map((v) => v.version)).toEqual([1]);
      expect(store.read('a', range(5))).toEqual([...range(4).map((l) => line(1, l)), undefined]);
      expect(stateOf(store, 'a')).toEqual(new Uint8Array([1]));
      expect(store.stats().liveBytes).toBe(live);
      expect(store.stats().aborts).toBe(1);
      expect(store.hasHashes([contentHash(line(2, 10))])).toEqual([false]);
      store.close();
      const again = open(dir);
      expect(again.headVersion('a')).toBe(1);
      expect(again.read('a', range(5))).toEqual([...range(4).map((l) => line(1, l)), undefined]);
      expect(stateOf(again, 'a')).toEqual(new Uint8Array([1]));
      expect(again.integrityCheck().ok).toBe(true);
      // the next commit is version 2, not 3
      expect(commitLines(again, 'a', 3, [0])).toBe(2);
      again.close();
    });

    it('STORE_BUSY for a second open transaction on one app; free again after commit or abort', () => {
      const { store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 8 });
      commitLines(store, 'a', 1, [0]);
      const tx = store.begin('a');
      let err: FerryError | undefined;
      try { store.begin('a'); } catch (e) { err = e as FerryError; }
      expect(err?.code).toBe('STORE_BUSY');
      expect(err?.message).toMatch(/app a already has an open write transaction/);
      expect(codeOf(() => store.restore('a', 1))).toBe('STORE_BUSY');
      expect(codeOf(() => store.compact('a'))).toBe('STORE_BUSY');
      // the refused calls did not disturb the open transaction
      tx.write(1, line(2, 1));
      expect(tx.commit().version).toBe(2);
      store.begin('a').abort();
      expect(codeOf(() => store.restore('a', 1))).toBe(undefined);
      expect(store.read('a', [0, 1])).toEqual([line(1, 0), undefined]);
      store.close();
    });

    it('sync() works and commits survive close/reopen after it', () => {
      const { dir, store } = fresh();
      store.createApp('a', { lineSize: LS, maxLines: 64 });
      const syncs0 = store.stats().segmentSyncs;
      commitLines(store, 'a', 1, range(10));
      store.sync();
      expect(store.stats().segmentSyncs).toBeGreaterThan(syncs0);
      commitLines(store, 'a', 2, [1]);
      store.sync();
      store.sync();
      store.close();
      expect(codeOf(() => store.sync())).toBe('STORE_CLOSED');
      const again = open(dir);
      expect(again.headVersion('a')).toBe(2);
      expect(again.read('a', [0, 1])).toEqual([line(1, 0), line(2, 1)]);
      again.close();
    });
  });
}

const configs: Array<[string, Partial<StoreOptions>]> = [];
for (const durability of ['full', 'batched'] as const) {
  for (const segmentBytes of [16 * 1024, 128 * 1024]) {
    configs.push([`${durability}, ${segmentBytes / 1024} KiB segments`, { durability, segmentBytes, keepVersions: 3 }]);
  }
}
for (const [name, extra] of configs) storeContract(name, (dir) => ({ dir, ...extra }));
