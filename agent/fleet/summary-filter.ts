import { FerryError } from '../../core/errors.js';

/**
 * A region summary's set of line hashes: a Golomb-coded set (the structure of BIP 158's compact
 * filters): each content hash is mapped to a number in [0, n·2^p), the numbers are sorted, and
 * their gaps are written Golomb-Rice coded (the quotient gap >> p in unary, then p low bits).
 * About p + 1.5 bits a line; a hash not in the set is taken for one with probability 2^-p
 * (agent/fleet/DESIGN.md, "Region summaries").
 */

/** Default false-positive exponent: one line in 1,024 wrongly counted as held. */
export const SUMMARY_P = 10;
/** The most lines one summary describes (the store's lines of one heap, every kept version). */
export const SUMMARY_MAX_LINES = 1 << 22;

/** The number a content hash maps to in a set of `n` lines at exponent `p`. Its first 8 bytes are uniform (SHA-256). */
export function mapHash(hash: Uint8Array, n: number, p: number): number {
  if (hash.length < 8) throw new FerryError('BAD_OPTION', 'a content hash must be at least 8 bytes long', { field: 'hash' });
  let x = 0n;
  for (let i = 0; i < 8; i++) x = (x << 8n) | BigInt(hash[i]!);
  return Number((x * BigInt(n * 2 ** p)) >> 64n);
}

class BitWriter {
  private bytes: number[] = [];
  private acc = 0;
  private used = 0;
  bit(b: number): void {
    this.acc = (this.acc << 1) | b;
    if (++this.used === 8) {
      this.bytes.push(this.acc);
      this.acc = 0;
      this.used = 0;
    }
  }
  bits(v: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) this.bit(Math.floor(v / 2 ** i) % 2);
  }
  done(): Uint8Array {
    if (this.used > 0) this.bytes.push(this.acc << (8 - this.used));
    return Uint8Array.from(this.bytes);
  }
}

/** Encodes the set of `hashes` (duplicates count once). */
export function encodeSummarySet(hashes: readonly Uint8Array[], p = SUMMARY_P): EncodedSummarySet {
  const n = hashes.length;
  if (n > SUMMARY_MAX_LINES) throw new FerryError('BAD_OPTION', `a summary holds at most ${SUMMARY_MAX_LINES} lines, got ${n}`, { field: 'hashes' });
  const values = [...new Set(hashes.map((h) => mapHash(h, Math.max(n, 1), p)))].sort((a, b) => a - b);
  const w = new BitWriter();
  let last = 0;
  for (const v of values) {
    const gap = v - last;
    last = v;
    for (let q = Math.floor(gap / 2 ** p); q > 0; q--) w.bit(1);
    w.bit(0);
    w.bits(gap % 2 ** p, p);
  }
  // n is the mapping's range; the count of coded values may be smaller (two hashes on one value).
  return { n: Math.max(n, 1), p, count: values.length, data: w.done() };
}

/** A set as it travels: the mapping's range n, the exponent p, how many values, the coded gaps. */
export interface EncodedSummarySet {
  n: number;
  p: number;
  count: number;
  data: Uint8Array;
}

/** A decoded summary set: membership by binary search over its sorted values. */
export class SummarySet {
  private constructor(
    readonly n: number,
    readonly p: number,
    private readonly values: Float64Array,
  ) {}

  /** Decodes a set; malformed input is FLEET_SUMMARY_MALFORMED naming `field`. */
  static decode(e: EncodedSummarySet, field = 'summary'): SummarySet {
    const { n, p, count, data } = e;
    const bad = (why: string) => new FerryError('FLEET_SUMMARY_MALFORMED', `${field}: ${why}`, { field });
    if (!Number.isInteger(n) || n < 1 || n > SUMMARY_MAX_LINES) throw bad(`n must be an integer in 1..${SUMMARY_MAX_LINES}`);
    if (!Number.isInteger(p) || p < 1 || p > 24) throw bad('p must be an integer in 1..24');
    if (!Number.isInteger(count) || count < 0 || count > n) throw bad('count must be an integer in 0..n');
    if (!(data instanceof Uint8Array)) throw bad('data must be bytes');
    const range = n * 2 ** p;
    const values = new Float64Array(count);
    const total = data.length * 8;
    let pos = 0;
    const bit = () => {
      if (pos >= total) throw bad(`the data ends before its ${count} values`);
      return (data[pos >> 3]! >> (7 - (pos++ & 7))) & 1;
    };
    let value = 0;
    for (let i = 0; i < count; i++) {
      let q = 0;
      while (bit() === 1) q++;
      let r = 0;
      for (let j = 0; j < p; j++) r = r * 2 + bit();
      const gap = q * 2 ** p + r;
      if (i > 0 && gap === 0) throw bad('a value is repeated');
      value += gap;
      if (value >= range) throw bad('a value falls outside the set');
      values[i] = value;
    }
    // What follows the last value is the last byte's padding: fewer than 8 bits, all zero.
    if (total - pos >= 8) throw bad('bytes follow the last value');
    while (pos < total) if (bit() !== 0) throw bad('the padding after the last value is not zero');
    return new SummarySet(n, p, values);
  }

  get size(): number {
    return this.values.length;
  }

  has(hash: Uint8Array): boolean {
    const v = mapHash(hash, this.n, this.p);
    let lo = 0;
    let hi = this.values.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = this.values[mid]!;
      if (m === v) return true;
      if (m < v) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }
}
