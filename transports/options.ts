import { FerryError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';
import type { LinkProfile } from '../hw-profiles/index.js';
import type { BusSessionOptions, BusWill } from './contract.js';

/**
 * Every options object of `transports/`, one per part, each field with its
 * unit, default and limits. Each `read*` validates on entry and names the bad
 * field (`options.maxInFlight must be an integer in 1..65535, got 0`).
 */

/** The bus's default largest payload, bytes (PROTOCOL.md §1). */
export const DEFAULT_MAX_MESSAGE_BYTES = 262_144;

/** A device id: one MQTT topic level, so no `/`, `+`, `#`. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** A broker URL: `mqtt://host:port` or `mqtts://host:port`. */
export const BROKER_URL_PATTERN = /^mqtts?:\/\/[^/\s]+:\d{1,5}\/?$/;

/** MQTT's own ceiling on a packet's remaining length, bytes. */
export const MQTT_MAX_PACKET_BYTES = 268_435_455;

export interface BusOptions extends BusSessionOptions {
  /** Broker URL, `mqtt://host:port` (TCP) or `mqtts://host:port` (TLS, see `tls`). Required. */
  url: string;
  /** This end's id (1..64 of `A-Z a-z 0-9 . _ : -`, starting alphanumeric): `from` of every envelope and the inbox topic level. Required. */
  deviceId: string;
  /** MQTT client id. Default `<deviceId>-<8 hex>` so two buses of one device never take over each other's session. 1..128 characters. */
  clientId?: string;
  /** MQTT keepalive, seconds. Default 30. Limits 0..65535 (0 = off). */
  keepaliveSeconds?: number;
  /** Time allowed for TCP connect + CONNACK, ms. Default 10,000. Limits 100..600,000. */
  connectTimeoutMs?: number;
  /** First reconnect delay after a lost connection, ms; doubles per failed attempt. Default 100. Limits 10..60,000. */
  reconnectMinMs?: number;
  /** Ceiling of the reconnect delay, ms. Default 5,000. Limits reconnectMinMs..600,000. */
  reconnectMaxMs?: number;
  /** Largest MQTT payload sent or accepted, bytes. Bigger ones are refused with MESSAGE_TOO_LARGE. Default 262,144 (256 KiB). Limits 1,024..268,435,455. */
  maxMessageBytes?: number;
  /** Publishes handed to the MQTT client and not yet acknowledged (PUBACK for QoS 1, written for QoS 0). Default 16. Limits 1..65,535. Higher: more throughput on long links, more memory and more resends after a cut. */
  maxInFlight?: number;
  /** Publishes waiting behind the in-flight window; one more is refused with BUS_QUEUE_FULL. Default 10,000. Limits 0..1,000,000. */
  maxQueued?: number;
  /** While disconnected: true = queue publishes (bounded by maxQueued) until reconnected; false = refuse them with BUS_OFFLINE. Default true. */
  offlineQueue?: boolean;
  /** Message ids remembered to drop QoS 1 redeliveries (LRU). Default 4,096. Limits 16..1,000,000. ~100 bytes each. */
  dedupeWindow?: number;
  /** Default request timeout, ms. Default 5,000. Limits 1..3,600,000. */
  requestTimeoutMs?: number;
  /** Clock difference tolerated when checking a message's ttl, ms. Default 1,000. Limits 0..3,600,000. */
  maxClockSkewMs?: number;
  /** Wall clock, ms since the epoch, for `ts` and ttl checks. Default Date.now. Tests inject one. */
  now?: () => number;
}

export interface ResolvedBusOptions extends Required<Omit<BusOptions, 'clientId' | keyof BusSessionOptions>> {
  clientId: string;
  will: BusWill | (() => BusWill) | undefined;
  username: string | undefined;
  password: Buffer | undefined;
  tls: BusSessionOptions['tls'];
}

const BUS_KEYS = [
  'url', 'deviceId', 'clientId', 'keepaliveSeconds', 'connectTimeoutMs', 'reconnectMinMs', 'reconnectMaxMs', 'maxMessageBytes',
  'maxInFlight', 'maxQueued', 'offlineQueue', 'dedupeWindow', 'requestTimeoutMs', 'maxClockSkewMs', 'now',
  'will', 'username', 'password', 'tls',
] as const;

function fn<T>(r: OptionReader, name: string, fallback: T): T {
  const v = r.raw(name);
  if (v === undefined) return fallback;
  if (typeof v !== 'function') r.fail(name, 'a function', v);
  return v as T;
}

export function readBusOptions(options: BusOptions): ResolvedBusOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(BUS_KEYS);
  const url = r.string('url', undefined, BROKER_URL_PATTERN);
  const deviceId = r.string('deviceId', undefined, DEVICE_ID_PATTERN);
  const clientId = r.has('clientId') ? r.string('clientId', undefined, /^[^\u0000]{1,128}$/) : `${deviceId}-${Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0')}`;
  const reconnectMinMs = r.number('reconnectMinMs', { min: 10, max: 60_000 }, 100);
  return {
    url,
    deviceId,
    clientId,
    keepaliveSeconds: r.number('keepaliveSeconds', { min: 0, max: 65_535 }, 30),
    connectTimeoutMs: r.number('connectTimeoutMs', { min: 100, max: 600_000 }, 10_000),
    reconnectMinMs,
    reconnectMaxMs: r.number('reconnectMaxMs', { min: reconnectMinMs, max: 600_000 }, Math.max(5_000, reconnectMinMs)),
    maxMessageBytes: r.number('maxMessageBytes', { min: 1024, max: MQTT_MAX_PACKET_BYTES }, DEFAULT_MAX_MESSAGE_BYTES),
    maxInFlight: r.number('maxInFlight', { min: 1, max: 65_535 }, 16),
    maxQueued: r.number('maxQueued', { min: 0, max: 1_000_000 }, 10_000),
    offlineQueue: r.boolean('offlineQueue', true),
    dedupeWindow: r.number('dedupeWindow', { min: 16, max: 1_000_000 }, 4096),
    requestTimeoutMs: r.number('requestTimeoutMs', { min: 1, max: 3_600_000 }, 5000),
    maxClockSkewMs: r.number('maxClockSkewMs', { min: 0, max: 3_600_000 }, 1000),
    now: fn(r, 'now', Date.now),
    will: readWill(r),
    username: r.has('username') ? r.string('username') : undefined,
    password: readPassword(r),
    tls: readTls(r, url),
  };
}

