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

/** Where a top-level map's value sits: its major type (0 unsigned, 1 negative, 7 float/simple, ...) and byte range. */
export interface TopValue {
  major: number;
  /** Additional information of its initial byte (for major 7: 25/26/27 floats, 20-23 simple values). */
  info: number;
  start: number;
  end: number;
}

export interface SubsetScan {
  /** The top-level map's values by key (empty when the item is not a map). */
  top: Map<string, TopValue>;
  /** Set when the only offences are inside the value of the top-level key `body` (skipped whole). */
  bodyError?: FerryError;
}

class Scanner {
  pos = 0;
  private readonly path: (string | number)[] = [];
  private readonly text: Buffer;

  constructor(private readonly b: Uint8Array, private readonly root: string) {
    this.text = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }

  where(): string {
    let s = this.root;
    // A path 64 levels deep is no help to anyone: the first 12 steps, then an ellipsis.
    for (const [i, k] of this.path.entries()) {
      if (i === 12) return `${s}…`;
      s += typeof k === 'number' ? `[${k}]` : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
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

  /** Reads an initial byte and its argument. Lengths above 2^53 cannot fit any message anyway. */
  head(): { major: number; info: number; arg: number } {
    this.need(1);
    const ib = this.b[this.pos++]!;
    const major = ib >> 5;
    const info = ib & 31;
    let arg = info;
    if (info === 24) {
      this.need(1);
      arg = this.b[this.pos]!;
      this.pos += 1;
    } else if (info === 25) {
      this.need(2);
      arg = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
      this.pos += 2;
    } else if (info === 26) {
      this.need(4);
      arg = this.b[this.pos]! * 2 ** 24 + ((this.b[this.pos + 1]! << 16) | (this.b[this.pos + 2]! << 8) | this.b[this.pos + 3]!);
      this.pos += 4;
    } else if (info === 27) {
      this.need(8);
      const hi = this.b[this.pos]! * 2 ** 24 + ((this.b[this.pos + 1]! << 16) | (this.b[this.pos + 2]! << 8) | this.b[this.pos + 3]!);
      const lo = this.b[this.pos + 4]! * 2 ** 24 + ((this.b[this.pos + 5]! << 16) | (this.b[this.pos + 6]! << 8) | this.b[this.pos + 7]!);
      arg = hi * 2 ** 32 + lo; // exact below 2^53; only compared with lengths left
      this.pos += 8;
    } else if (info === 31) {
      if (major >= 2 && major <= 5) this.fail('has an indefinite length (only definite lengths are allowed)');
      this.fail(major === 7 ? 'is a stray "break" (0xff)' : `uses reserved additional information 31 with major type ${major}`);
    } else if (info > 27) {
      this.fail(`uses reserved additional information ${info}`);
    }
    return { major, info, arg };
  }

  /** Checks one item at nesting `depth` (the item's own level if it is a container). */
  item(depth: number): void {
    const { major, info, arg } = this.head();
    switch (major) {
      case 0:
      case 1:
        return;
      case 2:
        this.need(arg);
        this.pos += arg;
        return;
      case 3:
        this.need(arg);
        if (!isUtf8(this.b.subarray(this.pos, this.pos + arg))) this.fail('is a text string that is not valid UTF-8');
        this.pos += arg;
        return;
      case 4:
        if (depth > MAX_DEPTH) this.fail(`is nested deeper than ${MAX_DEPTH} levels of arrays and maps`);
        // Each element takes at least one byte: a length beyond what is left is a lie.
        if (arg > this.b.length - this.pos) this.fail(`claims ${arg} elements in ${this.b.length - this.pos} bytes`);
        for (let i = 0; i < arg; i++) {
          this.path.push(i);
          this.item(depth + 1);
          this.path.pop();
        }
        return;
      case 5:
        this.map(arg, depth, null);
        return;
      case 6:
        this.fail(`carries CBOR tag ${arg} (tags are not allowed)`);
      // falls through: fail never returns
      default:
        // Major 7: false, true, null, undefined and floats; other simple values are not allowed.
        if (info >= 20 && info <= 23) return;
        if (info === 25 || info === 26 || info === 27) return; // the argument was the float
        this.fail(`is the simple value ${arg} (only false, true, null, undefined and floats are allowed)`);
    }
  }

  /** A map's entries; `top` collects where each value sits (the top-level map). */
  map(n: number, depth: number, top: SubsetScan | null): void {
    if (depth > MAX_DEPTH) this.fail(`is nested deeper than ${MAX_DEPTH} levels of arrays and maps`);
    if (n * 2 > this.b.length - this.pos) this.fail(`claims ${n} entries in ${this.b.length - this.pos} bytes`);
    const keys = new Set<string>();
    for (let i = 0; i < n; i++) {
      const k = this.head();
      if (k.major !== 3) this.fail(`has a key of major type ${k.major} (map keys are text strings)`);
      this.need(k.arg);
      if (!isUtf8(this.b.subarray(this.pos, this.pos + k.arg))) this.fail('has a key that is not valid UTF-8');
      const key = this.text.toString('utf8', this.pos, this.pos + k.arg);
      this.pos += k.arg;
      if (keys.has(key)) {
        this.path.push(key);
        this.fail('appears twice in its map (each key once)');
      }
      keys.add(key);
      this.path.push(key);
      const start = this.pos;
      if (top && key === 'body') {
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
      this.path.pop();
      if (top) {
        const ib = this.b[start]!;
        top.top.set(key, { major: ib >> 5, info: ib & 31, start, end: this.pos });
      }
    }
  }

  /** Skips one well-formed definite-length item without recursion; false if it cannot. */
  private skip(): boolean {
    let left = 1;
    while (left > 0) {
      if (this.pos >= this.b.length) return false;
      const ib = this.b[this.pos]!;
      const major = ib >> 5;
      const info = ib & 31;
      if (info > 27) return false;
      try {
        const { arg } = this.head();
        left--;
        if (major === 2 || major === 3) {
          if (arg > this.b.length - this.pos) return false;
          this.pos += arg;
        } else if (major === 4) left += arg;
        else if (major === 5) left += 2 * arg;
        else if (major === 6) left += 1;
        if (left > this.b.length - this.pos + 1) return false;
      } catch {
        return false;
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
  const scan: SubsetScan = { top: new Map() };
  if (bytes.length === 0) s.fail('is empty');
  const ib = bytes[0]!;
  if (ib >> 5 === 5 && (ib & 31) !== 31) {
    const { arg } = s.head();
    s.map(arg, 1, scan);
  } else {
    s.item(1);
  }
  if (s.pos !== bytes.length) s.fail(`is followed by ${bytes.length - s.pos} more bytes (one CBOR item per message)`);
  return scan;
}
