import { FerryError } from '../core/errors.js';
import { describe } from '../core/options.js';
import { type Envelope, type EnvelopeHandler, type RequestHandler, type RequestOptions } from './contract.js';
import { encodeOwnEnvelope, newMessageId } from './envelope.js';
import { errorAnswerBody, PendingRequests } from './pending-requests.js';

/** What request/response needs from the bus under it. */
export interface RequestTransport {
  readonly deviceId: string;
  /** This end's inbox topic (answers come back here). */
  readonly inbox: string;
  readonly requestTimeoutMs: number;
  now(): number;
  publishEnvelope(topic: string, env: Envelope): Promise<void>;
  /**
   * Publishes bytes already encoded (QoS 1): the request and answer fast path.
   * `settle` is called once: null when acknowledged, else the error. No promise per publish.
   */
  publishBytes(topic: string, bytes: Buffer, settle: (err: Error | null) => void): void;
  subscribe(filter: string, handler: EnvelopeHandler): Promise<() => Promise<void>>;
  /** A request that cannot be answered (no replyTo): reported like any malformed message. */
  reportInvalid(e: FerryError): void;
  /** An answer that could not be sent. */
  reportError(e: unknown): void;
  readonly closed: boolean;
}

/**
 * Request/response over plain MQTT 3.1.1 topics (3.1.1 has no response topic or
 * correlation data): the request carries `replyTo` (the asker's inbox) and a
 * `ttl`; the answer carries `corr` = the request's id. Waiting requests live in
 * `PendingRequests` with their timers; this module adds the inbox, the
 * envelopes and the serving side. Split from mqtt-bus.ts: it only needs to
 * publish and subscribe, not the connection.
 */
export class RequestResponse {
  private readonly pending = new PendingRequests();
  private inboxReady: Promise<void> | undefined;
  private inboxLive = false;

  constructor(private readonly t: RequestTransport) {}

  get waiting(): number {
    return this.pending.size;
  }

  /**
   * Not an `async` function: on the common path (inbox live) it returns the
   * pending answer's own promise, so the answer reaches the caller without the
   * extra microtask hops of an async wrapper adopting a promise.
   */
  request<R>(topic: string, type: string, body: unknown, options: RequestOptions, closedError: () => FerryError): Promise<Envelope<R>> {
    if (this.t.closed) return Promise.reject(closedError());
    const timeoutMs = options.timeoutMs ?? this.t.requestTimeoutMs;
    if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 3_600_000) {
      return Promise.reject(new FerryError('BAD_OPTION', `options.timeoutMs must be an integer in 1..3600000, got ${String(timeoutMs)}`, { field: 'options.timeoutMs' }));
    }
    const ttlMs = options.ttlMs ?? timeoutMs;
    if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < 0) {
      return Promise.reject(new FerryError('BAD_OPTION', `options.ttlMs must be a non-negative integer, got ${describe(ttlMs)}`, { field: 'options.ttlMs' }));
    }
    // The inbox is subscribed once, on the first request; later requests skip the wait.
    if (!this.inboxLive) {
      this.inboxReady ??= this.t.subscribe(this.t.inbox, (env) => void this.pending.answer(env)).then(
        () => {
          this.inboxLive = true;
        },
        (e: unknown) => {
          this.inboxReady = undefined; // a failed subscription is tried again by the next request
          throw e;
        },
      );
      return this.inboxReady.then(() => this.send1<R>(topic, type, body, timeoutMs, ttlMs));
    }
    return this.send1<R>(topic, type, body, timeoutMs, ttlMs);
  }

  private send1<R>(topic: string, type: string, body: unknown, timeoutMs: number, ttlMs: number): Promise<Envelope<R>> {
    const id = newMessageId();
    let bytes: Buffer;
    try {
      bytes = encodeOwnEnvelope(type, id, this.t.deviceId, this.t.inbox, undefined, this.t.now(), ttlMs, body === undefined ? null : body);
    } catch (e) {
      return Promise.reject(e);
    }
    const answer = this.pending.wait(id, timeoutMs, topic, type) as Promise<Envelope<R>>;
    this.t.publishBytes(topic, bytes, (err) => {
      if (err) this.pending.fail(id, err);
    });
    return answer;
  }

  serve(filter: string, handler: RequestHandler): Promise<() => Promise<void>> {
    return this.t.subscribe(filter, (env, topic) => {
      if (env.replyTo === undefined) {
        this.t.reportInvalid(new FerryError('ENVELOPE_MALFORMED', `request ${env.type} on ${topic} has no envelope.replyTo`, { field: 'envelope.replyTo', topic }));
        return;
      }
      this.answer(env, topic, env.replyTo, handler);
    });
  }

  failAll(err: Error): void {
    this.pending.failAll(err);
  }

  /**
   * Runs the handler and publishes its answer. A synchronous handler is answered
   * at once, still inside the message callback, so the answer leaves in the same
   * socket write as the request's PUBACK (one syscall and one broker wake-up per
   * request instead of two). The publish is never awaited here: waiting for the
   * answer's own PUBACK inside the callback would stall the connection.
   */
  private answer(req: Envelope, topic: string, replyTo: string, handler: RequestHandler): void {
    let result: unknown;
    try {
      result = handler(req, topic);
    } catch (e) {
      this.send(replyTo, req, 'error', errorAnswerBody(e));
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      (result as PromiseLike<unknown>).then(
        (body) => this.send(replyTo, req, `${req.type}.ok`, body),
        (e: unknown) => this.send(replyTo, req, 'error', errorAnswerBody(e)),
      );
      return;
    }
    this.send(replyTo, req, `${req.type}.ok`, result);
  }

  private send(replyTo: string, req: Envelope, type: string, body: unknown): void {
    let bytes: Buffer;
    try {
      bytes = encodeOwnEnvelope(type, newMessageId(), this.t.deviceId, undefined, req.id, this.t.now(), undefined, body === undefined ? null : body);
    } catch (e) {
      this.sendFailed(e);
      return;
    }
    this.t.publishBytes(replyTo, bytes, (err) => {
      if (err) this.sendFailed(err);
    });
  }

  private sendFailed(e: unknown): void {
    if (!this.t.closed) this.t.reportError(e);
  }
}
