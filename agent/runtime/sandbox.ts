import vm from 'node:vm';
import { FerryError } from '../../core/errors.js';
import { acceptRealm } from '../heap/index.js';

/**
 * One app's JavaScript realm: a `node:vm` context of its own (its own globals and
 * built-ins), the app's ES module evaluated in it, and timed calls into it.
 *
 * - No imports: an app is one self-contained module (the linker refuses any import),
 *   so nothing of the agent's module graph is reachable by name.
 * - No `eval`/`new Function` from strings, no WebAssembly compilation.
 * - `microtaskMode: 'afterEvaluate'`: promise jobs an app queues run at the end of
 *   the call that queued them, inside its time limit and inside its transaction,
 *   never later between other handlers.
 * - Calls go through a script run with `timeout`: V8 stops a call that runs past it
 *   (an infinite loop included). Calling a context function directly from the agent
 *   would run it without any limit.
 *
 * Not a security boundary (Node's own documentation says so of `node:vm`): objects
 * the agent hands in keep their own realm's prototypes. It separates apps' globals
 * and bounds their time; apps are code the device's owner chose to install.
 */
export interface Sandbox {
  readonly app: string;
  /** The module's default export, as the app built it (a context-realm value). */
  readonly exported: unknown;
  /**
   * Calls `fn(...args)` inside the context and returns what came of it, inspected
   * and copied inside the same time limit (an app's getters, `then` or `message`
   * run while the clock runs). Throws APP_TIMEOUT past `timeoutMs` (wall-clock ms
   * of the call, the app's microtasks included); never throws anything else.
   */
  call(fn: Function, args: unknown[], timeoutMs: number, copy: (v: unknown) => unknown): CallEnd;
  /**
   * Runs agent code under one time limit: code that reads app objects (the
   * description), or a burst of calls. Inside it, `call` runs without a limit of its
   * own (the burst's covers it) and drains the app's microtasks after each call.
   * Returns fn's result or throws (APP_TIMEOUT past the limit; then nothing of the
   * agent's code inside ran to its end, not even its `finally` blocks).
   */
  timed<T>(fn: () => T, timeoutMs: number): T;
  /** Runs `source` (a function expression) in the context and returns the function: realm-side wrappers for ctx. */
  realmFunction(source: string): Function;
}

/**
 * What a timed call came to:
 * - `value`: a plain copy (this realm's objects) of what it returned, made by `copy`;
 * - `promise`: it returned a thenable (handlers must be synchronous);
 * - `unclonable`: `copy` refused what it returned (a function, a symbol);
 * - `threw`: it threw; a FerryError (a refused heap write, a ctx misuse) is kept as it is.
 */
export type CallEnd =
  | { kind: 'value'; value: unknown }
  | { kind: 'promise' }
  | { kind: 'unclonable'; error: FerryError | undefined; message: string }
  | { kind: 'threw'; error: FerryError | undefined; message: string };

