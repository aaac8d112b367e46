import { FerryError } from '../../core/errors.js';
import { NAME } from '../runtime/app-definition.js';
import { SUMMARY_MAX_LINES, SummarySet, type EncodedSummarySet } from './summary-filter.js';

/**
 * The fleet's sealed records (transports/PROTOCOL.md §B.9): a device's region summaries and the
 * figures a peer needs to judge whether an instance fits there. Every field is checked on
 * arrival; a bad one is FLEET_SUMMARY_MALFORMED naming it, and nothing of the record is kept.
 */

/** What a device tells its peers about itself, beside its summaries. */
export interface DeviceFigures {
  profile: string;
  wordBits: 32 | 64;
  lineSize: number;
  /** The heap budget it gives each app, bytes. */
  heapBudgetBytes: number;
  /** Its link (its profile's), bits/s and one-way ms. */
  bandwidthBps: number;
  latencyMs: number;
  /** Instances running or arriving there, and its maxInstances. */
  instances: number;
  maxInstances: number;
  /** Service types its discovery finds (its own and the bus's). */
  services: string[];
  /** Code hashes of the app modules it holds. */
  codes: string[];
}

/** One heap's summary: the line hashes of every version of it the device keeps. */
export interface HeapSummary extends EncodedSummarySet {
  heap: string;
  /** The heap's newest committed version when the summary was made. */
  version: number;
}

/** A `fleet.summary` record (a push) and the answer to `fleet.summaries` (a pull). */
export interface SummaryRecord {
  v: 1;
  device: DeviceFigures;
  heaps: HeapSummary[];
  /** Heaps the device no longer holds. */
  removed: string[];
  /** `heaps` lists every heap it holds: the receiver forgets the others. */
  full: boolean;
  /** The sender's next message comes within this long (a change or a keepalive), ms. */
  nextWithinMs: number;
}

const PROFILE = /^[a-z0-9-]{1,40}$/;
const TYPE = /^[\x21-\x7e]{1,64}$/;
const CODE = /^[0-9a-f]{16,64}$/;
const MAX_HEAPS = 4096;
const MAX_LIST = 256;

function fail(field: string, expected: string): never {
  throw new FerryError('FLEET_SUMMARY_MALFORMED', `body.${field} must be ${expected}`, { field: `body.${field}` });
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail(field, 'a map');
  return v as Record<string, unknown>;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(field, `an integer in ${min}..${max}`);
  return v;
}

function strings(v: unknown, field: string, pattern: RegExp): string[] {
  if (!Array.isArray(v) || v.length > MAX_LIST) fail(field, `an array of at most ${MAX_LIST} strings`);
  return (v as unknown[]).map((s, i) => {
    if (typeof s !== 'string' || !pattern.test(s)) fail(`${field}[${i}]`, `a string matching ${pattern}`);
    return s;
  });
}

/** Checks a summary record from a peer; the decoded sets come back beside it, so a malformed set is refused with the rest. */
export function readSummaryRecord(b: unknown): { record: SummaryRecord; sets: Map<string, SummarySet> } {
  if (b === null || typeof b !== 'object' || Array.isArray(b) || b instanceof Uint8Array) {
    throw new FerryError('FLEET_SUMMARY_MALFORMED', 'body must be a map', { field: 'body' });
  }
  const r = b as Record<string, unknown>;
  if (r.v !== 1) fail('v', '1');
  const d = obj(r.device, 'device');
  if (typeof d.profile !== 'string' || !PROFILE.test(d.profile)) fail('device.profile', 'a profile name');
  if (d.wordBits !== 32 && d.wordBits !== 64) fail('device.wordBits', '32 or 64');
  const device: DeviceFigures = {
    profile: d.profile,
    wordBits: d.wordBits,
    lineSize: int(d.lineSize, 'device.lineSize', 256, 65_536),
    heapBudgetBytes: int(d.heapBudgetBytes, 'device.heapBudgetBytes', 0, 2 ** 46),
    bandwidthBps: int(d.bandwidthBps, 'device.bandwidthBps', 1000, 1e11),
    latencyMs: int(d.latencyMs, 'device.latencyMs', 0, 10_000),
    instances: int(d.instances, 'device.instances', 0, 1_000_000),
    maxInstances: int(d.maxInstances, 'device.maxInstances', 1, 1_000_000),
    services: strings(d.services, 'device.services', TYPE),
    codes: strings(d.codes, 'device.codes', CODE),
  };
  if (!Array.isArray(r.heaps) || r.heaps.length > MAX_HEAPS) fail('heaps', `an array of at most ${MAX_HEAPS} summaries`);
  const heaps: HeapSummary[] = [];
  const sets = new Map<string, SummarySet>();
  (r.heaps as unknown[]).forEach((h, i) => {
    const s = obj(h, `heaps[${i}]`);
    if (typeof s.heap !== 'string' || !NAME.test(s.heap)) fail(`heaps[${i}].heap`, 'an instance name');
    if (!(s.data instanceof Uint8Array)) fail(`heaps[${i}].data`, 'bytes');
    const e: HeapSummary = {
      heap: s.heap,
      version: int(s.version, `heaps[${i}].version`, 0, Number.MAX_SAFE_INTEGER),
      n: int(s.n, `heaps[${i}].n`, 1, SUMMARY_MAX_LINES),
      p: int(s.p, `heaps[${i}].p`, 1, 24),
      count: int(s.count, `heaps[${i}].count`, 0, SUMMARY_MAX_LINES),
      data: s.data,
    };
    sets.set(e.heap, SummarySet.decode(e, `body.heaps[${i}]`));
    heaps.push(e);
  });
  const removed = strings(r.removed ?? [], 'removed', NAME);
  if (typeof r.full !== 'boolean') fail('full', 'a boolean');
  const nextWithinMs = int(r.nextWithinMs, 'nextWithinMs', 200, 36_000_000);
  return { record: { v: 1, device, heaps, removed, full: r.full, nextWithinMs }, sets };
}