/** Checks a will (a function is checked each time it is called, by the bus). */
export function checkWill(w: unknown, field: string): BusWill {
  const r = new OptionReader(w as Record<string, unknown>, field);
  r.rejectUnknown(['topic', 'type', 'body', 'retain', 'qos']);
  const topic = r.string('topic');
  if (/[+#\u0000]/.test(topic)) r.fail('topic', 'a topic without wildcards', topic);
  const will: BusWill = { topic, type: r.string('type'), body: r.raw('body') ?? null, retain: r.boolean('retain', false) };
  const qos = r.raw('qos') ?? 1;
  if (qos !== 0 && qos !== 1) r.fail('qos', '0 or 1', qos);
  will.qos = qos as 0 | 1;
  return will;
}

function readWill(r: OptionReader): BusWill | (() => BusWill) | undefined {
  const w = r.raw('will');
  if (w === undefined) return undefined;
  if (typeof w === 'function') return w as () => BusWill;
  return checkWill(w, 'options.will');
}

export function readPassword(r: OptionReader): Buffer | undefined {
  const p = r.raw('password');
  if (p === undefined) return undefined;
  if (typeof p === 'string') return Buffer.from(p, 'utf8');
  if (p instanceof Uint8Array) return Buffer.from(p);
  return r.fail('password', 'a string or a Uint8Array', p);
}

export function readTls(r: OptionReader, url: string): BusSessionOptions['tls'] {
  const t = r.raw('tls');
  if (t === undefined) return undefined;
  if (!url.startsWith('mqtts://')) r.fail('tls', 'used only with an mqtts:// url', t);
  const tr = new OptionReader(t as Record<string, unknown>, 'options.tls');
  tr.rejectUnknown(['ca', 'cert', 'key', 'servername', 'rejectUnauthorized']);
  const out: NonNullable<BusSessionOptions['tls']> = {};
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = tr.raw(k);
    if (v === undefined) continue;
    if (typeof v !== 'string' && !(v instanceof Uint8Array)) tr.fail(k, 'a PEM string or Uint8Array', v);
    out[k] = v as string | Uint8Array;
  }
  if (tr.has('servername')) out.servername = tr.string('servername');
  if (tr.has('rejectUnauthorized')) out.rejectUnauthorized = tr.boolean('rejectUnauthorized');
  return out;
}

export interface BulkSendOptions {
  /** Transfer id (1..64 of `A-Z a-z 0-9 _ -`). Default: derived from the data's sha-256, so a restarted sender resumes the same transfer. */
  transferId?: string;
  /** Chunk size, bytes. Default min(65,536, the bus's maxMessageBytes). Limits 256..the bus's maxMessageBytes. */
  chunkBytes?: number;
  /** Chunks sent and not yet acknowledged by the receiver. Default 8. Limits 1..1,024. */
  window?: number;
  /** No ack for this long: ask the receiver which chunks it holds and resend the rest, ms. Default 3,000. Limits 10..600,000. */
  stallTimeoutMs?: number;
  /** Stalls in a row (no progress at all) before giving up with BULK_FAILED. Default 5. Limits 1..1,000. */
  maxStalls?: number;
  /** Timeout of each control request (offer, status, commit), ms. Default 5,000. Limits 1..600,000. */
  requestTimeoutMs?: number;
  /** Opaque metadata handed to the receiver with the data (plain CBOR data). Default none. */
  meta?: unknown;
  /** Aborting rejects with BULK_FAILED. The receiver keeps the chunks it has, so a later send resumes (abortBulk drops them). */
  signal?: AbortSignal;
  /** Called after each acknowledged chunk with (chunks held by the receiver, total chunks). */
  onProgress?: (held: number, total: number) => void;
}

export function readBulkSendOptions(options: BulkSendOptions, maxMessageBytes: number) {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['transferId', 'chunkBytes', 'window', 'stallTimeoutMs', 'maxStalls', 'requestTimeoutMs', 'meta', 'signal', 'onProgress']);
  const signal = r.raw('signal');
  if (signal !== undefined && !(signal instanceof AbortSignal)) r.fail('signal', 'an AbortSignal', signal);
  return {
    transferId: r.has('transferId') ? r.string('transferId', undefined, /^[A-Za-z0-9_-]{1,64}$/) : undefined,
    chunkBytes: r.number('chunkBytes', { min: 256, max: maxMessageBytes }, Math.min(65_536, maxMessageBytes)),
    window: r.number('window', { min: 1, max: 1024 }, 8),
    stallTimeoutMs: r.number('stallTimeoutMs', { min: 10, max: 600_000 }, 3000),
    maxStalls: r.number('maxStalls', { min: 1, max: 1000 }, 5),
    requestTimeoutMs: r.number('requestTimeoutMs', { min: 1, max: 600_000 }, 5000),
    meta: r.raw('meta'),
    signal: signal as AbortSignal | undefined,
    onProgress: fn<((held: number, total: number) => void) | undefined>(r, 'onProgress', undefined),
  };
}

