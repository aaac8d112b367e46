import { EventEmitter } from 'node:events';
import { FerryError, isFerryError } from '../../core/errors.js';
import { systemClock, type Clock } from './clock.js';
import { remote as remoteCode, type HeldLease, type LeaseClient } from './lease-client.js';
import type { RequestedDuration } from './lease-table.js';
import { readRenewalOptions, type RenewalManagerOptions } from './options.js';

/** One lease under management: what the holder wants versus what it was granted. */
export interface Managed {
  lease: HeldLease;
  /** Clock ms until which the holder wants the lease; Infinity = until released. */
  desiredUntil: number;
  /** A renewal for it is on the wire. */
  inFlight: boolean;
  /** After a failed attempt: not before this clock time. */
  retryAt: number;
}

export interface RenewalPlan {
  /** Per grantor lease topic, the batches to send now (each ≤ maxBatch). */
  batches: Map<string, { item: Managed; durationMs: RequestedDuration }[][]>;
  /** Leases whose holder-side expiry has passed: lost. */
  lost: Managed[];
  /** Leases that reached their desired end: done. */
  done: Managed[];
  /** When to plan again, clock ms (undefined: nothing to do). */
  wakeAt: number | undefined;
}

/**
 * The renewal decision as a pure function of the managed set and the time, so
 * it is tested with an injected clock:
 * - renew at `expiresAt − margin`, margin = max(minMarginMs, rttFactor × rtt);
 * - once one lease of a grantor is due, every lease of that grantor due within
 *   `batchWindowMs` rides in the same message (fewer, bigger messages);
 * - ask for min(renewDuration, desiredUntil − now); a lease whose grant already
 *   covers its desired end is not renewed and is done at that end.
 */
export function planRenewals(items: Iterable<Managed>, now: number, o: Required<RenewalManagerOptions>, rttMs: number): RenewalPlan {
  const margin = Math.max(o.minMarginMs, o.rttFactor * rttMs);
  const byGrantor = new Map<string, Managed[]>();
  const lost: Managed[] = [];
  const done: Managed[] = [];
  let wakeAt: number | undefined;
  const wake = (t: number) => {
    if (wakeAt === undefined || t < wakeAt) wakeAt = t;
  };
  const due = new Set<string>();
  for (const m of items) {
    const l = m.lease;
    if (m.desiredUntil <= now) {
      done.push(m);
      continue;
    }
    if (now >= l.expiresAt) {
      lost.push(m);
      continue;
    }
    if (m.desiredUntil <= l.expiresAt) {
      wake(m.desiredUntil);
      continue;
    }
    wake(l.expiresAt); // to notice a loss even if renewals keep failing
    if (m.inFlight) continue;
    const renewAt = Math.max(l.expiresAt - margin, m.retryAt);
    let list = byGrantor.get(l.leaseTopic);
    if (!list) byGrantor.set(l.leaseTopic, (list = []));
    list.push(m);
    if (renewAt <= now) due.add(l.leaseTopic);
    else wake(renewAt);
  }
  const batches: RenewalPlan['batches'] = new Map();
  for (const topic of due) {
    const chosen = byGrantor
      .get(topic)!
      .filter((m) => m.retryAt <= now && m.lease.expiresAt - margin <= now + o.batchWindowMs)
      .map((item) => {
        const left = item.desiredUntil - now;
        const want = o.renewDurationMs === 'any' ? left : Math.min(o.renewDurationMs, left);
        return { item, durationMs: Number.isFinite(want) ? Math.ceil(want) : ('any' as const) };
      });
    const split: { item: Managed; durationMs: RequestedDuration }[][] = [];
    for (let i = 0; i < chosen.length; i += o.maxBatch) split.push(chosen.slice(i, i + o.maxBatch));
    batches.set(topic, split);
  }
  return { batches, lost, done, wakeAt };
}

/**
 * Keeps leases alive until their holder no longer wants them.
 *
 * Events:
 * - `renewed` (lease)
 * - `failed` (lease, error, final): final = the grantor refused (LEASE_EXPIRED,
 *   LEASE_UNKNOWN, LEASE_NOT_HOLDER, ...) and the lease is dropped; not final = the
 *   message was lost (timeout, broker down) and it is retried after retryMs
 * - `lost` (lease): its holder-side expiry passed without a renewal
 * - `done` (lease): its desired end was reached
 *
 * After a broker restart the bus reconnects; on its `connect` event every due
 * lease is renewed at once.
 */
