import * as crypto from 'node:crypto';

/**
 * Spent request ids: ids whose outcome the instance no longer keeps (they left the
 * `rememberReplies` window of full outcomes) but which a broker or a sender may still
 * bring again. Each is kept as a 64-bit digest for `replayHorizonMs` of mailbox time
 * after it was spent, so a replay is refused (APP_ALREADY_APPLIED), never run again.
 * See DESIGN.md, "Spent ids".
 *
 * Two copies: the heap's (`SpentRecord`, durable: written with the checkpoint that drops
 * the outcomes) and an in-memory hash table of the same digests, rebuilt from the heap at
 * every opening, so that the question every new request asks ("was this id spent?") costs
 * one hash and a probe, not a walk over the heap.
 */

/** Bytes of one digest: the first 8 bytes of SHA-256 of the id's UTF-8 form. */
export const DIGEST_BYTES = 8;
/** Most digests in one byte string of the heap (2 KiB: far below the smallest profile's object size limit). */
const CHUNK_DIGESTS = 256;
/** A segment is sealed (a new one started) past this many chunks ... */
const SEGMENT_CHUNKS = 64;
/** ... or this many digests ... */
const SEGMENT_DIGESTS = 4096;
/** ... or once it spans more than horizon / SEGMENT_SPAN of mailbox time, so an id outlives its horizon by at most that. */
const SEGMENT_SPAN = 8;
/** The clock is written to the heap only when it moved this much (ms): a lost part only keeps ids longer. */
const CLOCK_WRITE_MS = 1000;

/** The heap's copy, in the runtime record. Every field is written by this module only. */
export interface SpentRecord {
  /** Mailbox time (ms the instance's mailbox session was connected, summed), as of the last commit. */
  clock: number;
  /** Oldest first; a segment goes whole once `clock − at > horizon`. */
  segments: SpentSegment[];
}

export interface SpentSegment {
  /** Mailbox time of its first chunk. */
  from: number;
  /** Mailbox time of its newest chunk. */
  at: number;
  /** Digests in it. */
  n: number;
  /** Byte strings of DIGEST_BYTES-byte digests, CHUNK_DIGESTS at most each. */
  chunks: Uint8Array[];
}

const hashFn: ((alg: string, data: string, enc: 'buffer') => Buffer) | undefined = typeof (crypto as { hash?: unknown }).hash === 'function' ? (crypto.hash as (alg: string, data: string, enc: 'buffer') => Buffer) : undefined;

/** The digest of `id` as two unsigned 32-bit halves, written into `out`. */
export function digestOf(id: string, out: Uint32Array): void {
  const b = hashFn ? hashFn('sha256', id, 'buffer') : crypto.createHash('sha256').update(id).digest();
  out[0] = b.readUInt32BE(0);
  out[1] = b.readUInt32BE(4);
}

/**
 * An open-addressing (linear probing) multiset of 64-bit digests in two Uint32Arrays:
 * 8 bytes a slot, at most 70 % full, so 11 to 23 bytes of memory per digest. A digest
 * may be in it more than once (one per copy in the heap); delete removes one copy.
 * The all-zero digest is stored as 0:1, so 0:0 can mark an empty slot.
 */
export class DigestTable {
  private hi = new Uint32Array(16);
  private lo = new Uint32Array(16);
  private mask = 15;
  size = 0;

  has(h: number, l: number): boolean {
    if (this.size === 0) return false;
    if (h === 0 && l === 0) l = 1;
    const { hi, lo, mask } = this;
    for (let i = l & mask; ; i = (i + 1) & mask) {
      const li = lo[i]!;
      const hh = hi[i]!;
      if (li === 0 && hh === 0) return false;
      if (li === l && hh === h) return true;
    }
  }

  add(h: number, l: number): void {
    if (h === 0 && l === 0) l = 1;
    if ((this.size + 1) * 10 > (this.mask + 1) * 7) this.resize((this.mask + 1) * 2);
    this.put(h, l);
    this.size++;
  }

