import type { FerryError } from '../../core/errors.js';
import type { Envelope } from '../../transports/contract.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { systemClock, type Clock } from './clock.js';

/**
 * The services' log of messages they drop or refuse as malformed (transports/PROTOCOL.md
 * §3.4 "reported locally", and "Services"). Rate-limited per source, and never a byte of a
 * payload: a line names the code, the field, the topic, the type and the sender, never the
 * error's message (it quotes the offending value) nor any body content.
 *
 * Events:
 * - `services.invalid` (warn): a message on a services topic dropped unanswered — not CBOR,
 *   a bad envelope, too large, a request without `replyTo`;
 * - `services.bad-request` (debug): a request answered `SERVICE_BAD_REQUEST` (the sender was
 *   told; the line is for whoever debugs the sender);
 * - `services.ignored` (debug): a retained description or death notice discovery ignored;
 * - `services.log-suppressed` (warn): at the end of an interval in which lines were suppressed,
 *   how many, in all and for the ten sources with most.
 *
 * A source is the envelope's `from` when the envelope decoded and `from` is a device id,
 * else the topic the message came on.
 */
export type ServicesLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Where log lines go: `(level, event, fields)`. The runtime's `Logger.log` has this shape. */
export type ServicesLogSink = (level: ServicesLogLevel, event: string, fields: Record<string, unknown>) => void;

export interface ServicesLogLimits {
  /** Most lines one source may cause per interval; more are counted, not written. Default 5, limits 1..10,000. */
  linesPerSource?: number;
  /** Length of a rate-limit interval. ms, default 60,000, limits 100..86,400,000. */
  intervalMs?: number;
  /** Most lines per interval over all sources together (a flood with forged senders). Default 100, limits 1..1,000,000. */
  maxLines?: number;
}

export type ResolvedLogLimits = Required<ServicesLogLimits>;

export const DEFAULT_LOG_LIMITS: ResolvedLogLimits = { linesPerSource: 5, intervalMs: 60_000, maxLines: 100 };

/** Sources whose suppressed lines are counted one by one in an interval; more share one count. */
const MAX_COUNTED_SOURCES = 1000;
const OTHER = '(other sources)';
const FIELD_PATH = /^[A-Za-z0-9_.[\]]{1,200}$/;
const TYPE_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

export class ServicesLog {
  private windowStart: number;
  private total = 0;
  private readonly lines = new Map<string, number>();
  private readonly suppressed = new Map<string, number>();
  private suppressedTotal = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sink: ServicesLogSink | undefined,
    readonly limits: ResolvedLogLimits = DEFAULT_LOG_LIMITS,
    private readonly clock: Clock = systemClock,
    /** The event that reports suppressed lines (a part above the services keeps its own prefix). */
    private readonly suppressedEvent = 'services.log-suppressed',
  ) {
    this.windowStart = clock.now();
  }

  /** True if lines go anywhere (a log without a sink costs one test per report). */
  get enabled(): boolean {
    return this.sink !== undefined;
  }

  /** A message dropped unanswered: the bus's `invalid` event (its error carries `details.topic`). */
  invalid(e: FerryError): void {
    if (!this.sink) return;
    const topic = typeof e.details.topic === 'string' ? e.details.topic : undefined;
    this.line('warn', 'services.invalid', topic ?? '(unknown topic)', { code: e.code, ...fieldOf(e), ...(topic !== undefined ? { topic: clip(topic) } : {}) });
  }

  /** A request refused with SERVICE_BAD_REQUEST. */
  badRequest(env: Envelope, topic: string, e: FerryError): void {
    if (!this.sink) return;
    this.line('debug', 'services.bad-request', sourceOf(env, topic), { code: e.code, ...fieldOf(e), topic: clip(topic), ...typeOf(env), ...fromOf(env) });
  }

  /** A retained description or death notice that discovery ignored (`reason` is one of a few fixed words). */
  ignored(env: Envelope, topic: string, reason: string, e?: FerryError): void {
    if (!this.sink) return;
    this.line('debug', 'services.ignored', sourceOf(env, topic), { reason, ...(e ? { code: e.code, ...fieldOf(e) } : {}), topic: clip(topic), ...typeOf(env), ...fromOf(env) });
  }

  /** Writes the suppressed count of the current interval now (at close), and starts a new interval. */
  flush(): void {
    this.roll(this.clock.now());
  }

  close(): void {
    this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * A line of another part (the bridge's refusals) under the same limits: written, or counted
   * when `source` (a device id, or a fixed word) is over its limit. True if written.
   */
  report(level: ServicesLogLevel, event: string, source: string, fields: Record<string, unknown>): boolean {
    return this.sink ? this.line(level, event, source, fields) : false;
  }

  private line(level: ServicesLogLevel, event: string, source: string, fields: Record<string, unknown>): boolean {
    const now = this.clock.now();
    if (now - this.windowStart >= this.limits.intervalMs) this.roll(now);
    const n = this.lines.get(source) ?? 0;
    if (n >= this.limits.linesPerSource || this.total >= this.limits.maxLines) {
      const key = this.suppressed.has(source) || this.suppressed.size < MAX_COUNTED_SOURCES ? source : OTHER;
      this.suppressed.set(key, (this.suppressed.get(key) ?? 0) + 1);
      this.suppressedTotal++;
      if (this.timer === undefined) {
        // Report the count when the interval ends even if nothing else arrives.
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.flush();
        }, Math.max(1, this.windowStart + this.limits.intervalMs - now));
        this.timer.unref();
      }
      return false;
    }
    this.lines.set(source, n + 1);
    this.total++;
    this.write(level, event, { ...fields, source: clip(source) });
    return true;
  }

  private roll(now: number): void {
    if (this.suppressedTotal > 0) {
      const top = [...this.suppressed].sort((a, b) => b[1] - a[1]).slice(0, 10);
      this.write('warn', this.suppressedEvent, { suppressed: this.suppressedTotal, intervalMs: this.limits.intervalMs, bySource: Object.fromEntries(top.map(([k, v]) => [clip(k), v])) });
    }
    this.windowStart = now;
    this.total = 0;
    this.lines.clear();
    this.suppressed.clear();
    this.suppressedTotal = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(level: ServicesLogLevel, event: string, fields: Record<string, unknown>): void {
    try {
      this.sink?.(level, event, fields);
    } catch {
      // A broken sink must not break message handling.
    }
  }
}

function clip(s: string): string {
  return s.length > 256 ? `${s.slice(0, 256)}…` : s;
}

function fieldOf(e: FerryError): { field?: string } {
  const f = e.details.field;
  return typeof f === 'string' && FIELD_PATH.test(f) ? { field: f } : {};
}

function typeOf(env: Envelope): { type?: string } {
  return TYPE_NAME.test(env.type) ? { type: env.type } : {};
}

function fromOf(env: Envelope): { from?: string } {
  return DEVICE_ID_PATTERN.test(env.from) ? { from: env.from } : {};
}

function sourceOf(env: Envelope, topic: string): string {
  return DEVICE_ID_PATTERN.test(env.from) ? env.from : topic;
}
