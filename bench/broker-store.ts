/**
 * Embedded broker store benchmark: `tsx bench/broker-store.ts [--json] [--quick]`.
 *
 * Queued QoS 1 messages through the embedded broker (aedes) with its state in memory
 * (`startEmbeddedBroker()`) and in its SQLite store (`persistenceFile`, synchronous = FULL,
 * group commit), in the same run, rounds interleaved (memory, store, memory, …) on a data
 * directory under the OS temp dir (`storeDevice` says which file system: the figure is
 * the device's fsync more than anything):
 * - enqueuePerSec: ~200-byte messages published QoS 1 by one mqtt.js client, 64 in flight, to a
 *   persistent session that is offline (each resolves at its PUBACK: stored, for the store);
 * - drainPerSec: that session reconnecting and receiving the queue, acknowledging each message;
 * - livePerSec: the same publisher to the session connected (queued, sent, acknowledged:
 *   three store writes per message), counted when the subscriber has them all.
 * `…Ratio` = store / memory (medians). Broker and clients share this process, as the
 * embedded broker shares the agent's. Prints one JSON object as its last line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { startEmbeddedBroker } from '../transports/embedded-broker.js';
import { parseBenchArgs, report, round } from './lib/args.js';

const args = parseBenchArgs();
const N = args.quick ? 1000 : 4000;
const ROUNDS = args.quick ? 3 : 5;
const IN_FLIGHT = 64;
const PAYLOAD = Buffer.alloc(200, 0x61);

interface Rates {
  enqueuePerSec: number;
  drainPerSec: number;
  livePerSec: number;
}

async function publishAll(pub: MqttClient, topic: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < N) {
      next++;
      await pub.publishAsync(topic, PAYLOAD, { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

/** Resolves when `count` messages on `topic` have arrived (mqtt.js acknowledges each as it arrives). */
function arrivals(client: MqttClient, topic: string, count: number): Promise<void> {
  return new Promise((resolve) => {
    let got = 0;
    const on = (t: string) => {
      if (t === topic && ++got === count) {
        client.off('message', on);
        resolve();
      }
    };
    client.on('message', on);
  });
}

async function oneRound(file: string | undefined, tag: string): Promise<Rates> {
  const broker = await startEmbeddedBroker(file ? { persistenceFile: file } : {});
  try {
    const session = { clientId: `sub-${tag}`, clean: false, reconnectPeriod: 0 };
    const first = await mqtt.connectAsync(broker.url, session);
    await first.subscribeAsync('q/#', { qos: 1 });
    await first.endAsync();
    const pub = await mqtt.connectAsync(broker.url, { clientId: `pub-${tag}`, reconnectPeriod: 0 });

    let t = performance.now();
    await publishAll(pub, 'q/offline');
    const enqueueMs = performance.now() - t;

    t = performance.now();
    const sub = mqtt.connect(broker.url, session);
    await arrivals(sub, 'q/offline', N);
    const drainMs = performance.now() - t;

    t = performance.now();
    await Promise.all([publishAll(pub, 'q/live'), arrivals(sub, 'q/live', N)]);
    const liveMs = performance.now() - t;
    await sub.endAsync();
    await pub.endAsync();
    return { enqueuePerSec: (N / enqueueMs) * 1000, drainPerSec: (N / drainMs) * 1000, livePerSec: (N / liveMs) * 1000 };
  } finally {
    await broker.close();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-broker-'));
const storeDevice = (() => {
  try {
    return execFileSync('df', ['-T', dir], { encoding: 'utf8' }).trim().split('\n').pop()!.split(/\s+/)[1]!;
  } catch {
    return 'unknown';
  }
})();
const memory: Rates[] = [];
const store: Rates[] = [];
try {
  for (let i = 0; i < ROUNDS; i++) {
    memory.push(await oneRound(undefined, `m${i}`));
    store.push(await oneRound(join(dir, `broker-${i}.db`), `s${i}`));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const med = (rs: Rates[], k: keyof Rates) => round(median(rs.map((r) => r[k])), 0);
const result = {
  bench: 'broker-store',
  layout: 'broker (aedes) and clients in one process',
  storeDevice,
  messages: N,
  inFlight: IN_FLIGHT,
  payloadBytes: PAYLOAD.length,
  memory: { enqueuePerSec: med(memory, 'enqueuePerSec'), drainPerSec: med(memory, 'drainPerSec'), livePerSec: med(memory, 'livePerSec') },
  store: { enqueuePerSec: med(store, 'enqueuePerSec'), drainPerSec: med(store, 'drainPerSec'), livePerSec: med(store, 'livePerSec') },
  enqueueRatio: 0,
  drainRatio: 0,
  liveRatio: 0,
};
result.enqueueRatio = round(result.store.enqueuePerSec / result.memory.enqueuePerSec, 3);
result.drainRatio = round(result.store.drainPerSec / result.memory.drainPerSec, 3);
result.liveRatio = round(result.store.livePerSec / result.memory.livePerSec, 3);
report(args, result, [
  `queued QoS 1 messages, memory vs SQLite store (${storeDevice}), ${N} x ${PAYLOAD.length} B, ${IN_FLIGHT} in flight:`,
  `  enqueue: ${result.memory.enqueuePerSec}/s vs ${result.store.enqueuePerSec}/s (ratio ${result.enqueueRatio})`,
  `  drain:   ${result.memory.drainPerSec}/s vs ${result.store.drainPerSec}/s (ratio ${result.drainRatio})`,
  `  live:    ${result.memory.livePerSec}/s vs ${result.store.livePerSec}/s (ratio ${result.liveRatio})`,
]);
