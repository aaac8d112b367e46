import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { contentHash, decodeMap, encodeMap, HASH_BYTES, openStore, type LineRecord, type Store, type StoreOptions } from '../../store/index.js';
import { scaled } from '../helpers/scale.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function corruptCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof FerryError ? e.code : `not a FerryError: ${String(e)}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// (a) the line-map codec

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const record: fc.Arbitrary<LineRecord> = fc.record({
  line: u32, version: u32, deleted: fc.boolean(), seg: u32, off: u32, len: u32, crc: u32,
  hash: fc.uint8Array({ minLength: HASH_BYTES, maxLength: HASH_BYTES }),
});
const records = fc.array(record, { maxLength: 20 });

describe('map codec (property)', () => {
  it('decodeMap(encodeMap(records)) gives the records back', () => {
    fc.assert(fc.property(records, (rs) => {
      const out = decodeMap(encodeMap(rs), 'prop');
      expect(out).toEqual(rs.map((r) => ({ ...r, hash: new Uint8Array(r.hash) })));
      for (const r of out) expect(Object.getPrototypeOf(r.hash)).toBe(Uint8Array.prototype);
    }), { numRuns: 300 });
  });

  it('decodes from a Buffer at a non-zero byte offset (as SQLite hands rows back)', () => {
    fc.assert(fc.property(records, fc.integer({ min: 1, max: 64 }), (rs, pad) => {
      const enc = encodeMap(rs);
      const big = Buffer.alloc(enc.length + pad + 3, 0xcc);
      big.set(enc, pad);
      const out = decodeMap(big.subarray(pad, pad + enc.length), 'prop');
      expect(out).toEqual(rs.map((r) => ({ ...r, hash: new Uint8Array(r.hash) })));
      // the decoded hashes are copies: damaging the source buffer does not reach them
      big.fill(0);
      expect(out.map((r) => r.hash)).toEqual(rs.map((r) => new Uint8Array(r.hash)));
    }), { numRuns: 100 });
  });

  it('any truncation or extension is STORE_CORRUPT, never a wrong result', () => {
    fc.assert(fc.property(records, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 50 }), (rs, cut, extra) => {
      const enc = encodeMap(rs);
      const short = enc.subarray(0, cut % enc.length);
      expect(corruptCode(() => decodeMap(short, 'prop'))).toBe('STORE_CORRUPT');
      const long = new Uint8Array(enc.length + extra.length);
      long.set(enc);
      long.set(extra, enc.length);
      expect(corruptCode(() => decodeMap(long, 'prop'))).toBe('STORE_CORRUPT');
    }), { numRuns: 300 });
  });

  it('bad magic, or a count that disagrees with the length, or a bad flag byte: STORE_CORRUPT naming the row', () => {
    fc.assert(fc.property(records, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 255 }), (rs, at, x) => {
      const enc = encodeMap(rs);
      const bad = enc.slice();
      bad[at] = bad[at]! ^ x;
      let err: unknown;
      try { decodeMap(bad, 'app q version 9'); } catch (e) { err = e; }
      expect((err as FerryError).code).toBe('STORE_CORRUPT');
      expect((err as FerryError).message).toMatch(/line map of app q version 9 is damaged: bad magic/);
      const count = enc.slice();
      new DataView(count.buffer).setUint32(4, rs.length + 1 + (x % 3), true);
      expect(corruptCode(() => decodeMap(count, 'prop'))).toBe('STORE_CORRUPT');
    }), { numRuns: 200 });
    fc.assert(fc.property(fc.array(record, { minLength: 1, maxLength: 8 }), fc.nat(), fc.integer({ min: 2, max: 255 }), (rs, which, flag) => {
      const enc = encodeMap(rs);
      enc[8 + (which % rs.length) * 41 + 8] = flag;
      expect(corruptCode(() => decodeMap(enc, 'prop'))).toBe('STORE_CORRUPT');
    }), { numRuns: 100 });
  });
});

// ---------------------------------------------------------------------------------------------
// (b) model-based: a real store against a plain-JS model

const LS = 256;
const MAX_LINES = 24; // 16 lines per 4 KiB segment: a few commits span segments
const APPS = ['a', 'b'] as const;
type App = (typeof APPS)[number];

/** Line content by seed; seeds repeat, so identical contents (same hash) occur across lines and apps. */
const content = (seed: number) => new Uint8Array(LS).map((_, i) => (seed * 37 + i * (seed | 1)) & 0xff);

type Op =
  | { kind: 'commit' | 'abort'; app: App; writes: Array<[number, number]>; deletes: number[]; state: number | null }
  | { kind: 'removeVersion'; app: App; pick: number }
  | { kind: 'restore'; app: App; pick: number }
  | { kind: 'compact'; app: App }
  | { kind: 'reopen' }
  | { kind: 'sync' };

