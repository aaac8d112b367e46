import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import { generateX25519, x25519, KEY_BYTES, type RawKeyPair } from './keys.js';

/**
 * The Noise Protocol Framework (revision 34), for the one protocol the bridge speaks:
 * Noise_KK_25519_ChaChaPoly_SHA256. Both sides know each other's static key from pairing, so KK
 * gives mutual authentication and forward secrecy in one round trip. Only node:crypto primitives
 * are used; the state machine follows the spec's CipherState / SymmetricState / HandshakeState
 * so it can be checked against it line by line (and against the published test vectors).
 */

export const PROTOCOL_NAME = 'Noise_KK_25519_ChaChaPoly_SHA256';
/** Noise's limit on a handshake message, bytes (spec §3). */
export const MAX_MESSAGE_BYTES = 65_535;
export const TAG_BYTES = 16;
const HASH_BYTES = 32;
/** 2^64 - 1: reserved by the spec for rekey, never a message nonce. */
const MAX_NONCE = 0xffff_ffff_ffff_ffffn;
const EMPTY = Buffer.alloc(0);

function nonceBytes(n: bigint): Buffer {
  // ChaChaPoly nonce: 32 bits of zeros, then n as 64-bit little-endian (spec §12.3).
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(n, 4);
  return iv;
}

