import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { MAX_DEPTH, checkCborSubset } from '../../transports/cbor-subset.js';
import { decodeEnvelope, encodeEnvelope, readEnvelope } from '../../transports/envelope.js';
import { caught } from '../helpers/ferry-error.js';

/**
 * Ferry's CBOR subset (PROTOCOL.md §3.2), checked on raw bytes: one hostile input per rule, built
 * by hand (cbor-x would not write most of them), then a structured fuzz pass over the envelope
 * decoder: whatever the bytes, it returns an envelope whose body is plain data of the subset or
 * throws a typed error — never anything else, never a value outside the subset.
 */

const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const text = (s: string) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([head(3, b.length), b]); };
function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 256) return Buffer.from([(major << 5) | 24, n]);
  if (n < 65536) return Buffer.from([(major << 5) | 25, n >> 8, n & 255]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}
/** An envelope map whose body is the given raw CBOR (ts as a uint, everything else valid). */
function envelopeWith(body: Buffer, extra: Buffer[] = []): Buffer {
  const fields = [
    [text('v'), hex('01')], [text('type'), text('app.call')], [text('id'), text('id-1')], [text('from'), text('pi-1')],
    [text('replyTo'), text('ferry/v1/inbox/pi-1')], [text('ts'), hex('1a 00 0f 42 40')], [text('body'), body],
  ];
  return Buffer.concat([head(5, fields.length + extra.length / 2), ...fields.flat(), ...extra]);
}
const nested = (depth: number) => Buffer.concat([Buffer.alloc(depth, 0x81), hex('00')]);

describe('the subset, one rule at a time (in the body: the envelope survives, the body is refused)', () => {
  const cases: [string, Buffer, string, RegExp][] = [
    ['an indefinite-length map', hex('bf 61 61 01 ff'), 'body', /indefinite length/],
    ['an indefinite-length array', hex('9f 01 ff'), 'body', /indefinite length/],
    ['an indefinite-length text', hex('7f 61 61 ff'), 'body', /indefinite length/],
    ['tag 55799 (self-describe)', hex('d9 d9f7 a0'), 'body', /tag 55799/],
    ['tag 28 (shareable)', hex('d8 1c 81 00'), 'body', /tag 28/],
    ['tag 29 (shared reference)', hex('a1 61 61 d8 1d 00'), 'body.a', /tag 29/],
    ['tag 2 (bignum)', hex('c2 49 010000000000000000'), 'body', /tag 2/],
    ['tag 64 (typed array)', hex('d8 40 43 010203'), 'body', /tag 64/],
    ['tag 24 (embedded CBOR)', hex('d8 18 41 00'), 'body', /tag 24/],
    ['a duplicate key', hex('a2 61 61 01 61 61 02'), 'body.a', /twice/],
    ['invalid UTF-8 in a text', hex('a1 61 61 62 c328'), 'body.a', /UTF-8/],
    ['invalid UTF-8 in a key', hex('a1 62 c328 01'), 'body', /UTF-8/],
    ['an integer map key', hex('a1 01 02'), 'body', /keys are text/],
    ['a simple value other than false/true/null/undefined', hex('f0'), 'body', /simple value 16/],
    ['a one-byte simple value', hex('f8 20'), 'body', /simple value 32/],
    [`nesting ${MAX_DEPTH} levels (the envelope is one)`, nested(MAX_DEPTH), 'body', /deeper than 64/],
    ['nesting 2,000 levels', nested(2000), 'body', /deeper than 64/],
    ['nesting 3,000 levels', nested(3000), 'body', /deeper than 64/],
  ];
  for (const [what, body, field, message] of cases) {
    it(`${what}: ENVELOPE_MALFORMED naming ${field}; readEnvelope keeps the envelope with body null`, () => {
      const bytes = envelopeWith(body);
      const e = caught(() => decodeEnvelope(bytes));
      expect(e.code).toBe('ENVELOPE_MALFORMED');
      expect(String(e.details.field).startsWith(field)).toBe(true);
      expect(e.message).toMatch(message);
      const r = readEnvelope(bytes);
      expect(r.env.id).toBe('id-1');
      expect(r.env.replyTo).toBe('ferry/v1/inbox/pi-1');
      expect(r.env.body).toBeNull();
      expect(r.bodyError?.code).toBe('ENVELOPE_MALFORMED');
    });
  }

  it(`nesting ${MAX_DEPTH - 1} levels below the envelope is fine`, () => {
    const env = decodeEnvelope(envelopeWith(nested(MAX_DEPTH - 1)));
    let d = 0;
    for (let v: unknown = env.body; Array.isArray(v); v = v[0]) d++;
    expect(d).toBe(MAX_DEPTH - 1);
  });
});

