import { Decoder, Encoder } from 'cbor-x';
import { FerryError } from '../../core/errors.js';
import type { Store } from '../../store/index.js';

/**
 * Where a persistent space keeps its entries: the device's store (store/), as
 * the app `space.<name>`. Every change (a write, a take, an entry's lease
 * renewed or ended) is one committed store version, so it is atomic and, in
 * the store's default `full` durability, durable when the call returns.
 *
 * Layout (DESIGN.md, "Spaces"):
 * - lines of LINE_BYTES; entry slot `s` owns lines `s·linesPerSlot ..`, and an
 *   entry's CBOR bytes fill the first ceil(len / LINE_BYTES) of them (zero-padded);
 * - the version's state blob is the directory, one CBOR map:
 *   `{ v: 1, linesPerSlot, seq, entries: [[id, seq, slot, len, leaseId, holder, expiresAt], ...] }`.
 * The directory is rewritten by every commit: O(entries) bytes, ~90 per entry.
 */
export const LINE_BYTES = 256;
const MAX_LINES = 2 ** 31;
const DIR_VERSION = 1;

export interface PersistedEntry {
  id: string;
  seq: number;
  slot: number;
  len: number;
  leaseId: string;
  holder: string;
  expiresAt: number;
}

type Row = [string, number, number, number, string, string, number];

const enc = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false, pack: false, structuredClone: false, bundleStrings: false });
const dec = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

