/**
 * What an emulated device achieves, measured against its profile (bench/devices.ts): CPU
 * throughput in its group, the memory cap, and the link through the emulator.
 */
import { execFile, spawn } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { HwProfile } from '../../hw-profiles/index.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { startLinkEmulator } from '../../transports/index.js';
import { Cgroup, DeviceSlot, parseSevenZipRating, runWorkload, type HostCpu } from '../../test/harness/index.js';
import { prng, round } from './args.js';

const HOG = fileURLToPath(new URL('./memory-hog.mjs', import.meta.url));

export interface CpuFigure {
  targetMips: number;
  share: number;
  quotaUs: number;
  periodUs: number;
  /** The workload's rate in the group ÷ unthrottled, × the host's rating. */
  achievedMips: number;
  ratio: number;
  /** The unthrottled workload's rate measured just before, chunks a millisecond. */
  freeRate: number;
  /** 7-Zip's own benchmark run in the group (full runs, shares ≥ 0.2): its rating ÷ the profile's. */
  sevenZipMips?: number;
  sevenZipRatio?: number;
  limitedByHost: boolean;
}

/** Opens the profile's slot (calibrating afresh), then measures the share over a longer window. */
/** The workload's rate unthrottled, chunks a millisecond (the reference every share is measured against). */
export async function freeRate(windowMs: number): Promise<number> {
  const free = await runWorkload(windowMs);
  return free.chunks / free.wallMs;
}

export async function measureCpu(profile: HwProfile, host: HostCpu, o: { windowMs: number; freeWindowMs: number; sevenZip: boolean; fresh: boolean }): Promise<CpuFigure> {
  const slot = await DeviceSlot.open({ profile: profile.name, memory: false, freshCalibration: o.fresh });
  try {
    const cpu = slot.cpu!;
    // The unthrottled rate just before: a shared host's speed drifts over a run.
    const free = await freeRate(o.freeWindowMs);
    const inside = await runWorkload(Math.max(o.windowMs, (100 * cpu.periodUs) / 1000), slot.group); // ≥ 100 periods: a tiny quota varies period to period
    const share = inside.chunks / inside.wallMs / free;
    const achievedMips = share * host.rating;
    const target = profile.cpu!.singleCoreMips;
    const fig: CpuFigure = { freeRate: round(free, 2), targetMips: target, share: round(cpu.share, 4), quotaUs: cpu.quotaUs, periodUs: cpu.periodUs, achievedMips: round(achievedMips, 0), ratio: round(achievedMips / target), limitedByHost: cpu.limitedByHost };
    if (o.sevenZip && cpu.share >= 0.2) {
      const rating = await sevenZipIn(slot.group!);
      fig.sevenZipMips = rating;
      fig.sevenZipRatio = round(rating / target);
    }
    return fig;
  } finally {
    await slot.close();
  }
}

function sevenZipIn(group: Cgroup): Promise<number> {
  const [file, ...argv] = group.wrap(['7z', 'b', '-mmt1', '-md22']);
  return new Promise((resolve, reject) => {
    execFile(file!, argv, { timeout: 300_000 }, (err, stdout) => (err ? reject(err) : resolve(parseSevenZipRating(stdout))));
  });
}

export interface MemoryFigure {
  capBytes: number | null;
  /** Why there is no cap (the profile's RAM cannot hold Node and the agent). */
  why?: string;
  /** The group's peak usage while a process tried to take 1.25 × the cap. */
  peakBytes?: number;
  /** The hog's last RSS before the kernel stopped it. */
  lastRssBytes?: number;
  ratio?: number;
  oomKilled?: boolean;
}

/** A process in the device's group allocates past the cap: the kernel must stop it at the cap. */
export async function measureMemory(profile: HwProfile): Promise<MemoryFigure> {
  const slot = await DeviceSlot.open({ profile: profile.name, cpu: false });
  try {
    const cap = slot.memoryCapBytes;
    if (cap === null) return { capBytes: null, why: `RAM ${profile.ramBytes ?? 'unknown'} B cannot hold Node and the agent: the heap budget (${profile.heapBudgetBytes} B) is the emulation` };
    const [file, ...argv] = slot.wrap([nodeCommand(), HOG, String(Math.round(cap * 1.25))]);
    let lastRss = 0;
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; done: boolean }>((resolve) => {
      const child = spawn(file!, argv, { stdio: ['ignore', 'pipe', 'ignore'] });
      let buf = '';
      let done = false;
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          if (l === 'done') {
            done = true;
            child.kill('SIGKILL');
          } else lastRss = Number(l);
        }
      });
      child.on('exit', (code, signal) => resolve({ code, signal, done }));
    });
    const peak = slot.group!.memoryPeakBytes();
    return { capBytes: cap, peakBytes: peak, lastRssBytes: lastRss, ratio: round(peak / cap), oomKilled: !exit.done && exit.signal === 'SIGKILL' };
  } finally {
    await slot.close();
  }
}

