import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getProfile } from '../../hw-profiles/index.js';
import { BulkReceiver, sendBulk, type ReceivedTransfer } from '../../transports/bulk-transfer.js';
import type { Envelope } from '../../transports/contract.js';
import { startLinkEmulator, type LinkEmulator } from '../../transports/link-emulator.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import type { EmulatorClock } from '../../transports/options.js';
import { BROKERS, type TestBroker } from '../helpers/brokers.js';

let seq = 0;
const uid = (p: string) => `${p}${process.pid}x${++seq}${Math.floor(Math.random() * 1e6)}`;

async function until<T>(f: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A deterministic random source (LCG) for jitter and cuts. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A TCP server on loopback: 'echo' sends everything back, 'sink' collects it. */
async function tcpServer(kind: 'echo' | 'sink') {
  const received: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => (kind === 'echo' ? s.write(d) : received.push(d)));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : 0,
    bytes: () => received.reduce((n, b) => n + b.length, 0),
    data: () => Buffer.concat(received),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function connect(port: number): Promise<Socket> {
  const s = createConnection({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

const fast = { bandwidthBps: 1e9, latencyMs: 0, jitterMs: 0, lossRate: 0 };

describe('link emulator on raw TCP', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('imposes its bandwidth (within 30%)', async () => {
    const sink = await tcpServer('sink');
    cleanup.push(sink.close);
    const bandwidthBps = 8_000_000; // 1 MB/s
    const emu = await startLinkEmulator({ targetPort: sink.port, link: { ...fast, bandwidthBps } });
    cleanup.push(() => emu.close());
    const s = await connect(emu.port);
    cleanup.push(() => void s.destroy());
    const bytes = 600_000;
    const t0 = performance.now();
    s.write(randomBytes(bytes));
    await until(() => sink.bytes() === bytes);
    const seconds = (performance.now() - t0) / 1000;
    const expected = bytes / (bandwidthBps / 8);
    expect(seconds).toBeGreaterThan(expected * 0.7);
    // Generous floor on top: a loaded machine only ever makes it slower, never faster.
    expect(seconds).toBeLessThan(expected * 1.3 + 0.4);
  });

  it('imposes its latency in each direction (within 30%)', async () => {
    const echo = await tcpServer('echo');
    cleanup.push(echo.close);
    const latencyMs = 80;
    const emu = await startLinkEmulator({ targetPort: echo.port, link: { ...fast, bandwidthBps: 100e6, latencyMs } });
    cleanup.push(() => emu.close());
    const s = await connect(emu.port);
    cleanup.push(() => void s.destroy());
    const rtts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const back = new Promise<void>((r) => s.once('data', () => r()));
      s.write('ping');
      await back;
      rtts.push(performance.now() - t0);
    }
    const best = Math.min(...rtts);
    expect(best).toBeGreaterThanOrEqual(2 * latencyMs * 0.95);
    expect(best).toBeLessThan(2 * latencyMs * 1.3 + 60);
  });

  it('keeps byte order under heavy jitter', async () => {
    const echo = await tcpServer('echo');
    cleanup.push(echo.close);
    const emu = await startLinkEmulator({ targetPort: echo.port, link: { ...fast, bandwidthBps: 50e6, latencyMs: 10, jitterMs: 10 }, segmentBytes: 64, random: seeded(7) });
    cleanup.push(() => emu.close());
    const s = await connect(emu.port);
    cleanup.push(() => void s.destroy());
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    const sent: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const b = randomBytes(100 + (i % 7) * 50);
      sent.push(b);
      s.write(b);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 3));
    }
    const all = Buffer.concat(sent);
    await until(() => got.reduce((n, b) => n + b.length, 0) >= all.length);
    expect(Buffer.concat(got).equals(all)).toBe(true);
  });

  it('cuts every connection on demand and keeps the link down for downMs', async () => {
    const echo = await tcpServer('echo');
    cleanup.push(echo.close);
    const emu = await startLinkEmulator({ targetPort: echo.port, link: fast });
    cleanup.push(() => emu.close());
    const a = await connect(emu.port);
    const b = await connect(emu.port);
    await until(() => emu.connections === 2);
    const closed = Promise.all([a, b].map((s) => new Promise((r) => s.once('close', r))));
    emu.cutAll({ downMs: 300 });
    await closed;
    expect(emu.connections).toBe(0);
    const during = await connect(emu.port);
    await new Promise((r) => during.once('close', r)); // refused while down
    await new Promise((r) => setTimeout(r, 320));
    const after = await connect(emu.port);
    cleanup.push(() => void after.destroy());
    const back = new Promise<Buffer>((r) => after.once('data', r));
    after.write('up again');
    expect((await back).toString()).toBe('up again');
  });

  it('cuts at random by lossRate with an injected random source', async () => {
    const echo = await tcpServer('echo');
    cleanup.push(echo.close);
    // random() is always 0.3: a lossRate of 0.25 never cuts, 0.5 always does.
    const emu = await startLinkEmulator({ targetPort: echo.port, link: { ...fast, lossRate: 0.25 }, randomCuts: true, random: () => 0.3 });
    cleanup.push(() => emu.close());
    const s = await connect(emu.port);
    const back = new Promise<Buffer>((r) => s.once('data', r));
    s.write('kept');
    expect((await back).toString()).toBe('kept');
    emu.setLink({ ...fast, lossRate: 0.5 });
    const closed = new Promise((r) => s.once('close', r));
    s.write('lost');
    await closed;
    expect(emu.stats.cuts).toBe(1);
  });

  it('schedules on an injected clock: nothing arrives until the clock has moved by the latency', async () => {
    const sink = await tcpServer('sink');
    cleanup.push(sink.close);
    let now = 0;
    const timers: Array<{ at: number; fn: () => void; id: number }> = [];
    let nextId = 1;
    const clock: EmulatorClock = {
      now: () => now,
      setTimeout: (fn, ms) => {
        const id = nextId++;
        timers.push({ at: now + ms, fn, id });
        return id;
      },
      clearTimeout: (id) => {
        const i = timers.findIndex((t) => t.id === id);
        if (i >= 0) timers.splice(i, 1);
      },
    };
    const advance = (ms: number) => {
      now += ms;
      for (;;) {
        timers.sort((x, y) => x.at - y.at);
        const t = timers[0];
        if (!t || t.at > now) break;
        timers.shift();
        t.fn();
      }
    };
    const emu = await startLinkEmulator({ targetPort: sink.port, link: { ...fast, latencyMs: 1000 }, clock });
    cleanup.push(() => emu.close());
    const s = await connect(emu.port);
    cleanup.push(() => void s.destroy());
    await until(() => emu.connections === 1);
    await new Promise((r) => setTimeout(r, 30)); // upstream connected
    s.write('hello');
    await until(() => timers.length > 0);
    advance(999);
    await new Promise((r) => setTimeout(r, 50));
    expect(sink.bytes()).toBe(0);
    advance(1);
    await until(() => sink.bytes() === 5);
    expect(sink.data().toString()).toBe('hello');
  });

  it('validates its options, naming the field', async () => {
    await expect(startLinkEmulator({ targetPort: 0, link: fast })).rejects.toMatchObject({ code: 'BAD_OPTION', details: { field: 'options.targetPort' } });
    await expect(startLinkEmulator({ targetPort: 1883, link: { ...fast, latencyMs: -1 } })).rejects.toMatchObject({ details: { field: 'options.link.latencyMs' } });
    await expect(startLinkEmulator({ targetPort: 1883, targetHost: '10.0.0.1', link: fast })).rejects.toMatchObject({ details: { field: 'options.targetHost' } });
    await expect(startLinkEmulator({ targetPort: 1883, link: fast, random: 3 as unknown as () => number })).rejects.toMatchObject({ details: { field: 'options.random' } });
  });
});

