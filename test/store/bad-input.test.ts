import { mkdtempSync, openSync, closeSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import { decodeMap, encodeMap, fsBlockIo, openStore, type Store, type StoreOptions } from '../../store/index.js';
import { rowCrc } from '../../store/map-codec.js';
import { caught } from '../helpers/ferry-error.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ferry-badinput-'));
  dirs.push(d);
  return d;
}

const LS = 256;
const SEG = 16 * 1024;
const MAX = 100;
const line = (fill: number, l = 0) => new Uint8Array(LS).map((_, i) => (fill * 31 + l * 7 + i) & 0xff);

function expectFailure(fn: () => unknown, code: ErrorCode, ...message: Array<string | RegExp>): FerryError {
  const e = caught(fn);
  expect(e.code, e.message).toBe(code);
  for (const m of message) expect(e.message).toMatch(m);
  return e;
}

function storeWithApp(extra: Partial<StoreOptions> = {}): { dir: string; store: Store; options: StoreOptions } {
  const dir = tempDir();
  const options: StoreOptions = { dir, segmentBytes: SEG, keepVersions: 2, ...extra };
  const store = openStore(options);
  store.createApp('a', { lineSize: LS, maxLines: MAX });
  return { dir, store, options };
}

describe('bad input is refused with STORE_BAD_INPUT naming the field', () => {
  const { store } = storeWithApp();
  afterAll(() => store.close());
  const tx = () => {
    const t = store.begin('a');
    return t;
  };

  const wrongBytes: Array<[string, unknown, RegExp]> = [
    ['one byte short', new Uint8Array(LS - 1), new RegExp(`must be ${LS} bytes \\(the app's line size\\), got ${LS - 1}`)],
    ['one byte long', new Uint8Array(LS + 1), new RegExp(`must be ${LS} bytes.*got ${LS + 1}`)],
    ['empty', new Uint8Array(0), /must be 256 bytes.*got 0/],
    ['a whole segment', new Uint8Array(SEG), /must be 256 bytes.*got 16384/],
    ['a plain array', Array.from({ length: LS }, () => 0), /bytes of app a line 3 must be a Uint8Array/],
    ['an ArrayBuffer', new ArrayBuffer(LS), /must be a Uint8Array/],
    ['a DataView', new DataView(new ArrayBuffer(LS)), /must be a Uint8Array/],
    ['a string', 'x'.repeat(LS), /must be a Uint8Array/],
    ['null', null, /must be a Uint8Array/],
  ];
  for (const [what, bytes, msg] of wrongBytes) {
    it(`write(): bytes ${what}`, () => {
      const t = tx();
      try {
        const e = expectFailure(() => t.write(3, bytes as Uint8Array), 'STORE_BAD_INPUT', msg, /app a line 3/);
        expect(e.details.field).toBe('bytes');
        // a refused write leaves the transaction usable and stages nothing
        expect(t.isOpen).toBe(true);
        expect(t.read(3)).toBeUndefined();
      } finally {
        t.abort();
      }
    });
  }

  const badLines: Array<[string, unknown]> = [
    ['negative', -1], ['non-integer', 1.5], ['NaN', NaN], ['Infinity', Infinity], ['= maxLines', MAX], ['> maxLines', MAX + 7],
    ['a numeric string', '3'], ['2^32', 2 ** 32],
  ];
  for (const [what, l] of badLines) {
    it(`line id ${what}: write, delete, tx.read, store.read, readLine`, () => {
      const t = tx();
      try {
        const msg = new RegExp(`line of app a must be an integer in 0\\.\\.${MAX - 1}`);
        for (const call of [() => t.write(l as number, line(1)), () => t.delete(l as number), () => t.read(l as number)]) {
          const e = expectFailure(call, 'STORE_BAD_INPUT', msg);
          expect(e.details.field).toBe('line');
        }
        expect(t.isOpen).toBe(true);
        t.write(0, line(1));
        t.commit();
      } finally {
        t.abort();
      }
      const e = expectFailure(() => store.read('a', [0, l as number]), 'STORE_BAD_INPUT', /line of app a must be an integer in 0\.\.99/);
      expect(e.details.field).toBe('lines');
      expectFailure(() => store.readLine('a', l as number), 'STORE_BAD_INPUT', /line of app a/);
    });
  }

  it('setState() with a non-Uint8Array', () => {
    const t = tx();
    try {
      for (const v of <unknown[]>['state', [1, 2], null, undefined, new ArrayBuffer(2)]) {
        const e = expectFailure(() => t.setState(v as Uint8Array), 'STORE_BAD_INPUT', /state of app a must be a Uint8Array/);
        expect(e.details.field).toBe('state');
      }
    } finally {
      t.abort();
    }
  });

  const badAppIds: Array<[string, unknown]> = [
    ['empty', ''], ['leading dash', '-a'], ['leading dot', '.a'], ['a space', 'a b'], ['a slash', 'a/b'], ['a quote', "a'"],
    ['129 characters', 'a'.repeat(129)], ['a number', 42], ['null', null], ['unicode', 'äpp'],
  ];
  for (const [what, app] of badAppIds) {
    it(`createApp(): app id ${what}`, () => {
      const e = expectFailure(() => store.createApp(app as string, { lineSize: LS, maxLines: 4 }), 'STORE_BAD_INPUT', /app must match/);
      expect(e.details.field).toBe('app');
    });
  }
  it('createApp(): 128-character app id is accepted (the bound is exact)', () => {
    store.createApp('b'.repeat(128), { lineSize: LS, maxLines: 4 });
    expect(store.hasApp('b'.repeat(128))).toBe(true);
  });

  const badAppOptions: Array<[string, unknown, string, RegExp]> = [
    ['lineSize below 64', { lineSize: 32, maxLines: 4 }, 'options.lineSize', /options\.lineSize of app c must be a power of two in 64\.\.16384.*got 32/],
    ['lineSize not a power of two', { lineSize: 100, maxLines: 4 }, 'options.lineSize', /got 100/],
    ['lineSize over the segment', { lineSize: 2 * SEG, maxLines: 4 }, 'options.lineSize', /got 32768/],
    ['lineSize a string', { lineSize: '256', maxLines: 4 }, 'options.lineSize', /got "256"/],
    ['maxLines 0', { lineSize: LS, maxLines: 0 }, 'options.maxLines', /options\.maxLines of app c must be an integer in 1\.\.2147483648, got 0/],
    ['maxLines over 2^31', { lineSize: LS, maxLines: 2 ** 31 + 1 }, 'options.maxLines', /got 2147483649/],
    ['maxLines fractional', { lineSize: LS, maxLines: 2.5 }, 'options.maxLines', /got 2.5/],
    ['options null', null, 'options', /options of app c must be an object, got null/],
  ];
  for (const [what, opts, field, msg] of badAppOptions) {
    it(`createApp(): ${what}`, () => {
      const e = expectFailure(() => store.createApp('c', opts as never), 'STORE_BAD_INPUT', msg);
      expect(e.details.field).toBe(field);
      expect(store.hasApp('c')).toBe(false);
    });
  }

  const badHashes: Array<[string, unknown]> = [
    ['15 bytes', new Uint8Array(15)], ['17 bytes', new Uint8Array(17)], ['32 bytes (a full sha-256)', new Uint8Array(32)],
    ['a hex string', '00'.repeat(16)], ['a plain array', new Array(16).fill(0)], ['undefined', undefined],
  ];
  for (const [what, h] of badHashes) {
    it(`hasHashes() / readByHash(): hash ${what}`, () => {
      for (const call of [() => store.hasHashes([new Uint8Array(16), h as Uint8Array]), () => store.readByHash(h as Uint8Array)]) {
        const e = expectFailure(call, 'STORE_BAD_INPUT', /hash must be a Uint8Array of 16 bytes/);
        expect(e.details.field).toBe('hash');
      }
    });
  }
});

