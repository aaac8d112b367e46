/**
 * The services' wire vocabulary: topics and message bodies (transports/PROTOCOL.md,
 * "Services"). Request bodies arriving from the network are checked here, field by
 * field, so a malformed one becomes a SERVICE_BAD_REQUEST naming the field.
 */
import { FerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import type { RequestedDuration } from './lease-table.js';

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

export function bad(field: string, expected: string, got: unknown): FerryError {
  return new FerryError('SERVICE_BAD_REQUEST', `body.${field} must be ${expected}, got ${describe(got)}`, { field: `body.${field}` });
}

export function asMap(body: unknown, field = 'body'): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) {
    throw new FerryError('SERVICE_BAD_REQUEST', `${field} must be a CBOR map, got ${describe(body)}`, { field });
  }
  return body as Record<string, unknown>;
}

export function str(o: Record<string, unknown>, field: string, max = 256): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw bad(field, `a string of 1..${max} characters`, v);
  return v;
}

export function optStr(o: Record<string, unknown>, field: string, max = 256): string | undefined {
  return o[field] === undefined ? undefined : str(o, field, max);
}

export function duration(o: Record<string, unknown>, field: string, optional = false): RequestedDuration | undefined {
  const v = o[field];
  if (v === undefined && optional) return undefined;
  if (v === 'any') return 'any';
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** 31) throw bad(field, `"any" or an integer number of ms in 0..${2 ** 31}`, v);
  return v;
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

/** One entry of `lease.renew.ok`. */
export type RenewResult = { leaseId: string; ok: true; durationMs: number; fence?: number } | { leaseId: string; ok: false; code: string; message: string };

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
