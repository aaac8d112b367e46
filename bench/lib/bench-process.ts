/**
 * The far end of a benchmarked round trip, in a process of its own.
 *
 * In Ferry the asker (a lease holder) and the answerer (a grantor) are on
 * different devices; in one Node process their CPU work and garbage collections
 * would share one event loop and add up in every round trip. So the latency
 * benchmarks (bench/leases.ts) run each responder — the bare MQTT echo, the bus
 * echo, the lease grantor — and the embedded broker each in a child process
 * started here, and keep only the requester in the benchmark's own process.
 *
 * `startBenchProcess(role)` forks this file (with the parent's Node flags, so
 * the TypeScript loader the benchmark runs under is used for the child too),
 * hands it the role over IPC and resolves once the child reports it is ready
 * (subscribed, listening) with what the requester needs (topic, broker URL).
 * `close()` asks the child to shut its role down and waits for it to exit.
 * A child also exits when its parent goes away (the IPC channel closes).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LeaseGrantor } from '../../agent/services/index.js';
import { connectBus, startEmbeddedBroker } from '../../transports/index.js';
import { startBusEchoResponder, startRawEchoResponder } from './transport-bench.js';

/** What a child process is asked to run. */
export type BenchRole =
  /** aedes on a free loopback port; info.url. */
  | { role: 'aedes' }
  /** The bare mqtt.js echo responder for `openRawEchoClient(url, id)`. */
  | { role: 'raw-echo'; url: string; id: string }
  /** The MqttBus echo responder (serve) for `openBusEchoClient(url, id)`. */
  | { role: 'bus-echo'; url: string; id: string }
  /** A LeaseGrantor on its own bus offering `exclusive` resources `excl-0`..; info.topic is its lease topic. */
  | { role: 'grantor'; url: string; deviceId: string; stateFile: string; exclusive: number; maxInFlight: number };

export interface BenchProcessInfo {
  url?: string;
  topic?: string;
}

export interface BenchProcess {
  readonly info: BenchProcessInfo;
  readonly pid: number;
  close(): Promise<void>;
}

type ToChild = BenchRole | { close: true };
type FromChild = { ready: true; info: BenchProcessInfo } | { error: string } | { closed: true };

const SELF = fileURLToPath(import.meta.url);

/** Forks a child running `role`; resolves once it is ready. */
export async function startBenchProcess(role: BenchRole): Promise<BenchProcess> {
  const child = fork(SELF, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const info = await new Promise<BenchProcessInfo>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`bench process (${role.role}) exited with ${String(code)} before it was ready`));
    child.once('exit', onExit);
    child.once('message', (m: FromChild) => {
      child.off('exit', onExit);
      if ('ready' in m) resolve(m.info);
      else reject(new Error(`bench process (${role.role}): ${'error' in m ? m.error : 'unexpected message'}`));
    });
    child.send(role satisfies ToChild);
  }).catch(async (e: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  });
  let closing: Promise<void> | undefined;
  return {
    info,
    pid: child.pid ?? -1,
    close: () =>
      (closing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null && child.connected) child.send({ close: true } satisfies ToChild);
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      })()),
  };
}

/** The child side: runs one role until told to close. */
async function runRole(role: BenchRole): Promise<{ info: BenchProcessInfo; close: () => Promise<void> }> {
  switch (role.role) {
    case 'aedes': {
      const b = await startEmbeddedBroker();
      return { info: { url: b.url }, close: () => b.close() };
    }
    case 'raw-echo':
      return { info: {}, close: await startRawEchoResponder(role.url, role.id) };
    case 'bus-echo':
      return { info: {}, close: await startBusEchoResponder(role.url, role.id) };
    case 'grantor': {
      const bus = await connectBus({ url: role.url, deviceId: role.deviceId, maxInFlight: role.maxInFlight });
      const grantor = await LeaseGrantor.start(bus, { stateFile: role.stateFile, maxDurationMs: 600_000, sweepIntervalMs: 1000 });
      // One exclusive resource per sample: every grant is a fresh exclusive grant (with a fence), no cancel traffic.
      for (let i = 0; i < role.exclusive; i++) grantor.offer(`excl-${i}`, { exclusive: true });
      return {
        info: { topic: grantor.topic },
        close: async () => {
          await grantor.close();
          await bus.close();
        },
      };
    }
  }
}

function child(): void {
  let running: Promise<{ close: () => Promise<void> } | undefined> | undefined;
  const send = (m: FromChild) => process.send?.(m);
  process.on('message', (m: ToChild) => {
    if ('close' in m) {
      void (async () => {
        const r = await running?.catch(() => undefined);
        await r?.close().catch(() => undefined);
        process.exit(0);
      })();
      return;
    }
    running = runRole(m).then(
      (r) => {
        send({ ready: true, info: r.info });
        return r;
      },
      (e: unknown) => {
        send({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
        return undefined;
      },
    );
  });
  // The benchmark went away: nothing left to answer.
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.send) child();
