import { FerryError } from '../../core/errors.js';
import type { Allocator } from './allocator.js';
import type { Pager } from './pager.js';

/** Bytes per object-table entry: address u32, then len (24 bits) | slack in 16-byte units (8 bits), little-endian. */
export const ENTRY_BYTES = 8;
export const SLACK_UNIT = 16;
export const MAX_SLACK = 255 * SLACK_UNIT;
export const MAX_RECORD_BYTES = 2 ** 24 - 1;

export interface Placement {
  addr: number;
  len: number;
  /** Bytes reserved at addr (len plus slack for growth). */
  cap: number;
}

/**
 * The object table: object id → where its record lives. It is itself paged, in table lines
 * listed by `pages` (kept in the heap's metadata), so a heap of a million objects does not
 * need 8 MiB of table in memory. The indirection is what lets compaction move objects
 * without rewriting the objects that point at them.
 */
export class ObjectTable {
  pages: number[] = [];
  private readonly view: DataView;
  private readonly perLine: number;

  constructor(private readonly pager: Pager, private readonly alloc: Allocator) {
    this.view = new DataView(pager.arena.buffer, pager.arena.byteOffset, pager.arena.byteLength);
    this.perLine = pager.lineSize / ENTRY_BYTES;
  }

  /** Object ids the current pages can hold. */
  get capacity(): number {
    return this.pages.length * this.perLine;
  }

  get(oid: number): Placement | undefined {
    const page = Math.floor(oid / this.perLine);
    if (page >= this.pages.length) return undefined;
    const at = this.pager.slotOffset(this.pages[page]!) + (oid % this.perLine) * ENTRY_BYTES;
    const addr = this.view.getUint32(at, true);
    if (addr === 0) return undefined;
    const w = this.view.getUint32(at + 4, true);
    const len = w & 0xffffff;
    return { addr, len, cap: len + (w >>> 24) * SLACK_UNIT };
  }

  set(oid: number, p: Placement): void {
    if (p.len > MAX_RECORD_BYTES) throw new FerryError('HEAP_VALUE_TOO_LARGE', `object ${oid} would be ${p.len} bytes`, { field: 'object', oid });
    while (Math.floor(oid / this.perLine) >= this.pages.length) this.pages.push(this.alloc.takeTableLine());
    const line = this.pages[Math.floor(oid / this.perLine)]!;
    const at = this.pager.slotOffset(line) + (oid % this.perLine) * ENTRY_BYTES;
    const slack = Math.min(Math.floor((p.cap - p.len) / SLACK_UNIT), 255);
    this.view.setUint32(at, p.addr, true);
    this.view.setUint32(at + 4, (p.len | (slack << 24)) >>> 0, true);
    this.pager.markDirty(line);
  }

  clear(oid: number): void {
    const page = Math.floor(oid / this.perLine);
    if (page >= this.pages.length) return;
    const line = this.pages[page]!;
    const at = this.pager.slotOffset(line) + (oid % this.perLine) * ENTRY_BYTES;
    this.view.setUint32(at, 0, true);
    this.view.setUint32(at + 4, 0, true);
    this.pager.markDirty(line);
  }

  /** Visits every placed object in id order (paging table lines through one at a time). */
  forEach(fn: (oid: number, p: Placement) => void): void {
    for (let page = 0; page < this.pages.length; page++) {
      for (let i = 0; i < this.perLine; i++) {
        const oid = page * this.perLine + i;
        if (oid === 0) continue;
        const p = this.get(oid);
        if (p) fn(oid, p);
      }
    }
  }
}

/** Bytes to reserve for a record of `len`: containers get room to grow in place; bytes do not. */
export function capacityFor(len: number, growable: boolean): number {
  if (!growable) return len;
  return len + Math.min(MAX_SLACK, Math.max(SLACK_UNIT, Math.floor(len / 4 / SLACK_UNIT) * SLACK_UNIT));
}
