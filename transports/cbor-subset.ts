import { isUtf8 } from 'node:buffer';
import { FerryError } from '../core/errors.js';

/**
 * Ferry's CBOR subset (PROTOCOL.md §3.2), checked on the raw bytes before anything is decoded:
 * exactly one data item; definite lengths only; no tags (so no bignums, typed arrays, shared
 * references, embedded CBOR or self-describe marks); text strings valid UTF-8; maps with text
 * keys, each key once; simple values false, true, null and undefined only; floats of any width;
 * at most `MAX_DEPTH` levels of arrays and maps (the envelope's own map is level 1).
 *
 * Why a check before the decoder: a general decoder (cbor-x) accepts all of the above and acts
 * on it (a tag-28/29 cycle would reach an app handler; 3,000 nested arrays overflow the stack
 * inside it), and "last key wins" is a quiet disagreement between two receivers. One linear
 * pass over the bytes refuses them with the path of the first offence, before any is built.
 */

/** Most levels of nested arrays and maps in one message, the envelope's map included. */
export const MAX_DEPTH = 64;
/** Longest `field` an offence is named by, characters (then `…`). */
export const MAX_FIELD_CHARS = 256;

/** Where a top-level map's value sits: its major type (0 unsigned, 1 negative, 7 float/simple, ...) and byte range. */
export interface TopValue {
  major: number;
  /** Additional information of its initial byte (for major 7: 25/26/27 floats, 20-23 simple values). */
  info: number;
  start: number;
  end: number;
}

/** The top-level keys whose values the envelope checks on the wire (each has its own length: found by length, then bytes). */
const TOP_KEYS = ['', 'v', 'ts', 'ttl', 'body'] as const;
export type TopKey = 'v' | 'ts' | 'ttl' | 'body';

export interface SubsetScan {
  /** Where the top-level map's `v`, `ts`, `ttl` and `body` values sit (none when the item is not a map). */
  top: Partial<Record<TopKey, TopValue>>;
  /** Set when the only offences are inside the value of the top-level key `body` (skipped whole). */
  bodyError?: FerryError;
}

class Scanner {
  pos = 0;
  // The last head() read: major type, additional information, argument. Fields, not a returned
  // object: this runs for every item of every message received.
  major = 0;
  info = 0;
  arg = 0;
  // The path to the current item, for errors only: a key as its byte range [start, end), an
  // array index as [index, -1].
  private readonly pathA: number[] = [];
  private readonly pathB: number[] = [];

  constructor(private readonly b: Uint8Array, private readonly root: string) {}

  private keyText(start: number, end: number): string {
    // Short ASCII keys (every envelope key) without a Buffer view: that costs ~0.5 µs a key.
    if (end - start <= 16) {
      let k = '';
      for (let i = start; i < end; i++) {
        const c = this.b[i]!;
        if (c >= 0x80) return Buffer.from(this.b.buffer, this.b.byteOffset + start, end - start).toString('utf8');
        k += String.fromCharCode(c);
      }
      return k;
    }
    return Buffer.from(this.b.buffer, this.b.byteOffset + start, end - start).toString('utf8');
  }

  /**
   * The path of the current item as PROTOCOL.md writes fields: `.key` (or `["key"]` for a key
   * that is not an identifier), `[i]`; inside an envelope's body it starts at `body` (§4.1:
   * `body.message.tags[2]`), elsewhere at the root (`envelope.from`). At most MAX_FIELD_CHARS
   * characters, then `…`: a path is at most MAX_DEPTH steps, but a key may be long.
   */
  where(): string {
    let s = this.root;
    for (let i = 0; i < this.pathA.length; i++) {
      const a = this.pathA[i]!;
      const b = this.pathB[i]!;
      if (b < 0) s += `[${a}]`;
      else {
        const k = this.keyText(a, b);
        if (i === 0 && this.root === 'envelope' && k === 'body') s = 'body';
        else s += /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
      }
      if (s.length > MAX_FIELD_CHARS) return `${s.slice(0, MAX_FIELD_CHARS)}…`;
    }
    return s;
  }

  fail(what: string): never {
    const field = this.where();
    throw new FerryError('ENVELOPE_MALFORMED', `${field} ${what} (PROTOCOL.md §3.2)`, { field });
  }

  private need(n: number): void {
    if (this.pos + n > this.b.length) this.fail('is cut short: the CBOR ends inside it');
  }

