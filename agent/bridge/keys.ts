import { createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Raw 32-byte X25519 and Ed25519 keys over node:crypto. The wire and the files carry raw keys
 * (as RFC 7748 and RFC 8032 define them); node:crypto takes them through the fixed DER prefixes
 * of PKCS#8 and SPKI (RFC 8410), so no curve arithmetic happens here.
 */

const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

/** A raw key pair: 32-byte private key (X25519 scalar, or Ed25519 seed) and 32-byte public key. */
export interface RawKeyPair {
  privateKey: Buffer;
  publicKey: Buffer;
}

export const KEY_BYTES = 32;

function rawPublic(k: KeyObject, prefix: Buffer): Buffer {
  return (k.export({ type: 'spki', format: 'der' }) as Buffer).subarray(prefix.length);
}

function rawPrivate(k: KeyObject, prefix: Buffer): Buffer {
  return (k.export({ type: 'pkcs8', format: 'der' }) as Buffer).subarray(prefix.length);
}

/**
 * Importing a key costs ~0.8 ms (private) and ~0.2 ms (public), against ~60 µs for the X25519
 * itself; a handshake uses each key two or three times and the static key on every handshake.
 * So imported keys are kept in a small cache (most recently used last), keyed by their bytes.
 */
const CACHED_KEYS = 32;
const cache = new Map<string, KeyObject>();

function cached(prefix: Buffer, raw: Buffer, make: (der: Buffer) => KeyObject): KeyObject {
  const id = `${prefix.toString('latin1')}${raw.toString('latin1')}`;
  let k = cache.get(id);
  if (k) cache.delete(id);
  else k = make(Buffer.concat([prefix, raw]));
  cache.set(id, k);
  if (cache.size > CACHED_KEYS) cache.delete(cache.keys().next().value as string);
  return k;
}

function privateObject(raw: Buffer, prefix: Buffer): KeyObject {
  return cached(prefix, raw, (key) => createPrivateKey({ key, format: 'der', type: 'pkcs8' }));
}

function publicObject(raw: Buffer, prefix: Buffer): KeyObject {
  return cached(prefix, raw, (key) => createPublicKey({ key, format: 'der', type: 'spki' }));
}

export function generateX25519(): RawKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey: rawPrivate(privateKey, X25519_PKCS8), publicKey: rawPublic(publicKey, X25519_SPKI) };
}

/** The X25519 key pair of a raw private key (test vectors give private keys). */
export function x25519FromPrivate(privateKey: Buffer): RawKeyPair {
  const k = privateObject(privateKey, X25519_PKCS8);
  return { privateKey: Buffer.from(privateKey), publicKey: rawPublic(createPublicKey(k), X25519_SPKI) };
}

/** X25519(private, public): the 32-byte shared secret. Throws on a low-order public key (all-zero output). */
export function x25519(privateKey: Buffer, publicKey: Buffer): Buffer {
  return diffieHellman({ privateKey: privateObject(privateKey, X25519_PKCS8), publicKey: publicObject(publicKey, X25519_SPKI) });
}

export function generateEd25519(): RawKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey: rawPrivate(privateKey, ED25519_PKCS8), publicKey: rawPublic(publicKey, ED25519_SPKI) };
}

/** The Ed25519 key pair of a raw 32-byte seed. */
export function ed25519FromSeed(seed: Buffer): RawKeyPair {
  const k = privateObject(seed, ED25519_PKCS8);
  return { privateKey: Buffer.from(seed), publicKey: rawPublic(createPublicKey(k), ED25519_SPKI) };
}

export function ed25519Sign(seed: Buffer, data: Buffer): Buffer {
  return sign(null, data, privateObject(seed, ED25519_PKCS8));
}

export function ed25519Verify(publicKey: Buffer, data: Buffer, signature: Buffer): boolean {
  try {
    return verify(null, data, publicObject(publicKey, ED25519_SPKI), signature);
  } catch {
    return false; // a malformed key or signature is a failed verification, not a crash
  }
}

/**
 * A device's short fingerprint: SHA-256 over its Ed25519 device key and its X25519 static key,
 * the first 10 bytes as five groups of four hex digits (`3fa2:91c0:77de:0b1a:5e42`). Short enough
 * to read aloud, long enough (80 bits) that nobody makes a second identity to match it.
 */
export function fingerprint(deviceKey: Buffer, staticKey: Buffer): string {
  const hex = createHash('sha256').update(deviceKey).update(staticKey).digest().subarray(0, 10).toString('hex');
  return hex.match(/.{4}/g)!.join(':');
}
