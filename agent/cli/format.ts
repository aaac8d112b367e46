/** Human output of the ferry command: tables for lists, `key: value` lines for records. */
export function formatHuman(value: unknown): string {
  if (value === null || value === undefined) return 'ok';
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : table(value);
  if (typeof value !== 'object') return String(value);
  const lines: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    if (Array.isArray(v)) lines.push(`${k}:`, indent(v.length === 0 ? '(none)' : table(v)));
    else lines.push(`${k}: ${cell(v)}`);
  }
  return lines.join('\n');
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

function table(rows: unknown[]): string {
  if (!rows.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r))) return rows.map(cell).join('\n');
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r as object)))];
  const cells = rows.map((r) => cols.map((c) => cell((r as Record<string, unknown>)[c])));
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (parts: string[]) => parts.map((p, i) => p.padEnd(width[i]!)).join('  ').trimEnd();
  return [line(cols), ...cells.map(line)].join('\n');
}
