import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfig, findConfig, readConfig, type FerryConfig } from '../../agent/cli/config.js';
import { CONFIG_FIELDS, CONFIG_SCHEMA } from '../../agent/cli/config-schema.js';
import { readBridgeOptions } from '../../agent/bridge/options.js';
import { readFleetOptions } from '../../agent/fleet/options.js';
import { readHttpEndpointOptions, type HttpEndpointOptions } from '../../agent/ops/http-endpoint.js';
import { readAgentOptions, type AgentOptions } from '../../agent/runtime/agent-options.js';
import { checkSchemaSubset, expectedOf, firstProblem, type JsonSchema } from '../../core/json-schema.js';
import { SCHEMA_FILE, TABLE_END, TABLE_START, UPDATE_COMMAND, schemaText, withFieldsTable } from '../../scripts/config-doc.js';
import { caught } from '../helpers/ferry-error.js';

const FIELDS: Record<string, JsonSchema> = CONFIG_SCHEMA.properties;
const entries = Object.entries(FIELDS);
const integerFields = entries.filter(([, s]) => s.type === 'integer') as Array<[string, JsonSchema & { minimum: number; maximum: number }]>;
const PATH_FIELDS = ['data', 'brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'];
/** Where the checked content "comes from": only its folder matters (paths are taken from it). */
const FILE = join('conf', 'ferry.config.json');

/** Where ferry.config.json is looked for: --config, $FERRY_CONFIG, the working directory, /etc/ferry. */
describe('the config file search', () => {
  const root = mkdtempSync(join(tmpdir(), 'ferry-config-'));
  const system = join(root, 'etc-ferry');
  const work = join(root, 'work');
  const cwd = process.cwd();
  beforeAll(() => {
    for (const [d, profile] of [[system, 'palm-pda'], [work, 'rpi-5']] as const) {
      mkdirSync(d);
      writeFileSync(join(d, 'ferry.config.json'), JSON.stringify({ profile }));
    }
    writeFileSync(join(root, 'named.json'), JSON.stringify({ profile: 'named.json' }));
    writeFileSync(join(root, 'env.json'), JSON.stringify({ profile: 'env.json' }));
    process.chdir(work);
  });
  afterAll(() => {
    process.chdir(cwd);
    rmSync(root, { recursive: true, force: true });
  });

  it('takes --config first, then $FERRY_CONFIG, then ./ferry.config.json, then /etc/ferry', () => {
    expect(readConfig(join(root, 'named.json'), { env: join(root, 'env.json'), systemDir: system }).profile).toBe('named.json');
    expect(readConfig(undefined, { env: join(root, 'env.json'), systemDir: system }).profile).toBe('env.json');
    expect(readConfig(undefined, { env: '', systemDir: system }).profile).toBe('rpi-5');
    rmSync(join(work, 'ferry.config.json'));
    expect(readConfig(undefined, { systemDir: system }).profile).toBe('palm-pda');
    expect(findConfig(undefined, { systemDir: join(root, 'none') })).toBeUndefined();
    expect(readConfig(undefined, { systemDir: join(root, 'none') })).toEqual({});
  });

  it('a file named by --config or $FERRY_CONFIG that does not exist is CONFIG_INVALID naming where it was named', () => {
    const c = caught(() => findConfig(join(root, 'typo.json'), { systemDir: system }));
    expect({ code: c.code, field: c.details.field }).toEqual({ code: 'CONFIG_INVALID', field: '--config' });
    const e = caught(() => findConfig(undefined, { env: join(root, 'typo.json'), systemDir: system }));
    expect({ code: e.code, field: e.details.field }).toEqual({ code: 'CONFIG_INVALID', field: 'FERRY_CONFIG' });
  });

  it('a file that is not JSON, or not a JSON object, is CONFIG_INVALID naming the file', () => {
    for (const [text, message] of [
      ['{"keepVersions": 4,}', /cannot be read as JSON/],
      ['', /cannot be read as JSON/],
      ['[1, 2]', /must hold a JSON object, got an array/],
      ['null', /must hold a JSON object, got null/],
      ['"rpi-4b"', /must hold a JSON object, got "rpi-4b"/],
    ] as const) {
      const file = join(root, 'bad.json');
      writeFileSync(file, text);
      const e = caught(() => readConfig(file));
      expect({ code: e.code, field: e.details.field, file: e.details.file }).toEqual({ code: 'CONFIG_INVALID', field: 'config', file });
      expect(e.message.startsWith(file)).toBe(true);
      expect(e.message).toMatch(message);
    }
  });

  it('reads a good file whole: paths relative to its folder, $schema dropped', () => {
    const file = join(root, 'good', 'ferry.config.json');
    mkdirSync(dirname(file));
    writeFileSync(file, JSON.stringify({ $schema: '../ferry.config.schema.json', data: 'd', broker: 'mqtts://broker.lan:8883', brokerCaFile: '/abs/ca.pem', brokerPasswordFile: 'pw', keepVersions: 2, httpPort: 0 }));
    expect(readConfig(file)).toEqual({ data: join(root, 'good', 'd'), broker: 'mqtts://broker.lan:8883', brokerCaFile: resolve('/abs/ca.pem'), brokerPasswordFile: join(root, 'good', 'pw'), keepVersions: 2, httpPort: 0 });
  });
});

