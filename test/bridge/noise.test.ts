import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateX25519, x25519FromPrivate, type RawKeyPair } from '../../agent/bridge/keys.js';
import { CipherState, KKHandshake, MAX_MESSAGE_BYTES, PROTOCOL_NAME, SymmetricState } from '../../agent/bridge/noise.js';
import { caught } from '../helpers/ferry-error.js';
import { EMPTY, hex, noiseVectors, type NoiseVector } from './noise-vectors.js';

const fixture = { vectors: noiseVectors('noise-kk-vectors.json') };
type Vector = NoiseVector;

function pair(v: Vector): { init: KKHandshake; resp: KKHandshake } {
  const init = new KKHandshake({ initiator: true, prologue: hex(v.init_prologue), s: x25519FromPrivate(hex(v.init_static)), rs: hex(v.init_remote_static), e: x25519FromPrivate(hex(v.init_ephemeral)) });
  const resp = new KKHandshake({ initiator: false, prologue: hex(v.resp_prologue), s: x25519FromPrivate(hex(v.resp_static)), rs: hex(v.resp_remote_static), e: x25519FromPrivate(hex(v.resp_ephemeral!)) });
  return { init, resp };
}

describe('Noise_KK_25519_ChaChaPoly_SHA256 published test vectors', () => {
  it('the fixture holds only exact KK vectors, from more than one published file', () => {
    expect(fixture.vectors.length).toBeGreaterThanOrEqual(1);
    expect(new Set(fixture.vectors.map((v) => v.source)).size).toBeGreaterThanOrEqual(2);
    for (const v of fixture.vectors) expect(v.protocol_name).toBe(PROTOCOL_NAME);
  });

  for (const v of fixture.vectors) {
    it(`every handshake and transport message matches byte for byte (${v.source.split(' ')[0]})`, () => {
      // The vectors' keys are consistent with each other (sanity check on the fixture itself).
      expect(x25519FromPrivate(hex(v.resp_static)).publicKey.toString('hex')).toBe(v.init_remote_static);
      expect(x25519FromPrivate(hex(v.init_static)).publicKey.toString('hex')).toBe(v.resp_remote_static);

      const { init, resp } = pair(v);
      const [m0, m1, ...transport] = v.messages;
      expect(init.writeMessage(hex(m0!.payload)).toString('hex')).toBe(m0!.ciphertext);
      expect(resp.readMessage(hex(m0!.ciphertext)).toString('hex')).toBe(m0!.payload);
      expect(init.complete || resp.complete).toBe(false);
      expect(resp.writeMessage(hex(m1!.payload)).toString('hex')).toBe(m1!.ciphertext);
      expect(init.readMessage(hex(m1!.ciphertext)).toString('hex')).toBe(m1!.payload);
      expect(init.complete && resp.complete).toBe(true);

      const a = init.split();
      const b = resp.split();
      expect(a.handshakeHash.equals(b.handshakeHash)).toBe(true);
      if (v.handshake_hash !== undefined) expect(a.handshakeHash.toString('hex')).toBe(v.handshake_hash);

      // After the handshake the vectors keep alternating initiator, responder, ...; each direction counts from 0.
      const sent = [0n, 0n];
      transport.forEach((m, i) => {
        const fromInit = i % 2 === 0;
        const [tx, rx] = fromInit ? [a.send, b.recv] : [b.send, a.recv];
        const n = sent[fromInit ? 0 : 1]!;
        expect(tx.encrypt(n, EMPTY, hex(m.payload)).toString('hex')).toBe(m.ciphertext); // explicit nonce
        expect(tx.encryptWithAd(EMPTY, hex(m.payload)).toString('hex')).toBe(m.ciphertext); // implicit nonce
        expect(rx.decrypt(n, EMPTY, hex(m.ciphertext)).toString('hex')).toBe(m.payload);
        expect(rx.decryptWithAd(EMPTY, hex(m.ciphertext)).toString('hex')).toBe(m.payload);
        sent[fromInit ? 0 : 1] = n + 1n;
      });
      expect(transport.length).toBeGreaterThanOrEqual(2);
    });
  }
});

interface Fixed {
  si: RawKeyPair;
  sr: RawKeyPair;
  ei: RawKeyPair;
  er: RawKeyPair;
}

/** Key pairs made once: the bit-flip loops run hundreds of handshakes and key generation dominates. */
function fixedKeys(): Fixed {
  return { si: generateX25519(), sr: generateX25519(), ei: generateX25519(), er: generateX25519() };
}