const lineId = fc.integer({ min: 0, max: MAX_LINES - 1 });
const appArb = fc.constantFrom(...APPS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('commit' as const), app: appArb, writes: fc.array(fc.tuple(lineId, fc.integer({ min: 0, max: 40 })), { maxLength: 20 }), deletes: fc.array(lineId, { maxLength: 4 }), state: fc.option(fc.integer({ min: 0, max: 255 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('abort' as const), app: appArb, writes: fc.array(fc.tuple(lineId, fc.integer({ min: 41, max: 60 })), { maxLength: 20 }), deletes: fc.array(lineId, { maxLength: 4 }), state: fc.option(fc.integer({ min: 0, max: 255 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('removeVersion' as const), app: appArb, pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restore' as const), app: appArb, pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compact' as const), app: appArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'sync' as const }) },
);

interface ModelVersion {
  lines: Map<number, number>; // line -> content seed
  state: Uint8Array;
}

class Model {
  readonly versions = new Map<number, ModelVersion>();
  readonly removed = new Set<number>();
  head = 0;
  constructor(private readonly keep: number) {}
  kept(): number[] {
    return [...this.versions.keys()].filter((v) => v > this.head - this.keep && v <= this.head && !this.removed.has(v)).sort((a, b) => a - b);
  }
  current(): ModelVersion {
    return this.versions.get(this.head) ?? { lines: new Map(), state: new Uint8Array(0) };
  }
  commit(v: ModelVersion): number {
    this.head++;
    this.versions.set(this.head, v);
    return this.head;
  }
}

function runModel(ops: Op[], options: Omit<StoreOptions, 'dir'>): void {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-prop-'));
  dirs.push(dir);
  const keep = options.keepVersions!;
  let store: Store = openStore({ dir, ...options });
  const models = new Map<App, Model>();
  for (const app of APPS) {
    store.createApp(app, { lineSize: LS, maxLines: MAX_LINES });
    models.set(app, new Model(keep));
  }
  const everWritten = new Set<number>();
  try {
    for (const [step, op] of ops.entries()) {
      const where = `step ${step} ${JSON.stringify(op)}`;
      apply(op, where);
      check(where);
    }
    store.close();
    store = openStore({ dir, ...options });
    check('final reopen');
    const report = store.integrityCheck();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }

  function apply(op: Op, where: string): void {
    switch (op.kind) {
      case 'commit':
      case 'abort': {
        const m = models.get(op.app)!;
        const tx = store.begin(op.app);
        const next: ModelVersion = { lines: new Map(m.current().lines), state: m.current().state };
        for (const [l, seed] of op.writes) {
          tx.write(l, content(seed));
          next.lines.set(l, seed);
          everWritten.add(seed); // aborted contents too: their hashes must never show up
        }
        for (const l of op.deletes) {
          tx.delete(l);
          next.lines.delete(l);
        }
        if (op.state !== null) {
          tx.setState(new Uint8Array([op.state, mix(op.state)]));
          next.state = new Uint8Array([op.state, mix(op.state)]);
        }
        // the transaction sees its own writes over the parent version
        for (let l = 0; l < MAX_LINES; l++) {
          const seed = next.lines.get(l);
          expect(tx.read(l), `${where} tx.read(${l})`).toEqual(seed === undefined ? undefined : content(seed));
        }
        if (op.kind === 'abort') {
          tx.abort();
        } else {
          const r = tx.commit();
          expect(r.version, where).toBe(m.commit(next));
        }
        break;
      }
      case 'removeVersion': {
        const m = models.get(op.app)!;
        const kept = m.kept();
        if (kept.length === 0) {
          expect(corruptCode(() => store.removeVersion(op.app, 1)), where).toBe('STORE_UNKNOWN_VERSION');
          break;
        }
        const v = kept[op.pick % kept.length]!;
        if (v === m.head) {
          expect(corruptCode(() => store.removeVersion(op.app, v)), where).toBe('STORE_BAD_INPUT');
        } else {
          store.removeVersion(op.app, v);
          m.removed.add(v);
        }
        break;
      }
      case 'restore': {
        const m = models.get(op.app)!;
        const kept = m.kept();
        if (kept.length === 0) break;
        const v = kept[op.pick % kept.length]!;
        const was = m.versions.get(v)!;
        const r = store.restore(op.app, v);
        expect(r.version, where).toBe(m.commit({ lines: new Map(was.lines), state: was.state }));
        break;
      }
      case 'compact': {
        const m = models.get(op.app)!;
        if (m.head === 0) break;
        const r = store.compact(op.app);
        expect(r.linesWritten, where).toBe(0);
        expect(r.version, where).toBe(m.commit({ lines: new Map(m.current().lines), state: m.current().state }));
        break;
      }
      case 'reopen':
        store.close();
        store = openStore({ dir, ...options });
        break;
      case 'sync':
        store.sync();
        break;
    }
  }

  function check(where: string): void {
    const liveSeeds = new Set<number>();
    for (const app of APPS) {
      const m = models.get(app)!;
      const kept = m.kept();
      const infos = store.versions(app);
      expect(infos.map((i) => i.version), `${where}: versions(${app})`).toEqual(kept);
      for (const info of infos) {
        const mv = m.versions.get(info.version)!;
        expect(info.current).toBe(info.version === m.head);
        expect(info.lineCount, `${where}: lineCount of ${app} v${info.version}`).toBe(mv.lines.size);
        expect(info.bytes).toBe(mv.lines.size * LS);
        expect(info.stateBytes).toBe(mv.state.length);
        const all = Array.from({ length: MAX_LINES }, (_, l) => l);
        const got = store.read(app, all, { version: info.version });
        const want = all.map((l) => (mv.lines.has(l) ? content(mv.lines.get(l)!) : undefined));
        expect(got, `${where}: lines of ${app} v${info.version}`).toEqual(want);
        expect(new Uint8Array(store.readState(app, { version: info.version })), `${where}: state of ${app} v${info.version}`).toEqual(mv.state);
        expect(store.listLines(app, { version: info.version }).map((x) => x.line)).toEqual([...mv.lines.keys()].sort((a, b) => a - b));
        for (const s of mv.lines.values()) liveSeeds.add(s);
      }
      // versions that are not kept (reclaimed, removed, never made) are refused
      for (const v of [m.head - keep, ...m.removed, m.head + 1]) {
        if (v >= 1 && !kept.includes(v)) expect(corruptCode(() => store.readLine(app, 0, { version: v })), `${where}: ${app} v${v}`).toBe('STORE_UNKNOWN_VERSION');
      }
      expect(store.headVersion(app)).toBe(m.head);
    }
    // content hashes: held exactly while some kept version of some app sees the content
    const seeds = [...everWritten];
    const has = store.hasHashes(seeds.map((s) => contentHash(content(s))));
    seeds.forEach((s, i) => expect(has[i], `${where}: hash of content ${s}`).toBe(liveSeeds.has(s)));
    for (const s of liveSeeds) expect(store.readByHash(contentHash(content(s)))).toEqual(content(s));
  }
}

function mix(x: number): number {
  return (x * 7 + 3) & 0xff;
}

/** Deeper searches: FERRY_PROP_RUNS=500 npx vitest run test/store/property.test.ts; fewer in the emulated ARM64 job (test/helpers/scale.ts). */
const RUNS = scaled(Number(process.env.FERRY_PROP_RUNS ?? 30), 5);

describe('store against a model (property)', () => {
  const configs: Array<[string, Omit<StoreOptions, 'dir'>]> = [
    ['full, keep 2', { durability: 'full', segmentBytes: 4096, keepVersions: 2, spaceFactor: 1.25, compactionBytesPerCommit: 4096 }],
    ['batched, keep 3', { durability: 'batched', segmentBytes: 4096, keepVersions: 3, spaceFactor: 1.5, syncEveryCommits: 3 }],
  ];
  for (const [name, options] of configs) {
    it(`(${name}) every kept version reads back the model's lines and state after every step`, () => {
      fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => runModel(ops, options)), { numRuns: RUNS });
    });
  }

  it('the runs really exercise compaction and segment reuse', () => {
    // A fixed long run of the same shape: guards against the model tests passing vacuously.
    const dir = mkdtempSync(join(tmpdir(), 'ferry-prop-'));
    dirs.push(dir);
    const store = openStore({ dir, segmentBytes: 4096, keepVersions: 2, spaceFactor: 1.25, compactionBytesPerCommit: 4096 });
    store.createApp('a', { lineSize: LS, maxLines: MAX_LINES });
    for (let c = 0; c < 60; c++) {
      const tx = store.begin('a');
      for (let k = 0; k < 5; k++) tx.write((c * 5 + k * 7) % MAX_LINES, content(c + k));
      tx.commit();
    }
    const s = store.stats();
    expect(s.compactionBytes).toBeGreaterThan(0);
    expect(s.wear.erasesMax).toBeGreaterThan(0);
    expect(s.segments).toBeLessThan((60 * 5 * LS) / 4096);
    expect(store.integrityCheck().ok).toBe(true);
    store.close();
  });
});
