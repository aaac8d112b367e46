/**
 * Fault tests of the live handoff: two real agents (an rpi-4b origin, an android-phone destination)
 * paired on one broker, the `tally` app running on the origin, and a client streaming numbered
 * requests into its mailbox while `ferry migrate` runs with one fault armed (FERRY_FAULT, see
 * agent/bridge/fault-points.ts). After recovery: the instance runs on exactly one device, every
 * request is applied exactly once and in order, every answer matches the final ledger.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { controlRequest } from '../../agent/cli/control-client.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import type { MoveReport } from '../../agent/bridge/move-report.js';
import { appMailboxTopic, connectBus, ENVELOPE_VERSION, inboxTopic, startLinkEmulator, type LinkEmulator, type MqttBus } from '../../transports/index.js';
import type { LinkProfile } from '../../hw-profiles/index.js';
import { Device, Dirs, pairViaControl, until } from '../bridge/helpers.js';
import { FERRY_MAIN, startAgentProcess } from '../helpers/agent-process.js';
import type { TestBroker } from '../helpers/brokers.js';
import { migrate, type Migrated } from './helpers.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { HarnessRig, type DeviceSlot } from '../harness/index.js';

export const INSTANCE = 'tally';

/**
 * The app under test: `apply` appends the request's number to a list in the heap (loss,
 * duplication and order are then visible); `grow` adds incompressible filler so a move has a
 * heap of some size to send (the link tests need the cut to land mid-transfer).
 */
const TALLY_SOURCE = `// Fault tests of the handoff: an ordered list of applied request numbers, and filler.
export default {
  name: 'tally',
  version: '1.0.0',
  requirements: { minHeapBytes: 16 * 1024 },
  init(ctx) {
    ctx.root.seen = [];
    ctx.root.pad = [];
  },
  handlers: {
    apply(ctx, m) {
      ctx.root.seen.push(m.n);
      return { n: m.n, length: ctx.root.seen.length };
    },
    list(ctx) {
      return ctx.root.seen.slice();
    },
    grow(ctx, m) {
      // One heap object per call (an object holds at most 64 KiB), incompressible.
      let x = (m.seed * 2654435761) >>> 0;
      const chunk = [];
      for (let i = 0; i < m.count; i++) {
        let s = '';
        for (let j = 0; j < m.size; j++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          s += String.fromCharCode(33 + ((x >>> 16) % 90));
        }
        chunk.push(s);
      }
      ctx.root.pad.push(chunk);
      return ctx.root.pad.length;
    },
  },
};
`;

/** What `ferry apps --json` shows. */
interface AppsView {
  instances: Array<{ instance: string; state: string }>;
}

/** A device whose agent runs with FERRY_FAULT set (once: `restart()` starts it again without). */
export class FaultDevice extends Device {
  fault: string | undefined;
  /** Log lines of earlier runs of this device's agent (a killed agent's lines are kept here). */
  readonly pastLogs: Array<Record<string, unknown>> = [];

  constructor(id: string, profile: string, dataDir: string, private readonly startArgs: string[], slot?: DeviceSlot) {
    super(id, profile, dataDir, startArgs, slot);
  }

  override async start(): Promise<this> {
    const args = ['--device-id', this.id, '--profile', this.profile, ...this.startArgs];
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.FERRY_FAULT;
    if (this.fault !== undefined) env.FERRY_FAULT = this.fault;
    const argv = [nodeCommand(), ...AGENT_NODE_FLAGS, FERRY_MAIN, 'start', '--data', this.dataDir, ...args];
    this.agent = startAgentProcess(this.dataDir, args, { argv: this.slot ? this.slot.wrap(argv) : argv, env });
    await this.agent.ready;
    return this;
  }

  /** Resolves when the agent process has exited (a `kill` fault fired). */
  async died(timeoutMs = 60_000): Promise<void> {
    const p = this.agent.proc;
    try {
      await until(`${this.id}'s agent to exit (fault ${this.fault})`, () => p.exitCode !== null || p.signalCode !== null, timeoutMs);
    } catch (e) {
      const moves = this.agent.logs.filter((l) => String(l.event).startsWith('move.') || String(l.event).startsWith('app.'));
      throw new Error(`${String(e)}; its move log: ${JSON.stringify(moves.slice(-10))}`);
    }
    expect(p.signalCode, `${this.id} was to die of SIGKILL at ${this.fault}`).toBe('SIGKILL');
  }

