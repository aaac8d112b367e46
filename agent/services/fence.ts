import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';

/**
 * Fencing at a resource (Kleppmann's fencing tokens; DESIGN.md, "Fencing at a resource").
 *
 * Every exclusive grant and handover takes a token greater than every token the grantor
 * issued before. A holder passes its token with each request to the resource (`svc.call`
 * body `fence`, PROTOCOL §S.3 "Fencing at a resource"); the resource refuses a token lower
 * than the newest it knows for that service with LEASE_FENCED (field `body.fence`), so a
 * holder that lost its lease (expired while it was paused, or handed over) cannot act on the
 * resource with it any more, even if its request arrives late.
 *
 * A resource served by its own grantor (system services) knows the newest token issued
 * (`LeaseTable.newestFence`). A resource elsewhere learns tokens only from requests:
 * `FenceGate` keeps the highest it has accepted per service. It orders holders; it does not
 * authenticate them: admit a token only for a request the resource otherwise trusts (a
 * forged high token would fence off the real holder).
 */
export function fencedError(service: string, fence: number, reason: 'stale' | 'foreign'): FerryError {
  return new FerryError(
    'LEASE_FENCED',
    reason === 'stale'
      ? `fence ${fence} on ${JSON.stringify(service)} is older than the newest token issued for it: the lease has moved to another holder`
      : `fence ${fence} is not the token of this lease on ${JSON.stringify(service)}`,
    { field: 'body.fence' },
  );
}

export class FenceGate {
  private readonly high = new Map<string, number>();

  /** `maxServices`: most services tracked (the oldest-tracked is forgotten beyond it). Default 10,000. */
  constructor(private readonly maxServices = 10_000) {}

  /** The highest token accepted for `service`, or undefined. */
  highest(service: string): number | undefined {
    return this.high.get(service);
  }

  /**
   * Accepts `fence` for `service` if it is not lower than the highest accepted so far (and
   * records it), else throws LEASE_FENCED naming `body.fence`. A missing or ill-typed token
   * is SERVICE_BAD_REQUEST: a fenced resource needs one on every request.
   */
  admit(service: string, fence: unknown): number {
    if (typeof fence !== 'number' || !Number.isSafeInteger(fence) || fence < 0) {
      throw new FerryError('SERVICE_BAD_REQUEST', `body.fence must be a non-negative integer (the lease's fencing token), got ${describe(fence)}`, { field: 'body.fence' });
    }
    const h = this.high.get(service);
    if (h !== undefined && fence < h) throw fencedError(service, fence, 'stale');
    if (h === undefined && this.high.size >= this.maxServices) {
      const oldest = this.high.keys().next().value;
      if (oldest !== undefined) this.high.delete(oldest);
    }
    this.high.set(service, fence);
    return fence;
  }
}
