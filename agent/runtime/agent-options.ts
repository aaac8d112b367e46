import { createHash } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { OptionReader } from '../../core/options.js';
import { DURABILITY_MODES, type Durability } from '../../store/options.js';
import { BROKER_URL_PATTERN, DEVICE_ID_PATTERN } from '../../transports/options.js';
import { BROKER_CREDENTIAL_KEYS, readBrokerCredentials, type BrokerCredentialOptions, type BrokerCredentials } from './broker-credentials.js';
import type { RunnerObserver } from './runner-observer.js';

/** One structured log line (written as JSON, one per line). */
export interface LogLine {
  ts: string;
  level: LogLevel;
  event: string;
  [key: string]: unknown;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Options of `Agent.start` (and the fields of `ferry.config.json`). Validated on entry; errors name the field. */
export interface AgentOptions extends BrokerCredentialOptions {
  /** Data directory: the store, the registry, installed app modules and the control socket. Created if missing. Required. */
  dataDir: string;
  /** Hardware profile: a built-in name (`ferry profiles`) or a JSON profile file. Default `rpi-4b`. */
  profile?: string;
  /** Broker URL (`mqtt://host:port`). Default: none, and the agent starts the embedded broker. */
  brokerUrl?: string;
  /** Embedded broker's loopback port, used only without brokerUrl. 0 = any free port. Default 1883. Limits 0..65,535. */
  brokerPort?: number;
  /** This device's id on the bus. Default `<profile>-<6 hex of the data directory's path>`. */
  deviceId?: string;
  /** Wall-clock limit of one handler run, ms. Default 1,000. Limits 10..60,000. */
  handlerTimeoutMs?: number;
  /**
   * Request ids whose outcome (the answer) is kept per instance: a repeat of one of the newest
   * `rememberReplies` ids gets its recorded answer again. Older ids become spent ids (see
   * `replayHorizonMs`). Default 10,000. Limits 16..1,000,000. Cost: the outcomes live in the
   * heap (paged), plus an in-memory index of up to twice as many ids.
   */
  rememberReplies?: number;
  /**
   * How long a spent id (one whose outcome was dropped) is still recognised, in ms of
   * *mailbox time*: time during which the instance's mailbox session was connected to the
   * broker (it stands still while the instance is suspended, the agent down or the broker
   * unreachable). A replay of a spent id is answered APP_ALREADY_APPLIED and never runs.
   * Must exceed the longest time a broker may go without saving (Mosquitto's
   * `autosave_interval`) plus 45 s (1.5 keepalives). Default 3,600,000 (1 h, twice
   * Mosquitto's default autosave interval). Limits 60,000..2,592,000,000 (30 days).
   * Cost: 8 bytes of heap (and flash) and 11–23 bytes of agent memory per id spent within it.
   */
  replayHorizonMs?: number;
  /** Most calls in one group commit. Default 256. Limits 1..10,000. */
  maxBatch?: number;
  /** Store durability (`full`: every checkpoint synced before anything is answered). Default `full`. */
  durability?: Durability;
  /** Checkpoint versions kept per instance for `ferry checkpoints` / `restore` (older ones are reclaimed; versions share unchanged lines). Default 16. Limits 1..1,000. */
  keepVersions?: number;
  /** How long `run` waits for a required service to be found and leased, ms. Default 3,000. Limits 0..600,000. */
  leaseWaitMs?: number;
  /** The most instances this device runs at once (its capacity: a run or an arriving move past it is refused, and peers choosing a destination see the room left). Default 32. Limits 1..1,000. */
  maxInstances?: number;
  /** Least level written to the log. Default `info`. */
  logLevel?: LogLevel;
  /** Where log lines go. Default: one JSON line each on stdout. */
  log?: (line: LogLine) => void;
  /** Listen on the control socket (`<dataDir>/ferry.sock`). Default true. */
  control?: boolean;
  /** Told of every call, dropped mailbox message and group commit (the ops endpoint's metrics: runner-observer.ts). Default: none, and nothing is counted. */
  observer?: RunnerObserver;
}

export interface ResolvedAgentOptions {
  dataDir: string;
  profile: string;
  brokerUrl: string | undefined;
  brokerPort: number;
  deviceId: string;
  handlerTimeoutMs: number;
  rememberReplies: number;
  replayHorizonMs: number;
  maxBatch: number;
  durability: Durability;
  keepVersions: number;
  leaseWaitMs: number;
  maxInstances: number;
  logLevel: LogLevel;
  log: (line: LogLine) => void;
  control: boolean;
  observer: RunnerObserver | undefined;
  /** Read from the broker credential options (files read at start). */
  credentials: BrokerCredentials;
}

export const AGENT_OPTION_KEYS = [
  'dataDir', 'profile', 'brokerUrl', 'brokerPort', 'deviceId', 'handlerTimeoutMs', 'rememberReplies', 'replayHorizonMs', 'maxBatch',
  'durability', 'keepVersions', 'leaseWaitMs', 'maxInstances', 'logLevel', 'log', 'control', 'observer', ...BROKER_CREDENTIAL_KEYS,
] as const;

export function readAgentOptions(options: AgentOptions, prefix = 'options', code: 'BAD_OPTION' | 'CONFIG_INVALID' = 'BAD_OPTION'): ResolvedAgentOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, prefix, code);
  r.rejectUnknown(AGENT_OPTION_KEYS);
  const dataDir = resolve(r.string('dataDir'));
  const profile = r.string('profile', 'rpi-4b');
  const log = r.raw('log');
  if (log !== undefined && typeof log !== 'function') r.fail('log', 'a function', log);
  const observer = r.raw('observer') as RunnerObserver | undefined;
  if (observer !== undefined && (observer === null || typeof observer !== 'object' || (['called', 'dropped', 'committed'] as const).some((k) => typeof observer[k] !== 'function'))) r.fail('observer', 'an object with functions called, dropped and committed', observer);
  const tag = createHash('sha256').update(dataDir).digest('hex').slice(0, 6);
  // A profile file's name without `.json`; anything a topic level cannot hold becomes `-`.
  const stem = basename(profile).replace(/\.json$/, '').replace(/[^A-Za-z0-9._:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 50) || 'ferry';
  const fallbackId = `${stem}-${tag}`;
  const brokerUrl = r.has('brokerUrl') ? r.string('brokerUrl', undefined, BROKER_URL_PATTERN) : undefined;
  return {
    dataDir,
    profile,
    brokerUrl,
    brokerPort: r.number('brokerPort', { min: 0, max: 65_535 }, 1883),
    deviceId: r.string('deviceId', fallbackId, DEVICE_ID_PATTERN),
    handlerTimeoutMs: r.number('handlerTimeoutMs', { min: 10, max: 60_000 }, 1000),
    rememberReplies: r.number('rememberReplies', { min: 16, max: 1_000_000 }, 10_000),
    replayHorizonMs: r.number('replayHorizonMs', { min: 60_000, max: 2_592_000_000 }, 3_600_000),
    maxBatch: r.number('maxBatch', { min: 1, max: 10_000 }, 256),
    durability: r.oneOf('durability', DURABILITY_MODES, 'full'),
    keepVersions: r.number('keepVersions', { min: 1, max: 1000 }, 16),
    leaseWaitMs: r.number('leaseWaitMs', { min: 0, max: 600_000 }, 3000),
    maxInstances: r.number('maxInstances', { min: 1, max: 1000 }, 32),
    logLevel: r.oneOf('logLevel', LOG_LEVELS, 'info'),
    log: (log as ((l: LogLine) => void) | undefined) ?? ((line) => process.stdout.write(`${JSON.stringify(line)}\n`)),
    control: r.boolean('control', true),
    observer,
    credentials: readBrokerCredentials(r, brokerUrl),
  };
}
