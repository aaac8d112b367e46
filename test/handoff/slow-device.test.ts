/**
 * Handoff to a slow device (issue "Emulated devices for real"): the write-heavy app
 * (bench/apps/writer.mjs, ~1.2 MiB of heap lines, two slots rewritten per request) moves from an
 * rpi-4b agent to an rpi-zero-2w agent and back while a client streams requests, each device
 * on the device harness: its profile's CPU share (the Zero's core is ~¼ of this host's, the
 * Pi 4's ~½) and its link. Each move keeps its downtime limit or aborts cleanly (a MIGRATE_*
 * code, the instance serving on where it was); every request is applied once.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoveReport } from '../../agent/bridge/move-report.js';
import { Device, Dirs, pairViaControl } from '../bridge/helpers.js';
import { HarnessRig } from '../harness/index.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { migrate } from './helpers.js';
import { LoadClient } from './load-client.js';

const WRITER = fileURLToPath(new URL('../../bench/apps/writer.mjs', import.meta.url));
const INSTANCE = 'writer';
/** The default downtime limit of `ferry migrate`, ms. */
const LIMIT = 300;
/** Tries per direction: an abort is allowed, and the next try starts from a warmer destination. */
const TRIES = 4;

describe('handoff rpi-4b → rpi-zero-2w and back at their CPU shares, under the write-heavy load', () => {
  const dirs = new Dirs();
  const rig = new HarnessRig();
  let broker: TestBroker;
  let pi: Device;
  let zero: Device;

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    const device = async (name: string, profile: string) =>
      new Device(`${name}-${process.pid}`, profile, dirs.make(name), ['--broker', await rig.link(profile, broker.port)], await rig.slot(profile));
    pi = await device('pi4', 'rpi-4b');
    zero = await device('zero', 'rpi-zero-2w');
    await Promise.all([pi.start(), zero.start()]);
    await pairViaControl(pi, zero);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([pi?.stop(), zero?.stop()]);
    await rig.close();
    await broker?.stop();
    dirs.cleanup();
  });

  it('each move keeps the limit or aborts cleanly; it gets there and back; every request applied once', async () => {
    // The slots really are throttled: the Zero's share is a fraction of the Pi's.
    const [piShare, zeroShare] = [pi.slot!.cpu!, zero.slot!.cpu!].map((c) => c.quotaUs / c.periodUs);
    expect(zeroShare).toBeLessThan(piShare!);
    expect(piShare).toBeLessThan(1);

    expect((await pi.cli(['install', WRITER])).code).toBe(0);
    const ran = await pi.cli(['run', INSTANCE]);
    expect(ran.code, ran.stderr).toBe(0);
    const client = await LoadClient.connect({ url: broker.url, instance: INSTANCE, handler: 'write', message: (n) => ({ n: 2, seed: n + 1 }), tag: `slow${Date.now() % 100_000}`, window: 4, gapMs: 25 });
    const reports: MoveReport[] = [];
    let holder = pi;
    try {
      client.start();
      expect(await client.waitAnswered(20, 60_000), 'the instance answers before any move').toBe(true);
      for (const to of [zero, pi]) {
        let arrived = false;
        for (let t = 0; t < TRIES && !arrived; t++) {
          const before = client.first.size;
          const m = await migrate(holder, INSTANCE, to.id, ['--downtime-limit', String(LIMIT)]);
          const r = m.report;
          expect(r, `no report: ${JSON.stringify(m.error)} ${m.stderr}`).toBeDefined();
          reports.push(r!);
          console.log(`${holder.profile} → ${to.profile}: ${r!.outcome}${r!.code ? ` ${r!.code}` : ''} downtime ${r!.downtimeMs} ms (expected ${r!.expectedDowntimeMs}, limit ${r!.downtimeLimitMs}), rounds ${r!.rounds}, sent ${r!.bytesSent} B, total ${r!.totalMs} ms${r!.message ? ` (${r!.message})` : ''}`);
          expect(r!.downtimeMs, JSON.stringify(r!.switchSteps)).toBeLessThanOrEqual(LIMIT);
          if (m.code === 0) {
            expect(r!.outcome).toBe('moved');
            holder = to;
            arrived = true;
          } else {
            expect(r!.outcome).toBe('aborted');
            expect(m.error?.code).toMatch(/^MIGRATE_/);
            expect(await client.waitAnswered(client.first.size + 5, 60_000), `serves on ${holder.id} after the abort`).toBe(true);
            expect(client.first.size).toBeGreaterThan(before);
          }
        }
        expect(arrived, `${to.profile}: ${TRIES} tries, all aborted`).toBe(true);
      }
      await client.stop();
      expect(await client.waitAnswered(client.sent, 60_000), `unanswered: ${client.missing().slice(0, 20).join(', ')}`).toBe(true);
    } finally {
      await client.close();
    }
    expect(holder).toBe(pi);
    expect(client.missing()).toEqual([]);
    expect(client.oddAnswers()).toEqual([]);
    // Each request applied once: the instance counted exactly as many calls as numbers sent.
    const calls = Math.max(...[...client.first.values()].map((a) => (a.body as { calls: number }).calls));
    expect(calls).toBe(client.sent);
    expect(new Set([...client.first.values()].map((a) => (a.body as { calls: number }).calls)).size).toBe(client.sent);
  }, 600_000);
});
