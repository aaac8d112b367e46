/**
 * Transport measurements the benchmarks call (bench/leases.ts and others).
 * Each returns plain numbers and runs in a few seconds on loopback.
 *
 * - rawEchoRtt(url, n): p50/p99 ms of a bare MQTT request/response echo (two
 *   mqtt.js clients, QoS 1, no envelope, TCP_NODELAY): the floor any
 *   envelope-based request (a lease grant) can be compared with.
 * - busEchoRtt(url, n): the same through two MqttBus (envelopes, dedupe, correlation).
 * - Each echo also comes in halves (`startRawEchoResponder` + `openRawEchoClient`,
 *   `startBusEchoResponder` + `openBusEchoClient`), so the answering half can run
 *   in another process (bench/lib/bench-process.ts), as bench/leases.ts does.
 * - bulkThroughput(url, bytes): MB/s of sendBulk between two buses.
 * - rawSocketMBps(bytes): MB/s of a plain TCP stream on loopback: the physical ceiling.
 *
 * Run directly (`npx tsx bench/lib/transport-bench.ts`) it starts an embedded
 * broker and prints all of them as JSON.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { BulkReceiver, sendBulk } from '../../transports/bulk-transfer.js';
import { startEmbeddedBroker } from '../../transports/embedded-broker.js';
import { MqttBus } from '../../transports/mqtt-bus.js';

export interface RttResult {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

export interface ThroughputResult {
  bytes: number;
  ms: number;
  mbps: number;
  chunks: number;
  chunksSent: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summarize(samples: number[]): RttResult {
  const s = [...samples].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), mean: round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)) };
}

export const tag = () => `b${process.pid}${Math.floor(Math.random() * 1e9).toString(36)}`;

async function rawClient(url: string): Promise<MqttClient> {
  // Tuned like MqttBus's client (transports/mqtt-bus.ts): no per-packet debug tracing, TCP_NODELAY.
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, log: () => undefined });
  (c.stream as Socket).setNoDelay?.(true);
  return c;
}

/** Takes one round-trip sample (ms) per call; `close` releases its clients. */
export interface RttSampler {
  sample(): Promise<number>;
  close(): Promise<void>;
}

/** Topics of the bare echo with id `id` (see `startRawEchoResponder`). */
function rawEchoTopics(id: string): { req: string; res: string } {
  return { req: `bench/${id}/req`, res: `bench/${id}/res` };
}

/**
 * The answering half of the bare MQTT echo: one mqtt.js client that republishes
 * every payload on `bench/<id>/req` to `bench/<id>/res` (QoS 1), from inside the
 * message callback without waiting for its PUBACK. Resolves once subscribed; the
 * returned function closes it. Runs in its own process in bench/leases.ts.
 */
export async function startRawEchoResponder(brokerUrl: string, id: string): Promise<() => Promise<void>> {
  const { req, res } = rawEchoTopics(id);
  const echo = await rawClient(brokerUrl);
  echo.on('message', (_t, payload) => void echo.publish(res, payload, { qos: 1 }));
  await echo.subscribeAsync(req, { qos: 1 });
  return async () => {
    await echo.endAsync(true);
  };
}

/** The asking half of the bare echo: one sample per call (publish `ping`, wait for its echo). */
export async function openRawEchoClient(brokerUrl: string, id: string): Promise<RttSampler> {
  const { req, res } = rawEchoTopics(id);
  const client = await rawClient(brokerUrl);
  await client.subscribeAsync(res, { qos: 1 });
  let waiting: (() => void) | undefined;
  client.on('message', () => waiting?.());
  const ping = Buffer.from('ping');
  return {
    sample: () =>
      new Promise<number>((resolve) => {
        const t0 = performance.now();
        waiting = () => resolve(performance.now() - t0);
        client.publish(req, ping, { qos: 1 });
      }),
    close: async () => {
      await client.endAsync(true);
    },
  };
}

/** A bare MQTT echo (two mqtt.js clients, QoS 1, no envelope) with both halves in this process: one sample per call. */
export async function openRawEcho(brokerUrl: string): Promise<RttSampler> {
  const id = tag();
  const closeResponder = await startRawEchoResponder(brokerUrl, id);
  const client = await openRawEchoClient(brokerUrl, id);
  return {
    sample: () => client.sample(),
    close: async () => {
      await Promise.all([closeResponder(), client.close()]);
    },
  };
}

/** The serving half of the bus echo: an MqttBus (device `<id>-s`) answering `bench.echo` on `bench/<id>/svc` with the request's body. */
export async function startBusEchoResponder(brokerUrl: string, id: string): Promise<() => Promise<void>> {
  const server = await MqttBus.connect({ url: brokerUrl, deviceId: `${id}-s` });
  await server.serve(`bench/${id}/svc`, (env) => env.body);
  return () => server.close();
}