describe('the subset outside the body: the whole envelope is refused', () => {
  const cases: [string, Buffer, string][] = [
    ['an indefinite-length envelope map', Buffer.concat([hex('bf'), envelopeWith(hex('f6')).subarray(1), hex('ff')]), 'envelope'],
    ['a tagged envelope (55799)', Buffer.concat([hex('d9d9f7'), envelopeWith(hex('f6'))]), 'envelope'],
    ['a duplicate envelope key (two from)', envelopeWith(hex('f6'), [text('from'), text('evil')]), 'envelope.from'],
    ['invalid UTF-8 in from', Buffer.from(envelopeWith(hex('f6')).toString('hex').replace(text('from').toString('hex') + text('pi-1').toString('hex'), text('from').toString('hex') + '62c328'), 'hex'), 'envelope.from'],
    ['trailing bytes', Buffer.concat([envelopeWith(hex('f6')), hex('00')]), 'envelope'],
    ['a truncated envelope', envelopeWith(hex('f6')).subarray(0, 20), 'envelope'],
  ];
  for (const [what, bytes, field] of cases) {
    it(`${what}: ENVELOPE_MALFORMED naming ${field}, from readEnvelope too`, () => {
      const e = caught(() => readEnvelope(bytes));
      expect(e.code).toBe('ENVELOPE_MALFORMED');
      expect(String(e.details.field)).toBe(field);
    });
  }

  it('Ferry\'s own envelopes are in the subset (every body kind the encoder writes)', () => {
    const body = { s: 'é😀', n: -5, f: 1.5, big: 2 ** 40, b: new Uint8Array([1, 2]), a: [null, true, false, undefined], o: { x: {} } };
    const env = decodeEnvelope(encodeEnvelope({ v: 1, type: 't', id: 'i', from: 'f', ts: Date.now(), body }));
    const got = env.body as Record<string, unknown>;
    expect({ ...got, b: new Uint8Array(got.b as Uint8Array) }).toEqual(body); // bytes come back as a Buffer
  });
});

/** True if a decoded value is plain data of the subset: no cycles, no class instances but Uint8Array, depth within the limit. */
function plainSubset(v: unknown, depth: number, seen: Set<object>): boolean {
  if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return true;
  if (typeof v !== 'object' || depth > MAX_DEPTH || seen.has(v)) return false;
  if (v instanceof Uint8Array) return v.constructor === Uint8Array || v.constructor === Buffer;
  seen.add(v);
  const kids = Array.isArray(v) ? v : Object.getPrototypeOf(v) === Object.prototype ? Object.values(v) : null;
  const ok = kids !== null && kids.every((k) => plainSubset(k, depth + 1, seen));
  seen.delete(v);
  return ok;
}

describe('fuzz: the envelope decoder never crashes and never lets a value outside the subset through', () => {
  // Items of a grammar mixing valid and hostile CBOR.
  const item: fc.Arbitrary<Buffer> = fc.letrec<{ item: Buffer }>((tie) => ({
    item: fc.oneof(
      { depthSize: 'small' },
      fc.integer({ min: -1e6, max: 1e6 }).map((n) => (n >= 0 ? head(0, n) : head(1, -1 - n))),
      fc.constantFrom(hex('f4'), hex('f5'), hex('f6'), hex('f7'), hex('f0'), hex('f8 20'), hex('f9 3c00'), hex('fb 3ff8000000000000'), hex('ff'), hex('1c')),
      fc.string({ maxLength: 6 }).map(text),
      fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.concat([head(3, b.length), Buffer.from(b)])), // text that may not be UTF-8
      fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.concat([head(2, b.length), Buffer.from(b)])),
      fc.tuple(fc.constantFrom(2, 24, 28, 29, 64, 55799), tie('item')).map(([t, x]) => Buffer.concat([head(6, t), x])),
      fc.array(tie('item'), { maxLength: 3 }).map((xs) => Buffer.concat([head(4, xs.length), ...xs])),
      fc.array(tie('item'), { maxLength: 3 }).map((xs) => Buffer.concat([hex('9f'), ...xs, hex('ff')])),
      fc.array(fc.tuple(fc.constantFrom('a', 'b', 'a', 'c'), tie('item')), { maxLength: 3 }).map((es) => Buffer.concat([head(5, es.length), ...es.flatMap(([k, x]) => [text(k), x])])),
      fc.nat({ max: 3000 }).map(nested),
    ),
  })).item;
  /** A whole payload: an envelope with a fuzzed body, sometimes with a field replaced or the bytes cut or flipped. */
  const payload = fc.tuple(item, fc.nat({ max: 9 }), fc.nat(), fc.nat({ max: 255 })).map(([body, how, at, byte]) => {
    const b = envelopeWith(body);
    if (how === 0) return b.subarray(0, at % (b.length + 1));
    if (how === 1) {
      const c = Buffer.from(b);
      c[at % c.length] = byte;
      return c;
    }
    if (how === 2) return Buffer.concat([b, Buffer.from([byte])]);
    return b;
  });

  it('3,000 payloads: an envelope of plain subset data, or a typed ENVELOPE_* error; 3,000-deep input never overflows the stack', () => {
    const seen = { accepted: 0, refused: 0, bodyRefused: 0 };
    fc.assert(fc.property(payload, (bytes) => {
      let r: ReturnType<typeof readEnvelope>;
      try {
        r = readEnvelope(bytes);
      } catch (e) {
        if (!(e instanceof FerryError) || !e.code.startsWith('ENVELOPE_')) throw e;
        seen.refused++;
        return;
      }
      if (r.bodyError) {
        expect(r.env.body).toBeNull();
        seen.bodyRefused++;
      } else {
        seen.accepted++;
      }
      expect(plainSubset(r.env.body, 2, new Set())).toBe(true);
      // A value the scanner let through is also exactly what a re-check of its own encoding accepts.
      // (A body of undefined is a value on the wire; an envelope built in code spells none as null.)
      expect(() => checkCborSubset(encodeEnvelope({ ...r.env, body: r.env.body ?? null }), 'envelope')).not.toThrow();
    }), { numRuns: 3000, seed: 1207 });
    expect(seen.accepted).toBeGreaterThan(100);
    expect(seen.refused).toBeGreaterThan(100);
    expect(seen.bodyRefused).toBeGreaterThan(100);
  });
});
