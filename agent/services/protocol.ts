/**
 * The services' wire vocabulary: topics and message bodies (transports/PROTOCOL.md,
 * "Services"). Request bodies arriving from the network are checked here, field by
 * field, so a malformed one becomes a SERVICE_BAD_REQUEST naming the field.
 */
import { FerryError, type ErrorCode } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import type { Envelope } from '../../transports/contract.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import type { ErrorAnswerBody } from '../../transports/pending-requests.js';
import type { RequestedDuration } from './lease-table.js';
import { TOPIC_LEVEL } from './options.js';

export const SCHEMA = 1;

export const topics = (prefix: string) => ({
  /** Retained service description, one per service. */
  announce: (deviceId: string, name: string) => `${prefix}/svc/${deviceId}/${name}`,
  announceFilter: `${prefix}/svc/+/+`,
  /** Retained death notice of a device's connection (its MQTT will). */
  death: (deviceId: string) => `${prefix}/svc-death/${deviceId}`,
  deathFilter: `${prefix}/svc-death/+`,
  /** A grantor's request topic (lease.grant, lease.renew, lease.cancel, lease.handover). */
  lease: (deviceId: string) => `${prefix}/lease/${deviceId}`,
  /** Calls on a system service. */
  call: (deviceId: string, name: string) => `${prefix}/svc-call/${deviceId}/${name}`,
  /** A space's request topic. */
  space: (deviceId: string, name: string) => `${prefix}/space/${deviceId}/${name}`,
});

/** SERVICE_BAD_REQUEST naming a full field path (`body.leases[3].leaseId`, `envelope.from`). */
export function badAt(field: string, expected: string, got: unknown): FerryError {
  return new FerryError('SERVICE_BAD_REQUEST', `${field} must be ${expected}, got ${describe(got)}`, { field });
}

/** SERVICE_BAD_REQUEST naming a field of the request body (`body.<field>`). */
export function bad(field: string, expected: string, got: unknown): FerryError {
  return badAt(`body.${field}`, expected, got);
}

export function asMap(body: unknown, field = 'body'): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) {
    throw new FerryError('SERVICE_BAD_REQUEST', `${field} must be a CBOR map, got ${describe(body)}`, { field });
  }
  return body as Record<string, unknown>;
}

/** A text field of 1..max characters of the map at path `at` (errors name `<at>.<field>`). */
export function str(o: Record<string, unknown>, field: string, max = 256, at = 'body'): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw badAt(`${at}.${field}`, `a string of 1..${max} characters`, v);
  return v;
}

export function optStr(o: Record<string, unknown>, field: string, max = 256, at = 'body'): string | undefined {
  return o[field] === undefined ? undefined : str(o, field, max, at);
}

export function duration(o: Record<string, unknown>, field: string, optional = false, at = 'body'): RequestedDuration | undefined {
  const v = o[field];
  if (v === undefined && optional) return undefined;
  if (v === 'any') return 'any';
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** 31) throw badAt(`${at}.${field}`, `"any" or an integer number of ms in 0..${2 ** 31}`, v);
  return v;
}

/** An optional unsigned integer (≤ 2^53 − 1), e.g. a fencing token. */
export function optUint(o: Record<string, unknown>, field: string, at = 'body'): number | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badAt(`${at}.${field}`, 'a non-negative integer', v);
  return v;
}

/**
 * A holder's id: a device id as transports/PROTOCOL.md §2 defines it (1..64 characters of
 * `A-Z a-z 0-9 . _ : -`, starting with a letter or digit; an app instance id is one too).
 * No topic wildcards, no `/`: a holder id becomes part of topics and of answers.
 */
export function holderId(v: unknown, field: string): string {
  if (typeof v !== 'string' || !DEVICE_ID_PATTERN.test(v)) {
    throw badAt(field, 'a device id (1..64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit)', v);
  }
  return v;
}

/**
 * Checks a service request's envelope before its body, in this order: the message type
 * (one of `types`, else SERVICE_BAD_REQUEST naming `envelope.type`), the sender (a device id,
 * else naming `envelope.from`), then the body (a map, else naming `body`).
 */
export function requestBody(env: Envelope, types: readonly string[], what: string): Record<string, unknown> {
  requestEnvelope(env, types, what);
  return asMap(env.body);
}

/** The envelope half of `requestBody`: type, then sender. */
export function requestEnvelope(env: Envelope, types: readonly string[], what: string): void {
  if (!types.includes(env.type)) {
    throw new FerryError('SERVICE_BAD_REQUEST', `message type ${describe(env.type)} is not a request of ${what} (${types.join(', ')})`, { field: 'envelope.type' });
  }
  holderId(env.from, 'envelope.from');
}

/**
 * The `service` of a `lease.grant` (PROTOCOL §S.3): the service's name at this grantor, or its
 * id `<grantor>/<name>`. Returns the name; an id of another device is SERVICE_NOT_FOUND.
 */
