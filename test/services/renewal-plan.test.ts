import { describe, expect, it } from 'vitest';
import { isLive, matches } from '../../agent/services/discovery.js';
import type { HeldLease } from '../../agent/services/lease-client.js';
import { readRenewalOptions, readGrantorOptions } from '../../agent/services/options.js';
import { planRenewals, type Managed } from '../../agent/services/renewal-manager.js';
import type { ServiceDescription } from '../../agent/services/protocol.js';

const o = readRenewalOptions({ minMarginMs: 100, rttFactor: 4, batchWindowMs: 500, maxBatch: 2 });

function m(id: string, topic: string, expiresAt: number, desiredUntil = Infinity): Managed {
  const lease: HeldLease = { leaseId: id, service: id, leaseTopic: topic, holder: 'h', exclusive: true, durationMs: 1000, expiresAt };
  return { lease, desiredUntil, inFlight: false, retryAt: 0 };
}

describe('renewal plan (injected time)', () => {
  it('renews ahead by the margin, batches a grantor\'s leases due within the window, splits by maxBatch', () => {
    const items = [m('a', 'g1', 1100), m('b', 'g1', 1500), m('c', 'g1', 1550), m('d', 'g1', 3000), m('e', 'g2', 1400)];
    expect(planRenewals(items, 900, o, 0).batches.size).toBe(0);
    const p = planRenewals(items, 1000, o, 0);
    expect(p.wakeAt).toBe(1100); // nearest expiry or renew point
    const g1 = p.batches.get('g1')!;
    expect(g1.map((b) => b.map((x) => x.item.lease.leaseId))).toEqual([['a', 'b'], ['c']]);
    expect(p.batches.has('g2')).toBe(false); // g2 not due yet
  });

  it('margin grows with the measured round trip', () => {
    const items = [m('a', 'g', 2000)];
    expect(planRenewals(items, 1850, o, 0).batches.size).toBe(0);
    expect(planRenewals(items, 1850, o, 50).batches.size).toBe(1); // 4 × 50 = 200 > 100
  });

  it('asks only for what is desired; done at the desired end; lost at expiry; waits after a failure', () => {
    const items = [m('a', 'g', 1050, 1600), m('b', 'g', 1040, 1000 + 30), m('c', 'g', 999), { ...m('d', 'g', 1080), retryAt: 1050 }];
    const p = planRenewals(items, 1000, o, 0);
    const batch = p.batches.get('g')!.flat();
    expect(batch.map((x) => [x.item.lease.leaseId, x.durationMs])).toEqual([['a', 600]]);
    expect(p.lost.map((x) => x.lease.leaseId)).toEqual(['c']);
    const later = planRenewals(items, 1035, o, 0);
    expect(later.done.map((x) => x.lease.leaseId)).toEqual(['b']);
    expect(planRenewals([items[3]!], 1000, o, 0).wakeAt).toBe(1050);
    expect(planRenewals([items[3]!], 1050, o, 0).batches.get('g')!.flat().length).toBe(1);
    expect(planRenewals([{ ...items[0]!, inFlight: true }], 1000, o, 0).batches.size).toBe(0);
  });
});

describe('discovery rules', () => {
  const d: ServiceDescription = { schema: 1, id: 'p/s', name: 's', type: 'printer', attrs: { color: true, dpi: 300 }, provider: 'p', exclusive: false, epoch: 5, leaseTopic: 't' };
  it('a description is live iff its epoch is newer than the provider\'s last death', () => {
    expect(isLive(d, undefined)).toBe(true);
    expect(isLive(d, 4)).toBe(true); // a late will of an older connection
    expect(isLive(d, 5)).toBe(false);
    expect(isLive(d, 9)).toBe(false);
  });
  it('lookup matches type and every attribute asked for', () => {
    expect(matches(d, { type: 'printer' })).toBe(true);
    expect(matches(d, { type: 'printer', attrs: { color: true } })).toBe(true);
    expect(matches(d, { type: 'printer', attrs: { color: true, dpi: 600 } })).toBe(false);
    expect(matches(d, { type: 'scanner' })).toBe(false);
    expect(matches(d, { type: 'printer', exclude: ['p/s'] })).toBe(false);
  });
});

describe('options are validated on entry, naming the field', () => {
  it('rejects bad and unknown fields', () => {
    expect(() => readRenewalOptions({ minMarginMs: -1 })).toThrow(/options.minMarginMs/);
    expect(() => readRenewalOptions({ nope: 1 } as never)).toThrow(/options.nope/);
    expect(() => readGrantorOptions({} as never)).toThrow(/options.stateFile/);
    expect(() => readGrantorOptions({ stateFile: 'x', minDurationMs: 500, maxDurationMs: 100 })).toThrow(/options.maxDurationMs/);
  });
});
