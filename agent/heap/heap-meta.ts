import { FerryError } from '../../core/errors.js';
import { decodeValue, encodeValue } from './record-codec.js';

/**
 * The heap's own metadata, committed as the store's state blob of every checkpoint, with the
 * runtime's non-heap state inside it (`user`). CBOR map:
 *   { "ferryHeap": 1, "lineSize": uint, "hwm": uint, "nextOid": uint,
 *     "tablePages": [uint...], "pins": [uint...], "user": bytes, "reason"?: text }
 * `reason` (added within format 1: a reader that predates it ignores it, a meta without it has
 * none) says why the checkpoint was taken, for the owner's list of versions.
 */
export interface HeapMeta {
  lineSize: number;
  /** First line never used. */
  hwm: number;
  /** First object id never used. */
  nextOid: number;
  /** Lines holding the object table, in page order. */
  tablePages: number[];
  /** Object ids pinned by the runtime (handles survive a restart). */
  pins: number[];
  /** The caller's non-heap state. */
  user: Uint8Array;
  /** Why this checkpoint was taken (`group`, `suspend`, `restore of 3`...): at most MAX_REASON characters. */
  reason?: string;
}

/** The longest reason kept; a longer one is cut. */
export const MAX_REASON = 64;

export const META_FORMAT = 1;

export function encodeMeta(m: HeapMeta): Uint8Array {
  return encodeValue({ ferryHeap: META_FORMAT, lineSize: m.lineSize, hwm: m.hwm, nextOid: m.nextOid, tablePages: m.tablePages, pins: m.pins, user: m.user, ...(m.reason !== undefined ? { reason: m.reason.slice(0, MAX_REASON) } : {}) });
}

export function decodeMeta(bytes: Uint8Array, app: string): HeapMeta {
  const bad = (what: string) => new FerryError('HEAP_CORRUPT', `the heap metadata of app ${app} is invalid: ${what}`, { field: `meta.${what.split(' ')[0]}`, app });
  let v: Record<string, unknown>;
  try {
    v = decodeValue(bytes) as Record<string, unknown>;
  } catch (e) {
    throw new FerryError('HEAP_CORRUPT', `the heap metadata of app ${app} is not CBOR`, { field: 'meta', app }, { cause: e });
  }
  if (v === null || typeof v !== 'object') throw bad('meta is not a map');
  if (v.ferryHeap !== META_FORMAT) throw bad(`ferryHeap format ${String(v.ferryHeap)} is not ${META_FORMAT}`);
  const uint = (k: string) => {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) throw bad(`${k} must be an unsigned integer`);
    return x;
  };
  const uints = (k: string) => {
    const x = v[k];
    if (!Array.isArray(x) || !x.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 0)) throw bad(`${k} must be a list of unsigned integers`);
    return x as number[];
  };
  const user = v.user;
  if (!(user instanceof Uint8Array)) throw bad('user must be a byte string');
  // A reason that is not text (a foreign writer) is no reason: it only labels a version.
  const reason = typeof v.reason === 'string' ? v.reason.slice(0, MAX_REASON) : undefined;
  return { lineSize: uint('lineSize'), hwm: uint('hwm'), nextOid: uint('nextOid'), tablePages: uints('tablePages'), pins: uints('pins'), user: new Uint8Array(user), ...(reason !== undefined ? { reason } : {}) };
}

/** The reason recorded in a checkpoint's state blob, or undefined (none recorded, or a blob that is not heap metadata). */
export function reasonOf(state: Uint8Array): string | undefined {
  try {
    return decodeMeta(state, '?').reason;
  } catch {
    return undefined;
  }
}

/** The same metadata with another reason (a restore commits an old version's state anew: it says so). */
export function withReason(state: Uint8Array, app: string, reason: string): Uint8Array {
  return encodeMeta({ ...decodeMeta(state, app), reason });
}
