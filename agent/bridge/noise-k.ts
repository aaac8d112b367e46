import { FerryError } from '../../core/errors.js';
import { generateX25519, x25519, KEY_BYTES, type RawKeyPair } from './keys.js';
import { MAX_MESSAGE_BYTES, SymmetricState, TAG_BYTES, type CipherState } from './noise.js';

/**
 * Noise's one-way pattern K (revision 34, §7.4) for one suite: Noise_K_25519_ChaChaPoly_SHA256,
 * over the same CipherState / SymmetricState as the channel's KK (noise.ts). Offline bundles use
 * it: both devices know each other's static key from pairing, the sender writes one handshake
 * message and then transport messages under the first key of the split; the receiver never
 * answers. Checked against the published vectors (test/bridge/fixtures/noise-k-vectors.json).
 *
 *   -> s
 *   <- s
 *   ...
 *   -> e, es, ss
 *
 * One-way patterns have no forward secrecy against the recipient's static key (anyone who later
 * learns it can open the bundle), which is inherent to a file nobody can answer.
 */

export const K_PROTOCOL_NAME = 'Noise_K_25519_ChaChaPoly_SHA256';
/** The handshake message with an empty payload: e (32) and the payload's tag (16). */
export const K_MIN_MESSAGE_BYTES = KEY_BYTES + TAG_BYTES;

export interface KWriteOptions {
  /** Bound into the handshake hash: the reader must give the same bytes. */
  prologue: Buffer;
  /** The sender's static X25519 key pair. */
  s: RawKeyPair;
  /** The recipient's static X25519 public key. */
  rs: Buffer;
  /** The payload of the handshake message (encrypted). */
  payload: Buffer;
  /** A fixed ephemeral key pair, for test vectors only; otherwise a fresh one is made. */
  e?: RawKeyPair;
}

export interface KReadOptions {
  prologue: Buffer;
  /** The recipient's static key pair. */
  s: RawKeyPair;
  /** The sender's static public key. */
  rs: Buffer;
  message: Buffer;
}

function failed(message: string, cause?: unknown): FerryError {
  return new FerryError('BRIDGE_HANDSHAKE_FAILED', message, { field: 'handshake' }, cause === undefined ? undefined : { cause });
}

function start(prologue: Buffer, initiatorStatic: Buffer, responderStatic: Buffer): SymmetricState {
  const sym = new SymmetricState(K_PROTOCOL_NAME);
  sym.mixHash(prologue);
  // Pre-messages in pattern order: the initiator's static key, then the responder's.
  sym.mixHash(initiatorStatic);
  sym.mixHash(responderStatic);
  return sym;
}

function dh(privateKey: Buffer, publicKey: Buffer, token: string): Buffer {
  try {
    return x25519(privateKey, publicKey);
  } catch (err) {
    throw failed(`the ${token} Diffie-Hellman step failed: not a usable X25519 key`, err);
  }
}

/** The sender's side: the handshake message and the sending CipherState (initiator → responder). */
export function writeK(o: KWriteOptions): { message: Buffer; send: CipherState; handshakeHash: Buffer } {
  if (o.rs.length !== KEY_BYTES) throw new FerryError('BAD_OPTION', `the recipient's static key must be ${KEY_BYTES} bytes, got ${o.rs.length}`, { field: 'rs' });
  if (o.payload.length + K_MIN_MESSAGE_BYTES > MAX_MESSAGE_BYTES) throw failed(`a handshake payload of ${o.payload.length} bytes would exceed the ${MAX_MESSAGE_BYTES}-byte message limit`);
  const sym = start(o.prologue, o.s.publicKey, o.rs);
  const e = o.e ?? generateX25519();
  sym.mixHash(e.publicKey);
  sym.mixKey(dh(e.privateKey, o.rs, 'es'));
  sym.mixKey(dh(o.s.privateKey, o.rs, 'ss'));
  const message = Buffer.concat([e.publicKey, sym.encryptAndHash(o.payload)]);
  const [send] = sym.split();
  return { message, send, handshakeHash: sym.handshakeHash };
}

/** The recipient's side: the payload and the receiving CipherState; BRIDGE_HANDSHAKE_FAILED when it does not open. */
export function readK(o: KReadOptions): { payload: Buffer; recv: CipherState; handshakeHash: Buffer } {
  const m = o.message;
  if (m.length < K_MIN_MESSAGE_BYTES || m.length > MAX_MESSAGE_BYTES) throw failed(`the handshake message is ${m.length} bytes; it must be ${K_MIN_MESSAGE_BYTES}..${MAX_MESSAGE_BYTES}`);
  if (o.rs.length !== KEY_BYTES) throw new FerryError('BAD_OPTION', `the sender's static key must be ${KEY_BYTES} bytes, got ${o.rs.length}`, { field: 'rs' });
  const sym = start(o.prologue, o.rs, o.s.publicKey);
  const re = Buffer.from(m.subarray(0, KEY_BYTES));
  sym.mixHash(re);
  sym.mixKey(dh(o.s.privateKey, re, 'es'));
  sym.mixKey(dh(o.s.privateKey, o.rs, 'ss'));
  let payload: Buffer;
  try {
    payload = sym.decryptAndHash(m.subarray(KEY_BYTES));
  } catch (err) {
    // Another sender or recipient key, another prologue, or a modified message all land here.
    throw failed('the handshake message failed authentication (sealed with other keys or another prologue, or modified)', err);
  }
  const [recv] = sym.split();
  return { payload, recv, handshakeHash: sym.handshakeHash };
}
