import type { Sandbox } from './sandbox.js';

/** What the agent offers one app through `ctx`. Every function is called from realm-side wrappers. */
export interface AppHost {
  /** The heap root (resolved on each access: the heap may have been reopened). */
  root(): object;
  /** Clock, ms since the epoch. */
  now(): number;
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string, data: unknown): void;
  /** Queues a message to another app instance's handler; it leaves after this call's checkpoint. */
  send(instance: string, handler: string, body: unknown): void;
  /** Queues a call of a leased service (`type`, operation `op`); its result comes back to handler `reply` as `{ ok, body }` or `{ ok: false, code, message }`. */
  request(type: string, op: string, args: unknown, reply: string): void;
  /** Runs handler `handler` with `body` in `ms` (a one-shot timer kept in the heap: it survives restarts and fires once). */
  after(ms: number, handler: string, body: unknown): void;
  /** The app's leases, as JSON text (parsed inside the app's realm). */
  leasesJson(): string;
  app: { name: string; version: string; instance: string };
}

/**
 * The `ctx` an app's handlers get, built inside the app's own realm: its functions
 * are the realm's functions, closing over the host's; its members are the
 * documented ones only, frozen. Data from the agent (leases) is rebuilt in the
 * realm from JSON, so the app gets objects of its own realm.
 */
const CTX_SOURCE = `(host) => {
  const levels = ['debug', 'info', 'warn', 'error'];
  const log = {};
  for (const l of levels) log[l] = (message, data) => host.log(l, String(message), data === undefined ? null : data);
  return Object.freeze({
    get root() { return host.root(); },
    now: () => host.now(),
    log: Object.freeze(log),
    send: (instance, handler, body) => { host.send(String(instance), String(handler), body === undefined ? null : body); },
    request: (type, op, args, reply) => { host.request(String(type), String(op), args === undefined ? {} : args, String(reply)); },
    after: (ms, handler, body) => { host.after(Number(ms), String(handler), body === undefined ? null : body); },
    leases: () => JSON.parse(host.leasesJson()),
    app: Object.freeze({ name: host.app.name, version: host.app.version, instance: host.app.instance }),
  });
}`;

export function buildContext(sandbox: Sandbox, host: AppHost): unknown {
  const make = sandbox.realmFunction(CTX_SOURCE) as (h: AppHost) => unknown;
  return make(host);
}