export interface BulkReceiverOptions {
  /** Largest transfer accepted, bytes. Default 67,108,864 (64 MiB). Limits 1..4,294,967,295. */
  maxTransferBytes?: number;
  /** Transfers held partly at once; an offer beyond is refused with BULK_FAILED. Default 4. Limits 1..1,024. */
  maxTransfers?: number;
  /** A partial transfer with no chunk or request for this long is dropped, ms. Default 600,000. Limits 100..86,400,000. */
  idleTimeoutMs?: number;
  /** Completed transfer ids remembered so a repeated commit is answered again. Default 256. Limits 1..100,000. */
  rememberCompleted?: number;
}

export function readBulkReceiverOptions(options: BulkReceiverOptions) {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['maxTransferBytes', 'maxTransfers', 'idleTimeoutMs', 'rememberCompleted']);
  return {
    maxTransferBytes: r.number('maxTransferBytes', { min: 1, max: 0xffffffff }, 64 * 1024 * 1024),
    maxTransfers: r.number('maxTransfers', { min: 1, max: 1024 }, 4),
    idleTimeoutMs: r.number('idleTimeoutMs', { min: 100, max: 86_400_000 }, 600_000),
    rememberCompleted: r.number('rememberCompleted', { min: 1, max: 100_000 }, 256),
  };
}

