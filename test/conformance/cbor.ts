/**
 * The conformance suite's own CBOR (RFC 8949), written from transports/PROTOCOL.md alone and
 * sharing nothing with transports/: an encoder that can write what Ferry's subset (§3.2)
 * forbids, an independent oracle that says where the first offence of an encoded value is, and
 * a strict decoder that refuses anything outside the subset (used to read the agent's answers,
 * which must themselves be inside it).
 *
 * A value to encode is a tree of `Node`s, so a hostile input is built exactly: an
 * indefinite-length map, a tag, a key written twice, text bytes that are not UTF-8, a float
 * where an integer belongs, nesting thousands of levels deep, a stray break.
 */
import { isUtf8 } from 'node:buffer';

const NODE = Symbol('cbor-node');

export type Node = (
  | { k: 'uint'; n: bigint; w?: 1 | 2 | 4 | 8 }
  | { k: 'nint'; n: bigint; w?: 1 | 2 | 4 | 8 }
  | { k: 'text'; b: Uint8Array }
  | { k: 'bytes'; b: Uint8Array }
  | { k: 'array'; items: Node[]; indef: boolean }
  | { k: 'map'; entries: Array<[Node, Node]>; indef: boolean }
  | { k: 'tag'; tag: bigint; item: Node }
  | { k: 'float'; w: 2 | 4 | 8; bits: bigint }
  | { k: 'simple'; n: number }
  | { k: 'chunked'; major: 2 | 3; chunks: Uint8Array[] }
  | { k: 'break' }
  | { k: 'reserved'; ib: number }
) & { readonly [NODE]: true };

type Spec = Node extends infer T ? (T extends Node ? Omit<T, typeof NODE> : never) : never;
const mk = (spec: Spec): Node => ({ ...spec, [NODE]: true }) as Node;
export const isNode = (x: unknown): x is Node => typeof x === 'object' && x !== null && NODE in x;

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** Node builders. `w` forces an argument width (1, 2, 4 or 8 bytes) for integers. */
export const C = {
  uint: (n: number | bigint, w?: 1 | 2 | 4 | 8): Node => mk({ k: 'uint', n: BigInt(n), ...(w ? { w } : {}) }),
  /** The negative integer -1-n. */
  nint: (n: number | bigint, w?: 1 | 2 | 4 | 8): Node => mk({ k: 'nint', n: BigInt(n), ...(w ? { w } : {}) }),
  int: (n: number | bigint): Node => (BigInt(n) >= 0n ? C.uint(n) : C.nint(-1n - BigInt(n))),
  text: (s: string): Node => mk({ k: 'text', b: utf8(s) }),
  /** A text string (major type 3) holding these exact bytes, valid UTF-8 or not. */
  rawText: (b: ArrayLike<number>): Node => mk({ k: 'text', b: Uint8Array.from(b) }),
  bytes: (b: ArrayLike<number>): Node => mk({ k: 'bytes', b: Uint8Array.from(b) }),
  array: (items: Node[], indef = false): Node => mk({ k: 'array', items, indef }),
  map: (entries: Array<[Node | string, Node]>, indef = false): Node =>
    mk({ k: 'map', entries: entries.map(([key, val]) => [typeof key === 'string' ? C.text(key) : key, val]), indef }),
  tag: (tag: number | bigint, item: Node): Node => mk({ k: 'tag', tag: BigInt(tag), item }),
  f64: (x: number): Node => {
    const d = new DataView(new ArrayBuffer(8));
    d.setFloat64(0, x);
    return mk({ k: 'float', w: 8, bits: d.getBigUint64(0) });
  },
  f32: (x: number): Node => {
    const d = new DataView(new ArrayBuffer(4));
    d.setFloat32(0, x);
    return mk({ k: 'float', w: 4, bits: BigInt(d.getUint32(0)) });
  },
  /** A half-precision float given by its 16 bits (0x3c00 is 1.0). */
  f16bits: (bits: number): Node => mk({ k: 'float', w: 2, bits: BigInt(bits & 0xffff) }),
  /** Simple value n (20 false, 21 true, 22 null, 23 undefined; 0..19 and 32..255 are outside the subset). */
  simple: (n: number): Node => mk({ k: 'simple', n }),
  null: (): Node => C.simple(22),
  undefined: (): Node => C.simple(23),
  bool: (b: boolean): Node => C.simple(b ? 21 : 20),
  /** An indefinite-length byte (major 2) or text (major 3) string made of definite chunks. */
  chunked: (major: 2 | 3, chunks: Array<ArrayLike<number>>): Node => mk({ k: 'chunked', major, chunks: chunks.map((c) => Uint8Array.from(c)) }),
  /** A stray "break" (0xff) where a data item belongs. */
  brk: (): Node => mk({ k: 'break' }),
  /** An initial byte with reserved additional information 28..30 (not well-formed CBOR). */
  reserved: (ib: number): Node => mk({ k: 'reserved', ib }),
  /** `levels` nested containers (arrays, or maps with the single key `a`) around `leaf`. */
  nest: (levels: number, leaf: Node, kind: 'array' | 'map' = 'array'): Node => {
    let n = leaf;
    for (let i = 0; i < levels; i++) n = kind === 'array' ? C.array([n]) : C.map([['a', n]]);
    return n;
  },
  /**
   * A plain JavaScript value as CBOR: integers as major 0/1 (shortest), other numbers float64,
   * strings text, Uint8Array bytes, arrays, objects as text-keyed maps (in key order), null,
   * undefined, booleans; a Node anywhere inside is used as it is.
   */
  of: (x: unknown): Node => {
    if (isNode(x)) return x;
    if (x === null) return C.null();
    if (x === undefined) return C.undefined();
    if (typeof x === 'boolean') return C.bool(x);
    if (typeof x === 'bigint') return C.int(x);
    if (typeof x === 'number') return Number.isInteger(x) && Math.abs(x) <= Number.MAX_SAFE_INTEGER ? C.int(x) : C.f64(x);
    if (typeof x === 'string') return C.text(x);
    if (x instanceof Uint8Array) return C.bytes(x);
    if (Array.isArray(x)) return C.array(x.map((i) => C.of(i)));
    if (typeof x === 'object') return C.map(Object.entries(x as Record<string, unknown>).map(([k, v]) => [k, C.of(v)]));
    throw new Error(`C.of: cannot write ${typeof x}`);
  },
};

