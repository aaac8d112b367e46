import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUNDLE_MAGIC, bundleLayout, MIN_BUNDLE_BYTES, openBundle, RECORD_DATA_BYTES, sealBundle, SIGNATURE_BYTES, type HeaderInput, type OpenOptions } from '../../agent/bridge/bundle-format.js';
import { decodeContent, encodeContent } from '../../agent/bridge/bundle-content.js';
import { codeHash } from '../../agent/runtime/app-upgrade.js';
import { ed25519Sign, generateEd25519, generateX25519, x25519FromPrivate } from '../../agent/bridge/keys.js';
import { K_PROTOCOL_NAME, readK, writeK } from '../../agent/bridge/noise-k.js';
import { caught } from '../helpers/ferry-error.js';
import { EMPTY, hex, noiseVectors, type NoiseVector } from '../bridge/noise-vectors.js';

/**
 * The bundle file format (agent/bridge/bundle-format.ts): Noise_K against its published vectors,
 * a round trip, each refusal with its code and field, and a fuzz of the reader: whatever the
 * bytes, it refuses with a typed error and never returns a payload that was not sealed.
 */

const fixture = { vectors: noiseVectors('noise-k-vectors.json') };
type Vector = NoiseVector;

describe('Noise_K_25519_ChaChaPoly_SHA256 published test vectors', () => {
  it('the fixture holds exact K vectors from two published files', () => {
    expect(new Set(fixture.vectors.map((v) => v.source)).size).toBe(2);
    for (const v of fixture.vectors) expect(v.protocol_name).toBe(K_PROTOCOL_NAME);
  });

  for (const v of fixture.vectors) {
    it(`the handshake and every transport message match byte for byte (${v.source.split(' ')[0]})`, () => {
      expect(x25519FromPrivate(hex(v.resp_static)).publicKey.toString('hex')).toBe(v.init_remote_static);
      expect(x25519FromPrivate(hex(v.init_static)).publicKey.toString('hex')).toBe(v.resp_remote_static);
      const [m0, ...transport] = v.messages;
      const w = writeK({ prologue: hex(v.init_prologue), s: x25519FromPrivate(hex(v.init_static)), rs: hex(v.init_remote_static), e: x25519FromPrivate(hex(v.init_ephemeral)), payload: hex(m0!.payload) });
      expect(w.message.toString('hex')).toBe(m0!.ciphertext);
      const r = readK({ prologue: hex(v.resp_prologue), s: x25519FromPrivate(hex(v.resp_static)), rs: hex(v.resp_remote_static), message: hex(m0!.ciphertext) });
      expect(r.payload.toString('hex')).toBe(m0!.payload);
      expect(r.handshakeHash.equals(w.handshakeHash)).toBe(true);
      if (v.handshake_hash !== undefined) expect(w.handshakeHash.toString('hex')).toBe(v.handshake_hash);
      // One-way: every later message goes initiator → responder under the split's first key.
      expect(transport.length).toBeGreaterThanOrEqual(1);
      for (const m of transport) {
        expect(w.send.encryptWithAd(EMPTY, hex(m.payload)).toString('hex')).toBe(m.ciphertext);
        expect(r.recv.decryptWithAd(EMPTY, hex(m.ciphertext)).toString('hex')).toBe(m.payload);
      }
    });
  }

  it('another prologue, sender key or recipient key fails the handshake', () => {
    const [s, r, x] = [generateX25519(), generateX25519(), generateX25519()];
    const w = writeK({ prologue: Buffer.from('p'), s, rs: r.publicKey, payload: Buffer.from('hi') });
    expect(readK({ prologue: Buffer.from('p'), s: r, rs: s.publicKey, message: w.message }).payload.toString()).toBe('hi');
    expect(caught(() => readK({ prologue: Buffer.from('q'), s: r, rs: s.publicKey, message: w.message })).code).toBe('BRIDGE_HANDSHAKE_FAILED');
    expect(caught(() => readK({ prologue: Buffer.from('p'), s: r, rs: x.publicKey, message: w.message })).code).toBe('BRIDGE_HANDSHAKE_FAILED');
    expect(caught(() => readK({ prologue: Buffer.from('p'), s: x, rs: s.publicKey, message: w.message })).code).toBe('BRIDGE_HANDSHAKE_FAILED');
    expect(caught(() => readK({ prologue: Buffer.from('p'), s: r, rs: s.publicKey, message: Buffer.alloc(47) })).code).toBe('BRIDGE_HANDSHAKE_FAILED');
  });
});

