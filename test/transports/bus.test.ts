import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FerryError, isFerryError } from '../../core/errors.js';
import { ENVELOPE_VERSION, type Envelope } from '../../transports/contract.js';
import { encodeCbor, encodeEnvelope, newMessageId } from '../../transports/envelope.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import type { BusOptions } from '../../transports/options.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';

let seq = 0;
const uid = (p: string) => `${p}${process.pid}x${++seq}${Math.floor(Math.random() * 1e6)}`;

/** Resolves with the value the predicate accepts, polling; fails after `ms`. */
async function until<T>(f: () => T | undefined | false, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function collector() {
  const got: Envelope[] = [];
  return { got, handler: (env: Envelope) => void got.push(env) };
}

describe.each(BROKERS)('MqttBus on %s', (_name, start) => {
  let broker: TestBroker;
  const buses: MqttBus[] = [];
  const bus = async (o: Partial<BusOptions> = {}) => {
    const b = await MqttBus.connect({ url: broker.url, deviceId: uid('dev'), reconnectMinMs: 20, reconnectMaxMs: 200, ...o });
    buses.push(b);
    return b;
  };

  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker.stop();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  it('publishes and subscribes envelopes with every header field', async () => {
    const a = await bus();
    const b = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await b.subscribe(topic, c.handler);
    await a.publish(topic, 'thing.said', { n: 1, bytes: new Uint8Array([1, 2, 3]) }, { ttlMs: 60_000, corr: 'abc' });
    const env = await until(() => c.got[0]);
    expect(env.v).toBe(ENVELOPE_VERSION);
    expect(env.type).toBe('thing.said');
    expect(env.from).toBe(a.deviceId);
    expect(env.corr).toBe('abc');
    expect(env.ttl).toBe(60_000);
    expect(env.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Math.abs(env.ts - Date.now())).toBeLessThan(5000);
    expect((env.body as { n: number }).n).toBe(1);
    expect([...(env.body as { bytes: Uint8Array }).bytes]).toEqual([1, 2, 3]);
  });

  it('unsubscribe stops delivery', async () => {
    const a = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    const unsub = await a.subscribe(topic, c.handler);
    await a.publish(topic, 'x', 1);
    await until(() => c.got.length === 1);
    await unsub();
    await a.publish(topic, 'x', 2);
    const probe = collector();
    await a.subscribe(`${topic}/probe`, probe.handler);
    await a.publish(`${topic}/probe`, 'x', 3);
    await until(() => probe.got.length === 1);
    expect(c.got.length).toBe(1);
  });

  it('answers requests, and turns error answers into typed errors', async () => {
    const server = await bus();
    const client = await bus();
    const topic = `ferry/test/${uid('svc')}`;
    await server.serve(topic, (env) => {
      const body = env.body as { op: string };
      if (body.op === 'double') return { x: (env.body as { x: number }).x * 2 };
      if (body.op === 'deny') throw new FerryError('LEASE_DENIED', 'exclusive lease held', { field: 'lease.exclusive' });
      if (body.op === 'weird') {
        const e = new FerryError('LEASE_DENIED', 'x');
        (e as { code: string }).code = 'NOT_A_CODE';
        throw e;
      }
      throw new Error('boom');
    });
    const ok = await client.request<{ x: number }>(topic, 'calc.run', { op: 'double', x: 21 });
    expect(ok.type).toBe('calc.run.ok');
    expect(ok.body.x).toBe(42);
    expect(ok.from).toBe(server.deviceId);

    const denied = await client.request(topic, 'calc.run', { op: 'deny' }).catch((e: unknown) => e);
    expect(isFerryError(denied, 'LEASE_DENIED')).toBe(true);
    expect((denied as FerryError).message).toBe('exclusive lease held');
    expect((denied as FerryError).details.field).toBe('lease.exclusive');

    const weird = await client.request(topic, 'calc.run', { op: 'weird' }).catch((e: unknown) => e);
    expect(isFerryError(weird, 'REMOTE_ERROR')).toBe(true);
    expect((weird as FerryError).details.remoteCode).toBe('NOT_A_CODE');

    const plain = await client.request(topic, 'calc.run', { op: 'other' }).catch((e: unknown) => e);
    expect(isFerryError(plain, 'REMOTE_ERROR')).toBe(true);
    expect((plain as FerryError).message).toBe('boom');
  });

  it('serves a request whose handler itself makes a request and publishes (handlers never hold the message callback)', async () => {
    const front = await bus({ maxInFlight: 1 });
    const back = await bus();
    const client = await bus();
    const t = `ferry/test/${uid('svc')}`;
    await back.serve(`${t}/back`, (env) => `back:${String(env.body)}`);
    const seen: unknown[] = [];
    await client.subscribe(`${t}/log`, (env) => seen.push(env.body));
    await front.serve(`${t}/front`, async (env) => {
      await front.publish(`${t}/log`, 'log', env.body);
      const inner = await front.request(`${t}/back`, 'inner', env.body);
      return `front:${String(inner.body)}`;
    });
    const answers = await Promise.all([1, 2, 3].map((i) => client.request(`${t}/front`, 'outer', i)));
    expect(answers.map((a) => a.body)).toEqual(['front:back:1', 'front:back:2', 'front:back:3']);
    await until(() => seen.length === 3);
  });

  it('times out a request nobody answers', async () => {
    const client = await bus();
    const t0 = Date.now();
    const e = await client.request(`ferry/test/${uid('nobody')}`, 'x.y', null, { timeoutMs: 300 }).catch((x: unknown) => x);
    expect(isFerryError(e, 'BUS_TIMEOUT')).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('rejects pending requests and later calls with BUS_CLOSED on close', async () => {
    const client = await bus();
    const pending = client.request(`ferry/test/${uid('nobody')}`, 'x.y', null, { timeoutMs: 10_000 }).catch((x: unknown) => x);
    await new Promise((r) => setTimeout(r, 50));
    await client.close();
    expect(isFerryError(await pending, 'BUS_CLOSED')).toBe(true);
    await expect(client.publish('ferry/test/x', 'a', 1)).rejects.toMatchObject({ code: 'BUS_CLOSED' });
    expect(client.connected).toBe(false);
  });

  it('reconnects after a broker restart and resubscribes (subscriptions, served requests, inbox)', async () => {
    const a = await bus();
    const b = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await b.subscribe(topic, c.handler);
    await b.serve(`${topic}/svc`, () => 'pong');
    expect((await a.request(`${topic}/svc`, 'ping', null)).body).toBe('pong');
    const events: string[] = [];
    for (const ev of ['offline', 'close', 'connect'] as const) b.on(ev, () => events.push(ev));

    await broker.restart();
    await until(() => events.includes('connect'), 10_000);
    await a.whenReady();
    await b.whenReady();
    expect(events).toContain('close');
    // The restarted broker knows no subscription: delivery now proves the bus subscribed again.
    await a.publish(topic, 'after.restart', 7);
    expect((await until(() => c.got[0])).body).toBe(7);
    expect((await a.request(`${topic}/svc`, 'ping', null)).body).toBe('pong');
    expect(b.stats().connects).toBeGreaterThanOrEqual(2);
  });

  it('queues publishes while the broker is down and sends them after it is back (after resubscribing)', async () => {
    // Its own subscription: the bus resubscribes before it releases queued publishes, so this is
    // deterministic (another client's resubscription would race with the send).
    const a = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await a.subscribe(topic, c.handler);
    await broker.stop();
    await until(() => !a.connected);
    const sent = a.publish(topic, 'queued', 'while-down');
    await new Promise((r) => setTimeout(r, 100));
    await broker.restart();
    await sent;
    expect((await until(() => c.got[0], 10_000)).body).toBe('while-down');
  });

  it('refuses publishes while offline with BUS_OFFLINE when offlineQueue is false', async () => {
    const a = await bus({ offlineQueue: false });
    await broker.stop();
    await until(() => !a.connected);
    await expect(a.publish('ferry/test/x', 'a', 1)).rejects.toMatchObject({ code: 'BUS_OFFLINE' });
    await broker.restart();
    await a.whenReady();
    await a.publish('ferry/test/x', 'a', 1);
  });

  it('backs off exponentially while the broker is down', async () => {
    const a = await bus({ reconnectMinMs: 20, reconnectMaxMs: 2000 });
    let attempts = 0;
    a.on('reconnect', () => attempts++);
    await broker.stop();
    await new Promise((r) => setTimeout(r, 1500));
    // A fixed 20 ms period would try ~75 times; doubling from 20 ms tries about 6 times.
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(attempts).toBeLessThanOrEqual(12);
    await broker.restart();
    await a.whenReady();
    expect(a.connected).toBe(true);
  });

  it('subscribes while offline: the subscription resolves once the broker is back and delivers', async () => {
    const a = await bus();
    await broker.stop();
    await until(() => !a.connected);
    const c = collector();
    const topic = `ferry/test/${uid('t')}`;
    let subscribed = false;
    const sub = a.subscribe(topic, c.handler).then(() => (subscribed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(subscribed).toBe(false);
    await broker.restart();
    await sub;
    await a.publish(topic, 'x', 1);
    expect((await until(() => c.got[0])).body).toBe(1);
  });

  it('a subscription waiting for the broker fails with BUS_CLOSED when the bus closes', async () => {
    const a = await bus();
    await broker.stop();
    await until(() => !a.connected);
    const sub = a.subscribe(`ferry/test/${uid('t')}`, () => undefined).catch((e: unknown) => e);
    await a.close();
    expect(isFerryError(await sub, 'BUS_CLOSED')).toBe(true);
    await broker.restart();
  });

  it('connect() fails with BUS_OFFLINE when no broker answers', async () => {
    const { freePort } = await import('../helpers/brokers.js');
    const port = await freePort();
    const e = await MqttBus.connect({ url: `mqtt://127.0.0.1:${port}`, deviceId: uid('d'), connectTimeoutMs: 300 }).catch((x: unknown) => x);
    expect(isFerryError(e, 'BUS_OFFLINE')).toBe(true);
  });

  it('drops a QoS 1 duplicate (same envelope id) and delivers it once', async () => {
    const a = await bus();
    const b = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await b.subscribe(topic, c.handler);
    const bytes = encodeEnvelope({ v: 1, type: 'dup.test', id: newMessageId(), from: a.deviceId, ts: Date.now(), body: 'once' });
    await a.publishRaw(topic, bytes);
    await a.publishRaw(topic, bytes);
    await a.publish(topic, 'marker', null);
    await until(() => c.got.some((e) => e.type === 'marker'));
    expect(c.got.filter((e) => e.type === 'dup.test').length).toBe(1);
    expect(b.stats().duplicates).toBe(1);
  });

  it('drops expired envelopes', async () => {
    const a = await bus();
    const b = await bus({ maxClockSkewMs: 0 });
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await b.subscribe(topic, c.handler);
    const old = encodeEnvelope({ v: 1, type: 'stale', id: newMessageId(), from: a.deviceId, ts: Date.now() - 10_000, ttl: 1000, body: null });
    await a.publishRaw(topic, old);
    await a.publish(topic, 'fresh', null, { ttlMs: 60_000 });
    await until(() => c.got.some((e) => e.type === 'fresh'));
    expect(c.got.map((e) => e.type)).toEqual(['fresh']);
    expect(b.stats().expired).toBe(1);
  });

  it('reports malformed, wrong-version, incomplete and oversized messages as invalid and keeps working', async () => {
    const a = await bus({ maxMessageBytes: 65_536 });
    const b = await bus({ maxMessageBytes: 4096 });
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    const invalid: FerryError[] = [];
    b.on('invalid', (e) => invalid.push(e as FerryError));
    await b.subscribe(topic, c.handler);
    const base = { v: 1, type: 't', id: newMessageId(), from: 'x', ts: BigInt(Date.now()), body: null };
    await a.publishRaw(topic, Buffer.from([0xff, 0x00, 0x13])); // not CBOR
    await a.publishRaw(topic, Buffer.from([0xa2, 0x61])); // truncated
    await a.publishRaw(topic, encodeCbor([1, 2, 3])); // not a map
    await a.publishRaw(topic, encodeCbor({ ...base, v: 2, id: newMessageId() }));
    const { type: _t, ...noType } = base;
    await a.publishRaw(topic, encodeCbor({ ...noType, id: newMessageId() }));
    await a.publishRaw(topic, encodeCbor({ ...base, id: newMessageId(), ts: 'yesterday' }));
    const { body: _b, ...noBody } = base;
    await a.publishRaw(topic, encodeCbor({ ...noBody, id: newMessageId() }));
    await a.publish(topic, 'big', new Uint8Array(10_000));
    await a.publish(topic, 'still.ok', 1);
    await until(() => c.got.some((e) => e.type === 'still.ok'));
    await until(() => invalid.length >= 8);
    expect(invalid.map((e) => [e.code, e.details.field])).toEqual([
      ['ENVELOPE_MALFORMED', 'envelope'],
      ['ENVELOPE_MALFORMED', 'envelope'],
      ['ENVELOPE_MALFORMED', 'envelope'],
      ['ENVELOPE_VERSION', 'envelope.v'],
      ['ENVELOPE_MALFORMED', 'envelope.type'],
      ['ENVELOPE_MALFORMED', 'envelope.ts'],
      ['ENVELOPE_MALFORMED', 'envelope.body'],
      ['MESSAGE_TOO_LARGE', 'payload'],
    ]);
    expect(invalid.every((e) => e.details.topic === topic)).toBe(true);
    expect(c.got.map((e) => e.type)).toEqual(['still.ok']);
    expect(b.connected).toBe(true);
    expect((await b.request(`ferry/test/${uid('none')}`, 'x', null, { timeoutMs: 50 }).catch((e: FerryError) => e.code))).toBe('BUS_TIMEOUT');
  });

  it('validates publish, request and subscribe arguments, naming the field', async () => {
    const a = await bus();
    await expect(a.publish('ferry/+/x', 't', 1)).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'topic' } });
    await expect(a.publish('ferry/x', '', 1)).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'type' } });
    await expect(a.publish('ferry/x', 't', 1, { qos: 2 as 1 })).rejects.toMatchObject({ details: { field: 'options.qos' } });
    await expect(a.publish('ferry/x', 't', 1, { ttlMs: -5 })).rejects.toMatchObject({ details: { field: 'options.ttlMs' } });
    await expect(a.publish('ferry/x', 't', 1, { replyTo: 'a/#' })).rejects.toMatchObject({ details: { field: 'options.replyTo' } });
    await expect(a.publish('ferry/x', 't', 1, { ttl: 5 } as never)).rejects.toMatchObject({ details: { field: 'options.ttl' } });
    await expect(a.request('ferry/x', 't', 1, { timeoutMs: 0 })).rejects.toMatchObject({ details: { field: 'options.timeoutMs' } });
    await expect(a.request('ferry/x', 't', 1, { ttlMs: 1.5 })).rejects.toMatchObject({ details: { field: 'options.ttlMs' } });
    await expect(a.subscribe('ferry/#/x', () => undefined)).rejects.toMatchObject({ details: { field: 'filter' } });
  });

  it('refuses to send a message above maxMessageBytes', async () => {
    const a = await bus({ maxMessageBytes: 2048 });
    const e = await a.publish('ferry/test/x', 'big', new Uint8Array(4096)).catch((x: unknown) => x);
    expect(isFerryError(e, 'MESSAGE_TOO_LARGE')).toBe(true);
    expect((e as FerryError).details).toMatchObject({ field: 'payload', limit: 2048 });
    await expect(a.publishRaw('ferry/test/x', new Uint8Array(2049))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
  });

  it('keeps in-flight publishes within maxInFlight and delivers them all in order', async () => {
    const a = await bus({ maxInFlight: 4 });
    const b = await bus();
    const topic = `ferry/test/${uid('t')}`;
    const c = collector();
    await b.subscribe(topic, c.handler);
    let maxSeen = 0;
    const sends = Array.from({ length: 200 }, (_, i) => {
      const p = a.publish(topic, 'n', i);
      maxSeen = Math.max(maxSeen, a.stats().inFlight);
      return p;
    });
    expect(a.stats().queued).toBeGreaterThan(0);
    await Promise.all(sends);
    await until(() => c.got.length === 200);
    expect(maxSeen).toBeLessThanOrEqual(4);
    expect(a.stats().maxInFlightSeen).toBe(4);
    expect(c.got.map((e) => e.body)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('refuses publishes beyond the queue with BUS_QUEUE_FULL', async () => {
    const a = await bus({ maxInFlight: 2, maxQueued: 10 });
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => a.publish('ferry/test/q', 'n', i)));
    const refused = results.filter((r) => r.status === 'rejected');
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(12);
    expect(refused.length).toBe(18);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'BUS_QUEUE_FULL' });
  });
});
