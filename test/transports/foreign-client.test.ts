/**
 * A client written from transports/PROTOCOL.md alone: plain mqtt.js at
 * protocol level 4 and a hand-written CBOR encoder/decoder, no Ferry code.
 * It makes a request to a Ferry server and performs a bulk transfer to a Ferry
 * receiver, so the document is known to be enough.
 */
import { createHash, randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { BulkReceiver, type ReceivedTransfer } from '../../transports/bulk-transfer.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';
import { foreignDecode, foreignEncode } from './foreign-cbor.js';

let seq = 0;
const uid = (p: string) => `${p}${process.pid}x${++seq}${Math.floor(Math.random() * 1e6)}`;

type Env = Record<string, unknown> & { type: string; corr?: string; body: Record<string, unknown> };

/** The foreign client: a raw MQTT connection, an inbox, and a map of waiters by corr. */
async function foreign(url: string) {
  const id = uid('foreign');
  const inbox = `ferry/v1/inbox/${id}`;
  const client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, clientId: `${id}-00000000` });
  const waiters = new Map<string, (e: Env) => void>();
  const other: Array<[string, Env]> = [];
  client.on('message', (topic, payload) => {
    const env = foreignDecode(payload) as Env;
    const w = env.corr === undefined ? undefined : waiters.get(env.corr);
    if (w) w(env);
    else other.push([topic, env]);
  });
  await client.subscribeAsync(inbox, { qos: 1 });
  let n = 0;
  const envelope = (type: string, body: unknown, extra: Record<string, unknown> = {}) => {
    const msgId = `${id}-${++n}`;
    return { msgId, bytes: foreignEncode({ v: 1, type, id: msgId, from: id, ...extra, ts: Date.now(), body }) };
  };
  const request = async (topic: string, type: string, body: unknown): Promise<Env> => {
    const { msgId, bytes } = envelope(type, body, { replyTo: inbox });
    const answer = new Promise<Env>((resolve) => waiters.set(msgId, resolve));
    await client.publishAsync(topic, Buffer.from(bytes), { qos: 1 });
    return answer;
  };
  return { id, client, request, other, close: () => client.endAsync(true) };
}

describe.each(BROKERS)('a foreign client on %s', (_name, start) => {
  let broker: TestBroker;
  const cleanup: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker.stop();
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('makes requests and reads ok and error answers', async () => {
    const server = await MqttBus.connect({ url: broker.url, deviceId: uid('srv') });
    cleanup.push(() => server.close());
    const f = await foreign(broker.url);
    cleanup.push(f.close);
    const topic = `ferry/test/${uid('svc')}`;
    await server.serve(topic, (env) => {
      const b = env.body as { x: number };
      if (b.x < 0) throw new FerryError('LEASE_DENIED', 'negative', { field: 'body.x' });
      return { y: b.x + 1 };
    });
    const ok = await f.request(topic, 'inc', { x: 41 });
    expect(ok).toMatchObject({ v: 1, type: 'inc.ok', from: server.deviceId, body: { y: 42 } });
    expect(typeof ok.ts).toBe('number');
    const err = await f.request(topic, 'inc', { x: -1 });
    expect(err).toMatchObject({ type: 'error', body: { code: 'LEASE_DENIED', message: 'negative', field: 'body.x' } });
  });

  it('performs a bulk transfer by the documented procedure (offer, chunks, acks, commit)', async () => {
    const rbus = await MqttBus.connect({ url: broker.url, deviceId: uid('rcv') });
    cleanup.push(() => rbus.close());
    const got: ReceivedTransfer[] = [];
    const receiver = await BulkReceiver.start(rbus, (t) => got.push(t));
    cleanup.push(() => receiver.stop());
    const f = await foreign(broker.url);
    cleanup.push(f.close);

    const data = randomBytes(50_000);
    const chunkBytes = 8192;
    const chunks = Math.ceil(data.length / chunkBytes);
    const transfer = 'foreign-transfer-1';
    const ackTo = `ferry/v1/bulk/${f.id}/ack/${transfer}`;
    await f.client.subscribeAsync(ackTo, { qos: 1 });
    const ctl = `ferry/v1/bulk/${rbus.deviceId}/ctl`;
    const offer = await f.request(ctl, 'bulk.offer', { transfer, size: data.length, chunkBytes, chunks, digest: createHash('sha256').update(data).digest(), ackTo, meta: { from: 'foreign' } });
    expect(offer.type).toBe('bulk.offer.ok');
    const have = offer.body.have as Uint8Array;
    expect(have.length).toBe(Math.ceil(chunks / 8));
    expect([...have].every((b) => b === 0)).toBe(true);
    // Chunks 0..n-2 now, the last one after the first commit: commit must report it missing.
    for (let i = 0; i < chunks - 1; i++) {
      await f.client.publishAsync(`ferry/v1/bulk/${rbus.deviceId}/chunk/${transfer}/${i}`, data.subarray(i * chunkBytes, (i + 1) * chunkBytes), { qos: 1 });
    }
    const acked = () => new Set(f.other.filter(([t, e]) => t === ackTo && e.type === 'bulk.ack').map(([, e]) => e.body.index as number));
    for (let waited = 0; acked().size < chunks - 1 && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    expect(acked().size).toBe(chunks - 1);
    const partial = await f.request(ctl, 'bulk.commit', { transfer });
    expect(partial.body.complete).toBe(false);
    const bits = partial.body.have as Uint8Array;
    const last = chunks - 1;
    expect((bits[last >> 3]! >> (last & 7)) & 1).toBe(0);
    expect((bits[0]! >> 0) & 1).toBe(1);
    await f.client.publishAsync(`ferry/v1/bulk/${rbus.deviceId}/chunk/${transfer}/${last}`, data.subarray(last * chunkBytes), { qos: 1 });
    for (let waited = 0; acked().size < chunks && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    const done = await f.request(ctl, 'bulk.commit', { transfer });
    expect(done).toMatchObject({ type: 'bulk.commit.ok', body: { complete: true } });
    expect(got.length).toBe(1);
    expect(got[0]!.data.equals(data)).toBe(true);
    expect(got[0]!.meta).toEqual({ from: 'foreign' });
  });
});
