import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../core/errors.js';
import { ManualClock } from '../../agent/services/clock.js';
import { GrantorState } from '../../agent/services/grantor-state.js';
import { LeaseTable } from '../../agent/services/lease-table.js';

function table(clock = new ManualClock(), opts = {}) {
  let fence = 0;
  const t = new LeaseTable({ clock, nextFence: () => ++fence, minDurationMs: 10, maxDurationMs: 10_000, defaultDurationMs: 1000, ...opts });
  t.defineResource('display', { exclusive: true });
  t.defineResource('sensor', { exclusive: false, maxHolders: 2 });
  return { t, clock };
}

function code(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isFerryError(e)) return e.code;
    throw e;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'ferry-lt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('lease table', () => {
  it('grants what the grantor decides: any → default, long → max, short → denied', () => {
    const { t } = table();
    expect(t.grant('sensor', 'a', 'any').durationMs).toBe(1000);
    expect(t.grant('sensor', 'b', 50_000).durationMs).toBe(10_000);
    expect(code(() => t.grant('sensor', 'c', 5))).toBe('LEASE_DENIED');
    expect(code(() => t.grant('nope', 'c', 100))).toBe('SERVICE_NOT_FOUND');
  });

  it('lease ids are 128-bit random base64url', () => {
    const { t } = table();
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const l = t.grant('sensor', 'h', 100);
      expect(l.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      ids.add(l.id);
      t.cancel(l.id, 'h');
    }
    expect(ids.size).toBe(200);
  });

  it('renew counts from now; expiry at expiresAt exactly', () => {
    const { t, clock } = table();
    const l = t.grant('display', 'a', 1000);
    clock.advance(900);
    t.renew(l.id, 'a', 1000);
    expect(l.expiresAt).toBe(clock.now() + 1000);
    clock.advance(999);
    expect(t.get(l.id)).toBeDefined();
    clock.advance(1);
    expect(t.get(l.id)).toBeUndefined();
    expect(code(() => t.renew(l.id, 'a', 1000))).toBe('LEASE_EXPIRED');
  });

  it('exclusive: one holder, fences grow on every grant and handover', () => {
    const { t, clock } = table();
    const a = t.grant('display', 'a', 100);
    expect(code(() => t.grant('display', 'b', 100))).toBe('LEASE_DENIED');
    clock.advance(100);
    const b = t.grant('display', 'b', 100);
    expect(b.fence!).toBeGreaterThan(a.fence!);
    const before = b.fence!;
    t.handover(b.id, 'b', 'c');
    expect(b.holder).toBe('c');
    expect(b.fence!).toBeGreaterThan(before);
    expect(code(() => t.renew(b.id, 'b', 100))).toBe('LEASE_NOT_HOLDER');
    expect(code(() => t.grant('display', 'd', 100))).toBe('LEASE_DENIED');
    expect(code(() => t.renew(b.id, 'c', 100))).toBe('ok');
  });

  it('shared: up to maxHolders, no fence', () => {
    const { t } = table();
    const a = t.grant('sensor', 'a', 100);
    t.grant('sensor', 'b', 100);
    expect(a.fence).toBeUndefined();
    expect(code(() => t.grant('sensor', 'c', 100))).toBe('LEASE_DENIED');
    t.cancel(a.id, 'a');
    expect(code(() => t.grant('sensor', 'c', 100))).toBe('ok');
  });

  it('cancel is idempotent; only the holder may renew, cancel or hand over', () => {
    const { t, clock } = table();
    const l = t.grant('display', 'a', 100);
    expect(code(() => t.cancel(l.id, 'x'))).toBe('LEASE_NOT_HOLDER');
    expect(code(() => t.handover(l.id, 'x', 'y'))).toBe('LEASE_NOT_HOLDER');
    expect(t.cancel(l.id, 'a')).toBe('cancelled');
    expect(t.cancel(l.id, 'a')).toBe('cancelled');
    expect(code(() => t.renew(l.id, 'a', 100))).toBe('LEASE_UNKNOWN');
    expect(code(() => t.renew('nope', 'a', 100))).toBe('LEASE_UNKNOWN');
    const m = t.grant('display', 'a', 100);
    clock.advance(100);
    expect(t.cancel(m.id, 'a')).toBe('expired');
  });

  it('sweep ends expired leases and reports them', () => {
    const { t, clock } = table();
    const ended: string[] = [];
    t.onEnd((l, end) => ended.push(`${l.holder}:${end}`));
    t.grant('sensor', 'a', 100);
    t.grant('sensor', 'b', 200);
    clock.advance(150);
    expect(t.sweep().length).toBe(1);
    expect(ended).toEqual(['a:expired']);
    expect(t.nextExpiry()).toBe(clock.now() + 50);
  });

  it('fencing tokens never go backwards across a grantor restart', () => {
    const file = join(dir, 'g.sqlite');
    let s = new GrantorState(file, 10, 1000);
    const seen: number[] = [];
    for (let i = 0; i < 25; i++) seen.push(s.nextFence());
    s.close();
    for (let run = 0; run < 3; run++) {
      s = new GrantorState(file, 10, 1000);
      for (let i = 0; i < 7; i++) seen.push(s.nextFence());
      s.close();
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
    s = new GrantorState(file, 10, 1000);
    s.cover(5000);
    s.close();
    s = new GrantorState(file, 10, 1000);
    expect(s.previousHorizon).toBeGreaterThanOrEqual(5000);
    s.close();
  });
});

