import { FerryError } from '../../core/errors.js';
import { LineType } from './line-table.js';
import type { Pager } from './pager.js';

/**
 * Places object records in lines. Small records are bumped into the current allocation line
 * (so objects created together share lines); records larger than a line take a run of
 * contiguous lines, the lowest free run that fits, else fresh lines at the high-water mark.
 * Each line counts its live bytes; a line whose count drops to zero is freed at once (deleted
 * from the store at the next checkpoint) and reused lowest-first; free lines at the top of the
 * used range lower the high-water mark, so the space of freed runs always comes back.
 */
export class Allocator {
  /** Next line never used (line 0 is reserved: address 0 means "no address"). */
  hwm = 1;
  private readonly freeLines: number[] = [];
  private cursorLine = -1;
  private cursorOff = 0;

  constructor(private readonly pager: Pager, private readonly app: string) {}

  get lineSize(): number {
    return this.pager.lineSize;
  }

  /** Lines neither in use nor free, out of the virtual heap. */
  freeLineCount(): number {
    return this.pager.table.maxLines - this.hwm + this.freeLines.length;
  }

  /** Lines holding records or the object table. */
  linesInUse(): number {
    return this.hwm - 1 - this.freeLines.length;
  }

  /** Registers lines found free when a heap is reopened. */
  setFree(lines: number[]): void {
    this.freeLines.length = 0;
    this.freeLines.push(...lines);
    this.freeLines.sort((a, b) => b - a); // pop() takes the lowest
    this.lowerHwm();
  }

  /** Starts a fresh allocation line for what follows (compaction packs objects used together). */
  newCursor(): void {
    this.retireCursor();
  }

  /**
   * Leaves the allocation line. `free` keeps the cursor line even when its live count drops
   * to zero (allocation goes on there); once allocation moves on, an empty one is freed, or
   * it would stay in use until the heap is reopened.
   */
  private retireCursor(): void {
    const line = this.cursorLine;
    this.cursorLine = -1;
    if (line >= 0 && this.pager.table.live[line]! === 0) this.releaseLine(line);
  }

  /** Reserves `cap` bytes for a record; returns its virtual address. */
  alloc(cap: number): number {
    const ls = this.lineSize;
    if (cap <= ls) {
      if (this.cursorLine < 0 || ls - this.cursorOff < cap) {
        this.retireCursor();
        const line = this.takeLine(LineType.User);
        // Write-backs inside takeLine's eviction may have started a cursor line of their own.
        this.retireCursor();
        this.cursorLine = line;
        this.cursorOff = 0;
      }
      const addr = this.cursorLine * ls + this.cursorOff;
      this.cursorOff += cap;
      this.pager.table.live[this.cursorLine]! += cap;
      return addr;
    }
    const n = Math.ceil(cap / ls);
    const first = this.takeRun(n);
    let left = cap;
    for (let i = 0; i < n; i++) {
      this.pager.table.live[first + i]! += Math.min(ls, left);
      left -= ls;
    }
    return first * ls;
  }

  /** Returns a record's bytes; lines left with no live bytes are freed. */
  free(addr: number, cap: number): void {
    const ls = this.lineSize;
    const t = this.pager.table;
    let a = addr;
    let left = cap;
    while (left > 0) {
      const line = Math.floor(a / ls);
      const n = Math.min(left, ls - (a % ls));
      t.live[line]! -= Math.min(n, t.live[line]!);
      if (t.live[line]! === 0 && line !== this.cursorLine) this.releaseLine(line);
      a += n;
      left -= n;
    }
  }

  /** A whole line for the object table. */
  takeTableLine(): number {
    const line = this.takeLine(LineType.Table);
    this.pager.table.live[line] = this.lineSize;
    return line;
  }

  private takeLine(type: number): number {
    const line = this.freeLines.length > 0 ? this.freeLines.pop()! : this.bump(1);
    this.pager.claim(line, type);
    return line;
  }

  private takeRun(n: number): number {
    const first = this.takeFreeRun(n) ?? this.bump(n);
    // Every line of the run is out of the free list before the first claim: a claim may evict,
    // and a write-back inside the eviction allocates.
    for (let i = 0; i < n; i++) this.pager.claim(first + i, LineType.User);
    return first;
  }

  /**
   * The lowest run of `n` consecutive free lines, taken out of the free list, or undefined.
   * Without this a record longer than a line always took fresh lines, and the space of every
   * freed run stayed unusable by runs: a heap replacing one large record ran out of lines with
   * almost nothing live. The list is sorted high to low, so runs are scanned from its end.
   */
  private takeFreeRun(n: number): number | undefined {
    const f = this.freeLines;
    let len = 0;
    for (let i = f.length - 1; i >= 0; i--) {
      len = i < f.length - 1 && f[i]! === f[i + 1]! + 1 ? len + 1 : 1;
      if (len === n) {
        const first = f[i + n - 1]!;
        f.splice(i, n);
        return first;
      }
    }
    return undefined;
  }

  private bump(n: number): number {
    if (this.hwm + n > this.pager.table.maxLines) {
      const max = this.pager.table.maxLines;
      const what = n === 1 ? 'a line' : `${n} contiguous lines`;
      throw new FerryError('HEAP_FULL', `the virtual heap of app ${this.app} has no room for ${what}: ${this.linesInUse()} of its ${max} lines of ${this.lineSize} bytes are in use; remove data the app no longer needs, or run it on a profile with a larger virtual heap (virtualHeapBytes)`, { field: 'heap', app: this.app, linesInUse: this.linesInUse(), maxLines: max, lines: n });
    }
    const first = this.hwm;
    this.hwm += n;
    return first;
  }

  private releaseLine(line: number): void {
    this.pager.release(line);
    const f = this.freeLines;
    // Insert keeping the list sorted high to low (binary search: lines are freed in batches).
    let lo = 0;
    let hi = f.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (f[mid]! > line) lo = mid + 1;
      else hi = mid;
    }
    f.splice(lo, 0, line);
    this.lowerHwm();
  }

  /** Free lines just below the high-water mark go back above it (fresh runs start lower). */
  private lowerHwm(): void {
    const f = this.freeLines;
    while (f.length > 0 && f[0] === this.hwm - 1) {
      f.shift();
      this.hwm--;
    }
  }
}
