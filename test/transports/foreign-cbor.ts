/**
 * A deliberately small, independent RFC 8949 encoder and decoder for tests
 * (definite lengths, no tags): what a foreign client would write from
 * PROTOCOL.md alone. If Ferry reads what this writes and this reads what Ferry
 * writes, the wire format is plain CBOR, not a cbor-x dialect.
 */
export function foreignDecode(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const arg = (info: number): number => {
    if (info < 24) return info;
    if (info === 24) return view.getUint8(pos++);
    if (info === 25) return (pos += 2), view.getUint16(pos - 2);
    if (info === 26) return (pos += 4), view.getUint32(pos - 4);
    if (info === 27) return (pos += 8), Number(view.getBigUint64(pos - 8));
    throw new Error(`unsupported additional info ${info} at ${pos}`);
  };
  const item = (): unknown => {
    const ib = view.getUint8(pos++);
    const major = ib >> 5;
    const info = ib & 31;
    switch (major) {
      case 0:
        return arg(info);
      case 1:
        return -1 - arg(info);
      case 2: {
        const n = arg(info);
        pos += n;
        return new Uint8Array(bytes.subarray(pos - n, pos));
      }
      case 3: {
        const n = arg(info);
        pos += n;
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(pos - n, pos));
      }
      case 4:
        return Array.from({ length: arg(info) }, item);
      case 5: {
        const o: Record<string, unknown> = {};
        for (let n = arg(info); n > 0; n--) {
          const k = item();
          if (typeof k !== 'string') throw new Error('non-text map key');
          o[k] = item();
        }
        return o;
      }
      case 6:
        throw new Error(`tag ${arg(info)} at ${pos}: not plain data`);
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 25) return (pos += 2), half(view.getUint16(pos - 2));
        if (info === 26) return (pos += 4), view.getFloat32(pos - 4);
        if (info === 27) return (pos += 8), view.getFloat64(pos - 8);
        throw new Error(`unsupported simple value ${info}`);
    }
  };
  const v = item();
  if (pos !== bytes.length) throw new Error('trailing bytes');
  return v;
}

function half(h: number): number {
  const e = (h >> 10) & 31;
  const m = h & 1023;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}


function head(major: number, n: number): number[] {
  if (n < 24) return [(major << 5) | n];
  if (n < 0x100) return [(major << 5) | 24, n];
  if (n < 0x10000) return [(major << 5) | 25, n >> 8, n & 0xff];
  if (n < 0x100000000) return [(major << 5) | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  const big = BigInt(n);
  return [(major << 5) | 27, ...Array.from({ length: 8 }, (_, i) => Number((big >> BigInt(8 * (7 - i))) & 0xffn))];
}

/** Encodes null, booleans, integers, text, byte strings, arrays and text-keyed maps. */
export function foreignEncode(v: unknown): Uint8Array {
  const out: number[] = [];
  const put = (x: unknown): void => {
    if (x === null) out.push(0xf6);
    else if (x === true) out.push(0xf5);
    else if (x === false) out.push(0xf4);
    else if (typeof x === 'number' && Number.isInteger(x) && x >= 0) out.push(...head(0, x));
    else if (typeof x === 'number' && Number.isInteger(x)) out.push(...head(1, -1 - x));
    else if (typeof x === 'string') {
      const b = new TextEncoder().encode(x);
      out.push(...head(3, b.length), ...b);
    } else if (x instanceof Uint8Array) {
      out.push(...head(2, x.length));
      for (const byte of x) out.push(byte);
    } else if (Array.isArray(x)) {
      out.push(...head(4, x.length));
      x.forEach(put);
    } else if (typeof x === 'object') {
      const entries = Object.entries(x as Record<string, unknown>);
      out.push(...head(5, entries.length));
      for (const [k, val] of entries) {
        put(k);
        put(val);
      }
    } else throw new Error(`foreignEncode: unsupported ${typeof x}`);
  };
  put(v);
  return Uint8Array.from(out);
}
