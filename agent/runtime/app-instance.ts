import { FerryError, isFerryError } from '../../core/errors.js';
import { openHeap, type Heap, type HeapOptions, type HeapStats } from '../heap/index.js';
import { errorAnswerBody } from '../../transports/pending-requests.js';
import { randomId128 } from '../../transports/random-id.js';
import { NAME, type AppDefinition, type AppFunction } from './app-definition.js';
import { buildContext, type AppHost } from './app-context.js';
import { plainResult } from './plain-result.js';
import { ReplyMemory } from './reply-memory.js';
import type { Sandbox } from './sandbox.js';
import { SpentIds, type SpentRecord } from './spent-ids.js';

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
  /** Request ids whose outcome is kept for exactly-once (oldest dropped first: they become spent ids). */
  rememberReplies: number;
  /** How long a spent id (outcome dropped) is still recognised, ms of mailbox time (see `mailboxMs`). */
  replayHorizonMs: number;
  /**
   * The instance's mailbox clock: ms its mailbox session has been connected so far, never
   * decreasing during this AppInstance's life (0 while it has none). Spent ids age by it.
   */
  mailboxMs: () => number;
  /** Services for ctx (leases, logging, clock). Sending is collected here and handed out by `commit`. */
  host: Omit<AppHost, 'root' | 'send' | 'request' | 'after'>;
}

/** Longest ctx.after delay, ms (30 days; past setTimeout's own ceiling the agent re-arms). */
const MAX_AFTER_MS = 30 * 86_400_000;

/** Marks the runtime's own record among the heap's pinned objects. */
const RECORD_TAG = 'ferry.runtime/1';

interface RuntimeRecord {
  tag: string;
  initialized: boolean;
  /** Request id → outcome of the newest calls, insertion-ordered (the oldest is forgotten first). */
  replies: Map<string, CallOutcome>;
  /** Earlier `replies` maps, oldest first (see REPLY_BUCKET in reply-memory.ts); absent in heaps made before them. */
  olderReplies?: Array<Map<string, CallOutcome>>;
  /** Digests of ids whose outcome was dropped, and the mailbox clock (spent-ids.ts); added at opening to heaps made before it. */
  spent?: SpentRecord;
  /** Calls applied so far (every handler run that committed, repeats excluded). */
  applied: number;
  /** The latest successful outcome: every result passes through the heap, which refuses what it cannot hold. */
  last: CallOutcome | null;
  /** Messages and service requests made by committed calls and not yet delivered (the outbox). */
  outbox: Map<string, OutboxEntry>;
  /** Sequence of outbox ids. */
  nextOut: number;
}

interface Uncommitted {
  kind: 'call' | 'hook';
  /** The call wrote nothing to the heap: alone, it needs no checkpoint (its answer still waits for the calls before it). */
  readOnly?: boolean;
  handler: string;
  message: unknown;
  requestId: string | undefined;
  /** The outcome of a call that failed: it changed nothing, so a replay only records it again. */
  failed: CallOutcome | undefined;
}

/**
 * What a call asked of the world, kept in the heap with the call's effects and
 * handed out after the commit: a message to another app (`ctx.send`) or a call of
 * a leased service (`ctx.request`), whose result comes back to handler `reply`.
 * The id is stable across restarts, so a receiver drops a repeat.
 */