export interface LinkFigure {
  bandwidthBps: number;
  measuredBps: number;
  bandwidthRatio: number;
  latencyMs: number;
  /** Median one-way delay the link added (half the round trip, less the same path's with no link). */
  measuredLatencyMs: number;
  latencyRatio: number;
  samples: number;
  /** Largest one-way delay seen; the jitter allows latency + jitter. */
  maxOneWayMs: number;
}

/** A TCP server that echoes (latency) or counts (bandwidth) what it receives. */
async function server(onConn: (s: Socket) => void): Promise<{ s: Server; port: number }> {
  const s = createServer(onConn);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  return { s, port: typeof a === 'object' && a ? a.port : 0 };
}

function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = createConnection({ host: '127.0.0.1', port, noDelay: true }, () => resolve(c));
    c.once('error', reject);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Round trips of 32 B on `parallel` connections at once (a slow link's samples take seconds each). */
async function roundTrips(port: number, n: number, budgetMs: number, parallel: number): Promise<number[]> {
  const rtts: number[] = [];
  const start = performance.now();
  const one = async () => {
    const c = await connect(port);
    while (rtts.length < n && performance.now() - start < budgetMs) {
      const t = performance.now();
      await new Promise<void>((resolve) => {
        c.once('data', () => resolve());
        c.write(Buffer.alloc(32, rtts.length & 0xff));
      });
      rtts.push(performance.now() - t);
    }
    c.destroy();
  };
  await Promise.all(Array.from({ length: parallel }, one));
  return rtts;
}

/** Bandwidth: bytes for ~`seconds` at the profile's rate, timed at the receiver; latency: echoes of 32 B. */
export async function measureLink(profile: HwProfile, o: { seconds: number; samples: number; latencyBudgetMs: number }): Promise<LinkFigure> {
  const link = profile.link;
  const echo = await server((s) => s.on('data', (d) => s.write(d)));
  let received = 0;
  let firstBytes = 0;
  let firstAt = 0;
  let lastAt = 0;
  const sink = await server((s) =>
    s.on('data', (d: Buffer) => {
      if (received === 0) {
        firstAt = performance.now();
        firstBytes = d.length;
      }
      received += d.length;
      lastAt = performance.now();
    }),
  );
  // Stratified draws, so the jitter's mean is ~0 in a few samples (its range is still uniform ±jitter).
  const strata = prng(7);
  let k = 0;
  const random = () => ((k++ % 16) + strata()) / 16;
  const emEcho = await startLinkEmulator({ targetPort: echo.port, link: { ...link, lossRate: 0 }, random });
  // The baseline: the same proxy path with no link imposed (its own hops are not the link's).
  const emZero = await startLinkEmulator({ targetPort: echo.port, link: { bandwidthBps: 100e9, latencyMs: 0, jitterMs: 0, lossRate: 0 } });
  // Bandwidth is timed between the first and the last delivery: without jitter there, which
  // would move either by up to ±jitter (±200 ms on a GPRS link, a sixth of its window).
  const emSink = await startLinkEmulator({ targetPort: sink.port, link: { ...link, jitterMs: 0, lossRate: 0 } });
  try {
    // Medians: the jitter is symmetric, so the median round trip is twice the latency, and a
    // GC pause or a busy core in one sample does not move it.
    const base = median(await roundTrips(emZero.port, 400, 2000, 1));
    // Slow links: several connections at once, so a few seconds hold enough round trips.
    const parallel = link.latencyMs >= 5 ? 8 : 1;
    const viaLink = await roundTrips(emEcho.port, parallel > 1 ? o.samples : 10 * o.samples, o.latencyBudgetMs, parallel);
    const oneWay = viaLink.map((r) => (r - base) / 2);
    const medianOneWay = median(oneWay);

    // At least 8 segments past the bucket's burst (1,500 B on the slowest links): 2.3 s on a GPRS link.
    const total = Math.max(8 * 1460 + 1500, Math.round((link.bandwidthBps / 8) * o.seconds));
    const c = await connect(emSink.port);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!c.write(sent + chunk.length > total ? chunk.subarray(0, total - sent) : chunk)) await new Promise((r) => c.once('drain', r));
    }
    const deadline = Date.now() + 120_000;
    while (received < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    c.destroy();
    // Timed from the first delivery: the bytes of that delivery came before the clock started.
    const measuredBps = ((received - firstBytes) * 8) / ((lastAt - firstAt) / 1000);
    return {
      bandwidthBps: link.bandwidthBps,
      measuredBps: round(measuredBps, 0),
      bandwidthRatio: round(measuredBps / link.bandwidthBps),
      latencyMs: link.latencyMs,
      measuredLatencyMs: round(medianOneWay, 3),
      latencyRatio: link.latencyMs > 0 ? round(medianOneWay / link.latencyMs) : NaN,
      samples: viaLink.length,
      maxOneWayMs: round(Math.max(...oneWay), 3),
    };
  } finally {
    await emEcho.close();
    await emZero.close();
    await emSink.close();
    echo.s.close();
    sink.s.close();
  }
}
