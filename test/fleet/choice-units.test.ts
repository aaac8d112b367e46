import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bestOf, rankCandidates, type PeerFacts, type Wanted } from '../../agent/fleet/candidates.js';
import { readFleetOptions } from '../../agent/fleet/options.js';
import { evacuationPlan, runPlan, type PlanLinks } from '../../agent/fleet/plan-runner.js';
import { readPlan } from '../../agent/fleet/plan.js';
import { encodeSummarySet, SummarySet } from '../../agent/fleet/summary-filter.js';
import { readSummaryRecord, type DeviceFigures } from '../../agent/fleet/summary-wire.js';
import type { MoveReport } from '../../agent/bridge/move-report.js';
import { caught, caughtAsync } from '../helpers/ferry-error.js';

const hash = (i: number, salt = 'a') => createHash('sha256').update(`${salt}${i}`).digest().subarray(0, 16);

describe('region summary sets (Golomb-coded)', () => {
  it('holds every hash put in, costs about p + 1.5 bits a line, and errs at about 2^-p', () => {
    const held = Array.from({ length: 5000 }, (_, i) => hash(i));
    const e = encodeSummarySet(held, 10);
    const set = SummarySet.decode(e);
    expect(held.every((h) => set.has(h))).toBe(true);
    const bitsPerLine = (e.data.length * 8) / held.length;
    expect(bitsPerLine).toBeGreaterThan(10);
    expect(bitsPerLine).toBeLessThan(12.5);
    const others = Array.from({ length: 50_000 }, (_, i) => hash(i, 'b'));
    const fp = others.filter((h) => set.has(h)).length / others.length;
    expect(fp).toBeGreaterThan(0.0002);
    expect(fp).toBeLessThan(0.003); // 2^-10 ≈ 0.001
  });

  it('round-trips any set of hashes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 16, maxLength: 16 }), { maxLength: 300 }), fc.integer({ min: 4, max: 20 }), (hs, p) => {
        const e = encodeSummarySet(hs, p);
        const set = SummarySet.decode(e);
        return hs.every((h) => set.has(h)) && set.size === e.count;
      }),
    );
  });

  it('refuses a malformed set by field: truncated, trailing bytes, a value out of range, bad n/p/count', () => {
    const e = encodeSummarySet(Array.from({ length: 100 }, (_, i) => hash(i)), 10);
    const cases: Array<[typeof e, RegExp]> = [
      [{ ...e, data: e.data.subarray(0, e.data.length - 5) }, /ends before/],
      [{ ...e, data: Uint8Array.from([...e.data, 0, 0]) }, /bytes follow/],
      [{ n: 1, p: 4, count: 1, data: Uint8Array.from([0xff, 0x00]) }, /outside the set/], // a gap of 8·16 in a range of 16
      [{ ...e, p: 0 }, /p must be/],
      [{ ...e, n: 0 }, /n must be/],
      [{ ...e, count: e.n + 1 }, /count must be/],
    ];
    for (const [bad, why] of cases) {
      const err = caught(() => SummarySet.decode(bad, 'body.heaps[0]'));
      expect(err.code).toBe('FLEET_SUMMARY_MALFORMED');
      expect(err.details.field).toBe('body.heaps[0]');
      expect(err.message).toMatch(why);
    }
  });
});

const figures = (o: Partial<DeviceFigures> = {}): DeviceFigures => ({
  profile: 'rpi-4b', wordBits: 64, lineSize: 4096, heapBudgetBytes: 1 << 20, bandwidthBps: 100_000_000, latencyMs: 1, instances: 0, maxInstances: 8, services: ['display'], codes: [], ...o,
});

