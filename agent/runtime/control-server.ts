import { connect, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { errorAnswerBody } from '../../transports/pending-requests.js';
import type { Agent } from './agent.js';
import { MAX_LOG_READ, type LogPage } from './log-ring.js';

/** The control socket of a data directory. */
export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'ferry.sock');
}

/** Longest control request line accepted, bytes. */
export const MAX_CONTROL_LINE = 1024 * 1024;

/** A control request: one JSON line. */
export interface ControlRequest {
  id: number;
  cmd: string;
  args: Record<string, unknown>;
}

/** A control answer: one JSON line. */
export type ControlAnswer = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { code: string; message: string; field?: string } };

type Handler = (agent: Agent, a: ArgReader) => unknown;

/**
 * Commands a part above the runtime adds to the control channel (the bridge's pairing
 * commands), and fields it adds to `status`. Its names must not shadow the agent's own.
 */
export interface ControlExtension {
  commands: Record<string, (a: ArgReader) => unknown>;
  status?(): Record<string, unknown>;
}

/** Reads a request's arguments; a missing or wrong one is AGENT_BAD_REQUEST naming it. */
export class ArgReader {
  constructor(private readonly args: Record<string, unknown>) {}
  str(name: string): string {
    const v = this.args[name];
    if (typeof v !== 'string' || v.length === 0) throw new FerryError('AGENT_BAD_REQUEST', `args.${name} must be a non-empty string`, { field: `args.${name}` });
    return v;
  }
  optStr(name: string): string | undefined {
    return this.args[name] === undefined ? undefined : this.str(name);
  }
  int(name: string): number {
    const v = this.args[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new FerryError('AGENT_BAD_REQUEST', `args.${name} must be a positive integer`, { field: `args.${name}` });
    return v;
  }
  optInt(name: string): number | undefined {
    return this.args[name] === undefined ? undefined : this.int(name);
  }
  raw(name: string): unknown {
    return this.args[name];
  }
  /** A non-negative integer up to `max`, or undefined. */
  optNat(name: string, max: number): number | undefined {
    const v = this.args[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new FerryError('AGENT_BAD_REQUEST', `args.${name} must be an integer in 0..${max}`, { field: `args.${name}` });
    return v;
  }
  optBool(name: string): boolean | undefined {
    const v = this.args[name];
    if (v !== undefined && typeof v !== 'boolean') throw new FerryError('AGENT_BAD_REQUEST', `args.${name} must be a boolean`, { field: `args.${name}` });
    return v;
  }
}

/**
 * A time on the control channel: ISO 8601 in UTC (`2026-11-23T13:34:22.304Z`), in fields named `*At`
 * (and `ts`, `lastSeen`, `brokerDownSince`, `brokerUpSince`); durations are numbers of ms in fields named `*Ms`.
 */
const iso = (ms: number): string => new Date(ms).toISOString();

/** Longest a `logs` request with `wait` is held, ms (under the ferry command's 30 s request timeout). */
export const MAX_LOG_WAIT_MS = 25_000;

/**
 * `logs`: lines of the agent's log ring (`ferry logs`), of one known instance (else APP_UNKNOWN)
 * or of all. With `after` and `wait`, a read that finds nothing new waits up to `wait` ms for a
 * line (a long poll), so a follower asks again at once without busy polling.
 */
async function logs(ag: Agent, a: ArgReader): Promise<LogPage> {
  const instance = a.optStr('instance');
  if (instance !== undefined) ag.known(instance);
  const q = { instance, after: a.optNat('after', Number.MAX_SAFE_INTEGER), limit: a.optNat('limit', MAX_LOG_READ) };
  const wait = a.optNat('wait', MAX_LOG_WAIT_MS) ?? 0;
  const page = ag.log.ring.read(q);
  if (page.lines.length > 0 || page.skipped > 0 || wait === 0 || q.after === undefined) return page;
  await ag.log.ring.wait(instance, wait);
  return ag.log.ring.read(q);
}

/** Every command of the control channel (PROTOCOL.md, "Control channel"). */
const COMMANDS: Record<string, Handler> = {
  status: (ag) => ag.status(),
  apps: (ag) => {
    const r = ag.apps();
    return { ...r, apps: r.apps.map((x) => ({ ...x, installedAt: iso(x.installedAt) })) };
  },
  install: (ag, a) => ag.install(a.str('path')),
  run: (ag, a) => ag.run(a.str('app'), a.optStr('instance')),
  call: (ag, a) => ag.call(a.str('instance'), a.str('handler'), a.raw('message')),
  suspend: (ag, a) => ag.suspend(a.str('instance')),
  resume: (ag, a) => ag.resume(a.str('instance'), a.optInt('version')),
  stop: (ag, a) => ag.stop(a.str('instance')),
  upgrade: (ag, a) => ag.upgrade(a.str('instance')),
  remove: (ag, a) => ag.remove(a.str('app')),
  checkpoints: (ag, a) => ag.checkpoints(a.optStr('instance')).map((c) => ({ ...c, createdAt: iso(c.createdAt) })),
  restore: (ag, a) => ag.restore(a.str('instance'), a.int('version')),
  'checkpoint-rm': (ag, a) => ag.removeCheckpoint(a.str('instance'), a.int('version')),
  services: (ag) => ag.serviceList(),
  leases: (ag) => ag.leases().map((l) => ({ ...l, expiresAt: iso(l.expiresAt) })),
  logs,
};

export const CONTROL_COMMANDS = Object.keys(COMMANDS);

/**
 * The agent's local control channel: a Unix socket in the data directory (only
 * the data directory's owner can reach it), one JSON request per line, one JSON
 * answer per line, in order. A bad line gets an AGENT_BAD_REQUEST answer and the
 * connection stays usable; nothing a client sends can stop the agent.
 */
export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly sockets: Set<Socket>,
  ) {}

