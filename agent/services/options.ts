/**
 * One typed options object per part of the services layer. Every field says its
 * unit, default and limits; every reader validates on entry and names the bad
 * field (`options.maxDurationMs must be an integer in 1..86400000, got 0`).
 */
import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import type { Clock } from './clock.js';
import { DEFAULT_LOG_LIMITS, ServicesLog, type ResolvedLogLimits, type ServicesLogLimits, type ServicesLogSink } from './service-log.js';

const DAY = 86_400_000;
const TOPIC_PREFIX = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;
/** Device ids, service names and space names become topic levels: no `/ + #`, no NUL. */
export const TOPIC_LEVEL = /^[A-Za-z0-9._:@~-]{1,128}$/;

function reader(o: unknown, prefix: string): OptionReader {
  return new OptionReader((o ?? {}) as Record<string, unknown>, prefix);
}

// ---------------------------------------------------------------- log

/**
 * The `log` option of each part (grantor, discovery, spaces, system services): where lines
 * about malformed and refused messages go (service-log.ts). Either a sink
 * `(level, event, fields) => void`, rate-limited with the default limits
 * (5 lines per source per 60 s, 100 in all), or a `ServicesLog` shared by a device's parts
 * (`startServices` makes one from its `log` and `logLimits`). Default: no log.
 */
export type ServicesLogOption = ServicesLogSink | ServicesLog;

export function readLogOption(r: OptionReader, clock?: Clock): ServicesLog {
  const v = r.raw('log');
  if (v === undefined) return new ServicesLog(undefined);
  if (v instanceof ServicesLog) return v;
  if (typeof v !== 'function') r.fail('log', 'a function (level, event, fields) or a ServicesLog', v);
  return new ServicesLog(v as ServicesLogSink, DEFAULT_LOG_LIMITS, clock);
}

export function readLogLimits(o: ServicesLogLimits | undefined, prefix = 'options.logLimits'): ResolvedLogLimits {
  const r = reader(o, prefix);
  r.rejectUnknown(['linesPerSource', 'intervalMs', 'maxLines']);
  return {
    linesPerSource: r.number('linesPerSource', { min: 1, max: 10_000 }, DEFAULT_LOG_LIMITS.linesPerSource),
    intervalMs: r.number('intervalMs', { min: 100, max: DAY }, DEFAULT_LOG_LIMITS.intervalMs),
    maxLines: r.number('maxLines', { min: 1, max: 1_000_000 }, DEFAULT_LOG_LIMITS.maxLines),
  };
}

// ---------------------------------------------------------------- lease table

export interface LeaseTableOptions {
  /** Shortest term the grantor accepts; a shorter request gets LEASE_DENIED. ms, default 100, limits 1..86,400,000. */
  minDurationMs?: number;
  /** Longest term granted; a longer request is cut to this. ms, default 60,000, limits minDurationMs..86,400,000. Also bounds the restart grace (lease-grantor.ts). */
  maxDurationMs?: number;
  /** Term granted for `'any'`. ms, default 10,000 (cut to maxDurationMs), limits minDurationMs..maxDurationMs. */
  defaultDurationMs?: number;
  /** How long an ended lease is remembered, so a late renew gets LEASE_EXPIRED and a repeated cancel succeeds. ms, default 600,000, limits 0..86,400,000. */
  tombstoneMs?: number;
  /** Most tombstones kept (oldest dropped first). ~120 bytes each. Default 100,000, limits 0..10,000,000. */
  maxTombstones?: number;
  /** Most live leases one grantor holds; more get LEASE_DENIED. Default 100,000, limits 1..10,000,000. */
  maxLeases?: number;
}

export type ResolvedLeaseTableOptions = Required<LeaseTableOptions>;

export const LEASE_TABLE_FIELDS = ['minDurationMs', 'maxDurationMs', 'defaultDurationMs', 'tombstoneMs', 'maxTombstones', 'maxLeases'] as const;

export function readLeaseTableOptions(o: LeaseTableOptions = {}, prefix = 'options', r = reader(o, prefix), known: readonly string[] = LEASE_TABLE_FIELDS): ResolvedLeaseTableOptions {
  r.rejectUnknown(known);
  const minDurationMs = r.number('minDurationMs', { min: 1, max: DAY }, 100);
  const maxDurationMs = r.number('maxDurationMs', { min: minDurationMs, max: DAY }, Math.max(60_000, minDurationMs));
  const defaultDurationMs = r.number('defaultDurationMs', { min: minDurationMs, max: maxDurationMs }, Math.min(Math.max(10_000, minDurationMs), maxDurationMs));
  return {
    minDurationMs,
    maxDurationMs,
    defaultDurationMs,
    tombstoneMs: r.number('tombstoneMs', { min: 0, max: DAY }, 600_000),
    maxTombstones: r.number('maxTombstones', { min: 0, max: 10_000_000 }, 100_000),
    maxLeases: r.number('maxLeases', { min: 1, max: 10_000_000 }, 100_000),
  };
}

