/**
 * The man in the middle's search: a responder nonce that makes the initiator's 6-digit code equal
 * to a target code (the code the real responder shows). With the initiator's nonce known, each
 * try is one SHA-256, and one try in 10^6 matches, so about 10^6 tries are expected.
 *
 * Node's hash objects cost ~2.5 µs a call; this search hashes the fixed part of the transcript
 * once (the SHA-256 "midstate") and per try compresses only the last block, in plain JavaScript
 * (~1 µs), as a real attacker would. The framing is pairing-crypto's, checked against
 * `transcript` before the search, and the nonce found is checked with `transcript` and
 * `comparisonCode` themselves.
 */
import { randomBytes } from 'node:crypto';
import { comparisonCode, NONCE_BYTES, transcript, type PairingSide } from '../../agent/bridge/pairing-crypto.js';

/** SHA-256's round constants and initial hash value (FIPS 180-4 §4.2.2, §5.3.3). */
const K = Int32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);
const IV = Int32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
const W = new Int32Array(64);

/** One SHA-256 compression of the 64-byte block at `off` into `H` (FIPS 180-4 §6.2.2). */
function compress(H: Int32Array, m: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + 4 * i;
    W[i] = (m[j]! << 24) | (m[j + 1]! << 16) | (m[j + 2]! << 8) | m[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!;
    const y = W[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = H[0]!;
  let b = H[1]!;
  let c = H[2]!;
  let d = H[3]!;
  let e = H[4]!;
  let f = H[5]!;
  let g = H[6]!;
  let h = H[7]!;
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  H[0] = (H[0]! + a) | 0;
  H[1] = (H[1]! + b) | 0;
  H[2] = (H[2]! + c) | 0;
  H[3] = (H[3]! + d) | 0;
  H[4] = (H[4]! + e) | 0;
  H[5] = (H[5]! + f) | 0;
  H[6] = (H[6]! + g) | 0;
  H[7] = (H[7]! + h) | 0;
}

/** The fields as pairing-crypto frames them: each a 2-byte big-endian length, then its bytes. */
function framed(parts: Array<Buffer | string>): Buffer {
  return Buffer.concat(
    parts.flatMap((p) => {
      const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(b.length);
      return [len, b];
    }),
  );
}

const side = (s: PairingSide) => [Buffer.from(s.deviceId, 'utf8'), s.deviceKey, s.staticKey, s.ephemeral];

/**
 * The transcript with the responder nonce's last 4 bytes left open: `first(counter)` is the first
 * 32 bits of the transcript hash for the nonce `stem ‖ counter` (big-endian).
 */
class OpenTranscript {
  private readonly mid = Int32Array.from(IV);
  private readonly last: Uint8Array;
  private readonly at: number;
  private readonly H = new Int32Array(8);
  readonly stem = randomBytes(NONCE_BYTES - 4);

  constructor(pairingId: string, initiator: PairingSide, responder: PairingSide, initiatorNonce: Buffer) {
    const prefix = Buffer.concat([framed(['ferry-pair-v1', pairingId, ...side(initiator), ...side(responder), initiatorNonce]), framed([Buffer.alloc(NONCE_BYTES)]).subarray(0, 2), this.stem]);
    const whole = prefix.length - (prefix.length % 64);
    for (let o = 0; o < whole; o += 64) compress(this.mid, prefix, o);
    const total = prefix.length + 4;
    this.at = prefix.length - whole;
    // The rest, the counter, 0x80, zeros and the length in bits fill one or two last blocks.
    this.last = new Uint8Array(Math.ceil((this.at + 4 + 9) / 64) * 64);
    this.last.set(prefix.subarray(whole));
    this.last[this.at + 4] = 0x80;
    const view = new DataView(this.last.buffer);
    view.setUint32(this.last.length - 8, Math.floor((total * 8) / 2 ** 32));
    view.setUint32(this.last.length - 4, (total * 8) >>> 0);
  }

  nonce(counter: number): Buffer {
    const n = Buffer.alloc(NONCE_BYTES);
    this.stem.copy(n);
    n.writeUInt32BE(counter >>> 0, NONCE_BYTES - 4);
    return n;
  }

  first(counter: number): number {
    const m = this.last;
    m[this.at] = counter >>> 24;
    m[this.at + 1] = counter >>> 16;
    m[this.at + 2] = counter >>> 8;
    m[this.at + 3] = counter;
    this.H.set(this.mid);
    for (let o = 0; o < m.length; o += 64) compress(this.H, m, o);
    return this.H[0]! >>> 0;
  }
}

export interface NonceSearch {
  pairingId: string;
  initiator: PairingSide;
  /** The responder as the initiator sees it (the man in the middle's keys under the responder's id). */
  responder: PairingSide;
  initiatorNonce: Buffer;
  /** The code to make the initiator show. */
  target: string;
  maxTries: number;
}

/** Searches responder nonces; resolves with one that gives `target`, or none after `maxTries`. Yields to the event loop as it goes. */
export async function searchResponderNonce(s: NonceSearch): Promise<{ nonce?: Buffer; tries: number }> {
  const t = new OpenTranscript(s.pairingId, s.initiator, s.responder, s.initiatorNonce);
  const real = (n: Buffer) => transcript(s.pairingId, s.initiator, s.responder, s.initiatorNonce, n);
  for (const c of [0, 1, 0xfffffffe]) {
    if (t.first(c) !== real(t.nonce(c)).readUInt32BE(0)) throw new Error("the search's transcript framing no longer matches pairing-crypto's transcript()");
  }
  const target = Number(s.target);
  const max = Math.min(s.maxTries, 2 ** 32);
  for (let c = 0; c < max; c++) {
    if (t.first(c) % 1_000_000 === target) {
      const nonce = t.nonce(c);
      if (comparisonCode(real(nonce)) !== s.target) throw new Error('the nonce found does not give the target code with pairing-crypto');
      return { nonce, tries: c + 1 };
    }
    if (c % 250_000 === 249_999) await new Promise((r) => setImmediate(r)); // the broker runs in this process too
  }
  return { tries: max };
}
