/**
 * The subset of JSON Schema (draft 2020-12) Ferry's own schemas are written in, and a validator
 * for it: `type` (object, string, integer, number, boolean), `properties`,
 * `additionalProperties: false`, `enum`, `minimum`, `maximum`, `minLength`, `maxLength`,
 * `pattern` (ECMA-262 with the `u` flag, as the draft asks) and `anyOf`. Annotations
 * (`title`, `description`, `default`, `examples`, `$comment`) and `x-` keywords are carried
 * and ignored. Any other keyword is refused when the schema is checked (`checkSchemaSubset`),
 * so a constraint never passes silently unchecked.
 */

export type JsonSchemaType = 'object' | 'string' | 'integer' | 'number' | 'boolean';

export interface JsonSchema {
  readonly $schema?: string;
  readonly $id?: string;
  readonly $comment?: string;
  readonly title?: string;
  readonly description?: string;
  readonly default?: unknown;
  readonly examples?: readonly unknown[];
  readonly type?: JsonSchemaType;
  readonly properties?: { readonly [name: string]: JsonSchema };
  readonly additionalProperties?: false;
  readonly enum?: readonly (string | number | boolean)[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly anyOf?: readonly JsonSchema[];
  /** Ferry's annotation: the default said in words, where it is not one literal value (`default`). */
  readonly 'x-default'?: string;
}

const KEYWORDS = new Set([
  '$schema', '$id', '$comment', 'title', 'description', 'default', 'examples', 'type', 'properties', 'additionalProperties',
  'enum', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'anyOf',
]);

/** Throws if the schema uses a keyword (or a value of one) this validator does not check. */
export function checkSchemaSubset(schema: JsonSchema, at = '#'): void {
  for (const [k, v] of Object.entries(schema)) {
    if (!KEYWORDS.has(k) && !k.startsWith('x-')) throw new Error(`${at}: keyword ${k} is not in the subset core/json-schema.ts checks`);
    if (k === 'additionalProperties' && v !== false) throw new Error(`${at}: only additionalProperties: false is checked`);
    if (k === 'pattern') new RegExp(v as string, 'u');
  }
  for (const [name, s] of Object.entries(schema.properties ?? {})) checkSchemaSubset(s, `${at}/properties/${name}`);
  schema.anyOf?.forEach((s, i) => checkSchemaSubset(s, `${at}/anyOf/${i}`));
}

/** What is wrong with a value: where (`keepVersions`, `''` for the value itself), what was expected, what was there. */
export type SchemaProblem =
  | { kind: 'value'; path: string; expected: string; got: unknown }
  | { kind: 'unknown'; path: string; known: string[] };

/** The first problem of `value` against `schema` (object keys in their order), or undefined if it is valid. */
export function firstProblem(schema: JsonSchema, value: unknown, path = ''): SchemaProblem | undefined {
  const bad = (): SchemaProblem => ({ kind: 'value', path, expected: expectedOf(schema), got: value });
  if (schema.anyOf !== undefined && !schema.anyOf.some((s) => firstProblem(s, value, path) === undefined)) return bad();
  if (schema.type !== undefined && !hasType(value, schema.type)) return bad();
  if (schema.enum !== undefined && !schema.enum.includes(value as string)) return bad();
  if (typeof value === 'number') {
    if ((schema.minimum !== undefined && value < schema.minimum) || (schema.maximum !== undefined && value > schema.maximum)) return bad();
  }
  if (typeof value === 'string') {
    const length = [...value].length; // code points, as the draft counts
    if ((schema.minLength !== undefined && length < schema.minLength) || (schema.maxLength !== undefined && length > schema.maxLength)) return bad();
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return bad();
  }
  if (isObject(value) && (schema.properties !== undefined || schema.additionalProperties === false)) {
    const properties = schema.properties ?? {};
    const known = Object.keys(properties);
    const keys = Object.keys(value);
    if (schema.additionalProperties === false) {
      const unknown = keys.find((k) => !Object.hasOwn(properties, k));
      if (unknown !== undefined) return { kind: 'unknown', path: join(path, unknown), known };
    }
    for (const k of keys) {
      if (!Object.hasOwn(properties, k)) continue;
      const p = firstProblem(properties[k]!, value[k], join(path, k));
      if (p !== undefined) return p;
    }
  }
  return undefined;
}

/** What a schema asks for, in words: `an integer in 1..1000`, `one of "full", "batched"`. */
export function expectedOf(s: JsonSchema): string {
  if (s.anyOf !== undefined) return s.anyOf.map(expectedOf).join(' or ');
  if (s.enum !== undefined) return `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  switch (s.type) {
    case 'integer':
    case 'number': {
      const what = s.type === 'integer' ? 'an integer' : 'a number';
      if (s.minimum !== undefined && s.maximum !== undefined) return `${what} in ${s.minimum}..${s.maximum}`;
      if (s.minimum !== undefined) return `${what} ≥ ${s.minimum}`;
      return s.maximum !== undefined ? `${what} ≤ ${s.maximum}` : what;
    }
    case 'string': {
      let what = 'a string';
      if (s.maxLength !== undefined) what = `a string of ${s.minLength ?? 0}..${s.maxLength} characters`;
      else if (s.minLength === 1) what = 'a non-empty string';
      else if (s.minLength !== undefined) what = `a string of at least ${s.minLength} characters`;
      return s.pattern !== undefined ? `${what} matching /${s.pattern}/` : what;
    }
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'an object';
    default:
      return 'a value';
  }
}

function hasType(v: unknown, type: JsonSchemaType): boolean {
  switch (type) {
    case 'object':
      return isObject(v);
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    default:
      return typeof v === type;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