function aeadEncrypt(k: Buffer, n: bigint, ad: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', k, nonceBytes(n), { authTagLength: TAG_BYTES });
  c.setAAD(ad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

/**
 * ENCRYPT of the concatenation of `parts` without building it: the cipher is a stream, so
 * update() over each part gives the same bytes. Returns the ciphertext parts and the tag.
 */
function aeadEncryptParts(k: Buffer, n: bigint, ad: Buffer, parts: readonly Buffer[]): Buffer[] {
  const c = createCipheriv('chacha20-poly1305', k, nonceBytes(n), { authTagLength: TAG_BYTES });
  c.setAAD(ad, { plaintextLength: parts.reduce((sum, p) => sum + p.length, 0) });
  const out = parts.map((p) => c.update(p));
  c.final();
  out.push(c.getAuthTag());
  return out;
}

/** Returns null on authentication failure, so callers choose the error code. */
function aeadDecrypt(k: Buffer, n: bigint, ad: Buffer, ciphertext: Buffer): Buffer | null {
  if (ciphertext.length < TAG_BYTES) return null;
  const d = createDecipheriv('chacha20-poly1305', k, nonceBytes(n), { authTagLength: TAG_BYTES });
  d.setAAD(ad, { plaintextLength: ciphertext.length - TAG_BYTES });
  d.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
  const body = d.update(ciphertext.subarray(0, ciphertext.length - TAG_BYTES));
  try {
    d.final();
  } catch {
    return null;
  }
  return body;
}

function checkNonce(n: bigint): void {
  if (n < 0n || n >= MAX_NONCE) {
    // Not reachable by counting records; a nonce may never be reused, so the channel must be rebuilt.
    throw new FerryError('BRIDGE_CLOSED', `nonce ${n} is outside 0..2^64-2; the channel must be re-established`, { field: 'nonce' });
  }
}

/**
 * A key and a nonce counter (spec §5.1). The handshake uses the implicit-nonce form; the sealed
 * channel uses explicit counters (`encrypt`/`decrypt`) since each record carries its own.
 */
export class CipherState {
  private k: Buffer | null = null;
  private n = 0n;

  constructor(key?: Buffer) {
    if (key !== undefined) this.initializeKey(key);
  }

  initializeKey(key: Buffer | null): void {
    if (key !== null && key.length !== KEY_BYTES) throw new FerryError('BAD_OPTION', `a cipher key must be ${KEY_BYTES} bytes, got ${key.length}`, { field: 'key' });
    this.k = key === null ? null : Buffer.from(key);
    this.n = 0n;
  }

  hasKey(): boolean {
    return this.k !== null;
  }

  /** The next implicit nonce. */
  get nonce(): bigint {
    return this.n;
  }

  setNonce(n: bigint): void {
    this.n = n;
  }

  /** A copy with the same key and nonce: lets a receiver try a rekeyed key and keep it only if a record opens. */
  clone(): CipherState {
    const c = new CipherState();
    c.k = this.k === null ? null : Buffer.from(this.k);
    c.n = this.n;
    return c;
  }

  /** ENCRYPT(k, n, ad, plaintext) with an explicit nonce; the implicit counter is not touched. */
  encrypt(n: bigint, ad: Buffer, plaintext: Buffer): Buffer {
    checkNonce(n);
    return aeadEncrypt(this.key(), n, ad, plaintext);
  }

  /** ENCRYPT with an explicit nonce of the concatenated `parts`: ciphertext parts, then the tag (for sealing large records without a copy). */
  encryptParts(n: bigint, ad: Buffer, parts: readonly Buffer[]): Buffer[] {
    checkNonce(n);
    return aeadEncryptParts(this.key(), n, ad, parts);
  }

  /** DECRYPT with an explicit nonce. Authentication failure → BRIDGE_RECORD_REFUSED; the state is unchanged. */
  decrypt(n: bigint, ad: Buffer, ciphertext: Buffer): Buffer {
    checkNonce(n);
    const plaintext = aeadDecrypt(this.key(), n, ad, ciphertext);
    if (plaintext === null) throw new FerryError('BRIDGE_RECORD_REFUSED', `record with nonce ${n} failed authentication`, { field: 'record' });
    return plaintext;
  }

  /** EncryptWithAd (spec §5.1): without a key the plaintext passes through, as the spec says. */
  encryptWithAd(ad: Buffer, plaintext: Buffer): Buffer {
    if (this.k === null) return Buffer.from(plaintext);
    const out = this.encrypt(this.n, ad, plaintext);
    this.n += 1n;
    return out;
  }

  /** DecryptWithAd: the nonce advances only when the message authenticates. */
  decryptWithAd(ad: Buffer, ciphertext: Buffer): Buffer {
    if (this.k === null) return Buffer.from(ciphertext);
    const out = this.decrypt(this.n, ad, ciphertext);
    this.n += 1n;
    return out;
  }

  /** Rekey (spec §4.2): k = first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes). The nonce is kept. */
  rekey(): void {
    this.k = aeadEncrypt(this.key(), MAX_NONCE, EMPTY, Buffer.alloc(KEY_BYTES)).subarray(0, KEY_BYTES);
  }

  private key(): Buffer {
    if (this.k === null) throw new FerryError('BRIDGE_CLOSED', 'the cipher has no key yet', { field: 'key' });
    return this.k;
  }
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** HKDF(ck, ikm) with two outputs. RFC 5869 with salt = ck and empty info is exactly Noise's HMAC construction. */
function hkdf2(ck: Buffer, ikm: Buffer): [Buffer, Buffer] {
  const out = Buffer.from(hkdfSync('sha256', ikm, ck, EMPTY, 2 * HASH_BYTES));
  return [out.subarray(0, HASH_BYTES), out.subarray(HASH_BYTES)];
}

/** The chaining key, the handshake hash and the handshake's CipherState (spec §5.2). */
export class SymmetricState {
  private ck: Buffer;
  private h: Buffer;
  readonly cipher = new CipherState();

  constructor(protocolName: string) {
    const name = Buffer.from(protocolName, 'ascii');
    this.h = name.length <= HASH_BYTES ? Buffer.concat([name, Buffer.alloc(HASH_BYTES - name.length)]) : sha256(name);
    this.ck = Buffer.from(this.h);
  }

  get handshakeHash(): Buffer {
    return Buffer.from(this.h);
  }

  mixKey(ikm: Buffer): void {
    const [ck, tempK] = hkdf2(this.ck, ikm);
    this.ck = ck;
    this.cipher.initializeKey(tempK); // HASHLEN is 32, so no truncation is needed
  }

  mixHash(data: Buffer): void {
    this.h = sha256(this.h, data);
  }

  encryptAndHash(plaintext: Buffer): Buffer {
    const ciphertext = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Buffer): Buffer {
    const plaintext = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** The two transport CipherStates: [initiator→responder, responder→initiator]. */
  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf2(this.ck, EMPTY);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

export interface KKHandshakeOptions {
  initiator: boolean;
  /** Bound into the handshake hash: both ends must give the same bytes or the handshake fails. */
  prologue: Buffer;
  /** This device's static X25519 key pair. */
  s: RawKeyPair;
  /** The peer's static X25519 public key, as learned at pairing. */
  rs: Buffer;
  /** A fixed ephemeral key pair, for test vectors only; otherwise a fresh one is made. */
  e?: RawKeyPair;
}

export interface TransportStates {
  send: CipherState;
  recv: CipherState;
  handshakeHash: Buffer;
}

function failed(message: string, cause?: unknown): FerryError {
  return new FerryError('BRIDGE_HANDSHAKE_FAILED', message, { field: 'handshake' }, cause === undefined ? undefined : { cause });
}

/**
 * HandshakeState for KK (spec §5.3, §7.5):
 *   -> s
 *   <- s
 *   ...
 *   -> e, es, ss
 *   <- e, ee, se
 * Any failure leaves the handshake unusable: Noise gives no way to resume a half-mixed state.
 */
export class KKHandshake {
  private readonly initiator: boolean;
  private readonly sym = new SymmetricState(PROTOCOL_NAME);
  private readonly s: RawKeyPair;
  private readonly rs: Buffer;
  private readonly fixedE: RawKeyPair | undefined;
  private e: RawKeyPair | null = null;
  private re: Buffer | null = null;
  /** Messages processed so far: 0, 1 or 2. */
  private step = 0;
  private broken = false;
  private splitDone = false;

  constructor(options: KKHandshakeOptions) {
    const { initiator, prologue, s, rs, e } = options;
    if (s.privateKey.length !== KEY_BYTES || s.publicKey.length !== KEY_BYTES) throw new FerryError('BAD_OPTION', `the static key pair must be two ${KEY_BYTES}-byte keys`, { field: 's' });
    if (rs.length !== KEY_BYTES) throw new FerryError('BAD_OPTION', `the remote static key must be ${KEY_BYTES} bytes, got ${rs.length}`, { field: 'rs' });
    this.initiator = initiator;
    this.s = s;
    this.rs = Buffer.from(rs);
    this.fixedE = e;
    this.sym.mixHash(prologue);
    // Pre-messages in pattern order: the initiator's static key first, then the responder's.
    const [first, second] = initiator ? [s.publicKey, rs] : [rs, s.publicKey];
    this.sym.mixHash(first);
    this.sym.mixHash(second);
  }

  /** True once both messages are through; `split` may then be called. */
  get complete(): boolean {
    return this.step === 2 && !this.broken;
  }

  /** The next handshake message carrying `payload` (encrypted: both KK messages come after a DH). */
  writeMessage(payload: Buffer): Buffer {
    this.checkTurn(true);
    if (payload.length + KEY_BYTES + TAG_BYTES > MAX_MESSAGE_BYTES) {
      throw failed(`handshake payload of ${payload.length} bytes would exceed the ${MAX_MESSAGE_BYTES}-byte message limit`);
    }
    try {
      const e = this.fixedE ?? generateX25519();
      this.e = e;
      this.sym.mixHash(e.publicKey);
      if (this.step === 0) {
        this.sym.mixKey(this.dh(e.privateKey, this.rs, 'es'));
        this.sym.mixKey(this.dh(this.s.privateKey, this.rs, 'ss'));
      } else {
        this.sym.mixKey(this.dh(e.privateKey, this.re!, 'ee'));
        this.sym.mixKey(this.dh(e.privateKey, this.rs, 'se'));
      }
      const message = Buffer.concat([e.publicKey, this.sym.encryptAndHash(payload)]);
      this.step += 1;
      return message;
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }

  /** Reads the peer's handshake message and returns its payload. */
  readMessage(message: Buffer): Buffer {
    this.checkTurn(false);
    const which = this.step === 0 ? 'first' : 'second';
    if (message.length > MAX_MESSAGE_BYTES) {
      this.broken = true;
      throw failed(`the ${which} handshake message is ${message.length} bytes, over the ${MAX_MESSAGE_BYTES}-byte limit`);
    }
    if (message.length < KEY_BYTES + TAG_BYTES) {
      this.broken = true;
      throw failed(`the ${which} handshake message is too short (${message.length} bytes, at least ${KEY_BYTES + TAG_BYTES} needed)`);
    }
    try {
      const re = Buffer.from(message.subarray(0, KEY_BYTES));
      this.re = re;
      this.sym.mixHash(re);
      if (this.step === 0) {
        this.sym.mixKey(this.dh(this.s.privateKey, re, 'es'));
        this.sym.mixKey(this.dh(this.s.privateKey, this.rs, 'ss'));
      } else {
        this.sym.mixKey(this.dh(this.e!.privateKey, re, 'ee'));
        this.sym.mixKey(this.dh(this.s.privateKey, re, 'se'));
      }
      let payload: Buffer;
      try {
        payload = this.sym.decryptAndHash(message.subarray(KEY_BYTES));
      } catch (err) {
        // Wrong static key on either side, a different prologue, or a modified message all land here.
        throw failed(`the ${which} handshake message failed authentication (the peer does not hold the expected key, or the message was modified)`, err);
      }
      this.step += 1;
      return payload;
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }

  /** The transport CipherStates, oriented for this side. Once only: two copies of a key would invite nonce reuse. */
  split(): TransportStates {
    if (!this.complete) throw failed('the handshake is not complete, so it cannot be split');
    if (this.splitDone) throw failed('the handshake was already split');
    this.splitDone = true;
    const [c1, c2] = this.sym.split();
    const handshakeHash = this.sym.handshakeHash;
    return this.initiator ? { send: c1, recv: c2, handshakeHash } : { send: c2, recv: c1, handshakeHash };
  }

  private checkTurn(writing: boolean): void {
    if (this.broken) throw failed('the handshake already failed and cannot continue');
    if (this.step >= 2) throw failed('the handshake is already complete');
    // The initiator writes message 0 and reads message 1; the responder the reverse.
    const myTurnToWrite = (this.step === 0) === this.initiator;
    if (writing !== myTurnToWrite) {
      throw failed(`out of turn: the ${this.initiator ? 'initiator' : 'responder'} must ${myTurnToWrite ? 'write' : 'read'} handshake message ${this.step + 1} next`);
    }
  }

  private dh(privateKey: Buffer, publicKey: Buffer, token: string): Buffer {
    try {
      return x25519(privateKey, publicKey);
    } catch (err) {
      // node:crypto refuses a low-order point (all-zero shared secret); the peer sent a bad key.
      throw failed(`the ${token} Diffie-Hellman step failed: the peer's key is not a usable X25519 key`, err);
    }
  }
}
