import { EventEmitter } from 'node:events';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { Discovery, ServiceQuery } from './discovery.js';
import type { HeldLease, LeaseClient } from './lease-client.js';
import type { RequestedDuration } from './lease-table.js';
import type { ServiceDescription } from './protocol.js';
import type { RenewalManager } from './renewal-manager.js';

interface Held {
  lease: HeldLease;
  query: ServiceQuery;
  durationMs: RequestedDuration;
  desiredUntil: number;
  /** Services already tried and gone, left out of the next lookup. */
  gone: string[];
}

/**
 * Leases that survive their provider: the holder acquires by query (type and
 * attributes), and when the provider dies (its will), withdraws the service, or
 * the lease is lost or refused, the next live service matching the same query is
 * leased instead.
 *
 * Events:
 * - `alternate` (oldLease, newLease): the lease moved to another provider;
 * - `unavailable` (oldLease, error): none matches; the holder must cope (the
 *   migration's "notice to the app").
 */
export class Alternates extends EventEmitter {
  private readonly held = new Map<string, Held>();
  private readonly onDown = (d: ServiceDescription) => {
    for (const h of [...this.held.values()]) if (h.lease.description?.id === d.id) void this.replace(h, new FerryError('SERVICE_NOT_FOUND', `service ${d.id} went away`, { field: 'service' }));
  };
  private readonly onLost = (l: HeldLease) => this.onEnded(l, new FerryError('LEASE_EXPIRED', `lease ${l.leaseId} expired before it could be renewed`, { field: 'leaseId' }));
  private readonly onFailed = (l: HeldLease, e: unknown, final: boolean) => {
    if (final) this.onEnded(l, e);
  };

  constructor(
    readonly discovery: Discovery,
    readonly client: LeaseClient,
    readonly manager: RenewalManager,
  ) {
    super();
    discovery.on('down', this.onDown);
    manager.on('lost', this.onLost);
    manager.on('failed', this.onFailed);
  }

  /** Finds a live service matching `query`, leases it and keeps it renewed. */
  async acquire(query: ServiceQuery, durationMs: RequestedDuration = 'any', desiredUntil = Infinity): Promise<HeldLease> {
    return this.acquireFrom({ query, durationMs, desiredUntil, gone: [...(query.exclude ?? [])] });
  }

  /**
   * Watches and renews a lease this device did not grant itself: one handed over to it (a live
   * handoff). If it is lost, an alternate matching `query` is leased as for any other.
   */
  adopt(lease: HeldLease, query: ServiceQuery, durationMs: RequestedDuration = 'any'): void {
    this.held.set(lease.leaseId, { lease, query, durationMs, desiredUntil: Infinity, gone: [...(query.exclude ?? [])] });
    this.manager.manage(lease);
  }

  /** Stops watching a lease (e.g. before cancelling it). */
  forget(leaseId: string): void {
    this.held.delete(leaseId);
    this.manager.release(leaseId);
  }

  close(): void {
    this.discovery.off('down', this.onDown);
    this.manager.off('lost', this.onLost);
    this.manager.off('failed', this.onFailed);
    this.held.clear();
  }

  private async acquireFrom(h: Omit<Held, 'lease'>): Promise<HeldLease> {
    let lastError: unknown;
    for (const d of this.discovery.lookup({ ...h.query, exclude: h.gone })) {
      try {
        const lease = await this.client.grant(d, h.durationMs);
        this.held.set(lease.leaseId, { ...h, lease });
        this.manager.manage(lease, h.desiredUntil);
        return lease;
      } catch (e) {
        // Busy or gone: try the next match.
        lastError = e;
        if (!isFerryError(e)) throw e;
      }
    }
    throw isFerryError(lastError) ? lastError : new FerryError('SERVICE_NOT_FOUND', `no live service of type ${JSON.stringify(h.query.type)} matches ${JSON.stringify(h.query.attrs ?? {})}`, { field: 'type' });
  }

  private onEnded(l: HeldLease, e: unknown): void {
    const h = this.held.get(l.leaseId);
    if (h) void this.replace(h, e);
  }

  private async replace(h: Held, why: unknown): Promise<void> {
    if (!this.held.delete(h.lease.leaseId)) return; // already handled (down and lost both fire)
    this.manager.release(h.lease.leaseId);
    const gone = h.lease.description ? [...h.gone, h.lease.description.id] : h.gone;
    try {
      const next = await this.acquireFrom({ query: h.query, durationMs: h.durationMs, desiredUntil: h.desiredUntil, gone });
      this.emit('alternate', h.lease, next);
    } catch (e) {
      this.emit('unavailable', h.lease, isFerryError(e) ? e : why);
    }
  }
}
