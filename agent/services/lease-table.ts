import { FerryError } from '../../core/errors.js';
import { randomId, type Clock } from './clock.js';
import { readLeaseTableOptions, type LeaseTableOptions, type ResolvedLeaseTableOptions } from './options.js';

/**
 * The grantor's lease table: pure state plus an injected clock, no I/O, so its
 * semantics can be tested exactly (test/services/lease-table*.test.ts).
 *
 * Rules (DESIGN.md, "Leases"):
 * - a lease is live while `now < expiresAt`; at `expiresAt` it is over;
 * - an exclusive resource has at most one live lease; a shared one at most `maxHolders`;
 * - every exclusive grant and every handover takes a new fencing token from
 *   `nextFence`, which only grows;
 * - only the holder may renew, cancel or hand over; the holder check comes first,
 *   so a non-holder learns nothing about the lease's state;
 * - an ended lease leaves a tombstone for `tombstoneMs`, so a late renew gets
 *   LEASE_EXPIRED (not LEASE_UNKNOWN) and a repeated cancel succeeds again.
 */

/** Requested duration: milliseconds, or `'any'` to let the grantor choose. */
export type RequestedDuration = number | 'any';

export interface Lease {
  /** 128 random bits, base64url. The holder's handle; unguessable. */
  readonly id: string;
  /** The leased resource (a service id, or a space entry). */
  readonly resource: string;
  holder: string;
  readonly exclusive: boolean;
  /** Fencing token of exclusive leases; grows on every grant and handover. */
  fence?: number;
  /** When the current term started (grant, renew or handover), clock ms. */
  since: number;
  /** Granted duration of the current term, ms. */
  durationMs: number;
  /** `since + durationMs`. */
  expiresAt: number;
}

export type LeaseEnd = 'expired' | 'cancelled';

interface Tombstone {
  end: LeaseEnd;
  holder: string;
  resource: string;
  at: number;
}

export interface ResourceSpec {
  /** One holder at a time (exclusive) or several (shared). */
  exclusive: boolean;
  /** Most live leases at once on a shared resource. Ignored when exclusive. Default: unlimited. */
  maxHolders?: number;
}

interface Resource extends ResourceSpec {
  leases: Set<string>;
  /** The newest fencing token issued on this resource (exclusive grants and handovers), if any. */
  fence?: number;
}

export type EndListener = (lease: Lease, end: LeaseEnd) => void;

export class LeaseTable {
  readonly options: ResolvedLeaseTableOptions;
  private readonly clock: Clock;
  private readonly nextFence: () => number;
  private readonly newId: () => string;
  private readonly live = new Map<string, Lease>();
  private readonly tombs = new Map<string, Tombstone>();
  private readonly resources = new Map<string, Resource>();
  private readonly endListeners: EndListener[] = [];
  /** Exclusive grants are refused before this clock time (grantor restart grace, see lease-grantor.ts). */
  exclusiveNotBefore = 0;

  constructor(options: LeaseTableOptions & { clock: Clock; nextFence: () => number; newId?: () => string }) {
    const { clock, nextFence, newId, ...rest } = options;
    this.options = readLeaseTableOptions(rest);
    this.clock = clock;
    this.nextFence = nextFence;
    this.newId = newId ?? randomId;
  }

  get size(): number {
    return this.live.size;
  }

  onEnd(listener: EndListener): void {
    this.endListeners.push(listener);
  }

  defineResource(name: string, spec: ResourceSpec): void {
    const existing = this.resources.get(name);
    if (existing) {
      existing.exclusive = spec.exclusive;
      existing.maxHolders = spec.maxHolders;
      return;
    }
    this.resources.set(name, { ...spec, leases: new Set() });
  }

  /** Removes a resource and ends its leases (as cancelled): the service is withdrawn. */
  removeResource(name: string): Lease[] {
    const r = this.resources.get(name);
    if (!r) return [];
    const ended: Lease[] = [];
    for (const id of [...r.leases]) {
      const l = this.live.get(id);
      if (l) {
        this.end(l, 'cancelled');
        ended.push(l);
      }
    }
    this.resources.delete(name);
    return ended;
  }

  hasResource(name: string): boolean {
    return this.resources.has(name);
  }

  /**
   * The newest fencing token this table issued on an exclusive resource (grant or handover),
   * or undefined if none yet (or the resource was redefined). A request carrying a lower token
   * comes from a stale holder (fencing, see system-services.ts and FenceGate).
   */
  newestFence(name: string): number | undefined {
    return this.resources.get(name)?.fence;
  }

