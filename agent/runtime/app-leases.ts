import { FerryError, isFerryError } from '../../core/errors.js';
import type { AppDefinition } from './app-definition.js';
import { callService, type HeldLease, type Services } from '../services/index.js';

/** A lease an app instance holds, as `ctx.leases()` and `ferry leases` show it. */
export interface LeaseView {
  type: string;
  leaseId: string;
  service: string;
  provider: string | undefined;
  expiresAt: number;
  /** An exclusive lease's fencing token (a handoff's handover gives it a new, higher one). */
  fence?: number;
}

/**
 * The leases of one app instance: one per service its description requires,
 * acquired through `Alternates` (so a dead provider is replaced by another
 * matching one), released when the instance is suspended, stopped or removed.
 */
export class AppLeases {
  readonly held = new Map<string, HeldLease>();
  /** Services missing now and looked for again from time to time (type → timer). */
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private released = false;

  constructor(
    private readonly services: Services,
    private readonly definition: AppDefinition,
  ) {}

  /**
   * Leases every required service. A required one not found within `waitMs`
   * fails with its error when `strict` (ferry run); otherwise (recovery after a
   * restart) it is reported through `missing` and the app runs without it.
   */
  async acquire(waitMs: number, strict: boolean, missing: (type: string, e: unknown) => void): Promise<void> {
    for (const req of this.definition.requirements.services) {
      if (this.held.has(req.type)) continue;
      const query = { type: req.type, attrs: req.attributes };
      try {
        if (this.services.discovery.lookup(query).length === 0) await this.services.discovery.waitFor(query, Math.max(1, waitMs));
        this.held.set(req.type, await this.services.alternates.acquire(query));
      } catch (e) {
        if (strict && !req.optional) {
          await this.release();
          throw isFerryError(e) ? e : new FerryError('SERVICE_NOT_FOUND', `no service of type ${req.type} could be leased: ${String(e)}`, { field: 'requirements.services' });
        }
        missing(req.type, e);
      }
    }
  }

  /**
   * Looks for a service of `type` again every `everyMs` until one is leased (then
   * `found` is told) or the leases are released: a lost or missing service comes back
   * when a device offering it appears.
   */
  retry(type: string, everyMs: number, found: (lease: HeldLease) => void): void {
    const req = this.definition.requirements.services.find((r) => r.type === type);
    if (!req || this.retries.has(type) || this.released) return;
    const query = { type, attrs: req.attributes };
    const t = setInterval(() => {
      if (this.services.discovery.lookup(query).length === 0) return;
      clearInterval(t);
      this.services.alternates.acquire(query).then(
        (lease) => {
          this.retries.delete(type);
          if (this.released) {
            this.services.alternates.forget(lease.leaseId);
            void this.services.client.cancel(lease).catch(() => undefined);
            return;
          }
          this.held.set(type, lease);
          found(lease);
        },
        () => {
          // Busy or gone again: keep looking.
          this.retries.delete(type);
          this.retry(type, everyMs, found);
        },
      );
    }, everyMs);
    t.unref();
    this.retries.set(type, t);
  }

  /**
   * Leases, for each of `types`, this device's own service of that type (`device` attribute):
   * an arriving app's local resources map to the destination's (a display to its display). One
   * not found or busy here is left to `acquire`.
   */
  async acquireOwn(types: string[], device: string): Promise<void> {
    for (const type of types) {
      const req = this.definition.requirements.services.find((r) => r.type === type);
      if (!req || this.held.has(type)) continue;
      const query = { type, attrs: { ...req.attributes, device } };
      if (this.services.discovery.lookup(query).length === 0) continue;
      try {
        this.held.set(type, await this.services.alternates.acquire(query));
      } catch {
        // busy here: acquire() tries every matching service next
      }
    }
  }

  /** Takes over a lease handed over to this device (a live handoff): held, renewed, replaced if lost. */
  adopt(type: string, lease: HeldLease, query: { type: string; attrs?: Record<string, unknown> | undefined }): void {
    this.held.set(type, lease);
    this.services.alternates.adopt(lease, { type: query.type, ...(query.attrs ? { attrs: query.attrs as never } : {}) });
  }

  /** Follows a lease moved to another provider; returns true if it was one of these. */
  replaced(old: HeldLease, next: HeldLease): boolean {
    for (const [type, l] of this.held) {
      if (l.leaseId === old.leaseId) {
        this.held.set(type, next);
        return true;
      }
    }
    return false;
  }

  /** Drops a lease that ended with no alternate; returns its service type if it was one of these. */
  lost(old: HeldLease): string | undefined {
    for (const [type, l] of this.held) {
      if (l.leaseId === old.leaseId) {
        this.held.delete(type);
        return type;
      }
    }
    return undefined;
  }

  /** Calls operation `op` of the leased service of `type` (a system service's call topic). */
  async call(type: string, op: string, args: unknown): Promise<unknown> {
    const lease = this.held.get(type);
    const topic = lease?.description?.callTopic;
    if (!lease || !topic) {
      throw new FerryError('SERVICE_NOT_FOUND', `the app holds no lease on a callable ${JSON.stringify(type)} service (declare it in requirements.services)`, { field: 'ctx.request.type' });
    }
    const a = args !== null && typeof args === 'object' && !Array.isArray(args) ? (args as Record<string, unknown>) : {};
    return callService(this.services.bus, lease, topic, op, a);
  }

  view(): LeaseView[] {
    return [...this.held].map(([type, l]) => ({ type, leaseId: l.leaseId, service: l.service, provider: l.description?.provider, expiresAt: l.expiresAt, ...(l.fence !== undefined ? { fence: l.fence } : {}) }));
  }

  /** Cancels every lease (best effort: an unreachable grantor lets it expire). */
  async release(): Promise<void> {
    this.released = true;
    for (const t of this.retries.values()) clearInterval(t);
    this.retries.clear();
    const leases = [...this.held.values()];
    this.held.clear();
    for (const l of leases) {
      this.services.alternates.forget(l.leaseId);
      await this.services.client.cancel(l).catch(() => undefined);
    }
  }
}
