import { FerryError, isFerryError } from '../../core/errors.js';
import { ENVELOPE_VERSION } from '../../transports/contract.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { appMailboxTopic } from '../../transports/topics.js';
import type { CallOutcome, OutboxEntry } from './app-instance.js';
import type { Running } from './running.js';

/** Delay before a message that could not be published (the broker away) is tried again, ms. */
const SEND_RETRY_MS = 1000;

/** What answering and delivering need of the agent. */
export interface DeliveryHost {
  /** The agent's bus, once connected. */
  bus(): MqttBus | undefined;
  warn(event: string, fields: Record<string, unknown>): void;
  error(event: string, fields: Record<string, unknown>): void;
  /** False once the instance was suspended or reopened: its entries are handed out again then. */
  isCurrent(r: Running): boolean;
}

/**
 * Publishes an answer; `then` (the request's PUBACK) runs once the broker has it, so a
 * crash never leaves an acknowledged request unanswered. An answer too large to send is
 * replaced by a MESSAGE_TOO_LARGE error answer (a retry would get the same record). Resolves
 * when it is settled either way (a handoff's bookmark waits for its answers before the mailbox
 * session closes, so their acknowledgements are not lost with it).
 */
export function answer(host: DeliveryHost, replyTo: string, corr: string, outcome: CallOutcome, then: () => void): Promise<void> {
  const bus = host.bus();
  if (!bus) return Promise.resolve();
  // A failed outcome is already the `error` body (code, message, field).
  const send = (o: CallOutcome) => {
    if (o.ok) return bus.publish(replyTo, 'app.call.ok', o.body, { corr });
    const { ok: _, ...body } = o;
    return bus.publish(replyTo, 'error', body, { corr });
  };
  return send(outcome).then(then, (e: unknown) => {
    if (!isFerryError(e, 'MESSAGE_TOO_LARGE')) {
      // Not acknowledged: the broker redelivers the request and it gets its recorded answer.
      host.warn('answer.failed', { replyTo, corr, error: String(e) });
      return;
    }
    return send({ ok: false, code: e.code, message: `the answer to ${corr} is too large to send: ${e.message}`, field: 'result' }).then(then, () => undefined);
  });
}

/** Hands an outbox entry to the world; the entry leaves the outbox when done (a repeat after a crash is dropped by its id). */
export async function deliver(host: DeliveryHost, r: Running, e: OutboxEntry): Promise<void> {
  const bus = host.bus();
  if (!bus) return;
  if (e.kind === 'timer') {
    // Fires once, as a call whose id is the entry's: a fire repeated after a crash is recorded, not run.
    const fire = () => {
      if (!host.isCurrent(r)) return; // suspended: the entry is handed out again at resume
      const left = e.at - Date.now();
      if (left > 0) {
        setTimeout(fire, Math.min(left, 2 ** 31 - 1)).unref();
        return;
      }
      try {
        r.runner.call(e.handler, e.body, `${e.id}/fire`, () => r.runner.delivered(e.id));
      } catch (err) {
        host.warn('timer.failed', { instance: e.from, error: String(err) });
      }
    };
    fire();
    return;
  }
  if (e.kind === 'send') {
    try {
      await bus.publishEnvelope(appMailboxTopic(e.to), {
        v: ENVELOPE_VERSION,
        type: 'app.call',
        id: e.id,
        from: e.from,
        ts: Date.now(),
        body: { handler: e.handler, message: e.body },
      });
      r.runner.delivered(e.id);
    } catch (err) {
      if (isFerryError(err, 'MESSAGE_TOO_LARGE') || isFerryError(err, 'BAD_OPTION')) {
        // It can never be sent: drop it rather than fail at every opening.
        host.error('send.dropped', { instance: e.from, to: e.to, error: String(err) });
        r.runner.delivered(e.id);
        return;
      }
      host.warn('send.failed', { instance: e.from, to: e.to, error: String(err) });
      const retry = setTimeout(() => {
        if (host.isCurrent(r)) void deliver(host, r, e);
      }, SEND_RETRY_MS);
      retry.unref();
    }
    return;
  }
  let result: unknown;
  try {
    if (!r.leases) throw new FerryError('SERVICE_NOT_FOUND', 'the agent is not connected yet', { field: 'ctx.request.type' });
    result = { ok: true, body: await r.leases.call(e.type, e.op, e.args) };
  } catch (err) {
    result = isFerryError(err) ? { ok: false, code: err.code, message: err.message } : { ok: false, code: 'REMOTE_ERROR', message: String(err) };
  }
  if (!host.isCurrent(r)) return; // suspended meanwhile: redelivered at resume
  try {
    r.runner.call(e.reply, result, `${e.id}/reply`, () => r.runner.delivered(e.id));
  } catch (err) {
    host.warn('service.reply-failed', { instance: e.from, error: String(err) });
  }
}
