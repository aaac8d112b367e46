import { readFileSync } from 'node:fs';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { writeAtomically } from '../runtime/registry.js';
import { decodeRawKey, fileCheck, shape } from './identity.js';
import { KEY_BYTES, fingerprint } from './keys.js';

/**
 * The devices this one is paired with (`<data>/bridge/peers.json`).
 *
 * File format (JSON, mode 0600, written atomically):
 *
 *   {
 *     "v": 1,
 *     "self": fingerprint of this device's identity (the one the peers paired with),
 *     "peers": { "<deviceId>": { "deviceKey": b64url(32), "staticKey": b64url(32),
 *                                "profile": string, "label": string, "pairedAt": ms } },
 *     "check": first 16 hex digits of SHA-256 over the canonical JSON of every other field
 *   }
 *
 * (canonical JSON as in identity.ts). A peer's fingerprint is derived from its two keys, not
 * stored. A damaged file is PEERS_CORRUPT, never an empty list: an empty list would silently
 * unpair every peer. `self` ties the registry to identity.key: a registry written for another
 * identity means the key file was replaced, and every peer would refuse the handshake.
 */

export interface PeerRecord {
  /** The peer's bus device id (DEVICE_ID_PATTERN). */
  deviceId: string;
  /** Raw 32-byte Ed25519 public key. */
  deviceKey: Buffer;
  /** Raw 32-byte X25519 static public key. */
  staticKey: Buffer;
  /** keys.fingerprint(deviceKey, staticKey). */
  fingerprint: string;
  /** The peer's hardware profile name: 1..64 of [A-Za-z0-9._-]. */
  profile: string;
  /** What the owner calls the peer: 0..64 printable characters. */
  label: string;
  /** When the pairing completed, ms since the epoch. */
  pairedAt: number;
}

/** A record for `add`: the fingerprint is derived from the keys; when given it must match. */
export type PeerInput = Omit<PeerRecord, 'fingerprint'> & { fingerprint?: string };

export interface PeerRegistryOptions {
  /** Write an empty registry when the file does not exist (the agent does this when it makes the identity). Default false. */
  create?: boolean;
}

export const PROFILE_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** 0..64 code points, none a control, format (bidi overrides), surrogate, private-use or line/paragraph separator; ZWNJ/ZWJ allowed (emoji). */
export const LABEL_PATTERN = /^(?:[\u200C\u200D]|(?![\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}])[\s\S]){0,64}$/u;
export const FINGERPRINT_PATTERN = /^[0-9a-f]{4}(?::[0-9a-f]{4}){4}$/;

const FILE_VERSION = 1;
const RECORD_FIELDS = ['deviceKey', 'staticKey', 'profile', 'label', 'pairedAt'] as const;

interface StoredPeer {
  deviceKey: string;
  staticKey: string;
  profile: string;
  label: string;
  pairedAt: number;
}

export class PeerRegistry {
  private peers: ReadonlyMap<string, PeerRecord>;

  private constructor(
    readonly file: string,
    /** The fingerprint of this device's identity. */
    readonly self: string,
    peers: ReadonlyMap<string, PeerRecord>,
  ) {
    this.peers = peers;
  }