// ---- one origin, one recipient, made once (key generation dominates the fuzz otherwise) ----

const originEd = generateEd25519();
const originX = generateX25519();
const recipientX = generateX25519();
const strangerEd = generateEd25519();
const MAX = 64 * 1024 * 1024;

const headerInput = (over: Partial<HeaderInput> = {}): HeaderInput => ({
  id: `bundle-${'0123456789abcdef'.repeat(2)}`,
  origin: 'pi-1',
  recipient: 'phone-1',
  instance: 'keeper',
  app: 'keeper',
  appVersion: '1.0.0',
  code: '00112233aabbccdd',
  codeIncluded: true,
  path: 'lines',
  lineSize: 4096,
  wordBits: 64,
  heapBytes: 1234,
  createdAt: 1_700_000_000_000,
  ...over,
});

function seal(payload: Buffer, over: Partial<HeaderInput> = {}, sign = (d: Buffer) => ed25519Sign(originEd.privateKey, d), rs = recipientX.publicKey): Buffer {
  return sealBundle({ header: headerInput(over), payload, staticKey: originX, recipientStaticKey: rs, sign });
}

const opts: OpenOptions = {
  self: 'phone-1',
  staticKey: recipientX,
  originKeys: (o) => (o === 'pi-1' ? { deviceKey: originEd.publicKey, staticKey: originX.publicKey } : undefined),
  maxBytes: MAX,
};

/** Re-signs a changed body with the origin's real key: what a bug (or a compromised origin) could make, to reach the checks after the signature. */
function resign(withoutSignature: Buffer): Buffer {
  return Buffer.concat([withoutSignature, ed25519Sign(originEd.privateKey, withoutSignature)]);
}

function refused(file: Buffer, o: OpenOptions = opts): { code: string; field: unknown } {
  const e = caught(() => openBundle(file, o));
  return { code: e.code, field: e.details.field };
}

const small = Buffer.from('a small payload');
const big = randomBytes(RECORD_DATA_BYTES * 2 + 1000); // three data records and the END record