/** One valid value per field (the good config), and values each field must refuse. */
const GOOD: Required<FerryConfig> & { $schema: string } = {
  $schema: './ferry.config.schema.json',
  data: 'data',
  profile: 'rpi-zero-2w',
  broker: 'mqtts://broker.lan:8883',
  brokerPort: 0,
  deviceId: 'kitchen-pi',
  handlerTimeoutMs: 60_000,
  rememberReplies: 16,
  replayHorizonMs: 2_592_000_000,
  maxBatch: 1,
  durability: 'batched',
  keepVersions: 1000,
  maxInstances: 1000,
  summaryRefreshMs: 3_600_000,
  logLevel: 'debug',
  brokerUsername: 'kitchen',
  brokerPasswordFile: 'secrets/pw',
  brokerCaFile: '/etc/ferry/ca.pem',
  brokerCertFile: 'cert.pem',
  brokerKeyFile: 'key.pem',
  label: 'Kitchen Pi — über',
  pairTimeoutMs: 1000,
  site: 'kitchen-1',
  httpPort: 65_535,
  httpHost: '::1',
  dashboard: true,
};

const BAD: Array<[field: string, value: unknown, message: RegExp]> = [
  ['keepVersions', 0, /^keepVersions must be an integer in 1\.\.1000, got 0$/],
  ['keepVersions', 1001, /in 1\.\.1000, got 1001$/],
  ['keepVersions', 2.5, /in 1\.\.1000, got 2\.5$/],
  ['keepVersions', '16', /got "16"$/],
  ['brokerPort', 65_536, /^brokerPort must be an integer in 0\.\.65535, got 65536$/],
  ['brokerPort', -1, /got -1$/],
  ['handlerTimeoutMs', 9, /in 10\.\.60000, got 9$/],
  ['rememberReplies', 15, /in 16\.\.1000000, got 15$/],
  ['replayHorizonMs', 1000, /^replayHorizonMs must be an integer in 60000\.\.2592000000, got 1000$/],
  ['replayHorizonMs', '1h', /got "1h"$/],
  ['maxBatch', 10_001, /in 1\.\.10000, got 10001$/],
  ['pairTimeoutMs', 999, /in 1000\.\.600000, got 999$/],
  ['httpPort', 65_536, /^httpPort must be an integer in 0\.\.65535, got 65536$/],
  ['httpPort', true, /got true$/],
  ['dashboard', 'yes', /^dashboard must be a boolean, got "yes"$/],
  ['httpHost', '0.0.0.0', /^httpHost must be one of "127\.0\.0\.1", "::1", "localhost", got "0\.0\.0\.0"$/],
  ['durability', 'sometimes', /^durability must be one of "full", "batched", got "sometimes"$/],
  ['logLevel', 'trace', /^logLevel must be one of "debug", "info", "warn", "error", got "trace"$/],
  ['logLevel', 'INFO', /got "INFO"$/],
  ['profile', 'toaster', /^profile must be one of "rpi-zero-2w", .* or a string matching \/\\\.json\$\/, got "toaster"$/],
  ['profile', 3, /got 3$/],
  ['broker', 'http://broker.lan:1883', /^broker must be a string matching \/.+\/, got "http:\/\/broker\.lan:1883"$/],
  ['broker', 'mqtt://broker.lan', /got "mqtt:\/\/broker\.lan"$/],
  ['deviceId', 'kitchen/pi', /^deviceId must be a string matching .+, got "kitchen\/pi"$/],
  ['deviceId', '', /got ""$/],
  ['label', 'x'.repeat(65), /^label must be a string of 1\.\.64 characters matching .+, got "x{40}…"$/],
  ['label', '', /got ""$/],
  ['site', 'Kitchen', /^site must be a string matching .+, got "Kitchen"$/],
  ['site', 'x'.repeat(33), /^site must be a string matching .+, got "x{33}"$/],
  ['label', 'bell\u0007', /got "bell\\u0007"$/],
  ['data', '', /^data must be a non-empty string, got ""$/],
  ['data', null, /got null$/],
  ['brokerPasswordFile', ['pw'], /^brokerPasswordFile must be a non-empty string, got an array$/],
  ['brokerUsername', { name: 'x' }, /got an object$/],
  ['$schema', 1, /^\$schema must be a string, got 1$/],
  // Each field of the wrong type.
  ...entries.map(([field, s]): [string, unknown, RegExp] => (s.type === 'integer' ? [field, `${s.minimum ?? 0}`, /must be an integer/] : [field, 12, / must be .*, got 12$/])),
];

