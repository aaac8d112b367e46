/**
 * Agent benchmark: `npm run bench:agent -- [--json] [--quick] [--broker aedes|mosquitto|embedded]`
 * (the npm script builds `dist/` first: the agent runs from the built code, as `ferry start` does).
 *
 * One real agent PROCESS (`node <agent flags> dist/agent/cli/main.js start --data <tmp> --broker <url> --samples`)
 * on a broker of its own process (aedes in a child process by default, or Mosquitto), or on the agent's
 * embedded broker (`--broker embedded`: durable, inside the agent process), and in the same run:
 * - mailboxReqPerSec: `app.call` requests (counter.increment) published QoS 1 to the counter's
 *   mailbox by a Ferry bus here, 64 in flight, each answered after the group commit that holds
 *   it (store durability `full`, the default: synced before any answer);
 * - rawEchoReqPerSec: a bare mqtt.js QoS 1 echo (responder in a child process) through the same
 *   broker, 64 in flight: the floor; mailboxOverRawRatio = mailbox / raw (target ≥ 0.25);
 *   busEchoReqPerSec: the same through two Ferry buses (envelopes, correlation), to show what the
 *   transport adds before the agent does. The three are measured in interleaved rounds (order
 *   rotated every round), so load and JIT state weigh on all alike;
 * - batchMean / batchMax: the counter's group commits over the measured rounds (control channel `apps`);
 *   agentCpuUsPerCall: the agent's CPU time (/proc) over the rounds per counter call; counterMatchesCalls:
 *   the counter's value equals the calls the agent ran (no increment lost or applied twice);
 * - coldStartMs: median time from spawning the agent to its first `app.resumed` log line (an
 *   instance resumed from its checkpoint), beside nodeBareStartMs (median spawn-to-exit of
 *   `node -e 0`, sampled alternately with the restarts) and coldStartRatio (target ≤ 6);
 * - rssIdleMB: the VmRSS of every process the agent runs (the process spawned and its descendants),
 *   with the three sample apps resumed and idle (target ≤ 80). The agent is started as the installed
 *   `ferry` command runs: main.js executed through its `#!` line, which gives Node the agent's flags, so
 *   there is one process. rssIdleWrappedMB: the same for `node main.js start` (no flags), where a
 *   wrapper process re-runs Node with them: what the second process costs;
 * - readOnlyCallUs / writeCallUs: one mailbox call at a time (counter.get, counter.increment,
 *   alternated), median round trip; readOnlyStoreBytesPerCall / writeStoreBytesPerCall and the
 *   commits per call: what each writes to the store (`status.store`). A read writes nothing.
 * `targets` says which targets were met. Prints one JSON object as its last line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { controlRequest } from '../agent/cli/control-client.js';
import type { InstanceView } from '../agent/runtime/agent.js';
import { AGENT_NODE_FLAGS } from '../agent/runtime/sandbox.js';
import { appMailboxTopic, connectBus } from '../transports/index.js';
import { freePort, startMosquitto } from '../test/helpers/brokers.js';
import { parseBenchArgs, percentile, report, round } from './lib/args.js';
import { startBenchProcess } from './lib/bench-process.js';
import { tag as benchTag } from './lib/transport-bench.js';
import { processTree } from './lib/proc-io.js';

const args = parseBenchArgs();
const BROKER = brokerArg(process.argv.slice(2));
const CONCURRENCY = 64;
const ROUNDS = args.quick ? 3 : 6;
const ROUND_MS = args.quick ? 600 : 1500;
const WARMUP_MS = args.quick ? 500 : 1500;
const RESTARTS = args.quick ? 3 : 9;
const IDLE_MS = 2000;
const REQUEST_TIMEOUT_MS = 15_000;
const TARGETS = { mailboxOverRawRatio: 0.25, coldStartRatio: 6, rssIdleMB: 80 };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist', 'agent', 'cli', 'main.js');

/** main.js must be executable with the agent's flags on its `#!` line (the build does both), or the bench would measure a re-executing agent. */
function checkInstalledCommand(): void {
  accessSync(MAIN, constants.X_OK);
  const shebang = readFileSync(MAIN, 'utf8').split('\n', 1)[0]!;
  for (const f of AGENT_NODE_FLAGS) if (!shebang.includes(f)) throw new Error(`${MAIN}'s #! line lacks ${f}: ${shebang}`);
}

