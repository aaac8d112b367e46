/**
 * Real MQTT brokers for tests. Every transport and service suite runs the same
 * cases against both:
 *
 *   describe.each(BROKERS)('%s', (name, start) => {
 *     let broker: TestBroker;
 *     beforeAll(async () => { broker = await start(); });
 *     afterAll(() => broker.stop());
 *     ...
 *   });
 *
 * - `startAedes()`: aedes in this process (transports/embedded-broker.ts) on a free
 *   127.0.0.1 port.
 * - `startMosquitto()`: the real `mosquitto` binary as its own process, generated
 *   config (`listener <port> 127.0.0.1`, anonymous, no persistence, TCP_NODELAY) in a temp dir.
 *   `startMosquitto({ config })` adds lines (password file, ACL file) and drops anonymous access.
 *   `startMosquitto({ persistence: true })` saves its state in the temp dir (a directory the
 *   broker's own user can write, also when it is started as root and drops to `mosquitto`),
 *   at every graceful stop and every `autosaveSeconds` (default 1800, Mosquitto's own); then
 *   `restart()` (SIGTERM) keeps every session, and `crash()` (SIGKILL, then start again) comes
 *   back from the last save.
 *   `startMosquitto({ fullConfig })` runs a whole configuration of the test's own (ferry broker-config's).
 *   Throws if mosquitto is not installed: a missing broker is never a skipped test.
 *
 * Both: `url` (`mqtt://127.0.0.1:<port>`), `port`, `stop()` (idempotent) and
 * `restart()` (stop, then start again on the same port; all sessions are lost,
 * exactly like a broker crash without persistence). Resolve once the port accepts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../transports/embedded-broker.js';

export interface TestBroker {
  readonly name: 'aedes' | 'mosquitto';
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

const HOST = '127.0.0.1';

/** A free loopback port (bound then released; the OS does not hand it out again at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once `port` accepts a TCP connection; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ port, host: HOST });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} on ${HOST} did not accept connections within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The embedded broker (aedes) in this process. `persistent`: on its SQLite store in a temp file,
 * as an agent runs it (sessions survive its restart, and a reconnecting session's queue is
 * replayed in order ahead of live messages); otherwise aedes's in-memory store.
 */
export async function startAedes(options: { persistent?: boolean } = {}): Promise<TestBroker> {
  const file = options.persistent ? join(mkdtempSync(join(tmpdir(), 'ferry-aedes-')), 'broker.db') : undefined;
  const opts = file ? { persistenceFile: file } : {};
  let broker: EmbeddedBroker | undefined = await startEmbeddedBroker({ port: 0, host: HOST, ...opts });
  const port = broker.port;
  return {
    name: 'aedes',
    url: broker.url,
    port,
    async stop() {
      const b = broker;
      broker = undefined;
      await b?.close();
      if (file) rmSync(dirname(file), { recursive: true, force: true });
    },
    async restart() {
      await broker?.close();
      broker = undefined;
      // The old listener is gone; retry briefly in case the port is still being released.
      for (let attempt = 0; ; attempt++) {
        try {
          broker = await startEmbeddedBroker({ port, host: HOST, ...opts });
          return;
        } catch (e) {
          if (attempt >= 40) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
  };
}

function findMosquitto(): string {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto']) {
    if (existsSync(p)) return p;
  }
  const which = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  if (which.status === 0 && found) return found;
  throw new Error(
    'mosquitto is not installed: the transport tests need the real Mosquitto broker. ' +
      'Install it with `apt-get install -y mosquitto mosquitto-clients` (or run `npm test`, whose pretest does it).',
  );
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export interface MosquittoOptions {
  /**
   * Extra configuration lines, given the broker's temp dir (for password and ACL
   * files written there). With any, anonymous clients are refused unless a line
   * says otherwise.
   */
  config?: (dir: string) => string[];
  /** Keep sessions and queued messages on disk (`persistence true`). Default false. */
  persistence?: boolean;
  /** With persistence: seconds between saves (`autosave_interval`, time-based). Default 1800. */
  autosaveSeconds?: number;
  /**
   * The whole configuration instead of the generated one (`ferry broker-config`'s output), given
   * the broker's temp dir and its port; it must hold a listener on that port. The log lines are
   * added. `<dir>/db/` exists and the broker's own user can write it (for `persistence_location`).
   */
  fullConfig?: (dir: string, port: number) => string;
}

/** A Mosquitto test broker; `crash()` SIGKILLs it and starts it again on the same port and files. */
export interface MosquittoBroker extends TestBroker {
  crash(): Promise<void>;
  /** Stops the broker (SIGTERM) and leaves it down until `up()`, on the same port and files. */
  down(): Promise<void>;
  up(): Promise<void>;
  /** The broker's log (stderr, errors and warnings) over all its starts, the last 4,000 characters. */
  log(): string;
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const bin = findMosquitto();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mosquitto-'));
  const extra = options.config?.(dir) ?? [];
  const conf = join(dir, 'mosquitto.conf');
  const db = join(dir, 'db');
  // Started as root, Mosquitto drops to its own user (`mosquitto`), which must reach and write the
  // directory, or it fails every save (logged only as it happens) and keeps running without one.
  const persistence = options.persistence
    ? ['persistence true', `persistence_location ${db}/`, `autosave_interval ${options.autosaveSeconds ?? 1800}`, 'autosave_on_changes false']
    : ['persistence false'];
  // set_tcp_nodelay: Mosquitto leaves Nagle on by default, which with delayed ACKs adds ~40 ms to every
  // request/response round trip on loopback; Ferry's own sockets and the embedded broker set TCP_NODELAY too.
  const confText = options.fullConfig ? [options.fullConfig(dir, port).trimEnd(), 'log_dest stderr', 'log_type error', 'log_type warning', ''].join('\n') : [
    'set_tcp_nodelay true',
    `listener ${port} ${HOST}`,
    ...(options.config ? extra : ['allow_anonymous true']),
    ...persistence,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n');

  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    // Written at every start: stop() removes the temp dir, and a test may restart after a stop.
    mkdirSync(dir, { recursive: true });
    writeFileSync(conf, confText);
    if (options.persistence || options.fullConfig) {
      mkdirSync(db, { recursive: true });
      chmodSync(dir, 0o711);
      chmodSync(db, 0o777);
    }
    const c = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    children.add(c);
    c.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let exited = false;
    c.once('exit', () => {
      exited = true;
      children.delete(c);
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exited) throw new Error(`mosquitto exited at start (port ${port}): ${stderr.trim()}`);
      try {
        await waitForPort(port, 200);
        return;
      } catch {
        if (Date.now() > deadline) {
          c.kill('SIGKILL');
          throw new Error(`mosquitto did not accept connections on ${HOST}:${port} within 10 s: ${stderr.trim()}`);
        }
      }
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };

  const relaunch = async (): Promise<void> => {
    // Mosquitto sets SO_REUSEADDR, but retry in case the port is still held for a moment.
    for (let attempt = 0; ; attempt++) {
      try {
        await launch();
        return;
      } catch (e) {
        if (attempt >= 10) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  await launch();
  return {
    name: 'mosquitto',
    url: `mqtt://${HOST}:${port}`,
    port,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await relaunch();
    },
    async crash() {
      await kill('SIGKILL');
      await relaunch();
    },
    down: () => kill(),
    up: () => relaunch(),
    log: () => stderr,
  };
}

export const BROKERS = [
  ['aedes', startAedes],
  ['mosquitto', startMosquitto],
] as const;
