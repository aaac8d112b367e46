/**
 * A fleet over two brokers (issue 16, "Federation"): a site Mosquitto bridged to the fleet
 * Mosquitto, both configured by `ferry broker-config`; an agent on each (a Pi at site `north`, a
 * phone on the fleet broker, site `fleet`). Shown across the bridge: what a mailbox session does
 * when its instance goes to the other broker (stranded requests) and the drain that forwards
 * them; discovery (retained descriptions read by an agent started later); pairing and the sealed
 * channel; an app on one side leasing a service of the other (renewal, expiry); live handoffs
 * back and forth while clients on both sides stream numbered requests, none lost, none applied
 * twice; and the refusal of a move to a device that names no site.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../core/errors.js';
import { startServices, type Services } from '../../agent/services/index.js';
import { drainSession } from '../../transports/session-drain.js';
import { Device, Dirs, pairViaCli, until } from '../bridge/helpers.js';
import { migrate } from '../handoff/helpers.js';
import { FaultDevice } from '../handoff/fault-helpers.js';
import { LoadClient, ledgerSource, readLedger, writeApp } from '../handoff/load-client.js';
import { bridgeUp, startFleet, type FleetBrokers } from './fleet-helpers.js';

const INSTANCE = 'tally';
/** Odd: it ends on the fleet side, so a request stranded at the site's broker would stay unanswered. */
const MOVES = 3;

