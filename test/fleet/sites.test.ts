/**
 * The pieces of a handoff across brokers (agent/bridge/DESIGN.md, "Handoff across brokers"):
 * how two devices' sites decide between handing the session over, forwarding and refusing; the
 * checks of the destination's answer; and the drain of a session (transports/session-drain.ts)
 * against a real Mosquitto when it cannot finish: a failed take, or another client taking the
 * session over, leaves every message not taken queued there.
 */
import { connect, connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAnswerSite, siteRelation } from '../../agent/bridge/mailbox-forward.js';
import { drainSession, type DrainOptions } from '../../transports/session-drain.js';
import { startMosquitto, type MosquittoBroker } from '../helpers/brokers.js';
import { caught, caughtAsync } from '../helpers/ferry-error.js';

describe('sites', () => {
  it('same site or none on both: one broker; two names: forward; one name: unknown (refused)', () => {
    expect(siteRelation(undefined, undefined)).toBe('same');
    expect(siteRelation('north', 'north')).toBe('same');
    expect(siteRelation('north', 'south')).toBe('forward');
    expect(siteRelation('north', undefined)).toBe('unknown');
    expect(siteRelation(undefined, 'south')).toBe('unknown');
  });

  it("the destination's site in its answer: absent, or a site name; anything else is MIGRATE_PROTOCOL", () => {
    expect(readAnswerSite({ path: 'lines' })).toBeUndefined();
    expect(readAnswerSite({ site: null })).toBeUndefined();
    expect(readAnswerSite({ site: 'south-2' })).toBe('south-2');
    for (const bad of ['South', '', 'a/b', 'x'.repeat(33), 7, true, {}]) {
      const e = caught(() => readAnswerSite({ site: bad }));
      expect(e.code, String(bad)).toBe('MIGRATE_PROTOCOL');
      expect(e.details.field).toBe('site');
    }
  });
});

describe('draining a session that cannot finish (Mosquitto)', () => {
  let broker: MosquittoBroker;
  const open: MqttClient[] = [];
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.endAsync(true)));
    await broker.stop();
  });

  /** A session `id` subscribed to `topic`, disconnected, with `n` requests queued. */
  async function queued(id: string, topic: string, n: number): Promise<void> {
    const s = await connectAsync(broker.url, { protocolVersion: 4, clientId: id, clean: false });
    await s.subscribeAsync(topic, { qos: 1 });
    await s.endAsync();
    const p = await connectAsync(broker.url, { protocolVersion: 4 });
    for (let i = 0; i < n; i++) await p.publishAsync(topic, `m${i}`, { qos: 1 });
    await p.endAsync();
  }
  const opts = (id: string, topic: string, extra: Partial<DrainOptions> = {}): DrainOptions => ({ url: broker.url, clientId: id, filter: topic, sentinelTopic: `${topic}/drain/${Math.random().toString(36).slice(2)}`, ...extra });

  it('refuses bad options naming the field', async () => {
    expect((await caughtAsync(() => drainSession({ ...opts('x', 't/a'), sentinelTopic: 't/+' }, async () => undefined))).details.field).toBe('options.sentinelTopic');
    expect((await caughtAsync(() => drainSession({ ...opts('x', 't/a'), timeoutMs: 5 }, async () => undefined))).details.field).toBe('options.timeoutMs');
    expect((await caughtAsync(() => drainSession({ ...opts('x', 't/a'), url: 'http://x' }, async () => undefined))).details.field).toBe('options.url');
  });

  it('a take that fails ends the drain with its error; that message and the rest stay queued, and a second drain takes them', async () => {
    const id = `drain-fail-${process.pid}`;
    const topic = `ferry/v1/app/fail-${process.pid}/req`;
    await queued(id, topic, 5);
    const first: string[] = [];
    await expect(
      drainSession(opts(id, topic), async (_t, p) => {
        if (p.toString() === 'm2') throw new Error('disk full');
        first.push(p.toString());
      }),
    ).rejects.toThrow('disk full');
    expect(first).toEqual(['m0', 'm1']);
    const second: string[] = [];
    const r = await drainSession(opts(id, topic), async (_t, p) => void second.push(p.toString()));
    expect(r).toEqual({ taken: 3, sessionPresent: true });
    expect(second).toEqual(['m2', 'm3', 'm4']);
  });

  it('another client taking the session over ends the drain (BUS_OFFLINE) without ending the session: what was not taken stays', async () => {
    const id = `drain-taken-${process.pid}`;
    const topic = `ferry/v1/app/taken-${process.pid}/req`;
    await queued(id, topic, 4);
    let thief: MqttClient | undefined;
    const got: string[] = [];
    const redelivered: string[] = [];
    const e = await caughtAsync(() =>
      drainSession(opts(id, topic, { timeoutMs: 10_000 }), async (_t, p) => {
        got.push(p.toString());
        // While the first is being taken, someone connects under the same client id.
        if (!thief) {
          thief = connect(broker.url, { protocolVersion: 4, clientId: id, clean: false, reconnectPeriod: 0 });
          open.push(thief);
          thief.on('message', (_t2, p2) => redelivered.push(p2.toString()));
          await new Promise((r) => thief!.once('connect', r));
        }
      }),
    );
    expect(e.code).toBe('BUS_OFFLINE');
    // m0, and perhaps m1 if it was read before the cut was noticed: neither acknowledged.
    expect(got[0]).toBe('m0');
    // The session was not ended: the thief holds it now, and everything the drain did not acknowledge is delivered to it.
    const deadline = Date.now() + 10_000;
    while (redelivered.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(redelivered).toEqual(['m0', 'm1', 'm2', 'm3']);
  });
});
