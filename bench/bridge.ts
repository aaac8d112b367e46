/**
 * Bridge benchmark: `npm run bench:bridge -- [--json] [--quick]`.
 *
 * Devices are service stacks with their own device ids and a Bridge on a temp data directory,
 * paired through the Pairing API, on aedes (in a child process of its own, as in the other
 * benchmarks) and on Mosquitto (skipped when it is not installed). Per broker:
 * - sealedOverPlainThroughput: the sealed bulk transfer (Bridge.sendBulk) against the plain
 *   chunked one (sendBulk → BulkReceiver) of the same random payload from a device in this
 *   process to one in a child process (two devices, two processes: bench/bridge-peer.ts), same
 *   chunk size and window, alternated over ROUNDS rounds (order swapped every round): median
 *   MB/s of each (min, max) and the ratio of the medians (target ≥ 0.8), and cpuMsPerMB, the CPU
 *   time per MB moved of the sender's and of the receiver's process;
 * - handshakeRoundTrips / handshakeFrames: the frames of one fresh Noise KK handshake as a bare
 *   MQTT observer on `ferry/v1/bridge/#` sees them (hs1 one way, hs2 back: one round trip);
 * - handshakeMs: median of fresh handshakes (the initiator drops its sessions first), sampled
 *   alternately with busRequestMs, an envelope request/response (bus.request to a served
 *   topic) between the same two buses; handshakeOverPingRatio = handshakeMs / busRequestMs;
 * - pairingMessages / pairingMessageBytes / pairingTypes: the pairing envelopes of one complete
 *   pairing on `ferry/v1/bridge/+/pair`; pairingMs: median machine time of a pairing with
 *   instant confirmations (re-pairings of the same two devices).
 * The top-level sealedOverPlainThroughput is the lower of the brokers'. `handoff`: the live
 * handoff's figures with real agent processes on the same brokers (bench/bridge-handoff.ts;
 * `--quick`: aedes only, fewer moves). `fleet` (bench/fleet-choice.ts): chosenBytesOverBestBytes,
 * summary bytes per 1,000 lines and their refresh traffic, evacuation time over the sum of single
 * moves; `bundles` (bench/fleet-bundles.ts): an offline bundle's size over the heap it carries.
 * Targets are checked (`pass`) but never fail the run. Prints one JSON object as its last line.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { sendBulk } from '../transports/bulk-transfer.js';
import { startMosquitto } from '../test/helpers/brokers.js';
import { parseBenchArgs, report, round } from './lib/args.js';
import { startBenchProcess } from './lib/bench-process.js';
import { tag as benchTag } from './lib/transport-bench.js';
import { startBenchPeer, type BenchPeer } from './bridge-peer.js';
import { observe, pair, startDevice, tempRoot, type Device } from './bridge-setup.js';
import { checkBuilt, handoffPlan, handoffResult, handoffSummary, measureHandoffOn, type HandoffRun } from './bridge-handoff.js';
import { measureBundles, type BundleFigures } from './fleet-bundles.js';
import { measureFleet, type FleetFigures } from './fleet-choice.js';

const args = parseBenchArgs();
const BYTES = (args.quick ? 2 : 16) * 1024 * 1024;
const WARMUP_BYTES = (args.quick ? 1 : 4) * 1024 * 1024;
/** Many short rounds: the median holds against a busy machine better than a few long ones. */
const ROUNDS = args.quick ? 5 : 9;
const CHUNK = 65_536;
/** The sealed bulk's default window; the plain one is given the same. */
const WINDOW = 16;
const HANDSHAKES = args.quick ? 10 : 60;
const HS_WARMUP = 5;
const PAIRINGS = args.quick ? 2 : 7;
const TARGETS = { sealedOverPlainThroughput: 0.8 };
const LAYOUT =
  'pairing and handshakes: both devices (service stack + Bridge each) in the bench process; throughput: from a device in the bench process to one in a child process (bench/bridge-peer.ts); broker in its own process (aedes: a child process; mosquitto: its binary)';

type Spread = { median: number; min: number; max: number };

interface BrokerRun {
  bytes: number;
  rounds: number;
  plainMBps: Spread;
  sealedMBps: Spread;
  sealedOverPlainThroughput: number;
  /** sealed / plain within each round: the spread of the headline ratio. */
  sealedOverPlainByRound: Spread;
  /** CPU time per MB moved of the sending and the receiving device's process, medians: steadier than MB/s on a busy machine. */
  cpuMsPerMB: Record<'plain' | 'sealed', { sender: number; receiver: number }>;
  handshakeRoundTrips: number;
  handshakeFrames: { hs1: number; hs2: number; other: number };
  handshakeMs: number;
  busRequestMs: number;
  handshakeOverPingRatio: number;
  pairingMessages: number;
  pairingMessageBytes: number;
  pairingTypes: string[];
  pairingMs: number;
  warnings: string[];
  pass: { sealedOverPlainThroughput: boolean };
}

