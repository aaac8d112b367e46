import { mkdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import { FerryError, isFerryError } from '../core/errors.js';
import { describe } from '../core/options.js';
import { AppIndex, type Releaser, type VersionMeta } from './app-index.js';
import { fsBlockIo, type BlockIo } from './block-io.js';
import { decodeMap, encodeMap, HASH_BYTES, MAP_ENTRY_BYTES, rowCrc, type LineRecord } from './map-codec.js';
import { resolveStoreOptions, type AppOptions, type ResolvedStoreOptions, type StoreOptions } from './options.js';
import { applyPragmas, createSchema, versionId } from './schema.js';
import { SegmentSpace, type TrackedRecord, type WearStats } from './segment-space.js';
import { WriteTransaction, type CommitResult, type TransactionHost } from './transaction.js';

export interface VersionInfo {
  version: number;
  /** Commit time, ms since the epoch. */
  createdAt: number;
  /** Lines the version holds. */
  lineCount: number;
  /** lineCount × line size. */
  bytes: number;
  stateBytes: number;
  /** True for the app's newest version. */
  current: boolean;
}

export interface LineInfo {
  line: number;
  hash: Uint8Array;
  len: number;
}

export interface StoreStats {
  segmentBytes: number;
  segments: number;
  freeSegments: number;
  usedSegments: number;
  /** Bytes of line data some kept version still sees. */
  liveBytes: number;
  /** Size of the segment file. */
  fileBytes: number;
  /** Line bytes the store wrote to the segment file (new lines and compaction copies). */
  segmentBytesWritten: number;
  /** Of those, bytes compaction copied. */
  compactionBytes: number;
  commits: number;
  aborts: number;
  /** Line bytes committed by callers (what write amplification divides by). */
  bytesCommitted: number;
  /** fdatasync calls on the segment file. */
  segmentSyncs: number;
  wear: WearStats;
}

export interface IntegrityReport {
  ok: boolean;
  problems: string[];
  versionsChecked: number;
  linesChecked: number;
}

const APP_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Opens (creating if needed) the store in `options.dir`. */
export function openStore(options: StoreOptions): Store {
  return new Store(resolveStoreOptions(options));
}

/**
 * The flash-aware heap store. Line bytes live in an append-only segment file (the device's
 * flash); which bytes make up each checkpoint version lives in SQLite (WAL), whose commit is the
 * store's commit point. See store/DESIGN.md.
 */
export class Store implements TransactionHost {
  private readonly db: Database.Database;
  private readonly io: BlockIo;
  private readonly fd: number;
  private readonly space: SegmentSpace;
  private readonly apps = new Map<string, AppIndex>();
  private readonly openTx = new Map<string, WriteTransaction>();
  private readonly byHash = new Map<string, Set<TrackedRecord>>();
  private readonly liveness: Releaser;
  private closed = false;
  private commitsSinceSync = 0;
  private counters = { commits: 0, aborts: 0, bytesCommitted: 0, compactionBytes: 0 };
  private readonly sql: ReturnType<Store['prepare']>;

  constructor(readonly options: ResolvedStoreOptions) {
    mkdirSync(options.dir, { recursive: true });
    let db: Database.Database | undefined;
    try {
      db = new Database(join(options.dir, 'heap.db'));
      applyPragmas(db, options.durability, options.cacheKiB);
      createSchema(db, options.segmentBytes);
    } catch (e) {
      // close what was opened: left to the GC, the exclusive lock would keep the store locked
      db?.close();
      throw wrapSqlite(e, 'open heap.db');
    }
    this.db = db;
    this.sql = this.prepare();
    this.io = options.io ?? fsBlockIo;
    try {
      this.fd = this.io.open(join(options.dir, 'heap.blocks'));
    } catch (e) {
      this.db.close();
      throw new FerryError('STORE_IO', `cannot open the segment file: ${(e as Error).message}`, { field: 'options.dir' }, { cause: e });
    }
    const wear = this.sql.getMeta.get('wear') as { value: Uint8Array } | undefined;
    this.space = new SegmentSpace(this.io, this.fd, options.segmentBytes, options.maxBytes, options.durability === 'full', decodeWear(wear?.value), () => deviceFree(options.dir));
    this.liveness = { release: (r) => this.release(r) };
    try {
      this.load();
    } catch (e) {
      this.io.close(this.fd);
      this.db.close();
      throw e;
    }
  }

  private prepare() {
    const db = this.db;
    return {
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      putMeta: db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
      apps: db.prepare('SELECT app, num, line_size, max_lines FROM apps ORDER BY app'),
      nextAppNum: db.prepare('SELECT coalesce(max(num), 0) + 1 AS n FROM apps').pluck(),
      insertApp: db.prepare('INSERT INTO apps (app, num, line_size, max_lines, created_at) VALUES (?, ?, ?, ?, ?)'),
      // ids of app `num`: [num·2^32, (num+1)·2^32); version = id - num·2^32
      rows: db.prepare('SELECT id - @base AS version, kind, created_at, line_count, state, map, crc FROM versions WHERE id >= @base AND id < @base + 4294967296 ORDER BY id'),
      row: db.prepare('SELECT id - @base AS version, kind, created_at, line_count, state, map, crc FROM versions WHERE id = @base + @version'),
      removed: db.prepare('SELECT version FROM removed WHERE app = ?'),
      insertRow: db.prepare('INSERT INTO versions (id, kind, created_at, line_count, state, map, crc) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      deleteRowsBelow: db.prepare('DELETE FROM versions WHERE id >= @base AND id < @base + @version'),
      deleteRemovedBelow: db.prepare('DELETE FROM removed WHERE app = ? AND version < ?'),
      insertRemoved: db.prepare('INSERT OR IGNORE INTO removed (app, version) VALUES (?, ?)'),
      deleteAppRows: db.prepare('DELETE FROM versions WHERE id >= @base AND id < @base + 4294967296'),
      deleteAppRemoved: db.prepare('DELETE FROM removed WHERE app = ?'),
      deleteAppRow: db.prepare('DELETE FROM apps WHERE app = ?'),
    };
  }

  // ---- open: rebuild the in-memory index from the version rows ----

  private load(): void {
    for (const a of this.sql.apps.all() as Array<{ app: string; num: number; line_size: number; max_lines: number }>) {
      const idx = new AppIndex(a.app, a.num, a.line_size, a.max_lines, this.options.keepVersions);
      const removed = new Set((this.sql.removed.all(a.app) as Array<{ version: number }>).map((r) => r.version));
      for (const row of this.sql.rows.iterate({ base: versionId(a.num, 0) }) as Iterable<RowData>) {
        const map = this.checkRow(a.app, row);
        const records = decodeMap(map, `app ${a.app} version ${row.version}`);
        for (const rec of records) {
          if (!rec.deleted && (rec.len !== idx.lineSize || rec.off + rec.len > this.options.segmentBytes)) {
            throw new FerryError('STORE_CORRUPT', `app ${a.app} version ${row.version} line ${rec.line} has an impossible location (segment ${rec.seg}, offset ${rec.off}, length ${rec.len})`, { field: 'versions.map', app: a.app, version: row.version, line: rec.line });
          }
          idx.add({ ...rec, app: a.app, alive: false });
        }
        idx.rows.push(meta(row, map.length, records, removed.has(row.version)));
      }
      idx.recomputeKept();
      for (const h of idx.history.values()) for (const r of h) if (idx.shouldLive(r)) this.retain(r);
      this.apps.set(a.app, idx);
    }
    this.space.initFree();
  }

  private checkRow(app: string, row: RowData): Uint8Array {
    const state = toBytes(row.state);
    const map = toBytes(row.map);
    if (rowCrc(app, row.version, row.kind, state, map) !== row.crc) {
      throw new FerryError('STORE_CORRUPT', `app ${app} version ${row.version}: the version row fails its checksum`, { field: 'versions.crc', app, version: row.version });
    }
    return map;
  }

  private retain(r: TrackedRecord): void {
    this.space.retain(r);
    if (r.deleted) return;
    const key = hashKey(r.hash);
    let set = this.byHash.get(key);
    if (!set) this.byHash.set(key, (set = new Set()));
    set.add(r);
  }

  private release(r: TrackedRecord): void {
    this.space.release(r);
    if (r.deleted) return;
    const key = hashKey(r.hash);
    const set = this.byHash.get(key);
    if (set && set.delete(r) && set.size === 0) this.byHash.delete(key);
  }

  // ---- apps ----

  /** Creates an app's heap segment. Repeating it with the same options is a no-op. */
  createApp(app: string, options: AppOptions): void {
    this.checkOpen();
    checkAppId(app);
    if (options === null || typeof options !== 'object') throw new FerryError('STORE_BAD_INPUT', `options of app ${app} must be an object, got ${describe(options)}`, { field: 'options' });
    const { lineSize, maxLines } = options;
    if (!Number.isInteger(lineSize) || lineSize < 64 || lineSize > this.options.segmentBytes || !Number.isInteger(Math.log2(lineSize))) {
      throw new FerryError('STORE_BAD_INPUT', `options.lineSize of app ${app} must be a power of two in 64..${this.options.segmentBytes} (the segment size), got ${describe(lineSize)}`, { field: 'options.lineSize' });
    }
    if (!Number.isInteger(maxLines) || maxLines < 1 || maxLines > 2 ** 31) {
      throw new FerryError('STORE_BAD_INPUT', `options.maxLines of app ${app} must be an integer in 1..2147483648, got ${describe(maxLines)}`, { field: 'options.maxLines' });
    }
    const existing = this.apps.get(app);
    if (existing) {
      if (existing.lineSize !== lineSize || existing.maxLines !== maxLines) {
        throw new FerryError('STORE_BAD_INPUT', `app ${app} exists with lineSize ${existing.lineSize} and maxLines ${existing.maxLines}`, { field: 'options.lineSize' });
      }
      return;
    }
    const num = this.runSql('create app', () => {
      const n = this.sql.nextAppNum.get() as number;
      this.sql.insertApp.run(app, n, lineSize, maxLines, Date.now());
      return n;
    });
    this.apps.set(app, new AppIndex(app, num, lineSize, maxLines, this.options.keepVersions));
  }

  hasApp(app: string): boolean {
    return this.apps.has(app);
  }

  listApps(): string[] {
    return [...this.apps.keys()];
  }

  appInfo(app: string): { lineSize: number; maxLines: number; head: number } {
    const idx = this.index(app);
    return { lineSize: idx.lineSize, maxLines: idx.maxLines, head: idx.head };
  }

  /** Removes an app with every version; its space is reclaimed. */
  removeApp(app: string): void {
    const idx = this.index(app);
    this.openTx.get(app)?.abort();
    this.runSql('remove app', () => this.db.transaction(() => {
      this.sql.deleteAppRows.run({ base: versionId(idx.num, 0) });
      this.sql.deleteAppRemoved.run(app);
      this.sql.deleteAppRow.run(app);
    })());
    for (const h of idx.history.values()) for (const r of h) if (r.alive) this.release(r);
    this.apps.delete(app);
  }

  // ---- transactions ----

  /** Starts the app's write transaction (one at a time per app). */
  begin(app: string): WriteTransaction {
    const idx = this.index(app);
    if (this.openTx.has(app)) throw new FerryError('STORE_BUSY', `app ${app} already has an open write transaction`, { field: 'app', app });
    const tx = new WriteTransaction(this, idx, idx.head);
    this.openTx.set(app, tx);
    return tx;
  }

  /** @internal (TransactionHost) */
  appendLine(_tx: WriteTransaction, bytes: Uint8Array): { seg: number; off: number } {
    this.checkOpen();
    try {
      return this.space.append(bytes);
    } catch (e) {
      // A failed pre-flush leaves the open segment's tail unwritten: abandon it as a failed commit
      // does, or every later transaction would retry that write first (forever, on a full device).
      if (isFerryError(e, 'STORE_IO') || isFerryError(e, 'STORE_NO_SPACE')) this.space.abandonOpen();
      throw e;
    }
  }

  /** @internal (TransactionHost) */
  readStaged(tx: WriteTransaction, record: TrackedRecord): Uint8Array {
    this.checkOpen();
    return this.readRecord(record, tx.index.head + 1);
  }

  /** @internal (TransactionHost) */
  readCommitted(tx: WriteTransaction, line: number): Uint8Array | undefined {
    this.checkOpen();
    if (tx.parent === 0) return undefined;
    const r = tx.index.recordAt(line, tx.parent);
    return r && !r.deleted ? this.readRecord(r, tx.parent) : undefined;
  }

  /** @internal (TransactionHost) */
  endTransaction(tx: WriteTransaction, aborted: boolean): void {
    if (this.openTx.get(tx.app) === tx) this.openTx.delete(tx.app);
    if (aborted) this.counters.aborts++;
    if (!this.closed) this.space.endTransaction();
  }

  /** @internal (TransactionHost) */
  commitTransaction(tx: WriteTransaction, forceCompaction = false): CommitResult {
    this.checkOpen();
    const idx = tx.index;
    const version = idx.head + 1;
    const durable = this.options.durability === 'full';
    let written = 0;
    let deleted = 0;
    let row: VersionMeta;
    let dropBelow: number;
    try {
      this.compactInto(tx, forceCompaction);
      // Data first: the metadata commit below may only name bytes that are already on disk.
      this.space.flushOpen();
      this.space.sync();

      const delta: TrackedRecord[] = [];
      let lineCount = idx.head ? idx.row(idx.head)!.lineCount : 0;
      for (const r of [...tx.staged.values()].sort((a, b) => a.line - b.line)) {
        const before = idx.recordAt(r.line, idx.head);
        const wasVisible = before !== undefined && !before.deleted;
        if (r.deleted) {
          if (!wasVisible) continue;
          lineCount--; deleted++;
        } else {
          if (!wasVisible) lineCount++;
          written++;
        }
        r.version = version;
        delta.push(r);
      }
      const state = tx.state ?? this.headState(idx);
      const deltaBytes = delta.length * MAP_ENTRY_BYTES;
      // Rebase rule: write the full map once the deltas since the last base outweigh it, so
      // rebuilding any version reads at most about twice the map's size.
      const asBase = idx.head === 0 || idx.deltaBytesSinceBase() + deltaBytes >= lineCount * MAP_ENTRY_BYTES;
      let records: LineRecord[] = delta;
      if (asBase) {
        const merged = new Map<number, LineRecord>();
        for (const r of idx.visibleAt(idx.head)) merged.set(r.line, r);
        // This version's deletions stay in the base as tombstones: on reopen, older rows may
        // still be replayed before it, and without them the deleted lines would show through.
        for (const r of delta) merged.set(r.line, r);
        records = [...merged.values()].sort((a, b) => a.line - b.line);
      }
      const map = encodeMap(records);
      const kind = asBase ? 1 : 0;
      const createdAt = Date.now();
      row = meta({ version, kind, created_at: createdAt, line_count: lineCount, state }, map.length, delta, false);
      const keptAfter = idx.keptAfterCommit(version);
      dropBelow = idx.oldestNeededRow(keptAfter[0], row);
      this.runSql('commit', () => this.db.transaction(() => {
        this.sql.insertRow.run(versionId(idx.num, version), kind, createdAt, lineCount, state, map, rowCrc(tx.app, version, kind, state, map));
        if (dropBelow > (idx.rows[0]?.version ?? dropBelow)) {
          this.sql.deleteRowsBelow.run({ base: versionId(idx.num, 0), version: dropBelow });
          this.sql.deleteRemovedBelow.run(tx.app, dropBelow);
        }
      })());
    } catch (e) {
      if (isFerryError(e, 'STORE_IO') || isFerryError(e, 'STORE_NO_SPACE')) this.space.abandonOpen();
      throw e;
    }

    // Committed: from here on nothing may fail. Update the in-memory index.
    for (const r of tx.staged.values()) {
      if (r.version !== version) continue;
      idx.add(r);
      if (!r.deleted) this.retain(r);
    }
    idx.rows.push(row);
    const dropped = idx.recomputeKept();
    idx.releaseDropped(dropped, this.liveness);
    idx.dropRowsBelow(dropBelow);

    this.counters.commits++;
    this.counters.bytesCommitted += (written - tx.compactedLines) * idx.lineSize;
    this.counters.compactionBytes += tx.compactedBytes;
    if (!durable && ++this.commitsSinceSync >= this.options.syncEveryCommits) {
      try {
        this.sync();
      } catch {
        // The version is committed (batched durability: safe from a process crash): a failing
        // automatic sync must not report it as failed. The count stays due, so the next commit
        // retries; an explicit sync() reports the failure.
      }
    }
    return { version, kind: row.kind === 1 ? 'base' : 'delta', linesWritten: written - tx.compactedLines, linesDeleted: deleted, compactedLines: tx.compactedLines, compactedBytes: tx.compactedBytes };
  }

  /**
   * Bounded compaction: when the segment file holds more than `spaceFactor` × the live data,
   * copy this app's current lines out of the sparsest segments into this checkpoint. The old
   * copies die once the versions that still see them are reclaimed, freeing their segments.
   */
  private compactInto(tx: WriteTransaction, force: boolean): void {
    const seg = this.options.segmentBytes;
    const live = this.space.totalLiveBytes();
    if (!force && this.space.usedSegments() * seg <= this.options.spaceFactor * live + 2 * seg) return;
    let budget = this.options.compactionBytesPerCommit;
    const idx = tx.index;
    for (const victim of this.space.victims()) {
      if (budget <= 0 || this.space.liveBytesOf(victim) > seg * 0.75) break;
      for (const r of [...this.space.liveRecordsOf(victim)]) {
        if (budget <= 0) break;
        if (r.app !== tx.app || tx.staged.has(r.line) || idx.recordAt(r.line, idx.head) !== r) continue;
        const bytes = this.readRecord(r, idx.head);
        tx.stageCopy(r.line, bytes, r.crc, r.hash);
        budget -= bytes.length;
      }
    }
  }

  /** Commits a checkpoint whose only content is compaction (the lines stay as they are). */
  compact(app: string): CommitResult {
    return this.begin(app).commit({ forceCompaction: true });
  }

  // ---- reads ----

  /** Atomic read of a set of lines at one version (default: the newest). Missing lines are undefined. */
  read(app: string, lines: readonly number[], options: { version?: number } = {}): Array<Uint8Array | undefined> {
    const idx = this.index(app);
    const version = this.readableVersion(idx, options.version);
    return lines.map((line) => {
      if (!Number.isInteger(line) || line < 0 || line >= idx.maxLines) {
        throw new FerryError('STORE_BAD_INPUT', `line of app ${app} must be an integer in 0..${idx.maxLines - 1}, got ${describe(line)}`, { field: 'lines', app });
      }
      const r = idx.recordAt(line, version);
      return r && !r.deleted ? this.readRecord(r, version) : undefined;
    });
  }

  readLine(app: string, line: number, options: { version?: number } = {}): Uint8Array | undefined {
    return this.read(app, [line], options)[0];
  }

  /** The non-heap state blob of a version (default: the newest). */
  readState(app: string, options: { version?: number } = {}): Uint8Array {
    const idx = this.index(app);
    const version = this.readableVersion(idx, options.version);
    return this.stateOf(app, version);
  }

  /** Lines of a version with their content hashes (for migration: send only what a peer lacks). */
  listLines(app: string, options: { version?: number } = {}): LineInfo[] {
    const idx = this.index(app);
    const version = this.readableVersion(idx, options.version);
    return idx.visibleAt(version).map((r) => ({ line: r.line, hash: r.hash.slice(), len: r.len }));
  }

  /** Which of these content hashes the store holds (in any kept version of any app). */
  hasHashes(hashes: readonly Uint8Array[]): boolean[] {
    this.checkOpen();
    return hashes.map((h) => {
      checkHash(h);
      return this.byHash.has(hashKey(h));
    });
  }

  /**
   * The distinct content hashes of the lines `app` keeps, in any kept version: what a device
   * holding this heap could reuse of another (a peer's region summary, agent/fleet).
   */
  hashesOf(app: string): Uint8Array[] {
    const idx = this.index(app);
    const seen = new Map<string, Uint8Array>();
    for (const records of idx.history.values()) {
      for (const r of records) {
        const key = hashKey(r.hash);
        if (!seen.has(key) && this.byHash.has(key)) seen.set(key, r.hash.slice());
      }
    }
    return [...seen.values()];
  }

  /** The bytes with this content hash, or undefined. */
  readByHash(hash: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    checkHash(hash);
    const set = this.byHash.get(hashKey(hash));
    const r = set?.values().next().value;
    return r ? this.readRecord(r, r.version) : undefined;
  }

  private readRecord(r: TrackedRecord, version: number): Uint8Array {
    const bytes = this.space.read(r);
    if (crc32(bytes) !== r.crc) {
      throw new FerryError('STORE_CORRUPT', `app ${r.app} line ${r.line} version ${version}: bytes fail their checksum (segment ${r.seg}, offset ${r.off})`, { field: 'line', app: r.app, line: r.line, version });
    }
    return bytes;
  }

  private headState(idx: AppIndex): Uint8Array {
    return idx.head ? this.stateOf(idx.app, idx.head) : new Uint8Array(0);
  }

  private stateOf(app: string, version: number): Uint8Array {
    const row = this.sql.row.get({ base: versionId(this.index(app).num, 0), version }) as RowData | undefined;
    if (!row) throw new FerryError('STORE_UNKNOWN_VERSION', `app ${app} has no version ${version}`, { field: 'version', app, version });
    this.checkRow(app, row);
    return new Uint8Array(toBytes(row.state)); // a plain copy (SQLite hands back a Buffer, whose slice() is a view)
  }

  // ---- versions ----

  /** The app's kept checkpoint versions, oldest first. */
  versions(app: string): VersionInfo[] {
    const idx = this.index(app);
    return idx.keptVersions().map((v) => {
      const row = idx.row(v)!;
      return { version: v, createdAt: row.createdAt, lineCount: row.lineCount, bytes: row.lineCount * idx.lineSize, stateBytes: row.stateBytes, current: v === idx.head };
    });
  }

  headVersion(app: string): number {
    return this.index(app).head;
  }

  /** Removes a kept version (not the newest: restore an older one, or remove the app). */
  removeVersion(app: string, version: number): void {
    const idx = this.index(app);
    this.readableVersion(idx, version);
    if (version === idx.head) {
      throw new FerryError('STORE_BAD_INPUT', `version ${version} is app ${app}'s current version; restore another version first or remove the app`, { field: 'version', app, version });
    }
    this.runSql('remove version', () => this.sql.insertRemoved.run(app, version));
    idx.row(version)!.removed = true;
    const dropped = idx.recomputeKept();
    idx.releaseDropped(dropped, this.liveness);
  }

  /**
   * Makes a kept version current again by committing a new version equal to it; returns the
   * commit. `state` replaces that version's state blob in the new one (the heap marks it as a restore).
   */
  restore(app: string, version: number, state?: Uint8Array): CommitResult {
    const idx = this.index(app);
    this.readableVersion(idx, version);
    const tx = this.begin(app);
    try {
      const lines = new Set<number>([...idx.visibleAt(version), ...idx.visibleAt(idx.head)].map((r) => r.line));
      for (const line of lines) {
        const want = idx.recordAt(line, version);
        if (want === idx.recordAt(line, idx.head)) continue;
        if (!want || want.deleted) tx.delete(line);
        else tx.write(line, this.readRecord(want, version));
      }
      tx.setState(state ?? this.stateOf(app, version));
      return tx.commit();
    } finally {
      tx.abort();
    }
  }

  // ---- durability, integrity, stats ----

  /** Makes every commit durable (batched mode); frees segments quarantined until then. */
  sync(): void {
    this.checkOpen();
    this.space.sync();
    this.runSql('sync', () => {
      this.saveWear();
      this.db.pragma('wal_checkpoint(FULL)');
    });
    this.space.releaseQuarantine();
    this.commitsSinceSync = 0;
  }

  private saveWear(): void {
    const { erases, programs } = this.space.wearArrays();
    const blob = new Uint8Array((erases.length + programs.length) * 4);
    const dv = new DataView(blob.buffer);
    erases.forEach((v, i) => dv.setUint32(i * 4, v, true));
    programs.forEach((v, i) => dv.setUint32((erases.length + i) * 4, v, true));
    this.sql.putMeta.run('wear', blob);
  }

  /** Walks the store: SQLite's own check, every version row, every kept line's checksum, and the space accounting. */
  integrityCheck(): IntegrityReport {
    this.checkOpen();
    const problems: string[] = [];
    const sqliteCheck = this.db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    for (const r of sqliteCheck) if (r.integrity_check !== 'ok') problems.push(`sqlite: ${r.integrity_check}`);
    let versionsChecked = 0;
    let linesChecked = 0;
    const seen = new Set<TrackedRecord>();
    for (const [app, idx] of this.apps) {
      for (const row of this.sql.rows.iterate({ base: versionId(idx.num, 0) }) as Iterable<RowData>) {
        versionsChecked++;
        try {
          decodeMap(this.checkRow(app, row), `app ${app} version ${row.version}`);
        } catch (e) {
          problems.push((e as Error).message);
        }
      }
      for (const v of idx.keptVersions()) {
        for (const r of idx.visibleAt(v)) {
          if (seen.has(r)) continue;
          seen.add(r);
          if (!r.alive) problems.push(`app ${app} line ${r.line} version ${v}: seen by a kept version but not accounted live`);
          try {
            this.readRecord(r, v);
            linesChecked++;
          } catch (e) {
            problems.push((e as Error).message);
          }
        }
      }
      for (const h of idx.history.values()) for (const r of h) if (r.alive && !seen.has(r)) problems.push(`app ${app} line ${r.line} version ${r.version}: accounted live but no kept version sees it`);
    }
    return { ok: problems.length === 0, problems, versionsChecked, linesChecked };
  }

  stats(): StoreStats {
    this.checkOpen();
    return {
      segmentBytes: this.options.segmentBytes,
      segments: this.space.segmentCount,
      freeSegments: this.space.freeSegments(),
      usedSegments: this.space.usedSegments(),
      liveBytes: this.space.totalLiveBytes(),
      fileBytes: this.io.size(this.fd),
      segmentBytesWritten: this.space.bytesWritten,
      compactionBytes: this.counters.compactionBytes,
      commits: this.counters.commits,
      aborts: this.counters.aborts,
      bytesCommitted: this.counters.bytesCommitted,
      segmentSyncs: this.space.syncs,
      wear: this.space.wear(),
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Aborts open transactions and closes the files. Safe to repeat. */
  close(): void {
    if (this.closed) return;
    for (const tx of [...this.openTx.values()]) tx.abort();
    try {
      this.saveWear();
    } catch {
      // wear counters are advisory; a failure to save them must not block close
    }
    this.closed = true;
    this.db.close();
    this.io.close(this.fd);
  }

  // ---- helpers ----

  private index(app: string): AppIndex {
    this.checkOpen();
    if (typeof app !== 'string') throw new FerryError('STORE_BAD_INPUT', `app must be a string, got ${describe(app)}`, { field: 'app' });
    const idx = this.apps.get(app);
    if (!idx) throw new FerryError('STORE_UNKNOWN_APP', `the store holds no app ${JSON.stringify(app)}`, { field: 'app', app });
    return idx;
  }

  private readableVersion(idx: AppIndex, version: number | undefined): number {
    if (version === undefined) {
      if (idx.head === 0) throw new FerryError('STORE_UNKNOWN_VERSION', `app ${idx.app} has no committed version yet`, { field: 'version', app: idx.app });
      return idx.head;
    }
    if (!Number.isInteger(version) || !idx.isKept(version)) {
      throw new FerryError('STORE_UNKNOWN_VERSION', `app ${idx.app} has no version ${describe(version)} (kept: ${idx.keptVersions().join(', ') || 'none'})`, { field: 'version', app: idx.app, version });
    }
    return version;
  }

  private checkOpen(): void {
    if (this.closed) throw new FerryError('STORE_CLOSED', `the store at ${this.options.dir} is closed`, { field: 'store' });
  }

  private runSql<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw wrapSqlite(e, what);
    }
  }
}

interface RowData {
  version: number;
  kind: 0 | 1;
  created_at: number;
  line_count: number;
  state: Uint8Array;
  map?: Uint8Array;
  crc?: number;
}

function meta(row: RowData, mapBytes: number, records: readonly LineRecord[], removed: boolean): VersionMeta {
  return {
    version: row.version, kind: row.kind, createdAt: row.created_at, lineCount: row.line_count,
    stateBytes: row.state.length, removed, mapBytes, lines: records.map((r) => r.line),
  };
}

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new FerryError('STORE_CORRUPT', `a version row holds ${describe(v)} where bytes belong`, { field: 'versions' });
}

function hashKey(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, HASH_BYTES).toString('hex');
}

