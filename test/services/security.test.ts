/**
 * Broker security against a real Mosquitto: username/password on every
 * connection, and the ACL layout documented in transports/PROTOCOL.md
 * ("Security"), read from the document itself so the tested layout is the
 * documented one.
 */
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope } from '../../transports/envelope.js';
import { startMosquitto, type TestBroker } from '../helpers/brokers.js';
import { codeOf, Devices, until } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const USERS: Record<string, string> = { sp1: 'provider-secret', sh1: 'holder-secret', sw1: 'watcher-secret' };

/** The ACL block of PROTOCOL.md, between its markers. */
function documentedAcl(): string {
  const doc = readFileSync(join(here, '../../transports/PROTOCOL.md'), 'utf8');
  const m = /<!-- acl:begin -->\s*```[a-z]*\n([\s\S]*?)```\s*<!-- acl:end -->/.exec(doc);
  if (!m) throw new Error('PROTOCOL.md has no ACL block between <!-- acl:begin --> and <!-- acl:end -->');
  return m[1]!;
}

describe('Mosquitto with passwords and the documented ACL', () => {
  let broker: TestBroker;
  let devs: Devices;
  beforeAll(async () => {
    broker = await startMosquitto({
      config: (dir) => {
        // Mosquitto started as root drops to its own `mosquitto` user before reading these files,
        // so they (and the temp dir) must be readable by it; the broker only warns about that.
        chmodSync(dir, 0o755);
        const pw = join(dir, 'passwd');
        writeFileSync(pw, '');
        for (const [u, p] of Object.entries(USERS)) {
          const r = spawnSync('mosquitto_passwd', ['-b', pw, u, p], { encoding: 'utf8' });
          if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
        }
        const acl = join(dir, 'acl');
        writeFileSync(acl, documentedAcl());
        chmodSync(pw, 0o644);
        chmodSync(acl, 0o644);
        return ['allow_anonymous false', `password_file ${pw}`, `acl_file ${acl}`];
      },
    });
    devs = new Devices(() => broker.url);
  });
  afterEach(async () => {
    await devs.closeAll();
  });
  afterAll(async () => {
    await broker.stop();
    devs.cleanup();
  });

  const as = (id: string) => ({ username: id, password: USERS[id]! });

  it('devices with their credentials discover, lease, renew and cancel under the ACL', async () => {
    const p = await devs.start('sp1', { grantor: true, ...as('sp1') });
    const h = await devs.start('sh1', as('sh1'));
    await p.offer({ name: 'lamp', type: 'lamp', exclusive: true });
    const d = await h.discovery.waitFor({ type: 'lamp' });
    const l = await h.client.grant(d, 2000);
    expect(l.fence).toBeGreaterThan(0);
    await h.client.renew(l, 2000);
    expect(await h.client.cancel(l)).toBe('cancelled');
  });

  it('refuses a wrong password and anonymous clients at once: BUS_AUTH (a CONNACK refusal), not a retry until BUS_OFFLINE', async () => {
    // A connect timeout far longer than the test: the refusal must come from the CONNACK, not the clock.
    const slow = { connectTimeoutMs: 60_000, reconnectMinMs: 50, reconnectMaxMs: 100 };
    expect(await codeOf(devs.start('sh1', { username: 'sh1', password: 'wrong', bus: slow }))).toBe('BUS_AUTH');
    expect(await codeOf(devs.start('sh1', { bus: slow }))).toBe('BUS_AUTH');
  });

  it('a device can neither read another device\'s inbox nor announce in its name', async () => {
    const p = await devs.start('sp1', { grantor: true, ...as('sp1') });
    const h = await devs.start('sh1', as('sh1'));
    const w = await devs.start('sw1', as('sw1'));
    // Reading the provider's inbox (where its answers, and so lease ids, arrive) yields nothing: Mosquitto
    // 2.0 acknowledges the subscription but checks read access on every delivery.
    const stolen: unknown[] = [];
    const seen: unknown[] = [];
    await p.bus.subscribe('ferry/v1/inbox/sp1', (env) => seen.push(env.body));
    const sub = h.bus.subscribe('ferry/v1/inbox/sp1', (env) => stolen.push(env.body));
    // (A broker that refuses the subscription outright answers SUBACK 0x80: a typed BAD_OPTION.)
    expect(['ok', 'BAD_OPTION']).toContain(await codeOf(sub));
    await w.bus.publish('ferry/v1/inbox/sp1', 'note', { secret: 1 });
    await until(() => seen.length === 1, 2000, 'the provider reads its own inbox');
    await new Promise((r) => setTimeout(r, 100));
    expect(stolen).toEqual([]);
    // A forged announcement on the provider's topic is dropped by the broker; the real one arrives.
    // (`from` is forged too: discovery alone would reject a description not sent by its provider.)
    const forged = encodeEnvelope({
      v: 1, type: 'svc.announce', id: 'Rk9SR0VELUFOTk9VTkNFMQ', from: 'sp1', ts: Date.now(),
      body: { schema: 1, id: 'sp1/fake', name: 'fake', type: 'fake', attrs: {}, provider: 'sp1', exclusive: false, epoch: 2 ** 40, leaseTopic: 'ferry/v1/lease/sh1' },
    });
    await h.bus.publishRaw('ferry/v1/svc/sp1/fake', forged, { retain: true });
    await p.offer({ name: 'real', type: 'real', exclusive: false });
    await w.discovery.waitFor({ type: 'real' });
    await new Promise((r) => setTimeout(r, 100));
    expect(w.discovery.lookup({ type: 'fake' })).toEqual([]);
    // The holder's lease traffic still works after the refusals.
    const l = await h.client.grant(await h.discovery.waitFor({ type: 'real' }), 1000);
    await until(() => p.grantor!.table.leasesOf('real').length === 1, 2000, 'lease at the grantor');
    expect(p.grantor!.table.leasesOf('real')[0]!.id).toBe(l.leaseId);
  });
  it("bridge topics: anyone may send pairing messages and frames to a device, only it reads them", async () => {
    const p = await devs.start('sp1', as('sp1'));
    const h = await devs.start('sh1', as('sh1'));
    const w = await devs.start('sw1', as('sw1'));
    const mine: string[] = [];
    const stolen: string[] = [];
    await (p.bus as MqttBus).subscribeRaw('ferry/v1/bridge/sp1/+', (topic: string) => mine.push(topic));
    expect(['ok', 'BAD_OPTION']).toContain(await codeOf((h.bus as MqttBus).subscribeRaw('ferry/v1/bridge/sp1/+', (topic: string) => stolen.push(topic))));
    await w.bus.publishRaw('ferry/v1/bridge/sp1/ch', Buffer.from([1, 3]));
    await w.bus.publishRaw('ferry/v1/bridge/sp1/pair', Buffer.from([1, 1]));
    await until(() => mine.length === 2, 2000, 'the device reads its own bridge topics');
    await new Promise((r) => setTimeout(r, 100));
    expect(stolen).toEqual([]);
  });
});
