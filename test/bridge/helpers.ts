/**
 * Real agent processes for the bridge's end-to-end tests: two devices on one broker, driven
 * through the built `ferry` command (as an owner or a script would) and the raw control socket.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { controlSocketPath, type ControlAnswer } from '../../agent/runtime/control-server.js';
import type { TestBroker } from '../helpers/brokers.js';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { HarnessRig, type DeviceSlot } from '../harness/index.js';

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `ferry` command; stdin is a pipe, never a TTY (the script flow). */
export function ferry(args: string[], timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(nodeCommand(), [FERRY_MAIN, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The JSON a `--json` run printed: its result, or `{error}` with exit status 1. */
export interface JsonRan<T> extends Ran {
  value: T;
  error?: { code: string; message: string; field?: string };
}

export async function ferryJson<T = unknown>(args: string[]): Promise<JsonRan<T>> {
  const r = await ferry([...args, '--json']);
  let value: unknown;
  try {
    value = JSON.parse(r.stdout);
  } catch {
    throw new Error(`ferry ${args.join(' ')} printed no JSON (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
  const error = r.code !== 0 ? (value as { error?: JsonRan<T>['error'] }).error : undefined;
  return { ...r, value: value as T, ...(error ? { error } : {}) };
}

/** Waits until `check` returns something truthy (it may throw meanwhile); fails after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends one raw line on an agent's control socket and returns the first answer line, parsed. */
export function rawControl(dataDir: string, request: unknown): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const sock = connect(controlSocketPath(dataDir));
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no control answer within 30 s'));
    }, 30_000);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(`${typeof request === 'string' ? request : JSON.stringify(request)}\n`));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.destroy();
      resolve(JSON.parse(buf.slice(0, nl)) as ControlAnswer);
    });
  });
}

/** A paired peer and a pending attempt as `ferry peers --json` lists them. */
export interface PeerRow {
  deviceId: string;
  fingerprint: string;
  profile: string;
  label: string;
  /** Last authenticated frame from it since this agent started (ISO), or null. */
  lastSeen: string | null;
  reachable?: boolean;
}
export interface PendingRow {
  peer: string;
  role: 'initiator' | 'responder';
  step: string;
  code?: string;
}
export interface PeersView {
  self: { deviceId: string; fingerprint: string };
  paired: PeerRow[];
  pending: PendingRow[];
}

/** One device: an agent process on its own data directory, restartable with the same files. */
export class Device {
  agent!: AgentProcess;

  constructor(
    readonly id: string,
    readonly profile: string,
    readonly dataDir: string,
    private readonly args: string[],
    /** The device harness's group for it (test/harness/): its profile's CPU share and memory cap, kept across restarts. */
    readonly slot?: DeviceSlot,
  ) {}

  async start(): Promise<this> {
    const args = ['--device-id', this.id, '--profile', this.profile, ...this.args];
    this.agent = this.slot
      ? startAgentProcess(this.dataDir, [], { argv: this.slot.wrap([nodeCommand(), ...AGENT_NODE_FLAGS, FERRY_MAIN, 'start', '--data', this.dataDir, ...args]) })
      : startAgentProcess(this.dataDir, args);
    await this.agent.ready;
    return this;
  }

  /** Stops the agent gracefully (SIGTERM) and waits for its exit. */
  async stop(): Promise<void> {
    await this.agent?.kill('SIGTERM');
  }

  get logs(): Array<Record<string, unknown>> {
    return this.agent.logs;
  }

  /** `ferry <args> --data <its dir>`. */
  cli(args: string[]): Promise<Ran> {
    return ferry([...args, '--data', this.dataDir]);
  }

  json<T = unknown>(args: string[]): Promise<JsonRan<T>> {
    return ferryJson<T>([...args, '--data', this.dataDir]);
  }

  async peers(check = true): Promise<PeersView> {
    const r = await this.json<PeersView>(['peers', ...(check ? [] : ['--no-check'])]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.value;
  }

  async fingerprint(): Promise<string> {
    const r = await this.json<{ fingerprint: string }>(['status']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return r.value.fingerprint;
  }

  /** A control request by hand (`peer-ping` has no CLI); an error answer is thrown with its code. */
  control(cmd: string, args: Record<string, unknown> = {}): Promise<unknown> {
    return this.agent.control(cmd, args);
  }
}

/** Temp directories for one suite; `cleanup()` removes them all. */
export class Dirs {
  private readonly all: string[] = [];
  make(prefix: string): string {
    const d = mkdtempSync(join(tmpdir(), `ferry-${prefix}-`));
    this.all.push(d);
    return d;
  }
  cleanup(): void {
    for (const d of this.all.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

let serial = 0;

/**
 * Starts an `rpi-4b` device and an `android-phone` device on `brokerUrl`, each on a fresh data
 * directory; `pairTimeoutMs` goes in a ferry.config.json passed with `--config`.
 */
export async function startDevices(dirs: Dirs, brokerUrl: string, opts: { pairTimeoutMs?: number; rig?: HarnessRig } = {}): Promise<[Device, Device]> {
  const tag = `${process.pid}-${++serial}`;
  const extra: string[] = [];
  if (opts.pairTimeoutMs !== undefined) {
    const file = join(dirs.make('config'), 'ferry.config.json');
    writeFileSync(file, JSON.stringify({ pairTimeoutMs: opts.pairTimeoutMs }));
    extra.push('--config', file);
  }
  // On the device harness: each at its profile's CPU share, behind its profile's link.
  const port = Number(new URL(brokerUrl).port);
  const on = async (profile: string) => (opts.rig ? { url: await opts.rig.link(profile, port), slot: await opts.rig.slot(profile) } : { url: brokerUrl, slot: undefined });
  const [p, f] = [await on('rpi-4b'), await on('android-phone')];
  const pi = new Device(`pi-${tag}`, 'rpi-4b', dirs.make('pi'), ['--broker', p.url, ...extra, '--label', 'kitchen pi'], p.slot);
  const phone = new Device(`phone-${tag}`, 'android-phone', dirs.make('phone'), ['--broker', f.url, ...extra, '--label', 'my phone'], f.slot);
  await Promise.all([pi.start(), phone.start()]);
  return [pi, phone];
}

/**
 * The pending attempt `d` holds with `peer`, if any: `ferry peers --no-check`'s list, read on the
 * control socket as that command reads it (tests poll this: no `ferry` process per look).
 */
export async function pendingWith(d: Device, peer: string): Promise<PendingRow | undefined> {
  return ((await d.control('peers', { check: false })) as PeersView).pending.find((p) => p.peer === peer);
}

/** What `ferry pair` prints without a TTY and without --confirm: the code, and the next step. */
export interface CodeResult {
  peer: string;
  code: string;
  fingerprint: string;
  next: string;
}

/**
 * The script flow up to the code: `ferry pair <b>` on a (it waits for b's answer) and, once the
 * request is pending on b, `ferry pair --accept <a>` on b. Both print the code.
 */
export async function requestAndAccept(a: Device, b: Device): Promise<{ initiator: JsonRan<CodeResult>; responder: JsonRan<CodeResult> }> {
  const asking = a.json<CodeResult>(['pair', b.id]);
  await until(`the request from ${a.id} pending on ${b.id}`, () => pendingWith(b, a.id));
  const responder = await b.json<CodeResult>(['pair', '--accept', a.id]);
  const initiator = await asking;
  expect(initiator.code, initiator.stdout + initiator.stderr).toBe(0);
  expect(responder.code, responder.stdout + responder.stderr).toBe(0);
  return { initiator, responder };
}

/** Pairs a with b through the CLI (request, accept, both confirm at once); returns what each printed. */
export async function pairViaCli(a: Device, b: Device): Promise<{ initiator: CodeResult; responder: CodeResult; confirmed: [unknown, unknown] }> {
  const { initiator, responder } = await requestAndAccept(a, b);
  expect(initiator.value.code).toMatch(/^\d{6}$/);
  expect(responder.value.code).toBe(initiator.value.code);
  const code = initiator.value.code;
  const [ca, cb] = await Promise.all([a.json(['pair', b.id, '--confirm', code]), b.json(['pair', '--accept', a.id, '--confirm', code])]);
  expect(ca.code, ca.stdout + ca.stderr).toBe(0);
  expect(cb.code, cb.stdout + cb.stderr).toBe(0);
  return { initiator: initiator.value, responder: responder.value, confirmed: [ca.value, cb.value] };
}

/**
 * Pairs a with b through their control sockets: the requests `ferry pair` sends (request, accept,
 * both confirm with the code), without a `ferry` process per step. For tests about something
 * else than pairing, which need paired devices (the pairing tests use `pairViaCli`).
 */
export async function pairViaControl(a: Device, b: Device): Promise<void> {
  const asking = a.control('pair', { peer: b.id, accept: false }) as Promise<CodeResult>;
  asking.catch(() => undefined); // awaited below
  await until(`the request from ${a.id} pending on ${b.id}`, async () => ((await b.control('peers', { check: false })) as PeersView).pending.find((p) => p.peer === a.id));
  const responder = (await b.control('pair', { peer: a.id, accept: true })) as CodeResult;
  const initiator = await asking;
  expect(initiator.code).toMatch(/^\d{6}$/);
  expect(responder.code).toBe(initiator.code);
  await Promise.all([a.control('pair-confirm', { peer: b.id, yes: true, code: initiator.code }), b.control('pair-confirm', { peer: a.id, yes: true, code: initiator.code })]);
}

/** A 6-digit code that is not `code`. */
export function otherCode(code: string): string {
  return String((Number(code) + 1) % 1_000_000).padStart(6, '0');
}

/** What `devicePair` sets up for a describe block: its broker, two devices, and its temp dirs. */
export interface DevicePair {
  broker: TestBroker;
  pi: Device;
  phone: Device;
  dirs: Dirs;
}

/**
 * A broker and two devices (an rpi-4b and an android-phone agent) for the describe block that
 * calls it: started before its tests, stopped and cleaned up after; with `emulate`, on the device
 * harness (their profiles' CPU shares and links). Read the fields in tests
 * and hooks (they are set once the block's first hook has run).
 */
export function devicePair(startBroker: () => Promise<TestBroker>, opts: { emulate?: boolean } = {}): DevicePair {
  const set = { dirs: new Dirs() } as DevicePair;
  const rig = opts.emulate ? new HarnessRig() : undefined;
  beforeAll(async () => {
    set.broker = await startBroker();
    [set.pi, set.phone] = await startDevices(set.dirs, set.broker.url, { ...(rig ? { rig } : {}) });
  });
  afterAll(async () => {
    await Promise.all([set.pi?.stop(), set.phone?.stop()]);
    await rig?.close();
    await set.broker?.stop();
    set.dirs.cleanup();
  });
  return set;
}
