import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { firstProblem } from '../../core/json-schema.js';
import { describe } from '../../core/options.js';
import type { Durability } from '../../store/options.js';
import type { LogLevel } from '../runtime/agent-options.js';
import type { LOOPBACK_HOSTS } from '../ops/http-endpoint.js';
import { CONFIG_SCHEMA } from './config-schema.js';

/**
 * `ferry.config.json`: the settings of `ferry start` (flags override them). Every field optional.
 * Units, defaults and limits: CONFIG_SCHEMA (agent/cli/config-schema.ts), checked when the file is read.
 */
export interface FerryConfig {
  /** Data directory (read relative to the config file; here resolved). */
  data?: string;
  /** Hardware profile name or profile JSON file. */
  profile?: string;
  /** Broker URL; absent: the embedded broker. */
  broker?: string;
  /** Embedded broker port. */
  brokerPort?: number;
  deviceId?: string;
  handlerTimeoutMs?: number;
  rememberReplies?: number;
  replayHorizonMs?: number;
  maxBatch?: number;
  durability?: Durability;
  /** Checkpoint versions kept per instance: how far back `ferry restore` reaches. */
  keepVersions?: number;
  /** The most instances the device runs at once. */
  maxInstances?: number;
  logLevel?: LogLevel;
  /** Broker credentials (with `broker`): user name, a file holding the password, PEM files for mqtts:// (files resolved). */
  brokerUsername?: string;
  brokerPasswordFile?: string;
  brokerCaFile?: string;
  brokerCertFile?: string;
  brokerKeyFile?: string;
  /** The name the other owner sees when pairing. Default: the host name. */
  label?: string;
  /** How long one pairing attempt may take, ms. */
  pairTimeoutMs?: number;
  /** How often region summaries go to peers, ms. */
  summaryRefreshMs?: number;
  /** The site (the broker) this device is on, in a fleet over several brokers (ferry broker-config). Default: none. */
  site?: string;
  /** The HTTP endpoint's port (0 = any free one); absent: no HTTP endpoint. */
  httpPort?: number;
  /** The loopback address the HTTP endpoint listens on. Default `127.0.0.1`. */
  httpHost?: (typeof LOOPBACK_HOSTS)[number];
  /** Serve the dashboard on the HTTP endpoint. Default false. */
  dashboard?: boolean;
}

type SchemaFields = Exclude<keyof typeof CONFIG_SCHEMA.properties, '$schema'>;
/** Compile-time: FerryConfig has exactly the schema's fields (`$schema`, for editors, is dropped when read). */
const SAME_FIELDS: [SchemaFields] extends [keyof FerryConfig] ? ([keyof FerryConfig] extends [SchemaFields] ? true : never) : never = true;
void SAME_FIELDS;

/** Fields holding a path, taken relative to the config file's folder. */
const PATH_FIELDS = ['data', 'brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'] as const;

/** Where a device's configuration lives when the command names none (a board run as a service). */
export const SYSTEM_CONFIG_DIR = '/etc/ferry';

/** Where the config file is looked for (tests give their own). */
export interface ConfigPlaces {
  /** `$FERRY_CONFIG`. */
  env?: string | undefined;
  /** The folder of the system-wide file, `ferry.config.json` in it. Default SYSTEM_CONFIG_DIR. */
  systemDir?: string;
}

/**
 * Which config file applies: `--config <file>`, else `$FERRY_CONFIG`, else `./ferry.config.json`,
 * else `/etc/ferry/ferry.config.json`: the most specific first. A file named by the first two
 * must exist (a typo is an error, not silently no config); the last two are used if present.
 */
export function findConfig(path: string | undefined, places: ConfigPlaces = { env: process.env.FERRY_CONFIG }): string | undefined {
  const named = path ?? (places.env !== undefined && places.env !== '' ? places.env : undefined);
  if (named !== undefined) {
    if (!existsSync(named)) throw new FerryError('CONFIG_INVALID', `${named} does not exist (named by ${path !== undefined ? '--config' : '$FERRY_CONFIG'})`, { field: path !== undefined ? '--config' : 'FERRY_CONFIG' });
    return named;
  }
  if (existsSync('ferry.config.json')) return 'ferry.config.json';
  const system = join(places.systemDir ?? SYSTEM_CONFIG_DIR, 'ferry.config.json');
  return existsSync(system) ? system : undefined;
}

/**
 * Reads the config file `findConfig` picks; none: `{}`. The file is checked against CONFIG_SCHEMA
 * (types, ranges, enums, unknown fields): a bad one is CONFIG_INVALID naming the file and the
 * field, `ferry.config.json: keepVersions must be an integer in 1..1000, got 0`.
 */
export function readConfig(path: string | undefined, places?: ConfigPlaces): FerryConfig {
  const file = findConfig(path, places);
  if (file === undefined) return {};
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FerryError('CONFIG_INVALID', `${file} cannot be read as JSON: ${(e as Error).message}`, { field: 'config', file });
  }
  return checkConfig(json, file);
}

/** A parsed config file's content checked against CONFIG_SCHEMA, its paths taken relative to `file`'s folder. */
export function checkConfig(json: unknown, file: string): FerryConfig {
  const problem = firstProblem(CONFIG_SCHEMA, json);
  if (problem !== undefined) {
    if (problem.path === '') throw new FerryError('CONFIG_INVALID', `${file} must hold a JSON object, got ${describe(json)}`, { field: 'config', file });
    const message =
      problem.kind === 'unknown'
        ? `${problem.path} is not a known option (known: ${problem.known.filter((k) => k !== '$schema').join(', ')})`
        : `${problem.path} must be ${problem.expected}, got ${describe(problem.got)}`;
    throw new FerryError('CONFIG_INVALID', `${file}: ${message}`, { field: problem.path, file });
  }
  const { $schema: _editors, ...fields } = json as FerryConfig & { $schema?: string };
  const c: FerryConfig = fields;
  // Paths are relative to the config file, not to where ferry runs.
  for (const k of PATH_FIELDS) if (c[k] !== undefined) c[k] = resolve(dirname(resolve(file)), c[k]);
  return c;
}
