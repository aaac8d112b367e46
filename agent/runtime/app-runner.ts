import { isFerryError, FerryError } from '../../core/errors.js';
import { isExpired, readEnvelope } from '../../transports/envelope.js';
import type { SessionMessage } from '../../transports/durable-session.js';
import type { AppInstance, CallOutcome, OutboxEntry } from './app-instance.js';
import type { RunnerObserver } from './runner-observer.js';

/** Called once the call's effects are committed (or, for a repeat, once its record is). */
export type CallDone = (outcome: CallOutcome, repeat: boolean) => void;

/** What a runner needs from the agent around it. */
export interface RunnerHost {
  /** Publishes the answer to a mailbox request (after the commit); `then` once the broker has it. */
  answer(replyTo: string, corr: string, outcome: CallOutcome, then: () => void): void;
  /** Delivers committed outbox entries; the agent calls `runner.delivered(id)` as each is done. */
  deliver(entries: OutboxEntry[]): void;
  /** Reports a dropped message or a failed hook. */
  warn(event: string, data: Record<string, unknown>): void;
  /** A line for whoever debugs a device (written at --log-level debug only). Optional. */
  debug?(event: string, data: Record<string, unknown>): void;
  /** Counts calls, drops and commits (the ops endpoint's metrics). Optional: without it nothing is counted. */
  observer?: RunnerObserver | undefined;
  /** A commit failed: the runner has stopped; the agent takes the instance off. */
  failed(e: unknown): void;
  now(): number;
  /** Clock difference tolerated when checking a request's ttl, ms. */
  maxClockSkewMs: number;
  /** Largest mailbox payload taken, bytes (PROTOCOL §1: the bus's maxMessageBytes); bigger ones are dropped unread. */
  maxMessageBytes: number;
}

/** Group-commit figures. */
export interface RunnerStats {
  calls: number;
  commits: number;
  /** Calls in the largest group commit. */
  maxBatch: number;
  /** Mailbox messages dropped as malformed or expired (acknowledged, never run). */
  dropped: number;
}

/**
 * Runs one instance's calls and group-commits them.
 *
 * Every call runs as a transaction and its completion waits in the batch. Local
 * calls (the control channel, a timer, a service result) run at once; mailbox
 * messages are queued and run when the event loop has no more input for now
 * (setImmediate), in bursts of at most `maxBatch` under one time limit; the batch
 * is then committed as one checkpoint.
 * Only then are answers published, mailbox messages acknowledged (in that order:
 * a crash between the two redelivers the request, which gets its recorded
 * answer) and outbox entries handed to the agent.
 */
