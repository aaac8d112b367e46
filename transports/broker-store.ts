import Database from 'better-sqlite3';
import { Decoder, Encoder } from 'cbor-x';
import { FerryError } from '../core/errors.js';

/**
 * The embedded broker's SQLite file: opening, checks and schema (transports/DESIGN.md,
 * "Mechanism: the embedded broker's store", gives the format in full).
 */

/** `PRAGMA application_id` of a broker store: "FRYB". Any other id is another application's file. */
export const BROKER_STORE_APPLICATION_ID = 0x46525942;
/** `PRAGMA user_version`: the format this code reads and writes. */
export const BROKER_STORE_VERSION = 1;

const SCHEMA = `
  CREATE TABLE retained (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL UNIQUE,
    packet BLOB NOT NULL
  ) STRICT;
  CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    record BLOB NOT NULL,
    UNIQUE (client_id, topic)
  ) STRICT;
  CREATE TABLE outgoing (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    broker_id TEXT,
    broker_counter INTEGER,
    message_id INTEGER,
    packet BLOB NOT NULL
  ) STRICT;
  CREATE INDEX outgoing_by_client ON outgoing (client_id, id);
  CREATE TABLE incoming (
    client_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    packet BLOB NOT NULL,
    PRIMARY KEY (client_id, message_id)
  ) STRICT;
  CREATE TABLE wills (
    client_id TEXT PRIMARY KEY,
    broker_id TEXT,
    packet BLOB NOT NULL
  ) STRICT;
`;
const TABLES = ['incoming', 'outgoing', 'retained', 'subscriptions', 'wills'];

/**
 * Packets and subscription records are stored as one CBOR map (RFC 8949) each, so every
 * field aedes hands over comes back as it was: Buffers as byte strings (decoded to
 * Buffers), string payloads as text, fields set to `undefined` as CBOR undefined
 * (aedes-persistence's tests compare key sets), MQTT 5 properties as nested maps.
 */
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false } as ConstructorParameters<typeof Encoder>[0]);
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

/** CBOR of an object's own enumerable fields, functions left out (aedes puts callbacks on packets). */
export function encodeRecord(value: object): Buffer {
  const plain: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v !== 'function') plain[k] = v;
  return encoder.encode(plain);
}

export function decodeRecord(bytes: Uint8Array, file: string, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = decoder.decode(bytes);
  } catch (e) {
    throw corrupt(file, `${where} is not valid CBOR: ${(e as Error).message}`, e);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw corrupt(file, `${where} is not a CBOR map`);
  return v as Record<string, unknown>;
}

export function corrupt(file: string, why: string, cause?: unknown): FerryError {
  return new FerryError('BROKER_STORE_CORRUPT', `the broker store ${file} ${why}`, { field: 'options.persistenceFile', file }, cause === undefined ? undefined : { cause });
}

/**
 * Opens (creating if absent) a broker store. Throws BROKER_STORE_CORRUPT for a file that
 * is not a SQLite database, another application's database, another format version or a
 * damaged one, and BAD_OPTION (field options.persistenceFile) for a file that cannot be
 * opened at all (no such directory, no permission, locked by another process).
 */
export function openBrokerStore(file: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    // 4 KiB, the OS page; takes effect only in a new file, before its first table.
    db.pragma('page_size = 4096');
    // One process owns the file: the exclusive lock keeps a second broker off it, and keeps
    // the WAL index in heap memory instead of an mmapped -shm file (writes the flash never needed).
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    // FULL: a commit is fsynced before it returns, so an acknowledgement survives power loss,
    // not just a killed process (NORMAL would lose the last commits of the WAL on power loss).
    db.pragma('synchronous = FULL');
    // A short WAL wraps and is overwritten in place rather than growing (as the heap store does).
    db.pragma('wal_autocheckpoint = 256');
    db.pragma('journal_size_limit = 4194304');
    // The working set is the queue heads being appended and drained: 512 KiB of page cache
    // (SQLite's default is 2 MiB) keeps the agent's idle memory on a small board down.
    db.pragma('cache_size = -512');
    checkOrCreate(db, file);
    return db;
  } catch (e) {
    // Left to the GC, the exclusive lock would keep the file locked.
    db?.close();
    if (e instanceof FerryError) throw e;
    const code = (e as { code?: string }).code ?? '';
    if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) throw corrupt(file, `is not a readable SQLite database (${code})`, e);
    throw new FerryError('BAD_OPTION', `options.persistenceFile ${file} cannot be opened: ${code ? `${code}: ` : ''}${(e as Error).message}`, { field: 'options.persistenceFile', file }, { cause: e });
  }
}

function checkOrCreate(db: Database.Database, file: string): void {
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[]).filter((n) => !n.startsWith('sqlite_'));
  if (appId === 0 && version === 0 && tables.length === 0) {
    // A new (or empty) file.
    db.transaction(() => {
      db.exec(SCHEMA);
      db.pragma(`application_id = ${BROKER_STORE_APPLICATION_ID}`);
      db.pragma(`user_version = ${BROKER_STORE_VERSION}`);
    })();
    return;
  }
  if (appId !== BROKER_STORE_APPLICATION_ID) {
    throw corrupt(file, `is a SQLite database of another application (application_id ${appId}, tables ${tables.join(', ') || 'none'}), not a Ferry broker store`);
  }
  if (version !== BROKER_STORE_VERSION) {
    throw corrupt(file, `has format version ${version}; this Ferry reads version ${BROKER_STORE_VERSION}`);
  }
  if (tables.join() !== TABLES.join()) throw corrupt(file, `has tables ${tables.join(', ')}; expected ${TABLES.join(', ')}`);
  // Reads every page once (cost ∝ file size, at start only): damage shows here, as a refusal
  // to start, and not later as a session quietly missing its messages.
  const check = db.pragma('quick_check', { simple: true });
  if (check !== 'ok') throw corrupt(file, `fails its integrity check: ${String(check)}`);
}