export type OutboxEntry =
  | { id: string; kind: 'send'; from: string; to: string; handler: string; body: unknown }
  | { id: string; kind: 'service'; from: string; type: string; op: string; args: unknown; reply: string }
  | { id: string; kind: 'timer'; from: string; at: number; handler: string; body: unknown };

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
  /** True while a handler runs: ctx.send and ctx.request work only then. */
  private running = false;
  /** Outbox ids handed out by takeOutbox and not yet delivered. */
  private readonly handedOut = new Set<string>();
  /** Which request ids have an outcome kept, in the heap or (reads) in memory (reply-memory.ts). */
  private readonly replies: ReplyMemory;
  /** Makes this opening's outbox ids unique even after a restore to an older version. */
  private salt = '';
  /** Ids whose outcome was dropped, still recognised within the replay horizon. */
  private readonly spent: SpentIds;
  /** The mailbox clock at this opening (committed value) and `mailboxMs()` then. */
  private clockBase = 0;
  private clockMark = 0;
  /** Calls since this opening that changed nothing (not counted in `applied`, which is durable). */
  readOnlyCalls = 0;
  /** An outbox entry left the outbox since the last commit. */
  private deliveredSinceCommit = false;
  /** Set by `run` for the call it just ran. */
  private lastRunReadOnly = false;

  private constructor(private readonly o: AppInstanceOptions) {
    this.instance = o.instance;
    this.definition = o.definition;
    this.spent = new SpentIds(o.replayHorizonMs);
    this.replies = new ReplyMemory(o.rememberReplies, this.spent);
  }

  /** Opens (or creates) the instance's heap; a new instance runs `init` and is checkpointed. */
  static open(options: AppInstanceOptions): AppInstance {
    const a = new AppInstance(options);
    a.openHeap();
    if (!a.record.initialized) {
      const init = a.definition.init;
      if (init) {
        const r = a.run('init', init, undefined, undefined, false);
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

  /** Spent ids remembered (digests, copies counted) and the memory their index takes, bytes. */
  get spentIds(): { ids: number; memoryBytes: number } {
    return { ids: this.spent.size, memoryBytes: this.spent.memoryBytes };
  }

  /** The mailbox clock (ms of connected mailbox session, over the instance's whole life) by which spent ids age. */
  get mailboxClock(): number {
    return this.clockBase + Math.max(0, this.o.mailboxMs() - this.clockMark);
  }

  /** Runs handler `name` with `message` as one transaction. Never throws for the app's faults: they are outcomes. */
  call(name: string, message: unknown, requestId?: string): CallResult {
    this.checkOpen();
    if (requestId !== undefined) {
      const seen = this.replies.recalled(this.record, requestId);
      if (seen !== undefined) return { outcome: this.heap.toPlain(seen) as CallOutcome, repeat: true };
      const read = this.replies.readAnswer(requestId);
      if (read !== undefined) return { outcome: read, repeat: true };
      if (this.spent.has(requestId)) {
        // Applied before, its outcome dropped since: never run again. Spent afresh, so the horizon
        // starts again from this replay (whose acknowledgement a broker may lose once more).
        this.spent.add(requestId);
        return { outcome: alreadyApplied(this.instance, requestId, this.o.rememberReplies), repeat: true };
      }
    }
    const fn = this.definition.handlers.get(name);
    const outcome: CallOutcome = fn
      ? this.run(name, fn, message, requestId, true)
      : { ok: false, code: 'APP_NO_HANDLER', message: `app ${this.instance} has no handler ${JSON.stringify(name)} (it has ${[...this.definition.handlers.keys()].join(', ')})`, field: 'body.handler' };
    // Successes were recorded inside their transaction (run); failures are recorded after the rollback.
    // A success that changed nothing is remembered in memory only (PROTOCOL.md A.4.1).
    const readOnly = outcome.ok && this.lastRunReadOnly;
    if (!outcome.ok) this.replies.remember(this.record, requestId, outcome);
    else if (readOnly && requestId !== undefined) this.replies.rememberRead(requestId, outcome);
    this.uncommitted.push({ kind: 'call', handler: name, message, requestId, failed: outcome.ok ? undefined : outcome, readOnly });
    return { outcome, repeat: false };
  }

  /**
   * Runs `work` (calls of this instance) under one time limit: one watchdog for a
   * burst of calls instead of one per call. Past the limit, V8 stops everything
   * inside, the agent's own code too: the heap is reopened from its checkpoint and
   * the calls completed since it are run again (as after a call's own timeout), then
   * APP_TIMEOUT is thrown so the caller runs the rest of the burst call by call.
   */
  burst(work: () => void): void {
    this.checkOpen();
    try {
      this.o.sandbox.timed(work, this.o.handlerTimeoutMs);
    } catch (e) {
      if (!isFerryError(e, 'APP_TIMEOUT')) throw e;
      this.running = false;
      this.reload();
      throw e;
    }
  }

  /** Runs a hook (onResume, onLeaseLost, ...) as a call without a request id; an absent hook is a success. */
  hook(name: keyof AppDefinition['hooks'], message: unknown): CallOutcome {
    this.checkOpen();
    const fn = this.definition.hooks[name];
    if (!fn) return { ok: true, body: null };
    const outcome = this.run(name, fn, message, undefined, false);
    this.uncommitted.push({ kind: 'hook', handler: name, message, requestId: undefined, failed: outcome.ok ? undefined : outcome, readOnly: outcome.ok && this.lastRunReadOnly });
    return outcome;
  }

  /** Commits every call since the last commit as one checkpoint (group commit). Returns the version, or undefined if there was nothing to commit. */
  commit(): { version: number; calls: number } | undefined {
    this.checkOpen();
    // Calls that changed nothing need no new version: a read-only timer must not push restorable
    // versions out of the window (keepVersions), nor write to flash.
    if (this.uncommitted.every((c) => c.readOnly === true) && !this.spent.dirty) {
      this.uncommitted = [];
      return undefined;
    }
    // Ids whose outcomes these calls dropped are written as spent in the same checkpoint.
    this.spent.flush(this.record.spent!, this.mailboxClock);
    const r = this.heap.checkpoint({ reason: 'group' });
    this.deliveredSinceCommit = false;
    const done = this.uncommitted.length;
    this.uncommitted = [];
    return { version: r.version, calls: done };
  }

  /**
   * The committed outbox entries not handed out yet (plain copies). Call it after
   * `commit`: entries of uncommitted calls are not handed out.
   */
  takeOutbox(): OutboxEntry[] {
    this.checkOpen();
    if (this.uncommitted.length > 0) return [];
    const out: OutboxEntry[] = [];
    for (const [id, e] of this.record.outbox) {
      if (this.handedOut.has(id)) continue;
      this.handedOut.add(id);
      out.push(structuredClone(this.heap.toPlain(e)) as OutboxEntry);
    }
    return out;
  }

  /** An outbox entry was delivered: it leaves the outbox with the next checkpoint (a repeat after a crash is dropped by its id). */
  delivered(id: string): void {
    if (this.closed) return;
    this.record.outbox.delete(id);
    this.handedOut.delete(id);
    this.deliveredSinceCommit = true;
  }

  /**
   * Commits outbox entries delivered since the last commit (a handoff's bookmark): without it
   * they would still be in the image the peer receives, and done there again.
   */
  settle(): void {
    if (this.closed || this.uncommitted.length > 0 || !this.deliveredSinceCommit) return;
    this.spent.flush(this.record.spent!, this.mailboxClock);
    this.heap.checkpoint({ reason: 'group' });
    this.deliveredSinceCommit = false;
  }

  /** Resident heap lines, most recently used first. */
  recentLines(): number[] {
    return this.heap.internals.pager.recentLines();
  }

  /** Every committed outbox entry is handed out again by the next takeOutbox (after a pause in which timers may have been skipped). */
  rehandOutbox(): void {
    this.handedOut.clear();
  }

  /** Entries waiting in the outbox. */
  get outboxSize(): number {
    return this.record.outbox.size;
  }

  /** Checkpoints and frees the in-memory heap. */
  suspend(): number {
    this.checkOpen();
    this.spent.flush(this.record.spent!, this.mailboxClock);
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

  /**
   * At a bookmark (every call committed): lets the heap run a due collection, precise
   * here because no handler holds heap objects in its locals, or a due checkpoint.
   */
  maintain(): void {
    if (this.closed || this.uncommitted.length > 0) return;
    this.heap.runDue({ bookmark: true });
  }

  /** The heap's figures, its newest committed version and its object size limit (status, `ferry apps`). */
  heapStats(): HeapStats & { version: number; maxObjectBytes: number } {
    this.checkOpen();
    return { ...this.heap.stats(), version: this.heap.version, maxObjectBytes: this.heap.options.maxObjectBytes };
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
      root[key] = { tag: RECORD_TAG, initialized: false, replies: new Map(), applied: 0, last: null, outbox: new Map(), nextOut: 0, spent: { clock: 0, segments: [] } };
      rec = root[key] as RuntimeRecord;
      delete root[key];
      this.heap.pin(rec);
      this.heap.checkpoint({ reason: 'create' });
    }
    this.record = rec;
    rec.spent ??= { clock: 0, segments: [] };
    this.spent.load(rec.spent);
    this.clockBase = rec.spent.clock;
    this.clockMark = this.o.mailboxMs();
    this.replies.index(this.record);
    this.salt = randomId128().slice(0, 8);
    this.handedOut.clear();
    this.ctx = buildContext(this.o.sandbox, {
      ...this.o.host,
      root: () => this.heap.root,
      send: (to, handler, body) => {
        if (!NAME.test(to)) throw new FerryError('BAD_OPTION', `app ${this.instance}: ctx.send needs an instance id (a-z 0-9 -), got ${JSON.stringify(to)}`, { field: 'ctx.send.to' });
        this.enqueue('ctx.send', { kind: 'send', from: this.instance, to, handler, body });
      },
      request: (type, op, args, reply) => {
        if (!this.definition.handlers.has(reply)) {
          throw new FerryError('APP_NO_HANDLER', `app ${this.instance}: ctx.request names reply handler ${JSON.stringify(reply)}, which it does not have`, { field: 'ctx.request.reply' });
        }
        this.enqueue('ctx.request', { kind: 'service', from: this.instance, type, op, args, reply });
      },
      after: (ms, handler, body) => {
        if (!Number.isFinite(ms) || ms < 0 || ms > MAX_AFTER_MS) throw new FerryError('BAD_OPTION', `app ${this.instance}: ctx.after needs 0..${MAX_AFTER_MS} ms, got ${ms}`, { field: 'ctx.after.ms' });
        if (!this.definition.handlers.has(handler)) {
          throw new FerryError('APP_NO_HANDLER', `app ${this.instance}: ctx.after names handler ${JSON.stringify(handler)}, which it does not have`, { field: 'ctx.after.handler' });
        }
        this.enqueue('ctx.after', { kind: 'timer', from: this.instance, at: this.o.host.now() + ms, handler, body });
      },
    });
  }

  /** Puts an entry into the outbox, inside the running call's transaction. */
  private enqueue(what: string, entry: DistributiveOmit<OutboxEntry, 'id'>): void {
    if (!this.running) throw new FerryError('APP_NOT_RUNNING', `app ${this.instance}: ${what} works only inside a handler`, { field: what });
    // A copy: a heap object would be stored by reference and change with the sender's state.
    const copy = { ...entry } as Record<string, unknown>;
    for (const k of ['body', 'args'] as const) {
      if (!(k in copy)) continue;
      try {
        copy[k] = structuredClone(this.heap.toPlain(copy[k]));
      } catch (e) {
        throw new FerryError('HEAP_BAD_VALUE', `app ${this.instance}: ${what} ${k} must be plain data (no functions): ${(e as Error).message}`, { field: `${what}.${k}` });
      }
    }
    const id = `${this.instance}.${this.salt}.${this.record.nextOut++}`;
    this.record.outbox.set(id, { id, ...copy } as OutboxEntry);
  }

  /**
   * One transaction: the handler's changes (its outbox entries included) stay only if it
   * returns a value the heap can keep.
   */
  private run(name: string, fn: AppFunction, message: unknown, requestId: string | undefined, counts: boolean): CallOutcome {
    const sp = this.heap.savepoint();
    this.lastRunReadOnly = false;
    this.running = true;
    try {
      const end = this.o.sandbox.call(fn, [this.ctx, message], this.o.handlerTimeoutMs, (v) => plainResult(v, (x) => this.heap.toPlain(x), `handlers.${name}.result`));
      if (end.kind === 'promise') {
        throw new FerryError('APP_ASYNC_HANDLER', `app ${this.instance}: ${name} returned a promise; handlers must return their result synchronously`, { field: `handlers.${name}` });
      }
      if (end.kind === 'unclonable') throw end.error ?? new FerryError('HEAP_BAD_VALUE', `app ${this.instance}: ${name} returned what is not plain data: ${end.message}`, { field: `handlers.${name}.result` });
      if (end.kind === 'threw') throw end.error ?? new AppThrew(end.message);
      this.lastRunReadOnly = !sp.changed();
      if (this.lastRunReadOnly) {
        // Nothing to record durably: the result is not kept, so it need not pass through the heap.
        sp.release();
        if (counts) this.readOnlyCalls++;
        return { ok: true, body: end.value };
      }
      // The result goes into the heap now, inside the savepoint: what the heap cannot hold is
      // refused like any other bad write, and the caller gets a plain copy.
      this.record.last = { ok: true, body: end.value };
      const kept = this.record.last;
      this.replies.remember(this.record, requestId, kept);
      if (counts) this.record.applied++;
      sp.release();
      return this.heap.toPlain(kept) as CallOutcome;
    } catch (e) {
      if (isFerryError(e, 'APP_TIMEOUT')) {
        // Stopped anywhere, the heap's own code included: reopen from the checkpoint, run the rest again.
        sp.release();
        this.reload();
        return { ok: false, code: e.code, message: e.message, field: `handlers.${name}` };
      }
      sp.rollback();
      sp.release();
      return failure(this.instance, name, e);
    } finally {
      this.running = false;
    }
  }

  private reload(): void {
    const redo = this.uncommitted;
    this.uncommitted = [];
    this.heap.close();
    this.openHeap();
    // Failed calls changed nothing: they are recorded again, not run again (a call that timed
    // out would time out again, and each run would reload). Hooks run as hooks.
    for (const c of redo) {
      if (c.failed) {
        this.replies.remember(this.record, c.requestId, c.failed);
        this.uncommitted.push(c);
      } else if (c.kind === 'hook') this.hook(c.handler as keyof AppDefinition['hooks'], c.message);
      else if (c.requestId === undefined || this.replies.recalled(this.record, c.requestId) === undefined) this.call(c.handler, c.message, c.requestId);
    }
  }
}

/** The outcome of a replayed id whose own outcome is no longer kept: it is not run again. */
function alreadyApplied(app: string, id: string, window: number): CallOutcome {
  return {
    ok: false,
    code: 'APP_ALREADY_APPLIED',
    message: `request ${id} to app ${app} was applied before and its outcome is no longer kept (only the newest ${window} are); it was not applied again`,
    field: 'envelope.id',
  };
}

/** What an app threw, as text (taken inside the call's time limit). */
class AppThrew extends Error {}

function failure(app: string, name: string, e: unknown): CallOutcome {
  // A FerryError (HEAP_BAD_VALUE, APP_ASYNC_HANDLER, ...) keeps its code and field, as on the wire.
  if (isFerryError(e)) return { ok: false, ...errorAnswerBody(e) };
  const msg = e instanceof Error ? e.message : 'unknown error';
  return { ok: false, code: 'APP_HANDLER_FAILED', message: `app ${app}: ${name} threw: ${msg}`, field: `handlers.${name}` };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