/** `embedded`: the agent's own durable broker (no --broker; its sessions in <data>/broker.db), on a port picked here. */
function brokerArg(argv: string[]): 'aedes' | 'mosquitto' | 'embedded' {
  const i = argv.findIndex((a) => a === '--broker' || a.startsWith('--broker='));
  if (i < 0) return 'aedes';
  const v = argv[i]!.includes('=') ? argv[i]!.slice(argv[i]!.indexOf('=') + 1) : argv[i + 1];
  if (v !== 'aedes' && v !== 'mosquitto' && v !== 'embedded') throw new Error(`--broker must be aedes, mosquitto or embedded, got ${String(v)}`);
  return v;
}

/** Where the agent's broker is: one of its own process, or the agent's embedded one on `port`. */
interface BenchBroker {
  url: string;
  /** `ferry start` arguments that pick it. */
  args: string[];
  stop(): Promise<void>;
}

async function startBroker(): Promise<BenchBroker> {
  if (BROKER === 'embedded') {
    const port = await freePort();
    return { url: `mqtt://127.0.0.1:${port}`, args: ['--port', String(port)], stop: async () => undefined };
  }
  const b = BROKER === 'aedes' ? await startBenchProcess({ role: 'aedes' }).then((p) => ({ url: p.info.url!, stop: () => p.close() })) : await startMosquitto();
  return { url: b.url, args: ['--broker', b.url], stop: () => b.stop() };
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- the agent process ----

interface AgentProc {
  child: ChildProcess;
  pid: number;
  /** performance.now() at spawn. */
  spawnedAt: number;
  /** Resolves with performance.now() when a log line with this event first appears (lines seen earlier count). */
  event(name: string, timeoutMs?: number): Promise<number>;
  exited: Promise<number | null>;
  stderrTail(): string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** `installed`: main.js run through its `#!` line, as the `ferry` command is; `wrapped`: `node main.js` without flags (it re-executes). */
function spawnAgent(dataDir: string, broker: BenchBroker, how: 'installed' | 'wrapped' = 'installed'): AgentProc {
  const spawnedAt = performance.now();
  const args = ['start', '--data', dataDir, ...broker.args, '--samples'];
  const child = how === 'installed' ? spawn(MAIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const seen = new Map<string, number>();
  const waiters = new Map<string, Array<(t: number) => void>>();
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const now = performance.now();
    out += chunk;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const m = /"event":"([^"]+)"/.exec(line);
      if (!m || seen.has(m[1]!)) continue;
      seen.set(m[1]!, now);
      for (const w of waiters.get(m[1]!) ?? []) w(now);
      waiters.delete(m[1]!);
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (err = (err + c).slice(-4000)));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    pid: child.pid ?? -1,
    spawnedAt,
    exited,
    stderrTail: () => err,
    event: (name, timeoutMs = 20_000) => {
      const t = seen.get(name);
      if (t !== undefined) return Promise.resolve(t);
      return new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`agent: no ${name} log line within ${timeoutMs} ms; stderr: ${err.trim()}`)), timeoutMs);
        const fail = (code: number | null) => reject(new Error(`agent exited (${String(code)}) before ${name}; stderr: ${err.trim()}`));
        void exited.then(fail);
        const list = waiters.get(name) ?? [];
        list.push((t2) => {
          clearTimeout(timer);
          resolve(t2);
        });
        waiters.set(name, list);
      });
    },
  };
}

/** Asks the agent to shut down (it checkpoints every instance) and waits for its exit. */
async function shutdown(dataDir: string, a: AgentProc): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  await controlRequest(dataDir, 'shutdown').catch(() => a.child.kill('SIGTERM'));
  const t = setTimeout(() => a.child.kill('SIGKILL'), 10_000);
  await a.exited;
  clearTimeout(t);
}

