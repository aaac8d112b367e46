import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';

/** `ferry.config.json`: the settings of `ferry start` (flags override them). Every field optional. */
export interface FerryConfig {
  /** Data directory (relative to the config file). */
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
  durability?: string;
  /** Checkpoint versions kept per instance (1..1000; default 16): how far back `ferry restore` reaches. */
  keepVersions?: number;
  logLevel?: string;
  /** Broker credentials (with `broker`): user name, a file holding the password, PEM files for mqtts://. */
  brokerUsername?: string;
  brokerPasswordFile?: string;
  brokerCaFile?: string;
  brokerCertFile?: string;
  brokerKeyFile?: string;
  /** The name the other owner sees when pairing (0..64 printable characters). Default: the host name. */
  label?: string;
  /** How long one pairing attempt may take, ms (1,000..600,000; default 120,000). */
  pairTimeoutMs?: number;
}

const KEYS = ['data', 'profile', 'broker', 'brokerPort', 'deviceId', 'handlerTimeoutMs', 'rememberReplies', 'replayHorizonMs', 'maxBatch', 'durability', 'keepVersions', 'logLevel', 'label', 'pairTimeoutMs', 'brokerUsername', 'brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'];

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

/** Reads the config file `findConfig` picks; none: `{}`. Bad files are CONFIG_INVALID naming the field. */
export function readConfig(path: string | undefined, places?: ConfigPlaces): FerryConfig {
  const file = findConfig(path, places);
  if (file === undefined) return {};
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FerryError('CONFIG_INVALID', `${file} cannot be read as JSON: ${(e as Error).message}`, { field: 'config' });
  }
  const r = new OptionReader(json as Record<string, unknown>, file, 'CONFIG_INVALID');
  r.rejectUnknown(KEYS);
  const c: FerryConfig = {};
  // Type checks here; ranges are checked where the agent reads its options (same field names).
  for (const k of ['data', 'profile', 'broker', 'deviceId', 'durability', 'logLevel'] as const) if (r.has(k)) c[k] = r.string(k);
  if (r.has('label')) {
    if (typeof r.raw('label') !== 'string') r.fail('label', 'a string', r.raw('label'));
    c.label = r.raw('label') as string;
  }
  if (r.has('pairTimeoutMs')) c.pairTimeoutMs = r.number('pairTimeoutMs', { min: 0, max: Number.MAX_SAFE_INTEGER });
  for (const k of ['brokerPort', 'handlerTimeoutMs', 'rememberReplies', 'replayHorizonMs', 'maxBatch', 'keepVersions'] as const) if (r.has(k)) c[k] = r.number(k, { min: 0, max: Number.MAX_SAFE_INTEGER });
  for (const k of ['brokerUsername'] as const) if (r.has(k)) c[k] = r.string(k);
  // Files are relative to the config file, as `data` is.
  for (const k of ['brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'] as const) if (r.has(k)) c[k] = resolve(dirname(resolve(file)), r.string(k));
  if (c.data !== undefined) c.data = resolve(dirname(resolve(file)), c.data);
  return c;
}
