import { isFerryError, type ErrorCode, ERROR_CODES } from '../../core/errors.js';
import type { Bus, Envelope } from '../../transports/contract.js';
import { errorAnswerBody, type ErrorAnswerBody } from '../../transports/pending-requests.js';
import { systemClock, type Clock } from './clock.js';
import { GrantorState } from './grantor-state.js';
import { LeaseTable, type Lease, type LeaseEnd, type ResourceSpec } from './lease-table.js';
import { readGrantorOptions, topicLevel, type LeaseGrantorOptions, type ResolvedGrantorOptions } from './options.js';
import { asMap, bad, duration, errorAgain, holderId, refield, requestBody, serviceName, str, topics, type LeaseInfo, type RenewResult } from './protocol.js';

interface Remembered {
  at: number;
  ok: boolean;
  body: unknown;
}

/**
 * Serves one device's leases on `<prefix>/lease/<deviceId>`: `lease.grant`,
 * `lease.renew` (a batch), `lease.cancel`, `lease.handover`.
 *
 * Idempotence: each request carries a client `reqId`; the answer is remembered
 * for `dedupeWindowMs` under (sender, reqId), so a retried or redelivered request
 * gets the first answer again and never a second grant. The holder is the
 * envelope's `from`.
 */
export class LeaseGrantor {
  readonly table: LeaseTable;
  readonly topic: string;
  readonly options: ResolvedGrantorOptions;
  private readonly state: GrantorState;
  private readonly answers = new Map<string, Remembered>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private unserve: (() => Promise<void>) | undefined;
  private readonly endListeners: ((lease: Lease, end: LeaseEnd) => void)[] = [];
  private readonly changeListeners: ((lease: Lease) => void)[] = [];
  /** Counters for tests and the benchmark. */
  readonly stats = { grants: 0, renewals: 0, renewBatches: 0, cancels: 0, handovers: 0, repeats: 0, errors: 0 };

  private constructor(
    readonly bus: Bus,
    options: LeaseGrantorOptions,
    private readonly clock: Clock,
  ) {
    this.options = readGrantorOptions(options);
    topicLevel(bus.deviceId, 'bus.deviceId');
    this.state = new GrantorState(this.options.stateFile, this.options.fenceBlock, this.options.table.maxDurationMs);
    this.table = new LeaseTable({ ...this.options.table, clock, nextFence: () => this.state.nextFence() });
    // Leases granted before a restart may still be held: no exclusive grant until they have surely expired.
    this.table.exclusiveNotBefore = this.state.previousHorizon;
    this.table.onEnd((l, end) => {
      for (const f of this.endListeners) f(l, end);
    });
    this.topic = topics(this.options.topicPrefix).lease(bus.deviceId);
  }

  /** Creates a grantor and starts serving its topic. */
  static async start(bus: Bus, options: LeaseGrantorOptions, clock: Clock = systemClock): Promise<LeaseGrantor> {
    const g = new LeaseGrantor(bus, options, clock);
    try {
      g.unserve = await bus.serve(g.topic, (env, topic) => {
        try {
          return g.handle(env);
        } catch (e) {
          if (isFerryError(e, 'SERVICE_BAD_REQUEST')) g.options.log.badRequest(env, topic, e);
          throw e;
        }
      });
    } catch (e) {
      g.state.close();
      throw e;
    }
    g.sweepTimer = setInterval(() => g.sweep(), g.options.sweepIntervalMs);
    g.sweepTimer.unref();
    return g;
  }

  /** Offers a resource (a service name at this grantor) for leasing. */
  offer(name: string, spec: ResourceSpec): void {
    this.table.defineResource(name, spec);
  }

  /** Withdraws a resource; its leases end as cancelled. */
  withdraw(name: string): void {
    this.table.removeResource(name);
  }

  /** Called whenever a lease ends here (expired, cancelled, withdrawn). */
  onEnd(listener: (lease: Lease, end: LeaseEnd) => void): void {
    this.endListeners.push(listener);
  }

  /** Called after a lease's term or holder changed (renew, handover). */
  onChange(listener: (lease: Lease) => void): void {
    this.changeListeners.push(listener);
  }

  /** Grants directly (used by spaces and system services on this device); also covers the restart horizon. */
  grantLocal(resource: string, holder: string, durationMs: number | 'any'): Lease {
    const l = this.table.grant(resource, holder, durationMs);
    this.state.cover(l.expiresAt);
    return l;
  }

  /** True if `holder` holds a live lease `leaseId` on `resource`. */
  holds(leaseId: string, holder: string, resource: string): boolean {
    const l = this.table.get(leaseId);
    return l !== undefined && l.holder === holder && l.resource === resource;
  }