describe('ferry.config.json checked against its schema', () => {
  it('the good config (every field) is taken as it is, paths relative to the file', () => {
    const { $schema: _, ...fields } = GOOD;
    const folder = resolve('conf');
    expect(checkConfig(GOOD, FILE)).toEqual({ ...fields, data: join(folder, 'data'), brokerPasswordFile: join(folder, 'secrets', 'pw'), brokerCaFile: resolve('/etc/ferry/ca.pem'), brokerCertFile: join(folder, 'cert.pem'), brokerKeyFile: join(folder, 'key.pem') });
    expect(Object.keys(GOOD).sort()).toEqual([...CONFIG_FIELDS].sort());
    expect(checkConfig({}, FILE)).toEqual({});
  });

  it.each(BAD)('%s = %j is CONFIG_INVALID naming the file and the field', (field, value, message) => {
    const e = caught(() => checkConfig({ ...GOOD, [field]: value }, FILE));
    expect({ code: e.code, field: e.details.field, file: e.details.file }).toEqual({ code: 'CONFIG_INVALID', field, file: FILE });
    expect(e.message.startsWith(`${FILE}: `)).toBe(true);
    expect(e.message.slice(FILE.length + 2)).toMatch(message);
  });

  it('an unknown field is CONFIG_INVALID naming it and listing the known ones, even beside a bad one', () => {
    for (const key of ['colour', 'keepversions', 'constructor', '__proto__', 'toString']) {
      const e = caught(() => checkConfig(JSON.parse(`{"keepVersions": 0, ${JSON.stringify(key)}: 1}`), FILE));
      expect({ code: e.code, field: e.details.field }).toEqual({ code: 'CONFIG_INVALID', field: key });
      expect(e.message).toBe(`${FILE}: ${key} is not a known option (known: ${CONFIG_FIELDS.filter((f) => f !== '$schema').join(', ')})`);
    }
  });

  it('property: configs made from the schema are accepted as they are; an integer outside its limits is refused naming it', () => {
    fc.assert(
      fc.property(arbitraryOf(CONFIG_SCHEMA) as fc.Arbitrary<Record<string, unknown>>, (config) => {
        const read = checkConfig(config, FILE) as Record<string, unknown>;
        for (const [k, v] of Object.entries(config)) {
          if (k === '$schema') expect(read).not.toHaveProperty(k);
          else expect(read[k]).toEqual(PATH_FIELDS.includes(k) ? resolve('conf', v as string) : v);
        }
      }),
    );
    const outside = fc.constantFrom(...integerFields).chain(([field, s]) =>
      fc.tuple(fc.constant(field), fc.oneof(fc.integer({ min: Number.MIN_SAFE_INTEGER, max: s.minimum - 1 }), fc.integer({ min: s.maximum + 1, max: Number.MAX_SAFE_INTEGER }), fc.double({ min: s.minimum, max: s.maximum, noNaN: true }).filter((d) => !Number.isInteger(d)))),
    );
    fc.assert(
      fc.property(outside, ([field, value]) => {
        const e = caught(() => checkConfig({ ...GOOD, [field]: value }, FILE));
        expect({ code: e.code, field: e.details.field }).toEqual({ code: 'CONFIG_INVALID', field });
        expect(e.message).toContain(`${field} must be an integer in `);
      }),
    );
  });
});