/** Runs in the timed script, so whatever app code it triggers (getters, `then`, `message`) is bounded too. */
function settle(copy: (v: unknown) => unknown, threw: boolean, v: unknown): CallEnd {
  if (threw) {
    if (v instanceof FerryError) return { kind: 'threw', error: v, message: v.message };
    return { kind: 'threw', error: undefined, message: messageOf(v) };
  }
  if (v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function') return { kind: 'promise' };
  try {
    return { kind: 'value', value: v === undefined ? null : copy(v) };
  } catch (e) {
    return { kind: 'unclonable', error: e instanceof FerryError ? e : undefined, message: messageOf(e) };
  }
}

/** A thrown value as text, whatever it is (an object without prototype, a throwing toString). */
function messageOf(v: unknown): string {
  try {
    const m = v !== null && typeof v === 'object' ? (v as { message?: unknown }).message : undefined;
    return typeof m === 'string' ? m : String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** True if this process can load app modules (`node --experimental-vm-modules`). */
export function vmModulesAvailable(): boolean {
  return typeof (vm as { SourceTextModule?: unknown }).SourceTextModule === 'function';
}

/** The Node flags the agent process needs; the `ferry` command starts the agent with them. */
export const AGENT_NODE_FLAGS = ['--experimental-vm-modules', '--disable-warning=ExperimentalWarning'] as const;

const BOOTSTRAP = `(() => {
  let pending = null;
  Object.defineProperty(globalThis, '__ferry', { value: Object.freeze({
    set(f, a, settle) { pending = [f, a, settle]; },
    run() {
      const p = pending; pending = null;
      if (p === null) throw new Error('nothing to run');
      let r;
      try { r = p[0].apply(undefined, p[1]); } catch (e) { return p[2](true, e); }
      return p[2](false, r);
    },
  }) });
})()`;

const RUN = new vm.Script('__ferry.run()', { filename: 'ferry:call' });
/** Run nested in a burst: the app's microtasks run when it ends (afterEvaluate). */
const DRAIN = new vm.Script('0', { filename: 'ferry:drain' });

function loadError(app: string, filename: string, e: unknown): FerryError {
  if (e instanceof FerryError) return e;
  const err = e as { message?: unknown; code?: unknown } | null;
  const msg = err && typeof err.message === 'string' ? err.message : String(e);
  if (err?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return new FerryError('APP_BAD_MODULE', `app module ${filename} ran past its time limit at load`, { field: 'module', app });
  return new FerryError('APP_BAD_MODULE', `app module ${filename} cannot be loaded: ${msg}`, { field: 'module', app }, { cause: e });
}

/** Evaluates `source` (an ES module) in a fresh context and returns the sandbox. Throws APP_BAD_MODULE. */
export async function loadSandbox(source: string, options: { app: string; filename: string; timeoutMs: number }): Promise<Sandbox> {
  const { app, filename, timeoutMs } = options;
  if (!vmModulesAvailable()) {
    throw new FerryError('APP_BAD_MODULE', `app modules need Node started with ${AGENT_NODE_FLAGS[0]} (the ferry command does this)`, { field: 'module', app });
  }
  const context = vm.createContext({}, { name: `ferry app ${app}`, codeGeneration: { strings: false, wasm: false }, microtaskMode: 'afterEvaluate' });
  vm.runInContext(BOOTSTRAP, context);
  // Values the app builds in its realm are plain data to the heap (see agent/heap/values.ts).
  acceptRealm(vm.runInContext('Object.prototype', context) as object);
  const SourceTextModule = (vm as unknown as { SourceTextModule: new (src: string, o: object) => VmModule }).SourceTextModule;
  let mod: VmModule;
  try {
    mod = new SourceTextModule(source, { context, identifier: filename });
    await mod.link((specifier: string) => {
      throw new FerryError('APP_BAD_MODULE', `app module ${filename} imports ${JSON.stringify(specifier)}; an app is one self-contained module without imports`, { field: 'module', app });
    });
    const evaluated = mod.evaluate({ timeout: timeoutMs });
    // The module's own promise settles on the context's microtask queue, drained after each run in it.
    vm.runInContext('0', context);
    await evaluated;
  } catch (e) {
    throw loadError(app, filename, e);
  }
  if (mod.status === 'errored') throw loadError(app, filename, mod.error);
  const ns = mod.namespace as { default?: unknown };
  if (!('default' in ns) || ns.default === undefined) {
    throw new FerryError('APP_BAD_MODULE', `app module ${filename} has no default export (export default { name, version, handlers, ... })`, { field: 'module', app });
  }
  // Inside `timed`: calls are already bounded. Starting V8's watchdog costs ~85 µs per call
  // (a thread each time); one watchdog per burst of mailbox calls is what makes them cheap.
  let inTimed = false;
  const ferry = (context as { __ferry: { set(f: Function, a: unknown[], s: (threw: boolean, v: unknown) => unknown): void } }).__ferry;
  return {
    app,
    exported: ns.default,
    call(fn, args, limitMs, copy) {
      if (inTimed) {
        let end: CallEnd;
        try {
          end = settle(copy, false, fn.apply(undefined, args));
        } catch (e) {
          end = settle(copy, true, e);
        }
        try {
          DRAIN.runInContext(context);
        } catch (e) {
          end = { kind: 'threw', error: e instanceof FerryError ? e : undefined, message: messageOf(e) };
        }
        return end;
      }
      ferry.set(fn, args, (threw, v) => settle(copy, threw, v));
      try {
        return RUN.runInContext(context, { timeout: limitMs }) as CallEnd;
      } catch (e) {
        if (isTimeout(e)) throw timeoutError(app, limitMs);
        // A microtask of the app threw after the call returned.
        return { kind: 'threw', error: e instanceof FerryError ? e : undefined, message: messageOf(e) };
      }
    },
    timed(fn, limitMs) {
      if (inTimed) return fn();
      ferry.set(fn, [], (threw: boolean, v: unknown) => {
        if (threw) throw v;
        return v;
      });
      inTimed = true;
      try {
        return RUN.runInContext(context, { timeout: limitMs }) as ReturnType<typeof fn>;
      } catch (e) {
        if (isTimeout(e)) throw timeoutError(app, limitMs);
        throw e;
      } finally {
        inTimed = false;
      }
    },
    realmFunction(src) {
      return vm.runInContext(`(${src})`, context) as Function;
    },
  };
}

function isTimeout(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT';
}

function timeoutError(app: string, limitMs: number): FerryError {
  return new FerryError('APP_TIMEOUT', `app ${app} ran past its limit of ${limitMs} ms and was stopped`, { field: 'handlerTimeoutMs', app, limitMs });
}

interface VmModule {
  link(linker: (specifier: string) => never): Promise<void>;
  evaluate(options: { timeout: number }): Promise<void>;
  readonly status: string;
  readonly error: unknown;
  readonly namespace: object;
}
