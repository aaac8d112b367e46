import { Decoder, Encoder } from 'cbor-x';
import { FerryError } from '../core/errors.js';
import { describe } from '../core/options.js';
import { checkCborSubset, type SubsetScan } from './cbor-subset.js';
import { ENVELOPE_VERSION, type Envelope } from './contract.js';
import { randomId128 } from './random-id.js';

/**
 * Envelope encoding: one CBOR map (RFC 8949) with text keys, nothing cbor-x
 * specific on the wire (no record extension, no packed strings, no typed-array
 * tags), so any CBOR decoder reads it. See PROTOCOL.md, "Envelope".
 */
const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  // Definite-length maps with the smallest header (a fixed 16-bit header is valid but wasteful).
  variableMapSize: true,
  // Uint8Array goes out as a plain byte string (major type 2), not tag 64.
  tagUint8Array: false,
  pack: false,
  structuredClone: false,
  bundleStrings: false,
  useSelfDescribedHeader: false,
});

const decoder = new Decoder({
  useRecords: false,
  mapsAsObjects: true,
  // Decoded byte strings must not pin the whole MQTT packet buffer.
  copyBuffers: true,
  // uint64 timestamps come back as numbers, not bigint.
  int64AsNumber: true,
} as ConstructorParameters<typeof Decoder>[0]);

/** The same settings, but byte strings are views of the input: for buffers the caller owns outright (a decrypted record). */
const viewDecoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: false, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

/** Longest `type`, `id`, `from`, `corr` string accepted, characters. */
export const MAX_FIELD_CHARS = 256;
/** Longest `replyTo` topic accepted, characters. */
export const MAX_TOPIC_CHARS = 1024;

/** A fresh message id: 128 random bits, base64url (22 characters). */
export function newMessageId(): string {
  return randomId128();
}

function malformed(field: string, expected: string, got: unknown): FerryError {
  return new FerryError('ENVELOPE_MALFORMED', `envelope.${field} must be ${expected}, got ${describe(got)}`, { field: `envelope.${field}` });
}

/**
 * Whether an optional field is there. On the wire a key is there or not: present with the value
 * `undefined` (0xf7) is a value, and a wrong one. An object built in code may spell absent as
 * `undefined`.
 */
function given(o: Record<string, unknown>, field: string, wire: boolean): boolean {
  return wire ? Object.hasOwn(o, field) : o[field] !== undefined;
}

function checkString(o: Record<string, unknown>, field: string, required: boolean, max: number, wire: boolean): void {
  const v = o[field];
  if (!required && !given(o, field, wire)) return;
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw malformed(field, `a string of 1..${max} characters`, v);
}

