import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { encode as cborEncode } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../core/errors.js';
import { generateX25519 } from '../../agent/bridge/keys.js';
import { CipherState, KKHandshake } from '../../agent/bridge/noise.js';
import {
  bridgePrologue,
  decodeFrame,
  decodeRefusal,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeHandshakeFrame,
  encodeRefusal,
  FrameKind,
  newSessionId,
  RecordOpener,
  RecordSealer,
  REKEY_INTERVAL,
} from '../../agent/bridge/records.js';
import { caught } from '../helpers/ferry-error.js';

const REFUSED = ['BRIDGE_RECORD_REFUSED', 'BRIDGE_REPLAY', 'BRIDGE_FRAME_MALFORMED'];

function channel(options: { rekeyInterval?: number; maxFrameBytes?: number } = {}): { sealer: RecordSealer; opener: RecordOpener; key: Buffer; session: Buffer } {
  const key = randomBytes(32);
  const session = newSessionId();
  return {
    sealer: new RecordSealer(new CipherState(key), session, 'pi-a', options),
    opener: new RecordOpener(new CipherState(key), session, { peer: 'pi-a', ...options }),
    key,
    session,
  };
}

function expectRefused(fn: () => unknown, code?: string, field?: string): FerryError {
  const e = caught(fn);
  if (code === undefined) expect(REFUSED).toContain(e.code);
  else expect(e.code).toBe(code);
  if (field !== undefined) expect(e.details.field).toBe(field);
  return e;
}