/** The asking half of the bus echo: an MqttBus (device `<id>-c`), one request per sample. */
export async function openBusEchoClient(brokerUrl: string, id: string): Promise<RttSampler> {
  const client = await MqttBus.connect({ url: brokerUrl, deviceId: `${id}-c` });
  const topic = `bench/${id}/svc`;
  let i = 0;
  return {
    sample: async () => {
      const t0 = performance.now();
      await client.request(topic, 'bench.echo', i++);
      return performance.now() - t0;
    },
    close: () => client.close(),
  };
}

/** An envelope request/response through two MqttBus (serve + request), both in this process: one sample per call. */
export async function openBusEcho(brokerUrl: string): Promise<RttSampler> {
  const id = tag();
  const closeResponder = await startBusEchoResponder(brokerUrl, id);
  const client = await openBusEchoClient(brokerUrl, id);
  return {
    sample: () => client.sample(),
    close: async () => {
      await Promise.all([closeResponder(), client.close()]);
    },
  };
}

async function sampleRtt(open: Promise<RttSampler>, n: number): Promise<RttResult> {
  const s = await open;
  try {
    for (let i = 0; i < Math.min(50, n); i++) await s.sample();
    const samples: number[] = [];
    for (let i = 0; i < n; i++) samples.push(await s.sample());
    return summarize(samples);
  } finally {
    await s.close();
  }
}

/** Bare MQTT echo RTT: n sequential requests after a short warm-up. */
export function rawEchoRtt(brokerUrl: string, n = 1000): Promise<RttResult> {
  return sampleRtt(openRawEcho(brokerUrl), n);
}

/** Envelope request/response RTT through two MqttBus (serve + request). */
export function busEchoRtt(brokerUrl: string, n = 1000): Promise<RttResult> {
  return sampleRtt(openBusEcho(brokerUrl), n);
}

/** MB/s (10^6 bytes per second) of one chunked bulk transfer of `bytes` random bytes. */
export async function bulkThroughput(brokerUrl: string, bytes = 32 * 1024 * 1024, options: { window?: number; chunkBytes?: number } = {}): Promise<ThroughputResult> {
  const id = tag();
  const sender = await MqttBus.connect({ url: brokerUrl, deviceId: `${id}-s`, maxMessageBytes: 1024 * 1024, maxInFlight: 64 });
  const receiverBus = await MqttBus.connect({ url: brokerUrl, deviceId: `${id}-r`, maxMessageBytes: 1024 * 1024, maxInFlight: 64 });
  let received = 0;
  const receiver = await BulkReceiver.start(receiverBus, (t) => (received = t.data.length), { maxTransferBytes: Math.max(bytes, 1) });
  try {
    const data = randomBytes(bytes);
    const r = await sendBulk(sender, receiverBus.deviceId, data, { window: options.window ?? 16, chunkBytes: options.chunkBytes ?? 256 * 1024 });
    if (received !== bytes) throw new Error(`bulk benchmark: receiver got ${received} of ${bytes} bytes`);
    return { bytes, ms: Math.round(r.ms), mbps: Math.round((bytes / 1e6 / (r.ms / 1000)) * 10) / 10, chunks: r.chunks, chunksSent: r.chunksSent };
  } finally {
    await receiver.stop();
    await Promise.all([sender.close(), receiverBus.close()]);
  }
}

/** MB/s of a plain TCP stream over loopback (writer honours back-pressure). */
export async function rawSocketMBps(bytes = 256 * 1024 * 1024): Promise<number> {
  let got = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const server = createServer((s) => {
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= bytes) done();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  const sock = createConnection({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const block = randomBytes(64 * 1024);
  const t0 = performance.now();
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(block.length, bytes - sent);
    sent += n;
    if (!sock.write(n === block.length ? block : block.subarray(0, n))) await new Promise<void>((r) => sock.once('drain', () => r()));
  }
  await finished;
  const ms = performance.now() - t0;
  sock.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10;
}

async function main(): Promise<void> {
  const broker = await startEmbeddedBroker();
  try {
    const out = {
      broker: 'aedes (embedded)',
      rawEchoRttMs: await rawEchoRtt(broker.url, 1000),
      busEchoRttMs: await busEchoRtt(broker.url, 1000),
      bulk: await bulkThroughput(broker.url, 32 * 1024 * 1024),
      rawSocketMBps: await rawSocketMBps(),
    };
    console.log(JSON.stringify(out, null, 2));
  } finally {
    await broker.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
