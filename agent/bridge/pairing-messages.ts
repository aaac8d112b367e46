import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { TOPIC_ROOT } from '../../transports/topics.js';
import { NONCE_BYTES } from './pairing-crypto.js';

/**
 * The pairing messages (PROTOCOL.md §B.2) and their checks. They travel as ordinary envelopes
 * in the clear: they carry only public keys, nonces and MACs, and the owners' comparison of the
 * code is what authenticates them.
 */

/** Where a device receives pairing messages. */
export function pairTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/bridge/${deviceId}/pair`;
}

export const PAIR_TYPES = ['pair.request', 'pair.response', 'pair.reveal', 'pair.confirm', 'pair.cancel'] as const;
export type PairType = (typeof PAIR_TYPES)[number];

/** Codes a `pair.cancel` may carry; anything else is read as PAIR_CANCELLED. */
export const CANCEL_CODES = ['PAIR_REFUSED', 'PAIR_CANCELLED', 'PAIR_TIMEOUT', 'PAIR_PROTOCOL'] as const;
export type CancelCode = (typeof CANCEL_CODES)[number];

export const PAIRING_ID = /^[A-Za-z0-9_-]{16,64}$/;
export const PROFILE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** A label: 0..64 printable characters (no control characters: it is shown on terminals). */
export const LABEL = /^[^\p{Cc}]{0,64}$/u;

/** What a request or a response says of its sender. */
export interface Introduction {
  deviceKey: Buffer;
  staticKey: Buffer;
  ephemeral: Buffer;
  profile: string;
  label: string;
}

export interface PairRequest extends Introduction {
  pairing: string;
  /** The commitment to the initiator's nonce (absent only in the test build without it). */
  commit?: Buffer;
  /** The initiator's nonce, sent at once: only the test build without the commitment does this. */
  nonce?: Buffer;
}

export interface PairResponse extends Introduction {
  pairing: string;
  nonce: Buffer;
}

function bad(field: string, expected: string, got: unknown): FerryError {
  return new FerryError('PAIR_PROTOCOL', `body.${field} must be ${expected}, got ${describe(got)}`, { field: `body.${field}` });
}

/** Reads a pairing message body; a missing or malformed field is PAIR_PROTOCOL naming it. */
export class PairBody {
  private readonly b: Record<string, unknown>;
  constructor(body: unknown) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('', 'a map', body);
    this.b = body as Record<string, unknown>;
  }
  has(name: string): boolean {
    return this.b[name] !== undefined;
  }
  bytes(name: string, length: number): Buffer {
    const v = this.b[name];
    if (!(v instanceof Uint8Array) || v.length !== length) throw bad(name, `a ${length}-byte byte string`, v);
    return Buffer.from(v);
  }
  text(name: string, pattern: RegExp, what: string): string {
    const v = this.b[name];
    if (typeof v !== 'string' || !pattern.test(v)) throw bad(name, what, v);
    return v;
  }
  pairing(): string {
    return this.text('pairing', PAIRING_ID, 'a pairing id (16..64 of A-Z a-z 0-9 _ -)');
  }
  introduction(): Introduction {
    return {
      deviceKey: this.bytes('deviceKey', 32),
      staticKey: this.bytes('staticKey', 32),
      ephemeral: this.bytes('ephemeral', 32),
      profile: this.text('profile', PROFILE_NAME, 'a profile name (1..64 of A-Z a-z 0-9 . _ -)'),
      label: this.text('label', LABEL, 'a label of 0..64 printable characters'),
    };
  }
  request(): PairRequest {
    const r: PairRequest = { pairing: this.pairing(), ...this.introduction() };
    if (this.has('commit')) r.commit = this.bytes('commit', 32);
    if (this.has('nonce')) r.nonce = this.bytes('nonce', NONCE_BYTES);
    if (!r.commit && !r.nonce) throw bad('commit', 'a 32-byte byte string', undefined);
    return r;
  }
  response(): PairResponse {
    return { pairing: this.pairing(), ...this.introduction(), nonce: this.bytes('nonce', NONCE_BYTES) };
  }
  cancelCode(): CancelCode {
    const v = this.b.code;
    return (CANCEL_CODES as readonly unknown[]).includes(v) ? (v as CancelCode) : 'PAIR_CANCELLED';
  }
}

/** Checks a peer id given by the owner or found in an envelope. */
export function checkPeerId(v: unknown, field: string): string {
  if (typeof v !== 'string' || !DEVICE_ID_PATTERN.test(v)) {
    throw new FerryError('BAD_OPTION', `${field} must be a device id matching ${DEVICE_ID_PATTERN}, got ${describe(v)}`, { field });
  }
  return v;
}