describe('sealBundle / openBundle', () => {
  it('round trips an empty, a small and a multi-record payload; the header reads back in the clear', () => {
    for (const p of [EMPTY, small, big]) {
      const file = seal(p);
      const { header, payload } = openBundle(file, opts);
      expect(payload.equals(p)).toBe(true);
      expect(header).toMatchObject({ ...headerInput(), payloadBytes: p.length, records: Math.ceil(p.length / RECORD_DATA_BYTES) + 1 });
      expect(bundleLayout(file, MAX).records).toHaveLength(header.records);
      expect(file.subarray(0, 8).equals(BUNDLE_MAGIC)).toBe(true);
      // The payload is nowhere in the file in the clear.
      if (p.length > 8) expect(file.includes(p.subarray(0, 16))).toBe(false);
    }
    // A bundle costs a fixed overhead plus 19 bytes per 64 KiB record.
    const overhead = seal(big).length - big.length;
    expect(overhead).toBeLessThan(700);
  });

  it('two seals of one payload differ (fresh ephemeral key), both open', () => {
    const a = seal(small);
    const b = seal(small);
    expect(a.equals(b)).toBe(false);
    expect(openBundle(b, opts).payload.equals(small)).toBe(true);
  });

  it('refuses a bundle for another device before any crypto (BUNDLE_NOT_FOR_US, header.recipient)', () => {
    expect(refused(seal(small, { recipient: 'tablet-9' }))).toEqual({ code: 'BUNDLE_NOT_FOR_US', field: 'header.recipient' });
  });

  it('refuses one sealed to another static key of this device (paired again) with BUNDLE_NOT_FOR_US, handshake', () => {
    expect(refused(seal(small, {}, undefined, generateX25519().publicKey))).toEqual({ code: 'BUNDLE_NOT_FOR_US', field: 'handshake' });
  });

  it('refuses an origin that is not paired (BRIDGE_NOT_PAIRED, header.origin)', () => {
    expect(refused(seal(small, { origin: 'stranger' }))).toEqual({ code: 'BRIDGE_NOT_PAIRED', field: 'header.origin' });
  });

  it('refuses a forged signature, and a changed header or body, with BUNDLE_FORGED before decrypting', () => {
    expect(refused(seal(small, {}, (d) => ed25519Sign(strangerEd.privateKey, d)))).toEqual({ code: 'BUNDLE_FORGED', field: 'signature' });
    const file = seal(small);
    // The header's instance name, changed to another valid name of the same length.
    const at = file.indexOf(Buffer.from('keeper'));
    const renamed = Buffer.from(file);
    renamed.write('sleepr', at, 'ascii');
    expect(refused(renamed)).toEqual({ code: 'BUNDLE_FORGED', field: 'signature' });
    const body = Buffer.from(file);
    body[body.length - SIGNATURE_BYTES - 3]! ^= 0x40;
    expect(refused(body)).toEqual({ code: 'BUNDLE_FORGED', field: 'signature' });
  });

  it('refuses what is not a bundle, another format, an oversized file, and each truncation class (BUNDLE_CORRUPT / BUNDLE_TOO_LARGE)', () => {
    const file = seal(big);
    const l = bundleLayout(file, MAX);
    expect(refused(Buffer.from('hello world, this is not a bundle at all'.repeat(5)))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'magic' });
    const v2 = Buffer.from(file);
    v2[8] = 2;
    expect(refused(v2)).toEqual({ code: 'BUNDLE_CORRUPT', field: 'format' });
    expect(refused(file, { ...opts, maxBytes: file.length - 1 })).toEqual({ code: 'BUNDLE_TOO_LARGE', field: 'file.length' });
    // Cut inside the fixed part, the header, the handshake, a record, between records, the signature.
    for (const n of [0, 5, 10, MIN_BUNDLE_BYTES - 1]) expect(refused(file.subarray(0, n))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'file.length' });
    expect(refused(file.subarray(0, l.prologueEnd - 1))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'headerLength' });
    for (const n of [l.handshake.start + 10, l.records[0]!.start + 5, l.records[1]!.start - 2, l.records[1]!.start, l.records.at(-1)!.end, file.length - 1]) {
      expect(refused(file.subarray(0, n)).code, `cut at ${n}`).toMatch(/^BUNDLE_(CORRUPT|FORGED)$/);
    }
  });

  it('a validly signed bundle with its END record cut, records swapped, repeated or retyped is BUNDLE_CORRUPT', () => {
    const file = seal(big);
    const l = bundleLayout(file, MAX);
    const parts = (order: number[]) => {
      const recs = order.map((i) => file.subarray(l.records[i]!.start - 2, l.records[i]!.end));
      return Buffer.concat([file.subarray(0, l.handshake.end), ...recs]);
    };
    const n = l.records.length;
    // The header says 4 records: with 3 the layout refuses; with the header's count kept the tags do.
    expect(refused(resign(parts([0, 1, 2])))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'records' });
    expect(refused(resign(parts([1, 0, 2, 3])))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'records[0]' });
    expect(refused(resign(parts([0, 0, 2, 3])))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'records[1]' });
    expect(refused(resign(parts([0, 1, 2, 3, 3])))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'records[4]' });
    expect(n).toBe(4);
    // A record whose ciphertext changed fails its tag.
    const flipped = Buffer.from(file.subarray(0, l.signatureAt));
    flipped[l.records[2]!.start + 100]! ^= 1;
    expect(refused(resign(flipped))).toEqual({ code: 'BUNDLE_CORRUPT', field: 'records[2]' });
  });

  it('a handshake message from another bundle (spliced, re-signed) does not open', () => {
    const a = seal(small);
    const b = seal(small);
    const la = bundleLayout(a, MAX);
    const lb = bundleLayout(b, MAX);
    const spliced = Buffer.concat([a.subarray(0, la.handshake.start), b.subarray(lb.handshake.start, lb.handshake.end), a.subarray(la.handshake.end, la.signatureAt)]);
    expect(refused(resign(spliced)).code).toBe('BUNDLE_CORRUPT');
  });
});