  sweep(): void {
    this.table.sweep();
    const cutoff = this.clock.now() - this.options.dedupeWindowMs;
    for (const [k, a] of this.answers) {
      if (a.at > cutoff) break;
      this.answers.delete(k);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    const u = this.unserve;
    this.unserve = undefined;
    try {
      await u?.();
    } catch {
      // The bus may already be closed: nothing left to unsubscribe.
    }
    this.state.close();
  }

  /** Handles one request envelope (exposed for the benchmark and in-process use). */
  handle(env: Envelope): unknown {
    // Envelope first (type, sender), then the body: an unknown type is named as envelope.type.
    const body = requestBody(env, LEASE_TYPES, 'a grantor');
    const reqId = str(body, 'reqId', 128);
    const key = `${env.from}\u0000${env.type}\u0000${reqId}`;
    const seen = this.answers.get(key);
    if (seen) {
      this.stats.repeats++;
      if (seen.ok) return seen.body;
      throw errorAgain(seen.body as ErrorAnswerBody);
    }
    let out: unknown;
    try {
      out = this.dispatch(env.type, env.from, body);
    } catch (e) {
      if (!isFerryError(e)) throw e;
      this.stats.errors++;
      // Bad requests are not remembered: they are not state changes, and a flood of them must not fill the memory.
      if (e.code !== 'SERVICE_BAD_REQUEST') this.remember(key, false, errorAnswerBody(e));
      throw e;
    }
    this.remember(key, true, out);
    return out;
  }

  private remember(key: string, ok: boolean, body: unknown): void {
    if (this.answers.size >= this.options.maxDedupe) {
      const oldest = this.answers.keys().next().value;
      if (oldest !== undefined) this.answers.delete(oldest);
    }
    this.answers.set(key, { at: this.clock.now(), ok, body });
  }

  private dispatch(type: string, from: string, body: Record<string, unknown>): unknown {
    switch (type) {
      case 'lease.grant': {
        const service = serviceName(str(body, 'service', 256), this.bus.deviceId);
        const l = this.grantLocal(service, from, duration(body, 'durationMs')!);
        this.stats.grants++;
        return info(l);
      }
      case 'lease.renew': {
        const list = body.leases;
        if (!Array.isArray(list) || list.length === 0 || list.length > this.options.maxBatch) {
          throw bad('leases', `an array of 1..${this.options.maxBatch} entries`, list);
        }
        // Every entry is checked before any is renewed: a malformed entry refuses the whole
        // request (naming the entry), so nothing is half-applied by a bad batch.
        const items = list.map((x, i) => {
          const at = `body.leases[${i}]`;
          const o = asMap(x, at);
          return { leaseId: str(o, 'leaseId', 64, at), durationMs: duration(o, 'durationMs', false, at)!, at };
        });
        this.stats.renewBatches++;
        // Then each entry succeeds or fails on its own (the batch is not atomic).
        const results: RenewResult[] = items.map(({ leaseId, durationMs, at }) => {
          try {
            const l = this.table.renew(leaseId, from, durationMs);
            this.state.cover(l.expiresAt);
            this.stats.renewals++;
            for (const f of this.changeListeners) f(l);
            return l.fence !== undefined ? { leaseId, ok: true, durationMs: l.durationMs, fence: l.fence } : { leaseId, ok: true, durationMs: l.durationMs };
          } catch (e) {
            if (!isFerryError(e)) throw e;
            return { leaseId, ok: false, ...errorAnswerBody(refield(e, at)) };
          }
        });
        return { results };
      }
      case 'lease.cancel': {
        const end = this.table.cancel(str(body, 'leaseId', 64), from);
        this.stats.cancels++;
        return { ended: end };
      }
      default: {
        // lease.handover (requestBody admitted only the four types)
        const leaseId = str(body, 'leaseId', 64);
        const newHolder = holderId(body.newHolder, 'body.newHolder');
        const d = duration(body, 'durationMs', true);
        const l = this.table.handover(leaseId, from, newHolder, d);
        this.state.cover(l.expiresAt);
        this.stats.handovers++;
        for (const f of this.changeListeners) f(l);
        return info(l);
      }
    }
  }
}

/** The requests a grantor serves on its lease topic. */
export const LEASE_TYPES = ['lease.grant', 'lease.renew', 'lease.cancel', 'lease.handover'] as const;

function info(l: Lease): LeaseInfo {
  // Two literal shapes rather than a spread: no temporary object per answer.
  return l.fence !== undefined
    ? { leaseId: l.id, service: l.resource, holder: l.holder, exclusive: l.exclusive, durationMs: l.durationMs, fence: l.fence }
    : { leaseId: l.id, service: l.resource, holder: l.holder, exclusive: l.exclusive, durationMs: l.durationMs };
}

/** True if `code` is one of Ferry's stable codes (for answers coming back from the wire). */
export function knownCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}
