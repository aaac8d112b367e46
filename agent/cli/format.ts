/**
 * Human output of the ferry command: tables for lists, `key: value` lines for records.
 * `width` (columns) fits each line to a terminal: the widest table columns give way first and
 * their cells end in `…`; no column is cut below MIN_COLUMN. Without a width (output to a pipe
 * or a file) nothing is cut, so a script reads whole values (or asks for --json).
 */
export function formatHuman(value: unknown, width = Number.POSITIVE_INFINITY): string {
  if (value === null || value === undefined) return 'ok';
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : table(value, width);
  if (typeof value !== 'object') return String(value);
  const lines: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (Array.isArray(v)) lines.push(`${k}:`, indent(v.length === 0 ? '(none)' : table(v, width - 2)));
    else lines.push(fit(`${k}: ${cell(v)}`, width));
  }
  return lines.join('\n');
}

/** The narrowest a column is cut to, characters. */
const MIN_COLUMN = 8;

function fit(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, Math.max(1, width - 1))}…`;
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function table(rows: unknown[], width: number): string {
  if (!rows.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r))) return rows.map((r) => fit(cell(r), width)).join('\n');
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r as object)))];
  const cells = rows.map((r) => cols.map((c) => cell((r as Record<string, unknown>)[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  // Two spaces between columns; narrow the widest column, one character at a time, until the line fits.
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  while (total() > width) {
    const widest = widths.indexOf(Math.max(...widths));
    if (widths[widest]! <= MIN_COLUMN) break;
    widths[widest]!--;
  }
  const line = (parts: string[]) => parts.map((p, i) => fit(p, widths[i]!).padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cols), ...cells.map(line)].join('\n');
}

/**
 * One log line for people (`ferry logs`): `<ISO time> <level> <instance> <event> key=value…`, the
 * time as the agent wrote it (ISO 8601, UTC), `-` for a line about no instance. A string value is
 * printed as is when it is one plain word, else as JSON (quoted, control characters escaped, so
 * an app's text cannot drive the terminal); other values as JSON.
 */
export function formatLogLine(line: Record<string, unknown>): string {
  const { seq: _seq, ts, level, event, instance, ...rest } = line;
  const head = [String(ts), String(level).padEnd(5), typeof instance === 'string' ? instance : '-', String(event)];
  return [...head, ...Object.entries(rest).map(([k, v]) => `${k}=${logValue(v)}`)].join(' ');
}

function logValue(v: unknown): string {
  if (typeof v === 'string' && /^[\w.,:;/@+%#*!?~^|()[\]{}<>'-]+$/.test(v)) return v;
  // JSON escapes C0 controls; DEL, C1 controls and bidi overrides are escaped here too.
  return (JSON.stringify(v) ?? String(v)).replace(/[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
