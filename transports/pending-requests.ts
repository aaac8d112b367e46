import { ERROR_CODES, FerryError, isFerryError, type ErrorCode } from '../core/errors.js';
import type { Envelope } from './contract.js';

/**
 * Requests waiting for their answer, by request id (= the answer's `corr`),
 * each with its timeout; and the mapping between FerryErrors and `error`
 * answer bodies, so an error crosses the network with its code intact.
 */
export class PendingRequests {
  private readonly waiting = new Map<string, { resolve: (env: Envelope) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  get size(): number {
    return this.waiting.size;
  }

  /**
   * Waits for the answer to request `id`; rejects with BUS_TIMEOUT (naming the
   * topic and type) after `timeoutMs`. The timeout error is built only when it fires.
   */
  wait(id: string, timeoutMs: number, topic: string, type: string): Promise<Envelope> {
    return new Promise<Envelope>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new FerryError('BUS_TIMEOUT', `request ${type} to ${topic} got no answer within ${timeoutMs} ms`, { field: 'options.timeoutMs', topic, type }));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
  }

  /** Settles the request an answer is for; false if none waits (late, or not ours). */
  answer(env: Envelope): boolean {
    if (env.corr === undefined) return false;
    const p = this.waiting.get(env.corr);
    if (!p) return false;
    this.waiting.delete(env.corr);
    clearTimeout(p.timer);
    if (env.type === 'error') p.reject(errorFromAnswer(env));
    else p.resolve(env);
    return true;
  }

  fail(id: string, err: Error): void {
    const p = this.waiting.get(id);
    if (!p) return;
    this.waiting.delete(id);
    clearTimeout(p.timer);
    p.reject(err);
  }

  failAll(err: Error): void {
    for (const id of [...this.waiting.keys()]) this.fail(id, err);
  }
}

/** The body of an `error` answer for a handler's failure: `{code, message, field?}`. */
export function errorAnswerBody(e: unknown): { code: string; message: string; field?: string } {
  if (isFerryError(e)) return { code: e.code, message: e.message, ...(e.details.field !== undefined ? { field: e.details.field } : {}) };
  return { code: 'REMOTE_ERROR', message: e instanceof Error ? e.message : String(e) };
}

/** A FerryError from an `error` answer: its code if this end knows it, else REMOTE_ERROR keeping the foreign code. */
export function errorFromAnswer(env: Envelope): FerryError {
  const b = env.body as { code?: unknown; message?: unknown; field?: unknown } | null;
  const message = b && typeof b.message === 'string' ? b.message : `request failed at ${env.from}`;
  const remoteCode = b && typeof b.code === 'string' ? b.code : undefined;
  const code: ErrorCode = remoteCode !== undefined && Object.prototype.hasOwnProperty.call(ERROR_CODES, remoteCode) ? (remoteCode as ErrorCode) : 'REMOTE_ERROR';
  const details: Record<string, unknown> = { from: env.from };
  if (b && typeof b.field === 'string') details.field = b.field;
  if (code === 'REMOTE_ERROR' && remoteCode !== undefined) details.remoteCode = remoteCode;
  return new FerryError(code, message, details);
}
