/**
 * Lease benchmark: `npm run bench:leases -- [--json] [--quick]`.
 *
 * For aedes and Mosquitto, each in a process of its own, in the same run:
 * - grantRttP50Ms / grantRttP99Ms: a lease.grant request answered (sequential);
 * - rawEchoRttP50Ms: a bare MQTT QoS 1 echo on the same broker (the floor), and
 *   grantOverRawRatio = grant p50 / raw p50 (target ≤ 1.5); busEchoRttP50Ms: an
 *   envelope request/response through two MqttBus. The three are sampled in
 *   interleaved rounds, so machine load and JIT warm-up weigh on all alike.
 *   The requester of each runs in this process, its responder (echo, bus echo,
 *   grantor) in a child process of its own (bench/lib/bench-process.ts): the
 *   same layout for all three, as a holder and its grantor are two devices;
 * - renewalsPerSec: renewals one provider sustains with 10,000 active leases,
 *   renewed in batches of 1,000 (several batches in flight);
 * - bytesPerLease: the provider's heap growth per active lease (table + remembered
 *   answers), measured with a forced GC, the holder's own records subtracted;
 * - bulkMBps beside rawSocketMBps (plain loopback TCP).
 * Prints one JSON object as its last line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LeaseClient, LeaseGrantor, type HeldLease } from '../agent/services/index.js';
import { connectBus, type MqttBus } from '../transports/index.js';
import { startMosquitto } from '../test/helpers/brokers.js';
import { parseBenchArgs, percentile, report, round } from './lib/args.js';
import { startBenchProcess } from './lib/bench-process.js';
import { bulkThroughput, openBusEchoClient, openRawEchoClient, rawSocketMBps, tag as benchTag, type RttSampler } from './lib/transport-bench.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const args = parseBenchArgs();
const N_GRANTS = args.quick ? 500 : 2000;
const ROUNDS = 10;
const WARMUP = 200;
const ACTIVE = 10_000;
const BATCH = 1000;
const RENEW_MS = args.quick ? 1500 : 5000;
const BULK_BYTES = (args.quick ? 8 : 32) * 1024 * 1024;

/** Where each part of the round-trip measurements runs (the JSON's `layout`). */
const LAYOUT =
  'rtt: requester in the bench process; raw echo responder, bus echo responder and grantor each in a child process of its own; ' +
  'broker in its own process (aedes: a child process; mosquitto: its binary). renewals, bytesPerLease: grantor and holder in the bench process; bulk: both buses in the bench process';

interface BrokerRun {
  grantRttP50Ms: number;
  grantRttP99Ms: number;
  rawEchoRttP50Ms: number;
  grantOverRawRatio: number;
  /** The same ratio within each of the ROUNDS rounds (min, median, max): not the headline, its spread. */
  grantOverRawByRound: { min: number; median: number; max: number };
  /** Envelope echo through two MqttBus: the floor of any Ferry request, to show what the services add. */
  busEchoRttP50Ms: number;
  grantOverBusRatio: number;
  renewalsPerSec: number;
  bytesPerLease: number;
  bulkMBps: number;
}

function spread(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: round(s[0]!, 2), median: round(percentile(s, 50), 2), max: round(s[s.length - 1]!, 2) };
}