  /** Throws AGENT_RUNNING if an agent answers on the data directory's socket. */
  static async checkFree(dataDir: string): Promise<void> {
    if (await answers(controlSocketPath(dataDir))) throw new FerryError('AGENT_RUNNING', `an agent already runs on ${dataDir} (its control socket answers)`, { field: 'dataDir' });
  }

  static async listen(agent: Agent, dataDir: string, onShutdown: () => void, extension?: ControlExtension): Promise<ControlServer> {
    for (const name of Object.keys(extension?.commands ?? {})) {
      if (Object.prototype.hasOwnProperty.call(COMMANDS, name) || name === 'shutdown') throw new FerryError('BAD_OPTION', `extension command ${name} shadows an agent command`, { field: 'extension.commands' });
    }
    await ControlServer.checkFree(dataDir);
    const path = controlSocketPath(dataDir);
    rmSync(path, { force: true }); // a stale socket of an agent that died
    const sockets = new Set<Socket>();
    const server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      serve(agent, sock, onShutdown, extension);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return new ControlServer(server, path, sockets);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // An idle client (a `ferry` command left open) must not hold the shutdown.
    for (const s of this.sockets) s.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function serve(agent: Agent, sock: Socket, onShutdown: () => void, ext: ControlExtension | undefined): void {
  let buf = '';
  let chain = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('error', () => undefined);
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_CONTROL_LINE && !buf.includes('\n')) {
      buf = '';
      sock.end(`${JSON.stringify({ id: 0, ok: false, error: { code: 'AGENT_BAD_REQUEST', message: `a control request is longer than ${MAX_CONTROL_LINE} bytes`, field: 'request' } })}\n`);
      sock.destroySoon();
      sock.removeAllListeners('data');
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() === '') continue;
      // Requests of one connection are answered in order.
      chain = chain.then(() => {
        const t0 = performance.now();
        return handle(agent, line, onShutdown, ext).then((a) => {
          // The command and its outcome, never its arguments (a call's message is the app's data).
          // Not for `logs`: a follower at debug level would read the line about its own last read, forever.
          if (cmdOf(line) !== 'logs') agent.log.debug('control.request', { cmd: cmdOf(line), ms: Math.round((performance.now() - t0) * 10) / 10, ok: a.ok, ...(a.ok ? {} : { code: a.error.code }) });
          write(sock, a);
        });
      });
    }
  });
}

