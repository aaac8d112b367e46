import type { JsonSchema } from '../../core/json-schema.js';
import { profileNames } from '../../hw-profiles/index.js';
import { DURABILITY_MODES } from '../../store/options.js';
import { BROKER_URL_PATTERN, DEVICE_ID_PATTERN } from '../../transports/options.js';
import { LABEL } from '../bridge/pairing-messages.js';
import { SITE_NAME } from '../bridge/options.js';
import { LOOPBACK_HOSTS } from '../ops/http-endpoint.js';
import { LOG_LEVELS } from '../runtime/agent-options.js';

/**
 * The JSON Schema (draft 2020-12) of `ferry.config.json`: the one description of its fields.
 * `readConfig` validates against it (core/json-schema.ts, a subset validator), the README's
 * table of fields is generated from it and `ferry.config.schema.json` at the repository root is
 * it, written out for editors (`scripts/config-doc.ts` writes both; test/unit/config.test.ts
 * fails when they differ). Limits and defaults are the agent's own (agent/runtime/agent-options.ts,
 * agent/bridge/options.ts, agent/ops/http-endpoint.ts); the same test checks them against those readers.
 * `x-default` says a default that is not one literal value.
 */
export const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'ferry.config.json',
  description: 'Settings of `ferry start` (its flags override them) and of the data directory every `ferry` command uses. Every field is optional.',
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: {
      type: 'string',
      description: 'The JSON Schema this file follows, for editors (`ferry.config.schema.json`); ferry ignores it.',
    },
    data: {
      type: 'string',
      minLength: 1,
      description: "Data directory: the store, the registry, installed apps and the control socket; relative to the config file's folder. `--data` and `$FERRY_DATA` come first.",
      'x-default': '`./ferry-data`',
    },
    profile: {
      description: 'Hardware profile: a built-in name (`ferry profiles`) or the path of a profile JSON file (ending in `.json`).',
      default: 'rpi-4b',
      anyOf: [
        { type: 'string', enum: profileNames() },
        { type: 'string', pattern: '\\.json$' },
      ],
    },
    broker: {
      type: 'string',
      pattern: BROKER_URL_PATTERN.source,
      description: 'Broker URL, `mqtt://host:port` or `mqtts://host:port` (TLS). Absent: the agent starts the embedded broker.',
      'x-default': 'none: the embedded broker',
    },
    brokerPort: {
      type: 'integer',
      minimum: 0,
      maximum: 65_535,
      default: 1883,
      description: "The embedded broker's loopback TCP port (used only without `broker`); 0 = any free port.",
    },
    deviceId: {
      type: 'string',
      pattern: DEVICE_ID_PATTERN.source,
      description: "This device's id on the bus (one MQTT topic level): 1..64 of `A-Z a-z 0-9 . _ : -`, starting alphanumeric.",
      'x-default': "`<profile>-<6 hex digits of the data directory's path>`",
    },
    handlerTimeoutMs: {
      type: 'integer',
      minimum: 10,
      maximum: 60_000,
      default: 1000,
      description: 'Wall-clock limit of one handler run, ms.',
    },
    rememberReplies: {
      type: 'integer',
      minimum: 16,
      maximum: 1_000_000,
      default: 10_000,
      description: 'How many request ids per instance have their answer kept: a repeat of one of them gets the same answer again.',
    },
    replayHorizonMs: {
      type: 'integer',
      minimum: 60_000,
      maximum: 2_592_000_000,
      default: 3_600_000,
      description:
        "How long an older request id is still refused (`APP_ALREADY_APPLIED`, never run again), in ms of time the instance's mailbox was connected to the broker; must exceed the broker's save interval + 45 s.",
    },
    maxBatch: {
      type: 'integer',
      minimum: 1,
      maximum: 10_000,
      default: 256,
      description: 'Most calls in one group commit.',
    },
    durability: {
      type: 'string',
      enum: DURABILITY_MODES,
      default: 'full',
      description: 'Store durability. `full`: every checkpoint synced before anything is answered; `batched`: synced every 16 commits, faster, and a power loss may take back answered calls.',
    },
    keepVersions: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 16,
      description: 'Checkpoint versions kept per instance: how far back `ferry restore` reaches.',
    },
    maxInstances: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 32,
      description: 'The most instances the device runs at once: a run or an arriving move past it is refused, and peers choosing a destination (`ferry migrate --best`, `ferry evacuate`) see the room left.',
    },
    logLevel: {
      type: 'string',
      enum: LOG_LEVELS,
      default: 'info',
      description: 'Least level written to the log (JSON lines on stdout).',
    },
    brokerUsername: {
      type: 'string',
      minLength: 1,
      description: 'MQTT user name given to the broker of `broker` (only with `broker`).',
      'x-default': 'none',
    },
    brokerPasswordFile: {
      type: 'string',
      minLength: 1,
      description: "A file whose first line is the MQTT password (read at start, never logged; keep it mode 0600), relative to the config file's folder. Only with `broker`.",
      'x-default': 'none',
    },
    brokerCaFile: {
      type: 'string',
      minLength: 1,
      description: "PEM file of the CA that signed an `mqtts://` broker's certificate, relative to the config file's folder. Only with an `mqtts://` `broker`.",
      'x-default': "the system's CAs",
    },
    brokerCertFile: {
      type: 'string',
      minLength: 1,
      description: "PEM file of a client certificate, for a broker that asks for one, relative to the config file's folder. Only with an `mqtts://` `broker`, and with `brokerKeyFile`.",
      'x-default': 'none',
    },
    brokerKeyFile: {
      type: 'string',
      minLength: 1,
      description: "PEM file of the client certificate's key, relative to the config file's folder. Only with `brokerCertFile`.",
      'x-default': 'none',
    },
    label: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      pattern: LABEL.source,
      description: 'The name the other owner sees when pairing: printable characters (no control characters).',
      'x-default': 'the host name',
    },
    pairTimeoutMs: {
      type: 'integer',
      minimum: 1000,
      maximum: 600_000,
      default: 120_000,
      description: "How long one pairing attempt may take, owners' time included, ms.",
    },
    summaryRefreshMs: {
      type: 'integer',
      minimum: 200,
      maximum: 3_600_000,
      default: 60_000,
      description: 'How often this device sends its peers the region summaries of heaps that committed since (the rate limit of that traffic; a keepalive every 10 intervals otherwise), ms.',
    },
    site: {
      type: 'string',
      pattern: SITE_NAME.source,
      description: 'The site this device is on in a fleet over several brokers: the name its broker was configured with (`ferry broker-config --site`), the same for every device on that broker. A handoff to a device of another site forwards the mailbox requests left at this broker.',
      'x-default': 'none: every peer is taken to share this broker',
    },
    httpPort: {
      type: 'integer',
      minimum: 0,
      maximum: 65_535,
      description: "TCP port of the agent's HTTP endpoint, on `httpHost`; 0 = any free port. Absent: no HTTP endpoint.",
      'x-default': 'none: no HTTP endpoint',
    },
    httpHost: {
      type: 'string',
      enum: LOOPBACK_HOSTS,
      default: '127.0.0.1',
      description: 'The address the HTTP endpoint listens on: loopback only, as the endpoint has no authentication.',
    },
    dashboard: {
      type: 'boolean',
      default: false,
      description: 'Serve the dashboard on the HTTP endpoint (at `httpPort`; without one, port 8080). Every request needs the access token in the data directory (`ferry dashboard` prints the address with it).',
    },
  },
} as const satisfies JsonSchema;

/** The fields of `ferry.config.json`, in the schema's order (`$schema`, for editors, included). */
export const CONFIG_FIELDS = Object.keys(CONFIG_SCHEMA.properties) as Array<keyof typeof CONFIG_SCHEMA.properties>;
