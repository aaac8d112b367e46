import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Candidate, PlanReport } from '../../agent/fleet/index.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { Device, Dirs, pairViaCli, until } from '../bridge/helpers.js';
import { migrate, moved } from '../handoff/helpers.js';

/**
 * Peer choice, plans and evacuation with real agents (agent/fleet/DESIGN.md): an origin and four
 * paired rpi-4b peers holding different parts of an instance's heap from earlier stays, one of
 * them full. The choice must be the fitting peer that needs the fewest bytes (checked against
 * each peer's exact answer, a dry run), a return trip sends about what changed, a plan's failed
 * step leaves its instance running here and says so, and an evacuation with one peer full moves
 * everything to the others.
 */

const keeper = `export default {
  name: 'keeper',
  version: '1.0.0',
  init(ctx) { ctx.root.slots = []; },
  handlers: {
    fill(ctx, m) { for (let i = 0; i < m.n; i++) ctx.root.slots.push({ s: m.tag + 'x'.repeat(1000) + i }); return { slots: ctx.root.slots.length }; },
    rewrite(ctx, m) { for (let i = m.from; i < m.to; i++) ctx.root.slots[i] = { s: m.tag + 'y'.repeat(1000) + i }; return { ok: true }; },
    get(ctx, m) { return { slots: ctx.root.slots.length, at: ctx.root.slots[m.i]?.s.slice(0, 8) }; },
  },
};
`;

const LIMIT = ['--downtime-limit', '5000'];

interface Peers {
  instance: string;
  heapBytes: number;
  candidates: Candidate[];
}