  /** The grantor's decision on a requested duration: `any` gets the default; shorter than the minimum is refused; longer than the maximum is cut. */
  decide(requested: RequestedDuration): number {
    const o = this.options;
    if (requested === 'any') return o.defaultDurationMs;
    if (typeof requested !== 'number' || !Number.isFinite(requested) || requested < o.minDurationMs) {
      throw new FerryError('LEASE_DENIED', `durationMs ${String(requested)} is below the grantor's minimum of ${o.minDurationMs} ms`, {
        field: 'body.durationMs',
        minDurationMs: o.minDurationMs,
      });
    }
    return Math.min(Math.floor(requested), o.maxDurationMs);
  }

  grant(resource: string, holder: string, requested: RequestedDuration): Lease {
    const r = this.resources.get(resource);
    if (!r) throw new FerryError('SERVICE_NOT_FOUND', `service ${JSON.stringify(resource)} is not offered by this grantor`, { field: 'body.service' });
    const now = this.clock.now();
    if (r.leases.size > 0) this.expireResource(r, now);
    const durationMs = this.decide(requested);
    if (r.exclusive) {
      if (now < this.exclusiveNotBefore) {
        throw new FerryError('LEASE_DENIED', `the grantor restarted; exclusive grants resume in ${this.exclusiveNotBefore - now} ms`, {
          field: 'body.service',
          retryAfterMs: this.exclusiveNotBefore - now,
        });
      }
      if (r.leases.size > 0) {
        const other = this.live.get(r.leases.values().next().value!);
        throw new FerryError('LEASE_DENIED', `service ${JSON.stringify(resource)} is held exclusively`, {
          field: 'body.service',
          retryAfterMs: other ? other.expiresAt - now : 0,
        });
      }
    } else if (r.maxHolders !== undefined && r.leases.size >= r.maxHolders) {
      let first = Infinity;
      for (const id of r.leases) first = Math.min(first, this.live.get(id)!.expiresAt);
      throw new FerryError('LEASE_DENIED', `service ${JSON.stringify(resource)} already has its ${r.maxHolders} holders`, { field: 'body.service', retryAfterMs: first - now });
    }
    if (this.live.size >= this.options.maxLeases) {
      throw new FerryError('LEASE_DENIED', `the grantor holds its maximum of ${this.options.maxLeases} leases`, { field: 'body.service' });
    }
    let id = this.newId();
    while (this.live.has(id) || this.tombs.has(id)) id = this.newId();
    const lease: Lease = { id, resource, holder, exclusive: r.exclusive, since: now, durationMs, expiresAt: now + durationMs };
    if (r.exclusive) lease.fence = r.fence = this.nextFence();
    this.live.set(id, lease);
    r.leases.add(id);
    return lease;
  }

  /** Extends a live lease: the new term counts from now. */
  renew(id: string, holder: string, requested: RequestedDuration): Lease {
    const l = this.holderLive(id, holder, 'renew');
    const now = this.clock.now();
    const durationMs = this.decide(requested);
    l.since = now;
    l.durationMs = durationMs;
    l.expiresAt = now + durationMs;
    return l;
  }

  /** Ends a lease. Idempotent: cancelling an ended lease again reports how it ended. */
  cancel(id: string, holder: string): LeaseEnd {
    const l = this.live.get(id);
    if (l) {
      if (l.holder !== holder) throw notHolder(id, 'cancel');
      if (this.clock.now() >= l.expiresAt) {
        this.end(l, 'expired');
        return 'expired';
      }
      this.end(l, 'cancelled');
      return 'cancelled';
    }
    const t = this.tomb(id);
    if (t) {
      if (t.holder !== holder) throw notHolder(id, 'cancel');
      return t.end;
    }
    throw unknown(id);
  }

  /** Moves a live lease to `newHolder` in one step; an exclusive lease takes a new fence, so the old holder's writes are fenced off. */
  handover(id: string, holder: string, newHolder: string, requested?: RequestedDuration): Lease {
    const l = this.holderLive(id, holder, 'hand over');
    const now = this.clock.now();
    if (requested !== undefined) {
      const durationMs = this.decide(requested);
      l.since = now;
      l.durationMs = durationMs;
      l.expiresAt = now + durationMs;
    }
    l.holder = newHolder;
    if (l.exclusive) {
      l.fence = this.nextFence();
      const r = this.resources.get(l.resource);
      if (r) r.fence = l.fence;
    }
    return l;
  }

