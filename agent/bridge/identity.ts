import { createHash } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { FerryError } from '../../core/errors.js';
import { writeAtomically } from '../runtime/registry.js';
import { KEY_BYTES, ed25519FromSeed, ed25519Sign, fingerprint, generateEd25519, generateX25519, x25519FromPrivate, type RawKeyPair } from './keys.js';

/**
 * The device's bridge identity: an Ed25519 device key (signatures) and an X25519 static key
 * (the Noise handshake), made at first start and kept in `<data>/bridge/identity.key`.
 *
 * File format (JSON, mode 0600, written atomically):
 *
 *   {
 *     "v": 1,
 *     "deviceKey": { "seed": b64url(32 bytes), "public": b64url(32 bytes) },
 *     "staticKey": { "private": b64url(32 bytes), "public": b64url(32 bytes) },
 *     "createdAt": ms since the epoch,
 *     "check": first 16 hex digits of SHA-256 over the canonical JSON of every other field
 *   }
 *
 * Canonical JSON: no white space, object keys sorted (code-unit order) at every level. The
 * check catches a truncated or hand-edited file before its keys are used; the public keys
 * are stored as well so a file whose private key does not belong to its public key (a paste
 * from another device) is refused rather than silently becoming another identity.
 *
 * A missing file is a new device only while there is no peer registry next to it: with
 * paired peers, a fresh identity would strand every peer, so that is IDENTITY_CORRUPT.
 * Error messages name the file and the field, never a key byte.
 */

export const IDENTITY_FILE = 'identity.key';
export const PEERS_FILE = 'peers.json';
export const FILE_VERSION = 1;

export interface DeviceIdentity {
  /** Raw 32-byte Ed25519 public key. */
  readonly deviceKey: Buffer;
  /** X25519 static key pair for Noise; `privateKey` is a getter that returns a copy and never shows in JSON or inspect. */
  readonly staticKey: RawKeyPair;
  /** keys.fingerprint(deviceKey, staticKey.publicKey). */
  readonly fingerprint: string;
  /** Path of identity.key. */
  readonly file: string;
  /** When the identity was made, ms since the epoch. */
  readonly createdAt: number;
  /** True when this call made the identity (first start). */
  readonly created: boolean;
  /** Things the agent should log, e.g. a key file readable by group or others. */
  readonly warnings: readonly string[];
  /** Ed25519 signature over `data` with the device key. */
  sign(data: Buffer): Buffer;
}

/** Canonical JSON: sorted keys, no white space (plain data only: objects, arrays, strings, finite numbers, booleans, null). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // Keys whose value is undefined are left out, as JSON.stringify does.
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The `check` of a bridge file: the first 16 hex digits of SHA-256 over the canonical JSON of `rest`. */
export function fileCheck(rest: unknown): string {
  return createHash('sha256').update(canonicalJson(rest)).digest('hex').slice(0, 16);
}

const B64URL_KEY = /^[A-Za-z0-9_-]{43}$/;

/** A raw 32-byte key from its base64url text, or undefined. Strict: exactly one spelling per key. */
export function decodeRawKey(v: unknown): Buffer | undefined {
  if (typeof v !== 'string' || !B64URL_KEY.test(v)) return undefined;
  const b = Buffer.from(v, 'base64url');
  return b.length === KEY_BYTES && b.toString('base64url') === v ? b : undefined;
}

