import { FerryError, isFerryError } from '../../core/errors.js';
import type { CommitResult, Store, WriteTransaction } from '../../store/index.js';
import { LineState, LineTable } from './line-table.js';

/** What the object layer must do around a line leaving memory. */
export interface PagerHooks {
  /** Write back the line's changed objects before its bytes are flushed (may dirty other lines). */
  beforeEvict(line: number): void;
  /** Forget decoded objects of a line that left memory. */
  afterEvict(line: number): void;
  /** Switch on read sampling for a line's objects; false when the line holds none to sample. */
  armLine(line: number): boolean;
  /** Armed and not read since. */
  isArmed(line: number): boolean;
}

export interface PagerConfig {
  store: Store;
  app: string;
  lineSize: number;
  slots: number;
  evictBatch: number;
  freeSlots: number;
  readOnly: boolean;
  /** Version lines are read from when not in the open transaction. */
  readVersion: number;
}

export interface PagerStats {
  faults: number;
  evictions: number;
  /** Lines written to the store (eviction, pre-flush, checkpoint). */
  flushes: number;
  bytesFlushed: number;
  /** Barrier accesses (every line touch), the denominator of the fault rate. */
  accesses: number;
}

/** Outcome of a failed commit, for the heap to decide what restriction applies. */
export interface CommitFailure {
  error: FerryError;
  /** Lines that had been paged out into the failed transaction: their newest bytes are gone. */
  lostLines: number;
}

/**
 * The in-memory heap: `slots` line-sized slots in one arena, the line table, address
 * translation, faults, LRU eviction (clean lines first) and flushing into the app's open store
 * transaction. Resident bytes are `slots × lineSize` at most, by construction.
 */
export class Pager {
  readonly table: LineTable;
  readonly arena: Uint8Array;
  private readonly slotLine: Int32Array;
  private readonly free: number[] = [];
  private tick = 0;
  private tx: WriteTransaction | null = null;
  /** Lines written into the open transaction (pre-flushed or evicted) since the last commit. */
  readonly staged = new Set<number>();
  /** Lines freed since the last commit that the committed version still holds. */
  readonly pendingDelete = new Set<number>();
  /** Lines that must not leave memory right now (a record being copied across them). */
  private readonly pins = new Map<number, number>();
  /** After a failed checkpoint: dirty lines may not be paged out until a commit succeeds. */
  restricted = false;
  /**
   * Lines paged out into a transaction the store then aborted (a failed line write): their
   * newest bytes are gone. A fault on one is refused — the committed bytes would be stale — and
   * the next commit is refused, so the heap goes back to the committed version.
   */
  readonly lost = new Set<number>();
  resident = 0;
  readonly stats: PagerStats = { faults: 0, evictions: 0, flushes: 0, bytesFlushed: 0, accesses: 0 };
  private readonly lineShift: number;
  private readonly lineMask: number;

  constructor(private readonly cfg: PagerConfig, maxLines: number, private readonly hooks: PagerHooks) {
    this.table = new LineTable(maxLines);
    this.arena = new Uint8Array(cfg.slots * cfg.lineSize);
    this.slotLine = new Int32Array(cfg.slots).fill(-1);
    for (let s = cfg.slots - 1; s >= 0; s--) this.free.push(s);
    this.lineShift = Math.log2(cfg.lineSize);
    this.lineMask = cfg.lineSize - 1;
  }

  get lineSize(): number {
    return this.cfg.lineSize;
  }

  get residentBytes(): number {
    return this.resident * this.cfg.lineSize;
  }

  /** Lines changed since the last commit (resident dirty plus paged out into the transaction). */
  get dirtySinceCheckpoint(): number {
    let n = this.table.dirtyCount;
    for (const l of this.staged) if (this.table.state[l] !== LineState.Dirty) n++;
    return n;
  }

  // ---- the barrier ----

  /** Residency check and translation: returns the slot's byte offset in the arena, faulting the line in. */
  slotOffset(line: number): number {
    this.stats.accesses++;
    const t = this.table;
    if (line >= t.capacity) t.ensure(line);
    t.lastUse[line] = ++this.tick;
    const s = t.slot[line]!;
    if (s >= 0) return s << this.lineShift;
    return this.faultIn(line) << this.lineShift;
  }

