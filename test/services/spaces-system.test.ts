import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { callService, LeaseGrantor, ManualClock, SpaceClient, SpaceHost } from '../../agent/services/index.js';
import { openStore } from '../../store/index.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { codeOf, Devices } from './helpers.js';

describe.each(BROKERS)('spaces and system services over %s', (_name, start) => {
  let broker: TestBroker;
  let devs: Devices;
  const hosts: SpaceHost[] = [];
  beforeAll(async () => {
    broker = await start();
    devs = new Devices(() => broker.url);
  });
  afterEach(async () => {
    for (const h of hosts.splice(0)) await h.close();
    await devs.closeAll();
  });
  afterAll(async () => {
    await broker.stop();
    devs.cleanup();
  });

  it('transient space: write, read, take by template; entries vanish when their lease expires', async () => {
    const clock = new ManualClock(Date.now());
    const host = await devs.start('sh1', { grantor: true, clock });
    const space = await SpaceHost.start(host.bus, host.grantor!, { name: 'meet' }, clock);
    hosts.push(space);
    const a = await devs.start('sa1');
    const b = await devs.start('sb1');
    const ca = new SpaceClient(a.client, space.topic);
    const cb = new SpaceClient(b.client, space.topic);
    const w1 = await ca.write({ kind: 'offer', app: 'notes', port: 7 }, 1000);
    await ca.write({ kind: 'offer', app: 'chess', port: 8 }, 5000);
    await ca.write({ kind: 'ask', app: 'notes' }, 5000);
    expect((await cb.read({ kind: 'offer', app: null })).entry).toEqual({ kind: 'offer', app: 'notes', port: 7 });
    expect((await cb.read({ kind: 'offer', app: 'chess' })).entry.port).toBe(8);
    expect(await codeOf(cb.read({ kind: 'offer', app: 'go' }))).toBe('SPACE_NO_MATCH');
    const t = await cb.take({ kind: 'offer', app: 'chess' });
    expect(t.entry.port).toBe(8);
    expect(await codeOf(cb.take({ kind: 'offer', app: 'chess' }))).toBe('SPACE_NO_MATCH');
    // The writer holds the entry's lease: renew it like any lease; a stranger cannot.
    await a.client.renew(w1.lease, 1000);
    expect(await codeOf(b.client.cancel(w1.lease))).toBe('LEASE_NOT_HOLDER');
    clock.advance(1000);
    expect(await codeOf(cb.read({ kind: 'offer', app: 'notes' }))).toBe('SPACE_NO_MATCH');
    expect(space.size).toBe(1);
    // Cancelling the lease removes the entry too.
    const w3 = await ca.write({ kind: 'tmp' }, 5000);
    await a.client.cancel(w3.lease);
    expect(await codeOf(cb.read({ kind: 'tmp' }))).toBe('SPACE_NO_MATCH');
    expect(await codeOf(cb.write({ big: 'x'.repeat(70_000) }))).toBe('MESSAGE_TOO_LARGE');
  });

  it('persistent space: entries and their leases survive the host restarting on the same device store', async () => {
    const clock = new ManualClock(Date.now());
    const storeDir = join(devs.dir, 'device-store');
    let store = openStore({ dir: storeDir });
    const stateFile = join(devs.dir, 'space-grantor.sqlite');
    const host = await devs.start('sh2', { clock });
    let grantor = await LeaseGrantor.start(host.bus, { stateFile }, clock);
    let space = await SpaceHost.start(host.bus, grantor, { name: 'store', kind: 'persistent', store }, clock);
    const a = await devs.start('sa2');
    const c = new SpaceClient(a.client, space.topic);
    const w = await c.write({ k: 'x', v: new Uint8Array([1, 2, 3]) }, 2000);
    await c.write({ k: 'y', v: 2 }, 500);
    await space.close();
    await grantor.close();
    store.close();
    clock.advance(600); // y's lease ran out while the host was down
    store = openStore({ dir: storeDir });
    grantor = await LeaseGrantor.start(host.bus, { stateFile }, clock);
    space = await SpaceHost.start(host.bus, grantor, { name: 'store', kind: 'persistent', store }, clock);
    hosts.push(space);
    expect(Array.from((await c.read({ k: 'x' })).entry.v as Uint8Array)).toEqual([1, 2, 3]);
    expect(await codeOf(c.read({ k: 'y' }))).toBe('SPACE_NO_MATCH');
    await a.client.renew(w.lease, 2000); // the lease came back with the entry
    clock.advance(1999);
    expect((await c.take({ k: 'x' })).entry.k).toBe('x');
    expect(space.size).toBe(0);
    await grantor.close();
    store.close();
  });

  it('system services: the profile\'s display, sensor and gpio leased like remote services', async () => {
    const pi = await devs.start('pi3', { grantor: true, system: { profile: 'rpi-4b' } });
    const app = await devs.start('app3');
    const other = await devs.start('other3');
    expect([...pi.system!.drivers.keys()].sort()).toEqual([...pi.system!.profile.services].sort());
    const disp = await app.discovery.waitFor({ type: 'display', attrs: { device: 'pi3' } });
    expect(disp.exclusive).toBe(true);
    const l = await app.client.grant(disp, 5000);
    expect(await codeOf(other.client.grant(disp, 5000))).toBe('LEASE_DENIED');
    await callService(app.bus, l, disp.callTopic!, 'draw', { text: 'hello' });
    await callService(app.bus, l, disp.callTopic!, 'draw', { text: 'world' });
    expect(await codeOf(callService(other.bus, { ...l }, disp.callTopic!, 'draw', { text: 'evil' }))).toBe('LEASE_NOT_HOLDER');
    expect(await codeOf(callService(app.bus, l, disp.callTopic!, 'explode'))).toBe('SERVICE_BAD_REQUEST');
    const frames = (await callService<{ frames: { text: string }[] }>(app.bus, l, disp.callTopic!, 'frames')).frames;
    expect(frames.map((f) => f.text)).toEqual(['hello', 'world']);

    const sensor = await app.discovery.waitFor({ type: 'sensor', attrs: { device: 'pi3' } });
    expect(sensor.exclusive).toBe(false);
    const s1 = await app.client.grant(sensor, 5000);
    const s2 = await other.client.grant(sensor, 5000);
    const r1 = await callService<{ seq: number; celsius: number }>(app.bus, s1, sensor.callTopic!, 'read');
    const r2 = await callService<{ seq: number; celsius: number }>(other.bus, s2, sensor.callTopic!, 'read');
    expect([r1.seq, r2.seq]).toEqual([0, 1]);
    expect(r1.celsius).toBeGreaterThanOrEqual(15);
    expect(r1.celsius).toBeLessThanOrEqual(25);
    await app.client.cancel(l);
    expect(await codeOf(callService(app.bus, l, disp.callTopic!, 'draw', { text: 'late' }))).toBe('LEASE_UNKNOWN');
    // Deterministic: another device with the same seed reads the same values.
    const { emulatedDriver } = await import('../../agent/services/system-services.js');
    const d = emulatedDriver('sensor', 'pi3', 1, 10);
    expect((d.call('read', {}, 'x') as { celsius: number }).celsius).toBe(r1.celsius);
  });
});