/** True if `t` is a topic one may publish to: non-empty, no wildcards, no NUL. */
export function isPublishTopic(t: unknown): t is string {
  return typeof t === 'string' && t.length > 0 && t.length <= MAX_TOPIC_CHARS && !/[+#\u0000]/.test(t);
}

/**
 * Checks every field of a decoded value and returns it as an Envelope.
 * Throws ENVELOPE_VERSION for an unknown `v`, ENVELOPE_MALFORMED (naming the field) otherwise.
 * Unknown extra keys are ignored so a later minor revision can add optional fields.
 */
export function validateEnvelope(value: unknown, wire = false): Envelope {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw new FerryError('ENVELOPE_MALFORMED', `envelope must be a CBOR map, got ${describe(value)}`, { field: 'envelope' });
  }
  const o = value as Record<string, unknown>;
  // Version first: a future version may change every other field.
  if (typeof o.v !== 'number' || !Number.isInteger(o.v)) throw malformed('v', 'an integer', o.v);
  if (o.v !== ENVELOPE_VERSION) {
    throw new FerryError('ENVELOPE_VERSION', `envelope.v is ${o.v}; this end speaks version ${ENVELOPE_VERSION}`, { field: 'envelope.v', version: o.v });
  }
  checkString(o, 'type', true, MAX_FIELD_CHARS, wire);
  checkString(o, 'id', true, MAX_FIELD_CHARS, wire);
  checkString(o, 'from', true, MAX_FIELD_CHARS, wire);
  if (given(o, 'replyTo', wire) && !isPublishTopic(o.replyTo)) throw malformed('replyTo', `a topic of 1..${MAX_TOPIC_CHARS} characters without wildcards`, o.replyTo);
  checkString(o, 'corr', false, MAX_FIELD_CHARS, wire);
  if (typeof o.ts !== 'number' || !Number.isInteger(o.ts) || o.ts < 0) throw malformed('ts', 'a non-negative integer (ms since the epoch)', o.ts);
  if (given(o, 'ttl', wire) && (typeof o.ttl !== 'number' || !Number.isInteger(o.ttl) || o.ttl < 0)) throw malformed('ttl', 'a non-negative integer (ms)', o.ttl);
  // On the wire: present, whatever its value (`undefined`, 0xf7, is plain data of §3.2).
  if (wire ? !Object.hasOwn(o, 'body') : o.body === undefined) throw malformed('body', 'present (null for none)', o.body);
  const env: Envelope = { v: o.v, type: o.type as string, id: o.id as string, from: o.from as string, ts: o.ts, body: o.body };
  if (o.replyTo !== undefined) env.replyTo = o.replyTo as string;
  if (o.corr !== undefined) env.corr = o.corr as string;
  if (o.ttl !== undefined) env.ttl = o.ttl as number;
  return env;
}

/**
 * Encodes an envelope. Fields go out in a fixed order (v, type, id, from,
 * replyTo, corr, ts, ttl, body) and absent optional fields are left out.
 */
export function encodeEnvelope(env: Envelope): Buffer {
  const checked = validateEnvelope(env);
  const wire: Record<string, unknown> = { v: checked.v, type: checked.type, id: checked.id, from: checked.from };
  if (checked.replyTo !== undefined) wire.replyTo = checked.replyTo;
  if (checked.corr !== undefined) wire.corr = checked.corr;
  // cbor-x writes whole numbers above 2^32 as float64; a timestamp is an integer on the wire (uint64).
  wire.ts = checked.ts > 0xffffffff ? BigInt(checked.ts) : checked.ts;
  if (checked.ttl !== undefined) wire.ttl = checked.ttl > 0xffffffff ? BigInt(checked.ttl) : checked.ttl;
  wire.body = checked.body;
  try {
    return encoder.encode(wire);
  } catch (e) {
    throw new FerryError('ENVELOPE_MALFORMED', `envelope.body cannot be encoded as CBOR: ${(e as Error).message}`, { field: 'envelope.body' }, { cause: e });
  }
}

/**
 * Encodes an envelope this end built itself from checked parts (the bus's
 * requests and answers): the same bytes as `encodeEnvelope`, without re-checking
 * every field. Only the message `type` comes from a caller, so only it is checked.
 * One wire object per message, fields in wire order.
 */
export function encodeOwnEnvelope(type: string, id: string, from: string, replyTo: string | undefined, corr: string | undefined, ts: number, ttl: number | undefined, body: unknown): Buffer {
  if (typeof type !== 'string' || type.length === 0 || type.length > MAX_FIELD_CHARS) throw malformed('type', `a string of 1..${MAX_FIELD_CHARS} characters`, type);
  const tsWire = ts > 0xffffffff ? BigInt(ts) : ts;
  const ttlWire = ttl === undefined ? undefined : ttl > 0xffffffff ? BigInt(ttl) : ttl;
  // Literal shapes in wire order (a request has replyTo and ttl, an answer corr).
  const wire =
    replyTo !== undefined
      ? ttlWire !== undefined
        ? { v: ENVELOPE_VERSION, type, id, from, replyTo, ts: tsWire, ttl: ttlWire, body }
        : { v: ENVELOPE_VERSION, type, id, from, replyTo, ts: tsWire, body }
      : corr !== undefined
        ? { v: ENVELOPE_VERSION, type, id, from, corr, ts: tsWire, body }
        : { v: ENVELOPE_VERSION, type, id, from, ts: tsWire, body };
  if (body === undefined) (wire as { body: unknown }).body = null;
  try {
    return encoder.encode(wire);
  } catch (e) {
    throw new FerryError('ENVELOPE_MALFORMED', `envelope.body cannot be encoded as CBOR: ${(e as Error).message}`, { field: 'envelope.body' }, { cause: e });
  }
}

