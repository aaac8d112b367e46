import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { encode as cborEncode } from 'cbor-x';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, type HeldLease, type ServiceDescription } from '../../agent/services/index.js';
import { encodeEnvelope } from '../../transports/envelope.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { codeOf, Devices, until } from './helpers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';

const here = dirname(fileURLToPath(import.meta.url));

describe.each(BROKERS)('leases over %s', (_name, start) => {
  let broker: TestBroker;
  let devs: Devices;
  beforeAll(async () => {
    broker = await start();
    devs = new Devices(() => broker.url);
  });
  afterEach(async () => {
    await devs.closeAll();
  });
  afterAll(async () => {
    await broker.stop();
    devs.cleanup();
  });

  it('grant, renew (counts from now), cancel (idempotent), expiry with the grantor clock advanced', async () => {
    const clock = new ManualClock(Date.now());
    const p = await devs.start('p1', { grantor: { maxDurationMs: 5000 }, clock });
    const h = await devs.start('h1');
    const d = await p.offer({ name: 'printer', type: 'printer', attrs: { color: true }, exclusive: false });
    const found = await h.discovery.waitFor({ type: 'printer', attrs: { color: true } });
    expect(found.id).toBe(d.id);
    expect(h.discovery.lookup({ type: 'printer', attrs: { color: false } })).toEqual([]);

    const any = await h.client.grant(found, 'any');
    expect(any.durationMs).toBe(5000); // default cut to max
    const l = await h.client.grant(found, 60_000);
    expect(l.durationMs).toBe(5000);
    expect(l.leaseId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    clock.advance(4000);
    await h.client.renew(l, 3000);
    expect(p.grantor!.table.get(l.leaseId)!.expiresAt).toBe(clock.now() + 3000);
    expect(await h.client.cancel(l)).toBe('cancelled');
    expect(await h.client.cancel(l)).toBe('cancelled');
    expect(await codeOf(h.client.renew(l))).toBe('LEASE_UNKNOWN');
    clock.advance(5000);
    expect(await codeOf(h.client.renew(any))).toBe('LEASE_EXPIRED');
    expect(await codeOf(h.client.grant(found, 1))).toBe('LEASE_DENIED');
    expect(await codeOf(h.client.grant({ leaseTopic: found.leaseTopic, service: 'nope' }))).toBe('SERVICE_NOT_FOUND');
  });

  it('exclusive leases fence, shared leases admit several holders', async () => {
    const clock = new ManualClock(Date.now());
    const p = await devs.start('p2', { grantor: true, clock });
    const a = await devs.start('a2');
    const b = await devs.start('b2');
    await p.offer({ name: 'door', type: 'lock', exclusive: true });
    await p.offer({ name: 'temp', type: 'thermo', exclusive: false, maxHolders: 2 });
    const door = await a.discovery.waitFor({ type: 'lock' });
    const temp = await a.discovery.waitFor({ type: 'thermo' });
    const la = await a.client.grant(door, 1000);
    expect(await codeOf(b.client.grant(door, 1000))).toBe('LEASE_DENIED');
    clock.advance(1000);
    const lb = await b.client.grant(door, 1000);
    expect(lb.fence!).toBeGreaterThan(la.fence!);
    expect(await codeOf(a.client.renew(la))).toBe('LEASE_EXPIRED');
    const s1 = await a.client.grant(temp, 1000);
    const s2 = await b.client.grant(temp, 1000);
    expect(s1.fence).toBeUndefined();
    expect(s1.leaseId).not.toBe(s2.leaseId);
    expect(p.grantor!.table.leasesOf('temp').map((l) => l.holder).sort()).toEqual(['a2', 'b2']);
    expect(await codeOf(p.client.grant(temp, 1000))).toBe('LEASE_DENIED');
  });

  it('handover moves an exclusive lease atomically; the old holder is fenced off', async () => {
    const p = await devs.start('p3', { grantor: true });
    const origin = await devs.start('origin3');
    const dest = await devs.start('dest3');
    const thief = await devs.start('thief3');
    await p.offer({ name: 'disp', type: 'display', exclusive: true });
    const d = await origin.discovery.waitFor({ type: 'display' });
    const m = await origin.client.grant(d, 10_000);
    // A third party hammers the service during the handover: it must never get it.
    let stolen = 0;
    let stop = false;
    const hammer = (async () => {
      while (!stop) if ((await codeOf(thief.client.grant(d, 1000))) === 'ok') stolen++;
    })();
    await new Promise((r) => setTimeout(r, 30));
    const moved = await origin.client.handover(m, 'dest3', 5000);
    await new Promise((r) => setTimeout(r, 30));
    stop = true;
    await hammer;
    expect(stolen).toBe(0);
    expect(moved.holder).toBe('dest3');
    expect(moved.fence!).toBeGreaterThan(m.fence!);
    expect(moved.leaseId).toBe(m.leaseId);
    await dest.client.renew(moved, 5000);
    expect(await codeOf(origin.client.renew(m))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(origin.client.cancel(m))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(origin.client.handover(m, 'thief3'))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(thief.client.grant(d, 1000))).toBe('LEASE_DENIED');
  });

  it('renewal manager batches renewals to one grantor and reports refusals', async () => {
    // Terms long enough that a busy machine (the whole suite runs two files at once) does not let
    // one run out between renewals: then a lease would be lost, not refused, and this is about refusals.
    const p = await devs.start('p5', { grantor: { maxDurationMs: 1200 } });
    const h = await devs.start('h5', { renewal: { minMarginMs: 500, batchWindowMs: 400 } });
    for (let i = 0; i < 5; i++) await p.offer({ name: `s${i}`, type: 'multi', attrs: { i }, exclusive: true });
    await until(() => h.discovery.lookup({ type: 'multi' }).length === 5);
    const leases: HeldLease[] = [];
    for (const d of h.discovery.lookup({ type: 'multi' })) leases.push(await h.client.grant(d, 1200));
    for (const l of leases) h.renewals.manage(l);
    const failed: string[] = [];
    const lost: string[] = [];
    h.renewals.on('failed', (_l, e: { code: string }, final: boolean) => final && failed.push(e.code));
    h.renewals.on('lost', (l: HeldLease) => lost.push(l.leaseId));
    await until(() => p.grantor!.stats.renewals >= 15, 15_000, 'renewals');
    expect(lost).toEqual([]);
    // Batching: far fewer messages than renewals.
    expect(p.grantor!.stats.renewBatches).toBeLessThan(p.grantor!.stats.renewals / 2);
    // The grantor forgets one (withdrawn): the holder is told with a typed error.
    p.grantor!.withdraw('s0');
    await until(() => failed.length > 0, 5000, 'failure event');
    expect(failed[0]).toBe('LEASE_UNKNOWN');
    expect(h.renewals.size).toBe(4);
  });

  it('broker restart mid-lease: renewals recover and the exclusive lease is never granted twice', async () => {
    const p = await devs.start('p6', { grantor: { maxDurationMs: 3000 } });
    const h = await devs.start('h6', { renewal: { minMarginMs: 1200 } });
    const other = await devs.start('o6');
    await p.offer({ name: 'motor', type: 'motor', exclusive: true });
    const d = await h.discovery.waitFor({ type: 'motor' });
    const l = await h.client.grant(d, 3000);
    h.renewals.manage(l);
    const lost: HeldLease[] = [];
    h.renewals.on('lost', (x: HeldLease) => lost.push(x));
    await broker.restart();
    const before = p.grantor!.stats.renewals;
    await until(() => p.grantor!.stats.renewals > before && h.bus.connected && other.bus.connected, 10_000, 'renewal after restart');
    expect(lost).toEqual([]);
    expect(await codeOf(other.client.grant(d, 1000))).toBe('LEASE_DENIED');
    const held = p.grantor!.table.leasesOf('motor');
    expect(held.map((x) => [x.id, x.holder, x.fence])).toEqual([[l.leaseId, 'h6', l.fence]]);
    // Announcements are re-published after the reconnect (the broker lost its retained messages).
    const fresh = await devs.start('late6');
    expect((await fresh.discovery.waitFor({ type: 'motor' })).id).toBe(d.id);
  });

  it('QoS 1 duplicates and retries with the same request id are answered once', async () => {
    const p = await devs.start('p7', { grantor: true });
    const h = await devs.start('h7');
    await p.offer({ name: 'k', type: 'kv', exclusive: true });
    const d = await h.discovery.waitFor({ type: 'kv' });
    const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    const answers: Buffer[] = [];
    await raw.subscribeAsync('ferry/v1/inbox/dup7', { qos: 1 });
    raw.on('message', (_t, m) => answers.push(m));
    const env = { v: 1, type: 'lease.grant', id: 'AAAAAAAAAAAAAAAAAAAAAA', from: 'dup7', replyTo: 'ferry/v1/inbox/dup7', ts: Date.now(), body: { service: 'k', durationMs: 5000, reqId: 'r-1' } };
    const bytes = encodeEnvelope(env);
    await raw.publishAsync(d.leaseTopic, bytes, { qos: 1 });
    await raw.publishAsync(d.leaseTopic, bytes, { qos: 1, dup: true } as mqtt.IClientPublishOptions);
    // Same reqId, new envelope id (a client retry after a timeout):
    await raw.publishAsync(d.leaseTopic, encodeEnvelope({ ...env, id: 'BBBBBBBBBBBBBBBBBBBBBB' }), { qos: 1 });
    await until(() => answers.length >= 2, 3000, 'answers');
    await new Promise((r) => setTimeout(r, 100));
    await raw.endAsync();
    expect(answers.length).toBe(2);
    expect(p.grantor!.stats.grants).toBe(1);
    expect(p.grantor!.table.leasesOf('k').length).toBe(1);
  });

  it('malformed CBOR, unknown envelope versions, oversized messages and forged requests get typed errors; nothing crashes', async () => {
    const p = await devs.start('p8', { grantor: true });
    const h = await devs.start('h8');
    const forger = await devs.start('f8');
    await p.offer({ name: 'x', type: 'xx', exclusive: true });
    const d = await h.discovery.waitFor({ type: 'xx' });
    const invalid: { code: string }[] = [];
    p.bus.on('invalid', (e) => invalid.push(e as { code: string }));
    const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    await raw.publishAsync(d.leaseTopic, Buffer.from([0xff, 0x00, 0x13, 0x37]), { qos: 1 });
    await raw.publishAsync(d.leaseTopic, cborEncode({ v: 2, type: 'lease.grant', id: 'CCCCCCCCCCCCCCCCCCCCCC', from: 'z', replyTo: 'ferry/v1/inbox/z', ts: Date.now(), body: {} }), { qos: 1 });
    await raw.publishAsync(d.leaseTopic, Buffer.alloc(300_000, 1), { qos: 1 });
    await raw.endAsync();
    await until(() => invalid.length >= 3, 3000, 'invalid events');
    expect(invalid.map((e) => e.code).sort()).toEqual(['ENVELOPE_MALFORMED', 'ENVELOPE_VERSION', 'MESSAGE_TOO_LARGE']);

    const l = await h.client.grant(d, 5000);
    expect(await codeOf(forger.client.renew({ ...l }))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(forger.client.cancel({ ...l }))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(forger.client.handover({ ...l }, 'f8'))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(forger.client.renew({ ...l, leaseId: 'guessedguessedguessedg' }))).toBe('LEASE_UNKNOWN');
    expect(await codeOf(forger.bus.request(d.leaseTopic, 'lease.grant', { service: 'x' }))).toBe('SERVICE_BAD_REQUEST');
    expect(await codeOf(forger.bus.request(d.leaseTopic, 'lease.renew', { reqId: 'q', leases: 'all' }))).toBe('SERVICE_BAD_REQUEST');
    expect(await codeOf(forger.bus.request(d.leaseTopic, 'lease.steal', { reqId: 'q' }))).toBe('SERVICE_BAD_REQUEST');
    expect(await codeOf(forger.bus.request(d.leaseTopic, 'lease.grant', [1, 2, 3]))).toBe('SERVICE_BAD_REQUEST');
    // Still the holder's, still serving.
    await h.client.renew(l, 5000);
    expect(p.grantor!.table.leasesOf('x').map((x) => x.holder)).toEqual(['h8']);
  });

  it('a provider process killed: its will ends it, holders are told, an alternate is found', async () => {
    const backup = await devs.start('zz-backup9', { grantor: true });
    await backup.offer({ name: 'pen', type: 'plotter', attrs: { color: true }, exclusive: true });
    const child: ChildProcess = spawn(nodeCommand(), ['--import', 'tsx', join(here, 'fixtures/provider.ts'), broker.url, 'aa-child9', devs.dir, 'plotter', 'pen'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (b: Buffer) => b.toString().includes('READY') && resolve());
        child.once('exit', (c) => reject(new Error(`provider exited ${c}`)));
      });
      const h = await devs.start('h9');
      await until(() => h.discovery.lookup({ type: 'plotter', attrs: { color: true } }).length === 2, 5000, 'two plotters');
      const l = await h.alternates.acquire({ type: 'plotter', attrs: { color: true } }, 5000);
      expect(l.description!.provider).toBe('aa-child9'); // sorted first
      const moved = new Promise<[HeldLease, HeldLease]>((resolve) => h.alternates.once('alternate', (a: HeldLease, b: HeldLease) => resolve([a, b])));
      const down = new Promise<ServiceDescription>((resolve) => h.discovery.once('down', resolve));
      child.kill('SIGKILL');
      expect((await down).provider).toBe('aa-child9');
      const [old, next] = await moved;
      expect(old.leaseId).toBe(l.leaseId);
      expect(next.description!.provider).toBe('zz-backup9');
      expect(h.discovery.isLive('aa-child9/pen')).toBe(false);
      // When the backup goes too, the holder is told there is none.
      const none = new Promise<unknown>((resolve) => h.alternates.once('unavailable', (_l: HeldLease, e: unknown) => resolve(e)));
      await backup.withdraw('pen');
      expect((await none) as { code: string }).toMatchObject({ code: 'SERVICE_NOT_FOUND' });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('a late will never cancels a newer announcement (epoch rule)', async () => {
    const p = await devs.start('p10', { grantor: true });
    const h = await devs.start('h10');
    await p.offer({ name: 'svc', type: 'late', exclusive: false });
    await h.discovery.waitFor({ type: 'late' });
    const epoch = p.epoch.current;
    const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    const death = (e: number, id: string) => encodeEnvelope({ v: 1, type: 'svc.death', id, from: 'p10', ts: Date.now(), body: { provider: 'p10', epoch: e } });
    await raw.publishAsync('ferry/v1/svc-death/p10', death(epoch - 1, 'DDDDDDDDDDDDDDDDDDDDDD'), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 150));
    expect(h.discovery.isLive('p10/svc')).toBe(true);
    // A newcomer reading the retained messages reaches the same view.
    const late = await devs.start('late10');
    await late.discovery.waitFor({ type: 'late' });
    // The death of the current epoch does remove it.
    await raw.publishAsync('ferry/v1/svc-death/p10', death(epoch, 'EEEEEEEEEEEEEEEEEEEEEE'), { qos: 1, retain: true });
    await until(() => !h.discovery.isLive('p10/svc'), 3000, 'removal');
    await raw.publishAsync('ferry/v1/svc-death/p10', Buffer.alloc(0), { qos: 1, retain: true });
    await raw.endAsync();
  });
});