export class RenewalManager extends EventEmitter {
  private readonly o: Required<RenewalManagerOptions>;
  private readonly items = new Map<string, Managed>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private closed = false;
  /** Smoothed round trip of renewal batches, ms. */
  rttMs = 0;
  readonly stats = { batches: 0, renewed: 0, failures: 0 };
  private readonly onConnect = () => this.kick();

  constructor(
    readonly client: LeaseClient,
    options: RenewalManagerOptions = {},
    readonly clock: Clock = systemClock,
  ) {
    super();
    this.o = readRenewalOptions(options);
    client.bus.on('connect', this.onConnect);
  }

  /** Manages a lease until `desiredUntil` (clock ms; default: until released). */
  manage(lease: HeldLease, desiredUntil = Infinity): void {
    if (this.closed) throw new FerryError('BUS_CLOSED', 'the renewal manager is closed', { field: 'manager' });
    this.items.set(lease.leaseId, { lease, desiredUntil, inFlight: false, retryAt: 0 });
    this.kick();
  }

  /** Stops managing (does not cancel). */
  release(leaseId: string): HeldLease | undefined {
    const m = this.items.get(leaseId);
    this.items.delete(leaseId);
    return m?.lease;
  }

  get(leaseId: string): HeldLease | undefined {
    return this.items.get(leaseId)?.lease;
  }

  get size(): number {
    return this.items.size;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.client.bus.off('connect', this.onConnect);
    this.items.clear();
  }

  /** Plans and sends now (also called by the timer). */
  kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.tick().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async tick(): Promise<void> {
    const now = this.clock.now();
    const plan = planRenewals(this.items.values(), now, this.o, this.rttMs);
    for (const m of plan.done) {
      this.items.delete(m.lease.leaseId);
      this.emit('done', m.lease);
    }
    for (const m of plan.lost) {
      this.items.delete(m.lease.leaseId);
      this.emit('lost', m.lease);
    }
    const sends: Promise<void>[] = [];
    for (const [topic, batches] of plan.batches) for (const b of batches) sends.push(this.send(topic, b));
    this.schedule(plan.wakeAt);
    // Sends run concurrently; the next plan skips leases in flight.
    void Promise.all(sends);
  }

  private schedule(wakeAt: number | undefined): void {
    clearTimeout(this.timer);
    if (wakeAt === undefined || this.closed) return;
    const delay = Math.max(0, Math.min(wakeAt - this.clock.now(), 2 ** 31 - 1));
    this.timer = setTimeout(() => this.kick(), delay);
  }

  private async send(topic: string, batch: { item: Managed; durationMs: RequestedDuration }[]): Promise<void> {
    for (const b of batch) b.item.inFlight = true;
    const t0 = performance.now();
    try {
      const results = await this.client.renewBatch(
        topic,
        batch.map((b) => ({ lease: b.item.lease, durationMs: b.durationMs })),
      );
      const rtt = performance.now() - t0;
      this.rttMs = this.rttMs === 0 ? rtt : this.rttMs * 0.8 + rtt * 0.2;
      this.stats.batches++;
      const byId = new Map(results.map((r) => [r.leaseId, r]));
      for (const { item } of batch) {
        item.inFlight = false;
        const r = byId.get(item.lease.leaseId);
        if (!this.items.has(item.lease.leaseId)) continue;
        if (r?.ok) {
          item.retryAt = 0;
          this.stats.renewed++;
          this.emit('renewed', item.lease);
        } else {
          this.items.delete(item.lease.leaseId);
          this.stats.failures++;
          const err = r && !r.ok ? remoteCode(r) : new FerryError('LEASE_UNKNOWN', 'the grantor did not answer for this lease', { field: 'body.leases' });
          this.emit('failed', item.lease, err, true);
        }
      }
    } catch (e) {
      const now = this.clock.now();
      for (const { item } of batch) {
        item.inFlight = false;
        item.retryAt = now + this.o.retryMs;
        this.stats.failures++;
        if (!this.items.has(item.lease.leaseId)) continue;
        const final = !isTransient(e);
        if (final) this.items.delete(item.lease.leaseId);
        this.emit('failed', item.lease, e, final);
      }
    }
    this.kick();
  }
}

function isTransient(e: unknown): boolean {
  return !isFerryError(e) || ['BUS_TIMEOUT', 'BUS_OFFLINE', 'BUS_CLOSED', 'REMOTE_ERROR'].includes(e.code);
}