function flip(buf: Buffer, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

describe('sealed records', () => {
  it('round trip over a real KK handshake, both directions', () => {
    const [si, sr] = [generateX25519(), generateX25519()];
    const session = newSessionId();
    const prologue = bridgePrologue('pi-a', 'pi-b', session);
    const init = new KKHandshake({ initiator: true, prologue, s: si, rs: sr.publicKey });
    const resp = new KKHandshake({ initiator: false, prologue, s: sr, rs: si.publicKey });
    const hs1 = decodeFrame(encodeHandshakeFrame(FrameKind.Hs1, session, 'pi-a', init.writeMessage(Buffer.alloc(0))));
    expect(hs1.kind).toBe(FrameKind.Hs1);
    resp.readMessage(hs1.body);
    const hs2 = decodeFrame(encodeHandshakeFrame(FrameKind.Hs2, hs1.session, 'pi-b', resp.writeMessage(Buffer.alloc(0))));
    init.readMessage(hs2.body);
    const a = init.split();
    const b = resp.split();
    const aSeal = new RecordSealer(a.send, session, 'pi-a');
    const bOpen = new RecordOpener(b.recv, session, { peer: 'pi-a' });
    const bSeal = new RecordSealer(b.send, session, 'pi-b');
    const aOpen = new RecordOpener(a.recv, session, { peer: 'pi-b' });
    for (const text of ['', 'one', 'two', 'x'.repeat(10_000)]) {
      expect(bOpen.open(aSeal.seal(Buffer.from(text))).toString()).toBe(text);
      expect(aOpen.open(decodeFrame(bSeal.seal(Buffer.from(text)))).toString()).toBe(text);
    }
    expect(aSeal.counter).toBe(4n);
    expect(bOpen.counter).toBe(4n);
    // A direction's frames do not open in the other direction.
    expectRefused(() => aOpen.open(aSeal.seal(Buffer.from('mine'))), 'BRIDGE_RECORD_REFUSED');
  });

  it('a sealed frame has the documented layout', () => {
    const { sealer, session } = channel();
    const f = sealer.seal(Buffer.from('hi'));
    expect(f[0]).toBe(1);
    expect(f[1]).toBe(3);
    expect(f.subarray(2, 10).equals(session)).toBe(true);
    expect(f[10]).toBe(4);
    expect(f.subarray(11, 15).toString()).toBe('pi-a');
    expect(f.readBigUInt64BE(15)).toBe(0n);
    expect(f.length).toBe(15 + 8 + 2 + 16);
    const d = decodeFrame(f);
    expect(d).toMatchObject({ kind: FrameKind.Record, from: 'pi-a', headerBytes: 15 });
    expect(d.body.length).toBe(8 + 2 + 16);
  });

  it('any single bit flip is refused, never opened, and the untouched frame still opens', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 9 }), fc.nat(), (plain, before, bitSeed) => {
        // Interval 4 puts some flips on a rekey counter, where a refused record must not move the key.
        const { sealer, opener } = channel({ rekeyInterval: 4 });
        for (let i = 0; i < before; i++) opener.open(sealer.seal(Buffer.from([i])));
        const frame = sealer.seal(Buffer.from(plain));
        const bad = flip(frame, bitSeed % (frame.length * 8));
        expectRefused(() => opener.open(bad));
        expect(opener.counter).toBe(BigInt(before));
        expect(opener.open(frame).equals(Buffer.from(plain))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('every bit flip of one frame is refused (exhaustive)', () => {
    const { sealer, opener } = channel();
    const frame = sealer.seal(Buffer.from('exhaustive'));
    for (let bit = 0; bit < frame.length * 8; bit++) expectRefused(() => opener.open(flip(frame, bit)));
    expect(opener.open(frame).toString()).toBe('exhaustive');
  });

  it('truncation at every length is refused', () => {
    const { sealer, opener } = channel();
    const frame = sealer.seal(Buffer.from('truncate me'));
    for (let n = 0; n < frame.length; n++) expectRefused(() => opener.open(frame.subarray(0, n)));
    expect(opener.open(frame).toString()).toBe('truncate me');
  });

  it('a replayed record is refused', () => {
    const { sealer, opener } = channel();
    const f0 = sealer.seal(Buffer.from('0'));
    const f1 = sealer.seal(Buffer.from('1'));
    opener.open(f0);
    expect(expectRefused(() => opener.open(f0), 'BRIDGE_REPLAY', 'record.counter').message).toMatch(/replayed/);
    opener.open(f1);
    expect(expectRefused(() => opener.open(f0), 'BRIDGE_REPLAY').message).toMatch(/replayed/);
    expect(expectRefused(() => opener.open(f1), 'BRIDGE_REPLAY').message).toMatch(/replayed/);
  });

  it('a genuine record past the next counter says records were lost; a forged one is out of order; neither changes the state', () => {
    const { sealer, opener } = channel();
    const [f0, f1, f2] = ['0', '1', '2'].map((t) => sealer.seal(Buffer.from(t)));
    expect(expectRefused(() => opener.open(f1!), 'BRIDGE_RECORD_LOST', 'record.counter').message).toMatch(/records 0\.\.0 .*lost/);
    expect(expectRefused(() => opener.open(f2!), 'BRIDGE_RECORD_LOST').message).toMatch(/records 0\.\.1 /);
    const forged = Buffer.from(f2!);
    forged[forged.length - 1]! ^= 1;
    expect(expectRefused(() => opener.open(forged), 'BRIDGE_REPLAY').message).toMatch(/out of order/);
    expect(opener.open(f0!).toString()).toBe('0');
    expect(opener.open(f1!).toString()).toBe('1');
    expect(opener.open(f2!).toString()).toBe('2');
  });

  it('a lost stretch across rekey boundaries is still told from a forgery; beyond one interval ahead it is not tried', () => {
    for (let next = 0; next <= 9; next++) {
      for (let ahead = 1; ahead <= 5; ahead++) {
        const { sealer, opener } = channel({ rekeyInterval: 4 });
        const frames = Array.from({ length: next + ahead + 1 }, (_, i) => sealer.seal(Buffer.from(String(i))));
        for (let i = 0; i < next; i++) opener.open(frames[i]!);
        const code = ahead <= 4 ? 'BRIDGE_RECORD_LOST' : 'BRIDGE_REPLAY';
        expect(expectRefused(() => opener.open(frames[next + ahead]!), code).code, `next ${next}, ahead ${ahead}`).toBe(code);
        expect(opener.open(frames[next]!).toString()).toBe(String(next));
      }
    }
  });

  it('frames of another session, key or sender are refused', () => {
    const { opener, key, session } = channel();
    const otherSession = new RecordSealer(new CipherState(key), newSessionId(), 'pi-a');
    expectRefused(() => opener.open(otherSession.seal(Buffer.from('x'))), 'BRIDGE_RECORD_REFUSED', 'frame.session');
    const otherKey = new RecordSealer(new CipherState(randomBytes(32)), session, 'pi-a');
    expectRefused(() => opener.open(otherKey.seal(Buffer.from('x'))), 'BRIDGE_RECORD_REFUSED', 'record');
    const otherSender = new RecordSealer(new CipherState(key), session, 'pi-z');
    expectRefused(() => opener.open(otherSender.seal(Buffer.from('x'))), 'BRIDGE_RECORD_REFUSED', 'frame.from');
    // Without an expected peer, the sender id still cannot be changed: it is in the associated data.
    const lax = new RecordOpener(new CipherState(key), session);
    const forged = new RecordSealer(new CipherState(key), session, 'pi-z').seal(Buffer.from('x'));
    const honest = new RecordSealer(new CipherState(key), session, 'pi-a').seal(Buffer.from('x'));
    expectRefused(() => lax.open(Buffer.concat([honest.subarray(0, 11), Buffer.from('pi-z'), honest.subarray(15)])), 'BRIDGE_RECORD_REFUSED', 'record');
    expect(lax.open(forged).toString()).toBe('x');
    expect(opener.counter).toBe(0n);
  });

  it('rekeys every interval on both sides in step, and the old key stops working', () => {
    const interval = 16;
    const { sealer, opener, key, session } = channel({ rekeyInterval: interval });
    // A sealer that never rekeys: its records from counter `interval` on are under the old key.
    const stale = new RecordSealer(new CipherState(key), session, 'pi-a', { rekeyInterval: 2 ** 40 });
    for (let i = 0; i < interval; i++) {
      const f = sealer.seal(Buffer.from(`r${i}`));
      expect(stale.seal(Buffer.from(`r${i}`)).equals(f)).toBe(true); // same key before the first rekey
      expect(opener.open(f).toString()).toBe(`r${i}`);
    }
    const old = stale.seal(Buffer.from('r16'));
    const fresh = sealer.seal(Buffer.from('r16'));
    expect(old.equals(fresh)).toBe(false);
    expectRefused(() => opener.open(old), 'BRIDGE_RECORD_REFUSED');
    expect(opener.counter).toBe(BigInt(interval));
    expect(opener.open(fresh).toString()).toBe('r16');
    // The new key is Noise's Rekey() of the old one.
    const rekeyed = new CipherState(key);
    rekeyed.rekey();
    expect(rekeyed.decrypt(16n, fresh.subarray(0, 23), fresh.subarray(23)).toString()).toBe('r16');
    for (let i = interval + 1; i < interval * 5 + 3; i++) expect(opener.open(sealer.seal(Buffer.from(`r${i}`))).toString()).toBe(`r${i}`);
  });

  it('with the default interval, both sides stay in step past 65,536 records', () => {
    expect(REKEY_INTERVAL).toBe(65_536);
    const { sealer, opener, key } = channel();
    const plain = Buffer.from('p');
    for (let i = 0; i < REKEY_INTERVAL; i++) opener.open(sealer.seal(plain));
    const stale = new CipherState(key);
    for (let i = 0; i < 3; i++) {
      const f = sealer.seal(plain);
      expect(f.readBigUInt64BE(15)).toBe(BigInt(REKEY_INTERVAL + i));
      // The same record sealed under the never-rekeyed key: refused, and the real one still opens.
      const header = f.subarray(0, 23);
      expectRefused(() => opener.open(Buffer.concat([header, stale.encrypt(BigInt(REKEY_INTERVAL + i), header, plain)])), 'BRIDGE_RECORD_REFUSED');
      expect(opener.open(f).equals(plain)).toBe(true);
    }
  }, 30_000);

  it('refuses oversized frames, on both sides', () => {
    const { sealer, opener } = channel({ maxFrameBytes: 200 });
    const tooBig = Buffer.alloc(200 - 15 - 8 - 16 + 1);
    const e = caught(() => sealer.seal(tooBig));
    expect(e.code).toBe('MESSAGE_TOO_LARGE');
    expect(sealer.counter).toBe(0n);
    const fits = sealer.seal(tooBig.subarray(1));
    expect(fits.length).toBe(200);
    expect(opener.open(fits).length).toBe(tooBig.length - 1);
    const big = channel();
    expectRefused(() => opener.open(big.sealer.seal(tooBig)), 'BRIDGE_FRAME_MALFORMED', 'frame.length');
    expectRefused(() => decodeFrame(Buffer.alloc(DEFAULT_MAX_FRAME_BYTES + 1, 1)), 'BRIDGE_FRAME_MALFORMED', 'frame.length');
  });

  it('refuses every malformed header field, naming it', () => {
    const session = newSessionId();
    const good = encodeFrame({ kind: FrameKind.Record, session, from: 'pi-a' }, Buffer.alloc(24));
    const bad = (edit: (b: Buffer) => Buffer | void, field: string): void => {
      const b = Buffer.from(good);
      expectRefused(() => decodeFrame(edit(b) ?? b), 'BRIDGE_FRAME_MALFORMED', field);
    };
    expect(decodeFrame(good).from).toBe('pi-a');
    bad((b) => void (b[0] = 0), 'frame.version');
    bad((b) => void (b[0] = 2), 'frame.version');
    bad((b) => void (b[1] = 0), 'frame.kind');
    bad((b) => void (b[1] = 5), 'frame.kind');
    bad((b) => void (b[10] = 0), 'frame.from');
    bad((b) => void (b[10] = 65), 'frame.from');
    bad((b) => void (b[11] = 0x2f), 'frame.from'); // '/': not a topic-safe id
    bad((b) => void (b[11] = 0x2d), 'frame.from'); // '-' may not lead
    bad((b) => void (b[12] = 0xe9), 'frame.from'); // not ASCII
    bad((b) => void (b[12] = 0), 'frame.from');
    bad((b) => b.subarray(0, 11), 'frame.length');
    bad((b) => b.subarray(0, 13), 'frame.length'); // ends inside the sender id
    bad((b) => b.subarray(0, 15 + 23), 'frame.length'); // a record needs a counter and a tag
    bad((b) => Buffer.concat([b.subarray(0, 10), Buffer.from([60]), b.subarray(11)]), 'frame.length');
    expectRefused(() => decodeFrame(encodeFrame({ kind: FrameKind.Hs1, session, from: 'pi-a' }, Buffer.alloc(0))), 'BRIDGE_FRAME_MALFORMED', 'frame.length');
    const { opener } = channel();
    expectRefused(() => opener.open(encodeFrame({ kind: FrameKind.Hs2, session, from: 'pi-a' }, Buffer.alloc(48))), 'BRIDGE_FRAME_MALFORMED', 'frame.kind');
  });

  it('handshake frames round trip with any valid ids (property)', () => {
    const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/);
    fc.assert(
      fc.property(id, fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.constantFrom(FrameKind.Hs1, FrameKind.Hs2), (from, msg, kind) => {
        const session = newSessionId();
        const d = decodeFrame(encodeHandshakeFrame(kind, session, from, Buffer.from(msg)));
        expect(d).toMatchObject({ kind, from, headerBytes: 11 + from.length });
        expect(d.session.equals(session)).toBe(true);
        expect(d.body.equals(Buffer.from(msg))).toBe(true);
      }),
    );
  });

  it('refuses bad arguments when encoding', () => {
    expect(caught(() => encodeFrame({ kind: FrameKind.Hs1, session: Buffer.alloc(7), from: 'pi-a' }, Buffer.alloc(1))).details.field).toBe('session');
    expect(caught(() => encodeFrame({ kind: FrameKind.Hs1, session: newSessionId(), from: 'a/b' }, Buffer.alloc(1))).details.field).toBe('from');
    expect(caught(() => encodeFrame({ kind: 9 as FrameKind, session: newSessionId(), from: 'a' }, Buffer.alloc(1))).details.field).toBe('kind');
    expect(caught(() => new RecordSealer(new CipherState(randomBytes(32)), newSessionId(), 'a', { rekeyInterval: 0 })).code).toBe('BAD_OPTION');
  });
});

describe('refusals and the prologue', () => {
  it('round trip a refusal', () => {
    const session = newSessionId();
    const d = decodeFrame(encodeRefusal(session, 'pi-b', 'BRIDGE_NOT_PAIRED', 'not paired with pi-a'));
    expect(d.kind).toBe(FrameKind.Refusal);
    expect(decodeRefusal(d.body)).toEqual({ code: 'BRIDGE_NOT_PAIRED', message: 'not paired with pi-a' });
    const long = decodeRefusal(decodeFrame(encodeRefusal(session, 'pi-b', 'C'.repeat(100), 'm'.repeat(5000))).body);
    expect(long.code.length).toBe(64);
    expect(long.message.length).toBe(1024);
  });

  it('checks the types of a refusal', () => {
    const bad = (body: Buffer, field: string): void => void expectRefused(() => decodeRefusal(body), 'BRIDGE_FRAME_MALFORMED', field);
    bad(Buffer.from([0xff, 0x00]), 'refusal');
    bad(Buffer.from(cborEncode(['BRIDGE_REPLAY', 'x'])), 'refusal');
    bad(Buffer.from(cborEncode('BRIDGE_REPLAY')), 'refusal');
    bad(Buffer.from(cborEncode({ code: 7, message: 'x' })), 'refusal.code');
    bad(Buffer.from(cborEncode({ code: '', message: 'x' })), 'refusal.code');
    bad(Buffer.from(cborEncode({ code: 'X', message: null })), 'refusal.message');
    bad(Buffer.from(cborEncode({ code: 'X' })), 'refusal.message');
    bad(Buffer.from(cborEncode({ code: 'X', message: 'm'.repeat(1025) })), 'refusal.message');
  });

  it('the prologue is label, ids and session joined by zero bytes', () => {
    const session = Buffer.from('0102030405060708', 'hex');
    expect(bridgePrologue('pi-a', 'pi-b', session).toString('hex')).toBe(Buffer.from('ferry-bridge-v1\0pi-a\0pi-b\0').toString('hex') + '0102030405060708');
    expect(caught(() => bridgePrologue('pi-a', 'pi/b', session)).details.field).toBe('responderId');
    expect(caught(() => bridgePrologue('pi-a', 'pi-b', Buffer.alloc(9))).details.field).toBe('session');
  });
});
