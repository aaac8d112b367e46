import { isFerryError } from '../../core/errors.js';
import { errorAnswerBody, type ErrorAnswerBody } from '../../transports/pending-requests.js';
import type { Clock } from './clock.js';
import { errorAgain } from './protocol.js';

/**
 * Remembers the answer to each (sender, type, reqId) for a window, so a repeated
 * request (a client retry, a QoS 1 redelivery with a new envelope id) gets the
 * first answer again instead of being applied twice. Bad requests are not
 * remembered: they change nothing.
 */
export class Replay {
  private readonly answers = new Map<string, { at: number; ok: boolean; body: unknown }>();
  repeats = 0;

  constructor(
    private readonly clock: Clock,
    private readonly windowMs: number,
    private readonly max: number,
  ) {}

  run(from: string, type: string, reqId: string, f: () => unknown): unknown {
    const key = `${from}\u0000${type}\u0000${reqId}`;
    const seen = this.answers.get(key);
    if (seen) {
      this.repeats++;
      if (seen.ok) return seen.body;
      throw errorAgain(seen.body as ErrorAnswerBody);
    }
    try {
      const out = f();
      this.put(key, true, out);
      return out;
    } catch (e) {
      if (isFerryError(e) && e.code !== 'SERVICE_BAD_REQUEST') this.put(key, false, errorAnswerBody(e));
      throw e;
    }
  }

  prune(): void {
    const cutoff = this.clock.now() - this.windowMs;
    for (const [k, a] of this.answers) {
      if (a.at > cutoff) break;
      this.answers.delete(k);
    }
  }

  private put(key: string, ok: boolean, body: unknown): void {
    if (this.answers.size >= this.max) {
      const oldest = this.answers.keys().next().value;
      if (oldest !== undefined) this.answers.delete(oldest);
    }
    this.answers.set(key, { at: this.clock.now(), ok, body });
  }
}
