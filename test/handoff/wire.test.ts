import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FerryError } from '../../core/errors.js';
import { readGifts, readPrepare, readRound, MOVE_ID } from '../../agent/bridge/move-wire.js';
import { readMigrateOptions } from '../../agent/bridge/move-options.js';
import { caught } from '../helpers/ferry-error.js';

/** The handoff's record bodies (PROTOCOL "Bridge: handoff"): every bad field is refused with MIGRATE_PROTOCOL naming it. */

const ID = 'AAAAAAAAAAAAAAAAAAAAAA';
const prepare = (): Record<string, unknown> => ({
  id: ID,
  instance: 'counter',
  app: 'counter',
  appVersion: '1.0.0',
  code: '0123456789abcdef',
  lineSize: 4096,
  maxLines: 1024,
  wordBits: 64,
  minHeapBytes: 16384,
  services: [{ type: 'display', optional: false, attributes: { device: 'pi-1' } }],
  leases: [{ type: 'display', provider: 'pi-1', exclusive: true, local: true }],
});
const limits = { maxLines: 16, lineSize: 64 };
const round = (): Record<string, unknown> => ({ id: ID, round: 0, base: 0, version: 3, lines: [[1, new Uint8Array(16), new Uint8Array(64)], [2, new Uint8Array(16), null]], removed: [5], meta: new Uint8Array(10) });

describe('move.prepare bodies', () => {
  it('a good body reads back field for field', () => {
    const p = readPrepare(prepare());
    expect(p).toMatchObject({ id: ID, instance: 'counter', lineSize: 4096, wordBits: 64, services: [{ type: 'display', optional: false, attributes: { device: 'pi-1' } }] });
    expect(readPrepare({ ...prepare(), services: [{ type: 'x', optional: true }] }).services[0]!.attributes).toEqual({});
  });

  it.each([
    ['id', 'not-an-id', 'body.id'],
    ['instance', 'Bad Name', 'body.instance'],
    ['app', 7, 'body.app'],
    ['code', 'xyz', 'body.code'],
    ['lineSize', 3000, 'body.lineSize'],
    ['lineSize', 32, 'body.lineSize'],
    ['maxLines', 1, 'body.maxLines'],
    ['wordBits', 16, 'body.wordBits'],
    ['minHeapBytes', -1, 'body.minHeapBytes'],
    ['services', 'display', 'body.services'],
    ['services', [{ type: 'x', optional: 'no' }], 'body.services[0].optional'],
    ['services', [{ type: 'x', optional: true, attributes: { a: [1] } }], 'body.services[0].attributes.a'],
    ['leases', [{ type: 'x', provider: 'p', exclusive: 1, local: false }], 'body.leases[0].exclusive'],
  ])('%s = %j is refused naming %s', (key, value, field) => {
    const e = caught(() => readPrepare({ ...prepare(), [key]: value }));
    expect(e.code).toBe('MIGRATE_PROTOCOL');
    expect(e.details.field).toBe(field);
  });

  it('a body that is not a map is refused', () => {
    for (const v of [null, 3, 'x', [], new Uint8Array(2)]) expect(caught(() => readPrepare(v)).code).toBe('MIGRATE_PROTOCOL');
  });
});