  /**
   * Loads the registry. A missing file is an empty registry, written at the first `add` (or now,
   * with `create`). Throws PEERS_CORRUPT for a damaged file and IDENTITY_CORRUPT when the file
   * belongs to another identity than `selfFingerprint`.
   */
  static open(file: string, selfFingerprint: string, options: PeerRegistryOptions = {}): PeerRegistry {
    if (typeof selfFingerprint !== 'string' || !FINGERPRINT_PATTERN.test(selfFingerprint)) {
      throw new FerryError('BAD_OPTION', `selfFingerprint must be a device fingerprint (five groups of four hex digits), got ${describe(selfFingerprint)}`, { field: 'selfFingerprint' });
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        throw new FerryError('PEERS_CORRUPT', `${file} cannot be read (${code ?? (e as Error).message}); it was not replaced by an empty list`, { field: 'peers.json', file }, { cause: e });
      }
      const registry = new PeerRegistry(file, selfFingerprint, new Map());
      if (options.create) registry.write(registry.peers);
      return registry;
    }
    return new PeerRegistry(file, selfFingerprint, decode(file, text, selfFingerprint));
  }

  /** Every peer, sorted by device id. Records are copies. */
  list(): PeerRecord[] {
    return [...this.peers.keys()].sort().map((id) => copy(this.peers.get(id)!));
  }

  get(deviceId: string): PeerRecord | undefined {
    const r = this.peers.get(deviceId);
    return r && copy(r);
  }

  /** The peer, or PEER_UNKNOWN (field `peer`). */
  require(deviceId: string): PeerRecord {
    const r = this.get(deviceId);
    if (!r) throw new FerryError('PEER_UNKNOWN', `no paired peer has device id ${describe(deviceId)}`, { field: 'peer' });
    return r;
  }

  get size(): number {
    return this.peers.size;
  }

  /** Adds the peer, replacing a record with the same device id; written to the file before it returns. Returns the stored record. */
  add(input: PeerInput): PeerRecord {
    const rec = checkInput(input);
    const next = new Map(this.peers);
    next.set(rec.deviceId, rec);
    this.write(next);
    return copy(rec);
  }

  /** Removes the peer; false (and nothing written) when it was not paired. */
  remove(deviceId: string): boolean {
    if (!this.peers.has(deviceId)) return false;
    const next = new Map(this.peers);
    next.delete(deviceId);
    this.write(next);
    return true;
  }

  /** Writes `next`, and only then makes it the in-memory state: a failed write changes nothing. */
  private write(next: ReadonlyMap<string, PeerRecord>): void {
    const peers: Record<string, StoredPeer> = {};
    for (const id of [...next.keys()].sort()) {
      const r = next.get(id)!;
      peers[id] = { deviceKey: r.deviceKey.toString('base64url'), staticKey: r.staticKey.toString('base64url'), profile: r.profile, label: r.label, pairedAt: r.pairedAt };
    }
    const rest = { v: FILE_VERSION, self: this.self, peers };
    writeAtomically(this.file, `${JSON.stringify({ ...rest, check: fileCheck(rest) }, null, 2)}\n`, 0o600);
    this.peers = next;
  }
}

function copy(r: PeerRecord): PeerRecord {
  return { ...r, deviceKey: Buffer.from(r.deviceKey), staticKey: Buffer.from(r.staticKey) };
}

/** What is wrong with one field of a record, or undefined. Shared by `add` and the loader. */
function fieldProblem(name: (typeof RECORD_FIELDS)[number], v: unknown): string | undefined {
  switch (name) {
    case 'profile':
      return typeof v === 'string' && PROFILE_PATTERN.test(v) ? undefined : `must be 1..64 characters of [A-Za-z0-9._-], got ${describe(v)}`;
    case 'label':
      return typeof v === 'string' && LABEL_PATTERN.test(v) ? undefined : `must be 0..64 printable characters, got ${describe(v)}`;
    case 'pairedAt':
      return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? undefined : `must be a time in ms (a non-negative integer), got ${describe(v)}`;
    default:
      return undefined;
  }
}

function checkInput(input: PeerInput): PeerRecord {
  const bad = (field: string, what: string): never => {
    throw new FerryError('BAD_OPTION', `peer.${field} ${what}`, { field: `peer.${field}` });
  };
  if (input === null || typeof input !== 'object') throw new FerryError('BAD_OPTION', `peer must be an object, got ${describe(input)}`, { field: 'peer' });
  if (typeof input.deviceId !== 'string' || !DEVICE_ID_PATTERN.test(input.deviceId)) bad('deviceId', `must match ${DEVICE_ID_PATTERN}, got ${describe(input.deviceId)}`);
  for (const k of ['deviceKey', 'staticKey'] as const) {
    const v: unknown = input[k];
    if (!(v instanceof Uint8Array) || v.length !== KEY_BYTES) bad(k, `must be ${KEY_BYTES} raw bytes (a Buffer), got ${describe(v)}`);
  }
  for (const k of RECORD_FIELDS) {
    const problem = fieldProblem(k, input[k]);
    if (problem) bad(k, problem);
  }
  const deviceKey = Buffer.from(input.deviceKey);
  const staticKey = Buffer.from(input.staticKey);
  const fp = fingerprint(deviceKey, staticKey);
  if (input.fingerprint !== undefined && input.fingerprint !== fp) bad('fingerprint', `is not the fingerprint of deviceKey and staticKey (${fp}), got ${describe(input.fingerprint)}`);
  return { deviceId: input.deviceId, deviceKey, staticKey, fingerprint: fp, profile: input.profile, label: input.label, pairedAt: input.pairedAt };
}

