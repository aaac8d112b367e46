/**
 * What `ferry migrate` refuses, and the moves that end without moving (issue "Live handoff",
 * Operating it: bad input; Tests: non-convergence). A refusal is one line with a code, and
 * nothing changes on either device: their apps and checkpoint versions are as before. A move that
 * cannot keep its downtime limit, or is cancelled, aborts before the switch and the origin serves
 * on: every request of a client streaming meanwhile is applied once, in order, there.
 *
 * The phone reaches the broker through a slow, low-latency emulated link (4 Mbit/s, 1 ms): slow
 * enough that a heap rewritten whole at every call can never be sent within the limit (each
 * round sends the whole heap again), fast enough that its rounds end within a minute.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLinkEmulator, type LinkEmulator } from '../../transports/index.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { Device, Dirs, pairViaControl, until } from '../bridge/helpers.js';
import type { MoveProgress } from '../../agent/bridge/move-report.js';
import { migrate, moved } from './helpers.js';
import { LoadClient, ledgerSource, readLedger, snapshot, writeApp } from './load-client.js';

/** The limit of the moves that must abort: the default, small for a heap rewritten at every call on the slow link. */
const LIMIT = 300;
const SLOW_LINK = { bandwidthBps: 4_000_000, latencyMs: 1, jitterMs: 0, lossRate: 0 };

/**
 * Rewrites the whole heap at every `rewrite` (25 objects of 8 KB: ~200 KB, in place, so the heap
 * does not grow), and keeps the ledger. Over the slow link one round of it takes ~0.4 s: more
 * than the limit, and short enough for the rounds to end well within the command's minute.
 */
const CHURN = ledgerSource('churn', {
  handlers: `rewrite(ctx, m) {
      if (!ctx.root.blobs) {
        const blobs = [];
        for (let i = 0; i < 25; i++) blobs.push({ s: '' });
        ctx.root.blobs = blobs;
      }
      const stamp = String(m.n).padStart(10, '0');
      for (let i = 0; i < 25; i++) ctx.root.blobs[i].s = stamp.repeat(800);
      ctx.root.seen.push(m.n);
      return { n: m.n, length: ctx.root.seen.length };
    },`,
});

/** Needs 32 MiB of heap: an rpi-4b gives 64 MiB, an android-phone 16 MiB. */
const BIG = ledgerSource('big', { requirements: '{ minHeapBytes: 32 * 1024 * 1024 }' });

/** The origin serves on: answers keep coming, and once the client stops every request it sent is answered. */
async function servesOn(client: LoadClient): Promise<void> {
  expect(await client.waitAnswered(client.first.size + 5, 30_000)).toBe(true);
  await client.stop();
  expect(await client.waitAnswered(client.sent, 30_000), `unanswered: ${client.missing().join(', ')}`).toBe(true);
}

