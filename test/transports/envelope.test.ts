import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { ENVELOPE_VERSION, type Envelope } from '../../transports/contract.js';
import { decodeEnvelope, encodeCbor, encodeEnvelope, isExpired, newMessageId } from '../../transports/envelope.js';
import { RecentIds } from '../../transports/recent-ids.js';
import { isValidFilter, topicMatches } from '../../transports/topics.js';
import { foreignDecode } from './foreign-cbor.js';
import { caught } from '../helpers/ferry-error.js';

/** Byte strings decode as Buffer (a Uint8Array subclass); compare contents only. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const base = (): Envelope => ({ v: 1, type: 'lease.grant', id: newMessageId(), from: 'pi-1', ts: 1_790_000_000_000, body: { ms: 30_000 } });

describe('envelope', () => {
  it('is plain RFC 8949 CBOR: a definite map with text keys, in a fixed order, readable by an independent decoder', () => {
    const env: Envelope = { ...base(), id: 'AAAAAAAAAAAAAAAAAAAAAA', replyTo: 'ferry/v1/inbox/phone-7', ttl: 5000, body: { n: 1, b: new Uint8Array([0xde, 0xad]), s: 'x', f: 1.5, a: [true, null] } };
    const bytes = encodeEnvelope(env);
    expect(bytes[0]).toBe(0xa0 | 8); // map(8): v type id from replyTo ts ttl body
    expect([...bytes.subarray(1, 4)]).toEqual([0x61, 0x76, 0x01]); // "v": 1
    expect([...bytes.subarray(4, 9)]).toEqual([0x64, ...Buffer.from('type')]);
    // ts goes out as uint64 (0x1b), not as a float.
    const tsKey = bytes.indexOf(Buffer.from([0x62, 0x74, 0x73]));
    expect(bytes[tsKey + 3]).toBe(0x1b);
    // No tags anywhere (major type 6): the independent decoder refuses them.
    const foreign = foreignDecode(bytes) as Record<string, unknown>;
    expect(Object.keys(foreign)).toEqual(['v', 'type', 'id', 'from', 'replyTo', 'ts', 'ttl', 'body']);
    expect(plain(foreign)).toEqual(plain(env));
  });

  it('decodes what a foreign encoder writes (hand-assembled bytes)', () => {
    // {"v":1,"type":"a.b","id":"x1","from":"d","ts":0,"body":null}
    const hex = 'a6' + '617601' + '6474797065' + '63612e62' + '626964' + '627831' + '6466726f6d' + '6164' + '627473' + '00' + '64626f6479' + 'f6';
    expect(decodeEnvelope(Buffer.from(hex, 'hex'))).toEqual({ v: 1, type: 'a.b', id: 'x1', from: 'd', ts: 0, body: null });
  });

  it('round-trips any envelope (property)', () => {
    const key = fc.string({ minLength: 1, maxLength: 8 });
    const leaf = fc.oneof(
      fc.constant(null),
      fc.boolean(),
      fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
      fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
      fc.string(),
      fc.uint8Array({ maxLength: 64 }),
    );
    const body = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(key, tie('value'), { maxKeys: 4 })),
    })).value;
    const envelope = fc.record(
      {
        v: fc.constant(ENVELOPE_VERSION),
        type: fc.string({ minLength: 1, maxLength: 40 }),
        id: fc.string({ minLength: 1, maxLength: 40 }),
        from: fc.string({ minLength: 1, maxLength: 40 }),
        replyTo: fc.stringMatching(/^[a-z0-9/]{1,30}$/),
        corr: fc.string({ minLength: 1, maxLength: 40 }),
        ts: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        ttl: fc.nat({ max: 2 ** 40 }),
        body,
      },
      { requiredKeys: ['v', 'type', 'id', 'from', 'ts', 'body'] },
    );
    fc.assert(
      fc.property(envelope, (env) => {
        const decoded = decodeEnvelope(encodeEnvelope(env as Envelope));
        expect(plain(decoded)).toEqual(plain(env));
        expect(plain(foreignDecode(encodeEnvelope(env as Envelope)))).toEqual(plain(env));
      }),
      { numRuns: 300 },
    );
  });

  const bad: Array<[string, unknown, string, string]> = [
    ['not a map', [1, 2], 'ENVELOPE_MALFORMED', 'envelope'],
    ['a byte string', new Uint8Array(3), 'ENVELOPE_MALFORMED', 'envelope'],
    ['no v', { ...base(), v: undefined }, 'ENVELOPE_MALFORMED', 'envelope.v'],
    ['v 2', { ...base(), v: 2 }, 'ENVELOPE_VERSION', 'envelope.v'],
    ['v 0', { ...base(), v: 0 }, 'ENVELOPE_VERSION', 'envelope.v'],
    ['v a string', { ...base(), v: '1' }, 'ENVELOPE_MALFORMED', 'envelope.v'],
    ['no type', { ...base(), type: undefined }, 'ENVELOPE_MALFORMED', 'envelope.type'],
    ['empty type', { ...base(), type: '' }, 'ENVELOPE_MALFORMED', 'envelope.type'],
    ['numeric id', { ...base(), id: 7 }, 'ENVELOPE_MALFORMED', 'envelope.id'],
    ['no from', { ...base(), from: undefined }, 'ENVELOPE_MALFORMED', 'envelope.from'],
    ['wildcard replyTo', { ...base(), replyTo: 'a/+/b' }, 'ENVELOPE_MALFORMED', 'envelope.replyTo'],
    ['numeric corr', { ...base(), corr: 3 }, 'ENVELOPE_MALFORMED', 'envelope.corr'],
    ['negative ts', { ...base(), ts: -1 }, 'ENVELOPE_MALFORMED', 'envelope.ts'],
    ['float ts', { ...base(), ts: 1.5 }, 'ENVELOPE_MALFORMED', 'envelope.ts'],
    ['string ttl', { ...base(), ttl: '5s' }, 'ENVELOPE_MALFORMED', 'envelope.ttl'],
    ['no body', { ...base(), body: undefined }, 'ENVELOPE_MALFORMED', 'envelope.body'],
  ];
  // What a foreign client writes: a whole ts above 2^32 as uint64 (cbor-x alone would write a float64).
  const wire = (value: unknown) => {
    if (!value || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return encodeCbor(value);
    const o = Object.fromEntries(Object.entries(value).filter(([, x]) => x !== undefined));
    if (typeof o.ts === 'number' && Number.isInteger(o.ts) && o.ts > 0xffffffff) o.ts = BigInt(o.ts);
    return encodeCbor(o);
  };
  it.each(bad)('refuses %s with a typed error naming the field', (_label, value, code, field) => {
    let err: unknown;
    try {
      decodeEnvelope(wire(value));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe(code);
    expect((err as FerryError).details.field).toBe(field);
    expect((err as FerryError).message).toContain(field);
  });

  it('refuses a whole ts or ttl written as a float, and v as a half float (the wire says unsigned integer)', () => {
    // cbor-x writes a whole number above 2^32 as float64 (0xfb): a Ferry receiver before this accepted it.
    const ts = encodeCbor({ ...base(), ts: 1_790_000_000_000 });
    const ttl = encodeCbor({ ...base(), ts: 5, ttl: 2 ** 33 });
    // {"v": 1.0 as f16, ...}: the bytes of v: 1 (61 76 01) with the value as 0xf9 3c00.
    const v = Buffer.from(encodeCbor({ ...base(), ts: 5 }).toString('hex').replace('617601', '6176f93c00'), 'hex');
    for (const [bytes, field] of [[ts, 'envelope.ts'], [ttl, 'envelope.ttl'], [v, 'envelope.v']] as const) {
      const e = caught(() => decodeEnvelope(bytes));
      expect(e.code).toBe('ENVELOPE_MALFORMED');
      expect(e.details.field).toBe(field);
    }
  });

  it('refuses invalid CBOR and trailing bytes', () => {
    for (const hex of ['', 'ff', 'a26176', '1c', 'a1617601ff']) {
      expect(() => decodeEnvelope(Buffer.from(hex, 'hex'))).toThrow(expect.objectContaining({ code: 'ENVELOPE_MALFORMED', details: expect.objectContaining({ field: 'envelope' }) }));
    }
  });

  it('ignores unknown extra keys (forward compatible) and does not keep them', () => {
    const env = decodeEnvelope(wire({ ...base(), future: 1 }));
    expect('future' in env).toBe(false);
  });

  it('expires by ts + ttl with the allowed skew', () => {
    const env = { ...base(), ts: 1000, ttl: 100 };
    expect(isExpired(env, 1100, 0)).toBe(false);
    expect(isExpired(env, 1101, 0)).toBe(true);
    expect(isExpired(env, 1101, 10)).toBe(false);
    expect(isExpired(base(), Number.MAX_SAFE_INTEGER, 0)).toBe(false);
  });

  it('makes 128-bit base64url ids that do not repeat', () => {
    const ids = new Set(Array.from({ length: 10_000 }, newMessageId));
    expect(ids.size).toBe(10_000);
    for (const id of [...ids].slice(0, 10)) expect(Buffer.from(id, 'base64url').length).toBe(16);
  });
});

describe('recent ids (dedupe LRU)', () => {
  it('remembers the last N ids and evicts the least recently seen', () => {
    const r = new RecentIds(3);
    expect(['a', 'b', 'c'].map((id) => r.seen(id))).toEqual([false, false, false]);
    expect(r.seen('a')).toBe(true); // a is now the youngest
    expect(r.seen('d')).toBe(false); // evicts b
    expect(r.size).toBe(3);
    expect(r.seen('b')).toBe(false);
    expect(r.seen('a')).toBe(true);
  });
});

describe('topics', () => {
  it.each([
    ['a/b', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['+/b', 'a/b', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['a/+/c', 'a//c', true],
  ])('%s matches %s: %s', (filter, topic, want) => {
    expect(topicMatches(filter, topic)).toBe(want);
  });

  it('validates filters', () => {
    expect(['a/#', '+', 'a/+/b', '#'].every(isValidFilter)).toBe(true);
    expect(['', 'a/#/b', 'a/b#', 'a+/b', 'x\u0000'].some(isValidFilter)).toBe(false);
  });
});

describe('reconnect backoff', () => {
  it('doubles from the minimum up to the ceiling, with ±25% jitter', async () => {
    const { backoffDelay } = await import('../../transports/reconnect-backoff.js');
    const mid = () => 0.5; // no jitter
    expect([0, 1, 2, 3, 4, 10, 60].map((n) => backoffDelay(n, 100, 1000, mid))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    expect(backoffDelay(2, 100, 1000, () => 0)).toBe(300);
    expect(backoffDelay(2, 100, 1000, () => 0.999)).toBe(500);
    expect(backoffDelay(0, 100, 1000, () => 0)).toBe(100); // never below the minimum
  });
});

describe('encodeOwnEnvelope (the bus fast path)', () => {
  it('writes the same bytes as encodeEnvelope for requests and answers', async () => {
    const { encodeOwnEnvelope } = await import('../../transports/envelope.js');
    const ts = Date.now();
    const req = { v: 1, type: 'lease.grant', id: newMessageId(), from: 'h1', replyTo: 'ferry/v1/inbox/h1', ts, ttl: 2000, body: { service: 'lamp', durationMs: 'any', reqId: 'r1' } };
    expect(Buffer.from(encodeOwnEnvelope(req.type, req.id, req.from, req.replyTo, undefined, ts, 2000, req.body))).toEqual(Buffer.from(encodeEnvelope(req)));
    const ans = { v: 1, type: 'lease.grant.ok', id: newMessageId(), from: 'p1', corr: req.id, ts, body: null };
    expect(Buffer.from(encodeOwnEnvelope(ans.type, ans.id, ans.from, undefined, ans.corr, ts, undefined, null))).toEqual(Buffer.from(encodeEnvelope(ans)));
  });

  it('refuses a bad type, naming envelope.type', async () => {
    const { encodeOwnEnvelope } = await import('../../transports/envelope.js');
    expect(() => encodeOwnEnvelope('', 'id', 'f', 'a/b', undefined, 1, 1, null)).toThrow(expect.objectContaining({ code: 'ENVELOPE_MALFORMED', details: { field: 'envelope.type' } }));
  });
});