describe.each(BROKERS)('MQTT through the link emulator on %s', (_name, start) => {
  let broker: TestBroker;
  let emu: LinkEmulator;
  const buses: MqttBus[] = [];
  const bus = async (url: string, o: Record<string, unknown> = {}) => {
    const b = await MqttBus.connect({ url, deviceId: uid('dev'), reconnectMinMs: 20, reconnectMaxMs: 200, ...o });
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
    await emu?.close();
  });

  it('a PDA-profile bus sees the link latency on requests and reconnects after a cut', async () => {
    const link = getProfile('palm-pda').link;
    emu = await startLinkEmulator({ targetPort: broker.port, link, random: seeded(1) });
    const pda = await bus(emu.url);
    const server = await bus(broker.url);
    const topic = `ferry/test/${uid('svc')}`;
    await server.serve(topic, (env) => env.body);
    const t0 = performance.now();
    expect((await pda.request(topic, 'echo', 'hi')).body).toBe('hi');
    // Up and down the emulated link once each.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * (link.latencyMs - link.jitterMs));

    const reconnected = new Promise<void>((r) => pda.on('connect', () => r()));
    emu.cutAll();
    await reconnected;
    expect((await pda.request(topic, 'echo', 'again')).body).toBe('again');
  });

  it('a bulk transfer through a 4 Mbit/s link runs at about the link rate', async () => {
    const bandwidthBps = 4_000_000;
    emu = await startLinkEmulator({ targetPort: broker.port, link: { ...fast, bandwidthBps, latencyMs: 5 } });
    const phone = await bus(emu.url);
    const pi = await bus(broker.url);
    const r = await BulkReceiver.start(pi, () => undefined);
    const bytes = 256 * 1024;
    const res = await sendBulk(phone, pi.deviceId, randomBytes(bytes), { chunkBytes: 16_384, window: 8 });
    await r.stop();
    const linkSeconds = bytes / (bandwidthBps / 8);
    // Payload rate: never above the link; MQTT headers and request round trips cost a little.
    expect(res.ms / 1000).toBeGreaterThan(linkSeconds * 0.9);
    expect(res.ms / 1000).toBeLessThan(linkSeconds * 1.3 + 0.5);
  });

  it('a bulk transfer completes over a link that drops at random', async () => {
    emu = await startLinkEmulator({
      targetPort: broker.port,
      // ~720 segments per MiB: at 0.01 a run without any cut has odds of ~1 in 1,400 (at 0.003 it was
      // ~1 in 9, and the assertion on cuts below failed now and then).
      link: { ...fast, bandwidthBps: 200e6, latencyMs: 1, lossRate: 0.01 },
      randomCuts: true,
      random: seeded(42),
    });
    const phone = await bus(emu.url);
    const pi = await bus(broker.url);
    const got: ReceivedTransfer[] = [];
    const r = await BulkReceiver.start(pi, (t) => got.push(t));
    const data = randomBytes(1024 * 1024);
    const res = await sendBulk(phone, pi.deviceId, data, { chunkBytes: 16_384, window: 4, stallTimeoutMs: 200, requestTimeoutMs: 500, maxStalls: 50 });
    await r.stop();
    expect(emu.stats.cuts).toBeGreaterThan(0);
    expect(got[0]!.data.equals(data)).toBe(true);
    expect(res.chunksSent).toBe(res.chunks + res.resent);
  });

  it('publishes a per-connection will when the link is cut', async () => {
    emu = await startLinkEmulator({ targetPort: broker.port, link: fast });
    const watcher = await bus(broker.url);
    const willTopic = `ferry/test/${uid('will')}`;
    const wills: Envelope[] = [];
    await watcher.subscribe(willTopic, (env) => wills.push(env));
    let epoch = 0;
    const dev = await bus(emu.url, { will: () => ({ topic: willTopic, type: 'device.gone', body: { epoch: ++epoch } }) });
    expect(epoch).toBe(1);
    const reconnected = new Promise<void>((r) => dev.on('connect', () => r()));
    emu.cutAll();
    const will = await until(() => wills[0]);
    expect(will.type).toBe('device.gone');
    expect(will.from).toBe(dev.deviceId);
    expect(will.body).toEqual({ epoch: 1 });
    await reconnected;
    expect(epoch).toBe(2);
  });

  it('a bulk transfer over a cut link completes, resending only what was missing', async () => {
    emu = await startLinkEmulator({ targetPort: broker.port, link: { ...fast, bandwidthBps: 80e6, latencyMs: 2 } });
    const phone = await bus(emu.url);
    const pi = await bus(broker.url);
    const got: ReceivedTransfer[] = [];
    const r = await BulkReceiver.start(pi, (t) => got.push(t));
    const data = randomBytes(2 * 1024 * 1024);
    const chunks = Math.ceil(data.length / 65_536);
    let cut = false;
    const res = await sendBulk(phone, pi.deviceId, data, {
      window: 4,
      stallTimeoutMs: 300,
      onProgress: (held) => {
        if (!cut && held >= chunks / 2) {
          cut = true;
          emu.cutAll({ downMs: 100 });
        }
      },
    });
    await r.stop();
    expect(cut).toBe(true);
    expect(got[0]!.data.equals(data)).toBe(true);
    expect(res.chunksSent).toBe(chunks + res.resent);
    expect(res.resent).toBeLessThanOrEqual(chunks / 2);
  });
});