export class AppRunner {
  readonly stats: RunnerStats = { calls: 0, commits: 0, maxBatch: 0, dropped: 0 };
  /** Completions of the calls since the last commit; `fail` is told if the commit fails. */
  private batch: Array<{ done: () => void; fail?: (e: unknown) => void }> = [];
  /** Mailbox messages received and not yet run. */
  private inbox: SessionMessage[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private held = false;

  constructor(
    readonly instance: AppInstance,
    private readonly host: RunnerHost,
    private readonly maxBatch: number,
  ) {}

  /** Runs `handler` now; `done` is called after the commit holding it. */
  call(handler: string, message: unknown, requestId: string | undefined, done: CallDone, fail?: (e: unknown) => void): void {
    if (this.stopped) throw new FerryError('APP_NOT_RUNNING', `app ${this.instance.instance} is not running`, { field: 'app', app: this.instance.instance });
    const r = this.instance.call(handler, message, requestId);
    if (!r.repeat && !r.outcome.ok && r.outcome.code === 'APP_TIMEOUT') this.host.warn('handler.timeout', { app: this.instance.instance, handler, error: r.outcome.message });
    this.stats.calls++;
    this.host.observer?.called(this.instance.instance, r.repeat ? 'repeat' : r.outcome.ok ? 'ok' : 'error');
    this.batch.push({ done: () => done(r.outcome, r.repeat), fail });
    this.schedule();
  }

  /** Runs a hook (onResume, onLeaseLost, ...) as a call of the next commit. */
  hook(name: 'onResume' | 'onLeaseLost' | 'onMigrated', message: unknown): void {
    if (this.stopped) return;
    const outcome = this.instance.hook(name, message);
    if (!outcome.ok) this.host.warn('hook.failed', { app: this.instance.instance, hook: name, code: outcome.code, error: outcome.message });
    this.batch.push({ done: () => undefined });
    this.schedule();
  }

  /** A promise form of `call` (the control channel, tests). */
  callAsync(handler: string, message: unknown, requestId?: string): Promise<{ outcome: CallOutcome; repeat: boolean }> {
    return new Promise((resolve, reject) => {
      try {
        this.call(handler, message, requestId, (outcome, repeat) => resolve({ outcome, repeat }), reject);
      } catch (e) {
        reject(e);
      }
    });
  }

  /** One mailbox message: an `app.call` envelope `{ handler, message }`; its id is the request id. */
  onMailbox(m: SessionMessage): void {
    if (this.stopped) return; // left unacknowledged: the broker redelivers it to the next runner
    // Run at the flush, in bursts under one time limit (see AppInstance.burst).
    this.inbox.push(m);
    this.schedule();
  }

  /** Runs queued mailbox messages, at most maxBatch, under one time limit. */
  private runInbox(): void {
    const msgs = this.inbox.splice(0, this.maxBatch);
    let i = 0;
    try {
      this.instance.burst(() => {
        for (; i < msgs.length; i++) this.handle(msgs[i]!);
      });
    } catch (e) {
      if (!isFerryError(e, 'APP_TIMEOUT')) {
        this.host.warn('mailbox.failed', { app: this.instance.instance, error: String(e) });
        return; // unacknowledged: redelivered after a restart
      }
      // msgs[i] ran away (or the burst was long): it and the rest run alone, each under its own limit.
      for (; i < msgs.length; i++) {
        try {
          this.handle(msgs[i]!);
        } catch (err) {
          this.host.warn('mailbox.failed', { app: this.instance.instance, error: String(err) });
        }
      }
    }
  }

  private handle(m: SessionMessage): void {
    // §1: a payload over the limit is dropped unread (never decoded, so it cannot be answered).
    if (m.payload.length > this.host.maxMessageBytes) {
      this.drop(m, 'too-large', { bytes: m.payload.length, limit: this.host.maxMessageBytes });
      return;
    }
    let read;
    try {
      read = readEnvelope(m.payload);
    } catch (e) {
      this.drop(m, 'malformed', { error: (e as FerryError).message });
      return;
    }
    const env = read.env;
    if (isExpired(env, this.host.now(), this.host.maxClockSkewMs)) {
      this.drop(m, 'expired', { id: env.id });
      return;
    }
    const body = env.body as { handler?: unknown; message?: unknown } | null;
    const replyTo = env.replyTo;
    // A.4 step 3: a request that cannot run is refused in its turn. Nothing is recorded, so the
    // same id with a valid body runs: an id names an accepted request, and this one was not.
    const refuse = (field: string, why: string): void => {
      const bad: CallOutcome = { ok: false, code: 'APP_BAD_REQUEST', message: `request ${env.id} to app ${this.instance.instance}: ${why}`, field };
      this.drop(m, 'bad-request', { id: env.id, field, detail: why }, replyTo ? () => this.host.answer(replyTo, env.id, bad, m.ack) : undefined);
    };
    if (env.type !== 'app.call') return refuse('envelope.type', `type must be app.call, got ${JSON.stringify(env.type)}`);
    // The body alone is outside the CBOR subset (a tag, a duplicate key, too deep): never reaches a handler.
    if (read.bodyError) return refuse(String(read.bodyError.details.field), read.bodyError.message);
    if (body === null || typeof body !== 'object' || typeof body.handler !== 'string') return refuse('body.handler', 'body.handler must be a handler name');
    this.call(body.handler, body.message === undefined ? null : body.message, env.id, (outcome) => {
      if (replyTo) this.host.answer(replyTo, env.id, outcome, m.ack);
      else m.ack();
    });
  }

  /** A message that runs nothing: acknowledged (and answered) in its turn, after the calls before it. */
  private drop(m: SessionMessage, why: string, data: Record<string, unknown>, answer?: () => void): void {
    this.stats.dropped++;
    this.host.observer?.dropped(this.instance.instance);
    this.host.warn('mailbox.dropped', { app: this.instance.instance, why, ...data });
    this.batch.push({ done: answer ?? m.ack });
    this.schedule();
  }

  /** Starts the app's timers: each tick is a call of its handler with `{ timer }`. */
  startTimers(): void {
    for (const [name, t] of this.instance.definition.timers) {
      const h = setInterval(() => {
        if (this.stopped) return;
        try {
          this.call(t.handler, { timer: name }, undefined, () => undefined);
        } catch (e) {
          // Nothing from a tick may reach the event loop: an uncaught error would end the agent.
          this.host.warn('timer.failed', { app: this.instance.instance, timer: name, error: String(e) });
        }
      }, t.everyMs);
      h.unref();
      this.timers.push(h);
    }
  }

  /** Calls queue and nothing runs until `release` (an arrival, until its commit is answered). */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.held) return;
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      this.flush();
    });
  }

  /** Runs the queued mailbox messages and commits, a group of at most maxBatch at a time. */
  flush(): void {
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    do {
      if (this.stopped) return;
      if (this.inbox.length > 0) this.runInbox();
      this.commitBatch();
    } while (this.inbox.length > 0);
  }

  /** Commits the batch and releases its answers, acks and outbox entries. */
  private commitBatch(): void {
    if (this.batch.length === 0 || this.stopped) return;
    const batch = this.batch;
    this.batch = [];
    try {
      const t0 = performance.now();
      const c = this.instance.commit();
      if (c) {
        this.stats.commits++;
        this.stats.maxBatch = Math.max(this.stats.maxBatch, c.calls);
        this.host.observer?.committed(this.instance.instance, c.calls, (performance.now() - t0) / 1000);
        this.host.debug?.('mailbox.commit', { app: this.instance.instance, calls: c.calls, ms: Math.round((performance.now() - t0) * 100) / 100, checkpoint: this.instance.heapStats().version });
      }
    } catch (e) {
      // Nothing is answered or acknowledged: mailbox requests are redelivered and run again after a
      // restart; local callers are told now.
      this.host.warn('commit.failed', { app: this.instance.instance, error: String(e) });
      this.stopped = true;
      for (const t of this.timers) clearInterval(t);
      for (const b of batch) b.fail?.(e);
      this.host.failed(e);
      return;
    }
    for (const b of batch) b.done();
    const out = this.instance.takeOutbox();
    if (out.length > 0) this.host.deliver(out);
    // A bookmark: the heap may collect (precisely) or checkpoint what is due.
    this.instance.maintain();
  }

  /** The agent finished delivering an outbox entry. */
  delivered(id: string): void {
    this.instance.delivered(id);
  }

  /** Takes calls again after `stop` (an aborted handoff); the caller restarts the timers with the session. */
  restart(): void {
    this.stopped = false;
  }

  /** Stops timers and commits what is pending; no call runs after. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.flush();
    this.stopped = true;
  }
}