// ---------------------------------------------------------------- encoding

function head(major: number, n: bigint, w?: 1 | 2 | 4 | 8): Uint8Array {
  const width = w ?? (n < 24n ? 0 : n < 0x100n ? 1 : n < 0x10000n ? 2 : n < 0x100000000n ? 4 : 8);
  if (width === 0) return Uint8Array.of((major << 5) | Number(n));
  const out = new Uint8Array(1 + width);
  out[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[width];
  for (let i = 0; i < width; i++) out[width - i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** The bytes of a node tree (iterative: trees thousands of levels deep are fine). */
export function encode(root: Node): Buffer {
  const parts: Uint8Array[] = [];
  const stack: Array<Node | Uint8Array> = [root];
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (x instanceof Uint8Array) {
      parts.push(x);
      continue;
    }
    switch (x.k) {
      case 'uint':
        parts.push(head(0, x.n, x.w));
        break;
      case 'nint':
        parts.push(head(1, x.n, x.w));
        break;
      case 'text':
        parts.push(head(3, BigInt(x.b.length)), x.b);
        break;
      case 'bytes':
        parts.push(head(2, BigInt(x.b.length)), x.b);
        break;
      case 'array': {
        parts.push(x.indef ? Uint8Array.of(0x9f) : head(4, BigInt(x.items.length)));
        const later: Array<Node | Uint8Array> = [...x.items];
        if (x.indef) later.push(Uint8Array.of(0xff));
        for (let i = later.length - 1; i >= 0; i--) stack.push(later[i]!);
        break;
      }
      case 'map': {
        parts.push(x.indef ? Uint8Array.of(0xbf) : head(5, BigInt(x.entries.length)));
        const later: Array<Node | Uint8Array> = x.entries.flatMap(([k, v]) => [k, v]);
        if (x.indef) later.push(Uint8Array.of(0xff));
        for (let i = later.length - 1; i >= 0; i--) stack.push(later[i]!);
        break;
      }
      case 'tag':
        parts.push(head(6, x.tag));
        stack.push(x.item);
        break;
      case 'float': {
        const b = new Uint8Array(1 + x.w);
        b[0] = 0xe0 | { 2: 25, 4: 26, 8: 27 }[x.w];
        for (let i = 0; i < x.w; i++) b[x.w - i] = Number((x.bits >> BigInt(8 * i)) & 0xffn);
        parts.push(b);
        break;
      }
      case 'simple':
        parts.push(x.n < 24 ? Uint8Array.of(0xe0 | x.n) : Uint8Array.of(0xf8, x.n));
        break;
      case 'chunked':
        parts.push(Uint8Array.of((x.major << 5) | 31));
        for (const c of x.chunks) parts.push(head(x.major, BigInt(c.length)), c);
        parts.push(Uint8Array.of(0xff));
        break;
      case 'break':
        parts.push(Uint8Array.of(0xff));
        break;
      case 'reserved':
        parts.push(Uint8Array.of(x.ib));
        break;
    }
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- the §3.2 oracle (on node trees)

/** The rules of PROTOCOL.md §3.2 an offence can break (the suite's names for them). */
export type Rule = 'one-item' | 'definite' | 'tag' | 'utf8' | 'key-type' | 'dup-key' | 'simple' | 'depth' | 'not-well-formed';

export interface Offence {
  rule: Rule;
  /** The path, written as PROTOCOL.md writes them: `body.message.x[2]`. */
  path: string;
  /** True when the offence's path was written from a key that is not a plain identifier (the document shows no such path). */
  oddKey: boolean;
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** A key's path below `path`, as §4.1 writes fields: the envelope's body starts at `body` (`body.message.x`), not `envelope.body`. */
export const childPath = (path: string, key: string): string => (path === 'envelope' && key === 'body' ? 'body' : path + keyStep(key));
/** A map key appended to a path: `.key`, or `["key"]` when it is not an identifier (the document is silent on those). */
export const keyStep = (key: string): string => (IDENT.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);

/**
 * The first offence against §3.2 in `node` (document order, a container before what it holds),
 * or undefined. `depth` is the level `node` has if it is an array or map (the envelope's map is 1).
 */
export function firstOffence(node: Node, path: string, depth: number, maxDepth: number, odd = false): Offence | undefined {
  const at = (rule: Rule): Offence => ({ rule, path, oddKey: odd });
  switch (node.k) {
    case 'uint':
    case 'nint':
    case 'bytes':
    case 'float':
      return undefined;
    case 'text':
      return isUtf8(node.b) ? undefined : at('utf8');
    case 'simple':
      return node.n >= 20 && node.n <= 23 ? undefined : at('simple');
    case 'chunked':
      return at('definite');
    case 'tag':
      return at('tag');
    case 'break':
    case 'reserved':
      return at('not-well-formed');
    case 'array': {
      if (node.indef) return at('definite');
      if (depth > maxDepth) return at('depth');
      for (const [i, item] of node.items.entries()) {
        const o = firstOffence(item, `${path}[${i}]`, depth + 1, maxDepth, odd);
        if (o) return o;
      }
      return undefined;
    }
    case 'map': {
      if (node.indef) return at('definite');
      if (depth > maxDepth) return at('depth');
      const seen = new Set<string>();
      for (const [k, v] of node.entries) {
        if (k.k !== 'text') return at(k.k === 'tag' ? 'tag' : k.k === 'chunked' ? 'definite' : 'key-type');
        if (!isUtf8(k.b)) return at('utf8');
        const key = Buffer.from(k.b).toString('utf8');
        const keyOdd = odd || !IDENT.test(key);
        const kp = childPath(path, key);
        if (seen.has(key)) return { rule: 'dup-key', path: kp, oddKey: keyOdd };
        seen.add(key);
        const o = firstOffence(v, kp, depth + 1, maxDepth, keyOdd);
        if (o) return o;
      }
      return undefined;
    }
  }
}

/** The plain value of a node tree that is inside the subset (maps as null-prototype objects, so `__proto__` is a key like any other). */
export function plain(node: Node): unknown {
  switch (node.k) {
    case 'uint':
      return Number(node.n);
    case 'nint':
      return -1 - Number(node.n);
    case 'text':
      return Buffer.from(node.b).toString('utf8');
    case 'bytes':
      return new Uint8Array(node.b);
    case 'float':
      return floatOf(node.w, node.bits);
    case 'simple':
      return node.n === 20 ? false : node.n === 21 ? true : node.n === 22 ? null : undefined;
    case 'array':
      return node.items.map(plain);
    case 'map': {
      const o = Object.create(null) as Record<string, unknown>;
      for (const [k, v] of node.entries) o[plain(k) as string] = plain(v);
      return o;
    }
    default:
      throw new Error(`plain: ${node.k} is outside the subset`);
  }
}

function floatOf(w: 2 | 4 | 8, bits: bigint): number {
  if (w === 8) {
    const d = new DataView(new ArrayBuffer(8));
    d.setBigUint64(0, bits);
    return d.getFloat64(0);
  }
  if (w === 4) {
    const d = new DataView(new ArrayBuffer(4));
    d.setUint32(0, Number(bits));
    return d.getFloat32(0);
  }
  const h = Number(bits);
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

// ---------------------------------------------------------------- strict decoding (bytes)

export class SubsetError extends Error {
  constructor(
    readonly rule: Rule,
    readonly path: string,
    what: string,
  ) {
    super(`${path}: ${what} (§3.2 rule ${rule})`);
  }
}

/** How a decoded item was written, for the top-level map's values (`ts` must be major type 0, not a float). */
export interface Written {
  major: number;
  info: number;
}

/**
 * Decodes bytes that must be exactly one item of §3.2's subset; throws SubsetError naming the
 * first offence otherwise. Maps come back as null-prototype objects. `top` receives, for a
 * top-level map, how each of its values was written.
 */
export function decodeStrict(bytes: Uint8Array, maxDepth: number, root = 'envelope', top?: Map<string, Written>): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const fail = (rule: Rule, path: string, what: string): never => {
    throw new SubsetError(rule, path, what);
  };
  const need = (n: number, path: string) => {
    if (pos + n > bytes.length) fail('not-well-formed', path, 'ends early');
  };
  const arg = (info: number, path: string): bigint => {
    if (info < 24) return BigInt(info);
    const w = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (w === 0) return fail(info === 31 ? 'definite' : 'not-well-formed', path, `additional information ${info}`);
    need(w, path);
    let n = 0n;
    for (let i = 0; i < w; i++) n = (n << 8n) | BigInt(bytes[pos++]!);
    return n;
  };
  const item = (path: string, depth: number, written?: (w: Written) => void): unknown => {
    need(1, path);
    const ib = bytes[pos++]!;
    const major = ib >> 5;
    const info = ib & 31;
    written?.({ major, info });
    if (major === 7) {
      if (info >= 20 && info <= 23) return [false, true, null, undefined][info - 20];
      if (info === 25 || info === 26 || info === 27) {
        const w = info === 25 ? 2 : info === 26 ? 4 : 8;
        need(w, path);
        let bits = 0n;
        for (let i = 0; i < w; i++) bits = (bits << 8n) | BigInt(bytes[pos++]!);
        return floatOf(w as 2 | 4 | 8, bits);
      }
      if (info === 31) return fail('not-well-formed', path, 'a stray break');
      if (info >= 28) return fail('not-well-formed', path, `reserved additional information ${info}`);
      return fail('simple', path, `simple value ${info === 24 ? bytes[pos] : info}`);
    }
    if (info === 31) return fail(major === 6 || major < 2 ? 'not-well-formed' : 'definite', path, `indefinite length, major type ${major}`);
    const n = arg(info, path);
    switch (major) {
      case 0:
        return Number(n);
      case 1:
        return -1 - Number(n);
      case 2:
      case 3: {
        if (n > BigInt(bytes.length - pos)) fail('not-well-formed', path, 'string longer than the bytes left');
        const b = bytes.subarray(pos, pos + Number(n));
        pos += Number(n);
        if (major === 2) return new Uint8Array(b);
        if (!isUtf8(b)) fail('utf8', path, 'text that is not UTF-8');
        return Buffer.from(b).toString('utf8');
      }
      case 4: {
        if (depth > maxDepth) fail('depth', path, `level ${depth} > ${maxDepth}`);
        if (n > BigInt(bytes.length - pos)) fail('not-well-formed', path, 'more elements than bytes left');
        const out: unknown[] = [];
        for (let i = 0; i < Number(n); i++) out.push(item(`${path}[${i}]`, depth + 1));
        return out;
      }
      case 5: {
        if (depth > maxDepth) fail('depth', path, `level ${depth} > ${maxDepth}`);
        if (n * 2n > BigInt(bytes.length - pos)) fail('not-well-formed', path, 'more entries than bytes left');
        const o = Object.create(null) as Record<string, unknown>;
        for (let i = 0; i < Number(n); i++) {
          const kb = bytes[pos];
          if (kb === undefined || kb >> 5 !== 3) fail(kb !== undefined && kb >> 5 === 6 ? 'tag' : 'key-type', path, 'a map key that is not a text string');
          if ((kb! & 31) === 31) fail('definite', path, 'an indefinite-length key');
          const key = item(path, depth + 1) as string;
          if (Object.prototype.hasOwnProperty.call(o, key)) fail('dup-key', childPath(path, key), 'a key written twice');
          o[key] = item(childPath(path, key), depth + 1, depth === 1 && top ? (w) => top.set(key, w) : undefined);
        }
        return o;
      }
      case 6:
        return fail('tag', path, `tag ${n}`);
      default:
        return fail('not-well-formed', path, `major type ${major}`);
    }
  };
  const v = item(root, 1);
  if (pos !== bytes.length) fail('one-item', root, `${bytes.length - pos} bytes after the item`);
  return v;
}

/** Hex (any whitespace) to bytes. */
export const fromHex = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

/**
 * RFC 8949 diagnostic notation of a node tree, for failure messages: `{"handler": "increment",
 * "message": {"by": 1000, "x": 2([h'01'])}}`; a run of single-item arrays or single-key maps
 * prints as `[×62 … 0]`; text that is not UTF-8 as `t'hex'`; an indefinite length with `_ `.
 */
export function diag(node: Node, budget = 600): string {
  let out = '';
  const put = (s: string) => {
    if (out.length < budget) out += s;
  };
  const walk = (n: Node): void => {
    if (out.length >= budget) return;
    switch (n.k) {
      case 'uint':
        return put(`${n.n}${n.w ? `_${Math.log2(n.w)}` : ''}`);
      case 'nint':
        return put(`${-1n - n.n}`);
      case 'text':
        return put(isUtf8(n.b) ? JSON.stringify(Buffer.from(n.b).toString()) : `t'${Buffer.from(n.b).toString('hex')}'`);
      case 'bytes':
        return put(`h'${Buffer.from(n.b).toString('hex')}'`);
      case 'float':
        return put(`${floatOf(n.w, n.bits)}_${{ 2: 1, 4: 2, 8: 3 }[n.w]}`);
      case 'simple':
        return put(n.n === 20 ? 'false' : n.n === 21 ? 'true' : n.n === 22 ? 'null' : n.n === 23 ? 'undefined' : `simple(${n.n})`);
      case 'tag':
        put(`${n.tag}(`);
        walk(n.item);
        return put(')');
      case 'chunked':
        return put(`(_ ${n.chunks.map((c) => (n.major === 2 ? `h'${Buffer.from(c).toString('hex')}'` : JSON.stringify(Buffer.from(c).toString('latin1')))).join(', ')})`);
      case 'break':
        return put('<break 0xff>');
      case 'reserved':
        return put(`<reserved 0x${n.ib.toString(16)}>`);
      case 'array':
      case 'map': {
        let depth = 0;
        let inner: Node = n;
        while (!inner.indef && ((inner.k === 'array' && inner.items.length === 1) || (inner.k === 'map' && inner.entries.length === 1 && inner.entries[0]![0].k === 'text'))) {
          const next: Node = inner.k === 'array' ? inner.items[0]! : inner.entries[0]![1];
          if (next.k !== 'array' && next.k !== 'map') break;
          depth++;
          inner = next;
        }
        if (depth >= 4) {
          put(`${n.k === 'array' ? '[' : '{'}×${depth} … `);
          walk(inner);
          return put(n.k === 'array' ? ']' : '}');
        }
        if (n.k === 'array') {
          put(n.indef ? '[_ ' : '[');
          n.items.forEach((x, i) => {
            if (i) put(', ');
            walk(x);
          });
          return put(']');
        }
        put(n.indef ? '{_ ' : '{');
        n.entries.forEach(([k, v], i) => {
          if (i) put(', ');
          walk(k);
          put(': ');
          walk(v);
        });
        return put('}');
      }
    }
  };
  walk(node);
  return out.length >= budget ? `${out.slice(0, budget)}…` : out;
}
