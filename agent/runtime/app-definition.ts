import { isAsyncFunction } from 'node:util/types';
import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';

/** A service an app leases while it runs (see agent/services). */
export interface ServiceRequirement {
  /** Service type, as announced (`display`, `sensor`, ...). */
  type: string;
  /** Attributes the service must have (all equal). Default none. */
  attributes: Record<string, string | number | boolean>;
  /** An optional service missing does not stop the app from running. Default false. */
  optional: boolean;
}

/** A handler, init, timer or hook: called as `(ctx, message)`; must return synchronously. */
export type AppFunction = (ctx: unknown, message: unknown) => unknown;

/** A checked app description (the module's default export). */
export interface AppDefinition {
  /** 1..64 characters: lower-case letters, digits and `-`, starting with a letter. */
  name: string;
  /** 1..32 printable characters without spaces. */
  version: string;
  requirements: {
    /** Smallest in-memory heap budget the app can run in, bytes. Default 0. */
    minHeapBytes: number;
    /** The CPU word size the app must run on, if it needs one (32 or 64); peer choice keeps to it. */
    wordBits?: 32 | 64;
    services: ServiceRequirement[];
  };
  init: AppFunction | undefined;
  handlers: Map<string, AppFunction>;
  /** Named periodic timers: every `everyMs` the handler named `handler` runs with `{ timer }`. */
  timers: Map<string, { everyMs: number; handler: string }>;
  hooks: { onLeaseLost: AppFunction | undefined; onMigrated: AppFunction | undefined; onResume: AppFunction | undefined; onUpgrade: AppFunction | undefined };
}

/** An app name, and an instance id: one topic level, lower case. */
export const NAME = /^[a-z][a-z0-9-]{0,63}$/;
const VERSION = /^[\x21-\x7e]{1,32}$/;
const HANDLER = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;
const HOOKS = ['onLeaseLost', 'onMigrated', 'onResume', 'onUpgrade'] as const;
const KEYS = ['name', 'version', 'requirements', 'init', 'handlers', 'timers', ...HOOKS];
const CODE = 'APP_BAD_DEFINITION';

/** A reader of one object of the description; fields are named `app.<path>` in errors. */
function reader(value: unknown, path: string): OptionReader {
  return new OptionReader(value as Record<string, unknown>, path, CODE);
}

function fnOrUndefined(r: OptionReader, key: string): AppFunction | undefined {
  const v = r.raw(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'function') r.fail(key, 'a function', v);
  refuseAsync(r, key, v);
  return v as AppFunction;
}

/**
 * True for an `async` function or async generator function, of any realm (apps run
 * in their own vm contexts), without calling it: V8's own flag, and for a bound or
 * proxied one, the `Symbol.toStringTag` its prototype chain gives (`AsyncFunction`).
 */
function isAsync(fn: Function): boolean {
  if (isAsyncFunction(fn)) return true;
  const tag = Object.prototype.toString.call(fn);
  return tag === '[object AsyncFunction]' || tag === '[object AsyncGeneratorFunction]';
}

/**
 * Handlers, init and hooks are synchronous transactions: an `async` one would be
 * refused at every call (APP_ASYNC_HANDLER), so it is refused with the description.
 * A plain function may still return a promise; that is refused at call time.
 */
function refuseAsync(r: OptionReader, key: string, fn: Function): void {
  if (!isAsync(fn)) return;
  const field = `${r.prefix}.${key}`;
  throw new FerryError(
    CODE,
    `${field} must be a synchronous function, got an async function: handlers, init and hooks run as transactions and cannot await (return the result directly; use ctx.request or ctx.after for what must wait)`,
    { field },
  );
}

/**
 * Checks an app module's default export and returns it in checked form. Refuses
 * unknown fields (a misspelt `handler` would otherwise be ignored silently).
 * The description comes from the app's own vm context: only property reads and
 * `typeof` are used, never `instanceof`.
 */
export function checkDefinition(value: unknown): AppDefinition {
  const app = reader(value, 'app');
  app.rejectUnknown(KEYS);
  const name = app.string('name', undefined, NAME);
  const version = app.string('version', undefined, VERSION);

  const req = reader(app.raw('requirements') ?? {}, 'app.requirements');
  req.rejectUnknown(['minHeapBytes', 'services', 'wordBits']);
  const minHeapBytes = req.number('minHeapBytes', { min: 0, max: 2 ** 40 }, 0);
  const wordBits = req.has('wordBits') ? req.number('wordBits', { min: 32, max: 64 }) : undefined;
  if (wordBits !== undefined && wordBits !== 32 && wordBits !== 64) req.fail('wordBits', '32 or 64', wordBits);
  const svcList = req.raw('services') ?? [];
  if (!Array.isArray(svcList) || svcList.length > 64) req.fail('services', 'an array of at most 64 service requirements', svcList);
  const services = (svcList as unknown[]).map((s, i): ServiceRequirement => {
    const svc = reader(s, `app.requirements.services[${i}]`);
    const type = svc.string('type');
    if (type.length > 64) svc.fail('type', 'a string of 1..64 characters', type);
    const attrsIn = svc.raw('attributes') ?? {};
    const attrs = reader(attrsIn, `${svc.prefix}.attributes`);
    const attributes: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(attrsIn as object)) {
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') attrs.fail(k, 'a string, number or boolean', v);
      attributes[k] = v;
    }
    return { type, attributes, optional: svc.boolean('optional', false) };
  });

  const handlersIn = app.raw('handlers');
  const hs = reader(handlersIn, 'app.handlers');
  const handlers = new Map<string, AppFunction>();
  for (const [k, v] of Object.entries(handlersIn as object)) {
    if (!HANDLER.test(k)) hs.fail(k, 'named with 1..64 letters, digits, _ or $ (not starting with a digit)', k);
    if (typeof v !== 'function') hs.fail(k, 'a function (ctx, message) => result', v);
    refuseAsync(hs, k, v);
    handlers.set(k, v as AppFunction);
  }
  if (handlers.size === 0) app.fail('handlers', 'an object with at least one handler', handlersIn);

  const timersIn = app.raw('timers') ?? {};
  reader(timersIn, 'app.timers');
  const timers = new Map<string, { everyMs: number; handler: string }>();
  for (const [k, t] of Object.entries(timersIn as object)) {
    const timer = reader(t, `app.timers.${k}`);
    const everyMs = timer.number('everyMs', { min: 10, max: 86_400_000 });
    const handler = timer.oneOf('handler', [...handlers.keys()]);
    timers.set(k, { everyMs, handler });
  }

  return {
    name,
    version,
    requirements: { minHeapBytes, services, ...(wordBits !== undefined ? { wordBits: wordBits as 32 | 64 } : {}) },
    init: fnOrUndefined(app, 'init'),
    handlers,
    timers,
    hooks: { onLeaseLost: fnOrUndefined(app, 'onLeaseLost'), onMigrated: fnOrUndefined(app, 'onMigrated'), onResume: fnOrUndefined(app, 'onResume'), onUpgrade: fnOrUndefined(app, 'onUpgrade') },
  };
}
