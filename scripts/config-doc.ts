/**
 * Writes what is generated from the schema of ferry.config.json (agent/cli/config-schema.ts):
 * `ferry.config.schema.json` at the repository root (for editors: `"$schema"` in a config file)
 * and the table of fields in README.md, between its marker comments.
 *
 *   npx tsx scripts/config-doc.ts
 *
 * test/unit/config.test.ts fails when either differs from what this would write.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONFIG_SCHEMA } from '../agent/cli/config-schema.js';
import type { JsonSchema } from '../core/json-schema.js';

export const SCHEMA_FILE = 'ferry.config.schema.json';
export const UPDATE_COMMAND = 'npx tsx scripts/config-doc.ts';
export const TABLE_START = '<!-- ferry.config.json fields: generated from agent/cli/config-schema.ts by `npx tsx scripts/config-doc.ts`; do not edit by hand -->';
export const TABLE_END = '<!-- end of the generated ferry.config.json fields -->';

/** The text of ferry.config.schema.json. */
export function schemaText(): string {
  return `${JSON.stringify(CONFIG_SCHEMA, null, 2)}\n`;
}

/** The README table of the fields: field, type, default, limits, description. */
export function fieldsTable(schema: JsonSchema = CONFIG_SCHEMA): string {
  const rows = Object.entries(schema.properties ?? {}).map(([name, s]) => [`\`${name}\``, typeOf(s), defaultOf(s), limitsOf(s) || '—', s.description ?? '']);
  return [['field', 'type', 'default', 'limits', 'description'], ['---', '---', '---', '---', '---'], ...rows].map((r) => `| ${r.map(cell).join(' | ')} |`).join('\n') + '\n';
}

/** `readme` with the text between the markers replaced by the table. */
export function withFieldsTable(readme: string, table = fieldsTable()): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers\n${TABLE_START}\n${TABLE_END}\naround the table of ferry.config.json fields`);
  return `${readme.slice(0, start + TABLE_START.length)}\n\n${table}\n${readme.slice(end)}`;
}

function typeOf(s: JsonSchema): string {
  if (s.anyOf !== undefined) return [...new Set(s.anyOf.map(typeOf))].join(' or ');
  return s.type ?? 'any';
}

function defaultOf(s: JsonSchema): string {
  if (s.default !== undefined) return literal(s.default);
  return s['x-default'] ?? '—';
}

function limitsOf(s: JsonSchema): string {
  if (s.anyOf !== undefined) return s.anyOf.map(limitsOf).join(' or ');
  if (s.enum !== undefined) return s.enum.map(literal).join(', ');
  const parts: string[] = [];
  if (s.minimum !== undefined || s.maximum !== undefined) {
    const wide = Math.max(Math.abs(s.minimum ?? 0), Math.abs(s.maximum ?? 0));
    parts.push(`${s.minimum !== undefined ? number(s.minimum, wide) : ''}..${s.maximum !== undefined ? number(s.maximum, wide) : ''}`);
  }
  if (s.maxLength !== undefined) parts.push(`${s.minLength ?? 0}..${s.maxLength} characters`);
  else if (s.minLength === 1) parts.push('non-empty');
  else if (s.minLength !== undefined) parts.push(`at least ${s.minLength} characters`);
  if (s.pattern !== undefined) parts.push(`matching \`${s.pattern}\``);
  return parts.join(', ');
}

function literal(v: unknown): string {
  return typeof v === 'number' ? number(v) : `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``;
}

/** 1883, 60,000: four-digit numbers (ports) without a separator, unless beside a wider one (`1,000..600,000`). */
function number(n: number, wide = Math.abs(n)): string {
  return wide < 10_000 ? String(n) : n.toLocaleString('en-US');
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = (name: string): string => fileURLToPath(new URL(`../${name}`, import.meta.url));
  writeFileSync(root(SCHEMA_FILE), schemaText());
  writeFileSync(root('README.md'), withFieldsTable(readFileSync(root('README.md'), 'utf8')));
  console.log(`wrote ${SCHEMA_FILE} and the table of fields in README.md`);
}
