import type Database from 'better-sqlite3';
import { FerryError } from '../core/errors.js';

/** On-disk format version of `heap.db`; see store/DESIGN.md, "On-disk format". */
export const FORMAT_VERSION = 1;

/** Version rows of app number `num` have ids in [num·2^32, num·2^32 + 2^32). */
export const VERSION_SPAN = 2 ** 32;
export function versionId(num: number, version: number): number {
  return num * VERSION_SPAN + version;
}

export function applyPragmas(db: Database.Database, durability: 'full' | 'batched', cacheKiB: number): void {
  // page_size only takes effect before the first table exists; 4 KiB matches the OS page, so a
  // metadata page never straddles two.
  db.pragma('page_size = 4096');
  // One process owns a store: exclusive locking stops a second agent opening it, and keeps
  // the WAL index in heap memory instead of an mmapped -shm file (writes the flash never needed).
  db.pragma('locking_mode = EXCLUSIVE');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma(`cache_size = -${cacheKiB}`);
  // A short WAL wraps and is overwritten in place: once it stops growing, its fsync carries no
  // file-size change, so ext4 commits no journal transaction for it (block WA 1.34 -> 1.29).
  db.pragma('wal_autocheckpoint = 256');
  db.pragma('journal_size_limit = 8388608');
  db.pragma('foreign_keys = OFF');
}

export function createSchema(db: Database.Database, segmentBytes: number): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS apps (
      app TEXT PRIMARY KEY,
      num INTEGER NOT NULL UNIQUE,
      line_size INTEGER NOT NULL,
      max_lines INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- A rowid table keyed (app number << 32 | version): one app's rows are contiguous, a commit
    -- appends at the right edge, and a ~1.5 KB row stays inside its leaf page (WITHOUT ROWID
    -- rows over ~1 KB spill into overflow pages, costing an extra WAL frame per commit).
    CREATE TABLE IF NOT EXISTS versions (
      id INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      line_count INTEGER NOT NULL,
      state BLOB NOT NULL,
      map BLOB NOT NULL,
      crc INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS removed (
      app TEXT NOT NULL,
      version INTEGER NOT NULL,
      PRIMARY KEY (app, version)
    ) WITHOUT ROWID;
  `);
  const get = db.prepare('SELECT value FROM meta WHERE key = ?');
  const format = get.get('format') as { value: number } | undefined;
  if (!format) {
    const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    db.transaction(() => {
      put.run('format', FORMAT_VERSION);
      put.run('segment_bytes', segmentBytes);
    })();
    return;
  }
  if (format.value !== FORMAT_VERSION) {
    throw new FerryError('STORE_CORRUPT', `heap.db has format ${format.value}; this Ferry reads format ${FORMAT_VERSION}`, { field: 'meta.format' });
  }
  const seg = (get.get('segment_bytes') as { value: number } | undefined)?.value;
  if (seg !== segmentBytes) {
    throw new FerryError('BAD_OPTION', `options.segmentBytes is ${segmentBytes} but the store at this dir was created with ${seg}`, { field: 'options.segmentBytes' });
  }
}