// ---------------------------------------------------------------- grantor

export interface LeaseGrantorOptions extends LeaseTableOptions {
  /**
   * SQLite file holding the fencing-token high-water mark and the lease horizon,
   * so tokens never go backwards across a restart. Required. Created if missing.
   */
  stateFile: string;
  /** Fencing tokens reserved per write of the state file: a restart skips at most this many. Default 1,000, limits 1..1,000,000. */
  fenceBlock?: number;
  /** How often expired leases are swept (and their ends reported). ms, default 250, limits 10..60,000. */
  sweepIntervalMs?: number;
  /** How long an answer is kept for a repeated request id (idempotent retries). ms, default 120,000, limits 1,000..3,600,000. */
  dedupeWindowMs?: number;
  /** Most answers kept for repeats. Default 200,000, limits 100..10,000,000. */
  maxDedupe?: number;
  /** Most leases one renewal batch may carry. Default 1,000, limits 1..100,000. */
  maxBatch?: number;
  /** First topic level(s) of every services topic. Default `ferry/v1`. */
  topicPrefix?: string;
  /** Where refused malformed requests are logged (see ServicesLogOption). Default: no log. */
  log?: ServicesLogOption;
}

export interface ResolvedGrantorOptions {
  table: ResolvedLeaseTableOptions;
  stateFile: string;
  fenceBlock: number;
  sweepIntervalMs: number;
  dedupeWindowMs: number;
  maxDedupe: number;
  maxBatch: number;
  topicPrefix: string;
  log: ServicesLog;
}

export function readGrantorOptions(o: LeaseGrantorOptions): ResolvedGrantorOptions {
  const r = reader(o, 'options');
  const own = ['stateFile', 'fenceBlock', 'sweepIntervalMs', 'dedupeWindowMs', 'maxDedupe', 'maxBatch', 'topicPrefix', 'log'];
  const table = readLeaseTableOptions(o, 'options', r, [...LEASE_TABLE_FIELDS, ...own]);
  return {
    table,
    stateFile: r.string('stateFile'),
    fenceBlock: r.number('fenceBlock', { min: 1, max: 1_000_000 }, 1000),
    sweepIntervalMs: r.number('sweepIntervalMs', { min: 10, max: 60_000 }, 250),
    dedupeWindowMs: r.number('dedupeWindowMs', { min: 1000, max: 3_600_000 }, 120_000),
    maxDedupe: r.number('maxDedupe', { min: 100, max: 10_000_000 }, 200_000),
    maxBatch: r.number('maxBatch', { min: 1, max: 100_000 }, 1000),
    topicPrefix: r.string('topicPrefix', 'ferry/v1', TOPIC_PREFIX),
    log: readLogOption(r),
  };
}

// ---------------------------------------------------------------- client

export interface LeaseClientOptions {
  /** How long to wait for each answer. ms, default 2,000, limits 50..60,000. */
  timeoutMs?: number;
  /** Resends (same request id, so never a second grant) after a timeout. Default 2, limits 0..20. */
  retries?: number;
}

export function readClientOptions(o: LeaseClientOptions = {}): Required<LeaseClientOptions> {
  const r = reader(o, 'options');
  r.rejectUnknown(['timeoutMs', 'retries']);
  return {
    timeoutMs: r.number('timeoutMs', { min: 50, max: 60_000 }, 2000),
    retries: r.number('retries', { min: 0, max: 20 }, 2),
  };
}

// ---------------------------------------------------------------- renewal manager

export interface RenewalManagerOptions {
  /** Least time before the granted expiry at which a renewal is sent. ms, default 300, limits 0..600,000. */
  minMarginMs?: number;
  /** Renew ahead by this many measured round trips when that is more than minMarginMs. Default 4, limits 1..100 (number). */
  rttFactor?: number;
  /** Leases to the same grantor due within this window of the first one ride in the same batch. ms, default 1,000, limits 0..600,000. */
  batchWindowMs?: number;
  /** Most leases in one renewal message. Default 500, limits 1..100,000. */
  maxBatch?: number;
  /** Wait before retrying a failed (timed-out) renewal. ms, default 200, limits 10..60,000. */
  retryMs?: number;
  /** Duration asked for on each renewal (cut to the desired end). ms or `'any'`, default `'any'`. */
  renewDurationMs?: number | 'any';
}