function spread(xs: number[], digits = 1): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: round(median(s), digits), min: round(s[0]!, digits), max: round(s[s.length - 1]!, digits) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A fresh Noise KK handshake from `a` to `b`, timed alone: `a` drops its sessions, then opens one. */
async function freshHandshake(a: Device, b: Device): Promise<number> {
  a.bridge.channels.drop(b.id);
  // The session opener is internal to Channels (every public call adds a sealed record and its
  // round trip); reached here so the figure is the handshake and nothing else.
  const channels = a.bridge.channels as unknown as { session(peer: string): Promise<unknown> };
  const t0 = performance.now();
  await channels.session(b.id);
  return performance.now() - t0;
}

async function measure(url: string, root: string): Promise<BrokerRun> {
  const id = benchTag();
  const a = await startDevice(url, `${id}-a`, root);
  let b: Device | undefined;
  let peer: BenchPeer | undefined;
  let unserve: (() => Promise<void>) | undefined;
  try {
    b = await startDevice(url, `${id}-b`, root);
    const B = b;

    // One pairing and one handshake under the observer: what really goes on the bridge topics.
    const obs = await observe(url);
    let pairing: { messages: number; bytes: number; types: string[] };
    let frames: { hs1: number; hs2: number; other: number };
    try {
      await pair(a, B);
      await obs.quiet();
      const env = obs.seen.filter((s) => s.topic.endsWith('/pair'));
      pairing = { messages: env.length, bytes: env.reduce((n, s) => n + s.bytes, 0), types: env.map((s) => s.type ?? '?') };
      obs.seen.length = 0;
      await freshHandshake(a, B);
      await obs.quiet();
      const ch = obs.seen.filter((s) => s.topic.endsWith('/ch'));
      frames = { hs1: ch.filter((s) => s.kind === 1).length, hs2: ch.filter((s) => s.kind === 2).length, other: ch.filter((s) => s.kind !== 1 && s.kind !== 2).length };
    } finally {
      await obs.close();
    }

    // Pairing time: re-pairings of the same two devices (each replaces the stored keys).
    const pairMs: number[] = [];
    for (let i = 0; i < PAIRINGS; i++) pairMs.push((await pair(a, B)).ms);

    // Handshake beside a plain request/response between the same two buses, alternated.
    const topic = `bench/${id}/ping`;
    unserve = await B.bus.serve(topic, (env) => env.body);
    const ping = async () => {
      const t0 = performance.now();
      await a.bus.request(topic, 'bench.ping', null);
      return performance.now() - t0;
    };
    const hsMs: number[] = [];
    const pingMs: number[] = [];
    for (let i = 0; i < HS_WARMUP + HANDSHAKES; i++) {
      const p = await ping();
      const h = await freshHandshake(a, B);
      if (i >= HS_WARMUP) (pingMs.push(p), hsMs.push(h));
    }

    // Throughput: from this process to a device in a process of its own (two devices, two
    // processes), the same payload plain then sealed (order swapped each round), after a warm-up.
    // Both transfers resolve only once the receiver has checked the digest of the whole payload.
    peer = await startBenchPeer(url, `${id}-p`, root, BYTES);
    const P = peer;
    const codeA = a.bridge.pair(P.id, false);
    const { code } = (await P.ask({ op: 'accept', peer: a.id })) as { code: string };
    if ((await codeA).code !== code) throw new Error('pairing codes differ with the peer process');
    await Promise.all([a.bridge.confirm(P.id, true, code), P.ask({ op: 'confirm', peer: a.id, code })]);
    let n = 0;
    const cpu: Record<'plain' | 'sealed', { sender: number[]; receiver: number[] }> = { plain: { sender: [], receiver: [] }, sealed: { sender: [], receiver: [] } };
    const peerCpuUs = async () => ((await P.ask({ op: 'cpu' })) as { cpuUs: number }).cpuUs;
    /** One transfer of `data`: MB/s, and each side's CPU ms per MB into `cpu`. */
    const transfer = async (kind: 'plain' | 'sealed', data: Buffer): Promise<number> => {
      const r0 = await peerCpuUs();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      if (kind === 'plain') await sendBulk(a.bus, P.id, data, { chunkBytes: CHUNK, window: WINDOW, transferId: `${id}-${n++}` });
      else await a.bridge.sendBulk(P.id, data, { chunkBytes: CHUNK, window: WINDOW });
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const mb = data.length / 1e6;
      cpu[kind].sender.push((c.user + c.system) / 1000 / mb);
      cpu[kind].receiver.push(((await peerCpuUs()) - r0) / 1000 / mb);
      return mb / (ms / 1000);
    };
    const warm = randomBytes(WARMUP_BYTES);
    await transfer('plain', warm);
    await transfer('sealed', warm);
    for (const k of ['plain', 'sealed'] as const) (cpu[k].sender.length = 0), (cpu[k].receiver.length = 0);
    const data = randomBytes(BYTES);
    const plainR: number[] = [];
    const sealedR: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      if (r % 2 === 0) (plainR.push(await transfer('plain', data)), sealedR.push(await transfer('sealed', data)));
      else (sealedR.push(await transfer('sealed', data)), plainR.push(await transfer('plain', data)));
    }
    const ratio = median(sealedR) / median(plainR);
    return {
      bytes: BYTES,
      rounds: ROUNDS,
      plainMBps: spread(plainR),
      sealedMBps: spread(sealedR),
      sealedOverPlainThroughput: round(ratio, 2),
      sealedOverPlainByRound: spread(sealedR.map((s, i) => s / plainR[i]!), 2),
      cpuMsPerMB: {
        plain: { sender: round(median(cpu.plain.sender), 2), receiver: round(median(cpu.plain.receiver), 2) },
        sealed: { sender: round(median(cpu.sealed.sender), 2), receiver: round(median(cpu.sealed.receiver), 2) },
      },
      handshakeRoundTrips: Math.min(frames.hs1, frames.hs2),
      handshakeFrames: frames,
      handshakeMs: round(median(hsMs)),
      busRequestMs: round(median(pingMs)),
      handshakeOverPingRatio: round(median(hsMs) / median(pingMs), 2),
      pairingMessages: pairing.messages,
      pairingMessageBytes: pairing.bytes,
      pairingTypes: pairing.types,
      pairingMs: round(median(pairMs), 1),
      warnings: [...a.warnings, ...B.warnings].slice(0, 10),
      pass: { sealedOverPlainThroughput: ratio >= TARGETS.sealedOverPlainThroughput },
    };
  } finally {
    await peer?.close();
    await unserve?.().catch(() => undefined);
    await b?.close();
    await a.close();
  }
}

