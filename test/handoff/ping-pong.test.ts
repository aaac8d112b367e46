/**
 * Ping-pong under load (issue "Live handoff", Tests): a client streams numbered requests into an
 * instance while it moves 20 times among an rpi-4b, an android-phone and a palm-pda. The phone
 * and the PDA reach the broker through the link emulator with their profiles' links; the PDA has
 * 2 KiB cache lines (the others 4 KiB) and 32-bit words, so every move to or from it takes the
 * object-level path. Every request must be applied once, in order, and each move must keep its
 * downtime limit (or abort with a MIGRATE_* code and serve on where it was).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { startAedes, startMosquitto, type TestBroker } from '../helpers/brokers.js';
import { Device, Dirs, pairViaControl } from '../bridge/helpers.js';
import { HarnessRig } from '../harness/index.js';
import { migrate } from './helpers.js';
import { LoadClient, ledgerSource, readLedger, writeApp } from './load-client.js';

const MOVES = 20;
const INSTANCE = 'tally';

/** Mosquitto keeps the mailbox sessions on disk (as a deployment would); aedes in this process. */
const BROKERS = [
  ['mosquitto (persistence)', () => startMosquitto({ persistence: true })],
  ['aedes', () => startAedes({ persistent: true })],
] as const;

/** The one-way latency plus jitter of a device's link to the broker, ms (0 for the Pi: loopback). */
function linkMs(d: Device): number {
  if (d.profile === 'rpi-4b') return 0;
  const l = getProfile(d.profile).link;
  return l.latencyMs + l.jitterMs;
}

/**
 * A limit each move can keep on the emulated links, with room for the origin's estimate, which is
 * cautious (a move whose estimate is over its limit aborts, and aborts are not what this test is
 * about). The switch waits for round trips between the two devices (the final delta and its
 * `prepared`, the commit and its answer: each crosses both links twice) and for the destination's
 * mailbox session to connect through its own link (TCP, CONNECT, SUBSCRIBE: three round trips),
 * so a phone's 40 ± 10 ms one way costs ~600 ms of downtime where loopback costs ~0; 1 s on top
 * covers the work itself on a busy two-core machine. The object path (to or from the PDA) sends
 * the changed objects over the PDA's 434 kbit/s link at the switch, and both ends export or
 * import the whole object image while it is paused: 2.5 s more.
 */
function limitFor(from: Device, to: Device): number {
  const both = linkMs(from) + linkMs(to);
  const objects = from.profile === 'palm-pda' || to.profile === 'palm-pda';
  return Math.round(1000 + 4 * both + 6 * 2 * linkMs(to) + (objects ? 2500 : 0));
}