export function readRenewalOptions(o: RenewalManagerOptions = {}): Required<RenewalManagerOptions> {
  const r = reader(o, 'options');
  r.rejectUnknown(['minMarginMs', 'rttFactor', 'batchWindowMs', 'maxBatch', 'retryMs', 'renewDurationMs']);
  const rd = r.raw('renewDurationMs');
  return {
    minMarginMs: r.number('minMarginMs', { min: 0, max: 600_000 }, 300),
    rttFactor: r.number('rttFactor', { min: 1, max: 100, integer: false }, 4),
    batchWindowMs: r.number('batchWindowMs', { min: 0, max: 600_000 }, 1000),
    maxBatch: r.number('maxBatch', { min: 1, max: 100_000 }, 500),
    retryMs: r.number('retryMs', { min: 10, max: 60_000 }, 200),
    renewDurationMs: rd === undefined || rd === 'any' ? 'any' : r.number('renewDurationMs', { min: 1, max: DAY }),
  };
}

// ---------------------------------------------------------------- discovery

export interface DiscoveryOptions {
  /**
   * File holding this device's connection epoch (a decimal integer, replaced
   * atomically). Optional: without it the epoch is the wall clock in ms, which
   * also grows across restarts as long as the clock does not go backwards.
   */
  epochFile?: string;
  /** First topic level(s) of every services topic. Default `ferry/v1`. */
  topicPrefix?: string;
  /** Where ignored descriptions and death notices are logged (see ServicesLogOption). Default: no log. */
  log?: ServicesLogOption;
}

export function readDiscoveryOptions(o: DiscoveryOptions = {}): { epochFile?: string; topicPrefix: string; log: ServicesLog } {
  const r = reader(o, 'options');
  r.rejectUnknown(['epochFile', 'topicPrefix', 'log']);
  return {
    ...(r.has('epochFile') ? { epochFile: r.string('epochFile') } : {}),
    topicPrefix: r.string('topicPrefix', 'ferry/v1', TOPIC_PREFIX),
    log: readLogOption(r),
  };
}

// ---------------------------------------------------------------- spaces

export interface SpaceOptions extends LeaseTableOptions {
  /**
   * Space name, a topic level of `[A-Za-z0-9._:@~-]`, 1..122 characters (its description is
   * announced as the service `space.<name>`, a 128-character topic level). Required; unique
   * among the spaces of a device (another space of that name on the bus is BAD_OPTION).
   */
  name: string;
  /** `transient`: entries in memory at the host (rendezvous). `persistent`: entries in the device's store. Default `transient`. */
  kind?: 'transient' | 'persistent';
  /**
   * The device's store (`openStore`, store/) that keeps a persistent space, as the app
   * `space.<name>` (so a persistent space's name is limited to letters, digits and `. _ : -`).
   * Required when kind is `persistent`, refused otherwise. The space never closes it.
   */
  store?: import('../../store/index.js').Store;
  /** Most entries held. Default 10,000, limits 1..10,000,000. */
  maxEntries?: number;
  /** Largest entry, CBOR-encoded bytes. Default 65,536, limits 16..16,777,216. */
  maxEntryBytes?: number;
  /** How often expired entries are swept. ms, default 250, limits 10..60,000. */
  sweepIntervalMs?: number;
  /** First topic level(s). Default `ferry/v1`. */
  topicPrefix?: string;
  /**
   * The device's Discovery: the space is announced through it (a description of type `space`,
   * PROTOCOL §S.6) while it runs, and withdrawn at close. Default none: the space is served
   * but not announced (a client must be told its topic). `Services.hostSpace` passes the
   * device's own.
   */
  discovery?: import('./discovery.js').Discovery;
  /** Where refused malformed requests are logged (see ServicesLogOption). Default: no log. */
  log?: ServicesLogOption;
}

export interface ResolvedSpaceOptions {
  table: ResolvedLeaseTableOptions;
  name: string;
  kind: 'transient' | 'persistent';
  store?: import('../../store/index.js').Store;
  maxEntries: number;
  maxEntryBytes: number;
  sweepIntervalMs: number;
  topicPrefix: string;
  discovery?: import('./discovery.js').Discovery;
  log: ServicesLog;
}