/** The handoff part on one broker; a failure is reported in its place, never lost with the rest. */
async function handoff(url: string, port: number, root: string): Promise<HandoffRun> {
  try {
    return await measureHandoffOn(url, port, root, handoffPlan(args.quick));
  } catch (e) {
    return { skipped: `failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

async function main(): Promise<void> {
  checkBuilt();
  const root = tempRoot();
  const t0 = performance.now();
  try {
    const aedes = await startBenchProcess({ role: 'aedes' });
    let aedesRun: BrokerRun;
    const handoffRuns: Record<string, HandoffRun> = { mosquitto: { skipped: 'quick run: aedes only' } };
    try {
      aedesRun = await measure(aedes.info.url!, root);
      handoffRuns.aedes = await handoff(aedes.info.url!, Number(new URL(aedes.info.url!).port), root);
    } finally {
      await aedes.close();
    }
    let mosqRun: BrokerRun | { skipped: string };
    let mosq: Awaited<ReturnType<typeof startMosquitto>> | undefined;
    try {
      mosq = await startMosquitto();
    } catch (e) {
      mosqRun = { skipped: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
    }
    if (mosq) {
      try {
        mosqRun = await measure(mosq.url, root);
        if (!args.quick) handoffRuns.mosquitto = await handoff(mosq.url, mosq.port, root);
      } finally {
        await mosq.stop();
      }
    }
    if (!mosq && !args.quick) handoffRuns.mosquitto = { skipped: (mosqRun! as { skipped: string }).skipped };
    const handoffRes = handoffResult(handoffPlan(args.quick), { aedes: handoffRuns.aedes!, mosquitto: handoffRuns.mosquitto! });
    // Across a fleet (agent/fleet): peer choice, summaries, evacuation; offline bundles.
    const failed = (e: unknown) => ({ skipped: `failed: ${e instanceof Error ? e.message : String(e)}` });
    const fleetRun = (): Promise<FleetFigures | { skipped: string }> => measureFleet({ quick: args.quick }).catch(failed);
    const bundlesRun = (): Promise<BundleFigures | { skipped: string }> => measureBundles({ quick: args.quick }).catch(failed);
    // The quick run measures both at once (each has its own broker and agents) to stay under 30 s.
    const [fleet, bundles] = args.quick ? await Promise.all([fleetRun(), bundlesRun()]) : [await fleetRun(), await bundlesRun()];
    const runs = [aedesRun, mosqRun!].filter((r): r is BrokerRun => !('skipped' in r));
    const worst = Math.min(...runs.map((r) => r.sealedOverPlainThroughput));
    const result = {
      bench: 'bridge',
      quick: args.quick,
      layout: LAYOUT,
      chunkBytes: CHUNK,
      window: WINDOW,
      sealedOverPlainThroughput: worst,
      handshakeRoundTrips: aedesRun.handshakeRoundTrips,
      pairingMessages: aedesRun.pairingMessages,
      aedes: aedesRun,
      mosquitto: mosqRun!,
      targets: TARGETS,
      pass: { sealedOverPlainThroughput: worst >= TARGETS.sealedOverPlainThroughput },
      handoff: handoffRes,
      chosenBytesOverBestBytes: 'skipped' in fleet ? null : fleet.chosenBytesOverBestBytes,
      summaryBytesPer1000Lines: 'skipped' in fleet ? null : fleet.summaryBytesPer1000Lines,
      summaryRefreshBytesPerHourPerPeer: 'skipped' in fleet ? null : fleet.refresh.perHourAtDefaultPerPeer,
      bundleBytesOverHeapBytes: 'skipped' in bundles ? null : bundles.bundleBytesOverHeapBytes,
      evacuationOverSingleMoves: 'skipped' in fleet ? null : fleet.evacuationOverSingleMoves,
      fleet,
      bundles,
      seconds: round((performance.now() - t0) / 1000, 1),
    };
    const line = (n: string, r: BrokerRun | { skipped: string }) =>
      'skipped' in r
        ? `${n.padEnd(10)} skipped: ${r.skipped}`
        : `${n.padEnd(10)} bulk ${r.bytes / 1048576} MiB: plain ${r.plainMBps.median} MB/s (${r.plainMBps.min}–${r.plainMBps.max}), sealed ${r.sealedMBps.median} MB/s (${r.sealedMBps.min}–${r.sealedMBps.max}), ` +
          `sealed/plain ${r.sealedOverPlainThroughput} (target ≥ 0.8; by round ${r.sealedOverPlainByRound.min}–${r.sealedOverPlainByRound.max}; CPU ms/MB sender ${r.cpuMsPerMB.plain.sender} vs ${r.cpuMsPerMB.sealed.sender}, receiver ${r.cpuMsPerMB.plain.receiver} vs ${r.cpuMsPerMB.sealed.receiver}) | ` +
          `handshake ${r.handshakeRoundTrips} round trip, ${r.handshakeMs} ms vs bus request ${r.busRequestMs} ms (×${r.handshakeOverPingRatio}) | ` +
          `pairing ${r.pairingMessages} messages (${r.pairingTypes.join(', ')}), ${r.pairingMessageBytes} B, ${r.pairingMs} ms` +
          (r.warnings.length ? ` | warnings: ${r.warnings.length}` : '');
    report(args, result, [
      line('aedes', aedesRun),
      line('mosquitto', mosqRun!),
      `sealed/plain (lower of the brokers) ${worst}: ${result.pass.sealedOverPlainThroughput ? 'meets' : 'misses'} the 0.8 target`,
      ...handoffSummary(handoffRes, { aedes: handoffRuns.aedes!, mosquitto: handoffRuns.mosquitto! }),
      'skipped' in fleet
        ? `fleet      skipped: ${fleet.skipped}`
        : `fleet      ${fleet.candidates} candidates, ${fleet.heapLines} lines: chosen ÷ best bytes ${fleet.chosenBytesOverBestBytes} (target 1.0); summary ${fleet.summaryBytesPer1000Lines} B per 1,000 lines (records ${fleet.summaryRecordBytesPer1000Lines}); refresh ${fleet.refresh.perHourAtDefaultPerPeer} B/h per peer at 60 s (keepalive ${fleet.refresh.keepaliveBytes} B); evacuation ÷ single moves ${fleet.evacuationOverSingleMoves} (${fleet.evacuationMs} ms vs ${fleet.singleMovesMs.join(' + ')})`,
      'skipped' in bundles
        ? `bundles    skipped: ${bundles.skipped}`
        : `bundles    ${bundles.bundleBytes} B for a ${bundles.heapBytes} B heap (× ${bundles.bundleBytesOverHeapBytes}); export ${bundles.exportMs} ms, import ${bundles.importMs} ms`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
