import { FerryError, isFerryError } from '../../core/errors.js';
import { openHeap, type Heap, type HeapOptions } from '../heap/index.js';
import { errorAnswerBody } from '../../transports/pending-requests.js';
import type { AppDefinition, AppFunction } from './app-definition.js';
import { buildContext, type AppHost } from './app-context.js';
import type { Sandbox } from './sandbox.js';

/** What a call produced: recorded in the heap under its request id, so a repeat gets it again. */
export type CallOutcome = { ok: true; body: unknown } | { ok: false; code: string; message: string; field?: string };

export interface CallResult {
  outcome: CallOutcome;
  /** True if the request id had been applied before: the recorded outcome, nothing ran. */
  repeat: boolean;
}

export interface AppInstanceOptions {
  /** Instance id (also the heap's app id in the store). */
  instance: string;
  definition: AppDefinition;
  sandbox: Sandbox;
  /** Heap options (store, profile, ...); `app` and `autoCheckpoint` are set here. */
  heap: Omit<HeapOptions, 'app' | 'autoCheckpoint'>;
  /** Wall-clock limit of one handler, ms. */
  handlerTimeoutMs: number;
  /** Request ids remembered for exactly-once (oldest forgotten first). */
  rememberReplies: number;
  /** Services for ctx (leases, logging, clock). Sending is collected here and handed out by `commit`. */
  host: Omit<AppHost, 'root' | 'send'>;
}

/** Marks the runtime's own record among the heap's pinned objects. */
const RECORD_TAG = 'ferry.runtime/1';

interface RuntimeRecord {
  tag: string;
  initialized: boolean;
  /** Request id → outcome, insertion-ordered (the oldest is forgotten first). */
  replies: Map<string, CallOutcome>;
  /** Calls applied so far (every handler run that committed, repeats excluded). */
  applied: number;
  /** The latest successful outcome: every result passes through the heap, which refuses what it cannot hold. */
  last: CallOutcome | null;
}

interface Uncommitted {
  handler: string;
  message: unknown;
  requestId: string | undefined;
  /** What the call sent to other apps (ctx.send): it leaves after the commit, and only if the call succeeded. */
  sent: OutgoingMessage[];
}

/** A message an app sent with ctx.send. */
export interface OutgoingMessage {
  from: string;
  to: string;
  handler: string;
  body: unknown;
}

/**
 * One running app: its sandbox, its heap, and handlers run as transactions.
 *
 * A call runs inside a heap savepoint: if the handler throws, returns a promise, or
 * stores something the heap refuses, the savepoint is rolled back and the outcome is
 * a typed error. A handler stopped by its time limit may have been stopped inside the
 * heap's own code, so the in-memory heap is then not trusted at all: it is reopened
 * from its last checkpoint and the calls since then are run again (none of them was
 * answered yet: answers leave only after the checkpoint holding them, `commit`).
 *
 * Outcomes of calls with a request id are recorded in the heap, in the same
 * checkpoint as the handler's effects; a repeat of the id returns the record.
 */
export class AppInstance {
  readonly instance: string;
  readonly definition: AppDefinition;
  private heap!: Heap;
  private record!: RuntimeRecord;
  private ctx!: unknown;
  private uncommitted: Uncommitted[] = [];
  private closed = false;
  /** Messages sent by the call running now. */
  private sending: OutgoingMessage[] | undefined;

  private constructor(private readonly o: AppInstanceOptions) {
    this.instance = o.instance;
    this.definition = o.definition;
  }

  /** Opens (or creates) the instance's heap; a new instance runs `init` and is checkpointed. */
  static open(options: AppInstanceOptions): AppInstance {
    const a = new AppInstance(options);
    a.openHeap();
    if (!a.record.initialized) {
      const init = a.definition.init;
      if (init) {
        const r = a.run('init', init, undefined, undefined, false).outcome;
        if (!r.ok) {
          a.heap.close();
          throw new FerryError('APP_HANDLER_FAILED', `app ${a.instance}: init failed (${r.code}: ${r.message})`, { field: 'init', app: a.instance, cause: r.code });
        }
      }
      a.record.initialized = true;
      a.uncommitted = [];
      a.heap.checkpoint({ reason: 'init' });
    }
    return a;
  }

  /** Calls run since the last commit (their answers wait for it). */
  get pending(): number {
    return this.uncommitted.length;
  }

  get applied(): number {
    return this.record.applied;
  }

  /** Runs handler `name` with `message` as one transaction. Never throws for the app's faults: they are outcomes. */
  call(name: string, message: unknown, requestId?: string): CallResult {
    this.checkOpen();
    if (requestId !== undefined) {
      const seen = this.record.replies.get(requestId);
      if (seen !== undefined) return { outcome: this.heap.toPlain(seen) as CallOutcome, repeat: true };
    }
    const fn = this.definition.handlers.get(name);
    const { outcome, sent } = fn
      ? this.run(name, fn, message, requestId, true)
      : { outcome: { ok: false, code: 'APP_NO_HANDLER', message: `app ${this.instance} has no handler ${JSON.stringify(name)} (it has ${[...this.definition.handlers.keys()].join(', ')})`, field: 'handler' } as CallOutcome, sent: [] };
    // Successes were recorded inside their transaction (run); failures are recorded after the rollback.
    if (!outcome.ok) this.remember(requestId, outcome);
    this.uncommitted.push({ handler: name, message, requestId, sent });
    return { outcome, repeat: false };
  }

