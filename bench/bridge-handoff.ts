/**
 * The live handoff's figures, the `handoff` part of bench/bridge.ts (its JSON's `handoff` key).
 *
 * Real agent processes (the built `ferry start`, test/helpers/agent-process.ts) on one broker in a
 * process of its own (aedes in a child process; Mosquitto's binary), paired through their control
 * sockets (`pair`, `pair-confirm`), moving the write-heavy app bench/apps/writer.mjs (300 slots of
 * 3,500-character strings, one heap line each: about 1.2 MiB of lines) with the control `migrate`
 * command, while a client (a Ferry bus here) keeps publishing `app.call` requests (`write`: two
 * random slots rewritten per call) to the instance's mailbox at a fixed rate. Per broker:
 * - downtimeMs p50 / max over N moves rpi-4b → rpi-4b and back (the first to a fresh destination),
 *   beside downtimeLimitMs (default 300): max ≤ limit, p50 ≤ 30 ms; aborts counted apart with their
 *   codes; the median switchSteps (where the pause goes); what the client saw (slowest request);
 * - stopAndCopyDowntimeMs: p50 of the same heap moved with {precopy: false} (pause, copy it all,
 *   resume), under the same load; downtimeOverStopAndCopy = downtime p50 ÷ stop-and-copy p50;
 * - wireBytesOverMissingBytes: payload bytes of the bridge frames published on the destination's
 *   channel topic during the first move (to a fresh destination, under load), seen by a bare MQTT
 *   observer, ÷ report.bytesMissing (target ≤ 1.1); split into wire ÷ bytesSent (framing, sealing)
 *   and bytesSent ÷ bytesMissing (lines the workload dirtied and that were sent again);
 * - returnBytesOverHeapBytes: with the client stopped, the instance moves X → Y, 1% of its slots are
 *   rewritten on Y, and it moves back: wire bytes of that return ÷ report.heapBytes (target ≤ 0.05);
 * - totalTimeOverLinkLimit: a move to an android-phone agent whose broker connection goes through
 *   the link emulator with the profile's link: report.totalMs ÷ (bytesSent ÷ link bytes/s), with
 *   the workload at a rate the link can carry (PHONE_RATE).
 * Targets are checked (`pass`) but never fail the run. HANDOFF_DEBUG=1 prints every move's report
 * and the agents' log lines (at info) on stderr.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MoveReport } from '../agent/bridge/move-report.js';
import type { MoveWatch } from '../agent/bridge/migrations.js';
import { channelTopic } from '../agent/bridge/channel.js';
import { getProfile } from '../hw-profiles/index.js';
import { appMailboxTopic, connectBus } from '../transports/index.js';
import { startLinkEmulator, type LinkEmulator } from '../transports/link-emulator.js';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../test/helpers/agent-process.js';
import { round } from './lib/args.js';
import { tag as benchTag } from './lib/transport-bench.js';
import { observe, type Observer } from './bridge-setup.js';

const WRITER_APP = fileURLToPath(new URL('./apps/writer.mjs', import.meta.url));
const INSTANCE = 'writer';
/**
 * The workload: `write` calls per second and slots rewritten per call (about 800 KB/s of slot lines,
 * two thirds of the heap's slots a second, plus the lines of the replies the runtime keeps); the
 * phone's move gets PHONE_RATE (its link carries 2.5 MB/s).
 */
const RATE = 100;
const SLOTS_PER_CALL = 2;
const PHONE_RATE = 30;
const PHONE_LIMIT_MS = 1000;
const MAX_IN_FLIGHT = 64;
const REQUEST_TIMEOUT_MS = 30_000;
export const HANDOFF_TARGETS = { downtimeP50Ms: 30, wireBytesOverMissingBytes: 1.1, returnBytesOverHeapBytes: 0.05 };

export interface HandoffPlan {
  quick: boolean;
  /** Moves rpi-4b ↔ rpi-4b for the downtime figures. */
  moves: number;
  stopAndCopyMoves: number;
  phone: boolean;
  /** Options of every move (with the stop-and-copy ones' own on top). */
  moveOptions: Record<string, unknown>;
  /** No new move of the downtime series starts after this long (ms): aborts on a busy machine must not stretch a quick run. */
  movesBudgetMs: number;
}

