import type { ExportedObject, ObjectImage } from '../heap/migration.js';
import { codeHash } from '../runtime/app-upgrade.js';
import { cborDecode, cborEncode, corrupt, type BundleHeader } from './bundle-format.js';

/**
 * What a bundle's sealed payload holds (transports/PROTOCOL.md, "Offline bundles"): one CBOR map.
 * The heap at one committed version — as lines (same line and word size at the recipient) or as
 * objects (exportObjects) — the module source unless the recipient holds that code, and the
 * leases the instance held at export (released there; the importer leases anew). Checked field
 * by field on the way in: it passed the signature and the AEAD, yet a bad origin build must still
 * get a refusal, not a crash.
 */

export interface BundleContent {
  /** The origin's store version the heap is taken from. */
  version: number;
  /** The heap's line count limit (its virtual heap ÷ line size at the origin). */
  maxLines: number;
  /** `lines` path: the non-heap state blob and every line [line, hash, bytes]. */
  meta?: Uint8Array;
  lines?: Array<[number, Uint8Array, Uint8Array]>;
  /** `objects` path: every object [oid, record] and the image header. */
  objects?: ExportedObject[];
  image?: ObjectImage;
  /** The module source, when `header.codeIncluded`. */
  code?: string;
  /** The leases held at export, by service type (informational: they were released). */
  leases: Array<{ type: string; provider: string }>;
}

export function encodeContent(c: BundleContent): Buffer {
  return cborEncode(c);
}

const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
const nat = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The content of a bundle whose header is `h`; anything off is BUNDLE_CORRUPT naming the field. */
export function decodeContent(payload: Buffer, h: BundleHeader): BundleContent {
  const v = cborDecode(payload, 'payload');
  if (!isMap(v)) throw corrupt('payload', 'payload must be a CBOR map');
  if (!nat(v.version) || (v.version as number) < 1) throw corrupt('payload.version', 'payload.version must be a positive integer');
  if (!nat(v.maxLines) || (v.maxLines as number) < 2) throw corrupt('payload.maxLines', 'payload.maxLines must be an integer ≥ 2');
  if (!Array.isArray(v.leases) || v.leases.some((l) => !isMap(l) || typeof l.type !== 'string' || typeof l.provider !== 'string')) throw corrupt('payload.leases', 'payload.leases must be a list of {type, provider}');
  if (h.codeIncluded) {
    if (typeof v.code !== 'string') throw corrupt('payload.code', 'payload.code must be the module source (header.codeIncluded)');
    if (codeHash(v.code) !== h.code) throw corrupt('payload.code', "payload.code does not have the header's code hash");
  } else if (v.code !== undefined) throw corrupt('payload.code', 'payload.code is present though header.codeIncluded is false');
  let heap = 0;
  if (h.path === 'lines') {
    if (!(v.meta instanceof Uint8Array)) throw corrupt('payload.meta', 'payload.meta must be a byte string');
    if (!Array.isArray(v.lines)) throw corrupt('payload.lines', 'payload.lines must be a list');
    v.lines.forEach((l: unknown, i: number) => {
      if (!Array.isArray(l) || l.length !== 3 || !nat(l[0]) || !(l[1] instanceof Uint8Array) || !(l[2] instanceof Uint8Array) || l[2].length !== h.lineSize) {
        throw corrupt(`payload.lines[${i}]`, `payload.lines[${i}] must be [line, hash, ${h.lineSize} bytes]`);
      }
      heap += l[2].length;
    });
  } else {
    if (!isMap(v.image)) throw corrupt('payload.image', 'payload.image must be a map (the object image header)');
    if (!Array.isArray(v.objects)) throw corrupt('payload.objects', 'payload.objects must be a list');
    v.objects.forEach((o: unknown, i: number) => {
      if (!Array.isArray(o) || o.length !== 2 || !nat(o[0]) || !(o[1] instanceof Uint8Array)) throw corrupt(`payload.objects[${i}]`, `payload.objects[${i}] must be [oid, record]`);
      heap += o[1].length;
    });
  }
  if (heap !== h.heapBytes) throw corrupt('header.heapBytes', `header.heapBytes says ${h.heapBytes}, the payload holds ${heap}`);
  return v as unknown as BundleContent;
}