describe.each(BROKERS)('ping-pong under load, %s', (_name, startBroker) => {
  const dirs = new Dirs();
  let broker: TestBroker;
  const rig = new HarnessRig();
  let pi: Device;
  let phone: Device;
  let palm: Device;

  beforeAll(async () => {
    broker = await startBroker();
    // Each device on the harness (test/harness/): its profile's CPU share (the PDA's is ~5 % of a
    // core here); the phone and the PDA behind their profiles' links, the Pi on the LAN (loopback).
    const tag = `${process.pid}-${Date.now() % 100_000}`;
    pi = new Device(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ['--broker', broker.url], await rig.slot('rpi-4b'));
    phone = new Device(`phone-${tag}`, 'android-phone', dirs.make('phone'), ['--broker', await rig.link('android-phone', broker.port)], await rig.slot('android-phone'));
    palm = new Device(`palm-${tag}`, 'palm-pda', dirs.make('palm'), ['--broker', await rig.link('palm-pda', broker.port)], await rig.slot('palm-pda'));
    await Promise.all([pi.start(), phone.start(), palm.start()]);
    // Paired through the control sockets, the three pairs at once (this test is about the moves).
    await Promise.all([pairViaControl(pi, phone), pairViaControl(pi, palm), pairViaControl(phone, palm)]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([pi?.stop(), phone?.stop(), palm?.stop()]);
    await rig.close();
    await broker?.stop();
    dirs.cleanup();
  });

  it(`${MOVES} moves among three devices while a client streams: none lost, none applied twice, in order, each downtime within its limit`, async () => {
    const installed = await pi.cli(['install', writeApp(dirs.make('app'), INSTANCE, ledgerSource(INSTANCE))]);
    expect(installed.code, installed.stderr).toBe(0);
    const ran = await pi.cli(['run', INSTANCE]);
    expect(ran.code, ran.stderr).toBe(0);

    const client = await LoadClient.connect({ url: broker.url, instance: INSTANCE, handler: 'apply', tag: `pp${Date.now() % 100_000}`, window: 8, gapMs: 20 });
    const devices = [pi, phone, palm];
    let holder = pi;
    const moved = { lines: 0, objects: 0 };
    const aborted: string[] = [];
    try {
      client.start();
      expect(await client.waitAnswered(20, 30_000), 'the instance answers before any move').toBe(true);
      for (let i = 0; i < MOVES; i++) {
        // Round the three: pi → phone → palm → pi … (after an abort, on to the next one).
        const to = devices[(devices.indexOf(holder) + 1) % devices.length]!;
        const limit = limitFor(holder, to);
        const before = client.first.size;
        const m = await migrate(holder, INSTANCE, to.id, ['--downtime-limit', String(limit)]);
        const r = m.report;
        expect(r, `move ${i}: no report (${JSON.stringify(m.error)} ${m.stderr})`).toBeDefined();
        const objects = holder.profile === 'palm-pda' || to.profile === 'palm-pda';
        console.log(
          `move ${i + 1}: ${holder.profile} → ${to.profile} ${r!.outcome}${r!.code ? ` ${r!.code}` : ''} path ${r!.path} downtime ${r!.downtimeMs} ms (limit ${r!.downtimeLimitMs}, expected ${r!.expectedDowntimeMs}) sent ${r!.bytesSent} B of heap ${r!.heapBytes} B, rounds ${r!.rounds}, total ${r!.totalMs} ms, answered during it ${client.first.size - before}${r!.message ? ` (${r!.message})` : ''}`,
        );
        expect(r!.downtimeLimitMs).toBe(limit);
        expect(r!.downtimeMs, `move ${i + 1} broke its limit: ${JSON.stringify(r!.switchSteps)}`).toBeLessThanOrEqual(limit);
        if (m.code === 0) {
          expect(r!.outcome).toBe('moved');
          expect(r!.path).toBe(objects ? 'objects' : 'lines');
          holder = to;
          moved[r!.path]++;
        } else {
          // An abort is allowed, with its code, and the instance serves on where it was.
          expect(r!.outcome).toBe('aborted');
          expect(m.error?.code).toMatch(/^MIGRATE_/);
          aborted.push(`${i + 1}:${m.error!.code}`);
          const now = client.first.size;
          expect(await client.waitAnswered(now + 5, 30_000), `the instance serves on ${holder.id} after the abort`).toBe(true);
        }
      }
      await client.stop();
      expect(await client.waitAnswered(client.sent, 60_000), `unanswered: ${client.missing().slice(0, 20).join(', ')}`).toBe(true);
    } finally {
      await client.close();
    }

    console.log(`${moved.lines + moved.objects} of ${MOVES} moves made (${moved.lines} of lines, ${moved.objects} of objects), aborted: ${aborted.join(' ') || 'none'}; ${client.sent} requests, ${client.answers.length - client.first.size} repeated answers`);
    // The aborts are the exception, and both paths were taken.
    expect(moved.lines + moved.objects).toBeGreaterThanOrEqual(MOVES - 3);
    expect(moved.lines).toBeGreaterThan(0);
    expect(moved.objects).toBeGreaterThan(0);
    // Every request answered as applied once, in order: the n-th applied is number n.
    expect(client.missing()).toEqual([]);
    for (let n = 0; n < client.sent; n++) expect(client.first.get(n)!.body, `answer to ${n}`).toEqual({ n, length: n + 1 });
    // A repeated answer (a request redelivered after it was applied) repeats the first, never a second application.
    expect(client.oddAnswers()).toEqual([]);
    // The ledger where the instance ends up: 0 .. sent-1, each once.
    expect(await readLedger(holder, INSTANCE)).toEqual([...Array(client.sent).keys()]);
    // It runs on exactly one device; the others know where it went.
    const views = await Promise.all(devices.map((d) => d.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])));
    devices.forEach((d, i) => {
      const state = views[i]!.value.instances.find((x) => x.instance === INSTANCE)?.state;
      if (d === holder) expect(state).toBe('running');
      else expect(state === undefined || state === 'moved', `${d.id}: ${state}`).toBe(true);
    });
  }, 900_000);
});