/** Clock the link emulator schedules with; tests inject a manual one. */
export interface EmulatorClock {
  /** Monotonic time, ms. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface LinkEmulatorOptions {
  /** Broker (or any TCP server) to forward to: port on `targetHost`. Required. Limits 1..65535. */
  targetPort: number;
  /** Host to forward to. Default `127.0.0.1`. Loopback only. */
  targetHost?: string;
  /** Port to listen on (127.0.0.1). Default 0 (pick). Limits 0..65535. */
  listenPort?: number;
  /** The link to impose: a hardware profile's `link` (bandwidthBps, one-way latencyMs, ±jitterMs, lossRate = cuts per segment). Required. */
  link: LinkProfile;
  /** Token-bucket depth per direction, bytes: how much may leave back to back after an idle spell. Default max(1,500, bandwidth × 5 ms). Limits 1..1,073,741,824. */
  burstBytes?: number;
  /** Largest piece forwarded at once, bytes (the emulator's "packet"; loss is drawn per segment). Default 1,460. Limits 64..1,048,576. */
  segmentBytes?: number;
  /** Bytes queued in one direction before the sending side is paused (TCP-like back-pressure). Default 1,048,576. Limits 1,024..1,073,741,824. */
  maxBufferedBytes?: number;
  /** Cut connections at random, each segment with probability link.lossRate. Default false (cuts only on `cutAll()`). */
  randomCuts?: boolean;
  /** Source of randomness in [0, 1) for jitter and cuts. Default Math.random. */
  random?: () => number;
  /** Clock for scheduling. Default the real one (performance.now + timers). */
  clock?: EmulatorClock;
}

export function readLinkEmulatorOptions(options: LinkEmulatorOptions) {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['targetPort', 'targetHost', 'listenPort', 'link', 'burstBytes', 'segmentBytes', 'maxBufferedBytes', 'randomCuts', 'random', 'clock']);
  const link = readLink(r.raw('link'));
  const clock = r.raw('clock');
  if (clock !== undefined && (clock === null || typeof clock !== 'object' || typeof (clock as EmulatorClock).now !== 'function' || typeof (clock as EmulatorClock).setTimeout !== 'function' || typeof (clock as EmulatorClock).clearTimeout !== 'function')) {
    r.fail('clock', 'an object with now(), setTimeout() and clearTimeout()', clock);
  }
  return {
    targetPort: r.number('targetPort', { min: 1, max: 65535 }),
    targetHost: r.string('targetHost', '127.0.0.1', /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/),
    listenPort: r.number('listenPort', { min: 0, max: 65535 }, 0),
    link,
    burstBytes: r.number('burstBytes', { min: 1, max: 1 << 30 }, Math.max(1500, Math.round((link.bandwidthBps / 8) * 0.005))),
    segmentBytes: r.number('segmentBytes', { min: 64, max: 1 << 20 }, 1460),
    maxBufferedBytes: r.number('maxBufferedBytes', { min: 1024, max: 1 << 30 }, 1 << 20),
    randomCuts: r.boolean('randomCuts', false),
    random: fn<() => number>(r, 'random', Math.random),
    clock: (clock as EmulatorClock | undefined) ?? realClock,
  };
}

/**
 * Node's timers fire on whole milliseconds, often one late: a Pi's 0.3 ms link or a Zero's
 * 3 ± 2 ms would come out a millisecond long. So the real clock sleeps on a timer until
 * ~1.5 ms before the deadline and spends the rest in `setImmediate` turns (which let I/O run
 * between them). The cost is a busy event loop for those last 1.5 ms of each wait.
 */
const SPIN_MS = 1.5;

interface PreciseTimer {
  timer?: NodeJS.Timeout;
  cancelled: boolean;
}

export const realClock: EmulatorClock = {
  now: () => performance.now(),
  setTimeout: (f, ms) => {
    const due = performance.now() + ms;
    const h: PreciseTimer = { cancelled: false };
    const spin = () => {
      if (h.cancelled) return;
      if (performance.now() >= due) f();
      else setImmediate(spin);
    };
    if (ms > SPIN_MS + 1) h.timer = setTimeout(() => setImmediate(spin), Math.floor(ms - SPIN_MS));
    else setImmediate(spin);
    return h;
  },
  clearTimeout: (h) => {
    const t = h as PreciseTimer;
    t.cancelled = true;
    if (t.timer) clearTimeout(t.timer);
  },
};

function readLink(v: unknown): LinkProfile {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new FerryError('BAD_OPTION', `options.link must be an object (a profile's link), got ${v === null ? 'null' : typeof v}`, { field: 'options.link' });
  }
  const r = new OptionReader(v as Record<string, unknown>, 'options.link');
  r.rejectUnknown(['bandwidthBps', 'latencyMs', 'jitterMs', 'lossRate']);
  return {
    bandwidthBps: r.number('bandwidthBps', { min: 1000, max: 100e9 }),
    latencyMs: r.number('latencyMs', { min: 0, max: 10_000, integer: false }),
    jitterMs: r.number('jitterMs', { min: 0, max: 10_000, integer: false }),
    lossRate: r.number('lossRate', { min: 0, max: 1, integer: false }),
  };
}

/** A broker URL fit for logs and `ferry status`: any password in it is replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}