describe('summary records from peers', () => {
  const good = () => ({ v: 1, device: figures(), heaps: [{ heap: 'notes', version: 3, ...encodeSummarySet([hash(1), hash(2)]) }], removed: [], full: true, nextWithinMs: 60_000 });

  it('reads a good record', () => {
    const { record, sets } = readSummaryRecord(good());
    expect(record.heaps[0]!.heap).toBe('notes');
    expect(sets.get('notes')!.has(hash(1))).toBe(true);
  });

  it.each([
    ['body', null],
    ['body.v', { ...good(), v: 2 }],
    ['body.device.wordBits', { ...good(), device: { ...figures(), wordBits: 16 } }],
    ['body.device.lineSize', { ...good(), device: { ...figures(), lineSize: 3 } }],
    ['body.device.maxInstances', { ...good(), device: { ...figures(), maxInstances: 0 } }],
    ['body.device.services[0]', { ...good(), device: { ...figures(), services: [''] } }],
    ['body.device.codes[0]', { ...good(), device: { ...figures(), codes: ['XYZ'] } }],
    ['body.heaps', { ...good(), heaps: {} }],
    ['body.heaps[0].heap', { ...good(), heaps: [{ ...good().heaps[0], heap: 'Bad Name' }] }],
    ['body.heaps[0].data', { ...good(), heaps: [{ ...good().heaps[0], data: 'text' }] }],
    ['body.heaps[0]', { ...good(), heaps: [{ ...good().heaps[0], data: new Uint8Array(0) }] }],
    ['body.full', { ...good(), full: 'yes' }],
    ['body.nextWithinMs', { ...good(), nextWithinMs: 5 }],
  ])('refuses a bad %s', (field, body) => {
    const e = caught(() => readSummaryRecord(body));
    expect(e.code).toBe('FLEET_SUMMARY_MALFORMED');
    expect(e.details.field).toBe(field);
  });
});

describe('ranking candidates', () => {
  const lines = Array.from({ length: 40 }, (_, i) => ({ line: i, hash: hash(i), len: 4096 }));
  const w: Wanted = { instance: 'notes', app: 'notes', code: 'c0ffee00c0ffee00', codeBytes: 2000, lineSize: 4096, wordBits: 64, requiredWordBits: undefined, minHeapBytes: 16_384, services: ['display'], lines };
  const peer = (id: string, held: number, o: Partial<DeviceFigures> = {}, extra: Partial<PeerFacts> = {}): PeerFacts => {
    const e = encodeSummarySet(lines.slice(0, held).map((l) => l.hash));
    return {
      peer: id, label: id, profile: 'rpi-4b', reachable: true, placed: 0,
      summaries: { fresh: true, view: { device: figures(o), heaps: new Map([['notes', { summary: { heap: 'notes', version: 1, ...e }, set: SummarySet.decode(e) }]]), heardAt: 0, nextWithinMs: 1000, complete: true } },
      ...extra,
    };
  };

  it('ranks by the bytes each would need, then the link, then the room left; says why the others do not fit', () => {
    const ranked = rankCandidates(
      w,
      [
        peer('a', 0),
        peer('b', 30),
        peer('c', 20, { codes: ['c0ffee00c0ffee00'] }),
        peer('d', 40, { instances: 8 }),
        peer('e', 40, { heapBudgetBytes: 1024 }),
        peer('f', 40, { services: [] }),
        peer('g', 40, { wordBits: 32, lineSize: 1024 }),
        peer('h', 40, {}, { reachable: false }),
        peer('i', 40, {}, { summaries: undefined }),
        peer('j', 30, { bandwidthBps: 1_000_000 }),
        peer('k', 30, { maxInstances: 20 }),
      ],
      { bandwidthBps: 100_000_000, latencyMs: 1 },
    );
    const fit = ranked.filter((c) => c.fits).map((c) => c.peer);
    // g holds everything but needs the object path (another line size): the whole heap counts.
    expect(fit).toEqual(['k', 'b', 'j', 'c', 'a', 'g']);
    expect(ranked.find((c) => c.peer === 'b')).toMatchObject({ rank: 2, bytesNeeded: 10 * 4096 + 2000, linesHeld: 30, codeNeeded: true });
    expect(ranked.find((c) => c.peer === 'c')).toMatchObject({ bytesNeeded: 20 * 4096, codeNeeded: false });
    expect(ranked.find((c) => c.peer === 'g')).toMatchObject({ path: 'objects', bytesNeeded: 40 * 4096 + 2000 });
    const why = Object.fromEntries(ranked.filter((c) => !c.fits).map((c) => [c.peer, c.why]));
    expect(why).toEqual({
      d: 'full: runs 8 of its 8 instances',
      e: "heap budget 1024 B is below the app's minHeapBytes 16384",
      f: 'cannot find required service display',
      h: 'unreachable: it did not answer',
      i: 'no summary: it did not send its figures',
    });
  });

  it('counts what this run already placed there, and keeps to the app\'s word size', () => {
    const r = rankCandidates({ ...w, requiredWordBits: 32 }, [peer('a', 40, { maxInstances: 2, instances: 1 }, { placed: 1 }), peer('b', 40)], { bandwidthBps: 1e8, latencyMs: 1 });
    expect(r.map((c) => [c.peer, c.fits, c.why])).toEqual([
      ['a', false, 'full: runs 1 of its 2 instances'],
      ['b', false, 'word size 64 bits; the app requires 32'],
    ]);
    const e = caught(() => bestOf('notes', r));
    expect(e.code).toBe('FLEET_NO_CANDIDATE');
    expect(e.message).toMatch(/a: full.*b: word size/);
    expect(caught(() => bestOf('notes', [])).message).toMatch(/no peer is paired/);
  });
});

