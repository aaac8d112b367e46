import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { x25519 } from './keys.js';

/**
 * The cryptographic functions of pairing (DESIGN.md, "Pairing"; PROTOCOL.md §B.2), modelled on
 * Bluetooth LE Secure Connections' numeric comparison: f4 (the commitment) and g2 (the 6-digit
 * value), with HMAC-SHA-256 in place of AES-CMAC. The initiator commits; see DESIGN.md for why
 * the order of commit, response and reveal limits a man in the middle to one guess.
 */

/** Bytes of a pairing nonce (128 bits, as Bluetooth's Na/Nb). */
export const NONCE_BYTES = 16;

/** One side's public pairing material. */
export interface PairingSide {
  deviceId: string;
  /** Ed25519 device key, raw 32 bytes. */
  deviceKey: Buffer;
  /** X25519 static key (the Noise key), raw 32 bytes. */
  staticKey: Buffer;
  /** Fresh X25519 public key of this attempt, raw 32 bytes. */
  ephemeral: Buffer;
}

/** Length-prefixed concatenation, so no two different field lists hash alike. */
function framed(parts: Array<Buffer | string>): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    out.push(len, b);
  }
  return Buffer.concat(out);
}

function side(s: PairingSide): Buffer[] {
  return [Buffer.from(s.deviceId, 'utf8'), s.deviceKey, s.staticKey, s.ephemeral];
}

/**
 * The initiator's commitment to its nonce: HMAC-SHA-256 keyed with the nonce over everything
 * the initiator sends in its request (Bluetooth's f4 keys AES-CMAC with the nonce the same way).
 * Sent before the responder's nonce is known; opened by the reveal.
 */
export function commitment(initiator: PairingSide, pairingId: string, nonce: Buffer): Buffer {
  return createHmac('sha256', nonce).update(framed(['ferry-pair-commit-v1', pairingId, ...side(initiator)])).digest();
}

/** Checks a revealed nonce against the commitment, in constant time. */
export function opensCommitment(commit: Buffer, initiator: PairingSide, pairingId: string, nonce: Buffer): boolean {
  const expect = commitment(initiator, pairingId, nonce);
  return commit.length === expect.length && timingSafeEqual(commit, expect);
}

/**
 * The transcript hash: every public value of the attempt in a fixed order (initiator first).
 * The code and the confirmation keys derive from it, so a change to any of them changes both.
 */
export function transcript(pairingId: string, initiator: PairingSide, responder: PairingSide, initiatorNonce: Buffer, responderNonce: Buffer): Buffer {
  return createHash('sha256')
    .update(framed(['ferry-pair-v1', pairingId, ...side(initiator), ...side(responder), initiatorNonce, responderNonce]))
    .digest();
}

/** The 6-digit code both owners compare: the transcript's first 32 bits mod 10^6 (Bluetooth's g2 does the same). */
export function comparisonCode(transcriptHash: Buffer): string {
  return String(transcriptHash.readUInt32BE(0) % 1_000_000).padStart(6, '0');
}

/**
 * The confirmation MAC of one side: HMAC under a key from the attempt's ephemeral X25519 secret
 * (HKDF-SHA-256 salted with the transcript). It proves to the other side that the confirmation
 * comes from the holder of the ephemeral key it computed the code with, not from a bystander on
 * the broker. `role` keeps the two sides' MACs distinct (no reflection).
 */
export function confirmationMac(myEphemeralPrivate: Buffer, theirEphemeral: Buffer, transcriptHash: Buffer, role: 'initiator' | 'responder'): Buffer {
  const shared = x25519(myEphemeralPrivate, theirEphemeral);
  const key = Buffer.from(hkdfSync('sha256', shared, transcriptHash, 'ferry-pair-confirm-v1', 32));
  return createHmac('sha256', key).update(framed(['ferry-pair-confirmed', role])).digest();
}

export function macEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
