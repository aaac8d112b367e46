/**
 * Sealed bulk transfer between two real Channels on an embedded aedes broker: data of every
 * size and window arrives whole, the two-part chunk record is exactly the CBOR of the whole
 * map, limits are refused with a code, and a session lost mid-transfer fails the transfer
 * without spoiling the next one.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Channels } from '../../agent/bridge/channel.js';
import { generateX25519 } from '../../agent/bridge/keys.js';
import { chunkRecord, SealedBulk, type SealedTransfer } from '../../agent/bridge/sealed-bulk.js';
import { connectBus, encodeCbor, startEmbeddedBroker, type EmbeddedBroker } from '../../transports/index.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { caughtAsync } from '../helpers/ferry-error.js';

let broker: EmbeddedBroker;
const buses: MqttBus[] = [];
const channels: Channels[] = [];
let a: SealedBulk;
let chA: Channels;
const got: SealedTransfer[] = [];

beforeAll(async () => {
  broker = await startEmbeddedBroker({ port: 0 });
  const [ka, kb] = [generateX25519(), generateX25519()];
  const start = async (id: string, key: typeof ka, peer: string, peerKey: Buffer) => {
    const bus = (await connectBus({ url: broker.url, deviceId: id })) as MqttBus;
    buses.push(bus);
    const c = await Channels.start({
      bus,
      deviceId: id,
      staticKey: key,
      peerStaticKey: (p) => (p === peer ? peerKey : undefined),
      handshakeTimeoutMs: 5000,
      requestTimeoutMs: 5000,
      maxFrameBytes: 262_144,
      seen: () => undefined,
      log: () => undefined,
    });
    channels.push(c);
    return c;
  };
  chA = await start('bulk-a', ka, 'bulk-b', kb.publicKey);
  const chB = await start('bulk-b', kb, 'bulk-a', ka.publicKey);
  a = new SealedBulk(chA, { maxTransferBytes: 1_000_000, maxTransfers: 4, maxChunkBytes: 262_144 - 256 }, () => undefined);
  new SealedBulk(chB, { maxTransferBytes: 1_000_000, maxTransfers: 4, maxChunkBytes: 262_144 - 256 }, (t) => void got.push(t));
});

afterAll(async () => {
  for (const c of channels) await c.close();
  for (const b of buses) await b.close();
  await broker.close();
});

describe('sealed bulk', () => {
  it.each([0, 1, 23, 24, 255, 256, 65_535, 65_536, 100_000])('a %i-byte chunk record is the CBOR of the whole map, in two parts', (len) => {
    const d = randomBytes(len);
    for (const ack of [true, false]) {
      const whole = encodeCbor({ t: 'bulk.chunk', b: { x: 'transfer-1', n: 7, ...(ack ? {} : { a: false }), d } });
      expect(Buffer.concat(chunkRecord('transfer-1', 7, ack, d))).toEqual(whole);
    }
  });

  it.each([
    [0, 16],
    [1, 1],
    [65_536, 16],
    [3 * 65_536 + 5, 1],
    [3 * 65_536 + 5, 5],
    [700_001, 16],
  ])('%i bytes with a window of %i arrive whole, with their meta', async (size, window) => {
    const data = randomBytes(size);
    const before = got.length;
    const r = await a.send('bulk-b', data, { window, meta: { size } });
    expect(r.bytes).toBe(size);
    expect(got.length).toBe(before + 1);
    expect(got.at(-1)!.from).toBe('bulk-a');
    expect(got.at(-1)!.meta).toEqual({ size });
    expect(Buffer.compare(got.at(-1)!.data, data)).toBe(0);
  });

  it('refuses bad options and transfers over the receiver limit, naming the field', async () => {
    expect((await caughtAsync(() => a.send('bulk-b', randomBytes(10), { chunkBytes: 0 }))).details.field).toBe('options.chunkBytes');
    expect((await caughtAsync(() => a.send('bulk-b', randomBytes(10), { window: 1000 }))).details.field).toBe('options.window');
    const e = await caughtAsync(() => a.send('bulk-b', randomBytes(1_000_001)));
    expect({ code: e.code, field: e.details.field }).toEqual({ code: 'BRIDGE_FRAME_MALFORMED', field: 'body.size' });
    expect((await caughtAsync(() => a.send('nobody', randomBytes(10)))).code).toBe('BRIDGE_NOT_PAIRED');
  });

  it('a session lost mid-transfer fails the transfer; the next one goes through', async () => {
    const data = randomBytes(900_000);
    const sending = a.send('bulk-b', data, { window: 2, chunkBytes: 16_384, timeoutMs: 2000 });
    await new Promise((r) => setTimeout(r, 5));
    chA.drop('bulk-b');
    const e = await caughtAsync(() => sending);
    expect(['BULK_FAILED', 'BRIDGE_NOT_PAIRED', 'BRIDGE_CLOSED', 'BUS_TIMEOUT']).toContain(e.code);
    const again = randomBytes(50_000);
    const before = got.length;
    await a.send('bulk-b', again);
    expect(Buffer.compare(got.at(-1)!.data, again)).toBe(0);
    expect(got.length).toBe(before + 1);
  });
});
