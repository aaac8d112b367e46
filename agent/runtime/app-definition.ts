import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';

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
    services: ServiceRequirement[];
  };
  init: AppFunction | undefined;
  handlers: Map<string, AppFunction>;
  /** Named periodic timers: every `everyMs` the handler named `handler` runs with `{ timer }`. */
  timers: Map<string, { everyMs: number; handler: string }>;
  hooks: { onLeaseLost: AppFunction | undefined; onMigrated: AppFunction | undefined; onResume: AppFunction | undefined };
}

const NAME = /^[a-z][a-z0-9-]{0,63}$/;
const VERSION = /^[\x21-\x7e]{1,32}$/;
const HANDLER = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;
const HOOKS = ['onLeaseLost', 'onMigrated', 'onResume'] as const;
const KEYS = new Set(['name', 'version', 'requirements', 'init', 'handlers', 'timers', ...HOOKS]);

function bad(field: string, expected: string, got: unknown): FerryError {
  return new FerryError('APP_BAD_DEFINITION', `app.${field} must be ${expected}, got ${describe(got)}`, { field: `app.${field}` });
}

/** True for an ordinary object of any realm (the description comes from the app's own vm context). */
function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fnOrUndefined(o: Record<string, unknown>, key: string, field: string): AppFunction | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw bad(field, 'a function', v);
  return v as AppFunction;
}

/**
 * Checks an app module's default export and returns it in checked form. Refuses
 * unknown top-level keys (a misspelt `handler` would otherwise be ignored silently).
 */
export function checkDefinition(value: unknown): AppDefinition {
  if (!isRecord(value)) throw new FerryError('APP_BAD_DEFINITION', `an app module must export a description object as default, got ${describe(value)}`, { field: 'app' });
  for (const k of Object.keys(value)) if (!KEYS.has(k)) throw bad(k, `absent (known fields: ${[...KEYS].join(', ')})`, value[k]);
  if (typeof value.name !== 'string' || !NAME.test(value.name)) throw bad('name', 'a name of 1..64 lower-case letters, digits and -, starting with a letter', value.name);
  if (typeof value.version !== 'string' || !VERSION.test(value.version)) throw bad('version', 'a version string of 1..32 printable characters without spaces', value.version);

  const req = value.requirements ?? {};
  if (!isRecord(req)) throw bad('requirements', 'an object', req);
  for (const k of Object.keys(req)) if (k !== 'minHeapBytes' && k !== 'services') throw bad(`requirements.${k}`, 'absent (known: minHeapBytes, services)', req[k]);
  const minHeapBytes = req.minHeapBytes ?? 0;
  if (typeof minHeapBytes !== 'number' || !Number.isInteger(minHeapBytes) || minHeapBytes < 0 || minHeapBytes > 2 ** 40) {
    throw bad('requirements.minHeapBytes', 'an integer number of bytes in 0..2^40', minHeapBytes);
  }
  const svcList = req.services ?? [];
  if (!Array.isArray(svcList) || svcList.length > 64) throw bad('requirements.services', 'an array of at most 64 service requirements', svcList);
  const services = svcList.map((s: unknown, i): ServiceRequirement => {
    const f = `requirements.services[${i}]`;
    if (!isRecord(s)) throw bad(f, 'an object { type, attributes?, optional? }', s);
    if (typeof s.type !== 'string' || s.type.length === 0 || s.type.length > 64) throw bad(`${f}.type`, 'a string of 1..64 characters', s.type);
    const attrs = s.attributes ?? {};
    if (!isRecord(attrs)) throw bad(`${f}.attributes`, 'an object of strings, numbers and booleans', attrs);
    const attributes: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(attrs)) {
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw bad(`${f}.attributes.${k}`, 'a string, number or boolean', v);
      attributes[k] = v;
    }
    const optional = s.optional ?? false;
    if (typeof optional !== 'boolean') throw bad(`${f}.optional`, 'a boolean', optional);
    return { type: s.type, attributes, optional };
  });

  if (!isRecord(value.handlers)) throw bad('handlers', 'an object of named handler functions', value.handlers);
  const handlers = new Map<string, AppFunction>();
  for (const [k, v] of Object.entries(value.handlers)) {
    if (!HANDLER.test(k)) throw bad(`handlers.${k}`, 'named with 1..64 letters, digits, _ or $ (not starting with a digit)', k);
    if (typeof v !== 'function') throw bad(`handlers.${k}`, 'a function (ctx, message) => result', v);
    handlers.set(k, v as AppFunction);
  }
  if (handlers.size === 0) throw bad('handlers', 'an object with at least one handler', value.handlers);

  const timersIn = value.timers ?? {};
  if (!isRecord(timersIn)) throw bad('timers', 'an object of { everyMs, handler }', timersIn);
  const timers = new Map<string, { everyMs: number; handler: string }>();
  for (const [k, t] of Object.entries(timersIn)) {
    if (!isRecord(t)) throw bad(`timers.${k}`, 'an object { everyMs, handler }', t);
    if (typeof t.everyMs !== 'number' || !Number.isInteger(t.everyMs) || t.everyMs < 10 || t.everyMs > 86_400_000) throw bad(`timers.${k}.everyMs`, 'an integer number of ms in 10..86400000', t.everyMs);
    if (typeof t.handler !== 'string' || !handlers.has(t.handler)) throw bad(`timers.${k}.handler`, `the name of one of the handlers (${[...handlers.keys()].join(', ')})`, t.handler);
    timers.set(k, { everyMs: t.everyMs, handler: t.handler });
  }

  return {
    name: value.name,
    version: value.version,
    requirements: { minHeapBytes, services },
    init: fnOrUndefined(value, 'init', 'init'),
    handlers,
    timers,
    hooks: {
      onLeaseLost: fnOrUndefined(value, 'onLeaseLost', 'onLeaseLost'),
      onMigrated: fnOrUndefined(value, 'onMigrated', 'onMigrated'),
      onResume: fnOrUndefined(value, 'onResume', 'onResume'),
    },
  };
}