async function handle(agent: Agent, line: string, onShutdown: () => void, ext: ControlExtension | undefined): Promise<ControlAnswer> {
  let req: Partial<ControlRequest>;
  try {
    req = JSON.parse(line) as Partial<ControlRequest>;
  } catch (e) {
    return { id: 0, ok: false, error: { code: 'AGENT_BAD_REQUEST', message: `a control request is not JSON: ${(e as Error).message}`, field: 'request' } };
  }
  const id = typeof req?.id === 'number' ? req.id : 0;
  if (req === null || typeof req !== 'object') return { id, ok: false, error: { code: 'AGENT_BAD_REQUEST', message: 'a control request must be a JSON object', field: 'request' } };
  if (req.cmd === 'shutdown') {
    setImmediate(onShutdown);
    return { id, ok: true, result: { stopping: true } };
  }
  return { id, ...(await controlDispatcher(agent, ext)(req.cmd, req.args ?? {})) };
}

/** The outcome of one control command, as a control answer carries it (without the id). */
export type ControlOutcome = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string; field?: string } };

/** Runs one control command (not `shutdown`) by name: the single code path of the `ferry` command and the dashboard. */
export type ControlDispatch = (cmd: unknown, args: unknown) => Promise<ControlOutcome>;

/**
 * The agent's control commands and `ext`'s, as one function: a wrong name or arguments is
 * AGENT_BAD_REQUEST naming the field, a typed error is answered with its code, anything else is
 * logged (`control.failed`) and answered as REMOTE_ERROR. Never throws.
 */
export function controlDispatcher(agent: Agent, ext: ControlExtension | undefined): ControlDispatch {
  return async (cmd, args) => {
    try {
      const own = typeof cmd === 'string' && Object.prototype.hasOwnProperty.call(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
      const added = typeof cmd === 'string' && ext && Object.prototype.hasOwnProperty.call(ext.commands, cmd) ? ext.commands[cmd] : undefined;
      if (!own && !added) throw new FerryError('AGENT_BAD_REQUEST', `cmd must be one of ${[...CONTROL_COMMANDS, ...Object.keys(ext?.commands ?? {}), 'shutdown'].join(', ')}, got ${JSON.stringify(cmd)}`, { field: 'cmd' });
      if (args === null || typeof args !== 'object' || Array.isArray(args)) throw new FerryError('AGENT_BAD_REQUEST', 'args must be a JSON object', { field: 'args' });
      const reader = new ArgReader(args as Record<string, unknown>);
      let result = own ? await own(agent, reader) : await added!(reader);
      if (cmd === 'status' && ext?.status) result = { ...(result as Record<string, unknown>), ...ext.status() };
      return { ok: true, result: result === undefined ? null : result };
    } catch (e) {
      if (isFerryError(e)) return { ok: false, error: errorAnswerBody(e) };
      agent.log.error('control.failed', { cmd: typeof cmd === 'string' ? cmd : '?', error: String(e), stack: (e as Error)?.stack });
      return { ok: false, error: { code: 'REMOTE_ERROR', message: `the agent failed on ${String(cmd)}: ${(e as Error)?.message ?? String(e)}` } };
    }
  };
}

/** The `cmd` of a request line, for the log (a short word, or "?"). */
function cmdOf(line: string): string {
  try {
    const cmd = (JSON.parse(line) as { cmd?: unknown })?.cmd;
    return typeof cmd === 'string' && /^[a-z-]{1,32}$/.test(cmd) ? cmd : '?';
  } catch {
    return '?';
  }
}

function write(sock: Socket, a: ControlAnswer): void {
  if (!sock.destroyed) sock.write(`${JSON.stringify(a)}\n`);
}