function fresh(overrides: { initRs?: Buffer; respRs?: Buffer; respPrologue?: Buffer; keys?: Fixed } = {}): { init: KKHandshake; resp: KKHandshake; si: RawKeyPair; sr: RawKeyPair } {
  const k = overrides.keys;
  const si = k?.si ?? generateX25519();
  const sr = k?.sr ?? generateX25519();
  const prologue = Buffer.from('test prologue');
  const init = new KKHandshake({ initiator: true, prologue, s: si, rs: overrides.initRs ?? sr.publicKey, ...(k ? { e: k.ei } : {}) });
  const resp = new KKHandshake({ initiator: false, prologue: overrides.respPrologue ?? prologue, s: sr, rs: overrides.respRs ?? si.publicKey, ...(k ? { e: k.er } : {}) });
  return { init, resp, si, sr };
}

function expectHandshakeFailed(fn: () => unknown, pattern?: RegExp): string {
  const e = caught(fn);
  expect(e.code).toBe('BRIDGE_HANDSHAKE_FAILED');
  expect(e.details.field).toBe('handshake');
  if (pattern) expect(e.message).toMatch(pattern);
  return e.message;
}

describe('KKHandshake', () => {
  it('completes with fresh ephemerals and carries both payloads', () => {
    const { init, resp } = fresh();
    const m0 = init.writeMessage(Buffer.from('hello'));
    expect(resp.readMessage(m0).toString()).toBe('hello');
    const m1 = resp.writeMessage(EMPTY);
    expect(init.readMessage(m1).length).toBe(0);
    const a = init.split();
    const b = resp.split();
    expect(a.handshakeHash.equals(b.handshakeHash)).toBe(true);
    const ct = a.send.encryptWithAd(EMPTY, Buffer.from('ping'));
    expect(b.recv.decryptWithAd(EMPTY, ct).toString()).toBe('ping');
    const back = b.send.encrypt(0n, Buffer.from('ad'), Buffer.from('pong'));
    expect(a.recv.decrypt(0n, Buffer.from('ad'), back).toString()).toBe('pong');
    // The two directions have different keys.
    expect(caught(() => a.recv.decrypt(0n, EMPTY, ct)).code).toBe('BRIDGE_RECORD_REFUSED');
  });

  it('a wrong responder static key fails on the responder’s read, and the message names no key', () => {
    const other = generateX25519();
    const { init, resp, si, sr } = fresh({ initRs: other.publicKey });
    const m0 = init.writeMessage(Buffer.from('x'));
    const msg = expectHandshakeFailed(() => resp.readMessage(m0), /authentication/);
    for (const k of [si, sr, other]) {
      expect(msg).not.toContain(k.publicKey.toString('hex'));
      expect(msg).not.toContain(k.privateKey.toString('hex'));
    }
    // The failed handshake stays failed.
    expectHandshakeFailed(() => resp.writeMessage(EMPTY), /already failed/);
    expectHandshakeFailed(() => resp.split());
  });

  it('a responder expecting another initiator fails on its read', () => {
    const { init, resp } = fresh({ respRs: generateX25519().publicKey });
    expectHandshakeFailed(() => resp.readMessage(init.writeMessage(EMPTY)));
  });

  it('a different prologue fails', () => {
    const { init, resp } = fresh({ respPrologue: Buffer.from('another prologue') });
    expectHandshakeFailed(() => resp.readMessage(init.writeMessage(EMPTY)));
  });

  it('any flipped bit in the first handshake message fails', () => {
    // Fixed ephemerals make the message the same every time, so it is written once.
    const keys = fixedKeys();
    const good = fresh({ keys }).init.writeMessage(Buffer.from('payload'));
    for (let bit = 0; bit < good.length * 8; bit++) {
      const m0 = Buffer.from(good);
      m0[bit >> 3]! ^= 1 << (bit & 7);
      expectHandshakeFailed(() => fresh({ keys }).resp.readMessage(m0));
    }
    expect(fresh({ keys }).resp.readMessage(good).toString()).toBe('payload');
  });

  it('any flipped bit in the second handshake message fails', () => {
    const keys = fixedKeys();
    const { init: i0, resp: r0 } = fresh({ keys });
    const m0 = i0.writeMessage(EMPTY);
    r0.readMessage(m0);
    const good = r0.writeMessage(Buffer.from('answer'));
    for (let bit = 0; bit < good.length * 8; bit++) {
      const { init } = fresh({ keys });
      init.writeMessage(EMPTY);
      const m1 = Buffer.from(good);
      m1[bit >> 3]! ^= 1 << (bit & 7);
      expectHandshakeFailed(() => init.readMessage(m1));
      expect(init.complete).toBe(false);
    }
    const { init } = fresh({ keys });
    init.writeMessage(EMPTY);
    expect(init.readMessage(good).toString()).toBe('answer');
  });

  it('refuses out-of-turn calls', () => {
    const { init, resp } = fresh();
    expectHandshakeFailed(() => init.readMessage(randomBytes(64)), /out of turn/);
    expectHandshakeFailed(() => resp.writeMessage(EMPTY), /out of turn/);
    expectHandshakeFailed(() => init.split(), /not complete/);
    const m0 = init.writeMessage(EMPTY);
    expectHandshakeFailed(() => init.writeMessage(EMPTY), /out of turn/);
    resp.readMessage(m0);
    expectHandshakeFailed(() => resp.readMessage(m0), /out of turn/);
    const m1 = resp.writeMessage(EMPTY);
    init.readMessage(m1);
    expectHandshakeFailed(() => init.readMessage(m1), /complete/);
    expectHandshakeFailed(() => resp.writeMessage(EMPTY), /complete/);
    init.split();
    expectHandshakeFailed(() => init.split(), /already split/);
  });

  it('refuses messages that are too short, too long, or carry a low-order key', () => {
    expectHandshakeFailed(() => fresh().resp.readMessage(Buffer.alloc(47)), /too short/);
    expectHandshakeFailed(() => fresh().resp.readMessage(Buffer.alloc(MAX_MESSAGE_BYTES + 1)), /limit/);
    expectHandshakeFailed(() => fresh().resp.readMessage(Buffer.alloc(48)), /Diffie-Hellman/);
    expectHandshakeFailed(() => fresh().init.writeMessage(Buffer.alloc(MAX_MESSAGE_BYTES)), /limit/);
    // The largest payload that fits is accepted.
    const { init, resp } = fresh();
    const big = randomBytes(MAX_MESSAGE_BYTES - 48);
    const m0 = init.writeMessage(big);
    expect(m0.length).toBe(MAX_MESSAGE_BYTES);
    expect(resp.readMessage(m0).equals(big)).toBe(true);
  });
});

