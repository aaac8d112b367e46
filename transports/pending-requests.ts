import { ERROR_CODES, FerryError, isFerryError, WIRE_DETAILS, type ErrorCode } from '../core/errors.js';
import type { Envelope } from './contract.js';

interface Waiter {
  id: string;
  resolve: (env: Envelope) => void;
  reject: (e: Error) => void;
  deadline: number;
  topic: string;
  type: string;
  timeoutMs: number;
  settled: boolean;
}

/** Waiters with one timeout value, in deadline order (= insertion order), consumed from `head`. */
interface Lane {
  items: (Waiter | undefined)[];
  head: number;
}

/**
 * Requests waiting for their answer, by request id (= the answer's `corr`),
 * each with its timeout; and the mapping between FerryErrors and `error`
 * answer bodies, so an error crosses the network with its code intact.
 *
 * Timeouts: one timer for all, not one `setTimeout` per request. Waiters with
 * the same timeout are kept in a FIFO (a "lane"), which is also deadline order;
 * answered waiters are dropped from the front of their lane as they settle.
 * The timer is armed for the earliest deadline at the lanes' heads; when it
 * fires it fails what is due and re-arms. So a request costs two array
 * operations, and the timer is re-armed about once per timeout period (or when
 * a request with a shorter timeout arrives), not twice per request.
 */
export class PendingRequests {
  private readonly waiting = new Map<string, Waiter>();
  private readonly lanes = new Map<number, Lane>();
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (clock ms), if armed. */
  private timerAt = Infinity;

  /** `now`: a monotonic clock in ms (the default), so a wall-clock step neither fires nor delays timeouts. */
  constructor(private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.waiting.size;
  }

  /**
   * Waits for the answer to request `id`; rejects with BUS_TIMEOUT (naming the
   * topic and type) after `timeoutMs`. The timeout error is built only when it fires.
   */
  wait(id: string, timeoutMs: number, topic: string, type: string): Promise<Envelope> {
    return new Promise<Envelope>((resolve, reject) => {
      const deadline = this.now() + timeoutMs;
      const w: Waiter = { id, resolve, reject, deadline, topic, type, timeoutMs, settled: false };
      this.waiting.set(id, w);
      let lane = this.lanes.get(timeoutMs);
      if (!lane) this.lanes.set(timeoutMs, (lane = { items: [], head: 0 }));
      lane.items.push(w);
      if (deadline < this.timerAt) this.arm(deadline);
      else if (this.timer !== undefined && this.waiting.size === 1) this.timer.ref();
    });
  }

  /** Settles the request an answer is for; false if none waits (late, or not ours). */
  answer(env: Envelope): boolean {
    if (env.corr === undefined) return false;
    const w = this.take(env.corr);
    if (!w) return false;
    if (env.type === 'error') w.reject(errorFromAnswer(env));
    else w.resolve(env);
    return true;
  }

  fail(id: string, err: Error): void {
    this.take(id)?.reject(err);
  }

  failAll(err: Error): void {
    for (const id of [...this.waiting.keys()]) this.fail(id, err);
  }

  /** Removes a waiter (answered or failed); its lane forgets settled waiters at its front. */
  private take(id: string): Waiter | undefined {
    const w = this.waiting.get(id);
    if (!w) return undefined;
    this.waiting.delete(id);
    w.settled = true;
    const lane = this.lanes.get(w.timeoutMs);
    if (lane) this.trim(lane);
    // Nothing waits: the armed timer must not keep the process alive (it fires once, finds nothing).
    if (this.waiting.size === 0) this.timer?.unref();
    return w;
  }

  private trim(lane: Lane): void {
    const items = lane.items;
    while (lane.head < items.length && items[lane.head]!.settled) items[lane.head++] = undefined;
    if (lane.head === items.length) {
      items.length = 0;
      lane.head = 0;
    } else if (lane.head > 1024 && lane.head * 2 > items.length) {
      items.splice(0, lane.head);
      lane.head = 0;
    }
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - this.now()));
  }

  /** Fails every waiter past its deadline, then re-arms for the earliest one left. */
  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    let next = Infinity;
    for (const [timeoutMs, lane] of this.lanes) {
      this.trim(lane);
      while (lane.head < lane.items.length) {
        const w = lane.items[lane.head]!;
        if (w.deadline > now) break;
        this.waiting.delete(w.id);
        w.settled = true;
        this.trim(lane);
        w.reject(new FerryError('BUS_TIMEOUT', `request ${w.type} to ${w.topic} got no answer within ${w.timeoutMs} ms`, { field: 'options.timeoutMs', topic: w.topic, type: w.type }));
      }
      const head = lane.items[lane.head];
      if (head) next = Math.min(next, head.deadline);
      else this.lanes.delete(timeoutMs);
    }
    if (next !== Infinity) this.arm(next);
  }
}

/** A plain value that may cross the wire in an error answer's `details`. */
export type PlainValue = string | number | boolean;

/** The body of an `error` answer (PROTOCOL.md §4.1). */
export interface ErrorAnswerBody {
  code: string;
  message: string;
  field?: string;
  /** Plain values chosen by the code (core/errors.ts WIRE_DETAILS); absent when there are none. */
  details?: Record<string, PlainValue>;
}

function isPlain(v: unknown): v is PlainValue {
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * The body of an `error` answer for a handler's failure: `{code, message, field?, details?}`.
 * `details` holds only the keys WIRE_DETAILS lists for the code, with plain values: the rest
 * of the error's details (topics, paths, foreign input) never leaves this device.
 */
export function errorAnswerBody(e: unknown): ErrorAnswerBody {
  if (!isFerryError(e)) return { code: 'REMOTE_ERROR', message: e instanceof Error ? e.message : String(e) };
  const body: ErrorAnswerBody = { code: e.code, message: e.message };
  if (e.details.field !== undefined) body.field = e.details.field;
  const keys = WIRE_DETAILS[e.code];
  if (keys) {
    let details: Record<string, PlainValue> | undefined;
    for (const k of keys) {
      const v = e.details[k];
      if (isPlain(v)) (details ??= {})[k] = v;
    }
    if (details) body.details = details;
  }
  return body;
}

/** Keys of a FerryError's details that an answer's `details` map cannot override. */
const RESERVED_DETAILS = new Set(['from', 'field', 'remoteCode']);

/**
 * A FerryError from an `error` answer: its code if this end knows it, else REMOTE_ERROR keeping
 * the foreign code. The answer's `details` (plain values only; other values are dropped) become
 * the error's details, beside `from` and `field`.
 */
export function errorFromAnswer(env: Envelope): FerryError {
  const b = env.body as { code?: unknown; message?: unknown; field?: unknown; details?: unknown } | null;
  const message = b && typeof b.message === 'string' ? b.message : `request failed at ${env.from}`;
  const remoteCode = b && typeof b.code === 'string' ? b.code : undefined;
  const code: ErrorCode = remoteCode !== undefined && Object.prototype.hasOwnProperty.call(ERROR_CODES, remoteCode) ? (remoteCode as ErrorCode) : 'REMOTE_ERROR';
  const details: Record<string, unknown> = {};
  const wire = b ? b.details : undefined;
  if (wire !== null && typeof wire === 'object' && !Array.isArray(wire) && !(wire instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(wire as Record<string, unknown>)) if (!RESERVED_DETAILS.has(k) && isPlain(v)) details[k] = v;
  }
  details.from = env.from;
  if (b && typeof b.field === 'string') details.field = b.field;
  if (code === 'REMOTE_ERROR' && remoteCode !== undefined) details.remoteCode = remoteCode;
  return new FerryError(code, message, details);
}