/** Space names: a topic level short enough that `space.<name>` is one too. */
const SPACE_NAME = /^[A-Za-z0-9._:@~-]{1,122}$/;

export function readSpaceOptions(o: SpaceOptions): ResolvedSpaceOptions {
  const r = reader(o, 'options');
  const own = ['name', 'kind', 'store', 'maxEntries', 'maxEntryBytes', 'sweepIntervalMs', 'topicPrefix', 'discovery', 'log'];
  const table = readLeaseTableOptions(o, 'options', r, [...LEASE_TABLE_FIELDS, ...own]);
  const kind = r.oneOf('kind', ['transient', 'persistent'] as const, 'transient');
  const store = r.raw('store') as { begin?: unknown; createApp?: unknown } | undefined;
  if (kind === 'persistent' && (store === null || typeof store !== 'object' || typeof store.begin !== 'function' || typeof store.createApp !== 'function')) {
    r.fail('store', "the device's Store (openStore) for a persistent space", store);
  }
  if (kind === 'transient' && r.has('store')) r.fail('store', 'absent for a transient space', store);
  const discovery = r.raw('discovery') as { announce?: unknown; withdraw?: unknown } | undefined;
  if (discovery !== undefined && (discovery === null || typeof discovery !== 'object' || typeof discovery.announce !== 'function' || typeof discovery.withdraw !== 'function')) {
    r.fail('discovery', "the device's Discovery", discovery);
  }
  return {
    table,
    name: r.string('name', undefined, SPACE_NAME),
    kind,
    ...(kind === 'persistent' ? { store: store as unknown as import('../../store/index.js').Store } : {}),
    maxEntries: r.number('maxEntries', { min: 1, max: 10_000_000 }, 10_000),
    maxEntryBytes: r.number('maxEntryBytes', { min: 16, max: 16_777_216 }, 65_536),
    sweepIntervalMs: r.number('sweepIntervalMs', { min: 10, max: 60_000 }, 250),
    topicPrefix: r.string('topicPrefix', 'ferry/v1', TOPIC_PREFIX),
    ...(discovery !== undefined ? { discovery: discovery as unknown as import('./discovery.js').Discovery } : {}),
    log: readLogOption(r),
  };
}

/** Checks a value is a topic level; names the field. */
export function topicLevel(value: unknown, field: string): string {
  if (typeof value !== 'string' || !TOPIC_LEVEL.test(value)) {
    throw new FerryError('BAD_OPTION', `${field} must be a string of [A-Za-z0-9._:@~-], 1..128 characters, got ${JSON.stringify(value)}`, { field });
  }
  return value;
}

// ---------------------------------------------------------------- system services

export interface SystemServicesOptions {
  /** The device's hardware profile name (built-in) or the profile itself; its `services` are offered. Required. */
  profile: string | import('../../hw-profiles/index.js').HwProfile;
  /** Offer only these kinds (each must be in the profile). Default: all of the profile's services. */
  kinds?: string[];
  /** Seed of the emulated drivers' deterministic readings (sensor, gps, camera). Integer, default 1, limits 0..2^31−1. */
  seed?: number;
  /** Most frames/tones/codes an emulated output device records (oldest dropped). Default 1,000, limits 1..1,000,000. */
  maxRecorded?: number;
  /** Where refused malformed calls are logged (see ServicesLogOption). Default: no log. */
  log?: ServicesLogOption;
}

export function readSystemServicesOptions(o: SystemServicesOptions): { profile: unknown; kinds: string[] | undefined; seed: number; maxRecorded: number; log: ServicesLog } {
  const r = reader(o, 'options');
  r.rejectUnknown(['profile', 'kinds', 'seed', 'maxRecorded', 'log']);
  const profile = r.raw('profile');
  if (typeof profile !== 'string' && (profile === null || typeof profile !== 'object')) r.fail('profile', 'a profile name or an HwProfile', profile);
  const kinds = r.raw('kinds');
  if (kinds !== undefined && (!Array.isArray(kinds) || !kinds.every((k) => typeof k === 'string'))) r.fail('kinds', 'an array of service kinds', kinds);
  return {
    profile,
    kinds: kinds as string[] | undefined,
    seed: r.number('seed', { min: 0, max: 2 ** 31 - 1 }, 1),
    maxRecorded: r.number('maxRecorded', { min: 1, max: 1_000_000 }, 1000),
    log: readLogOption(r),
  };
}