/** Spawn-to-exit of `node -e 0`, ms: what any Node process costs to start, on this machine now. */
function bareNodeMs(): Promise<number> {
  const t0 = performance.now();
  const c = spawn(process.execPath, ['-e', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  c.stdout!.resume();
  c.stderr!.resume();
  return new Promise((resolve) => c.once('exit', () => resolve(performance.now() - t0)));
}

/** CPU time (user + system) the process used so far, ms (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after the command name, which may hold spaces
  return (Number(f[11]) + Number(f[12])) * 10;
}

function vmRssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`/proc/${pid}/status has no VmRSS line`);
  return round(Number(m[1]) / 1024, 1);
}


/** VmRSS summed over the process tree, MB, and how many processes it has. */
function treeRssMB(pid: number): { mb: number; processes: number } {
  const pids = processTree(pid);
  return { mb: round(pids.reduce((s, p) => s + vmRssMB(p), 0), 1), processes: pids.length };
}

/** The data directory's filesystem: fsync costs differ by orders of magnitude (tmpfs vs a disk). */
function fsName(dir: string): string {
  const names: Record<number, string> = { 0xef53: 'ext4', 0x01021994: 'tmpfs', 0x794c7630: 'overlay', 0x9123683e: 'btrfs', 0x58465342: 'xfs', 0x2fc12fc1: 'zfs' };
  const t = statfsSync(dir).type;
  return names[t] ?? `0x${t.toString(16)}`;
}

// ---- closed-loop load: `CONCURRENCY` requests in flight for a fixed time ----

/** A load generator: keeps CONCURRENCY requests in flight for `ms`; returns answers received within it. */
interface Load {
  name: string;
  run(ms: number): Promise<{ done: number; ms: number; errors: number }>;
  close(): Promise<void>;
}

/** Workers that each issue one request after the other; answers after the deadline are not counted (the tail drains). */
function closedLoop(name: string, once: () => Promise<void>, close: () => Promise<void>): Load {
  return {
    name,
    close,
    async run(ms) {
      let done = 0;
      let errors = 0;
      const t0 = performance.now();
      const end = t0 + ms;
      const worker = async () => {
        while (performance.now() < end) {
          try {
            await once();
            if (performance.now() <= end) done++;
          } catch {
            errors++;
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      return { done, ms, errors };
    },
  };
}

/** The app mailbox: a Ferry bus publishing `app.call` envelopes (QoS 1) to the counter's mailbox, replyTo its inbox. */
async function mailboxLoad(url: string): Promise<Load> {
  const bus = await connectBus({ url, deviceId: `bench-mb-${benchTag()}`, maxInFlight: 2 * CONCURRENCY, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  const topic = appMailboxTopic('counter');
  return closedLoop(
    'mailbox',
    async () => {
      const env = await bus.request(topic, 'app.call', { handler: 'increment', message: { by: 1 } }, { timeoutMs: REQUEST_TIMEOUT_MS });
      if (env.type !== 'app.call.ok') throw new Error(`unexpected answer type ${env.type}`);
    },
    () => bus.close(),
  );
}

/** The bus echo: a Ferry bus here, its echo responder (MqttBus.serve) in a child process. */
async function busEchoLoad(url: string, id: string): Promise<Load> {
  const bus = await connectBus({ url, deviceId: `${id}-c`, maxInFlight: 2 * CONCURRENCY, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  const topic = `bench/${id}/svc`; // bench/lib/transport-bench.ts startBusEchoResponder
  let i = 0;
  return closedLoop(
    'bus-echo',
    async () => {
      await bus.request(topic, 'bench.echo', i++, { timeoutMs: REQUEST_TIMEOUT_MS });
    },
    () => bus.close(),
  );
}

/**
 * The bare echo: one mqtt.js client here publishing QoS 1 to `bench/<id>/req`, its responder
 * (bench/lib/transport-bench.ts startRawEchoResponder) in a child process echoing to `bench/<id>/res`.
 * No correlation is needed: every echo received frees one slot, which is refilled at once.
 */
async function rawEchoLoad(url: string, id: string): Promise<Load> {
  const client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, log: () => undefined });
  (client.stream as Socket).setNoDelay?.(true);
  await client.subscribeAsync(`bench/${id}/res`, { qos: 1 });
  const req = `bench/${id}/req`;
  const payload = Buffer.alloc(170, 1); // the size of the mailbox's app.call envelope (CBOR, about 170 bytes)
  let onEcho: (() => void) | undefined;
  client.on('message', () => onEcho?.());
  return {
    name: 'raw-echo',
    close: async () => {
      await client.endAsync(true);
    },
    run: (ms) =>
      new Promise((resolve) => {
        let done = 0;
        let inFlight = 0;
        const end = performance.now() + ms;
        // QoS 1 on loopback loses nothing, but a lost echo must not hang the benchmark: counted as errors.
        const stuck = setTimeout(() => {
          onEcho = undefined;
          resolve({ done, ms, errors: inFlight });
        }, ms + REQUEST_TIMEOUT_MS);
        const send = () => {
          inFlight++;
          client.publish(req, payload, { qos: 1 });
        };
        onEcho = () => {
          inFlight--;
          if (performance.now() <= end) {
            done++;
            send();
          } else if (inFlight === 0) {
            clearTimeout(stuck);
            onEcho = undefined;
            resolve({ done, ms, errors: 0 });
          }
        };
        for (let i = 0; i < CONCURRENCY; i++) send();
      }),
  };
}

// ---- the run ----

interface Throughput {
  mailboxReqPerSec: number;
  rawEchoReqPerSec: number;
  busEchoReqPerSec: number;
  mailboxOverRawRatio: number;
  mailboxOverRawByRound: { min: number; median: number; max: number };
  mailboxOverBusRatio: number;
  mailboxAnswered: number;
  errors: number;
}

async function measureThroughput(url: string): Promise<Throughput> {
  const id = benchTag();
  const responders = await Promise.all([startBenchProcess({ role: 'raw-echo', url, id }), startBenchProcess({ role: 'bus-echo', url, id })]);
  const loads: Load[] = [];
  try {
    loads.push(await rawEchoLoad(url, id), await busEchoLoad(url, id), await mailboxLoad(url));
    for (const l of loads) await l.run(WARMUP_MS);
    const totals = new Map<string, { done: number; ms: number; errors: number }>(loads.map((l) => [l.name, { done: 0, ms: 0, errors: 0 }]));
    const ratios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const perRound = new Map<string, number>();
      // Rotated so no path always runs first (right after another's drain) or last.
      for (let k = 0; k < loads.length; k++) {
        const l = loads[(r + k) % loads.length]!;
        const res = await l.run(ROUND_MS);
        const t = totals.get(l.name)!;
        t.done += res.done;
        t.ms += res.ms;
        t.errors += res.errors;
        perRound.set(l.name, res.done / res.ms);
      }
      ratios.push(perRound.get('mailbox')! / perRound.get('raw-echo')!);
    }
    const rate = (n: string) => {
      const t = totals.get(n)!;
      return (t.done / t.ms) * 1000;
    };
    const s = [...ratios].sort((a, b) => a - b);
    return {
      mailboxReqPerSec: Math.round(rate('mailbox')),
      rawEchoReqPerSec: Math.round(rate('raw-echo')),
      busEchoReqPerSec: Math.round(rate('bus-echo')),
      mailboxOverRawRatio: round(rate('mailbox') / rate('raw-echo'), 3),
      mailboxOverRawByRound: { min: round(s[0]!, 3), median: round(median(s), 3), max: round(s[s.length - 1]!, 3) },
      mailboxOverBusRatio: round(rate('mailbox') / rate('bus-echo'), 3),
      mailboxAnswered: totals.get('mailbox')!.done,
      errors: [...totals.values()].reduce((a, t) => a + t.errors, 0),
    };
  } finally {
    await Promise.all([...loads.map((l) => l.close()), ...responders.map((p) => p.close())]);
  }
}

/** Store figures of the agent (`status.store`). */
async function storeFigures(dataDir: string): Promise<{ commits: number; segmentBytesWritten: number }> {
  return ((await controlRequest(dataDir, 'status')) as { store: { commits: number; segmentBytesWritten: number } }).store;
}

/**
 * One call at a time through the counter's mailbox, `get` and `increment` alternated in blocks
 * (so load weighs on both alike): median round trip of each, µs, and what each wrote to the store.
 */
async function callCosts(url: string, dataDir: string, n: number): Promise<Record<string, number>> {
  const bus = await connectBus({ url, deviceId: `bench-seq-${benchTag()}`, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  const topic = appMailboxTopic('counter');
  const times = { get: [] as number[], increment: [] as number[] };
  const wrote = { get: { commits: 0, segmentBytesWritten: 0 }, increment: { commits: 0, segmentBytesWritten: 0 } };
  try {
    for (let block = 0; block < 10; block++) {
      for (const handler of block % 2 === 0 ? (['get', 'increment'] as const) : (['increment', 'get'] as const)) {
        const s0 = await storeFigures(dataDir);
        for (let i = 0; i < n / 10; i++) {
          const t0 = performance.now();
          const env = await bus.request(topic, 'app.call', { handler, message: null }, { timeoutMs: REQUEST_TIMEOUT_MS });
          times[handler].push((performance.now() - t0) * 1000);
          if (env.type !== 'app.call.ok') throw new Error(`unexpected answer type ${env.type}`);
        }
        const s1 = await storeFigures(dataDir);
        wrote[handler].commits += s1.commits - s0.commits;
        wrote[handler].segmentBytesWritten += s1.segmentBytesWritten - s0.segmentBytesWritten;
      }
    }
  } finally {
    await bus.close();
  }
  const per = (x: number) => round(x / n, 2);
  return {
    sequentialCallsEach: times.get.length,
    readOnlyCallUs: Math.round(median(times.get)),
    writeCallUs: Math.round(median(times.increment)),
    readOnlyCommitsPerCall: per(wrote.get.commits),
    writeCommitsPerCall: per(wrote.increment.commits),
    readOnlyStoreBytesPerCall: per(wrote.get.segmentBytesWritten),
    writeStoreBytesPerCall: per(wrote.increment.segmentBytesWritten),
  };
}

async function counterView(dataDir: string): Promise<InstanceView> {
  const apps = (await controlRequest(dataDir, 'apps')) as { instances: InstanceView[] };
  const v = apps.instances.find((i) => i.instance === 'counter');
  if (!v?.mailbox) throw new Error('the agent runs no counter instance');
  return v;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  checkInstalledCommand();
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-bench-agent-'));
  const broker = await startBroker();
  let agent: AgentProc | undefined;
  try {
    // A fresh data directory: the samples are installed, run (init) and checkpointed at shutdown.
    agent = spawnAgent(dataDir, broker);
    await agent.event('agent.ready');
    await shutdown(dataDir, agent);

    // Restarts: every instance resumes from its checkpoint. The agent's and bare Node's starts
    // alternate, so both see the same machine load. The last agent stays up for the rest.
    const cold: number[] = [];
    const ready: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < RESTARTS; i++) {
      bare.push(await bareNodeMs());
      agent = spawnAgent(dataDir, broker);
      cold.push((await agent.event('app.resumed')) - agent.spawnedAt);
      ready.push((await agent.event('agent.ready')) - agent.spawnedAt);
      if (i < RESTARTS - 1) await shutdown(dataDir, agent);
    }

    // Idle: three apps resumed, nothing asked of them (sensor-log's 5 s timer may tick).
    await sleep(IDLE_MS);
    const status = (await controlRequest(dataDir, 'status')) as { pid: number; rssBytes: number; running: number };
    if (status.pid !== agent.pid) throw new Error(`the control channel answers from pid ${status.pid}, the agent spawned is ${agent.pid} (did it re-execute?)`);
    const idle = treeRssMB(agent.pid);
    const rssIdleMB = idle.mb;
    const costs = await callCosts(broker.url, dataDir, args.quick ? 100 : 600);

    const before = await counterView(dataDir);
    const cpu0 = cpuMs(agent.pid);
    const tp = await measureThroughput(broker.url);
    const agentCpuMs = cpuMs(agent.pid) - cpu0;
    const after = await counterView(dataDir);
    const rssAfterLoadMB = vmRssMB(agent.pid);
    const calls = after.mailbox!.calls - before.mailbox!.calls;
    const commits = after.mailbox!.commits - before.mailbox!.commits;
    // Exactly once: every answered increment is in the heap (answers past a round's end are applied too).
    const count = ((await controlRequest(dataDir, 'call', { instance: 'counter', handler: 'get' })) as { count: number }).count;
    // Every call the counter's mailbox ran but the sequential gets was an increment.
    const counted = after.mailbox!.calls - costs.sequentialCallsEach!;
    await shutdown(dataDir, agent);

    // The same idle agent through the wrapper (`node main.js start`, no flags): two processes.
    agent = spawnAgent(dataDir, broker, 'wrapped');
    await agent.event('agent.ready');
    await sleep(IDLE_MS);
    const wrapped = treeRssMB(agent.pid);
    await shutdown(dataDir, agent);

    const coldStartMs = round(median(cold), 1);
    const nodeBareStartMs = round(median(bare), 1);
    const coldStartRatio = round(coldStartMs / nodeBareStartMs, 2);
    const result = {
      bench: 'agent',
      quick: args.quick,
      broker: BROKER === 'aedes' ? 'aedes (child process)' : BROKER === 'embedded' ? "embedded (the agent's own, on SQLite)" : 'mosquitto',
      layout: `agent: its own process from dist/; broker: ${BROKER === 'aedes' ? 'a child process' : BROKER === 'embedded' ? 'inside the agent' : 'its binary'}; requesters: this process; raw and bus echo responders: a child process each`,
      durability: 'full',
      dataDirFs: fsName(dataDir),
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      roundMs: ROUND_MS,
      mailboxReqPerSec: tp.mailboxReqPerSec,
      rawEchoReqPerSec: tp.rawEchoReqPerSec,
      busEchoReqPerSec: tp.busEchoReqPerSec,
      mailboxOverRawRatio: tp.mailboxOverRawRatio,
      mailboxOverRawByRound: tp.mailboxOverRawByRound,
      mailboxOverBusRatio: tp.mailboxOverBusRatio,
      requestErrors: tp.errors,
      // The agent's CPU over all rounds (it is all but idle in the echo rounds) per counter call: what one costs it.
      agentCpuUsPerCall: Math.round((agentCpuMs * 1000) / Math.max(1, calls)),
      batchMean: round(calls / Math.max(1, commits), 1),
      batchMax: after.mailbox!.maxBatch,
      commits,
      counterMatchesCalls: count === counted,
      coldStartMs,
      coldStartSamplesMs: cold.map((x) => round(x, 1)),
      readyMs: round(median(ready), 1),
      nodeBareStartMs,
      coldStartRatio,
      rssIdleMB,
      agentProcesses: idle.processes,
      rssIdleWrappedMB: wrapped.mb,
      wrappedProcesses: wrapped.processes,
      ...costs,
      readOverWriteCallRatio: round(costs.readOnlyCallUs! / costs.writeCallUs!, 2),
      rssIdleControlMB: round(status.rssBytes / 1024 / 1024, 1),
      rssAfterLoadMB,
      appsRunning: status.running,
      targets: {
        mailboxOverRawRatio: tp.mailboxOverRawRatio >= TARGETS.mailboxOverRawRatio,
        coldStartRatio: coldStartRatio <= TARGETS.coldStartRatio,
        rssIdleMB: rssIdleMB <= TARGETS.rssIdleMB,
      },
      targetValues: TARGETS,
      seconds: round((performance.now() - t0) / 1000, 1),
    };
    report(args, result, [
      `broker ${result.broker}, data dir on ${result.dataDirFs}, durability full, ${CONCURRENCY} in flight`,
      `mailbox ${tp.mailboxReqPerSec} req/s | raw echo ${tp.rawEchoReqPerSec} req/s | bus echo ${tp.busEchoReqPerSec} req/s | mailbox/raw ${tp.mailboxOverRawRatio} (target ≥ 0.25; by round ${tp.mailboxOverRawByRound.min}–${tp.mailboxOverRawByRound.max})`,
      `group commit: ${result.batchMean} calls/commit on average, ${result.batchMax} at most (${commits} commits); agent CPU ${result.agentCpuUsPerCall} µs per call`,
      `cold start ${coldStartMs} ms to app.resumed (${result.readyMs} ms to agent.ready) vs node -e 0 ${nodeBareStartMs} ms: ratio ${coldStartRatio} (target ≤ 6)`,
      `RSS idle ${rssIdleMB} MB in ${idle.processes} process(es) (target ≤ 80), after load ${rssAfterLoadMB} MB; through the wrapper ${wrapped.mb} MB in ${wrapped.processes}`,
      `one call at a time: read ${costs.readOnlyCallUs} µs, ${costs.readOnlyCommitsPerCall} commits and ${costs.readOnlyStoreBytesPerCall} store bytes per call | write ${costs.writeCallUs} µs, ${costs.writeCommitsPerCall} commits and ${costs.writeStoreBytesPerCall} store bytes per call`,
    ]);
  } catch (e) {
    if (agent) console.error(`agent stderr: ${agent.stderrTail().trim()}`);
    throw e;
  } finally {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) await shutdown(dataDir, agent).catch(() => agent?.child.kill('SIGKILL'));
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
