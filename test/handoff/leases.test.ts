/**
 * Leases in a live handoff (issue "Live handoff", Tests: Leases). An app holds the exclusive
 * display of a third device (an rpi-5 agent: the provider) and moves back and forth between an
 * rpi-4b and an android-phone. A rival (a process of its own, with its own device id) keeps
 * asking that display's grantor for the display all the while and must be refused every time,
 * during every handover too: `lease.handover` moves the lease in one step at the grantor,
 * with a new fencing token. The display then refuses the old token (LEASE_FENCED). The app's own
 * display, a local resource of the origin, maps to the destination's own in the plan.
 *
 * The token is read from the resource's answers: a call with a token below the newest issued is
 * LEASE_FENCED whoever sends it, one at or above it reaches the holder check (LEASE_NOT_HOLDER for
 * this test's own client), so the smallest token not fenced is the newest (`ferry leases` shows
 * no token).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../core/errors.js';
import { topics } from '../../agent/services/index.js';
import { connectBus, type MqttBus } from '../../transports/index.js';
import { startAedes, type TestBroker } from '../helpers/brokers.js';
import { HarnessRig, type DeviceSlot } from '../harness/index.js';
import { Device, Dirs, pairViaCli, until } from '../bridge/helpers.js';
import { migrate, moved } from './helpers.js';
import { writeApp } from './load-client.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const HANDOVERS = 6;
/** The test is about leases, not downtime: a limit a busy test machine keeps (the moves must not abort). */
const LIMIT = ['--downtime-limit', '3000'];

/** Holds the display of device `screen` (an exclusive system service) and draws on it. */
function boardSource(name: string, screen: string): string {
  return `export default {
  name: ${JSON.stringify(name)},
  version: '1.0.0',
  requirements: { services: [{ type: 'display', attributes: { device: ${JSON.stringify(screen)} } }] },
  init(ctx) {
    ctx.root.drawn = [];
  },
  handlers: {
    draw(ctx, m) {
      ctx.request('display', 'draw', { text: m.text }, 'drawn');
      return 'asked';
    },
    drawn(ctx, r) {
      ctx.root.drawn.push(r);
    },
    results(ctx) {
      return ctx.root.drawn.slice();
    },
  },
};
`;
}

interface LeaseRow {
  instance: string;
  type: string;
  leaseId: string;
  provider?: string;
}

interface Attempt {
  start: number;
  end: number;
  code: string;
}

/**
 * The rival, run as `node --input-type=module -e`: the services stack of the built agent (its
 * module's URL in RIVAL_SERVICES) under device id RIVAL_ID; it asks for the display of RIVAL_SCREEN
 * until its stdin closes, and prints one JSON line per attempt (after a `{"ready":true}` line).
 */
const RIVAL = `
const { startServices } = await import(process.env.RIVAL_SERVICES);
const s = await startServices({ url: process.env.RIVAL_BROKER, deviceId: process.env.RIVAL_ID });
const desc = await s.discovery.waitFor({ type: 'display', attrs: { device: process.env.RIVAL_SCREEN } }, 10000);
let trying = true;
process.stdin.on('end', () => { trying = false; });
process.stdin.resume();
console.log(JSON.stringify({ ready: true }));
while (trying) {
  const start = Date.now();
  try {
    const lease = await s.client.grant(desc, 5000);
    console.log(JSON.stringify({ start, end: Date.now(), code: 'GRANTED' }));
    await s.client.cancel(lease).catch(() => undefined);
  } catch (e) {
    console.log(JSON.stringify({ start, end: Date.now(), code: e && e.code ? e.code : String(e) }));
  }
  await new Promise((r) => setTimeout(r, 5));
}
await s.close();
process.exit(0);
`;

