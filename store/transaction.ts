import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { FerryError } from '../core/errors.js';
import type { AppIndex } from './app-index.js';
import { HASH_BYTES } from './map-codec.js';
import type { TrackedRecord } from './segment-space.js';

/** What a successful commit reports. */
export interface CommitResult {
  version: number;
  /** `base`: the row holds the full line map; `delta`: only the lines this checkpoint changed. */
  kind: 'base' | 'delta';
  linesWritten: number;
  linesDeleted: number;
  /** Live lines compaction copied into this checkpoint to reclaim sparse segments. */
  compactedLines: number;
  compactedBytes: number;
}

/** The store side of a transaction; implemented by `Store`. */
export interface TransactionHost {
  appendLine(tx: WriteTransaction, bytes: Uint8Array): { seg: number; off: number };
  readStaged(tx: WriteTransaction, record: TrackedRecord): Uint8Array;
  readCommitted(tx: WriteTransaction, line: number): Uint8Array | undefined;
  commitTransaction(tx: WriteTransaction, forceCompaction: boolean): CommitResult;
  endTransaction(tx: WriteTransaction, aborted: boolean): void;
}

export function contentHash(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest().buffer, 0, HASH_BYTES).slice();
}

/**
 * One atomic write/delete transaction: stages lines (their bytes go to the segment file at
 * once, so a later commit is short — the seed's pre-flush), deletions and the non-heap state,
 * then commits them as one new checkpoint version, or aborts leaving nothing behind.
 */
export class WriteTransaction {
  /** Staged records by line: new bytes, or tombstones for deletions. */
  readonly staged = new Map<number, TrackedRecord>();
  state: Uint8Array | undefined;
  compactedLines = 0;
  compactedBytes = 0;
  private finished: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    private readonly host: TransactionHost,
    readonly index: AppIndex,
    /** The version this transaction was started on. */
    readonly parent: number,
  ) {}

  get app(): string {
    return this.index.app;
  }

  get isOpen(): boolean {
    return this.finished === 'open';
  }

  /** Stages a whole line. `bytes` must be exactly the app's line size. */
  write(line: number, bytes: Uint8Array): void {
    this.check();
    this.checkLine(line);
    if (!(bytes instanceof Uint8Array)) {
      throw new FerryError('STORE_BAD_INPUT', `bytes of app ${this.app} line ${line} must be a Uint8Array`, { field: 'bytes', app: this.app, line });
    }
    if (bytes.length !== this.index.lineSize) {
      throw new FerryError('STORE_BAD_INPUT', `bytes of app ${this.app} line ${line} must be ${this.index.lineSize} bytes (the app's line size), got ${bytes.length}`, { field: 'bytes', app: this.app, line });
    }
    this.stage(line, bytes, crc32(bytes), contentHash(bytes));
  }

  /** Stages a copy made by compaction (checksum and hash already known and verified). */
  stageCopy(line: number, bytes: Uint8Array, crc: number, hash: Uint8Array): void {
    this.stage(line, bytes, crc, hash);
    this.compactedLines++;
    this.compactedBytes += bytes.length;
  }

  private stage(line: number, bytes: Uint8Array, crc: number, hash: Uint8Array): void {
    let at: { seg: number; off: number };
    try {
      at = this.host.appendLine(this, bytes);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.staged.set(line, { app: this.app, line, version: 0, deleted: false, seg: at.seg, off: at.off, len: bytes.length, crc, hash, alive: false });
  }

  /**
   * Reads a line as this transaction sees it: its own staged write (or deletion), else the
   * parent version. The heap pages a dirty line out into the open transaction and may fault it
   * back in before the checkpoint commits.
   */
  read(line: number): Uint8Array | undefined {
    this.check();
    this.checkLine(line);
    const staged = this.staged.get(line);
    if (staged) return staged.deleted ? undefined : this.host.readStaged(this, staged);
    return this.host.readCommitted(this, line);
  }

  /** Stages the deletion of a line. Deleting a line that holds nothing is allowed and changes nothing. */
  delete(line: number): void {
    this.check();
    this.checkLine(line);
    this.staged.set(line, { app: this.app, line, version: 0, deleted: true, seg: 0, off: 0, len: 0, crc: 0, hash: new Uint8Array(HASH_BYTES), alive: false });
  }

  /** Sets the non-heap state blob (timers, queues, leases: opaque to the store). Unset: the parent's state is kept. */
  setState(bytes: Uint8Array): void {
    this.check();
    if (!(bytes instanceof Uint8Array)) throw new FerryError('STORE_BAD_INPUT', `state of app ${this.app} must be a Uint8Array`, { field: 'state', app: this.app });
    this.state = bytes.slice();
  }

  /** Commits the staged lines, deletions and state as the app's next version. `forceCompaction` is the store's own `compact()`. */
  commit(options: { forceCompaction?: boolean } = {}): CommitResult {
    this.check();
    try {
      const result = this.host.commitTransaction(this, options.forceCompaction === true);
      this.finished = 'committed';
      this.host.endTransaction(this, false);
      return result;
    } catch (e) {
      if (this.finished === 'open') this.abort();
      throw e;
    }
  }

  /** Abandons the transaction; the app stays at its last committed version. Safe to repeat. */
  abort(): void {
    if (this.finished !== 'open') return;
    this.finished = 'aborted';
    this.host.endTransaction(this, true);
  }

  private check(): void {
    if (this.finished === 'committed') throw new FerryError('STORE_CLOSED', `transaction on app ${this.app} was already committed`, { field: 'transaction', app: this.app });
    if (this.finished === 'aborted') throw new FerryError('STORE_ABORTED', `transaction on app ${this.app} was aborted`, { field: 'transaction', app: this.app });
  }

  private checkLine(line: number): void {
    if (!Number.isInteger(line) || line < 0 || line >= this.index.maxLines) {
      throw new FerryError('STORE_BAD_INPUT', `line of app ${this.app} must be an integer in 0..${this.index.maxLines - 1}, got ${line}`, { field: 'line', app: this.app });
    }
  }
}
