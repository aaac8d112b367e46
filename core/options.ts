import { FerryError, type ErrorCode } from './errors.js';

/**
 * Option validation shared by every part. Each reader checks one field and
 * names it in the error (`options.keepVersions must be an integer in 1..1000, got 0`),
 * as better-sqlite3 and undici do.
 */

export interface NumberRule {
  /** Inclusive lower bound. */
  min: number;
  /** Inclusive upper bound. */
  max: number;
  /** Require an integer. Default true. */
  integer?: boolean;
}

export class OptionReader {
  constructor(
    private readonly source: Record<string, unknown>,
    /** Prefix used in messages, e.g. `options` or `profile "rpi-4b"`. */
    readonly prefix: string,
    private readonly code: ErrorCode = 'BAD_OPTION',
  ) {
    if (source === null || typeof source !== 'object' || Array.isArray(source)) {
      throw new FerryError(code, `${prefix} must be an object, got ${describe(source)}`, { field: prefix });
    }
  }

  fail(name: string, expected: string, got: unknown): never {
    const field = `${this.prefix}.${name}`;
    throw new FerryError(this.code, `${field} must be ${expected}, got ${describe(got)}`, { field });
  }

  has(name: string): boolean {
    return this.source[name] !== undefined;
  }

  number(name: string, rule: NumberRule, fallback?: number): number {
    const v = this.source[name] ?? fallback;
    const integer = rule.integer ?? true;
    const expected = `${integer ? 'an integer' : 'a number'} in ${rule.min}..${rule.max}`;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < rule.min || v > rule.max) {
      this.fail(name, expected, v);
    }
    return v;
  }

  string(name: string, fallback?: string, pattern?: RegExp): string {
    const v = this.source[name] ?? fallback;
    if (typeof v !== 'string' || v.length === 0 || (pattern && !pattern.test(v))) {
      this.fail(name, pattern ? `a string matching ${pattern}` : 'a non-empty string', v);
    }
    return v;
  }

  boolean(name: string, fallback?: boolean): boolean {
    const v = this.source[name] ?? fallback;
    if (typeof v !== 'boolean') this.fail(name, 'a boolean', v);
    return v;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback?: T): T {
    const v = this.source[name] ?? fallback;
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      this.fail(name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    }
    return v as T;
  }

  /** Rejects fields the reader does not know, so a typo never passes silently. */
  rejectUnknown(known: readonly string[]): void {
    for (const key of Object.keys(this.source)) {
      if (!known.includes(key)) {
        const field = `${this.prefix}.${key}`;
        throw new FerryError(this.code, `${field} is not a known option (known: ${known.join(', ')})`, { field });
      }
    }
  }

  raw(name: string): unknown {
    return this.source[name];
  }
}

export function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return `${v.constructor.name}(${v.length})`;
  return typeof v === 'object' ? 'an object' : typeof v;
}
