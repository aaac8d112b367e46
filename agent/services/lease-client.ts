import { ERROR_CODES, FerryError, isFerryError, type ErrorCode } from '../../core/errors.js';
import type { Bus } from '../../transports/contract.js';
import { randomId, systemClock, type Clock } from './clock.js';
import type { RequestedDuration } from './lease-table.js';
import { readClientOptions, type LeaseClientOptions } from './options.js';
import type { LeaseInfo, RenewResult, ServiceDescription } from './protocol.js';

/** A lease as its holder sees it. */
export interface HeldLease {
  leaseId: string;
  /** Service name at the grantor. */
  service: string;
  /** Grantor's lease topic. */
  leaseTopic: string;
  /** The description the lease was taken on, when known (for alternates). */
  description?: ServiceDescription;
  holder: string;
  exclusive: boolean;
  fence?: number;
  /** Granted duration of the current term, ms. */
  durationMs: number;
  /**
   * Holder-side expiry, clock ms: when the request was first sent plus the
   * granted duration. The grantor counts from when it received the request,
   * which is later, so the holder always gives up first (no clock sync needed).
   */
  expiresAt: number;
}

export type LeaseTarget = ServiceDescription | { leaseTopic: string; service: string };

/**
 * The holder's side of the lease protocol. Every request has a fresh `reqId`
 * reused by its retries: a timed-out grant that did reach the grantor is
 * answered again from its memory, never granted twice.
 */
export class LeaseClient {
  private readonly o: Required<LeaseClientOptions>;
  private readonly requestOptions: { timeoutMs: number };
  constructor(
    readonly bus: Bus,
    options: LeaseClientOptions = {},
    readonly clock: Clock = systemClock,
  ) {
    this.o = readClientOptions(options);
    this.requestOptions = { timeoutMs: this.o.timeoutMs };
  }

  grant(target: LeaseTarget, durationMs: RequestedDuration = 'any'): Promise<HeldLease> {
    const service = 'name' in target ? target.name : target.service;
    const sentAt = this.clock.now();
    // One promise step from the answer to the caller: the HeldLease is built in the same callback
    // that takes the answer's body (see `call`).
    return this.call<LeaseInfo, HeldLease>(target.leaseTopic, 'lease.grant', { service, durationMs, reqId: randomId() }, (info) => {
      const held: HeldLease = {
        leaseId: info.leaseId,
        service,
        leaseTopic: target.leaseTopic,
        holder: this.bus.deviceId,
        exclusive: info.exclusive,
        durationMs: info.durationMs,
        expiresAt: sentAt + info.durationMs,
      };
      if ('name' in target) held.description = target;
      if (info.fence !== undefined) held.fence = info.fence;
      return held;
    });
  }

  /** Renews several leases at one grantor in one message; updates each renewed lease in place. */
  async renewBatch(leaseTopic: string, items: { lease: HeldLease; durationMs: RequestedDuration }[]): Promise<RenewResult[]> {
    const sentAt = this.clock.now();
    const { results } = await this.call<{ results: RenewResult[] }>(
      leaseTopic,
      'lease.renew',
      {
        reqId: randomId(),
        leases: items.map((i) => ({ leaseId: i.lease.leaseId, durationMs: i.durationMs })),
      },
      bodyOf,
    );
    const byId = new Map(items.map((i) => [i.lease.leaseId, i.lease]));
    for (const r of results) {
      const l = byId.get(r.leaseId);
      if (l && r.ok) {
        l.durationMs = r.durationMs;
        l.expiresAt = sentAt + r.durationMs;
        if (r.fence !== undefined) l.fence = r.fence;
      }
    }
    return results;
  }

  /** Renews one lease; throws the typed error of a refused renewal. */
  async renew(lease: HeldLease, durationMs: RequestedDuration = 'any'): Promise<HeldLease> {
    const [r] = await this.renewBatch(lease.leaseTopic, [{ lease, durationMs }]);
    if (r && !r.ok) throw remote(r);
    return lease;
  }

  /** Cancels; safe to repeat. Resolves with how the lease ended. */
  async cancel(lease: HeldLease): Promise<'cancelled' | 'expired'> {
    const { ended } = await this.call<{ ended: 'cancelled' | 'expired' }>(lease.leaseTopic, 'lease.cancel', { reqId: randomId(), leaseId: lease.leaseId }, bodyOf);
    return ended;
  }

  /**
   * Hands the lease to `newHolder` in one step at the grantor. Returns the lease
   * as the new holder will hold it (same id; an exclusive lease has a new fence).
   * `expiresAt` stays on this device's clock: pass the remaining time along.
   */
  async handover(lease: HeldLease, newHolder: string, durationMs?: RequestedDuration): Promise<HeldLease> {
    const sentAt = this.clock.now();
    const info = await this.call<LeaseInfo>(
      lease.leaseTopic,
      'lease.handover',
      {
        reqId: randomId(),
        leaseId: lease.leaseId,
        newHolder,
        ...(durationMs !== undefined ? { durationMs } : {}),
      },
      bodyOf,
    );
    return {
      ...lease,
      holder: info.holder,
      durationMs: info.durationMs,
      ...(info.fence !== undefined ? { fence: info.fence } : {}),
      expiresAt: durationMs !== undefined ? sentAt + info.durationMs : lease.expiresAt,
    };
  }

  /**
   * One request, resent (same body, so the same reqId) after a lost message;
   * `done` turns the answer's body into the result. A `.then` chain rather than
   * an async loop, and `done` runs in the step that takes the answer: the
   * answer reaches the caller in one promise step, which is much of what a
   * loopback grant costs here.
   */
  private call<R, T = R>(topic: string, type: string, body: unknown, done: (r: R) => T, attempt = 0): Promise<T> {
    return this.bus.request<R>(topic, type, body, this.requestOptions).then(
      (env) => done(env.body),
      (e: unknown) => {
        // Only a lost message is worth resending (same reqId); a refusal is final.
        const retriable = isFerryError(e) && (e.code === 'BUS_TIMEOUT' || e.code === 'BUS_OFFLINE');
        if (!retriable || attempt >= this.o.retries) throw e;
        return this.call<R, T>(topic, type, body, done, attempt + 1);
      },
    );
  }
}

function bodyOf<R>(r: R): R {
  return r;
}

/**
 * The FerryError of a failed renewal entry (PROTOCOL §S.3): its code if this end knows it
 * (else REMOTE_ERROR keeping the foreign code), its field (`body.leases[i].leaseId`) and its
 * plain details (`retryAfterMs`, `ended`, ...), as an `error` answer would give them.
 */
export function remote(r: { code: string; message: string; field?: unknown; details?: unknown }): FerryError {
  const known = Object.prototype.hasOwnProperty.call(ERROR_CODES, r.code);
  const c: ErrorCode = known ? (r.code as ErrorCode) : 'REMOTE_ERROR';
  const details: Record<string, unknown> = {};
  const d = r.details;
  if (d !== null && typeof d === 'object' && !Array.isArray(d)) {
    for (const [k, v] of Object.entries(d as Record<string, unknown>)) {
      if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) details[k] = v;
    }
  }
  details.field = typeof r.field === 'string' ? r.field : 'body.leases[0].leaseId';
  if (!known) details.remoteCode = r.code;
  return new FerryError(c, r.message, details);
}