function heap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function measure(url: string, dir: string, tag: string): Promise<BrokerRun> {
  const hBus = await connectBus({ url, deviceId: `bench-h-${tag}`, maxInFlight: 256 });
  const client = new LeaseClient(hBus, { timeoutMs: 10_000 });
  let pBus: MqttBus | undefined;
  let grantor: LeaseGrantor | undefined;
  try {
    // Grant RTT beside its floors, interleaved: ROUNDS rounds of N/ROUNDS raw echoes, bus echoes and
    // grants each, after WARMUP of each. Interleaving puts all three under the same load and JIT state
    // (measured one after the other, a busy machine or a cold JIT skews whichever runs first).
    // Layout (LAYOUT): the asking half of each path runs here; its answering half (the bare echo
    // responder, the bus echo responder, the grantor) runs in a child process of its own, as the
    // holder and the grantor are on different devices in Ferry. Same layout for all three paths.
    const id = benchTag();
    const responders = await Promise.all([
      startBenchProcess({ role: 'raw-echo', url, id }),
      startBenchProcess({ role: 'bus-echo', url, id }),
      startBenchProcess({ role: 'grantor', url, deviceId: `bench-p-${tag}-rtt`, stateFile: join(dir, `${tag}-rtt.sqlite`), exclusive: N_GRANTS + WARMUP, maxInFlight: 256 }),
    ]);
    const grantTopic = responders[2].info.topic!;
    let raw: RttSampler | undefined;
    let busEcho: RttSampler | undefined;
    const grantSamples: number[] = [];
    const rawSamples: number[] = [];
    const busSamples: number[] = [];
    /** grant p50 / raw p50 within each round: the spread says how much the headline ratio moves with the machine's load. */
    const roundRatios: number[] = [];
    try {
      raw = await openRawEchoClient(url, id);
      busEcho = await openBusEchoClient(url, id);
      let r = 0;
      const grantOnce = async () => {
        const t0 = performance.now();
        await client.grant({ leaseTopic: grantTopic, service: `excl-${r++}` }, 60_000);
        return performance.now() - t0;
      };
      for (let i = 0; i < WARMUP; i++) {
        await raw.sample();
        await busEcho.sample();
        await grantOnce();
      }
      for (let round = 0; round < ROUNDS; round++) {
        const from = rawSamples.length;
        for (let i = 0; i < N_GRANTS / ROUNDS; i++) rawSamples.push(await raw.sample());
        for (let i = 0; i < N_GRANTS / ROUNDS; i++) busSamples.push(await busEcho.sample());
        for (let i = 0; i < N_GRANTS / ROUNDS; i++) grantSamples.push(await grantOnce());
        const p50 = (xs: number[]) => percentile(xs.slice(from).sort((a, b) => a - b), 50);
        roundRatios.push(p50(grantSamples) / p50(rawSamples));
      }
    } finally {
      await Promise.all([raw?.close(), busEcho?.close(), ...responders.map((p) => p.close())]);
    }
    const samples = grantSamples.sort((a, b) => a - b);
    const rawP50 = percentile(rawSamples.sort((a, b) => a - b), 50);
    const busP50 = percentile(busSamples.sort((a, b) => a - b), 50);

    // Renewals and memory: a grantor in this process, as before the RTT layout (its heap is measured here).
    pBus = await connectBus({ url, deviceId: `bench-p-${tag}`, maxInFlight: 256 });
    grantor = await LeaseGrantor.start(pBus, { stateFile: join(dir, `${tag}.sqlite`), maxDurationMs: 600_000, sweepIntervalMs: 1000 });
    grantor.offer('shared', { exclusive: false });
    const g = grantor;

    // 10,000 active leases, granted 200 at a time.
    const before = heap();
    const leases: HeldLease[] = [];
    for (let i = 0; i < ACTIVE; i += 200) {
      const part = await Promise.all(Array.from({ length: Math.min(200, ACTIVE - i) }, () => client.grant({ leaseTopic: g.topic, service: 'shared' }, 600_000)));
      leases.push(...part);
    }
    const afterGrants = heap();
    // The holder runs in this process too: subtract its share (a copy of its HeldLease records) so
    // what remains is the provider's: the lease table and the remembered answers (dedupe) per lease.
    let holderCopy: HeldLease[] | undefined = structuredClone(leases);
    const holderBytes = heap() - afterGrants;
    holderCopy = undefined;
    void holderCopy;
    const bytesPerLease = Math.round((afterGrants - before - holderBytes) / ACTIVE);

    // Sustained renewals: batches of 1,000, four in flight, for RENEW_MS.
    const base = g.stats.renewals;
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (performance.now() - t0 < RENEW_MS) {
        const start = next;
        next = (next + BATCH) % ACTIVE;
        await client.renewBatch(g.topic, leases.slice(start, start + BATCH).map((lease) => ({ lease, durationMs: 600_000 })));
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const renewalsPerSec = Math.round((g.stats.renewals - base) / ((performance.now() - t0) / 1000));

    const bulk = await bulkThroughput(url, BULK_BYTES);
    return {
      grantRttP50Ms: round(percentile(samples, 50)),
      grantRttP99Ms: round(percentile(samples, 99)),
      rawEchoRttP50Ms: round(rawP50),
      grantOverRawRatio: round(percentile(samples, 50) / rawP50, 2),
      grantOverRawByRound: spread(roundRatios),
      busEchoRttP50Ms: round(busP50),
      grantOverBusRatio: round(percentile(samples, 50) / busP50, 2),
      renewalsPerSec,
      bytesPerLease,
      bulkMBps: bulk.mbps,
    };
  } finally {
    await grantor?.close();
    await Promise.all([pBus?.close(), hBus.close()]);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-leases-'));
  const t0 = performance.now();
  try {
    // aedes in a child process of its own, like Mosquitto: the broker's work never shares an event loop with either end.
    const aedes = await startBenchProcess({ role: 'aedes' });
    let aedesRun: BrokerRun;
    try {
      aedesRun = await measure(aedes.info.url!, dir, 'aedes');
    } finally {
      await aedes.close();
    }
    const mosq = await startMosquitto();
    let mosqRun: BrokerRun;
    try {
      mosqRun = await measure(mosq.url, dir, 'mosquitto');
    } finally {
      await mosq.stop();
    }
    const rawSocket = await rawSocketMBps(args.quick ? 64 * 1024 * 1024 : 256 * 1024 * 1024);
    const result = {
      bench: 'leases',
      quick: args.quick,
      layout: LAYOUT,
      activeLeases: ACTIVE,
      renewBatch: BATCH,
      aedes: aedesRun,
      mosquitto: mosqRun,
      rawSocketMBps: rawSocket,
      targetGrantOverRawRatio: 1.5,
      seconds: round((performance.now() - t0) / 1000, 1),
    };
    const line = (n: string, r: BrokerRun) =>
      `${n.padEnd(10)} grant p50 ${r.grantRttP50Ms} ms p99 ${r.grantRttP99Ms} ms | raw echo p50 ${r.rawEchoRttP50Ms} ms | ratio ${r.grantOverRawRatio} (target ≤ 1.5; by round ${r.grantOverRawByRound.min}–${r.grantOverRawByRound.max}) | bus echo p50 ${r.busEchoRttP50Ms} ms, grant/bus ${r.grantOverBusRatio} | ${r.renewalsPerSec} renewals/s with ${ACTIVE} leases | ${r.bytesPerLease} B/lease | bulk ${r.bulkMBps} MB/s`;
    report(args, result, [line('aedes', aedesRun), line('mosquitto', mosqRun), `raw loopback TCP ${rawSocket} MB/s`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
