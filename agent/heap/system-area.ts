import { FerryError } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import { contentHash, type Store } from '../../store/index.js';
import { decodeValue, encodeValue } from './record-codec.js';

/**
 * System lines (WO 01/95094: "system cache lines"): code and read-only data shared by every
 * app of the device — an app's module source, its description, shared tables. They live in
 * their own store segment (app `ferry.system` by default), stay pinned in memory (they are
 * small and read on every start), are never evicted, and are checkpointed on their own policy:
 * only when they changed and the owner asks (after an install), never with an app's checkpoint.
 * Each entry starts on a line boundary, so an unchanged entry keeps identical lines (same
 * content hashes: a peer that has them is not sent them again).
 *
 * State blob (CBOR): { "ferrySystem": 1, "entries": { key: [firstLine, byteLength] } }.
 */
export interface SystemAreaOptions {
  store: Store;
  /** Line size comes from it. */
  profile: HwProfile;
  /** Store app id. Default `ferry.system`. */
  app?: string;
}

interface Entry {
  first: number;
  len: number;
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/;
const MAX_ENTRY = 16 * 2 ** 20;

export class SystemArea {
  readonly app: string;
  private readonly lineSize: number;
  private readonly lines = new Map<number, Uint8Array>();
  private readonly entries = new Map<string, Entry>();
  private readonly freed = new Set<number>();
  private next = 1;
  private dirty = false;

  constructor(private readonly store: Store, profile: HwProfile, app = 'ferry.system') {
    this.app = app;
    this.lineSize = profile.cacheLineBytes;
    if (!store.hasApp(app)) store.createApp(app, { lineSize: this.lineSize, maxLines: 2 ** 20 });
    const info = store.appInfo(app);
    if (info.lineSize !== this.lineSize) throw new FerryError('HEAP_BAD_IMAGE', `system area ${app} has ${info.lineSize}-byte lines, profile ${profile.name} ${this.lineSize}`, { field: 'profile', app });
    if (info.head === 0) return;
    const state = decodeValue(store.readState(app)) as { ferrySystem?: number; entries?: Record<string, [number, number]> };
    if (state?.ferrySystem !== 1 || typeof state.entries !== 'object') throw new FerryError('HEAP_CORRUPT', `system area ${app} has an invalid state blob`, { field: 'state', app });
    for (const [key, [first, len]] of Object.entries(state.entries)) this.entries.set(key, { first, len });
    const all = store.listLines(app).map((l) => l.line);
    const bytes = store.read(app, all);
    all.forEach((line, i) => {
      this.lines.set(line, bytes[i]!);
      this.next = Math.max(this.next, line + 1);
    });
  }

  /** Stores (or replaces) an entry. Unchanged content is a no-op. */
  put(key: string, bytes: Uint8Array): void {
    if (typeof key !== 'string' || !KEY.test(key)) throw new FerryError('BAD_OPTION', `key must match ${KEY}, got ${JSON.stringify(key)}`, { field: 'key' });
    if (!(bytes instanceof Uint8Array) || bytes.length > MAX_ENTRY) throw new FerryError('BAD_OPTION', `bytes of system entry ${key} must be a Uint8Array of at most ${MAX_ENTRY} bytes`, { field: 'bytes' });
    const old = this.get(key);
    if (old && Buffer.compare(Buffer.from(old), Buffer.from(bytes)) === 0) return;
    this.remove(key);
    const n = Math.max(1, Math.ceil(bytes.length / this.lineSize));
    const first = this.next;
    this.next += n;
    for (let i = 0; i < n; i++) {
      const line = new Uint8Array(this.lineSize);
      line.set(bytes.subarray(i * this.lineSize, (i + 1) * this.lineSize));
      this.lines.set(first + i, line);
      this.freed.delete(first + i);
    }
    this.entries.set(key, { first, len: bytes.length });
    this.dirty = true;
  }

  /** An entry's bytes (a copy: system data is read-only), or undefined. */
  get(key: string): Uint8Array | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const out = new Uint8Array(e.len);
    for (let i = 0, off = 0; off < e.len; i++, off += this.lineSize) {
      out.set(this.lines.get(e.first + i)!.subarray(0, Math.min(this.lineSize, e.len - off)), off);
    }
    return out;
  }

  remove(key: string): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    const n = Math.max(1, Math.ceil(e.len / this.lineSize));
    for (let i = 0; i < n; i++) {
      this.lines.delete(e.first + i);
      this.freed.add(e.first + i);
    }
    this.entries.delete(key);
    this.dirty = true;
    return true;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Commits the changes since the last commit as one store version; null when nothing changed. */
  checkpoint(): number | null {
    if (!this.dirty) return null;
    const tx = this.store.begin(this.app);
    try {
      const stored = new Map<number, string>();
      if (this.store.appInfo(this.app).head > 0) for (const l of this.store.listLines(this.app)) stored.set(l.line, Buffer.from(l.hash).toString('hex'));
      for (const line of this.freed) if (stored.has(line)) tx.delete(line);
      for (const [line, bytes] of this.lines) if (stored.get(line) !== Buffer.from(contentHash(bytes)).toString('hex')) tx.write(line, bytes);
      const entries: Record<string, [number, number]> = {};
      for (const [k, e] of this.entries) entries[k] = [e.first, e.len];
      tx.setState(encodeValue({ ferrySystem: 1, entries }));
      const v = tx.commit().version;
      this.freed.clear();
      this.dirty = false;
      return v;
    } finally {
      tx.abort();
    }
  }

  /** Pinned bytes in memory, and lines (for status and migration). */
  stats(): { entries: number; lines: number; residentBytes: number; dirty: boolean } {
    return { entries: this.entries.size, lines: this.lines.size, residentBytes: this.lines.size * this.lineSize, dirty: this.dirty };
  }
}

export function openSystemArea(options: SystemAreaOptions): SystemArea {
  if (options === null || typeof options !== 'object' || typeof options.store?.begin !== 'function') {
    throw new FerryError('BAD_OPTION', 'options.store must be an open Store', { field: 'options.store' });
  }
  if (typeof options.profile?.cacheLineBytes !== 'number') throw new FerryError('BAD_OPTION', 'options.profile must be a HwProfile', { field: 'options.profile' });
  return new SystemArea(options.store, options.profile, options.app);
}