describe('a fleet over two Mosquittos joined by a bridge', () => {
  const dirs = new Dirs();
  let f: FleetBrokers;
  let pi: Device;
  let phone: FaultDevice;
  const tag = `${process.pid}-${Date.now() % 100_000}`;

  beforeAll(async () => {
    f = await startFleet({ site: 'north', auth: 'none' });
    await bridgeUp(f.site.url, f.fleet.url);
    // The phone first: the Pi, started after, reads its retained description across the bridge.
    phone = await new FaultDevice(`phone-${tag}`, 'android-phone', dirs.make('phone'), ['--broker', f.fleet.url, '--site', 'fleet', '--label', 'phone']).start();
    pi = await new Device(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ['--broker', f.site.url, '--site', 'north', '--label', 'pi']).start();
  }, 60_000);

  afterAll(async () => {
    await Promise.all([pi?.stop(), phone?.stop()]);
    await f?.stop();
    dirs.cleanup();
  });

  it("a mailbox session stays at its broker: requests queued there never reach the other broker's session, until drained and published again", async () => {
    const id = `ferry-app-strand-${process.pid}`;
    const topic = `ferry/v1/app/strand-${process.pid}/req`;
    const session = (url: string) => connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: id, clean: false });
    const got: string[] = [];
    // The instance ran at the site: its session there, subscribed, then disconnected (the pause).
    const old = await session(f.site.url);
    await old.subscribeAsync(topic, { qos: 1 });
    await old.endAsync();
    // Requests published on both sides while no session is connected: queued at the site only.
    const pubs: MqttClient[] = await Promise.all([connectAsync(f.site.url, { protocolVersion: 4 }), connectAsync(f.fleet.url, { protocolVersion: 4 })]);
    for (let n = 0; n < 30; n++) await pubs[n % 2]!.publishAsync(topic, `r${n}`, { qos: 1 });
    // The destination's session at the fleet broker: a different session, which holds none of them.
    const fresh = await session(f.fleet.url);
    fresh.on('message', (_t, p) => got.push(p.toString()));
    await fresh.subscribeAsync(topic, { qos: 1 });
    await pubs[0]!.publishAsync(topic, 'after', { qos: 1 });
    await until('a request published after the destination subscribed', () => got.includes('after'));
    expect(got).toEqual(['after']);
    // The drain takes the 30 from the site's session (more than Mosquitto's 20 in flight) and
    // publishes them again at the site: the bridge brings them to the fleet's session, in order.
    const forward = await connectAsync(f.site.url, { protocolVersion: 4 });
    const r = await drainSession({ url: f.site.url, clientId: id, filter: topic, sentinelTopic: `${topic.replace(/req$/, '')}drain/x${process.pid}` }, (t, p) => forward.publishAsync(t, p, { qos: 1 }).then(() => undefined));
    // 31: "after" was queued at the site too (both sessions were subscribed then). Its forwarded
    // copy is a duplicate, which an instance's reply map answers without applying it again.
    expect(r).toEqual({ taken: 31, sessionPresent: true });
    await until('the forwarded requests', () => got.length === 32);
    expect(got).toEqual(['after', ...[...Array(30).keys()].map((n) => `r${n}`), 'after']);
    // The site's session is gone: a request published there now reaches only the fleet's session.
    await pubs[0]!.publishAsync(topic, 'later', { qos: 1 });
    await until('the later request', () => got.includes('later'));
    // The drain ended the site's session: a connection under its id finds none there.
    const present = await new Promise<boolean>((resolve, reject) => {
      const c = connect(f.site.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: id, clean: false });
      c.once('connect', (ack) => {
        resolve(ack.sessionPresent);
        c.end(true);
      });
      c.once('error', reject);
    });
    expect(present).toBe(false);
    await Promise.all([...pubs, forward, fresh].map((c) => c.endAsync(true)));
    // The test's own sessions end at both brokers.
    for (const url of [f.site.url, f.fleet.url]) await (await connectAsync(url, { protocolVersion: 4, clientId: id, clean: true })).endAsync();
  });

  it('discovery across the bridge: each agent sees the other\'s retained descriptions, with its site', async () => {
    type Desc = { type: string; provider: string; attrs?: Record<string, unknown> };
    const bridgeOf = async (d: Device, peer: Device) => ((await d.json<Desc[]>(['services'])).value ?? []).find((s) => s.type === 'ferry.bridge' && s.provider === peer.id);
    const seen = await until('the phone\'s bridge description at the Pi', () => bridgeOf(pi, phone));
    expect(seen.attrs).toMatchObject({ device: phone.id, site: 'fleet', profile: 'android-phone' });
    expect((await until('the Pi\'s at the phone', () => bridgeOf(phone, pi))).attrs).toMatchObject({ site: 'north' });
    // System services too: the phone's display, for a lease from the Pi's side.
    const display = ((await pi.json<Desc[]>(['services'])).value ?? []).find((s) => s.type === 'display' && s.provider === phone.id);
    expect(display).toBeDefined();
  });

  it('pairing and the sealed channel across the bridge', async () => {
    await pairViaCli(pi, phone);
    const peers = await pi.peers(true);
    expect(peers.paired.find((p) => p.deviceId === phone.id)?.reachable).toBe(true);
    const ping = (await pi.control('peer-ping', { peer: phone.id })) as { rttMs: number };
    expect(ping.rttMs).toBeGreaterThan(0);
  });

  it("an app at the site leases the phone's display across the bridge; a lease renews across it and expires when not renewed", async () => {
    const board = `export default {
  name: 'board', version: '1.0.0',
  requirements: { services: [{ type: 'display', attributes: { device: ${JSON.stringify(phone.id)} } }] },
  init(ctx) { ctx.root.drawn = []; },
  handlers: {
    draw(ctx, m) { ctx.request('display', 'draw', { text: m.text }, 'drawn'); return 'asked'; },
    drawn(ctx, r) { ctx.root.drawn.push(r); },
    results(ctx) { return ctx.root.drawn.slice(); },
  },
};
`;
    const file = join(dirs.make('board'), 'board.mjs');
    writeFileSync(file, board);
    expect((await pi.cli(['install', file])).code).toBe(0);
    const ran = await pi.cli(['run', 'board']);
    expect(ran.code, ran.stdout + ran.stderr).toBe(0);
    const leases = await pi.json<Array<{ instance: string; type: string; provider?: string }>>(['leases']);
    expect(leases.value.find((l) => l.instance === 'board')).toMatchObject({ type: 'display', provider: phone.id });
    await pi.json(['call', 'board', 'draw', '{"text":"across"}']);
    const drawn = await until('the draw answered by the phone', async () => {
      const r = (await pi.json<unknown[]>(['call', 'board', 'results'])).value;
      return r.length > 0 ? r : undefined;
    });
    expect(drawn[0]).toMatchObject({ ok: true, body: { frame: expect.any(Number) } });
    expect((await pi.cli(['stop', 'board'])).code).toBe(0);

    // The protocol itself: a holder at the site, the phone's shared sensor as grantor.
    let holder: Services | undefined;
    try {
      holder = await startServices({ url: f.site.url, deviceId: `holder-${tag}` });
      const sensor = await holder.discovery.waitFor({ type: 'sensor', attrs: { device: phone.id } }, 10_000);
      const l = await holder.client.grant(sensor, 400);
      const t0 = Date.now();
      // Renewed across the bridge for three times its term.
      let held = l;
      while (Date.now() - t0 < 1200) {
        held = await holder.client.renew(held, 400);
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(held.leaseId).toBe(l.leaseId);
      // Not renewed: the grantor ends it at its term.
      const code = await until('the lease expired at the phone', async () => {
        try {
          await holder!.client.renew(held, 400);
          await holder!.client.cancel(held).catch(() => undefined);
          return undefined;
        } catch (e) {
          return isFerryError(e) ? e.code : String(e);
        }
      }, 5000).catch(() => 'still renewable');
      // A renewal after the term is refused as expired; renewing within it worked (above).
      expect(['LEASE_EXPIRED', 'LEASE_UNKNOWN']).toContain(code);
    } finally {
      await holder?.close();
    }
  });

  it(`${MOVES} live handoffs between the brokers while clients on both sides stream: none lost, none applied twice, the mailbox forwarded`, async () => {
    const installed = await pi.cli(['install', writeApp(dirs.make('app'), INSTANCE, ledgerSource(INSTANCE))]);
    expect(installed.code, installed.stderr).toBe(0);
    expect((await pi.cli(['run', INSTANCE])).code).toBe(0);
    // One client at each broker: requests from both cross the bridge half of the time.
    const clients = await Promise.all([
      LoadClient.connect({ url: f.site.url, instance: INSTANCE, handler: 'apply', tag: `s${tag}`, window: 8, gapMs: 5, message: (n) => ({ n }) }),
      LoadClient.connect({ url: f.fleet.url, instance: INSTANCE, handler: 'apply', tag: `f${tag}`, window: 8, gapMs: 5, message: (n) => ({ n: 1e6 + n }) }),
    ]);
    let holder = pi;
    let forwarded = 0;
    try {
      for (const c of clients) c.start();
      for (const c of clients) expect(await c.waitAnswered(10, 30_000), 'answers before any move').toBe(true);
      for (let i = 0; i < MOVES; i++) {
        const to = holder === pi ? phone : pi;
        const m = await migrate(holder, INSTANCE, to.id, ['--downtime-limit', '3000']);
        expect(m.code, `move ${i + 1}: ${JSON.stringify(m.error)} ${m.report?.message ?? ''} ${m.stderr}`).toBe(0);
        expect(m.report).toMatchObject({ outcome: 'moved', to: to.id });
        expect(m.report!.message, 'the forward did not fail').toBeUndefined();
        expect(typeof m.report!.mailboxForwarded).toBe('number');
        forwarded += m.report!.mailboxForwarded!;
        holder = to;
        // It serves both sides where it runs now: each client gets 10 answers more (a client whose
        // window of 8 were stranded at the old broker would get none).
        for (const [k, c] of clients.entries()) {
          const now = c.first.size;
          expect(await c.waitAnswered(now + 10, 20_000), `client ${k} answered after move ${i + 1} (unanswered: ${c.missing().slice(0, 10).join(', ')})`).toBe(true);
        }
      }
      for (const c of clients) await c.stop();
      for (const c of clients) expect(await c.waitAnswered(c.sent, 30_000), `unanswered: ${c.missing().slice(0, 20).join(', ')}`).toBe(true);
    } finally {
      for (const c of clients) await c.close();
    }
    console.log(`federation: ${MOVES} moves, ${clients.map((c) => c.sent).join(' + ')} requests, ${forwarded} forwarded from an old broker's session, ${clients.map((c) => c.answers.length - c.first.size).join(' + ')} repeated answers`);
    for (const c of clients) {
      expect(c.missing()).toEqual([]);
      // A repeated answer repeats the first (the reply map), never a second application.
      expect(c.oddAnswers()).toEqual([]);
    }
    // Each request applied exactly once: the ledger holds every number of both clients once.
    const ledger = await readLedger(holder, INSTANCE);
    const want = clients.flatMap((c, k) => [...Array(c.sent).keys()].map((n) => k * 1e6 + n));
    expect([...ledger].sort((a, b) => a - b)).toEqual(want.sort((a, b) => a - b));
    expect(forwarded, 'requests left at the old broker were forwarded').toBeGreaterThan(0);
    // It runs on exactly one device; the other knows where it went.
    for (const d of [pi, phone]) {
      const state = (await d.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE)?.state;
      expect(state).toBe(d === holder ? 'running' : 'moved');
    }
  }, 180_000);

  it('an origin killed after the commit, before its forward, forwards at its restart: the requests stranded at its broker are answered, once', async () => {
    // It runs on the phone (fleet side) now; the phone's agent is armed to die right after the commit.
    expect((await phone.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE)?.state).toBe('running');
    phone.fault = 'origin:committed:kill';
    await phone.stop();
    await phone.start();
    const client = await LoadClient.connect({ url: f.fleet.url, instance: INSTANCE, handler: 'apply', tag: `k${tag}`, window: 8, gapMs: 5, message: (n) => ({ n: 2e6 + n }) });
    try {
      client.start();
      expect(await client.waitAnswered(10, 30_000)).toBe(true);
      const m = await migrate(phone, INSTANCE, pi.id, ['--downtime-limit', '3000']);
      expect(m.code).not.toBe(0); // its agent died under it
      await phone.died();
      // The Pi runs it; requests sent on the fleet side meanwhile are stranded in the phone's broker session.
      await until('the instance running on the Pi', async () => (await pi.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE)?.state === 'running');
      const stuck = client.first.size;
      await phone.restart();
      expect(await client.waitAnswered(stuck + 10, 30_000), `answered after the restart (unanswered: ${client.missing().slice(0, 10).join(', ')})`).toBe(true);
      await client.stop();
      expect(await client.waitAnswered(client.sent, 30_000)).toBe(true);
    } finally {
      await client.close();
    }
    expect(client.missing()).toEqual([]);
    expect(client.oddAnswers()).toEqual([]);
    expect(phone.allLogs().some((l) => l.event === 'move.forwarded' && l.instance === INSTANCE)).toBe(true);
    // Each applied once; the forwarded ones after those sent once the Pi's session was up (PROTOCOL F.4: order is kept per session only).
    const mine = (await readLedger(pi, INSTANCE)).filter((n) => n >= 2e6);
    expect([...mine].sort((a, b) => a - b)).toEqual([...Array(client.sent).keys()].map((n) => 2e6 + n));
  }, 120_000);

  it('a move to a device that names no site is refused (MIGRATE_CROSS_SITE): it may or may not share the broker; nothing moves', async () => {
    const lone = await new Device(`lone-${tag}`, 'rpi-4b', dirs.make('lone'), ['--broker', f.fleet.url, '--label', 'lone']).start();
    try {
      const holder = (await pi.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE)?.state === 'running' ? pi : phone;
      await pairViaCli(holder, lone);
      const m = await migrate(holder, INSTANCE, lone.id);
      expect(m.code).not.toBe(0);
      expect(m.error).toMatchObject({ code: 'MIGRATE_CROSS_SITE', field: 'peer' });
      expect(m.error!.message).toContain('--site');
      const here = (await holder.json<{ instances: Array<{ instance: string; state: string }> }>(['apps'])).value.instances.find((x) => x.instance === INSTANCE);
      expect(here?.state).toBe('running');
      expect((await lone.json<{ instances: unknown[] }>(['apps'])).value.instances).toEqual([]);
    } finally {
      await lone.stop();
    }
  }, 60_000);
});