// ---- model-based property test ----

interface ModelLease {
  id: string;
  res: 'display' | 'sensor';
  holder: string;
  exp: number;
  fence?: number;
}
type Ended = { holder: string; end: 'expired' | 'cancelled' };

const holders = ['a', 'b', 'c'];
const op = fc.oneof(
  fc.record({ k: fc.constant('grant' as const), res: fc.constantFrom('display' as const, 'sensor' as const), h: fc.constantFrom(...holders), d: fc.oneof(fc.constant<'any'>('any'), fc.integer({ min: 1, max: 20_000 })) }),
  fc.record({ k: fc.constant('renew' as const), i: fc.nat(), h: fc.constantFrom(...holders), d: fc.integer({ min: 1, max: 20_000 }) }),
  fc.record({ k: fc.constant('cancel' as const), i: fc.nat(), h: fc.constantFrom(...holders) }),
  fc.record({ k: fc.constant('handover' as const), i: fc.nat(), h: fc.constantFrom(...holders), to: fc.constantFrom(...holders) }),
  fc.record({ k: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
  fc.record({ k: fc.constant('sweep' as const) }),
);

describe('lease table against a model (fast-check)', () => {
  it('agrees with the model on every outcome and never breaks exclusivity or fence order', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const { t, clock } = table();
        const model = new Map<string, ModelLease>();
        const ended = new Map<string, Ended>();
        const ids: string[] = [];
        let lastFence = 0;
        const decide = (d: number | 'any') => (d === 'any' ? 1000 : d < 10 ? -1 : Math.min(d, 10_000));
        const expireModel = () => {
          for (const [id, l] of model) if (clock.now() >= l.exp) {
            model.delete(id);
            ended.set(id, { holder: l.holder, end: 'expired' });
          }
        };
        for (const o of ops) {
          const now = clock.now();
          if (o.k === 'advance') {
            clock.advance(o.ms);
            continue;
          }
          if (o.k === 'sweep') {
            t.sweep();
            expireModel();
            continue;
          }
          expireModel();
          if (o.k === 'grant') {
            const d = decide(o.d);
            const held = [...model.values()].filter((l) => l.res === o.res).length;
            const expect_ = d < 0 ? 'LEASE_DENIED' : o.res === 'display' ? (held > 0 ? 'LEASE_DENIED' : 'ok') : held >= 2 ? 'LEASE_DENIED' : 'ok';
            let got = 'ok';
            try {
              const l = t.grant(o.res, o.h, o.d);
              ids.push(l.id);
              model.set(l.id, { id: l.id, res: o.res, holder: o.h, exp: now + d, ...(l.fence !== undefined ? { fence: l.fence } : {}) });
              expect(l.expiresAt).toBe(now + d);
              if (o.res === 'display') {
                expect(l.fence!).toBeGreaterThan(lastFence);
                lastFence = l.fence!;
              }
            } catch (e) {
              if (!isFerryError(e)) throw e;
              got = e.code;
            }
            expect(got).toBe(expect_);
            continue;
          }
          const id = ids.length ? ids[o.i % ids.length]! : 'none';
          const m = model.get(id);
          const gone = ended.get(id);
          const owner = m?.holder ?? gone?.holder;
          if (o.k === 'renew') {
            const d = decide(o.d);
            const want = owner === undefined ? 'LEASE_UNKNOWN' : owner !== o.h ? 'LEASE_NOT_HOLDER' : !m ? (gone!.end === 'expired' ? 'LEASE_EXPIRED' : 'LEASE_UNKNOWN') : d < 0 ? 'LEASE_DENIED' : 'ok';
            expect(code(() => t.renew(id, o.h, o.d))).toBe(want);
            if (want === 'ok') m!.exp = now + d;
          } else if (o.k === 'cancel') {
            const want = owner === undefined ? 'LEASE_UNKNOWN' : owner !== o.h ? 'LEASE_NOT_HOLDER' : 'ok';
            expect(code(() => t.cancel(id, o.h))).toBe(want);
            if (want === 'ok' && m) {
              model.delete(id);
              ended.set(id, { holder: o.h, end: 'cancelled' });
            }
          } else {
            const want = owner === undefined ? 'LEASE_UNKNOWN' : owner !== o.h ? 'LEASE_NOT_HOLDER' : !m ? (gone!.end === 'expired' ? 'LEASE_EXPIRED' : 'LEASE_UNKNOWN') : 'ok';
            expect(code(() => t.handover(id, o.h, o.to))).toBe(want);
            if (want === 'ok') {
              m!.holder = o.to;
              const l = t.get(id)!;
              if (m!.res === 'display') {
                expect(l.fence!).toBeGreaterThan(lastFence);
                lastFence = l.fence!;
              }
            }
          }
          // Invariants: the table's live set equals the model's; the exclusive resource has ≤ 1 holder.
          expect(t.leasesOf('display').length).toBeLessThanOrEqual(1);
        }
        expireModel();
        t.sweep();
        expect(t.size).toBe(model.size);
        expect(new Set(t.leasesOf('display').concat(t.leasesOf('sensor')).map((l) => l.id))).toEqual(new Set(model.keys()));
      }),
      { numRuns: 300 },
    );
  });
});