/** Decodes and validates one envelope. Never returns a partially checked value. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const r = readEnvelope(bytes);
  if (r.bodyError) throw r.bodyError;
  return r.env;
}

/**
 * Decodes one envelope like `decodeEnvelope`, except that a body outside Ferry's CBOR subset
 * (§3.2: a tag, a duplicate key, invalid UTF-8, nesting past the limit) does not lose the
 * envelope: it comes back with `body` null and the offence as `bodyError`, so a receiver that
 * answers requests (the app mailbox) can refuse the request rather than drop it unanswered.
 */
export function readEnvelope(bytes: Uint8Array): { env: Envelope; bodyError?: FerryError } {
  const scan = checkCborSubset(bytes, 'envelope');
  let source = bytes;
  const body = scan.top.body;
  if (scan.bodyError && body) {
    // The same map with the body's bytes replaced by null (0xf6): the map header counts entries, not bytes.
    const b = new Uint8Array(bytes.length - (body.end - body.start) + 1);
    b.set(bytes.subarray(0, body.start), 0);
    b[body.start] = 0xf6;
    b.set(bytes.subarray(body.end), body.start + 1);
    source = b;
  }
  let value: unknown;
  try {
    value = decoder.decode(source);
  } catch (e) {
    throw new FerryError('ENVELOPE_MALFORMED', `envelope is not valid CBOR: ${(e as Error).message}`, { field: 'envelope' }, { cause: e });
  }
  const env = validateEnvelope(value, true);
  checkWireIntegers(scan);
  return scan.bodyError ? { env, bodyError: scan.bodyError } : { env };
}

/** `v`, `ts` and `ttl` are unsigned integers on the wire (major type 0), not floats that happen to be whole. */
function checkWireIntegers(scan: SubsetScan): void {
  for (const k of ['v', 'ts', 'ttl'] as const) {
    const t = scan.top[k];
    if (t && t.major !== 0) throw malformed(k, 'an unsigned integer (CBOR major type 0)', t.major === 7 && t.info >= 25 && t.info <= 27 ? 'a float' : `CBOR major type ${t.major}`);
  }
}

/** Encodes any body value with the same standard-CBOR settings (used by bulk transfer and tests). */
export function encodeCbor(value: unknown): Buffer {
  return encoder.encode(value);
}

/** Decodes CBOR of Ferry's subset (§3.2) with the envelope decoder settings; throws ENVELOPE_MALFORMED. */
export function decodeCbor(bytes: Uint8Array): unknown {
  checkCborSubset(bytes, 'payload');
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new FerryError('ENVELOPE_MALFORMED', `payload is not valid CBOR: ${(e as Error).message}`, { field: 'payload' }, { cause: e });
  }
}

/**
 * `decodeCbor` for a buffer the caller owns and keeps whole (a record it just decrypted): byte
 * strings in the result are views of `bytes`, not copies. Never for a received packet buffer,
 * which a view would pin.
 */
export function decodeOwnedCbor(bytes: Uint8Array): unknown {
  checkCborSubset(bytes, 'payload');
  try {
    return viewDecoder.decode(bytes);
  } catch (e) {
    throw new FerryError('ENVELOPE_MALFORMED', `payload is not valid CBOR: ${(e as Error).message}`, { field: 'payload' }, { cause: e });
  }
}

/** True if the envelope's ttl has run out at `now` (allowing `skewMs` of clock difference). */
export function isExpired(env: Envelope, now: number, skewMs: number): boolean {
  return env.ttl !== undefined && now > env.ts + env.ttl + skewMs;
}