export function serviceName(v: string, grantor: string): string {
  const slash = v.indexOf('/');
  const name = slash < 0 ? v : v.slice(slash + 1);
  const device = slash < 0 ? grantor : v.slice(0, slash);
  if (!TOPIC_LEVEL.test(name) || !DEVICE_ID_PATTERN.test(device)) {
    throw badAt('body.service', 'a service name (1..128 characters of A-Z a-z 0-9 . _ : @ ~ -) or <grantor>/<name>', v);
  }
  if (device !== grantor) {
    throw new FerryError('SERVICE_NOT_FOUND', `service ${JSON.stringify(v)} is offered by device ${device}, not by this grantor (${grantor}); send its lease requests to ${device}'s leaseTopic`, { field: 'body.service' });
  }
  return name;
}

/** An error answer remembered for a repeated request, thrown again as it was answered (code, message, field, details). */
export function errorAgain(b: ErrorAnswerBody): FerryError {
  const details: Record<string, unknown> = { ...(b.details ?? {}) };
  if (b.field !== undefined) details.field = b.field;
  return new FerryError(b.code as ErrorCode, b.message, details);
}

/** The same error with its field moved under `at` (`body.leaseId` → `body.leases[3].leaseId`). */
export function refield(e: FerryError, at: string): FerryError {
  const f = e.details.field;
  if (typeof f === 'string' && f.startsWith('body.')) e.details.field = `${at}.${f.slice(5)}`;
  return e;
}

// ---- bodies ----

/** `lease.grant` request. */
export interface GrantBody {
  /** Service name at this grantor (the last level of its announcement topic). */
  service: string;
  durationMs: RequestedDuration;
  /** Client request id; a repeat with the same id from the same sender gets the same answer. */
  reqId: string;
}

/** `lease.grant.ok`, and each successful entry of a renewal batch / handover answer. */
export interface LeaseInfo {
  leaseId: string;
  service: string;
  holder: string;
  exclusive: boolean;
  /** Granted duration of the current term, ms (counts from when the grantor handled the request). */
  durationMs: number;
  fence?: number;
}

/** `lease.renew` request: one message renewing many leases at one grantor. */
export interface RenewBody {
  reqId: string;
  leases: { leaseId: string; durationMs: RequestedDuration }[];
}

/**
 * One entry of `lease.renew.ok`. A failed entry carries its error like an `error` answer
 * (§4.1): code, message, the field (`body.leases[i].leaseId`, ...) and the code's details.
 */
export type RenewResult =
  | { leaseId: string; ok: true; durationMs: number; fence?: number }
  | { leaseId: string; ok: false; code: string; message: string; field?: string; details?: Record<string, string | number | boolean> };

export interface CancelBody {
  reqId: string;
  leaseId: string;
}

export interface HandoverBody {
  reqId: string;
  leaseId: string;
  newHolder: string;
  durationMs?: RequestedDuration;
}

/** Retained service description. */
export interface ServiceDescription {
  /** Description schema version; this code writes 1. */
  schema: number;
  /** `<provider>/<name>`: unique in the federation. */
  id: string;
  name: string;
  type: string;
  /** Flat attributes matched by lookup: string, number or boolean values. */
  attrs: Record<string, string | number | boolean>;
  provider: string;
  exclusive: boolean;
  maxHolders?: number;
  /** The provider's connection epoch when announced; grows on every connection. */
  epoch: number;
  /** Where lease requests go. */
  leaseTopic: string;
  /** Where calls go (system services). */
  callTopic?: string;
}

export function checkAttrs(v: unknown, field: string): Record<string, string | number | boolean> {
  const o = asMap(v ?? {}, field);
  for (const [k, x] of Object.entries(o)) {
    if (typeof x !== 'string' && typeof x !== 'number' && typeof x !== 'boolean') {
      throw new FerryError('SERVICE_BAD_REQUEST', `${field}.${k} must be a string, number or boolean, got ${describe(x)}`, { field: `${field}.${k}` });
    }
  }
  return o as Record<string, string | number | boolean>;
}

export function parseDescription(body: unknown): ServiceDescription {
  const o = asMap(body, 'description');
  if (o.schema !== SCHEMA) throw bad('schema', `${SCHEMA}`, o.schema);
  const epoch = o.epoch;
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0) throw bad('epoch', 'a non-negative integer', epoch);
  if (typeof o.exclusive !== 'boolean') throw bad('exclusive', 'a boolean', o.exclusive);
  const d: ServiceDescription = {
    schema: SCHEMA,
    id: str(o, 'id', 300),
    name: str(o, 'name', 128),
    type: str(o, 'type', 128),
    attrs: checkAttrs(o.attrs, 'attrs'),
    provider: str(o, 'provider', 128),
    exclusive: o.exclusive,
    epoch,
    leaseTopic: str(o, 'leaseTopic', 1024),
  };
  if (o.maxHolders !== undefined) {
    if (typeof o.maxHolders !== 'number' || !Number.isInteger(o.maxHolders) || o.maxHolders < 1) throw bad('maxHolders', 'a positive integer', o.maxHolders);
    d.maxHolders = o.maxHolders;
  }
  const call = optStr(o, 'callTopic', 1024);
  if (call !== undefined) d.callTopic = call;
  return d;
}