/** What a value is, without showing it (it may be a key). */
export function shape(v: unknown): string {
  if (typeof v === 'string') return `a string of ${v.length} characters`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** The X25519 static key pair: the private key stays out of JSON, inspect and string forms. */
class StaticKeyPair implements RawKeyPair {
  readonly #privateKey: Buffer;
  readonly publicKey: Buffer;

  constructor(pair: RawKeyPair) {
    this.#privateKey = Buffer.from(pair.privateKey);
    this.publicKey = Buffer.from(pair.publicKey);
  }

  /** A copy, so a caller that zeroes or changes it cannot change the identity. */
  get privateKey(): Buffer {
    return Buffer.from(this.#privateKey);
  }

  toJSON(): { publicKey: string } {
    return { publicKey: this.publicKey.toString('base64url') };
  }

  toString(): string {
    return `X25519 key pair ${this.publicKey.toString('base64url')}`;
  }

  [inspect.custom](): string {
    return `StaticKeyPair { publicKey: ${this.publicKey.toString('base64url')}, privateKey: [hidden] }`;
  }
}

interface IdentityKeys {
  seed: Buffer;
  deviceKey: Buffer;
  staticKey: RawKeyPair;
  createdAt: number;
}

/** Loads `<bridgeDir>/identity.key`, or makes a new identity when the device has none and no peers. */
export function loadIdentity(bridgeDir: string): DeviceIdentity {
  const file = join(bridgeDir, IDENTITY_FILE);
  mkdirSync(bridgeDir, { recursive: true, mode: 0o700 });
  const read = readIdentityFile(file);
  if (read === undefined) {
    const peers = join(bridgeDir, PEERS_FILE);
    if (lstatSync(peers, { throwIfNoEntry: false }) !== undefined) {
      throw new FerryError(
        'IDENTITY_CORRUPT',
        `${file} is missing but this device has paired peers (${peers}); restore the key file from a backup, or remove ${PEERS_FILE} to start over as a new device (every peer must then pair again)`,
        { field: IDENTITY_FILE, file },
      );
    }
    const device = generateEd25519();
    const keys: IdentityKeys = { seed: device.privateKey, deviceKey: device.publicKey, staticKey: generateX25519(), createdAt: Date.now() };
    writeAtomically(file, encodeIdentity(keys), 0o600);
    return makeIdentity(file, keys, true, []);
  }
  const keys = decodeIdentity(file, read.text);
  const warnings: string[] = [];
  if (process.platform !== 'win32' && (read.mode & 0o077) !== 0) {
    warnings.push(`${file} is accessible by group or others (mode ${(read.mode & 0o777).toString(8).padStart(4, '0')}) and holds this device's private keys; run chmod 600 on it`);
  }
  return makeIdentity(file, keys, false, warnings);
}

/** The file's text and mode, or undefined when it does not exist. */
function readIdentityFile(file: string): { text: string; mode: number } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new FerryError('IDENTITY_CORRUPT', `${file} cannot be read (${code ?? (e as Error).message}); no new identity was made`, { field: IDENTITY_FILE, file }, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new FerryError('IDENTITY_CORRUPT', `${file} is not a regular file (${st.isDirectory() ? 'a directory' : 'a special file'}); no new identity was made`, { field: IDENTITY_FILE, file });
    }
    return { text: readFileSync(fd, 'utf8'), mode: st.mode };
  } catch (e) {
    if (e instanceof FerryError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new FerryError('IDENTITY_CORRUPT', `${file} cannot be read (${code ?? (e as Error).message}); no new identity was made`, { field: IDENTITY_FILE, file }, { cause: e });
  } finally {
    closeSync(fd);
  }
}

function encodeIdentity(k: IdentityKeys): string {
  const rest = {
    v: FILE_VERSION,
    deviceKey: { seed: k.seed.toString('base64url'), public: k.deviceKey.toString('base64url') },
    staticKey: { private: k.staticKey.privateKey.toString('base64url'), public: k.staticKey.publicKey.toString('base64url') },
    createdAt: k.createdAt,
  };
  return `${JSON.stringify({ ...rest, check: fileCheck(rest) }, null, 2)}\n`;
}

function decodeIdentity(file: string, text: string): IdentityKeys {
  const bad = (field: string, what: string) => new FerryError('IDENTITY_CORRUPT', `${file}: ${what}; no new identity was made`, { field, file });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // No parser message and no cause: the parser quotes the text around the error, which may be key bytes.
    throw bad(IDENTITY_FILE, `not JSON (${text.length === 0 ? 'empty' : 'truncated or overwritten'})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad(IDENTITY_FILE, `not an identity file (a JSON object), got ${shape(parsed)}`);
  const f = parsed as Record<string, unknown>;
  if (f.v !== FILE_VERSION) throw bad('v', `v must be ${FILE_VERSION}, got ${typeof f.v === 'number' ? f.v : shape(f.v)}`);
  checkKeys(f, ['v', 'deviceKey', 'staticKey', 'createdAt', 'check'], '', bad);

  const pair = (name: 'deviceKey' | 'staticKey', priv: 'seed' | 'private'): [Buffer, Buffer] => {
    const o = f[name];
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw bad(name, `${name} must be an object, got ${shape(o)}`);
    const p = o as Record<string, unknown>;
    checkKeys(p, [priv, 'public'], `${name}.`, bad);
    const keys = [priv, 'public'].map((k) => {
      const raw = decodeRawKey(p[k]);
      if (!raw) throw bad(`${name}.${k}`, `${name}.${k} must be ${KEY_BYTES} bytes in base64url (43 characters), got ${shape(p[k])}`);
      return raw;
    });
    return [keys[0]!, keys[1]!];
  };
  const [seed, deviceKey] = pair('deviceKey', 'seed');
  const [staticPrivate, staticPublic] = pair('staticKey', 'private');
  if (typeof f.createdAt !== 'number' || !Number.isSafeInteger(f.createdAt) || f.createdAt < 0) {
    throw bad('createdAt', `createdAt must be a time in ms (a non-negative integer), got ${typeof f.createdAt === 'number' ? f.createdAt : shape(f.createdAt)}`);
  }
  const { check, ...rest } = f;
  if (typeof check !== 'string' || check !== fileCheck(rest)) {
    throw bad('check', 'the checksum does not match the content (truncated, damaged or edited by hand)');
  }
  if (!ed25519FromSeed(seed).publicKey.equals(deviceKey)) throw bad('deviceKey.public', 'deviceKey.public is not the public key of deviceKey.seed');
  if (!x25519FromPrivate(staticPrivate).publicKey.equals(staticPublic)) throw bad('staticKey.public', 'staticKey.public is not the public key of staticKey.private');
  return { seed, deviceKey, staticKey: { privateKey: staticPrivate, publicKey: staticPublic }, createdAt: f.createdAt };
}

/** Refuses a missing or an unknown field: a file this version does not fully understand is not used. */
function checkKeys(o: Record<string, unknown>, known: readonly string[], prefix: string, bad: (field: string, what: string) => FerryError): void {
  for (const k of known) if (!Object.hasOwn(o, k)) throw bad(`${prefix}${k}`, `${prefix}${k} is missing`);
  for (const k of Object.keys(o)) if (!known.includes(k)) throw bad(`${prefix}${k}`, `${prefix}${JSON.stringify(k.slice(0, 40))} is not a known field`);
}

function makeIdentity(file: string, keys: IdentityKeys, created: boolean, warnings: string[]): DeviceIdentity {
  const seed = Buffer.from(keys.seed); // only the sign closure below holds it
  const deviceKey = Buffer.from(keys.deviceKey);
  const staticKey = new StaticKeyPair(keys.staticKey);
  const fp = fingerprint(deviceKey, staticKey.publicKey);
  const identity: DeviceIdentity = {
    deviceKey,
    staticKey,
    fingerprint: fp,
    file,
    createdAt: keys.createdAt,
    created,
    warnings: Object.freeze([...warnings]),
    sign: (data: Buffer) => ed25519Sign(seed, data),
  };
  const shown = () => ({ fingerprint: fp, deviceKey: deviceKey.toString('base64url'), staticKey: staticKey.publicKey.toString('base64url'), file, createdAt: keys.createdAt, created, warnings });
  Object.defineProperties(identity, {
    toJSON: { value: shown },
    toString: { value: () => `DeviceIdentity ${fp}` },
    [inspect.custom]: { value: () => `DeviceIdentity ${inspect(shown())}` },
  });
  return Object.freeze(identity);
}
