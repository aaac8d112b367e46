import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError, type FerryError } from '../../core/errors.js';
import { abortBulk, bitmapHas, BulkReceiver, sendBulk, type ReceivedTransfer } from '../../transports/bulk-transfer.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import type { BusOptions } from '../../transports/options.js';
import { bulkAckTopic, bulkChunkTopic, bulkControlTopic } from '../../transports/topics.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';

let seq = 0;
const uid = (p: string) => `${p}${process.pid}x${++seq}${Math.floor(Math.random() * 1e6)}`;
const MiB = 1024 * 1024;

async function until<T>(f: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each(BROKERS)('bulk transfer on %s', (_name, start) => {
  let broker: TestBroker;
  const buses: MqttBus[] = [];
  const receivers: BulkReceiver[] = [];
  const bus = async (o: Partial<BusOptions> = {}) => {
    const b = await MqttBus.connect({ url: broker.url, deviceId: uid('dev'), reconnectMinMs: 20, reconnectMaxMs: 200, ...o });
    buses.push(b);
    return b;
  };
  const receiver = async (b: MqttBus) => {
    const got: ReceivedTransfer[] = [];
    const r = await BulkReceiver.start(b, (t) => got.push(t));
    receivers.push(r);
    return { r, got };
  };

  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker.stop();
  });
  afterEach(async () => {
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  it('moves a few MiB in chunks, checks the sha-256 and hands the data over once', async () => {
    const a = await bus();
    const b = await bus();
    const { got } = await receiver(b);
    const data = randomBytes(3 * MiB + 12_345);
    const res = await sendBulk(a, b.deviceId, data, { meta: { app: 'notes', version: 3 } });
    expect(res.chunks).toBe(Math.ceil(data.length / 65_536));
    expect(res.chunksSent).toBe(res.chunks);
    expect(res.chunksSkipped).toBe(0);
    expect(got.length).toBe(1);
    expect(got[0]!.from).toBe(a.deviceId);
    expect(got[0]!.meta).toEqual({ app: 'notes', version: 3 });
    expect(createHash('sha256').update(got[0]!.data).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    // Sending the same data again: the receiver remembers it is complete, nothing is resent.
    const again = await sendBulk(a, b.deviceId, data);
    expect(again.chunksSent).toBe(0);
    expect(got.length).toBe(1);
  });

  it('handles empty and single-chunk transfers', async () => {
    const a = await bus();
    const b = await bus();
    const { got } = await receiver(b);
    await sendBulk(a, b.deviceId, new Uint8Array(0));
    await sendBulk(a, b.deviceId, Buffer.from('hello'));
    expect(got.map((t) => t.data.toString())).toEqual(['', 'hello']);
  });

  it('resumes after the sender stops: a restarted sender resends only the missing chunks', async () => {
    const a1 = await bus();
    const b = await bus();
    const { r, got } = await receiver(b);
    const data = randomBytes(2 * MiB);
    const chunks = Math.ceil(data.length / 32_768);
    const ac = new AbortController();
    let heldAtAbort = 0;
    const first = await sendBulk(a1, b.deviceId, data, {
      chunkBytes: 32_768,
      window: 4,
      signal: ac.signal,
      onProgress: (held) => {
        if (held >= chunks / 3 && !ac.signal.aborted) {
          heldAtAbort = held;
          ac.abort();
        }
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(first, 'BULK_FAILED')).toBe(true);
    await a1.close(); // the sender "crashes"
    expect(r.partial).toBe(1);
    expect(got.length).toBe(0);

    const a2 = await bus();
    const res = await sendBulk(a2, b.deviceId, data, { chunkBytes: 32_768 });
    expect(res.chunksSkipped).toBeGreaterThanOrEqual(heldAtAbort);
    expect(res.chunksSkipped).toBeLessThan(chunks);
    expect(res.chunksSent).toBe(chunks - res.chunksSkipped);
    expect(got.length).toBe(1);
    expect(got[0]!.data.equals(data)).toBe(true);
  });

  it('survives a broker restart mid-transfer and resends only what is missing', async () => {
    const a = await bus();
    const b = await bus();
    const { r, got } = await receiver(b);
    const data = randomBytes(3 * MiB);
    const chunks = Math.ceil(data.length / 65_536);
    let restarted: Promise<void> | undefined;
    const res = await sendBulk(a, b.deviceId, data, {
      window: 4,
      stallTimeoutMs: 300,
      onProgress: (held) => {
        if (held >= chunks / 3 && !restarted) restarted = broker.restart();
      },
    });
    await restarted;
    expect(res.stalls).toBeGreaterThanOrEqual(0);
    // At most one window of chunks can have been lost in flight at the cut, plus what was resent after stalls.
    expect(res.chunksSent).toBeLessThan(chunks + chunks / 2);
    expect(res.chunksSent).toBe(chunks + res.resent);
    expect(got.length).toBe(1);
    expect(got[0]!.data.equals(data)).toBe(true);
    expect(r.stats.completed).toBe(1);
  });

  it('fails with BULK_FAILED when the digest does not match, and drops the transfer', async () => {
    const a = await bus();
    const b = await bus();
    const { r, got } = await receiver(b);
    const data = randomBytes(10_000);
    const transfer = uid('t');
    const ackTo = bulkAckTopic(a.deviceId, transfer);
    const acks: number[] = [];
    await a.subscribe(ackTo, (env) => acks.push((env.body as { index: number }).index));
    const wrong = createHash('sha256').update('something else').digest();
    const offered = await a.request<{ have: Uint8Array }>(bulkControlTopic(b.deviceId), 'bulk.offer', { transfer, size: data.length, chunkBytes: 4096, chunks: 3, digest: wrong, ackTo, meta: null });
    expect([0, 1, 2].some((i) => bitmapHas(offered.body.have, i))).toBe(false);
    for (let i = 0; i < 3; i++) await a.publishRaw(bulkChunkTopic(b.deviceId, transfer, i), data.subarray(i * 4096, (i + 1) * 4096));
    await until(() => acks.length === 3);
    const e = await a.request(bulkControlTopic(b.deviceId), 'bulk.commit', { transfer }).catch((x: unknown) => x);
    expect(isFerryError(e, 'BULK_FAILED')).toBe(true);
    expect((e as FerryError).message).toMatch(/sha-256/);
    expect(r.partial).toBe(0);
    expect(got.length).toBe(0);
  });

  it('refuses oversized and malformed offers with typed errors, and abortBulk drops a partial transfer', async () => {
    const a = await bus();
    const b = await bus();
    const got: ReceivedTransfer[] = [];
    const r = await BulkReceiver.start(b, (t) => got.push(t), { maxTransferBytes: 1000 });
    receivers.push(r);
    // sendBulk always fails with BULK_FAILED; the receiver's own error is the cause.
    const big = await sendBulk(a, b.deviceId, new Uint8Array(1001)).catch((x: unknown) => x);
    expect(big).toMatchObject({ code: 'BULK_FAILED', cause: { code: 'MESSAGE_TOO_LARGE', details: { field: 'body.size' } } });
    const ctl = bulkControlTopic(b.deviceId);
    await expect(a.request(ctl, 'bulk.offer', { transfer: 'x', size: 10, chunkBytes: 4, chunks: 2, digest: new Uint8Array(32), ackTo: 'a/b' })).rejects.toMatchObject({
      code: 'ENVELOPE_MALFORMED',
      details: { field: 'body.chunks' },
    });
    await expect(a.request(ctl, 'bulk.offer', { transfer: 'x', size: 10, chunkBytes: 4, chunks: 3, digest: new Uint8Array(31), ackTo: 'a/b' })).rejects.toMatchObject({
      details: { field: 'body.digest' },
    });
    await expect(a.request(ctl, 'bulk.offer', { transfer: 'x/y', size: 1 })).rejects.toMatchObject({ details: { field: 'body.transfer' } });
    await a.request(ctl, 'bulk.offer', { transfer: 'x', size: 10, chunkBytes: 4, chunks: 3, digest: new Uint8Array(32), ackTo: 'a/b' });
    expect(r.partial).toBe(1);
    await abortBulk(a, b.deviceId, 'x');
    expect(r.partial).toBe(0);
    await expect(sendBulk(a, 'bad/id', new Uint8Array(1))).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'receiverId' } });
    await expect(sendBulk(a, b.deviceId, new Uint8Array(1), { window: 0 })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.window' } });
  });

  it('fails with BULK_FAILED when no receiver answers', async () => {
    const a = await bus();
    const e = await sendBulk(a, uid('nobody'), new Uint8Array(100), { requestTimeoutMs: 200 }).catch((x: unknown) => x);
    expect(isFerryError(e, 'BULK_FAILED')).toBe(true);
    expect((e as FerryError).cause).toMatchObject({ code: 'BUS_TIMEOUT' });
  });
});