describe('the schema is the one source of the fields', () => {
  it(`is written out as ${SCHEMA_FILE} at the repository root (run \`${UPDATE_COMMAND}\` when it differs)`, () => {
    const committed = readFileSync(SCHEMA_FILE, 'utf8');
    expect(committed, `${SCHEMA_FILE} differs from agent/cli/config-schema.ts: run \`${UPDATE_COMMAND}\``).toBe(schemaText());
    expect(JSON.parse(committed)).toEqual(CONFIG_SCHEMA);
  });

  it(`README.md's table of fields is generated from it (run \`${UPDATE_COMMAND}\` when it differs)`, () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toContain(TABLE_START);
    expect(readme).toContain(TABLE_END);
    const want = withFieldsTable(readme);
    const section = (text: string): string => text.slice(text.indexOf(TABLE_START), text.indexOf(TABLE_END));
    expect(section(readme), `README.md's table of ferry.config.json fields differs from agent/cli/config-schema.ts: run \`${UPDATE_COMMAND}\``).toBe(section(want));
  });

  it('uses only the keywords core/json-schema.ts checks, and every field has a type, a description and a default', () => {
    expect(() => checkSchemaSubset(CONFIG_SCHEMA)).not.toThrow();
    for (const [field, s] of entries) {
      if (field === '$schema') continue;
      expect(s.type ?? s.anyOf, field).toBeDefined();
      expect(s.description, field).toMatch(/\.$/);
      expect(s.default ?? s['x-default'], field).toBeDefined();
      if (s.default !== undefined) expect(firstProblem(s, s.default), `${field}'s default`).toBeUndefined();
    }
    expect(() => checkSchemaSubset({ type: 'object', properties: { a: { type: 'string', format: 'uri' } as JsonSchema } })).toThrow(/format/);
  });

  it("has the agent's own limits and defaults (agent/runtime/agent-options.ts, agent/bridge/options.ts, agent/ops/http-endpoint.ts)", () => {
    const agent = (extra: Record<string, unknown>) => readAgentOptions({ dataDir: 'data', ...extra } as AgentOptions);
    const bridge = (extra: Record<string, unknown>) => readBridgeOptions({ dataDir: 'data', deviceId: 'kitchen-pi', profile: 'rpi-4b', ...extra }, 262_144);
    const agentFields = ['brokerPort', 'handlerTimeoutMs', 'rememberReplies', 'replayHorizonMs', 'maxBatch', 'keepVersions', 'maxInstances', 'durability', 'logLevel', 'profile', 'deviceId', 'broker'];
    const bridgeFields = ['pairTimeoutMs', 'label', 'site'];
    const fleet = (extra: Record<string, unknown>) => readFleetOptions(extra);
    const fleetFields = ['summaryRefreshMs'];
    // httpPort and httpHost are the endpoint's port and host (httpPort required there: absent = no endpoint).
    const http = (extra: Record<string, unknown>) => readHttpEndpointOptions({ port: 0, ...extra } as HttpEndpointOptions);
    const httpFields = ['httpPort', 'httpHost'];
    // Read elsewhere: data and dashboard by the CLI, the credential files at start (they must exist); $schema is for editors.
    const elsewhere = ['$schema', 'data', 'dashboard', 'brokerUsername', 'brokerPasswordFile', 'brokerCaFile', 'brokerCertFile', 'brokerKeyFile'];
    expect([...agentFields, ...bridgeFields, ...fleetFields, ...httpFields, ...elsewhere].sort()).toEqual([...CONFIG_FIELDS].sort());
    for (const field of [...agentFields, ...bridgeFields, ...fleetFields, ...httpFields]) {
      const s = FIELDS[field]!;
      const key = field === 'broker' ? 'brokerUrl' : field === 'httpPort' ? 'port' : field === 'httpHost' ? 'host' : field;
      const reader = bridgeFields.includes(field) ? bridge : fleetFields.includes(field) ? fleet : httpFields.includes(field) ? http : agent;
      const read = (v: unknown): Record<string, unknown> => reader(v === undefined ? {} : { [key]: v }) as unknown as Record<string, unknown>;
      if (s.default !== undefined) expect(read(undefined)[key], `${field}'s default`).toEqual(s.default);
      if (s.type === 'integer') {
        for (const v of [s.minimum!, s.maximum!]) expect(read(v)[key], `${field} = ${v}`).toBe(v);
        for (const v of [s.minimum! - 1, s.maximum! + 1]) expect(caught(() => read(v)).details.field, `${field} = ${v}`).toMatch(new RegExp(`\\.${key}$`));
      }
      for (const v of s.enum ?? []) expect(read(v)[key]).toBe(v);
      if (s.enum !== undefined) expect(caught(() => read('no-such')).details.field).toMatch(new RegExp(`\\.${key}$`));
    }
    // The same strings pass or fail both (patterns are the agent's own RegExps).
    for (const [field, values] of [
      ['deviceId', ['kitchen-pi', 'a', 'kitchen/pi', '-x', 'x'.repeat(65)]],
      ['broker', ['mqtt://h:1883', 'mqtts://h:8883/', 'http://h:1', 'mqtt://h']],
      ['label', ['', 'Kitchen', 'x'.repeat(64), 'x'.repeat(65), 'a\nb']],
    ] as const) {
      for (const v of values) {
        const schemaSays = firstProblem(FIELDS[field]!, v) === undefined;
        let agentSays = true;
        try {
          if (field === 'label') bridge({ label: v });
          else agent({ [field === 'broker' ? 'brokerUrl' : field]: v });
        } catch {
          agentSays = false;
        }
        expect(schemaSays, `${field} = ${JSON.stringify(v)}`).toBe(agentSays);
      }
    }
  });
});