describe('CipherState and SymmetricState', () => {
  it('rekey is ENCRYPT(k, 2^64-1, empty, zeros)[0..32] (spec §4.2) and keeps the nonce', () => {
    const k = randomBytes(32);
    const c = new CipherState(k);
    c.setNonce(5n);
    c.rekey();
    expect(c.nonce).toBe(5n);
    const iv = Buffer.concat([Buffer.alloc(4), Buffer.alloc(8, 0xff)]);
    const enc = createCipheriv('chacha20-poly1305', k, iv, { authTagLength: 16 });
    const expected = Buffer.concat([enc.update(Buffer.alloc(32)), enc.final()]);
    const pt = Buffer.from('after rekey');
    expect(c.encrypt(7n, EMPTY, pt).equals(new CipherState(expected).encrypt(7n, EMPTY, pt))).toBe(true);
    expect(c.encrypt(7n, EMPTY, pt).equals(new CipherState(k).encrypt(7n, EMPTY, pt))).toBe(false);
  });

  it('a failed decryption refuses and does not advance the nonce', () => {
    const k = randomBytes(32);
    const tx = new CipherState(k);
    const rx = new CipherState(k);
    const ct = tx.encryptWithAd(Buffer.from('ad'), Buffer.from('data'));
    const bad = Buffer.from(ct);
    bad[0]! ^= 1;
    const e = caught(() => rx.decryptWithAd(Buffer.from('ad'), bad));
    expect(e.code).toBe('BRIDGE_RECORD_REFUSED');
    expect(rx.nonce).toBe(0n);
    expect(caught(() => rx.decryptWithAd(Buffer.from('other ad'), ct)).code).toBe('BRIDGE_RECORD_REFUSED');
    expect(caught(() => rx.decrypt(0n, EMPTY, Buffer.alloc(15))).code).toBe('BRIDGE_RECORD_REFUSED');
    expect(rx.decryptWithAd(Buffer.from('ad'), ct).toString()).toBe('data');
    expect(rx.nonce).toBe(1n);
  });

  it('refuses the reserved nonce 2^64-1 and a key of the wrong size', () => {
    const c = new CipherState(randomBytes(32));
    expect(caught(() => c.encrypt(0xffff_ffff_ffff_ffffn, EMPTY, EMPTY)).code).toBe('BRIDGE_CLOSED');
    expect(caught(() => new CipherState(randomBytes(16))).code).toBe('BAD_OPTION');
  });

  it('without a key, EncryptWithAd passes plaintext through (spec §5.1)', () => {
    const c = new CipherState();
    expect(c.hasKey()).toBe(false);
    expect(c.encryptWithAd(EMPTY, Buffer.from('abc')).toString()).toBe('abc');
    expect(caught(() => c.encrypt(0n, EMPTY, EMPTY)).code).toBe('BRIDGE_CLOSED');
  });

  it('a 32-byte protocol name is used as h unhashed', () => {
    expect(Buffer.byteLength(PROTOCOL_NAME)).toBe(32);
    expect(new SymmetricState(PROTOCOL_NAME).handshakeHash.toString('ascii')).toBe(PROTOCOL_NAME);
  });
});