  /** Reads an initial byte and its argument into major/info/arg. Lengths above 2^53 cannot fit any message anyway. */
  head(): void {
    this.need(1);
    const b = this.b;
    const ib = b[this.pos++]!;
    const major = ib >> 5;
    const info = ib & 31;
    let arg = info;
    if (info >= 24) {
      if (info === 24) {
        this.need(1);
        arg = b[this.pos]!;
        this.pos += 1;
      } else if (info === 25) {
        this.need(2);
        arg = (b[this.pos]! << 8) | b[this.pos + 1]!;
        this.pos += 2;
      } else if (info === 26) {
        this.need(4);
        arg = b[this.pos]! * 2 ** 24 + ((b[this.pos + 1]! << 16) | (b[this.pos + 2]! << 8) | b[this.pos + 3]!);
        this.pos += 4;
      } else if (info === 27) {
        this.need(8);
        const hi = b[this.pos]! * 2 ** 24 + ((b[this.pos + 1]! << 16) | (b[this.pos + 2]! << 8) | b[this.pos + 3]!);
        const lo = b[this.pos + 4]! * 2 ** 24 + ((b[this.pos + 5]! << 16) | (b[this.pos + 6]! << 8) | b[this.pos + 7]!);
        arg = hi * 2 ** 32 + lo; // exact below 2^53; only compared with lengths left
        this.pos += 8;
      } else if (info === 31) {
        if (major >= 2 && major <= 5) this.fail('has an indefinite length (only definite lengths are allowed)');
        this.fail(major === 7 ? 'is a stray "break" (0xff)' : `uses reserved additional information 31 with major type ${major}`);
      } else {
        this.fail(`uses reserved additional information ${info}`);
      }
    }
    this.major = major;
    this.info = info;
    this.arg = arg;
  }

  /** Text of `n` bytes at pos: valid UTF-8 (an ASCII loop first: most text is ASCII, and a native call costs more). */
  private utf8(n: number, what: string): void {
    this.need(n);
    const b = this.b;
    const end = this.pos + n;
    for (let i = this.pos; i < end; i++) {
      if (b[i]! >= 0x80) {
        if (!isUtf8(b.subarray(this.pos, end))) this.fail(what);
        break;
      }
    }
    this.pos = end;
  }

  /** Checks one item at nesting `depth` (the item's own level if it is a container). */
  item(depth: number): void {
    this.head();
    const arg = this.arg;
    switch (this.major) {
      case 0:
      case 1:
        return;
      case 2:
        this.need(arg);
        this.pos += arg;
        return;
      case 3:
        this.utf8(arg, 'is a text string that is not valid UTF-8');
        return;
      case 4:
        if (depth > MAX_DEPTH) this.fail(`is nested deeper than ${MAX_DEPTH} levels of arrays and maps`);
        // Each element takes at least one byte: a length beyond what is left is a lie.
        if (arg > this.b.length - this.pos) this.fail(`claims ${arg} elements in ${this.b.length - this.pos} bytes`);
        for (let i = 0; i < arg; i++) {
          this.pathA.push(i);
          this.pathB.push(-1);
          this.item(depth + 1);
          this.pathA.pop();
          this.pathB.pop();
        }
        return;
      case 5:
        this.map(arg, depth, null);
        return;
      case 6:
        this.fail(`carries CBOR tag ${arg} (tags are not allowed)`);
      // falls through: fail never returns
      default: {
        // Major 7: false, true, null, undefined and floats; other simple values are not allowed.
        const info = this.info;
        if ((info >= 20 && info <= 23) || info === 25 || info === 26 || info === 27) return; // a float's argument was the float
        this.fail(`is the simple value ${arg} (only false, true, null, undefined and floats are allowed)`);
      }
    }
  }

  /** Which of TOP_KEYS the key bytes [s, e) are, if any (no string is made). */
  private topKey(s: number, e: number): TopKey | undefined {
    const k = TOP_KEYS[e - s];
    if (k === undefined || k === '') return undefined;
    for (let i = 0; i < k.length; i++) if (this.b[s + i] !== k.charCodeAt(i)) return undefined;
    return k;
  }