describe('plans', () => {
  const good = { format: 'ferry.plan/1', steps: [{ instance: 'notes', to: 'best' }, { instance: 'clock', to: 'pi-2', downtimeLimitMs: 500, retries: 0, keepBackup: false }] };

  it('reads a plan with its defaults', () => {
    expect(readPlan(good)).toEqual({
      format: 'ferry.plan/1', totalTimeLimitMs: 600_000, onFailure: 'continue',
      steps: [{ instance: 'notes', to: 'best', retries: 1, keepBackup: true }, { instance: 'clock', to: 'pi-2', downtimeLimitMs: 500, retries: 0, keepBackup: false }],
    });
  });

  it.each([
    ['plan', []],
    ['format', { ...good, format: 'ferry.plan/2' }],
    ['plan.extra', { ...good, extra: 1 }],
    ['onFailure', { ...good, onFailure: 'retry' }],
    ['steps', { ...good, steps: [] }],
    ['totalTimeLimitMs', { ...good, totalTimeLimitMs: 10 }],
    ['steps[0]', { ...good, steps: ['notes'] }],
    ['steps[0].instance', { ...good, steps: [{ instance: 'Notes!', to: 'best' }] }],
    ['steps[1].instance', { ...good, steps: [{ instance: 'notes', to: 'best' }, { instance: 'notes', to: 'best' }] }],
    ['steps[0].to', { ...good, steps: [{ instance: 'notes', to: '' }] }],
    ['steps[0].to', { ...good, steps: [{ instance: 'notes' }] }],
    ['steps[0].downtimeLimitMs', { ...good, steps: [{ instance: 'notes', to: 'best', downtimeLimitMs: 5 }] }],
    ['steps[0].retries', { ...good, steps: [{ instance: 'notes', to: 'best', retries: 1.5 }] }],
    ['steps[0].keepBackup', { ...good, steps: [{ instance: 'notes', to: 'best', keepBackup: 'no' }] }],
    ['steps[0].when', { ...good, steps: [{ instance: 'notes', to: 'best', when: 'now' }] }],
  ])('refuses a plan with a bad %s, naming it', (field, plan) => {
    const e = caught(() => readPlan(plan));
    expect(e.code).toBe('PLAN_INVALID');
    expect(e.details.field).toBe(field);
    expect(e.message.startsWith(field)).toBe(true);
  });

  const report = (instance: string, to: string, outcome: MoveReport['outcome'], extra: Partial<MoveReport> = {}) => ({ id: `m-${instance}`, instance, to, outcome, downtimeMs: 40, totalMs: 900, bytesSent: 1000, ...extra }) as unknown as MoveReport;

  it('runs steps in order: retries, moves on after a failure (saying the instance serves on), stops when told, skips when out of time', async () => {
    const calls: string[] = [];
    let clock = 0;
    const links: PlanLinks = {
      best: async (instance, _placed, exclude) => {
        const peer = ['p1', 'p2'].find((p) => !exclude.includes(p));
        if (!peer) throw Object.assign(new (await import('../../core/errors.js')).FerryError('FLEET_NO_CANDIDATE', `none for ${instance}`, { field: 'peer' }));
        return { best: { peer, bytesNeeded: 10 } as never, fitting: 2 };
      },
      start: async (instance, peer) => {
        calls.push(`${instance}>${peer}`);
        clock += 1000;
        const { FerryError } = await import('../../core/errors.js');
        if (instance === 'full' && peer === 'p1') throw new FerryError('MIGRATE_NO_FIT', 'device full', { field: 'maxInstances' });
        if (instance === 'flaky') return report(instance, peer, calls.filter((c) => c.startsWith('flaky')).length === 1 ? 'aborted' : 'moved', { code: 'MIGRATE_ABORTED', message: 'cut' });
        if (instance === 'dead') return report(instance, peer, 'aborted', { code: 'MIGRATE_ABORTED', message: 'peer gone' });
        return { id: `m-${instance}` };
      },
      finished: async (id) => report(id.slice(2), 'p1', 'moved'),
      dropBackup: (i) => i === 'nobackup',
      now: () => clock,
    };
    const plan = readPlan({
      format: 'ferry.plan/1',
      totalTimeLimitMs: 9000,
      steps: [
        { instance: 'full', to: 'best' },
        { instance: 'flaky', to: 'p2' },
        { instance: 'dead', to: 'p2', retries: 2 },
        { instance: 'nobackup', to: 'p1', keepBackup: false },
        { instance: 'late', to: 'p1' },
        { instance: 'later', to: 'p1' },
      ],
    });
    const r = await runPlan(plan, false, links);
    expect(r.steps.map((s) => [s.instance, s.outcome, s.to, s.attempts])).toEqual([
      ['full', 'moved', 'p2', 2],
      ['flaky', 'moved', 'p2', 2],
      ['dead', 'failed', 'p2', 3],
      ['nobackup', 'moved', 'p1', 1],
      ['late', 'moved', 'p1', 1],
      ['later', 'skipped', undefined, 0],
    ]);
    expect(r.steps[2]).toMatchObject({ code: 'MIGRATE_ABORTED', why: 'peer gone', rolledBack: expect.stringMatching(/dead serves on here/) });
    expect(r.steps[3]!.backup).toBe('dropped');
    expect(r.steps[5]!.why).toMatch(/out of time/);
    expect(r).toMatchObject({ moved: 4, failed: 1, skipped: 1 });

    calls.length = 0;
    clock = 0;
    const stopping = await runPlan(readPlan({ format: 'ferry.plan/1', onFailure: 'stop', steps: [{ instance: 'dead', to: 'p1', retries: 0 }, { instance: 'late', to: 'p1' }] }), false, links);
    expect(stopping.steps.map((s) => s.outcome)).toEqual(['failed', 'skipped']);
    expect(stopping.steps[1]!.why).toMatch(/onFailure: stop/);
    expect(calls).toEqual(['dead>p1']);
  });

  it('an evacuation plan moves the smallest first, each to the best peer or the one named', async () => {
    const p = evacuationPlan([{ instance: 'big', heapBytes: 9e6 }, { instance: 'small', heapBytes: 10 }, { instance: 'mid', heapBytes: 5e5 }], undefined, 60_000);
    expect(p.steps.map((s) => `${s.instance}>${s.to}`)).toEqual(['small>best', 'mid>best', 'big>best']);
    expect(evacuationPlan([{ instance: 'a', heapBytes: 1 }], 'pi-2', 1000, 200).steps[0]).toMatchObject({ to: 'pi-2', downtimeLimitMs: 200 });
    expect((await caughtAsync(async () => evacuationPlan([], undefined, 1000))).code).toBe('FLEET_NO_CANDIDATE');
  });

  it('fleet options are checked naming the field', () => {
    expect(readFleetOptions({})).toEqual({ summaryRefreshMs: 60_000, keepaliveEvery: 10, summaryBits: 10, askTimeoutMs: 1500 });
    expect(caught(() => readFleetOptions({ summaryRefreshMs: 10 })).details.field).toBe('fleet.summaryRefreshMs');
    expect(caught(() => readFleetOptions({ summaryBits: 30 })).details.field).toBe('fleet.summaryBits');
    expect(caught(() => readFleetOptions({ nope: 1 } as never)).details.field).toBe('fleet.nope');
  });
});