describe('bundle content', () => {
  const source = 'export default {}';
  const h = { ...headerInput({ code: codeHash(source), lineSize: 64, heapBytes: 128 }), payloadBytes: 0, records: 1 };
  const good = { version: 3, maxLines: 100, meta: Buffer.alloc(8), lines: [[1, Buffer.alloc(16), Buffer.alloc(64)], [2, Buffer.alloc(16), Buffer.alloc(64)]] as Array<[number, Buffer, Buffer]>, code: source, leases: [{ type: 'display', provider: 'pi' }] };
  const field = (c: unknown, hh = h) => {
    const e = caught(() => decodeContent(encodeContent(c as never), hh));
    expect(e.code).toBe('BUNDLE_CORRUPT');
    return e.details.field;
  };

  it('round trips, and refuses each malformed field naming it', () => {
    expect(decodeContent(encodeContent(good), h).lines).toHaveLength(2);
    expect(field({ ...good, version: 0 })).toBe('payload.version');
    expect(field({ ...good, code: `${source} ` })).toBe('payload.code');
    expect(field(good, { ...h, codeIncluded: false })).toBe('payload.code');
    expect(field({ ...good, lines: [[1, Buffer.alloc(16), Buffer.alloc(63)]] })).toBe('payload.lines[0]');
    expect(field({ ...good, lines: good.lines.slice(0, 1) })).toBe('header.heapBytes');
    expect(field({ ...good, leases: [{ type: 1 }] })).toBe('payload.leases');
    expect(field({ ...good, meta: 'x' })).toBe('payload.meta');
    expect(field(good, { ...h, path: 'objects' })).toBe('payload.image');
    const e = caught(() => decodeContent(Buffer.from([0xff, 0xff]), h));
    expect(e.details.field).toBe('payload');
  });
});

describe('bundle reader fuzz', () => {
  const file = seal(big);
  const smallFile = seal(small);
  const CODES = /^(BUNDLE_CORRUPT|BUNDLE_FORGED|BUNDLE_NOT_FOR_US|BUNDLE_TOO_LARGE|BRIDGE_NOT_PAIRED)$/;
  /** Opens or refuses: it must refuse with a typed bundle code (a change that opened would be a broken seal). */
  const mustRefuse = (b: Buffer) => {
    const e = caught(() => openBundle(b, opts));
    expect(e.code).toMatch(CODES);
    expect(typeof e.details.field).toBe('string');
  };

  it('every bit flip anywhere is refused with a code (bits over the whole small file, random ones over a large one)', () => {
    for (let bit = 0; bit < smallFile.length * 8; bit++) {
      const b = Buffer.from(smallFile);
      b[bit >> 3]! ^= 1 << (bit & 7);
      mustRefuse(b);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: file.length * 8 - 1 }), (bit) => {
        const b = Buffer.from(file);
        b[bit >> 3]! ^= 1 << (bit & 7);
        mustRefuse(b);
      }),
      { numRuns: 200 },
    );
  });

  it('every truncation of the small file, and random ones of the large, are refused', () => {
    for (let n = 0; n < smallFile.length; n++) mustRefuse(smallFile.subarray(0, n));
    fc.assert(fc.property(fc.integer({ min: 0, max: file.length - 1 }), (n) => mustRefuse(file.subarray(0, n))), { numRuns: 100 });
  });

  it('random bytes, and random bytes behind a real prologue, are refused', () => {
    const l = bundleLayout(smallFile, MAX);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2000 }), fc.boolean(), (bytes, withPrologue) => {
        mustRefuse(withPrologue ? Buffer.concat([smallFile.subarray(0, l.prologueEnd), bytes]) : Buffer.from(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('spliced files (one bundle’s prologue or handshake with another’s rest, any cut point) are refused', () => {
    const other = seal(Buffer.from('another payload of other length'), { id: `bundle-${'f'.repeat(32)}` });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: smallFile.length - 1 }), fc.integer({ min: 1, max: other.length - 1 }), (i, j) => {
        const b = Buffer.concat([smallFile.subarray(0, i), other.subarray(j)]);
        if (b.equals(smallFile) || b.equals(other)) return;
        mustRefuse(b);
      }),
      { numRuns: 300 },
    );
  });

  it('random overwrites of a few bytes are refused, and the genuine file still opens', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: smallFile.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const b = Buffer.from(smallFile);
        for (const [i, v] of edits) b[i] = v;
        if (b.equals(smallFile)) return;
        mustRefuse(b);
      }),
      { numRuns: 300 },
    );
    expect(openBundle(smallFile, opts).payload.equals(small)).toBe(true);
  });
});
