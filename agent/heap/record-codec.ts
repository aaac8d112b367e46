import { Encoder, Tag, addExtension } from 'cbor-x';
import { FerryError } from '../../core/errors.js';

/**
 * Object records in standard CBOR (RFC 8949). Each heap object is one record:
 *   plain object → CBOR map (text keys)       array → CBOR array
 *   Uint8Array   → CBOR byte string           Map   → tag 41001 [k0, v0, k1, v1, ...]
 *   Set          → tag 41002 [v0, v1, ...]
 * A reference to another heap object is tag 41000 holding its object id. Primitives are
 * inlined. Tags 41000-41002 sit in IANA's first-come-first-served range; a decoder that does
 * not know them still parses every record.
 */
export const TAG_REF = 41000;
export const TAG_MAP = 41001;
export const TAG_SET = 41002;

export type Kind = 'object' | 'array' | 'map' | 'set' | 'bytes';

/** An object reference as it sits in a decoded record. */
export class Ref {
  constructor(readonly oid: number) {}
}

/** Cells are encoded as refs through this hook (the heap's Cell class registers itself). */
let refOf: (value: unknown) => number = (value) => (value as { oid: number }).oid;
let resolveRef: (oid: number) => unknown = (oid) => new Ref(oid);

export function setRefHooks(encodeRef: (value: unknown) => number, decodeRef: (oid: number) => unknown): void {
  refOf = encodeRef;
  resolveRef = decodeRef;
}

export function registerRefClass(cls: new (...args: never[]) => unknown): void {
  addExtension({
    Class: cls,
    tag: TAG_REF,
    encode: (value: unknown, encode: (v: unknown) => Uint8Array) => encode(refOf(value)),
    decode: (oid: unknown) => resolveRef(oid as number),
  } as unknown as Parameters<typeof addExtension>[0]);
}
registerRefClass(Ref);

const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  structuredClone: false,
  pack: false,
  variableMapSize: true,
  useFloat32: 0,
} as ConstructorParameters<typeof Encoder>[0]);

export function encodeRecord(kind: Kind, value: unknown): Uint8Array {
  switch (kind) {
    case 'map': {
      const flat: unknown[] = [];
      for (const [k, v] of value as Map<unknown, unknown>) flat.push(k, v);
      return encoder.encode(new Tag(flat, TAG_MAP));
    }
    case 'set':
      return encoder.encode(new Tag([...(value as Set<unknown>)], TAG_SET));
    default:
      return encoder.encode(value);
  }
}

export interface DecodedRecord {
  kind: Kind;
  value: unknown;
}

/** Decodes a record; refs come back through the installed resolver. Throws HEAP_CORRUPT on anything else. */
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