describe('core/json-schema.ts, the subset validator', () => {
  const s: JsonSchema = {
    type: 'object',
    additionalProperties: false,
    properties: {
      n: { type: 'integer', minimum: 1 },
      x: { type: 'number', maximum: 2 },
      s: { type: 'string', minLength: 2, maxLength: 3 },
      e: { anyOf: [{ type: 'string', enum: ['a'] }, { type: 'integer' }] },
    },
  };

  it('says what it expected, in words', () => {
    expect(firstProblem(s, { n: 0 })).toEqual({ kind: 'value', path: 'n', expected: 'an integer ≥ 1', got: 0 });
    expect(firstProblem(s, { x: 2.5 })).toMatchObject({ path: 'x', expected: 'a number ≤ 2' });
    expect(firstProblem(s, { s: 'a' })).toMatchObject({ path: 's', expected: 'a string of 2..3 characters' });
    expect(firstProblem(s, { e: 'b' })).toMatchObject({ path: 'e', expected: 'one of "a" or an integer' });
    expect(firstProblem(s, { n: 1, x: -1, s: 'ab', e: 3 })).toBeUndefined();
    expect(firstProblem(s, 'no')).toMatchObject({ path: '', expected: 'an object' });
    expect(expectedOf({ type: 'boolean' })).toBe('a boolean');
  });

  it('counts characters as code points and matches patterns with the u flag', () => {
    expect(firstProblem(s, { s: '😀😀' })).toBeUndefined();
    expect(firstProblem({ type: 'string', pattern: '^\\p{Lu}$' }, 'Ü')).toBeUndefined();
  });

  it('never takes a key of Object.prototype for a known field', () => {
    expect(firstProblem(s, JSON.parse('{"__proto__": 1}'))).toMatchObject({ kind: 'unknown', path: '__proto__' });
    expect(firstProblem({ type: 'object', properties: {} }, { constructor: 1 })).toBeUndefined();
  });
});

/** A fast-check arbitrary of the values a schema (of this subset) accepts. */
function arbitraryOf(s: JsonSchema): fc.Arbitrary<unknown> {
  if (s.anyOf !== undefined) return fc.oneof(...s.anyOf.map(arbitraryOf));
  if (s.enum !== undefined) return fc.constantFrom(...s.enum);
  switch (s.type) {
    case 'boolean':
      return fc.boolean();
    case 'integer':
      return fc.integer({ min: s.minimum ?? Number.MIN_SAFE_INTEGER, max: s.maximum ?? Number.MAX_SAFE_INTEGER });
    case 'string': {
      const length = (v: string): boolean => [...v].length >= (s.minLength ?? 0) && [...v].length <= (s.maxLength ?? Infinity);
      return (s.pattern !== undefined ? fc.stringMatching(new RegExp(s.pattern, 'u')) : fc.string({ unit: 'binary', minLength: s.minLength ?? 0, maxLength: s.maxLength ?? 40 })).filter(length);
    }
    case 'object':
      return fc.record(Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, p]) => [k, arbitraryOf(p)])), { requiredKeys: [] });
    default:
      throw new Error(`no arbitrary for ${JSON.stringify(s)}`);
  }
}
