import Database from 'better-sqlite3';
import { FerryError } from '../../core/errors.js';

/**
 * What a grantor must never forget across a restart, in one small SQLite file:
 *
 * - `fence`: the fencing-token high-water mark. Tokens are reserved in blocks
 *   (one synchronous write per `fenceBlock` grants); a restart resumes after the
 *   whole reserved block, so a token may skip but never repeats or goes back.
 * - `horizon`: a clock time no lease granted before the restart outlives. Raised
 *   in steps of maxDurationMs ahead of the latest expiry granted, so it costs one
 *   write per maxDurationMs of wall time, not one per grant. After a restart the
 *   grantor refuses exclusive grants until the horizon has passed (the lease table
 *   was in memory, so it cannot tell who still holds what).
 *
 * SQLite with `synchronous = FULL` makes each update atomic and durable.
 */
export class GrantorState {
  private readonly db: Database.Database;
  private readonly put: Database.Statement<[string, number]>;
  private fenceNext: number;
  private fenceReserved: number;
  private horizonStored: number;
  private reserveScheduled = false;
  /** The horizon found at open: the previous run's promise. */
  readonly previousHorizon: number;

  constructor(
    file: string,
    private readonly fenceBlock: number,
    private readonly horizonStep: number,
  ) {
    try {
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec('CREATE TABLE IF NOT EXISTS grantor_state (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT');
    } catch (e) {
      throw new FerryError('BAD_OPTION', `options.stateFile ${file} cannot be opened as a SQLite file: ${(e as Error).message}`, { field: 'options.stateFile' }, { cause: e });
    }
    this.put = this.db.prepare('INSERT INTO grantor_state (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
    const get = this.db.prepare<[string], { v: number }>('SELECT v FROM grantor_state WHERE k = ?');
    const reserved = get.get('fence')?.v ?? 0;
    this.fenceNext = reserved + 1;
    this.fenceReserved = reserved;
    this.horizonStored = get.get('horizon')?.v ?? 0;
    this.previousHorizon = this.horizonStored;
  }

  /**
   * The next fencing token: strictly greater than every token handed out before,
   * in this run or any earlier one. A token is handed out only once its block is
   * durable. The next block is reserved ahead, from a `setImmediate` once half of
   * the current one is used, so the synchronous write happens between requests,
   * not inside one; only a burst that outruns it waits for the write here.
   */
  nextFence(): number {
    if (this.fenceNext > this.fenceReserved) this.reserveFences();
    else if (!this.reserveScheduled && this.fenceReserved - this.fenceNext < this.fenceBlock / 2) {
      this.reserveScheduled = true;
      setImmediate(() => {
        this.reserveScheduled = false;
        try {
          if (this.db.open && this.fenceReserved - this.fenceNext < this.fenceBlock / 2) this.reserveFences();
        } catch {
          // Not fatal here: the block still in hand stays valid, and the synchronous path retries
          // the write when it runs out (and refuses the grant with the error if it fails again).
        }
      }).unref();
    }
    return this.fenceNext++;
  }

  private reserveFences(): void {
    const upTo = Math.max(this.fenceReserved, this.fenceNext - 1) + this.fenceBlock;
    this.put.run('fence', upTo);
    this.fenceReserved = upTo;
  }

  /** Records that a lease may live until `expiresAt` (clock ms). */
  cover(expiresAt: number): void {
    if (expiresAt <= this.horizonStored) return;
    this.horizonStored = expiresAt + this.horizonStep;
    this.put.run('horizon', this.horizonStored);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