describe('unknown apps and versions', () => {
  const { store } = storeWithApp();
  afterAll(() => store.close());

  it('STORE_UNKNOWN_APP from every call that names an app', () => {
    const calls: Array<[string, () => unknown]> = [
      ['begin', () => store.begin('nope')],
      ['read', () => store.read('nope', [0])],
      ['readLine', () => store.readLine('nope', 0)],
      ['readState', () => store.readState('nope')],
      ['listLines', () => store.listLines('nope')],
      ['versions', () => store.versions('nope')],
      ['headVersion', () => store.headVersion('nope')],
      ['appInfo', () => store.appInfo('nope')],
      ['removeVersion', () => store.removeVersion('nope', 1)],
      ['restore', () => store.restore('nope', 1)],
      ['removeApp', () => store.removeApp('nope')],
      ['compact', () => store.compact('nope')],
    ];
    for (const [name, call] of calls) {
      const e = expectFailure(call, 'STORE_UNKNOWN_APP', /the store holds no app "nope"/);
      expect(e.details, name).toMatchObject({ field: 'app', app: 'nope' });
    }
    expectFailure(() => store.readLine(7 as unknown as string, 0), 'STORE_BAD_INPUT', /app must be a string, got 7/);
  });

  it('STORE_UNKNOWN_VERSION: no commit yet, never-committed, non-integer, removed and reclaimed versions', () => {
    expectFailure(() => store.readLine('a', 0), 'STORE_UNKNOWN_VERSION', /app a has no committed version yet/);
    expectFailure(() => store.readState('a'), 'STORE_UNKNOWN_VERSION', /app a/);
    expectFailure(() => store.listLines('a'), 'STORE_UNKNOWN_VERSION', /app a/);
    for (let v = 1; v <= 4; v++) {
      const t = store.begin('a');
      t.write(v, line(v, v));
      t.commit();
    }
    // keepVersions 2: versions 3 and 4 are kept, 1 and 2 reclaimed
    expect(store.versions('a').map((v) => v.version)).toEqual([3, 4]);
    const cases: Array<[string, number]> = [['reclaimed', 1], ['reclaimed', 2], ['never committed', 5], ['zero', 0], ['negative', -1], ['fractional', 3.5], ['NaN', NaN]];
    for (const [what, v] of cases) {
      for (const call of [
        () => store.read('a', [0], { version: v }),
        () => store.readState('a', { version: v }),
        () => store.listLines('a', { version: v }),
        () => store.removeVersion('a', v),
        () => store.restore('a', v),
      ]) {
        const e = expectFailure(call, 'STORE_UNKNOWN_VERSION', new RegExp(`app a has no version ${String(v).replace('.', '\\.')} \\(kept: 3, 4\\)`));
        expect(e.details, what).toMatchObject({ field: 'version', app: 'a' });
      }
    }
    store.removeVersion('a', 3);
    expectFailure(() => store.readLine('a', 3, { version: 3 }), 'STORE_UNKNOWN_VERSION', /app a has no version 3 \(kept: 4\)/);
    expectFailure(() => store.removeVersion('a', 3), 'STORE_UNKNOWN_VERSION', /no version 3/);
    // the current version cannot be removed
    expectFailure(() => store.removeVersion('a', 4), 'STORE_BAD_INPUT', /version 4 is app a's current version/);
    expect(store.readLine('a', 4)).toEqual(line(4, 4));
  });
});

describe('transactions and stores used after they end', () => {
  it('double commit and use after commit: STORE_CLOSED', () => {
    const { store } = storeWithApp();
    const t = store.begin('a');
    t.write(0, line(1));
    t.commit();
    for (const call of [() => t.commit(), () => t.write(1, line(2)), () => t.delete(0), () => t.read(0), () => t.setState(new Uint8Array(1))]) {
      const e = expectFailure(call, 'STORE_CLOSED', /transaction on app a was already committed/);
      expect(e.details.field).toBe('transaction');
    }
    t.abort(); // abort after commit is a no-op
    expect(store.headVersion('a')).toBe(1);
    expect(store.readLine('a', 0)).toEqual(line(1));
    expect(store.readLine('a', 1)).toBeUndefined();
    store.close();
  });

  it('use after abort: STORE_ABORTED, and nothing lands', () => {
    const { store } = storeWithApp();
    const t = store.begin('a');
    t.write(0, line(1));
    t.abort();
    for (const call of [() => t.commit(), () => t.write(1, line(2)), () => t.delete(0), () => t.read(0), () => t.setState(new Uint8Array(1))]) {
      expectFailure(call, 'STORE_ABORTED', /transaction on app a was aborted/);
    }
    expect(store.headVersion('a')).toBe(0);
    store.close();
  });

  it('use after store close: STORE_CLOSED from the store and from a transaction open at close (aborted)', () => {
    const { store } = storeWithApp();
    const c = store.begin('a');
    c.write(0, line(1));
    c.commit();
    const t = store.begin('a');
    t.write(1, line(2));
    store.close();
    expect(t.isOpen).toBe(false);
    expectFailure(() => t.commit(), 'STORE_ABORTED', /app a/);
    const calls: Array<() => unknown> = [
      () => store.begin('a'), () => store.read('a', [0]), () => store.readLine('a', 0), () => store.readState('a'),
      () => store.versions('a'), () => store.listLines('a'), () => store.removeVersion('a', 1), () => store.restore('a', 1),
      () => store.removeApp('a'), () => store.createApp('z', { lineSize: LS, maxLines: 1 }), () => store.hasHashes([new Uint8Array(16)]),
      () => store.readByHash(new Uint8Array(16)), () => store.integrityCheck(), () => store.stats(), () => store.sync(), () => store.compact('a'),
    ];
    for (const call of calls) {
      const e = expectFailure(call, 'STORE_CLOSED', /the store at .* is closed/);
      expect(e.message).toContain(store.options.dir);
    }
  });
});

describe('openStore options: BAD_OPTION naming the field', () => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['segmentBytes not a power of two', { segmentBytes: 5000 }, 'options.segmentBytes', /options\.segmentBytes must be a power of two, got 5000/],
    ['segmentBytes below 4 KiB', { segmentBytes: 2048 }, 'options.segmentBytes', /options\.segmentBytes must be an integer in 4096\.\.16777216, got 2048/],
    ['segmentBytes over 16 MiB', { segmentBytes: 32 * 1024 * 1024 }, 'options.segmentBytes', /got 33554432/],
    ['keepVersions 0', { keepVersions: 0 }, 'options.keepVersions', /options\.keepVersions must be an integer in 1\.\.1000, got 0/],
    ['keepVersions fractional', { keepVersions: 1.5 }, 'options.keepVersions', /got 1.5/],
    ['keepVersions a string', { keepVersions: '4' }, 'options.keepVersions', /got "4"/],
    ['unknown option key', { keepversions: 4 }, 'options.keepversions', /options\.keepversions is not a known option/],
    ['durability "sometimes"', { durability: 'sometimes' }, 'options.durability', /options\.durability must be one of "full", "batched", got "sometimes"/],
    ['spaceFactor 1', { spaceFactor: 1 }, 'options.spaceFactor', /options\.spaceFactor must be a number in 1\.25\.\.16, got 1/],
    ['syncEveryCommits 0', { syncEveryCommits: 0 }, 'options.syncEveryCommits', /got 0/],
    ['maxBytes negative', { maxBytes: -1 }, 'options.maxBytes', /options\.maxBytes.*got -1/],
    ['cacheKiB too small', { cacheKiB: 1 }, 'options.cacheKiB', /options\.cacheKiB.*got 1/],
    ['compactionBytesPerCommit NaN', { compactionBytesPerCommit: NaN }, 'options.compactionBytesPerCommit', /got NaN/],
    ['io without pwrite', { io: { open: () => 3 } }, 'options.io', /options\.io must be a BlockIo object/],
    ['dir empty', { dir: '' }, 'options.dir', /options\.dir must be a non-empty string, got ""/],
    ['dir missing', { dir: undefined }, 'options.dir', /options\.dir must be a non-empty string, got undefined/],
  ];
  for (const [what, opts, field, msg] of cases) {
    it(what, () => {
      const dir = tempDir();
      const e = expectFailure(() => openStore({ dir, ...opts } as StoreOptions), 'BAD_OPTION', msg);
      expect(e.details.field).toBe(field);
    });
  }
  it('options not an object', () => {
    expectFailure(() => openStore(null as unknown as StoreOptions), 'BAD_OPTION', /options must be an object, got null/);
  });

  it('reopening with a different segmentBytes is refused, and the store stays usable with the right one', () => {
    const { dir, store } = storeWithApp();
    const t = store.begin('a');
    t.write(0, line(1));
    t.commit();
    store.close();
    const e = expectFailure(() => openStore({ dir, segmentBytes: 2 * SEG }), 'BAD_OPTION', /options\.segmentBytes is 32768 but the store at this dir was created with 16384/);
    expect(e.details.field).toBe('options.segmentBytes');
    // and the refused open released its files (exclusive lock)
    const again = openStore({ dir, segmentBytes: SEG });
    expect(again.readLine('a', 0)).toEqual(line(1));
    again.close();
  });
});

