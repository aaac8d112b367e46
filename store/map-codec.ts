import { crc32 } from 'node:zlib';
import { FerryError } from '../core/errors.js';

/**
 * The line map of one version row, as stored in `versions.map`: either the lines a checkpoint
 * changed (a delta) or every visible line (a base). Fixed-width little-endian entries so a row
 * decodes without allocation per field; see store/DESIGN.md, "Version rows".
 */

export const HASH_BYTES = 16;
export const MAP_MAGIC = 0x314d4c46; // "FLM1" read as little-endian u32
export const MAP_HEADER_BYTES = 8;
export const MAP_ENTRY_BYTES = 4 + 4 + 1 + 4 + 4 + 4 + 4 + HASH_BYTES; // 41

/** Where one line's bytes live, as of the version that wrote them. */
export interface LineRecord {
  line: number;
  /** The version whose checkpoint wrote these bytes (or deleted the line). */
  version: number;
  /** True when the checkpoint deleted the line. */
  deleted: boolean;
  /** Segment index in the segment file. */
  seg: number;
  /** Byte offset inside the segment. */
  off: number;
  /** Bytes of the line (the app's line size; 0 when deleted). */
  len: number;
  /** CRC-32 of the bytes, checked on every read. */
  crc: number;
  /** Content hash: the first 16 bytes of SHA-256 of the bytes (zero when deleted). */
  hash: Uint8Array;
}

export function encodeMap(records: readonly LineRecord[]): Uint8Array {
  const out = new Uint8Array(MAP_HEADER_BYTES + records.length * MAP_ENTRY_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAP_MAGIC, true);
  dv.setUint32(4, records.length, true);
  let p = MAP_HEADER_BYTES;
  for (const r of records) {
    dv.setUint32(p, r.line, true);
    dv.setUint32(p + 4, r.version, true);
    dv.setUint8(p + 8, r.deleted ? 1 : 0);
    dv.setUint32(p + 9, r.seg, true);
    dv.setUint32(p + 13, r.off, true);
    dv.setUint32(p + 17, r.len, true);
    dv.setUint32(p + 21, r.crc, true);
    out.set(r.hash.subarray(0, HASH_BYTES), p + 25);
    p += MAP_ENTRY_BYTES;
  }
  return out;
}

/** Decodes a map; any inconsistency is STORE_CORRUPT naming the row. */
export function decodeMap(bytes: Uint8Array, where: string): LineRecord[] {
  const corrupt = (why: string): never => {
    throw new FerryError('STORE_CORRUPT', `line map of ${where} is damaged: ${why}`, { field: 'versions.map', where });
  };
  if (bytes.length < MAP_HEADER_BYTES) corrupt(`${bytes.length} bytes is shorter than the header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAP_MAGIC) corrupt('bad magic');
  const count = dv.getUint32(4, true);
  if (bytes.length !== MAP_HEADER_BYTES + count * MAP_ENTRY_BYTES) corrupt(`length ${bytes.length} does not hold ${count} entries`);
  const records: LineRecord[] = new Array(count);
  let p = MAP_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const flags = dv.getUint8(p + 8);
    if (flags > 1) corrupt(`entry ${i} has flags ${flags}`);
    records[i] = {
      line: dv.getUint32(p, true),
      version: dv.getUint32(p + 4, true),
      deleted: flags === 1,
      seg: dv.getUint32(p + 9, true),
      off: dv.getUint32(p + 13, true),
      len: dv.getUint32(p + 17, true),
      crc: dv.getUint32(p + 21, true),
      // a copy, never a view: `bytes` is often a Buffer (from SQLite), whose slice() shares memory
      hash: new Uint8Array(bytes.subarray(p + 25, p + 25 + HASH_BYTES)),
    };
    p += MAP_ENTRY_BYTES;
  }
  return records;
}

/** CRC of a version row's contents, so a damaged metadata row is detected like a damaged line. */
export function rowCrc(app: string, version: number, kind: number, state: Uint8Array, map: Uint8Array): number {
  let c = crc32(Buffer.from(`${app}\u0000${version}\u0000${kind}`));
  // zlib.crc32 drops the running value for the empty Buffer better-sqlite3 returns for x'';
  // an empty input adds nothing to a CRC anyway.
  if (state.length > 0) c = crc32(state, c);
  return map.length > 0 ? crc32(map, c) : c;
}
