import { describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { startEmbeddedBroker } from '../../transports/embedded-broker.js';
import { readBulkReceiverOptions, readBulkSendOptions, readBusOptions, readLinkEmulatorOptions, type BusOptions } from '../../transports/options.js';

const ok: BusOptions = { url: 'mqtt://127.0.0.1:1883', deviceId: 'pi-1' };

function fieldOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryError);
    expect((e as FerryError).code).toBe('BAD_OPTION');
    const field = (e as FerryError).details.field;
    expect((e as FerryError).message).toContain(String(field));
    return field;
  }
  return undefined;
}

describe('BusOptions', () => {
  it('fills documented defaults', () => {
    const o = readBusOptions(ok);
    expect(o).toMatchObject({
      keepaliveSeconds: 30,
      connectTimeoutMs: 10_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 5000,
      maxMessageBytes: 262_144,
      maxInFlight: 16,
      maxQueued: 10_000,
      offlineQueue: true,
      dedupeWindow: 4096,
      requestTimeoutMs: 5000,
      maxClockSkewMs: 1000,
    });
    expect(o.clientId).toMatch(/^pi-1-[0-9a-f]{8}$/);
  });

  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['missing url', { url: undefined }, 'options.url'],
    ['http url', { url: 'http://127.0.0.1:1883' }, 'options.url'],
    ['url without port', { url: 'mqtt://127.0.0.1' }, 'options.url'],
    ['missing deviceId', { deviceId: undefined }, 'options.deviceId'],
    ['deviceId with a slash', { deviceId: 'a/b' }, 'options.deviceId'],
    ['deviceId with a wildcard', { deviceId: 'a+' }, 'options.deviceId'],
    ['deviceId too long', { deviceId: 'x'.repeat(65) }, 'options.deviceId'],
    ['keepalive negative', { keepaliveSeconds: -1 }, 'options.keepaliveSeconds'],
    ['connect timeout too short', { connectTimeoutMs: 5 }, 'options.connectTimeoutMs'],
    ['reconnectMin zero', { reconnectMinMs: 0 }, 'options.reconnectMinMs'],
    ['reconnectMax below min', { reconnectMinMs: 500, reconnectMaxMs: 100 }, 'options.reconnectMaxMs'],
    ['maxMessageBytes tiny', { maxMessageBytes: 10 }, 'options.maxMessageBytes'],
    ['maxMessageBytes above MQTT', { maxMessageBytes: 2 ** 29 }, 'options.maxMessageBytes'],
    ['maxMessageBytes fractional', { maxMessageBytes: 2048.5 }, 'options.maxMessageBytes'],
    ['maxInFlight zero', { maxInFlight: 0 }, 'options.maxInFlight'],
    ['maxQueued negative', { maxQueued: -1 }, 'options.maxQueued'],
    ['offlineQueue not boolean', { offlineQueue: 'yes' }, 'options.offlineQueue'],
    ['dedupeWindow small', { dedupeWindow: 1 }, 'options.dedupeWindow'],
    ['requestTimeout zero', { requestTimeoutMs: 0 }, 'options.requestTimeoutMs'],
    ['skew NaN', { maxClockSkewMs: Number.NaN }, 'options.maxClockSkewMs'],
    ['now not a function', { now: 5 }, 'options.now'],
    ['unknown option', { maxInflight: 4 }, 'options.maxInflight'],
    ['will without topic', { will: { type: 'x', body: null } }, 'options.will.topic'],
    ['will with wildcard', { will: { topic: 'a/#', type: 'x' } }, 'options.will.topic'],
    ['will qos 2', { will: { topic: 'a', type: 'x', qos: 2 } }, 'options.will.qos'],
    ['password a number', { password: 5 }, 'options.password'],
    ['tls on mqtt://', { tls: {} }, 'options.tls'],
    ['tls unknown key', { url: 'mqtts://127.0.0.1:8883', tls: { pfx: 'x' } }, 'options.tls.pfx'],
  ];
  it.each(cases)('%s → BAD_OPTION naming %s', (_label, patch, field) => {
    expect(fieldOf(() => readBusOptions({ ...ok, ...patch } as BusOptions))).toBe(field);
  });

  it('refuses a non-object', () => {
    expect(fieldOf(() => readBusOptions(null as unknown as BusOptions))).toBe('options');
  });
});

describe('bulk options', () => {
  it('defaults and limits of the sender follow the bus message size', () => {
    expect(readBulkSendOptions({}, 262_144)).toMatchObject({ chunkBytes: 65_536, window: 8, stallTimeoutMs: 3000, maxStalls: 5 });
    expect(readBulkSendOptions({}, 4096).chunkBytes).toBe(4096);
    expect(fieldOf(() => readBulkSendOptions({ chunkBytes: 8192 }, 4096))).toBe('options.chunkBytes');
    expect(fieldOf(() => readBulkSendOptions({ window: 0 }, 4096))).toBe('options.window');
    expect(fieldOf(() => readBulkSendOptions({ transferId: 'a/b' }, 4096))).toBe('options.transferId');
    expect(fieldOf(() => readBulkSendOptions({ signal: {} as AbortSignal }, 4096))).toBe('options.signal');
    expect(fieldOf(() => readBulkSendOptions({ onProgress: 1 as unknown as () => void }, 4096))).toBe('options.onProgress');
  });
  it('receiver', () => {
    expect(readBulkReceiverOptions({})).toMatchObject({ maxTransferBytes: 64 * 1024 * 1024, maxTransfers: 4 });
    expect(fieldOf(() => readBulkReceiverOptions({ maxTransfers: 0 }))).toBe('options.maxTransfers');
    expect(fieldOf(() => readBulkReceiverOptions({ idleTimeoutMs: 1 }))).toBe('options.idleTimeoutMs');
  });
});

describe('link emulator options', () => {
  const link = { bandwidthBps: 1e6, latencyMs: 10, jitterMs: 1, lossRate: 0 };
  it('defaults', () => {
    expect(readLinkEmulatorOptions({ targetPort: 1883, link })).toMatchObject({ targetHost: '127.0.0.1', listenPort: 0, segmentBytes: 1460, burstBytes: 1500, randomCuts: false });
  });
  it.each([
    ['no link', { link: undefined }, 'options.link'],
    ['bandwidth too low', { link: { ...link, bandwidthBps: 1 } }, 'options.link.bandwidthBps'],
    ['lossRate above 1', { link: { ...link, lossRate: 2 } }, 'options.link.lossRate'],
    ['segment too small', { segmentBytes: 1 }, 'options.segmentBytes'],
    ['clock without timers', { clock: { now: () => 0 } }, 'options.clock'],
    ['unknown', { bandwidth: 5 }, 'options.bandwidth'],
  ])('%s → %s', (_label, patch, field) => {
    expect(fieldOf(() => readLinkEmulatorOptions({ targetPort: 1883, link, ...patch } as never))).toBe(field);
  });
});

describe('embedded broker options', () => {
  it('refuses a non-loopback host, a bad port and unknown options', async () => {
    await expect(startEmbeddedBroker({ host: '0.0.0.0' })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.host' } });
    await expect(startEmbeddedBroker({ port: 70_000 })).rejects.toMatchObject({ details: { field: 'options.port' } });
    await expect(startEmbeddedBroker({ prot: 1 } as never)).rejects.toMatchObject({ details: { field: 'options.prot' } });
  });
  it('refuses a port already in use with BAD_OPTION naming options.port', async () => {
    const a = await startEmbeddedBroker();
    try {
      await expect(startEmbeddedBroker({ port: a.port })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.port' } });
    } finally {
      await a.close();
    }
  });
});