function checkHash(h: unknown): void {
  if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) {
    throw new FerryError('STORE_BAD_INPUT', `hash must be a Uint8Array of ${HASH_BYTES} bytes, got ${describe(h)}`, { field: 'hash' });
  }
}

function checkAppId(app: unknown): void {
  if (typeof app !== 'string' || !APP_ID.test(app)) {
    throw new FerryError('STORE_BAD_INPUT', `app must match ${APP_ID} (letters, digits, . _ : -), got ${describe(app)}`, { field: 'app' });
  }
}

/** Bytes an unprivileged writer may still use on the device holding `dir`; undefined when unknown. */
function deviceFree(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

function decodeWear(blob: Uint8Array | undefined): { erases: Uint32Array; programs: Uint32Array } | undefined {
  if (!blob || blob.length % 8 !== 0) return undefined;
  const n = blob.length / 8;
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const erases = new Uint32Array(n);
  const programs = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    erases[i] = dv.getUint32(i * 4, true);
    programs[i] = dv.getUint32((n + i) * 4, true);
  }
  return { erases, programs };
}

function wrapSqlite(e: unknown, what: string): FerryError {
  if (e instanceof FerryError) return e;
  const code = (e as { code?: string })?.code ?? '';
  const msg = (e as Error)?.message ?? String(e);
  if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR_WRITE') && /space/i.test(msg)) {
    return new FerryError('STORE_NO_SPACE', `${what} failed: the metadata database is full (${code}); the transaction was aborted`, { field: 'heap.db' }, { cause: e });
  }
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') {
    return new FerryError('STORE_CORRUPT', `${what} failed: heap.db is damaged (${code}: ${msg})`, { field: 'heap.db' }, { cause: e });
  }
  return new FerryError('STORE_IO', `${what} failed: ${code ? `${code}: ` : ''}${msg}`, { field: 'heap.db' }, { cause: e });
}
