import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectBus, DurableSession, type MqttBus, type SessionMessage } from '../../transports/index.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { until } from '../services/helpers.js';
import { caughtAsync } from '../helpers/ferry-error.js';

let n = 0;
const id = () => `ds-${process.pid}-${++n}`;

describe.each(BROKERS)('durable session (%s)', (name, start) => {
  let broker: TestBroker;
  let pub: MqttBus;
  beforeAll(async () => {
    broker = await start();
    pub = await connectBus({ url: broker.url, deviceId: 'ds-pub' });
  });
  afterAll(async () => {
    await pub.close();
    await broker.stop();
  });

  const publishAll = async (topic: string, count: number) => {
    for (let i = 0; i < count; i++) await pub.publishRaw(topic, Buffer.from(`m${i}`));
  };

  it('queues at the broker while no connection is up, and delivers in order on resumption', async () => {
    const clientId = id();
    const filter = `t/${clientId}`;
    const first = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => m.ack());
    await first.close();
    await publishAll(filter, 5);
    const got: string[] = [];
    const s = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => {
      got.push(m.payload.toString());
      m.ack();
    });
    await until(() => got.length === 5, 5000, 'queued messages');
    expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    await s.close();
  });

  it('a message not acknowledged is redelivered on the next connection; an acknowledged one is not', async () => {
    const clientId = id();
    const filter = `t/${clientId}`;
    const held: SessionMessage[] = [];
    const a = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => held.push(m));
    await publishAll(filter, 4);
    await until(() => held.length === 4, 5000, 'first delivery');
    held[0]!.ack();
    held[1]!.ack();
    // Give the PUBACKs time to reach the broker before the connection ends.
    await new Promise((r) => setTimeout(r, 200));
    await a.close();
    held[2]!.ack(); // too late: its connection is gone
    expect(a.stats.staleAcks).toBe(1);
    const again: SessionMessage[] = [];
    const b = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => {
      again.push(m);
      m.ack();
    });
    await until(() => again.length >= 2, 5000, 'redelivery');
    await new Promise((r) => setTimeout(r, 200));
    expect(again.map((m) => m.payload.toString())).toEqual(['m2', 'm3']);
    // MQTT 3.1.1 §3.3.1.1: a redelivery carries DUP. Mosquitto sets it; aedes does not (nothing in Ferry relies on it).
    expect(again.every((m) => m.redelivered)).toBe(name === 'mosquitto');
    await b.close();
    // All acknowledged now: nothing comes back.
    const none: string[] = [];
    const c = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => none.push(m.payload.toString()));
    await new Promise((r) => setTimeout(r, 300));
    expect(none).toEqual([]);
    await c.close();
  });

  it('connectedMs counts only the time a connection is up: it stands still while the broker is away and after close', async () => {
    const clientId = id();
    const s = await DurableSession.connect({ url: broker.url, clientId, filter: `t/${clientId}`, reconnectMs: 300 }, (m) => m.ack());
    await new Promise((r) => setTimeout(r, 100));
    const up = s.connectedMs();
    expect(up).toBeGreaterThanOrEqual(90);
    const wall0 = performance.now();
    const c0 = s.connectedMs();
    await broker.restart();
    await until(() => s.connected, 10_000, 'reconnected');
    await s.whenReady();
    // At least the reconnect delay (300 ms) went by with no connection, and did not count.
    expect(s.connectedMs() - c0).toBeLessThan(performance.now() - wall0 - 250);
    await s.close();
    const closed = s.connectedMs();
    await new Promise((r) => setTimeout(r, 50));
    expect(s.connectedMs()).toBe(closed);
    await DurableSession.discard({ url: broker.url, clientId, filter: `t/${clientId}` });
  });

  it('discard ends the session: what was queued is gone', async () => {
    const clientId = id();
    const filter = `t/${clientId}`;
    await (await DurableSession.connect({ url: broker.url, clientId, filter }, () => undefined)).close();
    await publishAll(filter, 2);
    await DurableSession.discard({ url: broker.url, clientId, filter });
    const got: string[] = [];
    const s = await DurableSession.connect({ url: broker.url, clientId, filter }, (m) => got.push(m.payload.toString()));
    await publishAll(filter, 1);
    await until(() => got.length >= 1, 5000, 'the new message');
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual(['m0']);
    await s.close();
  });
});

describe('durable session options', () => {
  it.each([
    [{ url: 'http://x:1', clientId: 'a', filter: 'a' }, 'options.url'],
    [{ url: 'mqtt://127.0.0.1:1', clientId: '', filter: 'a' }, 'options.clientId'],
    [{ url: 'mqtt://127.0.0.1:1', clientId: 'a', filter: 'a/#/b' }, 'options.filter'],
    [{ url: 'mqtt://127.0.0.1:1', clientId: 'a', filter: 'a', keepaliveSeconds: -1 }, 'options.keepaliveSeconds'],
    [{ url: 'mqtt://127.0.0.1:1', clientId: 'a', filter: 'a', clean: true }, 'options.clean'],
  ])('refuses %j naming %s', async (o, field) => {
    const e = await caughtAsync(() => DurableSession.connect(o as never, () => undefined));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe(field);
  });

  it('an unreachable broker is BUS_OFFLINE after connectTimeoutMs', async () => {
    const e = await caughtAsync(() => DurableSession.connect({ url: 'mqtt://127.0.0.1:1', clientId: 'x', filter: 'x', connectTimeoutMs: 300 }, () => undefined));
    expect(e.code).toBe('BUS_OFFLINE');
  });
});