  /** Commits every call since the last commit as one checkpoint (group commit). Returns the version, or undefined if there was nothing to commit. */
  commit(): { version: number; calls: number; sent: OutgoingMessage[] } | undefined {
    this.checkOpen();
    if (this.uncommitted.length === 0) return undefined;
    const r = this.heap.checkpoint({ reason: 'group' });
    const done = this.uncommitted;
    this.uncommitted = [];
    return { version: r.version, calls: done.length, sent: done.flatMap((c) => c.sent) };
  }

  /** Checkpoints and frees the in-memory heap. */
  suspend(): number {
    this.checkOpen();
    const r = this.heap.suspend();
    this.uncommitted = [];
    this.closed = true;
    return r.version;
  }

  /** Frees the in-memory heap without a checkpoint: calls since the last commit are dropped (they were not answered). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.heap.close();
  }

  /** A plain copy of the app's root, for status and tests. */
  snapshot(): unknown {
    this.checkOpen();
    return this.heap.toPlain(this.heap.root);
  }

  private checkOpen(): void {
    if (this.closed) throw new FerryError('APP_NOT_RUNNING', `app ${this.instance} is not running`, { field: 'app', app: this.instance });
  }

  private openHeap(): void {
    this.heap = openHeap({ ...this.o.heap, app: this.o.instance, autoCheckpoint: false });
    let rec = this.heap.pinned().find((p) => (p as { tag?: unknown }).tag === RECORD_TAG) as RuntimeRecord | undefined;
    if (!rec) {
      // A heap object that is not under root: made through root, then detached and pinned.
      const root = this.heap.root;
      const key = '\u0000ferry.runtime';
      root[key] = { tag: RECORD_TAG, initialized: false, replies: new Map(), applied: 0, last: null };
      rec = root[key] as RuntimeRecord;
      delete root[key];
      this.heap.pin(rec);
      this.heap.checkpoint({ reason: 'create' });
    }
    this.record = rec;
    this.ctx = buildContext(this.o.sandbox, {
      ...this.o.host,
      root: () => this.heap.root,
      send: (to, handler, body) => {
        if (!this.sending) throw new FerryError('APP_NOT_RUNNING', `app ${this.instance}: ctx.send works only inside a handler`, { field: 'ctx.send' });
        // Copied now: the message must not change with the sender's heap after the call.
        this.sending.push({ from: this.instance, to, handler, body: structuredClone(this.heap.toPlain(body)) });
      },
    });
  }

  /**
   * One transaction: the handler's changes stay only if it returns a value the heap can keep.
   * `sent` is what it sent with ctx.send (empty unless it succeeded).
   */
  private run(name: string, fn: AppFunction, message: unknown, requestId: string | undefined, counts: boolean): { outcome: CallOutcome; sent: OutgoingMessage[] } {
    const sp = this.heap.savepoint();
    const sending: OutgoingMessage[] = [];
    this.sending = sending;
    try {
      const result = this.o.sandbox.call(fn, [this.ctx, message], this.o.handlerTimeoutMs);
      if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
        throw new FerryError('APP_ASYNC_HANDLER', `app ${this.instance}: ${name} returned a promise; handlers must return their result synchronously`, { field: `handlers.${name}` });
      }
      // The result goes into the heap now, inside the savepoint: what the heap cannot hold (a
      // function) is refused like any other bad write, and the caller gets a plain copy.
      this.record.last = { ok: true, body: result === undefined ? null : result };
      const kept = this.record.last;
      this.remember(requestId, kept);
      if (counts) this.record.applied++;
      sp.release();
      return { outcome: this.heap.toPlain(kept) as CallOutcome, sent: sending };
    } catch (e) {
      if (isFerryError(e, 'APP_TIMEOUT')) {
        // Stopped anywhere, the heap's own code included: reopen from the checkpoint, run the rest again.
        sp.release();
        this.reload();
        return { outcome: { ok: false, code: e.code, message: e.message, field: `handlers.${name}` }, sent: [] };
      }
      sp.rollback();
      sp.release();
      return { outcome: failure(this.instance, name, e), sent: [] };
    } finally {
      this.sending = undefined;
    }
  }

  private remember(requestId: string | undefined, outcome: CallOutcome): void {
    if (requestId === undefined) return;
    const replies = this.record.replies;
    replies.set(requestId, outcome);
    while (replies.size > this.o.rememberReplies) {
      const oldest = replies.keys().next().value;
      if (oldest === undefined) break;
      replies.delete(oldest);
    }
  }

  private reload(): void {
    const redo = this.uncommitted;
    this.uncommitted = [];
    this.heap.close();
    this.openHeap();
    for (const c of redo) {
      if (c.requestId !== undefined && this.record.replies.has(c.requestId)) continue;
      this.call(c.handler, c.message, c.requestId);
    }
  }
}

function failure(app: string, name: string, e: unknown): CallOutcome {
  // A FerryError (HEAP_BAD_VALUE, APP_ASYNC_HANDLER, ...) keeps its code and field, as on the wire.
  if (isFerryError(e)) return { ok: false, ...errorAnswerBody(e) };
  const msg = e !== null && typeof e === 'object' && typeof (e as { message?: unknown }).message === 'string' ? (e as { message: string }).message : String(e);
  return { ok: false, code: 'APP_HANDLER_FAILED', message: `app ${app}: ${name} threw: ${msg}`, field: `handlers.${name}` };
}