  /** Copies `len` bytes at virtual address `addr` out of the heap (faulting lines in one at a time). */
  read(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const line = a >>> this.lineShift;
      const off = a & this.lineMask;
      const n = Math.min(len - done, this.cfg.lineSize - off);
      const base = this.slotOffset(line);
      out.set(this.arena.subarray(base + off, base + off + n), done);
      done += n;
    }
    return out;
  }

  /** Writes bytes at a virtual address, marking each line touched dirty. */
  write(addr: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const a = addr + done;
      const line = a >>> this.lineShift;
      const off = a & this.lineMask;
      const n = Math.min(bytes.length - done, this.cfg.lineSize - off);
      const base = this.slotOffset(line);
      this.arena.set(bytes.subarray(done, done + n), base + off);
      this.markDirty(line);
      done += n;
    }
  }

  markDirty(line: number): void {
    if (this.cfg.readOnly) throw new FerryError('HEAP_READ_ONLY', `the heap of app ${this.cfg.app} is read-only`, { field: 'heap', app: this.cfg.app });
    const t = this.table;
    if (t.state[line] !== LineState.Dirty) t.setState(line, LineState.Dirty);
    this.pendingDelete.delete(line);
  }

  /** A fresh line for the allocator: resident, zero-filled, dirty. */
  claim(line: number, type: number): void {
    const t = this.table;
    t.ensure(line);
    t.type[line] = type;
    if (t.slot[line]! < 0) {
      const s = this.takeSlot();
      if (t.slot[line]! >= 0) this.free.push(s);
      else {
        t.slot[line] = s;
        this.slotLine[s] = line;
        this.resident++;
      }
    }
    this.arena.fill(0, t.slot[line]! << this.lineShift, (t.slot[line]! + 1) << this.lineShift);
    t.lastUse[line] = ++this.tick;
    this.markDirty(line);
  }

  /** The allocator freed a line: drop it from memory; the next checkpoint deletes it from the store. */
  release(line: number): void {
    const t = this.table;
    if (t.slot[line]! >= 0) this.dropSlot(line);
    if (t.state[line] === LineState.Dirty) t.setState(line, LineState.Empty);
    t.state[line] = LineState.Empty;
    if (t.stored[line]! || this.staged.has(line)) this.pendingDelete.add(line);
    this.staged.delete(line);
  }

  pin(line: number): void {
    this.pins.set(line, (this.pins.get(line) ?? 0) + 1);
  }

  unpin(line: number): void {
    const n = (this.pins.get(line) ?? 1) - 1;
    if (n <= 0) this.pins.delete(line);
    else this.pins.set(line, n);
  }

  // ---- faults and eviction ----

  private faultIn(line: number): number {
    const t = this.table;
    const slot = this.takeSlot();
    // Eviction inside takeSlot may have written back objects onto this very line, faulting it in.
    if (t.slot[line]! >= 0) {
      this.free.push(slot);
      return t.slot[line]!;
    }
    const st = t.state[line];
    if (this.lost.has(line)) {
      this.free.push(slot);
      throw new FerryError('HEAP_CHECKPOINT_FAILED', `line ${line} of app ${this.cfg.app} was paged out into a store transaction that failed: its newest bytes are gone; the next checkpoint goes back to the last committed version`, { field: 'heap', app: this.cfg.app, line });
    }
    const dst = this.arena.subarray(slot << this.lineShift, (slot + 1) << this.lineShift);
    if (st === LineState.Persistent || st === LineState.Staged) {
      const bytes = this.tx ? this.tx.read(line) : this.cfg.store.readLine(this.cfg.app, line, { version: this.cfg.readVersion });
      if (!bytes) throw new FerryError('HEAP_CORRUPT', `line ${line} of app ${this.cfg.app} is missing from the store`, { field: 'line', app: this.cfg.app, line });
      dst.set(bytes);
      this.stats.faults++;
    } else {
      dst.fill(0);
    }
    t.slot[line] = slot;
    this.slotLine[slot] = line;
    this.resident++;
    if (st !== LineState.Dirty) t.state[line] = LineState.Resident;
    return slot;
  }

  private takeSlot(): number {
    if (this.free.length < this.cfg.freeSlots) this.evict(Math.max(this.cfg.evictBatch, this.cfg.freeSlots - this.free.length));
    const s = this.free.pop();
    if (s === undefined) {
      throw new FerryError('HEAP_NO_MEMORY', `the in-memory heap of app ${this.cfg.app} is full: ${this.cfg.slots} lines, none can leave${this.restricted ? ' (dirty lines stay in memory until a checkpoint succeeds)' : ''}`, { field: 'heap', app: this.cfg.app });
    }
    return s;
  }

  private dropSlot(line: number): void {
    const t = this.table;
    const s = t.slot[line]!;
    this.slotLine[s] = -1;
    t.slot[line] = -1;
    this.free.push(s);
    this.resident--;
  }

  /** Resident lines, most recently used first (a handoff sends these first: the app touches them next). */
  recentLines(): number[] {
    const lines: number[] = [];
    for (const line of this.slotLine) if (line >= 0) lines.push(line);
    return lines.sort((a, b) => this.table.lastUse[b]! - this.table.lastUse[a]!);
  }

  /** Evicts up to `n` lines: least recently used first, clean lines before dirty ones. */
  evict(n: number): number {
    const t = this.table;
    const clean: number[] = [];
    const dirty: number[] = [];
    for (let s = 0; s < this.slotLine.length; s++) {
      const line = this.slotLine[s]!;
      if (line < 0 || this.pins.has(line)) continue;
      if (t.state[line] === LineState.Dirty) {
        if (!this.restricted && !this.cfg.readOnly) dirty.push(line);
      } else clean.push(line);
    }
    const byAge = (a: number, b: number) => t.lastUse[a]! - t.lastUse[b]!;
    // CLOCK-style second chance: reads of loaded objects do not trap, so a line is first armed
    // (its objects' reads trap once) and evicted on a later round only if nothing read it.
    const victims: number[] = [];
    const spared: number[] = [];
    for (const line of [...clean.sort(byAge), ...dirty.sort(byAge)]) {
      if (victims.length >= n) break;
      if (this.hooks.isArmed(line) || spared.length >= 2 * n || !this.hooks.armLine(line)) victims.push(line);
      else spared.push(line);
    }
    for (const line of spared) {
      if (victims.length >= n) break;
      victims.push(line);
    }
    let done = 0;
    for (const line of victims) {
      if (t.slot[line]! < 0) continue; // a hook already moved it
      if (t.state[line] === LineState.Dirty) {
        this.pin(line);
        try {
          this.hooks.beforeEvict(line);
        } catch (e) {
          // An object on it grew and has no room to move to (a nearly full virtual heap): the
          // line stays, dirty, and other victims go instead; none at all is HEAP_NO_MEMORY.
          if (isFerryError(e) && e.code === 'HEAP_FULL') continue;
          throw e;
        } finally {
          this.unpin(line);
        }
        if (t.state[line] === LineState.Dirty) this.flush(line);
      }
      if (t.slot[line]! < 0) continue;
      this.hooks.afterEvict(line);
      this.dropSlot(line);
      t.state[line] = this.staged.has(line) ? LineState.Staged : t.stored[line]! ? LineState.Persistent : LineState.Empty;
      this.stats.evictions++;
      done++;
    }
    return done;
  }

  /** Writes one dirty resident line into the open transaction; it stays resident and becomes clean. */
  private flush(line: number): void {
    const t = this.table;
    const tx = this.openTx();
    t.setState(line, LineState.Flushing);
    const off = t.slot[line]! << this.lineShift;
    try {
      tx.write(line, this.arena.subarray(off, off + this.cfg.lineSize));
    } catch (e) {
      t.setState(line, LineState.Dirty);
      if (!tx.isOpen) this.txAborted();
      throw this.txFailed(e);
    }
    t.setState(line, LineState.Resident);
    this.staged.add(line);
    this.stats.flushes++;
    this.stats.bytesFlushed += this.cfg.lineSize;
  }

  /** Background pre-flush: writes up to `max` dirty lines (oldest first) so the checkpoint itself is short. */
  preflush(max: number, beforeFlush: (line: number) => void): number {
    if (this.restricted || this.cfg.readOnly) return 0;
    const t = this.table;
    let n = 0;
    // Writing objects back can move one that grew to another line, dirtying it: go round
    // again until nothing is dirty or `max` lines were written.
    for (let round = 0; round < 4 && n < max; round++) {
      const dirty: number[] = [];
      for (let s = 0; s < this.slotLine.length; s++) {
        const line = this.slotLine[s]!;
        if (line >= 0 && t.state[line] === LineState.Dirty) dirty.push(line);
      }
      if (dirty.length === 0) break;
      for (const line of pickOldest(dirty, max - n, (a, b) => t.lastUse[a]! - t.lastUse[b]!)) {
        beforeFlush(line);
        if (t.state[line] === LineState.Dirty && t.slot[line]! >= 0) {
          this.flush(line);
          n++;
        }
      }
    }
    return n;
  }

  private openTx(): WriteTransaction {
    if (this.tx && !this.tx.isOpen) this.txAborted();
    if (!this.tx) {
      this.tx = this.cfg.store.begin(this.cfg.app);
      this.staged.clear();
    }
    return this.tx;
  }

  /**
   * The store aborted the open transaction (a line write failed): what was written into it is
   * gone. Lines still in memory become dirty again; lines paged out into it are lost (see
   * `lost`). Dirty lines stay in memory until a checkpoint succeeds (restricted), so nothing
   * more is lost while the store fails.
   */
  private txAborted(): void {
    const t = this.table;
    for (const line of this.staged) {
      if (t.slot[line]! >= 0) t.setState(line, LineState.Dirty);
      else this.lost.add(line);
    }
    this.staged.clear();
    this.tx = null;
    this.restricted = true;
  }

  private txFailed(e: unknown): FerryError {
    if (isFerryError(e)) return e;
    return new FerryError('HEAP_CHECKPOINT_FAILED', `writing a line of app ${this.cfg.app} failed: ${(e as Error).message}`, { field: 'heap', app: this.cfg.app }, { cause: e });
  }

  // ---- checkpoints ----

  /**
   * Commits every dirty line, every freed line and `state` as one store version. On failure the
   * committed version is unchanged and the result says how many paged-out lines were lost.
   */
  commit(state: Uint8Array): CommitResult | CommitFailure {
    const t = this.table;
    const written: number[] = [];
    if (this.tx && !this.tx.isOpen) this.txAborted();
    if (this.lost.size > 0) {
      this.tx?.abort();
      this.tx = null;
      return { error: new FerryError('HEAP_CHECKPOINT_FAILED', `${this.lost.size} paged-out lines of app ${this.cfg.app} were lost when the store failed a write`, { field: 'heap', app: this.cfg.app }), lostLines: this.lost.size };
    }
    try {
      const tx = this.openTx();
      for (let s = 0; s < this.slotLine.length; s++) {
        const line = this.slotLine[s]!;
        if (line < 0 || t.state[line] !== LineState.Dirty) continue;
        t.setState(line, LineState.Flushing);
        written.push(line);
        const off = s << this.lineShift;
        tx.write(line, this.arena.subarray(off, off + this.cfg.lineSize));
        this.stats.flushes++;
        this.stats.bytesFlushed += this.cfg.lineSize;
      }
      for (const line of this.pendingDelete) tx.delete(line);
      tx.setState(state);
      const result = tx.commit();
      for (const line of written) t.setState(line, LineState.Resident);
      for (const line of this.staged) {
        if (t.state[line] === LineState.Staged) t.state[line] = LineState.Persistent;
        t.stored[line] = 1;
      }
      for (const line of written) t.stored[line] = 1;
      for (const line of this.pendingDelete) t.stored[line] = 0;
      this.staged.clear();
      this.pendingDelete.clear();
      this.tx = null;
      this.restricted = false;
      this.cfg.readVersion = result.version;
      // The commit's own writes: lines pre-flushed or paged out into this transaction were written before.
      return { ...result, linesWritten: written.length };
    } catch (e) {
      // The store aborted the transaction: what was written into it is gone. Lines still in
      // memory become dirty again; lines paged out into it are lost.
      for (const line of written) t.setState(line, LineState.Dirty);
      let lost = 0;
      for (const line of this.staged) {
        if (t.slot[line]! >= 0) t.setState(line, LineState.Dirty);
        else lost++;
      }
      this.staged.clear();
      this.tx?.abort();
      this.tx = null;
      this.restricted = true;
      const error = isFerryError(e) ? e : this.txFailed(e);
      return { error, lostLines: lost };
    }
  }

  /** Drops everything in memory and any open transaction (close, or a rollback to the committed version). */
  reset(): void {
    this.tx?.abort();
    this.tx = null;
  }
}

function pickOldest(lines: number[], n: number, cmp: (a: number, b: number) => number): number[] {
  if (n <= 0) return [];
  if (lines.length <= n) return lines.sort(cmp);
  return lines.sort(cmp).slice(0, n);
}