  /**
   * Puts back a lease kept outside the table (a persistent space's entries after a
   * restart), with its id, holder and expiry. Ignored if already expired.
   */
  adopt(lease: Omit<Lease, 'since' | 'durationMs'> & { durationMs?: number }): Lease | undefined {
    const r = this.resources.get(lease.resource);
    if (!r) throw new FerryError('SERVICE_NOT_FOUND', `resource ${JSON.stringify(lease.resource)} is not offered by this grantor`, { field: 'resource' });
    const now = this.clock.now();
    if (now >= lease.expiresAt) return undefined;
    const l: Lease = { ...lease, since: now, durationMs: lease.durationMs ?? lease.expiresAt - now };
    this.live.set(l.id, l);
    r.leases.add(l.id);
    return l;
  }

  /** A live lease, or undefined (expired ones are ended on the way). */
  get(id: string): Lease | undefined {
    const l = this.live.get(id);
    if (!l) return undefined;
    if (this.clock.now() >= l.expiresAt) {
      this.end(l, 'expired');
      return undefined;
    }
    return l;
  }

  /** Live leases on a resource. */
  leasesOf(resource: string): Lease[] {
    const r = this.resources.get(resource);
    if (!r) return [];
    this.expireResource(r, this.clock.now());
    return [...r.leases].map((id) => this.live.get(id)!);
  }

  /** Ends every lease past its expiry and prunes old tombstones; returns the leases it ended. */
  sweep(): Lease[] {
    const now = this.clock.now();
    const ended: Lease[] = [];
    for (const l of this.live.values()) {
      if (now >= l.expiresAt) ended.push(l);
    }
    for (const l of ended) this.end(l, 'expired');
    this.pruneTombs(now);
    return ended;
  }

  /** Earliest expiry among live leases, or undefined. */
  nextExpiry(): number | undefined {
    let min: number | undefined;
    for (const l of this.live.values()) if (min === undefined || l.expiresAt < min) min = l.expiresAt;
    return min;
  }

  private holderLive(id: string, holder: string, verb: string): Lease {
    const l = this.live.get(id);
    if (l) {
      if (l.holder !== holder) throw notHolder(id, verb);
      if (this.clock.now() >= l.expiresAt) {
        this.end(l, 'expired');
        throw expired(id, l.expiresAt);
      }
      return l;
    }
    const t = this.tomb(id);
    if (t) {
      if (t.holder !== holder) throw notHolder(id, verb);
      if (t.end === 'expired') throw expired(id, t.at);
      throw new FerryError('LEASE_UNKNOWN', `lease ${id} was cancelled`, { field: 'body.leaseId', ended: 'cancelled' });
    }
    throw unknown(id);
  }

  private expireResource(r: Resource, now: number): void {
    // No copy of the set: deleting the current entry while iterating a Set is well defined, and
    // this runs on every grant (most resources have no lease or one).
    for (const id of r.leases) {
      const l = this.live.get(id)!;
      if (now >= l.expiresAt) this.end(l, 'expired');
    }
  }

  private end(l: Lease, end: LeaseEnd): void {
    this.live.delete(l.id);
    this.resources.get(l.resource)?.leases.delete(l.id);
    const at = end === 'expired' ? l.expiresAt : this.clock.now();
    this.tombs.set(l.id, { end, holder: l.holder, resource: l.resource, at });
    if (this.tombs.size > this.options.maxTombstones) {
      const oldest = this.tombs.keys().next().value;
      if (oldest !== undefined) this.tombs.delete(oldest);
    }
    for (const f of this.endListeners) f(l, end);
  }

  private tomb(id: string): Tombstone | undefined {
    const t = this.tombs.get(id);
    if (t && this.clock.now() - t.at > this.options.tombstoneMs) {
      this.tombs.delete(id);
      return undefined;
    }
    return t;
  }

  private pruneTombs(now: number): void {
    // Insertion order is roughly end order; stop at the first young one.
    for (const [id, t] of this.tombs) {
      if (now - t.at <= this.options.tombstoneMs) break;
      this.tombs.delete(id);
    }
  }
}

function notHolder(id: string, verb: string): FerryError {
  return new FerryError('LEASE_NOT_HOLDER', `only the holder of lease ${id} may ${verb} it`, { field: 'body.leaseId' });
}
function unknown(id: string): FerryError {
  return new FerryError('LEASE_UNKNOWN', `no lease ${id} at this grantor`, { field: 'body.leaseId' });
}
function expired(id: string, at: number): FerryError {
  return new FerryError('LEASE_EXPIRED', `lease ${id} expired`, { field: 'body.leaseId', expiredAt: at });
}