  /** True if the key bytes [s, e) equal one of the keys before it in this map (byte equality: UTF-8 is canonical). */
  private repeated(keys: number[], s: number, e: number): boolean {
    const b = this.b;
    const n = e - s;
    outer: for (let j = 0; j < keys.length; j += 2) {
      const ks = keys[j]!;
      if (keys[j + 1]! - ks !== n) continue;
      for (let i = 0; i < n; i++) if (b[ks + i] !== b[s + i]) continue outer;
      return true;
    }
    return false;
  }

  /** A map's entries; `top` collects where each value sits (the top-level map). */
  map(n: number, depth: number, top: SubsetScan | null): void {
    if (depth > MAX_DEPTH) this.fail(`is nested deeper than ${MAX_DEPTH} levels of arrays and maps`);
    if (n * 2 > this.b.length - this.pos) this.fail(`claims ${n} entries in ${this.b.length - this.pos} bytes`);
    // Keys as byte ranges; a large map compares by text in a Set instead of pairwise.
    const keys: number[] = [];
    const many = n > 16 ? new Set<string>() : null;
    for (let i = 0; i < n; i++) {
      this.head();
      if (this.major !== 3) this.fail(`has a key of major type ${this.major} (map keys are text strings)`);
      const ks = this.pos;
      this.utf8(this.arg, 'has a key that is not valid UTF-8');
      const ke = this.pos;
      this.pathA.push(ks);
      this.pathB.push(ke);
      if (many ? many.size === many.add(this.keyText(ks, ke)).size : this.repeated(keys, ks, ke)) this.fail('appears twice in its map (each key once)');
      if (!many) keys.push(ks, ke);
      const start = this.pos;
      const topKey = top ? this.topKey(ks, ke) : undefined;
      if (top && topKey === 'body') {
        try {
          this.item(depth + 1);
        } catch (e) {
          // Offences inside the body leave the envelope readable: skip the body whole, so a
          // receiver that answers requests can refuse this one instead of dropping it.
          this.pos = start;
          if (!this.skip()) throw e;
          top.bodyError = e as FerryError;
        }
      } else {
        this.item(depth + 1);
      }
      this.pathA.pop();
      this.pathB.pop();
      if (top && topKey) {
        const ib = this.b[start]!;
        top.top[topKey] = { major: ib >> 5, info: ib & 31, start, end: this.pos };
      }
    }
  }

  /**
   * Skips one well-formed item without recursion (any depth, indefinite lengths too: only where
   * it ends matters); false if the bytes are not well-formed CBOR.
   */
  private skip(): boolean {
    // Items left in each open container; -1 for an indefinite one (ended by a break).
    const open: number[] = [1];
    while (open.length > 0) {
      const top = open[open.length - 1]!;
      if (top === 0) {
        open.pop();
        continue;
      }
      if (this.pos >= this.b.length) return false;
      const ib = this.b[this.pos]!;
      if (ib === 0xff) {
        if (top !== -1) return false;
        this.pos++;
        open.pop();
        continue;
      }
      if (top > 0) open[open.length - 1] = top - 1;
      const major = ib >> 5;
      const info = ib & 31;
      if (info === 31) {
        if (major < 2 || major > 5) return false;
        this.pos++;
        open.push(-1);
        continue;
      }
      if (info > 27) return false;
      try {
        this.head();
      } catch {
        return false;
      }
      const arg = this.arg;
      if (major === 2 || major === 3) {
        if (arg > this.b.length - this.pos) return false;
        this.pos += arg;
      } else if (major === 4 || major === 5 || major === 6) {
        const n = major === 5 ? 2 * arg : major === 6 ? 1 : arg;
        if (n > this.b.length - this.pos) return false;
        if (n > 0) open.push(n);
      }
    }
    return true;
  }
}

/**
 * Checks `bytes` against the subset; `root` names the item in errors (`envelope`). Throws
 * ENVELOPE_MALFORMED naming the first offence's path. An offence inside a top-level `body` is
 * returned as `bodyError` instead when the rest is sound.
 */
export function checkCborSubset(bytes: Uint8Array, root: string): SubsetScan {
  const s = new Scanner(bytes, root);
  const scan: SubsetScan = { top: {} };
  if (bytes.length === 0) s.fail('is empty');
  const ib = bytes[0]!;
  if (ib >> 5 === 5 && (ib & 31) !== 31) {
    s.head();
    s.map(s.arg, 1, scan);
  } else {
    s.item(1);
  }
  if (s.pos !== bytes.length) s.fail(`is followed by ${bytes.length - s.pos} more bytes (one CBOR item per message)`);
  return scan;
}