describe('move.round bodies', () => {
  it('a good body keeps its lines, removals and meta', () => {
    const r = readRound(round(), limits);
    expect(r.lines.map((l) => [l[0], l[2]?.length ?? null])).toEqual([[1, 64], [2, null]]);
    expect(r.removed).toEqual([5]);
  });

  it.each([
    ['lines', [[0, new Uint8Array(16), null]], 'body.lines[0][0]'],
    ['lines', [[16, new Uint8Array(16), null]], 'body.lines[0][0]'],
    ['lines', [[1, new Uint8Array(15), null]], 'body.lines[0][1]'],
    ['lines', [[1, new Uint8Array(16), new Uint8Array(63)]], 'body.lines[0][2]'],
    ['lines', [[1, new Uint8Array(16)]], 'body.lines[0]'],
    ['lines', Array.from({ length: 17 }, () => [1, new Uint8Array(16), null]), 'body.lines'],
    ['removed', [0], 'body.removed[0]'],
    ['removed', ['1'], 'body.removed[0]'],
    ['version', 0, 'body.version'],
    ['round', -1, 'body.round'],
    ['meta', 'x', 'body.meta'],
  ])('%s = … is refused naming %s', (key, value, field) => {
    const e = caught(() => readRound({ ...round(), [key]: value }, limits));
    expect(e.code).toBe('MIGRATE_PROTOCOL');
    expect(e.details.field).toBe(field);
  });

  it('any body is read or refused with MIGRATE_PROTOCOL, never anything else', () => {
    fc.assert(
      fc.property(fc.anything({ withTypedArray: true }), fc.anything({ withTypedArray: true }), (lines, removed) => {
        try {
          readRound({ ...round(), lines, removed }, limits);
        } catch (e) {
          expect(e).toBeInstanceOf(FerryError);
          expect((e as FerryError).code).toBe('MIGRATE_PROTOCOL');
        }
      }),
    );
  });
});

describe('move.commit lease gifts', () => {
  const gift = () => ({ type: 'display', lease: { leaseId: 'l1', service: 'display', leaseTopic: 't', holder: 'phone', exclusive: true, durationMs: 1000, fence: 4 }, remainingMs: 900 });
  it('reads good gifts', () => expect(readGifts([gift()])[0]!.remainingMs).toBe(900));
  it.each([
    [{ lease: null }, 'body.leases[0].lease'],
    [{ lease: { ...gift().lease, leaseId: 1 } }, 'body.leases[0].lease.leaseId'],
    [{ lease: { ...gift().lease, exclusive: 'yes' } }, 'body.leases[0].lease.exclusive'],
    [{ remainingMs: -5 }, 'body.leases[0].remainingMs'],
  ])('%j is refused naming %s', (patch, field) => {
    const e = caught(() => readGifts([{ ...gift(), ...patch }]));
    expect(e.code).toBe('MIGRATE_PROTOCOL');
    expect(e.details.field).toBe(field);
  });
  it('more than 64 gifts, or not an array, is refused', () => {
    expect(caught(() => readGifts('x')).details.field).toBe('body.leases');
    expect(caught(() => readGifts(Array.from({ length: 65 }, gift))).details.field).toBe('body.leases');
  });
});

describe('migrate options', () => {
  it('defaults: 300 ms as QEMU, 30 rounds, pre-copy on, not a dry run', () => {
    expect(readMigrateOptions()).toEqual({ downtimeLimitMs: 300, maxRounds: 30, maxTotalMs: 120_000, stepTimeoutMs: 30_000, retries: 3, dryRun: false, precopy: true });
  });
  it.each([
    [{ downtimeLimitMs: 5 }, 'options.downtimeLimitMs'],
    [{ downtimeLimitMs: 300.5 }, 'options.downtimeLimitMs'],
    [{ maxRounds: 0 }, 'options.maxRounds'],
    [{ maxTotalMs: 10 }, 'options.maxTotalMs'],
    [{ stepTimeoutMs: 99 }, 'options.stepTimeoutMs'],
    [{ retries: 21 }, 'options.retries'],
    [{ dryRun: 'yes' }, 'options.dryRun'],
    [{ precopy: 1 }, 'options.precopy'],
    [{ downtime: 300 }, 'options.downtime'],
  ])('%j is BAD_OPTION naming %s', (o, field) => {
    const e = caught(() => readMigrateOptions(o as never));
    expect(e.code).toBe('BAD_OPTION');
    expect(e.details.field).toBe(field);
  });
  it('move ids are 16 random bytes in base64url', () => expect(MOVE_ID.test(Buffer.alloc(16, 7).toString('base64url'))).toBe(true));
});