  /** Starts the agent again on the same data directory, with no fault armed. */
  async restart(): Promise<void> {
    this.pastLogs.push(...this.agent.logs);
    await this.agent.kill('SIGKILL');
    this.fault = undefined;
    await this.start();
  }

  allLogs(): Array<Record<string, unknown>> {
    return [...this.pastLogs, ...this.agent.logs];
  }

  /**
   * The instance's state as `ferry apps --json` shows it ('absent' when there is no record), read
   * on the control socket as that command reads it (polled: no `ferry` process per look).
   */
  async state(instance = INSTANCE): Promise<string> {
    const apps = (await controlRequest(this.dataDir, 'apps')) as AppsView;
    return apps.instances.find((i) => i.instance === instance)?.state ?? 'absent';
  }
}

/**
 * A client streaming numbered `app.call` requests (`apply {n}`) into the instance's mailbox, one
 * after another (each once the broker has the one before, so the broker holds them in order),
 * and collecting the answers by number.
 */
export class Streamer {
  /** The first answer to each request: its body, or the error's code. */
  readonly answers = new Map<number, { n: number; length: number } | { code: string }>();
  /** Answers that differed from the first one for the same request (a repeat must answer the same). */
  readonly mismatches: string[] = [];
  next = 0;
  private loop: Promise<void> | undefined;
  private running = false;
  private readonly tag = `s${Date.now().toString(36)}`;

  private constructor(private readonly bus: MqttBus) {}