/** Starts the rival process; resolves once it has found the display and starts asking. */
async function startRival(broker: string, id: string, screen: string): Promise<{ attempts: Attempt[]; stop(): Promise<void> }> {
  const env = { ...process.env, RIVAL_SERVICES: new URL('../../dist/agent/services/index.js', import.meta.url).href, RIVAL_BROKER: broker, RIVAL_ID: id, RIVAL_SCREEN: screen };
  const child: ChildProcess = spawn(nodeCommand(), ['--input-type=module', '-e', RIVAL], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const attempts: Attempt[] = [];
  let err = '';
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the rival exited (${code}) before it was ready: ${err}`)));
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const v = JSON.parse(buf.slice(0, nl)) as Attempt & { ready?: boolean };
        buf = buf.slice(nl + 1);
        if (v.ready) resolve();
        else attempts.push(v);
      }
    });
  });
  return {
    attempts,
    async stop() {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

describe('leases in a live handoff', () => {
  const dirs = new Dirs();
  const rig = new HarnessRig();
  let broker: TestBroker;
  let pi: Device;
  let phone: Device;
  let screen: Device;
  /** This test's own client: reads the display's newest token. */
  let prober: MqttBus;
  let tag = '';

  beforeAll(async () => {
    broker = await startAedes({ persistent: true });
    tag = `${process.pid}-${Date.now() % 100_000}`;
    // On the device harness: each at its profile's CPU share, behind its profile's link.
    const on = async (profile: string): Promise<[string[], DeviceSlot]> => [['--broker', await rig.link(profile, broker.port)], await rig.slot(profile)];
    pi = new Device(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ...(await on('rpi-4b')));
    phone = new Device(`phone-${tag}`, 'android-phone', dirs.make('phone'), ...(await on('android-phone')));
    screen = new Device(`screen-${tag}`, 'rpi-5', dirs.make('screen'), ...(await on('rpi-5')));
    await Promise.all([pi.start(), phone.start(), screen.start()]);
    await pairViaCli(pi, phone);
    prober = await connectBus({ url: broker.url, deviceId: `prober-${tag}` });
  }, 120_000);

  afterAll(async () => {
    await prober?.close();
    await Promise.all([pi?.stop(), phone?.stop(), screen?.stop()]);
    await rig.close();
    await broker?.stop();
    dirs.cleanup();
  });

  /** The code a display call answers with `fence` on lease `leaseId`, sent by this test's client. */
  async function callWith(leaseId: string, fence: number): Promise<string> {
    try {
      await prober.request(topics('ferry/v1').call(screen.id, 'display'), 'svc.call', { reqId: `probe-${Math.random().toString(36).slice(2)}`, leaseId, op: 'frames', args: {}, fence }, { timeoutMs: 5000 });
      return 'ok';
    } catch (e) {
      if (isFerryError(e)) return e.code;
      throw e;
    }
  }

  /** The newest fencing token the display knows: the smallest not fenced (searched upward from `from`). */
  async function newestFence(leaseId: string, from: number): Promise<number> {
    let lo = from; // fenced, or the start
    let step = 1;
    let hi = from + step;
    while ((await callWith(leaseId, hi)) === 'LEASE_FENCED') {
      lo = hi;
      step *= 2;
      hi = lo + step;
    }
    // lo is fenced (or `from`), hi is not: the newest lies in (lo, hi].
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if ((await callWith(leaseId, mid)) === 'LEASE_FENCED') lo = mid;
      else hi = mid;
    }
    return (await callWith(leaseId, lo)) === 'LEASE_FENCED' ? hi : lo;
  }

  async function displayLease(d: Device): Promise<LeaseRow | undefined> {
    const r = await d.json<LeaseRow[]>(['leases']);
    expect(r.code, r.stdout).toBe(0);
    return r.value.find((l) => l.instance === 'board' && l.type === 'display');
  }

  it('the rival never gets the display, the token grows at each handover, the old token is refused', async () => {
    const app = writeApp(dirs.make('app'), 'board', boardSource('board', screen.id));
    expect((await pi.cli(['install', app])).code).toBe(0);
    const ran = await pi.cli(['run', 'board']);
    expect(ran.code, ran.stderr).toBe(0);
    const first = await until('the board holds the screen display', () => displayLease(pi));
    expect(first.provider).toBe(screen.id);
    const leaseId = first.leaseId;

    // The rival asks for the display over and over, from now until the last handover is done.
    const rival = await startRival(broker.url, `rival-${tag}`, screen.id);
    const attempts = rival.attempts;

    let fence = await newestFence(leaseId, 0);
    let holder = pi;
    let other = phone;
    const windows: Array<[number, number]> = [];
    try {
      for (let i = 0; i < HANDOVERS; i++) {
        const t0 = Date.now();
        const r = await moved(holder, 'board', other.id, LIMIT);
        windows.push([t0, Date.now()]);
        console.log(`handover ${i + 1}: ${holder.profile} → ${other.profile} downtime ${r.downtimeMs} ms (limit ${r.downtimeLimitMs}), leases handed over ${r.leasesHandedOver}, steps ${JSON.stringify(r.switchSteps)}`);
        expect(r.leasePlan).toEqual([{ type: 'display', action: 'handover', provider: screen.id }]);
        expect(r.leasesHandedOver).toBe(1);
        expect(r.downtimeMs).toBeLessThanOrEqual(r.downtimeLimitMs);
        [holder, other] = [other, holder];
        // The same lease, now held by the new device only.
        const held = await displayLease(holder);
        expect(held?.leaseId).toBe(leaseId);
        expect(await displayLease(other)).toBeUndefined();
        // A new token, above every earlier one; the old one is refused at the display.
        const next = await newestFence(leaseId, fence);
        expect(next).toBeGreaterThan(fence);
        expect(await callWith(leaseId, fence)).toBe('LEASE_FENCED');
        fence = next;
        // The new holder draws on the display with the lease (and token) it was handed.
        expect((await holder.cli(['call', 'board', 'draw', JSON.stringify({ text: `after handover ${i + 1}` })])).code).toBe(0);
        const res = await until(`the draw after handover ${i + 1} answered`, async () => {
          const got = await holder.json<Array<{ ok: boolean; code?: string; body?: { frame: number } }>>(['call', 'board', 'results']);
          return got.value.length === i + 1 && got.value;
        });
        expect(res[i], JSON.stringify(res[i])).toMatchObject({ ok: true, body: { frame: expect.any(Number) } });
        expect(res[i]!.body!.frame).toBeGreaterThan(i === 0 ? 0 : res[i - 1]!.body!.frame);
        console.log(`  lease ${leaseId} on ${holder.id}: token ${next}, the new holder's draw is frame ${res[i]!.body!.frame}`);
      }
    } finally {
      await rival.stop();
    }

    console.log(`rival: ${attempts.length} attempts, codes ${JSON.stringify(countBy(attempts.map((a) => a.code)))}`);
    // Never granted, and refused as held (not for any other reason).
    expect(attempts.filter((a) => a.code !== 'LEASE_DENIED')).toEqual([]);
    // It kept trying through every handover.
    for (const [t0, t1] of windows) expect(attempts.some((a) => a.start >= t0 && a.end <= t1)).toBe(true);
  }, 180_000);

  it("the origin's own display maps to the destination's own display in a dry run, and nothing moves", async () => {
    // `mirror` draws on the display of the device it runs on: the origin's own (a local resource).
    const app = writeApp(dirs.make('app'), 'mirror', boardSource('mirror', pi.id));
    expect((await pi.cli(['install', app])).code).toBe(0);
    expect((await pi.cli(['run', 'mirror'])).code).toBe(0);
    await until('mirror holds the pi display', async () => (await pi.json<LeaseRow[]>(['leases'])).value.find((l) => l.instance === 'mirror'));
    const before = (await phone.json(['apps'])).value;
    const plan = await migrate(pi, 'mirror', phone.id, ['--dry-run']);
    expect(plan.code, JSON.stringify(plan.error)).toBe(0);
    const r = plan.report!;
    console.log(`dry run: ${JSON.stringify({ outcome: r.outcome, path: r.path, bytesToSend: r.bytesMissing, heapBytes: r.heapBytes, expectedDowntimeMs: r.expectedDowntimeMs, leasePlan: r.leasePlan })}`);
    expect(r.outcome).toBe('planned');
    expect(r.leasePlan).toEqual([{ type: 'display', action: 'map', provider: phone.id }]);
    // Bytes to send: the lines the phone lacks (an empty heap's lines it may hold already, from the board's stays).
    expect(r.heapBytes).toBeGreaterThan(0);
    expect(r.bytesMissing).toBeGreaterThanOrEqual(0);
    expect(r.bytesMissing).toBeLessThanOrEqual(r.heapBytes);
    expect(r.expectedDowntimeMs).toBeGreaterThan(0);
    expect(r.downtimeMs).toBe(0);
    // Nothing moved: it runs on the pi with its lease, and the phone has nothing new.
    const apps = await pi.json<{ instances: Array<{ instance: string; state: string }> }>(['apps']);
    expect(apps.value.instances.find((x) => x.instance === 'mirror')?.state).toBe('running');
    expect((await phone.json(['apps'])).value).toEqual(before);
    expect((await pi.json<LeaseRow[]>(['leases'])).value.some((l) => l.instance === 'mirror')).toBe(true);
  }, 60_000);
});

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