  /** Removes one copy of the digest; false if there was none. */
  delete(h: number, l: number): boolean {
    if (h === 0 && l === 0) l = 1;
    const { hi, lo, mask } = this;
    let i = l & mask;
    for (; ; i = (i + 1) & mask) {
      if (lo[i] === 0 && hi[i] === 0) return false;
      if (lo[i] === l && hi[i] === h) break;
    }
    // Backward shift: move later entries of the run into the hole when their home allows it.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (lo[j] === 0 && hi[j] === 0) break;
      const home = lo[j]! & mask;
      // The entry at j may move to i if its home is not in the cyclic range (i, j].
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!between) {
        hi[i] = hi[j]!;
        lo[i] = lo[j]!;
        i = j;
      }
    }
    hi[i] = 0;
    lo[i] = 0;
    this.size--;
    if (this.size * 8 < this.mask + 1 && this.mask > 15) this.resize((this.mask + 1) / 2);
    return true;
  }

  clear(): void {
    this.hi = new Uint32Array(16);
    this.lo = new Uint32Array(16);
    this.mask = 15;
    this.size = 0;
  }

  /** Bytes of memory the table holds. */
  get bytes(): number {
    return (this.mask + 1) * 8;
  }

  private put(h: number, l: number): void {
    const { hi, lo, mask } = this;
    let i = l & mask;
    while (lo[i] !== 0 || hi[i] !== 0) i = (i + 1) & mask;
    hi[i] = h;
    lo[i] = l;
  }

  private resize(slots: number): void {
    const { hi, lo } = this;
    this.hi = new Uint32Array(slots);
    this.lo = new Uint32Array(slots);
    this.mask = slots - 1;
    for (let i = 0; i < hi.length; i++) if (lo[i] !== 0 || hi[i] !== 0) this.put(hi[i]!, lo[i]!);
  }
}

/**
 * The spent ids of one opening of an instance's heap: the in-memory table, and the
 * digests spent since the last commit, written to the heap by `flush` (just before the
 * checkpoint that also drops their outcomes).
 */
export class SpentIds {
  private readonly table = new DigestTable();
  /** Digests spent since the last flush, as hi, lo pairs. */
  private pending: number[] = [];
  private readonly d = new Uint32Array(2);

  constructor(private readonly horizonMs: number) {}

  /** Digests remembered (copies counted). */
  get size(): number {
    return this.table.size;
  }

  /** Bytes of memory of the in-memory table. */
  get memoryBytes(): number {
    return this.table.bytes;
  }

  /** True when something must be written to the heap at the next commit. */
  get dirty(): boolean {
    return this.pending.length > 0;
  }

  /** Rebuilds the table from the heap's record, dropping what is not committed (every opening of the heap). */
  load(rec: SpentRecord): void {
    this.table.clear();
    this.pending = [];
    for (const seg of rec.segments) {
      for (const c of seg.chunks) {
        for (let i = 0; i + DIGEST_BYTES <= c.length; i += DIGEST_BYTES) this.table.add(u32(c, i), u32(c, i + 4));
      }
    }
  }

  /** True if `id` was spent within the horizon. One SHA-256 of the id when anything is spent, else nothing. */
  has(id: string): boolean {
    if (this.table.size === 0) return false;
    digestOf(id, this.d);
    return this.table.has(this.d[0]!, this.d[1]!);
  }

  /** `id`'s outcome is dropped now (or it was replayed again): remembered from now on, in the heap from the next flush. */
  add(id: string): void {
    digestOf(id, this.d);
    this.table.add(this.d[0]!, this.d[1]!);
    this.pending.push(this.d[0]!, this.d[1]!);
  }

  /**
   * Before a checkpoint: writes the pending digests into the heap's record, stamped with
   * mailbox time `clock`, drops the segments past the horizon, and records the clock.
   */
  flush(rec: SpentRecord, clock: number): void {
    const segs = rec.segments;
    // Age first: a segment whose newest digest is older than the horizon goes whole.
    while (segs.length > 0) {
      const s = segs[0]!;
      if (clock - s.at <= this.horizonMs) break;
      for (const c of s.chunks) {
        for (let i = 0; i + DIGEST_BYTES <= c.length; i += DIGEST_BYTES) this.table.delete(u32(c, i), u32(c, i + 4));
      }
      segs.shift();
    }
    const p = this.pending;
    for (let k = 0; k < p.length; k += 2 * CHUNK_DIGESTS) {
      const n = Math.min(CHUNK_DIGESTS, (p.length - k) / 2);
      const bytes = new Uint8Array(n * DIGEST_BYTES);
      const view = new DataView(bytes.buffer);
      for (let i = 0; i < n; i++) {
        view.setUint32(i * DIGEST_BYTES, p[k + 2 * i]!);
        view.setUint32(i * DIGEST_BYTES + 4, p[k + 2 * i + 1]!);
      }
      let seg = segs.length > 0 ? segs[segs.length - 1]! : undefined;
      if (!seg || seg.chunks.length >= SEGMENT_CHUNKS || seg.n + n > SEGMENT_DIGESTS || clock - seg.from > this.horizonMs / SEGMENT_SPAN) {
        segs.push({ from: clock, at: clock, n: 0, chunks: [] });
        seg = segs[segs.length - 1]!;
      }
      seg.chunks.push(bytes);
      seg.n += n;
      seg.at = clock;
    }
    this.pending = [];
    if (clock - rec.clock >= CLOCK_WRITE_MS) rec.clock = clock;
  }
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!;
}