  static async connect(brokerUrl: string): Promise<Streamer> {
    const bus = await connectBus({ url: brokerUrl, deviceId: `fault-client-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, maxInFlight: 64 });
    const s = new Streamer(bus);
    await bus.subscribe(inboxTopic(bus.deviceId), (env) => {
      if (!env.corr?.startsWith(`${s.tag}-`)) return;
      const n = Number(env.corr.slice(s.tag.length + 1));
      const a = env.type === 'app.call.ok' ? (env.body as { n: number; length: number }) : { code: String((env.body as { code?: unknown } | null)?.code) };
      const first = s.answers.get(n);
      if (!first) s.answers.set(n, a);
      // A replay past the kept outcomes is answered APP_ALREADY_APPLIED: the same fact, not a mismatch.
      else if (JSON.stringify(first) !== JSON.stringify(a) && !('code' in a && a.code === 'APP_ALREADY_APPLIED')) s.mismatches.push(`request ${n}: first answered ${JSON.stringify(first)}, then ${JSON.stringify(a)}`);
    });
    return s;
  }

  /** Publishes request `n` (again, with the same id, if it is a resend); retried until the broker has it. */
  async send(n: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.bus.publishEnvelope(appMailboxTopic(INSTANCE), { v: ENVELOPE_VERSION, type: 'app.call', id: `${this.tag}-${n}`, from: this.bus.deviceId, replyTo: inboxTopic(this.bus.deviceId), ts: Date.now(), body: { handler: 'apply', message: { n } } });
        return;
      } catch (e) {
        if (attempt > 200) throw e;
        await sleep(100);
      }
    }
  }

  /** Starts sending request after request, one every `everyMs`. */
  start(everyMs = 25): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.send(this.next);
        this.next++;
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Sends `count` more requests (after the move: they must land on wherever the instance runs). */
  async more(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.send(this.next++);
  }

  unanswered(): number[] {
    return [...Array(this.next).keys()].filter((n) => !this.answers.has(n));
  }

  /**
   * Waits for an answer to every request sent. `resendAfterMs`: a client whose answers may have
   * been lost (its own connection went down) asks again with the same ids, as a real one would.
   */
  async drain(timeoutMs: number, resendAfterMs?: number): Promise<void> {
    let lastResend = Date.now();
    await until(
      `answers to all ${this.next} requests`,
      async () => {
        const missing = this.unanswered();
        if (missing.length === 0) return true;
        if (resendAfterMs !== undefined && Date.now() - lastResend > resendAfterMs) {
          lastResend = Date.now();
          for (const n of missing) await this.send(n);
        }
        throw new Error(`${missing.length} unanswered: ${missing.slice(0, 20).join(', ')}`);
      },
      timeoutMs,
    );
  }

  close(): Promise<void> {
    return this.bus.close();
  }
}

/**
 * Polls both agents' view of the instance all through the move: the instance must never run on
 * both at once. Reads alternate between the two, and a device seen running before and after the
 * other was seen running ran at the same time as it.
 */
export class BothRunningWatch {
  readonly seen: string[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;
  polls = 0;

  constructor(devices: [Device, Device], instance = INSTANCE) {
    const read = async (d: Device): Promise<boolean> => {
      try {
        const a = (await controlRequest(d.dataDir, 'apps', {}, 3000)) as AppsView;
        return a.instances.find((i) => i.instance === instance)?.state === 'running';
      } catch {
        return false; // down: not running
      }
    };
    this.loop = (async () => {
      const last: boolean[] = [];
      for (let i = 0; !this.stopped; i++) {
        const d = devices[i % 2]!;
        last.push(await read(d));
        if (last.length > 3) last.shift();
        this.polls++;
        if (last.length === 3 && last.every(Boolean)) this.seen.push(`${new Date().toISOString()}: running on both ${devices[0].id} and ${devices[1].id}`);
        await sleep(20);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** What a test needs: a broker, two paired devices (the phone possibly behind a link emulator), the app running on the origin, a streaming client. */
export interface Rig {
  broker: TestBroker;
  pi: FaultDevice;
  phone: FaultDevice;
  link: LinkEmulator | undefined;
  stream: Streamer;
  dirs: Dirs;
  close(): Promise<void>;
}

export interface RigOptions {
  originFault?: string;
  destinationFault?: string;
  /** The phone's link to the broker, through the link emulator; none: straight to the broker. */
  link?: LinkProfile;
  /** The phone's data directory (e.g. on a small tmpfs); default a fresh temp dir. */
  phoneDataDir?: string;
  /** Filler written into the heap before the move: `count` strings of `size` characters. */
  heap?: { count: number; size: number };
  /** Agent log level (default info: the tests read move.* lines). */
  logLevel?: string;
}

let serial = 0;

export async function startRig(broker: TestBroker, o: RigOptions = {}): Promise<Rig> {
  const dirs = new Dirs();
  const tag = `${process.pid}-${++serial}`;
  const link = o.link ? await startLinkEmulator({ targetPort: broker.port, link: o.link }) : undefined;
  const common = ['--log-level', o.logLevel ?? 'info'];
  // Each at its profile's CPU share (test/harness/); the phone's link is the test's choice.
  const rig = new HarnessRig();
  // One after the other: a first calibration measures the host, and two at once would share it.
  const [piSlot, phoneSlot] = await (async () => [await rig.slot('rpi-4b'), await rig.slot('android-phone')] as const)().catch(async (e: unknown) => {
    await rig.close();
    await link?.close();
    throw e;
  });
  const pi = new FaultDevice(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ['--broker', broker.url, '--label', 'origin pi', ...common], piSlot);
  const phone = new FaultDevice(`phone-${tag}`, 'android-phone', o.phoneDataDir ?? dirs.make('phone'), ['--broker', link?.url ?? broker.url, '--label', 'destination phone', ...common], phoneSlot);
  pi.fault = o.originFault;
  phone.fault = o.destinationFault;
  let stream: Streamer | undefined;
  const close = async () => {
    await stream?.close().catch(() => undefined);
    await Promise.all([pi.agent?.kill('SIGKILL'), phone.agent?.kill('SIGKILL')]);
    await link?.close();
    await rig.close();
    dirs.cleanup();
  };
  try {
    await Promise.all([pi.start(), phone.start()]);
    // The setup goes through the control socket (what `ferry pair`, `install`, `run` and `call`
    // send), without a `ferry` process per step: the fault tests are about the move.
    await pairViaControl(pi, phone);
    const appDir = dirs.make('app');
    const file = join(appDir, 'tally.mjs');
    writeFileSync(file, TALLY_SOURCE);
    await pi.control('install', { path: file });
    await pi.control('run', { app: INSTANCE });
    if (o.heap) {
      // In pieces: a handler runs under a time limit.
      for (let seed = 0, left = o.heap.count; left > 0; seed++, left -= 25) {
        await pi.control('call', { instance: INSTANCE, handler: 'grow', message: { seed, count: Math.min(25, left), size: o.heap.size } });
      }
    }
    stream = await Streamer.connect(broker.url);
    return { broker, pi, phone, link, stream, dirs, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Where the instance should run once recovery settles: where it was, where it went, or whichever the move's outcome says. */
export type Expect = 'origin' | 'destination';

export interface FaultCase {
  /** Which agent dies of its armed fault (it is restarted on the same data directory). */
  kill?: 'origin' | 'destination';
  /** Where the instance runs in the end; undefined: as the migrate report says. */
  expect?: Expect;
  /** The abort's code when the move is to abort (a MIGRATE_* code). */
  code?: string;
  migrateArgs?: string[];
  /** Runs beside the move (a cut link, a broker restart), given the rig. */
  during?: (rig: Rig) => Promise<void>;
  /** Longest wait for recovery to settle, ms. */
  settleMs?: number;
  /** The client resends unanswered requests (its own connection may have lost answers). */
  resend?: boolean;
  /** Once the first move ended (and what died is back), move the instance again at once: it must go. */
  retry?: boolean;
}

/**
 * The fault tests' downtime limit: roomy enough that a loaded test machine still converges and
 * reaches the step under test, tight enough that an abort's pause is checked against it.
 */
/** A step lost to a fault is given up after 8 s (not the default 30 s): the tests wait for it. */
export const DEFAULT_MIGRATE_ARGS = ['--downtime-limit', '3000', '--step-timeout', '8000'];

export interface FaultOutcome {
  migrated: Migrated;
  runsOn: FaultDevice;
  ledger: number[];
}

/**
 * One fault test: stream, migrate with the fault armed, restart what died, let recovery settle,
 * then check where the instance runs, what `ferry migrate` said and the ledger.
 */
export async function runFault(rig: Rig, c: FaultCase): Promise<FaultOutcome> {
  const { pi, phone, stream } = rig;
  stream.start();
  // Some requests answered on the origin before the move.
  await until('the first answers from the origin', () => stream.answers.size >= 20, 30_000);
  const watch = new BothRunningWatch([pi, phone]);
  try {
    const moving = migrate(pi, INSTANCE, phone.id, c.migrateArgs ?? DEFAULT_MIGRATE_ARGS);
    const during = c.during?.(rig);
    during?.catch(() => undefined); // awaited below; its failure is reported there
    if (c.kill) {
      const victim = c.kill === 'origin' ? pi : phone;
      const proc = victim.agent.proc;
      // A move that ends without reaching the armed step would leave the victim alive: say so.
      const ended = moving.then((m) => {
        if (proc.exitCode === null && proc.signalCode === null) throw new Error(`the move ended before ${victim.fault} was reached: ${JSON.stringify(m.report ?? m.error)}`);
      });
      await Promise.race([victim.died(), ended.then(() => victim.died(5000))]);
      await victim.restart();
    }
    await during;
    const m = await moving;
    let expected: Expect;
    if (c.kill === 'origin') {
      // The agent that ran the move died under it: the command cannot know how it ended.
      expect(m.code, `ferry migrate on a killed origin: ${JSON.stringify(m)}`).not.toBe(0);
      expect(m.report).toBeUndefined();
      expected = c.expect!;
    } else {
      expected = c.expect ?? (m.report?.outcome === 'moved' ? 'destination' : 'origin');
      checkReport(m, expected, c.code);
      // `ferry migrations` keeps the same outcome.
      const h = await pi.json<{ recent: MoveReport[] }>(['migrations']);
      expect(h.value.recent.find((x) => x.id === m.report!.id)?.outcome).toBe(m.report!.outcome);
    }
    if (c.retry) {
      // The operator moves it again at once: the stale undecided move there must not stand in the way.
      const again = await migrate(pi, INSTANCE, phone.id, c.migrateArgs ?? DEFAULT_MIGRATE_ARGS);
      checkReport(again, 'destination');
      expected = 'destination';
    }
    const runsOn = expected === 'origin' ? pi : phone;
    const other = runsOn === pi ? phone : pi;
    await until(
      `${INSTANCE} running on ${runsOn.id} only (expected ${expected})`,
      async () => {
        const [here, there] = await Promise.all([runsOn.state(), other.state()]);
        if (here === 'running' && (there === 'moved' || there === 'absent')) return true;
        throw new Error(`${runsOn.id}: ${here}, ${other.id}: ${there}`);
      },
      c.settleMs ?? 45_000,
    );
    // Requests after the move land where the instance now runs.
    await stream.stop();
    await stream.more(20);
    await stream.drain(45_000, c.resend ? 5000 : undefined);
    await watch.stop();
    expect(watch.seen, 'the instance ran on both devices at once').toEqual([]);
    expect(watch.polls).toBeGreaterThan(3);
    const ledger = await checkLedger(runsOn, stream);
    // Settled for good: the other side still does not run it.
    expect(await other.state()).toMatch(/^(moved|absent)$/);
    return { migrated: m, runsOn, ledger };
  } finally {
    await watch.stop();
    await stream.stop();
  }
}

/** What `ferry migrate --json` printed agrees with where the instance is to run. */
export function checkReport(m: Migrated, expected: Expect, code?: string): MoveReport {
  const why = `${JSON.stringify(m.report ?? m.error)} ${m.stderr}`;
  expect(m.report, why).toBeDefined();
  if (expected === 'destination') {
    expect(m.code, why).toBe(0);
    expect(m.report!.outcome, why).toBe('moved');
  } else {
    expect(m.code, why).toBe(1);
    expect(m.report!.outcome, why).toBe('aborted');
    expect(m.report!.code, why).toMatch(/^MIGRATE_/);
    expect(m.error?.code, why).toBe(m.report!.code);
    if (code) expect(m.report!.code, why).toBe(code);
    expect(m.report!.downtimeMs, why).toBeLessThanOrEqual(m.report!.downtimeLimitMs);
  }
  return m.report!;
}

/**
 * The ledger on the device that runs the instance: every request sent applied exactly once, in
 * the order sent, and every answer is the one that ledger implies (request n was the n+1st).
 */
export async function checkLedger(d: Device, stream: Streamer): Promise<number[]> {
  // `ferry call <instance> list`, on the control socket.
  const ledger = (await d.control('call', { instance: INSTANCE, handler: 'list', message: null })) as number[];
  const want = [...Array(stream.next).keys()];
  if (JSON.stringify(ledger) !== JSON.stringify(want)) {
    const seen = new Map<number, number>();
    for (const n of ledger) seen.set(n, (seen.get(n) ?? 0) + 1);
    const lost = want.filter((n) => !seen.has(n));
    const twice = [...seen].filter(([, k]) => k > 1).map(([n]) => n);
    const disorder = ledger.findIndex((n, i) => i > 0 && n < ledger[i - 1]!);
    const around = disorder < 0 ? [] : ledger.slice(Math.max(0, disorder - 8), disorder + 8);
    expect.fail(`ledger of ${ledger.length} (sent ${stream.next}): lost ${JSON.stringify(lost)}, applied twice ${JSON.stringify(twice)}, first out of order at index ${disorder}: ${JSON.stringify(around)}`);
  }
  for (const [n, a] of stream.answers) {
    if ('code' in a) expect(a.code, `request ${n} was answered with an error`).toBe('APP_ALREADY_APPLIED');
    else expect(a, `the answer to request ${n}`).toEqual({ n, length: n + 1 });
  }
  expect(stream.mismatches).toEqual([]);
  return ledger;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
