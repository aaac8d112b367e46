import { Encoder, Tag, addExtension } from 'cbor-x';
import { FerryError } from '../../core/errors.js';

/**
 * Object records in standard CBOR (RFC 8949). Each heap object is one record:
 *   plain object → CBOR map (text keys)       array → CBOR array
 *   Uint8Array   → CBOR byte string           Map   → tag 41001 [k0, v0, k1, v1, ...]
 *   Set          → tag 41002 [v0, v1, ...]
 * A reference to another heap object is tag 41000 (see Ref). Primitives are inlined. Tags 41000-41002 sit in IANA's first-come-first-served range; a decoder that does
 * not know them still parses every record.
 */
export const TAG_REF = 41000;
export const TAG_MAP = 41001;
export const TAG_SET = 41002;

export type Kind = 'object' | 'array' | 'map' | 'set' | 'bytes';
export const KINDS: readonly Kind[] = ['object', 'array', 'map', 'set', 'bytes'];

/**
 * An object reference as it sits in an encoded record: tag 41000 holding `oid × 8 + kind`
 * (kind: 0 object, 1 array, 2 Map, 3 Set, 4 bytes), so a decoder can make the right kind of
 * handle for an object it has not loaded yet.
 */
export class Ref {
  constructor(readonly oid: number, readonly kind: Kind) {}
}

addExtension({
  Class: Ref,
  tag: TAG_REF,
  encode: (ref: Ref, encode: (v: unknown) => Uint8Array) => encode(ref.oid * 8 + KINDS.indexOf(ref.kind)),
  decode: (n: unknown) => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 8 || n % 8 > 4) throw new Error(`bad object reference ${String(n)}`);
    return new Ref(Math.floor(n / 8), KINDS[n % 8]!);
  },
} as unknown as Parameters<typeof addExtension>[0]);

const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  structuredClone: false,
  pack: false,
  variableMapSize: true,
  useFloat32: 0,
} as ConstructorParameters<typeof Encoder>[0]);

/**
 * Encodes an object's storage. `refOf` turns a child handle into its Ref (every object inside a
 * record is another heap object; the caller reports anything else).
 */
export function encodeRecord(kind: Kind, storage: object, refOf: (child: object) => Ref): Uint8Array {
  const conv = (v: unknown): unknown => (v !== null && typeof v === 'object' ? refOf(v) : v);
  switch (kind) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(storage)) out[k] = conv((storage as Record<string, unknown>)[k]);
      return encoder.encode(out);
    }
    case 'array': {
      const a = storage as unknown[];
      const out = new Array<unknown>(a.length);
      for (let i = 0; i < a.length; i++) out[i] = conv(a[i]);
      return encoder.encode(out);
    }
    case 'map': {
      const flat: unknown[] = [];
      for (const [k, v] of Map.prototype.entries.call(storage as Map<unknown, unknown>)) flat.push(conv(k), conv(v));
      return encoder.encode(new Tag(flat, TAG_MAP));
    }
    case 'set': {
      const flat: unknown[] = [];
      for (const v of Set.prototype.values.call(storage as Set<unknown>)) flat.push(conv(v));
      return encoder.encode(new Tag(flat, TAG_SET));
    }
    case 'bytes':
      return encoder.encode(storage);
  }
}

export interface DecodedRecord {
  kind: Kind;
  value: unknown;
}

/** Decodes a record (children come back as Refs). Throws HEAP_CORRUPT on anything else. */
export function decodeRecord(bytes: Uint8Array, where: string): DecodedRecord {
  let v: unknown;
  try {
    v = encoder.decode(bytes);
  } catch (e) {
    throw new FerryError('HEAP_CORRUPT', `${where}: record is not valid CBOR (${(e as Error).message})`, { field: where }, { cause: e });
  }
  if (v instanceof Uint8Array) return { kind: 'bytes', value: new Uint8Array(v) };
  if (Array.isArray(v)) return { kind: 'array', value: v };
  if (v instanceof Tag) {
    const items = v.value as unknown[];
    if (v.tag === TAG_MAP && Array.isArray(items) && items.length % 2 === 0) {
      const m = new Map<unknown, unknown>();
      for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
      return { kind: 'map', value: m };
    }
    if (v.tag === TAG_SET && Array.isArray(items)) return { kind: 'set', value: new Set(items) };
  }
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return { kind: 'object', value: v };
  throw new FerryError('HEAP_CORRUPT', `${where}: record is not an object, array, byte string, map or set`, { field: where });
}

/** Encodes a primitive or nested value on its own (export, size checks). */
export function encodeValue(value: unknown): Uint8Array {
  return encoder.encode(value);
}

export function decodeValue(bytes: Uint8Array): unknown {
  return encoder.decode(bytes);
}