type Stat = { p50: number; max: number };

interface HandoffBrokerRun {
  moves: number;
  moved: number;
  aborted: number;
  abortCodes: Record<string, number>;
  downtimeMs: Stat;
  /** Every moved move's downtime, in order. */
  downtimesMs: number[];
  downtimeLimitMs: number;
  switchStepsMedian: Record<string, number>;
  totalMs: Stat;
  rounds: Stat;
  /** The slowest request the client saw per move (issued while it ran): p50 and max over the moves. */
  clientSlowestMs: Stat;
  /** bytesSent ÷ heapBytes of the loaded moves after the first (each destination holds an older version). */
  loadedMoveBytesOverHeapBytes: Stat;
  /** The pause of moves that aborted after pausing (resumed on the origin). */
  abortedDowntimeMs: Stat;
  stopAndCopyDowntimeMs: number;
  stopAndCopyDowntimesMs: number[];
  downtimeOverStopAndCopy: number;
  /** The heap's lines at the first and the last loaded move: it grows with the replies the runtime keeps for exactly-once. */
  heapBytes: number;
  heapBytesLast: number;
  fresh: { wireBytes: number; bytesSent: number; bytesMissing: number; wireBytesOverMissingBytes: number; wireOverBytesSent: number; bytesSentOverMissing: number; rounds: number };
  /** The wire bytes count every attempt's frames (an aborted one's too). */
  return: { attempts: number; wireBytes: number; heapBytes: number; bytesSent: number; linesSent: number; linesReused: number; returnBytesOverHeapBytes: number } | { failed: string };
  phone: { totalMs: number; bytesSent: number; heapBytes: number; linkBytesPerSec: number; totalTimeOverLinkLimit: number; downtimeMs: number; downtimeLimitMs: number; rounds: number; rttMs: number; switchSteps: MoveReport['switchSteps']; rate: number } | { skipped: string } | { aborted: string };
  client: { requests: number; answered: number; errors: number; ratePerSec: number };
  warnings: string[];
  seconds: number;
  phaseSeconds: Record<string, number>;
  pass: { downtimeMaxWithinLimit: boolean; downtimeP50: boolean; wireBytesOverMissingBytes: boolean; returnBytesOverHeapBytes: boolean };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const stat = (xs: number[], digits = 1): Stat => ({ p50: round(median(xs), digits), max: xs.length ? round(Math.max(...xs), digits) : NaN });

// ---- agents ----

interface Agent {
  id: string;
  proc: AgentProcess;
  control<T = unknown>(cmd: string, args?: Record<string, unknown>): Promise<T>;
}

async function startAgent(root: string, id: string, profile: string, brokerUrl: string): Promise<Agent> {
  const dir = mkdtempSync(join(root, `${id}-`));
  const proc = startAgentProcess(dir, ['--device-id', id, '--profile', profile, '--broker', brokerUrl, '--label', id, '--log-level', process.env.HANDOFF_DEBUG ? 'info' : 'warn']);
  await proc.ready;
  return { id, proc, control: (cmd, args) => proc.control(cmd, args) as Promise<never> };
}

/** Pairs a with b over their control sockets: a asks, b accepts once the request is in, both confirm the code. */
async function pairAgents(a: Agent, b: Agent): Promise<void> {
  const asking = a.control<{ code: string }>('pair', { peer: b.id });
  asking.catch(() => undefined);
  const deadline = performance.now() + 20_000;
  for (;;) {
    const v = await b.control<{ pending: Array<{ peer: string }> }>('peers', { check: false });
    if (v.pending.some((p) => p.peer === a.id)) break;
    if (performance.now() > deadline) throw new Error(`${a.id}'s pairing request never reached ${b.id}`);
    await sleep(20);
  }
  const cb = await b.control<{ code: string }>('pair', { peer: a.id, accept: true });
  const ca = await asking;
  if (ca.code !== cb.code) throw new Error(`pairing codes differ: ${ca.code} vs ${cb.code}`);
  await Promise.all([a.control('pair-confirm', { peer: b.id, yes: true, code: ca.code }), b.control('pair-confirm', { peer: a.id, yes: true, code: cb.code })]);
}

/** One move through the control channel (`migrate`, then `migrate-watch` until its report); a refusal at the start is an aborted report. */
async function move(from: Agent, to: Agent, options: Record<string, unknown> = {}): Promise<MoveReport> {
  let id: string;
  try {
    id = (await from.control<{ id: string }>('migrate', { instance: INSTANCE, peer: to.id, options })).id;
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'ERROR';
    return { outcome: 'aborted', code, message: String(e), downtimeMs: 0 } as MoveReport;
  }
  let after = 0;
  for (;;) {
    const w = await from.control<MoveWatch>('migrate-watch', { id, after, waitMs: 5000 });
    if (w.done) return w.done;
    after = w.events.at(-1)?.seq ?? after;
  }
}

/**
 * A move a figure needs: tried up to `attempts` times (an abort for want of convergence after a slow
 * switch lowers the origin's estimate, so a retry can go through); the last report and the tries.
 */
async function moveTrying(from: Agent, to: Agent, options: Record<string, unknown>, attempts = 3): Promise<[MoveReport, number]> {
  let r: MoveReport | undefined;
  let n = 0;
  while (n < attempts && r?.outcome !== 'moved') (n++, debug((r = await move(from, to, options))));
  return [r!, n];
}

/** HANDOFF_DEBUG=1: every move's report on stderr. */
function debug(r: MoveReport): void {
  if (process.env.HANDOFF_DEBUG) console.error(JSON.stringify(r));
}

// ---- the workload ----

interface Sample {
  t0: number;
  ms: number;
  ok: boolean;
}

interface Workload {
  samples: Sample[];
  setRate(perSec: number): void;
  /** Stops issuing and waits for every request in flight. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

/** A Ferry bus publishing `app.call` write requests to the instance's mailbox, `perSec` a second (at most MAX_IN_FLIGHT waiting; ticks missed past that are dropped). */
async function startWorkload(url: string): Promise<Workload> {
  const bus = await connectBus({ url, deviceId: `bench-writer-${benchTag()}`, maxInFlight: 2 * MAX_IN_FLIGHT, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  const topic = appMailboxTopic(INSTANCE);
  const samples: Sample[] = [];
  const pending = new Set<Promise<void>>();
  let rate = 0;
  let seed = 1;
  let from = performance.now();
  let issued = 0;
  const fire = () => {
    const t0 = performance.now();
    const p = bus
      .request(topic, 'app.call', { handler: 'write', message: { n: SLOTS_PER_CALL, seed: seed++ } }, { timeoutMs: REQUEST_TIMEOUT_MS })
      .then(
        (env) => void samples.push({ t0, ms: performance.now() - t0, ok: env.type === 'app.call.ok' }),
        () => void samples.push({ t0, ms: performance.now() - t0, ok: false }),
      )
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  const timer = setInterval(() => {
    if (rate === 0) return;
    const due = Math.floor(((performance.now() - from) * rate) / 1000);
    while (issued < due && pending.size < MAX_IN_FLIGHT) (issued++, fire());
    issued = due;
  }, 2);
  return {
    samples,
    setRate(perSec) {
      rate = perSec;
      from = performance.now();
      issued = 0;
    },
    async stop() {
      rate = 0;
      while (pending.size > 0) await Promise.all([...pending]);
    },
    async close() {
      clearInterval(timer);
      rate = 0;
      await Promise.allSettled([...pending]);
      await bus.close();
    },
  };
}

/** Payload bytes the observer saw on `topic` from index `i` on. */
const wireSince = (obs: Observer, i: number, topic: string) => obs.seen.slice(i).reduce((n, s) => n + (s.topic === topic ? s.bytes : 0), 0);

// ---- one broker ----

/**
 * The whole scenario on one broker. `port`: the broker's loopback port, for the phone's emulated link.
 */
export async function measureHandoffOn(url: string, port: number, root: string, plan: HandoffPlan): Promise<HandoffBrokerRun> {
  const t0 = performance.now();
  const phases: Record<string, number> = {};
  let lapAt = t0;
  const lap = (name: string) => {
    const now = performance.now();
    phases[name] = round((now - lapAt) / 1000, 2);
    lapAt = now;
  };
  const id = benchTag();
  let link: LinkEmulator | undefined;
  const phoneLink = getProfile('android-phone').link;
  if (plan.phone) link = await startLinkEmulator({ targetPort: port, link: phoneLink });
  const agents: Agent[] = [];
  let obs: Observer | undefined;
  let load: Workload | undefined;
  try {
    const started = await Promise.all([
      startAgent(root, `hoa-${id}`, 'rpi-4b', url),
      startAgent(root, `hob-${id}`, 'rpi-4b', url),
      ...(link ? [startAgent(root, `hop-${id}`, 'android-phone', link.url)] : []),
    ]);
    agents.push(...started);
    const [A, B, P] = started as [Agent, Agent, Agent | undefined];
    await pairAgents(A, B);
    if (P) await Promise.all([pairAgents(A, P), pairAgents(B, P)]);
    await A.control('install', { path: WRITER_APP });
    await A.control('run', { app: INSTANCE });
    // The observer subscribes only while a wire figure is taken: it doubles what the broker forwards.
    obs = await observe(url);
    load = await startWorkload(url);
    const L = load;
    L.setRate(RATE);
    lap('setup');
    await sleep(plan.quick ? 200 : 500);

    // Downtime over N loaded moves A ↔ B; the first that succeeds goes to a fresh destination (an
    // aborted move is undone there), the wire figure.
    let here = A;
    let there = B;
    const reports: MoveReport[] = [];
    const slowest: number[] = [];
    let fresh: HandoffBrokerRun['fresh'] | undefined;
    const loopEnd = performance.now() + plan.movesBudgetMs;
    for (let i = 0; i < plan.moves && performance.now() < loopEnd; i++) {
      const mark = obs?.seen.length ?? 0;
      const ts = performance.now();
      const r = await move(here, there, plan.moveOptions);
      const te = performance.now();
      reports.push(r);
      debug(r);
      const during = L.samples.filter((s) => s.t0 >= ts && s.t0 <= te).map((s) => s.ms);
      if (during.length) slowest.push(Math.max(...during));
      if (!fresh && r.outcome === 'moved' && obs) {
        await obs.quiet();
        const wire = wireSince(obs, mark, channelTopic(there.id));
        await obs.close();
        obs = undefined;
        fresh = {
          wireBytes: wire,
          bytesSent: r.bytesSent,
          bytesMissing: r.bytesMissing,
          wireBytesOverMissingBytes: round(wire / r.bytesMissing, 3),
          wireOverBytesSent: round(wire / r.bytesSent, 3),
          bytesSentOverMissing: round(r.bytesSent / r.bytesMissing, 3),
          rounds: r.rounds,
        };
      }
      if (r.outcome === 'moved') [here, there] = [there, here];
      await sleep(plan.quick ? 60 : 150); // the app runs (and dirties lines) where it arrived before it moves again
    }
    const moved = reports.filter((r) => r.outcome === 'moved');
    const aborted = reports.filter((r) => r.outcome !== 'moved');
    const abortCodes: Record<string, number> = {};
    for (const r of aborted) abortCodes[r.code ?? '?'] = (abortCodes[r.code ?? '?'] ?? 0) + 1;
    const steps: Record<string, number> = {};
    for (const k of ['pausedMs', 'preparedMs', 'decidedMs', 'handedOverMs', 'runningMs'] as const) steps[k] = round(median(moved.filter((r) => r.switchSteps).map((r) => r.switchSteps![k])), 1);

    lap('moves');

    // Stop and copy, the same heap under the same load.
    const sac: number[] = [];
    for (let i = 0; i < plan.stopAndCopyMoves; i++) {
      const r = await move(here, there, { ...plan.moveOptions, precopy: false, downtimeLimitMs: 60_000 });
      debug(r);
      if (r.outcome === 'moved') (sac.push(r.downtimeMs), ([here, there] = [there, here]));
      await sleep(plan.quick ? 60 : 150);
    }

    lap('stopAndCopy');

    // The return: the client stopped, X → Y, 1% of the slots rewritten on Y, Y → X measured.
    await L.stop();
    let ret: HandoffBrokerRun['return'] = { failed: 'the move before it aborted' };
    const [out] = await moveTrying(here, there, plan.moveOptions, 5);
    if (out.outcome === 'moved') {
      [here, there] = [there, here];
      await here.control('call', { instance: INSTANCE, handler: 'touch', message: { fraction: 0.01 } });
      const O = (obs = await observe(url));
      const [back, attempts] = await moveTrying(here, there, plan.moveOptions, 5);
      if (back.outcome === 'moved') {
        [here, there] = [there, here];
        await O.quiet();
        const wire = wireSince(O, 0, channelTopic(here.id));
        await O.close();
        obs = undefined;
        ret = { attempts, wireBytes: wire, heapBytes: back.heapBytes, bytesSent: back.bytesSent, linesSent: back.linesSent, linesReused: back.linesReused, returnBytesOverHeapBytes: round(wire / back.heapBytes, 4) };
      } else ret = { failed: `the return aborted: ${back.code}` };
    }

    lap('return');

    // The phone: a move to the android-phone agent behind its emulated link, under a lighter load.
    // Its limit is PHONE_LIMIT_MS: three round trips of that link alone come near the default 300 ms.
    let phone: HandoffBrokerRun['phone'] = { skipped: 'not in the quick plan' };
    if (P) {
      L.setRate(PHONE_RATE);
      await sleep(300);
      const [r] = await moveTrying(here, P, { ...plan.moveOptions, downtimeLimitMs: PHONE_LIMIT_MS }, 2);
      await L.stop();
      const bps = phoneLink.bandwidthBps / 8;
      phone =
        r.outcome === 'moved'
          ? { totalMs: r.totalMs, bytesSent: r.bytesSent, heapBytes: r.heapBytes, linkBytesPerSec: bps, totalTimeOverLinkLimit: round(r.totalMs / ((r.bytesSent / bps) * 1000), 2), downtimeMs: r.downtimeMs, downtimeLimitMs: r.downtimeLimitMs, rounds: r.rounds, rttMs: r.rttMs, switchSteps: r.switchSteps, rate: PHONE_RATE }
          : { aborted: `${r.code}: ${r.message}` };
    }

    lap('phone');
    const dts = moved.map((r) => r.downtimeMs);
    const limit = moved[0]?.downtimeLimitMs ?? 300;
    const samples = L.samples;
    const warnings = agents.flatMap((a) => a.proc.logs.filter((l) => (l.level === 'error' || l.level === 'warn') && l.event !== 'move.aborted').map((l) => `${a.id}: ${String(l.event)}${l.code ? ` ${String(l.code)}` : ''}`));
    return {
      moves: reports.length,
      moved: moved.length,
      aborted: aborted.length,
      abortCodes,
      downtimeMs: stat(dts),
      downtimesMs: dts.map((x) => round(x, 1)),
      downtimeLimitMs: limit,
      switchStepsMedian: steps,
      totalMs: stat(moved.map((r) => r.totalMs), 0),
      rounds: stat(moved.map((r) => r.rounds), 0),
      clientSlowestMs: stat(slowest),
      loadedMoveBytesOverHeapBytes: stat(moved.slice(1).map((r) => r.bytesSent / r.heapBytes), 3),
      abortedDowntimeMs: stat(aborted.map((r) => r.downtimeMs)),
      stopAndCopyDowntimeMs: round(median(sac), 1),
      stopAndCopyDowntimesMs: sac.map((x) => round(x, 1)),
      downtimeOverStopAndCopy: round(median(dts) / median(sac), 3),
      heapBytes: moved[0]?.heapBytes ?? NaN,
      heapBytesLast: moved.at(-1)?.heapBytes ?? NaN,
      fresh: fresh ?? { wireBytes: NaN, bytesSent: NaN, bytesMissing: NaN, wireBytesOverMissingBytes: NaN, wireOverBytesSent: NaN, bytesSentOverMissing: NaN, rounds: 0 },
      return: ret,
      phone,
      client: { requests: samples.length, answered: samples.filter((s) => s.ok).length, errors: samples.filter((s) => !s.ok).length, ratePerSec: RATE },
      warnings: [...new Set(warnings)].slice(0, 10),
      seconds: round((performance.now() - t0) / 1000, 1),
      phaseSeconds: phases,
      pass: {
        downtimeMaxWithinLimit: dts.length > 0 && Math.max(...dts) <= limit,
        downtimeP50: median(dts) <= HANDOFF_TARGETS.downtimeP50Ms,
        wireBytesOverMissingBytes: (fresh?.wireBytesOverMissingBytes ?? Infinity) <= HANDOFF_TARGETS.wireBytesOverMissingBytes,
        returnBytesOverHeapBytes: 'returnBytesOverHeapBytes' in ret && ret.returnBytesOverHeapBytes <= HANDOFF_TARGETS.returnBytesOverHeapBytes,
      },
    };
  } finally {
    if (process.env.HANDOFF_DEBUG) for (const a of agents) for (const l of a.proc.logs) console.error(a.id, JSON.stringify(l));
    await load?.close().catch(() => undefined);
    await obs?.close().catch(() => undefined);
    // A graceful stop (each agent checkpoints), SIGKILL for one that hangs.
    await Promise.all(agents.map(async (a) => (await Promise.race([a.proc.kill('SIGTERM'), sleep(10_000)]), await a.proc.kill('SIGKILL'))));
    await link?.close();
  }
}

/** The agents run from the built command: without dist/ there is nothing to measure. */
export function checkBuilt(): void {
  if (!existsSync(FERRY_MAIN)) throw new Error(`the handoff part runs real agents from the built command (${FERRY_MAIN}): run npm run build first`);
}

export type HandoffRun = HandoffBrokerRun | { skipped: string };

/** The quick plan keeps `bench:bridge -- --quick` under 30 s: fewer moves, on aedes only, no phone, a shorter watchdog. */
export function handoffPlan(quick: boolean): HandoffPlan {
  return quick
    ? { quick, moves: 6, stopAndCopyMoves: 2, phone: false, moveOptions: { maxTotalMs: 2000 }, movesBudgetMs: 4000 }
    : { quick, moves: 20, stopAndCopyMoves: 5, phone: true, moveOptions: { maxTotalMs: 15_000 }, movesBudgetMs: 600_000 };
}

interface Figure {
  value: number | null;
  target: string;
  pass: boolean | null;
}

/** A figure that could not be measured (NaN) is null, and misses its target if it has one. */
const fig = (value: number, target: string, pass: boolean | null): Figure => ({ value: Number.isFinite(value) ? value : null, target, pass: Number.isFinite(value) || pass === null ? pass : false });

/**
 * The `handoff` part of the bench's JSON: the plan and workload, each broker's run, and the
 * headline figures (the worse of the brokers that ran) each beside its target with a pass flag.
 */
export function handoffResult(plan: HandoffPlan, runs: Record<string, HandoffRun>): Record<string, unknown> {
  const ran = Object.values(runs).filter((r): r is HandoffBrokerRun => !('skipped' in r));
  const worst = (f: (r: HandoffBrokerRun) => number) => (ran.length ? Math.max(...ran.map(f)) : NaN);
  const limit = worst((r) => r.downtimeLimitMs);
  const p50 = worst((r) => r.downtimeMs.p50);
  const max = worst((r) => r.downtimeMs.max);
  const wire = worst((r) => r.fresh.wireBytesOverMissingBytes);
  const ret = worst((r) => ('returnBytesOverHeapBytes' in r.return ? r.return.returnBytesOverHeapBytes : NaN));
  const link = worst((r) => ('totalTimeOverLinkLimit' in r.phone ? r.phone.totalTimeOverLinkLimit : NaN));
  const aborts = ran.reduce((n, r) => n + r.aborted, 0);
  return {
    layout: 'real agent processes (the built ferry start) paired over their control sockets; broker in its own process; moves started with the control migrate command; the client (a Ferry bus in the bench process) publishing app.call write requests to the mailbox throughout; a bare MQTT observer on the bridge topics; the phone agent behind the link emulator (in the bench process)',
    plan,
    workload: { app: 'bench/apps/writer.mjs', callsPerSec: RATE, slotsPerCall: SLOTS_PER_CALL, slotBytes: 3500, slots: 300, phoneCallsPerSec: PHONE_RATE, phoneDowntimeLimitMs: PHONE_LIMIT_MS },
    figures: {
      downtimeMaxMs: fig(max, `≤ ${limit} (downtimeLimitMs; aborts apart: ${aborts})`, max <= limit),
      downtimeP50Ms: fig(p50, `≤ ${HANDOFF_TARGETS.downtimeP50Ms}`, p50 <= HANDOFF_TARGETS.downtimeP50Ms),
      downtimeOverStopAndCopy: fig(worst((r) => r.downtimeOverStopAndCopy), 'a ratio (stop-and-copy is the baseline)', null),
      wireBytesOverMissingBytes: fig(wire, `≤ ${HANDOFF_TARGETS.wireBytesOverMissingBytes}`, wire <= HANDOFF_TARGETS.wireBytesOverMissingBytes),
      returnBytesOverHeapBytes: fig(ret, `≤ ${HANDOFF_TARGETS.returnBytesOverHeapBytes}`, ret <= HANDOFF_TARGETS.returnBytesOverHeapBytes),
      totalTimeOverLinkLimit: fig(link, 'none set (the link limit is 1)', null),
    },
    aborts,
    ...runs,
    loadAverage: loadavg().map((x) => round(x, 2)),
    cpus: cpus().length,
  };
}

/** Summary lines: one per broker, then the figures against their targets. */
export function handoffSummary(result: Record<string, unknown>, runs: Record<string, HandoffRun>): string[] {
  const figures = result.figures as Record<string, Figure>;
  const f = Object.entries(figures).map(([k, v]) => `${k} ${v.value ?? '—'} (${v.target}${v.pass === null ? '' : v.pass ? ': met' : ': missed'})`);
  return [...Object.entries(runs).map(([n, r]) => handoffLine(n, r)), `handoff figures (worse of the brokers): ${f.join('; ')}`];
}

/** The one-line summary of a broker's run. */
export function handoffLine(name: string, r: HandoffRun): string {
  if ('skipped' in r) return `handoff ${name.padEnd(10)} skipped: ${r.skipped}`;
  const s = r.switchStepsMedian;
  const ph = 'totalMs' in r.phone ? `phone move ${r.phone.totalMs} ms for ${r.phone.bytesSent} B: ×${r.phone.totalTimeOverLinkLimit} the link's limit` : `phone: ${'skipped' in r.phone ? r.phone.skipped : r.phone.aborted}`;
  return (
    `handoff ${name.padEnd(10)} ${r.moved}/${r.moves} moves (aborts ${r.aborted}${r.aborted ? ` ${JSON.stringify(r.abortCodes)}` : ''}), downtime p50 ${r.downtimeMs.p50} ms (target ≤ ${HANDOFF_TARGETS.downtimeP50Ms}), max ${r.downtimeMs.max} ms (limit ${r.downtimeLimitMs}); ` +
    `switch steps p50: paused ${s.pausedMs}, prepared ${s.preparedMs}, decided ${s.decidedMs}, handed over ${s.handedOverMs}, running ${s.runningMs} ms | ` +
    `stop-and-copy ${r.stopAndCopyDowntimeMs} ms (downtime ×${r.downtimeOverStopAndCopy}) | wire/missing ${r.fresh.wireBytesOverMissingBytes} (target ≤ ${HANDOFF_TARGETS.wireBytesOverMissingBytes}) | ` +
    `return/heap ${'failed' in r.return ? r.return.failed : r.return.returnBytesOverHeapBytes} (target ≤ ${HANDOFF_TARGETS.returnBytesOverHeapBytes}) | ${ph} | client slowest p50 ${r.clientSlowestMs.p50} ms, ${r.client.errors} errors of ${r.client.requests}`
  );
}