describe('bytes corrupted on disk are STORE_CORRUPT, never wrong data', () => {
  function flip(path: string, offset: number): void {
    const fd = openSync(path, 'r+');
    try {
      const b = new Uint8Array(1);
      readSync(fd, b, 0, 1, offset);
      b[0] = b[0]! ^ 0x5a;
      writeSync(fd, b, 0, 1, offset);
    } finally {
      closeSync(fd);
    }
  }

  for (const durability of ['full', 'batched'] as const) {
    it(`(${durability}) a flipped byte in a line: that line fails naming app, line and version; the others read fine; integrityCheck reports it`, () => {
      const { dir, store, options } = storeWithApp({ durability });
      const t = store.begin('a');
      for (let l = 0; l < 10; l++) t.write(l, line(1, l));
      t.commit();
      // line i of the first commit sits at offset i × lineSize of segment 0
      flip(join(dir, 'heap.blocks'), 7 * LS + 100);
      const e = expectFailure(() => store.readLine('a', 7), 'STORE_CORRUPT', /app a line 7 version 1: bytes fail their checksum/);
      expect(e.details).toMatchObject({ app: 'a', line: 7, version: 1 });
      // an atomic read that includes it fails as a whole
      expectFailure(() => store.read('a', [6, 7, 8]), 'STORE_CORRUPT', /line 7/);
      for (let l = 0; l < 10; l++) if (l !== 7) expect(store.readLine('a', l)).toEqual(line(1, l));
      // a later version that still shares the line fails naming that version
      const t2 = store.begin('a');
      t2.write(0, line(2, 0));
      t2.commit();
      expectFailure(() => store.readLine('a', 7), 'STORE_CORRUPT', /app a line 7 version 2/);
      expectFailure(() => store.readByHash(store.listLines('a').find((x) => x.line === 7)!.hash), 'STORE_CORRUPT', /line 7/);
      const report = store.integrityCheck();
      expect(report.ok).toBe(false);
      expect(report.problems.length).toBeGreaterThanOrEqual(1);
      expect(report.problems.every((p) => /app a line 7 version \d: bytes fail their checksum/.test(p))).toBe(true);
      expect(report.linesChecked).toBe(10); // 11 distinct records seen, the damaged one not counted
      store.close();
      // the damage is still found after reopen (the store does not trust its cache)
      const again = openStore(options);
      expectFailure(() => again.readLine('a', 7), 'STORE_CORRUPT', /app a line 7/);
      expect(again.integrityCheck().ok).toBe(false);
      // rewriting the line heals the head
      const t3 = again.begin('a');
      t3.write(7, line(3, 7));
      t3.commit();
      expect(again.readLine('a', 7)).toEqual(line(3, 7));
      again.close();
    });
  }

  it('a corrupted version row (map or crc) makes the reopen fail with STORE_CORRUPT naming app and version', () => {
    const variants: Array<[string, string, unknown[]]> = [
      ['map bytes changed', 'UPDATE versions SET map = ? WHERE id = (SELECT max(id) FROM versions)', [Buffer.alloc(8 + 41, 1)]],
      ['crc changed', 'UPDATE versions SET crc = crc + 1 WHERE id = (SELECT max(id) FROM versions)', []],
      ['state changed', "UPDATE versions SET state = x'00ff' WHERE id = (SELECT max(id) FROM versions)", []],
      ['line_count kept, kind flipped', 'UPDATE versions SET kind = 1 - kind WHERE id = (SELECT max(id) FROM versions)', []],
    ];
    for (const [what, sql, params] of variants) {
      const { dir, store, options } = storeWithApp();
      for (let v = 1; v <= 3; v++) {
        const t = store.begin('a');
        t.write(v, line(v, v));
        t.setState(new Uint8Array([v]));
        t.commit();
      }
      store.close();
      const db = new Database(join(dir, 'heap.db'));
      expect(db.prepare(sql).run(...params).changes, what).toBe(1);
      db.close();
      const e = expectFailure(() => openStore(options), 'STORE_CORRUPT', /app a version 3/);
      expect(e.details, what).toMatchObject({ app: 'a', version: 3 });
      // a failed open leaves the files closed (a clean open works after repairing)
    }
  });

  it('a version row whose crc is valid but whose map is malformed: STORE_CORRUPT (map damaged)', () => {
    const { dir, store, options } = storeWithApp();
    const t = store.begin('a');
    t.write(0, line(1));
    t.commit();
    store.close();
    const db = new Database(join(dir, 'heap.db'));
    const row = db.prepare('SELECT id, kind, state, map FROM versions').get() as { id: number; kind: number; state: Buffer; map: Buffer };
    const good = new Uint8Array(row.map);
    const truncated = good.subarray(0, good.length - 1);
    db.prepare('UPDATE versions SET map = ?, crc = ? WHERE id = ?').run(Buffer.from(truncated), rowCrc('a', 1, row.kind, new Uint8Array(row.state), truncated), row.id);
    db.close();
    expectFailure(() => openStore(options), 'STORE_CORRUPT', /line map of app a version 1 is damaged: length \d+ does not hold 1 entries/);
  });

  it('a line location past the end of the segment file is STORE_CORRUPT on reopen', () => {
    const { dir, store, options } = storeWithApp();
    const t = store.begin('a');
    t.write(0, line(1));
    t.commit();
    store.close();
    const db = new Database(join(dir, 'heap.db'));
    const row = db.prepare('SELECT id, kind, state, map FROM versions').get() as { id: number; kind: number; state: Buffer; map: Buffer };
    const recs = decodeMap(new Uint8Array(row.map), 'test');
    recs[0]!.seg = 50;
    const map = encodeMap(recs);
    db.prepare('UPDATE versions SET map = ?, crc = ? WHERE id = ?').run(Buffer.from(map), rowCrc('a', 1, row.kind, new Uint8Array(row.state), map), row.id);
    db.close();
    expectFailure(() => openStore(options), 'STORE_CORRUPT', /app a line 0 version 1 points at segment 50, past the end of the segment file/);
  });

  it('heap.db that is not a database: STORE_CORRUPT', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'heap.db'), Buffer.alloc(8192, 0x41));
    expectFailure(() => openStore({ dir, segmentBytes: SEG }), 'STORE_CORRUPT', /heap\.db is damaged/);
  });

  it('a truncated segment file: STORE_CORRUPT on read, naming the segment', () => {
    const { dir, store } = storeWithApp({ io: fsBlockIo });
    const t = store.begin('a');
    for (let l = 0; l < 4; l++) t.write(l, line(1, l));
    t.commit();
    const fd = openSync(join(dir, 'heap.blocks'), 'r+');
    fsBlockIo.truncate(fd, 2 * LS + 10);
    closeSync(fd);
    expect(store.readLine('a', 1)).toEqual(line(1, 1));
    expectFailure(() => store.readLine('a', 3), 'STORE_CORRUPT', /segment 0 is truncated: read 0 of 256 bytes/);
    expectFailure(() => store.readLine('a', 2), 'STORE_CORRUPT', /segment 0 is truncated: read 10 of 256 bytes/);
    expect(store.integrityCheck().ok).toBe(false);
    store.close();
  });
});