describe('choosing the destination among four peers; plans; evacuation (aedes)', () => {
  const dirs = new Dirs();
  let broker: TestBroker;
  let o: Device, a: Device, b: Device, c: Device, d: Device;

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    const cfg = (name: string, extra: Record<string, unknown> = {}) => {
      const file = join(dirs.make(`cfg-${name}`), 'ferry.config.json');
      writeFileSync(file, JSON.stringify({ summaryRefreshMs: 500, ...extra }));
      return ['--broker', broker.url, '--config', file];
    };
    const tag = process.pid;
    o = new Device(`o-${tag}`, 'rpi-4b', dirs.make('o'), cfg('o'));
    a = new Device(`a-${tag}`, 'rpi-4b', dirs.make('a'), cfg('a'));
    b = new Device(`b-${tag}`, 'rpi-4b', dirs.make('b'), cfg('b'));
    c = new Device(`c-${tag}`, 'rpi-4b', dirs.make('c'), cfg('c'));
    d = new Device(`d-${tag}`, 'rpi-4b', dirs.make('d'), cfg('d', { maxInstances: 1 }));
    await Promise.all([o, a, b, c, d].map((x) => x.start()));
    for (const p of [a, b, c, d]) await pairViaCli(o, p);
    const file = join(dirs.make('app'), 'keeper.mjs');
    writeFileSync(file, keeper);
    expect((await o.cli(['install', file])).code).toBe(0);
    expect((await o.cli(['run', 'keeper'])).code).toBe(0);
    expect((await o.json(['call', 'keeper', 'fill', '{"n":150,"tag":"v0"}'])).value).toEqual({ slots: 150 });
  }, 120_000);

  afterAll(async () => {
    await Promise.all([o, a, b, c, d].map((x) => x?.stop()));
    await broker?.stop();
    dirs.cleanup();
  });

  const rewrite = async (from: number, to: number, tag: string) => expect((await o.json(['call', 'keeper', 'rewrite', JSON.stringify({ from, to, tag })])).code).toBe(0);
  const trip = async (p: Device) => {
    await moved(o, 'keeper', p.id, LIMIT);
    await moved(p, 'keeper', o.id, LIMIT);
  };
  const peersFor = async (instance: string, refresh = true): Promise<Peers> => {
    const r = await o.json<Peers>(['peers', '--for', instance, ...(refresh ? ['--refresh'] : [])]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.value;
  };

  it('ranks the peers by the bytes each lacks; the full one is passed over and says why; --best picks the top and sends what it lacked', async () => {
    // C saw the heap before two thirds of it changed, B before a fifth, D before a fifteenth; A never.
    await trip(c);
    await rewrite(0, 100, 'v1');
    await trip(b);
    await rewrite(0, 30, 'v2');
    await trip(d);
    await rewrite(0, 10, 'v3');
    expect((await d.cli(['run', 'keeper', '--instance', 'dlocal'])).code).toBe(0); // D is now full (maxInstances 1)

    const view = await peersFor('keeper');
    const by = Object.fromEntries(view.candidates.map((x) => [x.peer, x]));
    expect(by[d.id]).toMatchObject({ fits: false, why: 'full: runs 1 of its 1 instances' });
    expect(view.candidates.filter((x) => x.fits).map((x) => x.peer)).toEqual([b.id, c.id, a.id]);
    expect(by[b.id]!.bytesNeeded).toBeLessThan(by[c.id]!.bytesNeeded);
    expect(by[c.id]!.bytesNeeded).toBeLessThan(by[a.id]!.bytesNeeded);
    expect(by[a.id]).toMatchObject({ codeNeeded: true, linesHeld: 0, summary: 'fresh' });
    // D holds more of it than anyone: only its being full keeps it from the top.
    expect(by[d.id]!.bytesNeeded).toBeLessThan(by[b.id]!.bytesNeeded);

    const human = await o.cli(['peers', '--for', 'keeper']);
    expect(human.stdout).toContain(`1. ${b.id} (rpi-4b)  needs`);
    expect(human.stdout).toContain(`-  ${d.id} (rpi-4b)  does not fit: full: runs 1 of its 1 instances`);

    // Each peer's exact answer (a dry run asks it line by line) agrees with what its summary said.
    const exact: Record<string, number> = {};
    for (const p of [a, b, c]) {
      const plan = await migrate(o, 'keeper', p.id, ['--dry-run']);
      expect(plan.code, JSON.stringify(plan.error)).toBe(0);
      exact[p.id] = plan.report!.bytesMissing;
      // Line bytes its summary says it lacks vs. those it does lack: a false positive (2^-10 a line) makes one line look held.
      expect(exact[p.id]! - by[p.id]!.lineBytesNeeded).toBeGreaterThanOrEqual(0);
      expect(exact[p.id]! - by[p.id]!.lineBytesNeeded).toBeLessThanOrEqual(2 * 4096);
    }
    const fewest = Math.min(...Object.values(exact));
    expect(exact[b.id]).toBe(fewest);

    const r = await o.cli(['migrate', 'keeper', '--best', ...LIMIT, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const chosen = lines.find((l) => l.chosen)?.chosen as { peer: string; bytesNeeded: number };
    const report = lines.find((l) => l.report)?.report as { outcome: string; to: string; bytesSent: number; bytesMissing: number; linesSent: number; linesReused: number };
    expect(chosen.peer).toBe(b.id);
    expect(report).toMatchObject({ outcome: 'moved', to: b.id });
    // chosenBytesOverBestBytes: what the chosen peer was sent over the fewest any candidate needed.
    expect(report.bytesMissing / fewest).toBeLessThan(1.05);
    expect((await b.json(['call', 'keeper', 'get', '{"i":0}'])).value).toEqual({ slots: 150, at: 'v3yyyyyy' });

    // Its summary reaches the origin by itself (summaryRefreshMs 500), no --refresh asked.
    await until('b\'s summary of keeper at the origin', async () => {
      const s = (await o.control('fleet-summaries')) as { peers: Array<{ peer: string; fresh: boolean; heaps: Array<{ heap: string }> }> };
      const v = s.peers.find((p) => p.peer === b.id);
      return v?.fresh && v.heaps.some((h) => h.heap === 'keeper');
    });

    // A return trip after two slots changed sends about those lines, not the heap.
    expect((await b.json(['call', 'keeper', 'rewrite', '{"from":140,"to":142,"tag":"v4"}'])).code).toBe(0);
    const back = await moved(b, 'keeper', o.id, LIMIT);
    expect(back.linesSent).toBeLessThanOrEqual(8);
    expect(back.linesReused).toBeGreaterThan(30);
  }, 180_000);

  it('a plan: a step refused by a full peer fails alone and leaves its instance here; keepBackup false drops the origin\'s copy; onFailure stop skips the rest', async () => {
    for (const i of ['k2', 'k3']) {
      expect((await o.cli(['run', 'keeper', '--instance', i])).code).toBe(0);
      expect((await o.json(['call', i, 'fill', '{"n":20,"tag":"p0"}'])).code).toBe(0);
    }
    const dir = dirs.make('plan');
    const planFile = join(dir, 'plan.json');
    writeFileSync(planFile, JSON.stringify({ format: 'ferry.plan/1', steps: [{ instance: 'keeper', to: 'best', downtimeLimitMs: 5000 }, { instance: 'k2', to: d.id, retries: 1 }, { instance: 'k3', to: a.id, keepBackup: false, downtimeLimitMs: 5000 }] }));
    const dry = await o.json<PlanReport>(['plan', 'run', planFile, '--dry-run']);
    expect(dry.value.steps.map((s) => s.outcome)).toEqual(['planned', 'failed', 'planned']);
    expect((await o.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.filter((i) => i.state === 'running').map((i) => i.instance).sort()).toEqual(['k2', 'k3', 'keeper']);

    const run = await o.json<PlanReport>(['plan', 'run', planFile]);
    expect(run.code).toBe(1); // a step failed: the status says so, the report says which
    const [s1, s2, s3] = run.value.steps;
    expect(s1).toMatchObject({ instance: 'keeper', outcome: 'moved', to: b.id, backup: 'kept' });
    expect(s2).toMatchObject({ instance: 'k2', outcome: 'failed', to: d.id, code: 'MIGRATE_NO_FIT', attempts: 1, rolledBack: expect.stringMatching(/k2 serves on here/) });
    expect(s2!.why).toMatch(/device full/);
    expect(s3).toMatchObject({ instance: 'k3', outcome: 'moved', to: a.id, backup: 'dropped' });
    const apps = (await o.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances;
    expect(Object.fromEntries(apps.map((i) => [i.instance, i.state]))).toEqual({ keeper: 'moved', k2: 'running', k3: 'moved' });
    expect((await o.json(['call', 'k2', 'get', '{"i":0}'])).value).toEqual({ slots: 20, at: 'p0xxxxxx' });
    expect((await a.json(['call', 'k3', 'get', '{"i":19}'])).value).toEqual({ slots: 20, at: 'p0xxxxxx' });
    // k3's heap is gone from the origin; keeper's (kept) is not.
    const cps = (await o.json<Array<{ instance: string }>>(['checkpoints'])).value.map((x) => x.instance);
    expect(cps).toContain('keeper');
    expect(cps).not.toContain('k3');

    writeFileSync(planFile, JSON.stringify({ format: 'ferry.plan/1', onFailure: 'stop', steps: [{ instance: 'k2', to: d.id, retries: 0 }, { instance: 'k2x', to: a.id }] }));
    const stopped = await o.json<PlanReport>(['plan', 'run', planFile]);
    expect(stopped.value.steps.map((s) => s.outcome)).toEqual(['failed', 'skipped']);

    writeFileSync(planFile, JSON.stringify({ format: 'ferry.plan/1', steps: [{ instance: 'k2', to: 'best' }, { instance: 'k3', to: 7 }] }));
    const bad = await o.json(['plan', 'check', planFile]);
    expect(bad.code).toBe(1);
    expect(bad.value).toMatchObject({ error: { code: 'PLAN_INVALID', field: 'steps[1].to' } });
  }, 120_000);

  it('evacuates three instances with one peer full: to the full one nothing moves; to the best, all three leave, smallest first', async () => {
    for (const i of ['k4', 'k5']) {
      expect((await o.cli(['run', 'keeper', '--instance', i])).code).toBe(0);
      expect((await o.json(['call', i, 'fill', JSON.stringify({ n: i === 'k4' ? 60 : 5, tag: 'e0' })])).code).toBe(0);
    }
    const running = async () => (await o.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.filter((i) => i.state === 'running').map((i) => i.instance).sort();
    expect(await running()).toEqual(['k2', 'k4', 'k5']);

    const toFull = await o.json<PlanReport>(['evacuate', '--to', d.id]);
    expect(toFull.code).toBe(1);
    expect(toFull.value.steps.map((s) => [s.instance, s.outcome, s.code])).toEqual([
      ['k5', 'failed', 'MIGRATE_NO_FIT'],
      ['k2', 'failed', 'MIGRATE_NO_FIT'],
      ['k4', 'failed', 'MIGRATE_NO_FIT'],
    ]);
    expect(await running()).toEqual(['k2', 'k4', 'k5']);

    const dry = await o.json<PlanReport>(['evacuate', '--dry-run', '--downtime-limit', '5000']);
    expect(dry.value.steps.every((s) => s.outcome === 'planned' && s.to !== d.id)).toBe(true);
    expect(await running()).toEqual(['k2', 'k4', 'k5']);

    const ev = await o.json<PlanReport>(['evacuate', '--downtime-limit', '5000', '--time-limit', '120000']);
    expect(ev.code, JSON.stringify(ev.value)).toBe(0);
    expect(ev.value).toMatchObject({ moved: 3, failed: 0, skipped: 0 });
    expect(ev.value.steps.map((s) => s.instance)).toEqual(['k5', 'k2', 'k4']);
    for (const s of ev.value.steps) {
      expect(s.to).not.toBe(d.id);
      expect(s.downtimeMs).toBeLessThanOrEqual(5000);
      const there = [a, b, c].find((p) => p.id === s.to)!;
      expect((await there.json(['call', s.instance, 'get', '{"i":0}'])).value).toMatchObject({ at: s.instance === 'k2' ? 'p0xxxxxx' : 'e0xxxxxx' });
    }
    expect(await running()).toEqual([]);
    const nothing = await o.json(['evacuate']);
    expect(nothing.value).toMatchObject({ error: { code: 'FLEET_NO_CANDIDATE' } });
  }, 150_000);
});
