/**
 * A strict reader of the Prometheus text format 0.0.4, written for the tests from the format's
 * description (not from the writer), so a scrape is checked by something that does not share the
 * writer's mistakes: every line is a HELP, a TYPE or a sample; a family has one TYPE, given before
 * its samples; every sample belongs to a typed family; label values are unescaped; histogram
 * series have increasing `le`, non-decreasing cumulative counts, a last bucket `+Inf` equal to
 * `_count`, and a `_sum`. Throws an Error naming the line on any violation.
 */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedExposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: ParsedSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): ParsedExposition {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: ParsedSample[] = [];
  const familiesWithSamples = new Set<string>();
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, n) => {
    const where = `line ${n + 1} (${JSON.stringify(line)})`;
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.*)$/.exec(line);
      if (!m || !NAME.test(m[1]!)) throw new Error(`${where}: bad HELP`);
      if (help.has(m[1]!)) throw new Error(`${where}: second HELP for ${m[1]}`);
      help.set(m[1]!, unescape(m[2]!, false, where));
      return;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!m || !NAME.test(m[1]!) || !TYPES.has(m[2]!)) throw new Error(`${where}: bad TYPE`);
      if (types.has(m[1]!)) throw new Error(`${where}: second TYPE for ${m[1]}`);
      if (familiesWithSamples.has(m[1]!)) throw new Error(`${where}: TYPE after samples of ${m[1]}`);
      types.set(m[1]!, m[2]!);
      return;
    }
    if (line.startsWith('#')) return; // a comment
    const s = parseSample(line, where);
    const family = familyOf(s.name, types);
    if (family === undefined) throw new Error(`${where}: sample ${s.name} has no TYPE`);
    familiesWithSamples.add(family);
    samples.push(s);
  });
  checkHistograms(types, samples);
  return { types, help, samples };
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (types.get(base) === 'histogram' || (suffix !== '_bucket' && types.get(base) === 'summary')) return base;
    }
  }
  return undefined;
}

function parseSample(line: string, where: string): ParsedSample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i]!)) i++;
  const name = line.slice(0, i);
  if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const start = i;
      while (i < line.length && /[a-zA-Z0-9_]/.test(line[i]!)) i++;
      const key = line.slice(start, i);
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(key)) throw new Error(`${where}: bad label name`);
      if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`${where}: label ${key} needs ="..."`);
      i += 2;
      let raw = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') {
          raw += line.slice(i, i + 2);
          i += 2;
        } else raw += line[i++];
      }
      if (line[i] !== '"') throw new Error(`${where}: unterminated label value`);
      i++;
      if (key in labels) throw new Error(`${where}: label ${key} twice`);
      labels[key] = unescape(raw, true, where);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`${where}: expected , or } after a label`);
    }
    i++;
  }
  if (line[i] !== ' ') throw new Error(`${where}: expected one space before the value`);
  const rest = line.slice(i + 1).split(' ');
  if (rest.length > 2 || (rest.length === 2 && !/^-?\d+$/.test(rest[1]!))) throw new Error(`${where}: bad value or timestamp`);
  return { name, labels, value: parseValue(rest[0]!, where) };
}

function parseValue(v: string, where: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN') return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) throw new Error(`${where}: bad value ${v}`);
  return Number(v);
}

function unescape(raw: string, quotes: boolean, where: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== '\\') {
      out += raw[i];
      continue;
    }
    const c = raw[++i];
    if (c === '\\') out += '\\';
    else if (c === 'n') out += '\n';
    else if (c === '"' && quotes) out += '"';
    else throw new Error(`${where}: bad escape \\${c ?? ''}`);
  }
  return out;
}

function checkHistograms(types: Map<string, string>, samples: ParsedSample[]): void {
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, { le: number[]; counts: number[]; sum?: number; count?: number }>();
    const keyOf = (l: Record<string, string>) => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le').sort());
    const get = (l: Record<string, string>) => {
      const k = keyOf(l);
      let s = series.get(k);
      if (!s) series.set(k, (s = { le: [], counts: [] }));
      return s;
    };
    for (const s of samples) {
      if (s.name === `${name}_bucket`) {
        if (s.labels.le === undefined) throw new Error(`${name}_bucket without le`);
        const e = get(s.labels);
        e.le.push(parseValue(s.labels.le, `${name}_bucket le`));
        e.counts.push(s.value);
      } else if (s.name === `${name}_sum`) get(s.labels).sum = s.value;
      else if (s.name === `${name}_count`) get(s.labels).count = s.value;
    }
    for (const [k, s] of series) {
      const at = `${name}${k}`;
      if (s.le.length === 0 || s.le[s.le.length - 1] !== Infinity) throw new Error(`${at}: the last bucket must be le="+Inf"`);
      for (let i = 1; i < s.le.length; i++) {
        if (!(s.le[i]! > s.le[i - 1]!)) throw new Error(`${at}: le must increase`);
        if (s.counts[i]! < s.counts[i - 1]!) throw new Error(`${at}: bucket counts must not decrease`);
      }
      if (s.count === undefined || s.sum === undefined) throw new Error(`${at}: _sum and _count are required`);
      if (s.counts[s.counts.length - 1] !== s.count) throw new Error(`${at}: +Inf bucket ${s.counts[s.counts.length - 1]} != _count ${s.count}`);
    }
  }
}

/** The value of the one sample of `name` with exactly these labels (0 if there is none: a series not yet started). */
export function valueOf(p: ParsedExposition, name: string, labels: Record<string, string> = {}): number {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = p.samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want);
  if (found.length > 1) throw new Error(`${name}${want}: ${found.length} samples`);
  return found[0]?.value ?? 0;
}