describe('refusals and aborted moves', () => {
  const dirs = new Dirs();
  let broker: TestBroker;
  let link: LinkEmulator;
  let pi: Device;
  let phone: Device;
  let stray: Device;
  let tagN = 0;

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    link = await startLinkEmulator({ targetPort: broker.port, link: SLOW_LINK });
    const tag = `${process.pid}-${Date.now() % 100_000}`;
    pi = new Device(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ['--broker', broker.url]);
    phone = new Device(`phone-${tag}`, 'android-phone', dirs.make('phone'), ['--broker', link.url]);
    // On the broker, never paired with anyone.
    stray = new Device(`stray-${tag}`, 'rpi-4b', dirs.make('stray'), ['--broker', broker.url]);
    await Promise.all([pi.start(), phone.start(), stray.start()]);
    // The setup goes through the control socket (what `ferry pair`, `install`, `run` and `call`
    // send): the refusals below are what runs through the command.
    await pairViaControl(pi, phone);
    const apps = dirs.make('apps');
    for (const [name, source] of [['plain', ledgerSource('plain')], ['big', BIG], ['churn', CHURN]] as const) {
      await pi.control('install', { path: writeApp(apps, name, source) });
      await pi.control('run', { app: name });
    }
    await pi.control('call', { instance: 'plain', handler: 'apply', message: { n: 0 } });
  }, 120_000);

  afterAll(async () => {
    await Promise.all([pi?.stop(), phone?.stop(), stray?.stop()]);
    await link?.close();
    await broker?.stop();
    dirs.cleanup();
  });

  /** Runs `ferry <args>` on `d` (no --json): it must fail with one line `ferry: … [CODE]` on stderr; returns the code. */
  async function refused(d: Device, args: string[]): Promise<string> {
    const r = await d.cli(args);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(r.code, `ferry ${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines, `ferry ${args.join(' ')} printed more than one line`).toHaveLength(1);
    const m = /^ferry: .+ \[([A-Z_]+)\]$/.exec(lines[0]!);
    expect(m, lines[0]).not.toBeNull();
    return m![1]!;
  }

  /** The three devices' apps and checkpoints. */
  const devices = () => Promise.all([pi, phone, stray].map(snapshot));

  /** `refused`, and the devices as they were (`before`, else as just before it). */
  async function refusedAndUnchanged(d: Device, args: string[], before?: unknown): Promise<string> {
    const was = before ?? (await devices());
    const code = await refused(d, args);
    expect(await devices(), `ferry ${args.join(' ')} changed something`).toEqual(was);
    return code;
  }

  /** The phone's instances and checkpoints (what an aborted move must not leave behind). */
  async function phoneLeft(): Promise<unknown> {
    return strip(await snapshot(phone));
  }

  /** The move of `instance` under way on `d`, as `ferry migrations` shows it (read on the control socket: polled, so no process per look). */
  async function underWay(d: Device, instance: string): Promise<(MoveProgress & { instance: string }) | undefined> {
    const l = (await d.control('migrations')) as { active: Array<MoveProgress & { instance: string }> };
    return l.active.find((a) => a.instance === instance);
  }

  it('bad input: one line and a code each, and nothing changes on either device', async () => {
    const cases: Array<[string, string[], string]> = [
      ['unknown instance', ['migrate', 'nosuch', phone.id], 'APP_UNKNOWN'],
      ['unknown peer', ['migrate', 'plain', 'nobody-here'], 'PEER_UNKNOWN'],
      ['unpaired peer', ['migrate', 'plain', stray.id], 'PEER_UNKNOWN'],
      ['a peer that does not fit', ['migrate', 'big', phone.id], 'MIGRATE_NO_FIT'],
      ['a peer that does not fit, dry run', ['migrate', 'big', phone.id, '--dry-run'], 'MIGRATE_NO_FIT'],
      ['a limit below 10 ms', ['migrate', 'plain', phone.id, '--downtime-limit', '5'], 'CLI_USAGE'],
      ['a limit above 60 s', ['migrate', 'plain', phone.id, '--downtime-limit', '60001'], 'CLI_USAGE'],
      ['a limit that is no number', ['migrate', 'plain', phone.id, '--downtime-limit', 'soon'], 'CLI_USAGE'],
      ['no peer', ['migrate', 'plain'], 'CLI_USAGE'],
      ['cancel with no move under way', ['migrate', '--cancel', 'plain'], 'MIGRATE_PROTOCOL'],
    ];
    const before = await devices();
    for (const [what, args, code] of cases) expect(await refusedAndUnchanged(pi, args, before), what).toBe(code);

    // A suspended instance is not moved (resume it first); it stays suspended, nothing else changes.
    expect((await pi.cli(['suspend', 'plain'])).code).toBe(0);
    expect(await refusedAndUnchanged(pi, ['migrate', 'plain', phone.id]), 'a suspended instance').toBe('APP_NOT_RUNNING');
    expect((await pi.cli(['resume', 'plain'])).code).toBe(0);
    expect((await pi.json(['call', 'plain', 'range', '{"from":0,"to":10}'])).value).toEqual({ length: 1, items: [0] });
  }, 120_000);

  it('a heap rewritten at every call under a stream never converges: the move aborts, the origin serves on, a second move meanwhile is refused', async () => {
    const phoneBefore = await snapshot(phone);
    const client = await LoadClient.connect({ url: broker.url, instance: 'churn', handler: 'rewrite', tag: `nc${++tagN}${Date.now() % 10_000}`, window: 1, gapMs: 50 });
    try {
      client.start();
      expect(await client.waitAnswered(5, 30_000)).toBe(true);
      const moving = migrate(pi, 'churn', phone.id, ['--downtime-limit', String(LIMIT)]);
      await until('the move under way', () => underWay(pi, 'churn'), 30_000);
      // While it runs: a second move of the same instance, and a lifecycle command, are refused.
      expect(await refused(pi, ['migrate', 'churn', phone.id])).toBe('MIGRATE_BUSY');
      expect(await refused(pi, ['suspend', 'churn'])).toBe('MIGRATE_BUSY');
      const m = await moving;
      expect(m.report, `no report: ${JSON.stringify({ code: m.code, error: m.error, stderr: m.stderr, last: m.events.at(-1) })}`).toBeDefined();
      const r = m.report!;
      console.log(`non-convergence: ${m.error?.code} after ${r.rounds} rounds, ${r.totalMs} ms; expected downtime ${r.expectedDowntimeMs} ms (limit ${r.downtimeLimitMs}), downtime ${r.downtimeMs} ms, dirty ${r.dirtyRateBps} B/s, link ${r.bandwidthBps} B/s, sent ${r.bytesSent} B of heap ${r.heapBytes} B`);
      expect(m.code).toBe(1);
      expect(['MIGRATE_NO_CONVERGENCE', 'MIGRATE_DOWNTIME_EXCEEDED']).toContain(m.error?.code);
      expect(r.outcome).toBe('aborted');
      expect(r.code).toBe(m.error?.code);
      expect(r.rounds).toBeGreaterThan(1);
      expect(r.expectedDowntimeMs).toBeGreaterThan(LIMIT);
      // It did not converge because the app dirtied its heap: the rounds sent it again and again.
      expect(r.dirtyRateBps).toBeGreaterThan(0);
      expect(r.bytesSent).toBeGreaterThan(r.heapBytes * Math.min(5, r.rounds - 1));
      // The limit is a promise: a pause that would break it never happens.
      expect(r.downtimeMs).toBeLessThanOrEqual(LIMIT);
      await servesOn(client);
    } finally {
      await client.close();
    }
    checkStream(client);
    expect(await readLedger(pi, 'churn')).toEqual([...Array(client.sent).keys()]);
    // No instance or heap of it stayed on the phone (its code may, installed: a later move sends none).
    expect(await phoneLeft()).toEqual(strip(phoneBefore));
  }, 240_000);

  it('ferry migrate --cancel during pre-copy: the move aborts and the origin serves on', async () => {
    const phoneBefore = await snapshot(phone);
    const start = (await readLedger(pi, 'churn')).length;
    const client = await LoadClient.connect({ url: broker.url, instance: 'churn', handler: 'rewrite', tag: `cx${++tagN}${Date.now() % 10_000}`, window: 1, gapMs: 50, message: (n) => ({ n: start + n }) });
    try {
      client.start();
      expect(await client.waitAnswered(5, 30_000)).toBe(true);
      const moving = migrate(pi, 'churn', phone.id, ['--downtime-limit', String(LIMIT)]);
      await until('pre-copy under way', async () => (await underWay(pi, 'churn'))?.phase === 'precopy', 30_000);
      const c = await pi.json<{ instance: string; cancelled: boolean }>(['migrate', '--cancel', 'churn']);
      expect(c.code, c.stdout).toBe(0);
      expect(c.value).toMatchObject({ instance: 'churn', cancelled: true });
      const m = await moving;
      console.log(`cancelled: ${m.error?.code} in ${m.report?.phase} after ${m.report?.rounds} rounds, downtime ${m.report?.downtimeMs} ms`);
      expect(m.code).toBe(1);
      expect(m.error?.code).toBe('MIGRATE_ABORTED');
      expect(m.report?.outcome).toBe('aborted');
      // Cancelled before the switch: never paused.
      expect(m.report?.downtimeMs).toBe(0);
      await servesOn(client);
    } finally {
      await client.close();
    }
    checkStream(client, start);
    expect(await readLedger(pi, 'churn')).toEqual([...Array(start + client.sent).keys()]);
    expect(await phoneLeft()).toEqual(strip(phoneBefore));
  }, 240_000);

  it('--dry-run prints fit, bytes to send, expected downtime and the lease plan, and moves nothing', async () => {
    const before = await Promise.all([pi, phone].map(snapshot));
    const plan = await migrate(pi, 'plain', phone.id, ['--dry-run']);
    expect(plan.code, JSON.stringify(plan.error)).toBe(0);
    expect(plan.report).toMatchObject({ outcome: 'planned', instance: 'plain', to: phone.id, path: 'lines', downtimeMs: 0, leasePlan: [] });
    expect(plan.report!.bytesMissing).toBeGreaterThan(0);
    expect(plan.report!.bytesMissing).toBeLessThanOrEqual(plan.report!.heapBytes);
    expect(plan.report!.expectedDowntimeMs).toBeGreaterThan(0);
    // For people: the same plan, one field a line.
    const human = await pi.cli(['migrate', 'plain', phone.id, '--dry-run']);
    expect(human.code, human.stderr).toBe(0);
    for (const f of ['outcome', 'bytesToSend', 'heapBytes', 'expectedDowntimeMs', 'downtimeLimitMs', 'leasePlan']) expect(human.stdout).toMatch(new RegExp(`^\\s*${f}\\b`, 'm'));
    expect(human.stdout).toMatch(/planned/);
    expect(await Promise.all([pi, phone].map(snapshot))).toEqual(before);
  }, 60_000);

  it('an instance that moved away: the origin refuses to run, resume, suspend, move or call it', async () => {
    // Left alone it moves (a limit a busy test machine keeps: this test is about what follows).
    const r = await moved(pi, 'churn', phone.id, ['--downtime-limit', '5000']);
    console.log(`idle move: downtime ${r.downtimeMs} ms (limit ${r.downtimeLimitMs}, expected ${r.expectedDowntimeMs}), ${r.rounds} rounds, sent ${r.bytesSent} B`);
    expect(r.downtimeMs).toBeLessThanOrEqual(r.downtimeLimitMs);
    const before = await devices();
    for (const args of [['run', 'churn'], ['resume', 'churn'], ['suspend', 'churn'], ['migrate', 'churn', phone.id], ['call', 'churn', 'range', '{"from":0,"to":1}']]) {
      expect(await refusedAndUnchanged(pi, args, before), args.join(' ')).toBe('MIGRATE_MOVED');
    }
    // It runs on the phone, with its ledger.
    const ledger = await readLedger(phone, 'churn');
    expect(ledger).toEqual([...Array(ledger.length).keys()]);
    expect(ledger.length).toBeGreaterThan(0);
  }, 120_000);
});

/** Every request of the stream answered once as applied in its turn (numbers from `offset`), no answer contradicting another. */
function checkStream(client: LoadClient, offset = 0): void {
  expect(client.missing()).toEqual([]);
  for (let n = 0; n < client.sent; n++) expect(client.first.get(n)!.body, `answer to ${n}`).toEqual({ n: offset + n, length: offset + n + 1 });
  expect(client.oddAnswers()).toEqual([]);
}

function strip(s: { apps: unknown; checkpoints: unknown }): unknown {
  return { instances: (s.apps as { instances: unknown }).instances, checkpoints: s.checkpoints };
}
