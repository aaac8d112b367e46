import { FerryError } from '../../core/errors.js';

/**
 * A writer of the Prometheus text exposition format, version 0.0.4 (the format every
 * Prometheus-compatible scraper reads): per metric family one `# HELP` and one `# TYPE` line,
 * then its samples, one per line, `name{label="value",...} value`. Written here rather than
 * taken from prom-client: the agent needs counters, gauges and one histogram, a few dozen
 * lines, and a device should not carry another runtime dependency for them.
 *
 * Escaping, as the format requires: in label values `\` → `\\`, `"` → `\"`, a line feed →
 * `\n`; in HELP text `\` → `\\` and a line feed → `\n`. Values: `+Inf`, `-Inf`, `NaN` or a
 * JavaScript number. Names are checked (`[a-zA-Z_:][a-zA-Z0-9_:]*`, labels
 * `[a-zA-Z_][a-zA-Z0-9_]*` and not `__`-prefixed): a bad one is a programming error, BAD_OPTION.
 */

/** The Content-Type of a scrape answer. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

/** One sample of a counter or gauge. */
export interface Sample {
  labels?: Labels;
  value: number;
}

/** One histogram series: per-bucket counts (not cumulative), one more than `bounds` (the last is above every bound). */
export interface HistogramSample {
  labels?: Labels;
  /** Upper bounds of the buckets, finite and increasing. `+Inf` is added by the writer. */
  bounds: readonly number[];
  /** Observations per bucket: `counts[i]` ≤ `bounds[i]` and above the bound before; `counts[bounds.length]` above every bound. */
  counts: readonly number[];
  /** Sum of every observed value. */
  sum: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Collects metric families and gives the exposition text. Each family name may be written once. */
export class PrometheusText {
  private readonly lines: string[] = [];
  private readonly families = new Set<string>();

  counter(name: string, help: string, samples: readonly Sample[]): this {
    return this.simple('counter', name, help, samples);
  }

  gauge(name: string, help: string, samples: readonly Sample[]): this {
    return this.simple('gauge', name, help, samples);
  }

  histogram(name: string, help: string, series: readonly HistogramSample[]): this {
    this.family('histogram', name, help);
    for (const s of series) {
      if (s.counts.length !== s.bounds.length + 1) throw bad('counts', `${name}: counts must have one more entry than bounds`);
      checkLabels(name, s.labels, 'le');
      let cumulative = 0;
      for (let i = 0; i <= s.bounds.length; i++) {
        const le = i < s.bounds.length ? s.bounds[i]! : Infinity;
        if (i < s.bounds.length && (!Number.isFinite(le) || (i > 0 && le <= s.bounds[i - 1]!))) throw bad('bounds', `${name}: bucket bounds must be finite and increasing`);
        cumulative += s.counts[i]!;
        this.lines.push(`${name}_bucket${labelText({ ...s.labels, le: formatValue(le) })} ${formatValue(cumulative)}`);
      }
      this.lines.push(`${name}_sum${labelText(s.labels)} ${formatValue(s.sum)}`);
      this.lines.push(`${name}_count${labelText(s.labels)} ${formatValue(cumulative)}`);
    }
    return this;
  }

  /** The exposition: every family written so far, a line feed after each line. */
  text(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }

  private simple(type: 'counter' | 'gauge', name: string, help: string, samples: readonly Sample[]): this {
    this.family(type, name, help);
    for (const s of samples) {
      checkLabels(name, s.labels);
      this.lines.push(`${name}${labelText(s.labels)} ${formatValue(s.value)}`);
    }
    return this;
  }

  private family(type: string, name: string, help: string): void {
    if (!METRIC_NAME.test(name)) throw bad('name', `metric name ${JSON.stringify(name)} must match ${METRIC_NAME}`);
    if (this.families.has(name)) throw bad('name', `metric ${name} is written twice`);
    this.families.add(name);
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }
}

function checkLabels(metric: string, labels: Labels | undefined, reserved?: string): void {
  for (const k of Object.keys(labels ?? {})) {
    if (!LABEL_NAME.test(k) || k.startsWith('__') || k === reserved) throw bad('labels', `${metric}: label name ${JSON.stringify(k)} is not allowed`);
  }
}

function labelText(labels: Labels | undefined): string {
  const keys = Object.keys(labels ?? {});
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabelValue(labels![k]!)}"`).join(',')}}`;
}

function bad(field: string, message: string): FerryError {
  return new FerryError('BAD_OPTION', message, { field });
}