function decode(file: string, text: string, self: string): Map<string, PeerRecord> {
  const bad = (field: string, what: string, code: ErrorCode = 'PEERS_CORRUPT') =>
    new FerryError(code, `${file}: ${what}; it was not replaced by an empty list`, { field, file });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw bad('peers.json', `not JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('peers.json', `not a peer registry (a JSON object), got ${describe(parsed)}`);
  const f = parsed as Record<string, unknown>;
  if (f.v !== FILE_VERSION) throw bad('v', `v must be ${FILE_VERSION}, got ${describe(f.v)}`);
  const known = ['v', 'self', 'peers', 'check'];
  for (const k of known) if (!Object.hasOwn(f, k)) throw bad(k, `${k} is missing`);
  for (const k of Object.keys(f)) if (!known.includes(k)) throw bad(k, `${describe(k)} is not a known field`);
  const { check, ...rest } = f;
  if (typeof check !== 'string' || check !== fileCheck(rest)) throw bad('check', 'the checksum does not match the content (truncated, damaged or edited by hand)');
  if (typeof f.self !== 'string' || !FINGERPRINT_PATTERN.test(f.self)) throw bad('self', `self must be a device fingerprint, got ${describe(f.self)}`);
  if (f.self !== self) {
    throw new FerryError(
      'IDENTITY_CORRUPT',
      `identity.key is not the identity this device's peers were paired with: ${file} was written for ${f.self}, the key file is ${self}; restore the key file that belongs with it, or remove ${file} to start over (every peer must then pair again)`,
      { field: 'self', file },
    );
  }
  if (f.peers === null || typeof f.peers !== 'object' || Array.isArray(f.peers)) throw bad('peers', `peers must be an object, got ${describe(f.peers)}`);
  const out = new Map<string, PeerRecord>();
  for (const [id, raw] of Object.entries(f.peers as Record<string, unknown>)) {
    if (!DEVICE_ID_PATTERN.test(id)) throw bad(`peers.${id.slice(0, 64)}`, `the device id ${describe(id)} does not match ${DEVICE_ID_PATTERN}`);
    const field = (k: string) => `peers.${id}.${k}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(`peers.${id}`, `peers.${id} must be an object, got ${describe(raw)}`);
    const r = raw as Record<string, unknown>;
    for (const k of RECORD_FIELDS) if (!Object.hasOwn(r, k)) throw bad(field(k), `${field(k)} is missing`);
    for (const k of Object.keys(r)) if (!(RECORD_FIELDS as readonly string[]).includes(k)) throw bad(field(k), `${describe(k)} in peers.${id} is not a known field`);
    const keys = (['deviceKey', 'staticKey'] as const).map((k) => {
      const b = decodeRawKey(r[k]);
      if (!b) throw bad(field(k), `${field(k)} must be ${KEY_BYTES} bytes in base64url (43 characters), got ${shape(r[k])}`);
      return b;
    });
    for (const k of RECORD_FIELDS) {
      const problem = fieldProblem(k, r[k]);
      if (problem) throw bad(field(k), `${field(k)} ${problem}`);
    }
    const [deviceKey, staticKey] = [keys[0]!, keys[1]!];
    const s = r as unknown as StoredPeer;
    out.set(id, { deviceId: id, deviceKey, staticKey, fingerprint: fingerprint(deviceKey, staticKey), profile: s.profile, label: s.label, pairedAt: s.pairedAt });
  }
  return out;
}