/** The store app id of space `name`; refuses names the store cannot take as an app id. */
export function spaceAppId(name: string): string {
  const app = `space.${name}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(app)) {
    throw new FerryError('BAD_OPTION', `options.name ${JSON.stringify(name)} cannot name a persistent space: the store app id space.<name> allows letters, digits and . _ : - (at most 122 characters)`, { field: 'options.name' });
  }
  return app;
}

export class SpaceStore {
  readonly app: string;
  readonly linesPerSlot: number;
  private seq = 0;
  private readonly dir = new Map<string, PersistedEntry>();
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;

  constructor(
    private readonly store: Store,
    name: string,
    maxEntryBytes: number,
    private readonly maxEntries: number,
  ) {
    this.app = spaceAppId(name);
    store.createApp(this.app, { lineSize: LINE_BYTES, maxLines: MAX_LINES });
    let linesPerSlot = Math.ceil(maxEntryBytes / LINE_BYTES);
    if (store.headVersion(this.app) > 0) {
      const d = dec.decode(store.readState(this.app)) as { v?: unknown; linesPerSlot?: unknown; seq?: unknown; entries?: unknown };
      if (d.v !== DIR_VERSION || typeof d.linesPerSlot !== 'number' || typeof d.seq !== 'number' || !Array.isArray(d.entries)) {
        throw new FerryError('STORE_CORRUPT', `the directory of store app ${this.app} is not a space directory of version ${DIR_VERSION}`, { field: 'state', app: this.app });
      }
      // The slot size is fixed when the space is created; a later, larger maxEntryBytes is capped by it.
      linesPerSlot = d.linesPerSlot;
      this.seq = d.seq;
      for (const r of d.entries as Row[]) {
        const [id, seq, slot, len, leaseId, holder, expiresAt] = r;
        this.dir.set(id, { id, seq, slot, len, leaseId, holder, expiresAt });
      }
    }
    this.linesPerSlot = linesPerSlot;
    if (maxEntries * linesPerSlot > MAX_LINES) {
      throw new FerryError('BAD_OPTION', `options.maxEntries × ceil(maxEntryBytes / ${LINE_BYTES}) must be at most 2^31 lines, got ${maxEntries} × ${linesPerSlot}`, { field: 'options.maxEntries' });
    }
    const used = new Set([...this.dir.values()].map((e) => e.slot));
    this.nextSlot = used.size === 0 ? 0 : Math.max(...used) + 1;
    for (let s = this.nextSlot - 1; s >= 0; s--) if (!used.has(s)) this.freeSlots.push(s);
  }

  /** Largest entry this space's slots hold, bytes. */
  get slotBytes(): number {
    return this.linesPerSlot * LINE_BYTES;
  }

  /** Entries in seq order with their CBOR bytes (read at open). */
  *load(): Generator<{ meta: PersistedEntry; bytes: Uint8Array }> {
    for (const meta of [...this.dir.values()].sort((a, b) => a.seq - b.seq)) {
      const n = Math.ceil(meta.len / LINE_BYTES);
      const lines = Array.from({ length: n }, (_, i) => meta.slot * this.linesPerSlot + i);
      const parts = this.store.read(this.app, lines);
      const bytes = new Uint8Array(n * LINE_BYTES);
      parts.forEach((p, i) => {
        if (!p) throw new FerryError('STORE_CORRUPT', `store app ${this.app} lacks line ${lines[i]} of entry ${meta.id}`, { field: 'line', app: this.app });
        bytes.set(p, i * LINE_BYTES);
      });
      yield { meta, bytes: bytes.subarray(0, meta.len) };
    }
  }

  get highestSeq(): number {
    return this.seq;
  }

  /** Commits a new entry (its lines and the directory) as one version. */
  add(e: Omit<PersistedEntry, 'slot' | 'len'>, bytes: Uint8Array): void {
    if (bytes.length > this.slotBytes) {
      throw new FerryError('MESSAGE_TOO_LARGE', `entry is ${bytes.length} bytes; this persistent space's slots hold ${this.slotBytes} (its maxEntryBytes when created)`, { field: 'body.entry', limit: this.slotBytes });
    }
    if (this.dir.size >= this.maxEntries) throw new FerryError('LEASE_DENIED', `the space holds its maximum of ${this.maxEntries} entries`, { field: 'body.entry' });
    const slot = this.freeSlots.pop() ?? this.nextSlot++;
    const meta: PersistedEntry = { ...e, slot, len: bytes.length };
    const tx = this.store.begin(this.app);
    try {
      for (let i = 0; i * LINE_BYTES < bytes.length; i++) {
        const line = new Uint8Array(LINE_BYTES);
        line.set(bytes.subarray(i * LINE_BYTES, (i + 1) * LINE_BYTES));
        tx.write(slot * this.linesPerSlot + i, line);
      }
      this.dir.set(e.id, meta);
      this.seq = Math.max(this.seq, e.seq);
      tx.setState(this.directory());
      tx.commit();
    } catch (err) {
      tx.abort();
      this.dir.delete(e.id);
      this.releaseSlot(slot);
      throw err;
    }
  }

  /** Commits the removal of entries (their lines and directory rows) as one version. */
  remove(ids: readonly string[]): void {
    const gone = ids.map((id) => this.dir.get(id)).filter((m): m is PersistedEntry => m !== undefined);
    if (gone.length === 0) return;
    const tx = this.store.begin(this.app);
    try {
      for (const m of gone) {
        for (let i = 0; i * LINE_BYTES < m.len; i++) tx.delete(m.slot * this.linesPerSlot + i);
        this.dir.delete(m.id);
      }
      tx.setState(this.directory());
      tx.commit();
    } catch (err) {
      tx.abort();
      for (const m of gone) this.dir.set(m.id, m);
      throw err;
    }
    for (const m of gone) this.releaseSlot(m.slot);
  }

  /** Commits an entry's new lease term or holder (directory only). */
  update(id: string, expiresAt: number, holder: string): void {
    const m = this.dir.get(id);
    if (!m) return;
    const before = { expiresAt: m.expiresAt, holder: m.holder };
    m.expiresAt = expiresAt;
    m.holder = holder;
    const tx = this.store.begin(this.app);
    try {
      tx.setState(this.directory());
      tx.commit();
    } catch (err) {
      tx.abort();
      Object.assign(m, before);
      throw err;
    }
  }

  private releaseSlot(slot: number): void {
    if (slot === this.nextSlot - 1) this.nextSlot--;
    else this.freeSlots.push(slot);
  }

  private directory(): Uint8Array {
    const entries: Row[] = [...this.dir.values()].map((m) => [m.id, m.seq, m.slot, m.len, m.leaseId, m.holder, m.expiresAt]);
    return enc.encode({ v: DIR_VERSION, linesPerSlot: this.linesPerSlot, seq: this.seq, entries });
  }
}
