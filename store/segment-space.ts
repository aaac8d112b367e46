import { FerryError } from '../core/errors.js';
import type { BlockIo } from './block-io.js';
import type { LineRecord } from './map-codec.js';

/** A line record the store tracks in memory: where its bytes are and whether a kept version sees it. */
export interface TrackedRecord extends LineRecord {
  /** Owning app's id. */
  app: string;
  /** True while some kept version sees this record (its bytes must stay). */
  alive: boolean;
}

interface SegmentState {
  liveBytes: number;
  live: Set<TrackedRecord>;
}

export interface WearStats {
  /** Times each segment was erased (reused after being reclaimed): max and mean over segments. */
  erasesMax: number;
  erasesMean: number;
  /** Write calls that reached each segment: max and mean. */
  programsMax: number;
  programsMean: number;
}

/**
 * Room the segment file leaves free on its device: it never grows into the last
 * DEVICE_RESERVE_BYTES, so SQLite can still write the transactions that free space
 * (`removeVersion`, `removeApp`) and the commits that reuse it: one WAL cycle
 * (`wal_autocheckpoint` = 256 pages, about 1 MiB) and the checkpoint into heap.db.
 */
export const DEVICE_RESERVE_BYTES = 2 * 1024 * 1024;

/**
 * The segment file: the store's flash. Lines are appended into an open segment buffer and
 * written as one large write when the segment fills (or at commit); a segment is reused only
 * after every record in it is dead and the commit that killed the last one is durable.
 */
export class SegmentSpace {
  private readonly segs: SegmentState[] = [];
  private free: number[] = []; // kept sorted descending, so pop() yields the lowest index
  private quarantine: number[] = []; // freed by a commit that is not yet durable
  private openSeg = -1;
  private openOff = 0;
  private flushedOff = 0;
  private readonly buf: Uint8Array;
  /** Segments written by the transaction in progress (freed again if it aborts). */
  private readonly touched = new Set<number>();
  private erases: Uint32Array;
  private programs: Uint32Array;
  bytesWritten = 0;
  syncs = 0;

  constructor(
    private readonly io: BlockIo,
    private readonly fd: number,
    readonly segBytes: number,
    private readonly maxBytes: number,
    /**
     * True when every commit is durable once it returns (`full`): a reclaimed segment is
     * reusable at once. False (`batched`): it waits in quarantine until the next sync.
     */
    private readonly commitsDurable: boolean,
    wear: { erases: Uint32Array; programs: Uint32Array } | undefined,
    /** Bytes free on the segment file's device (undefined: unknown); checked before the file grows. */
    private readonly deviceFree: () => number | undefined = () => undefined,
  ) {
    this.buf = new Uint8Array(segBytes);
    const count = Math.ceil(io.size(fd) / segBytes);
    for (let i = 0; i < count; i++) this.segs.push({ liveBytes: 0, live: new Set() });
    this.erases = grow(wear?.erases, count);
    this.programs = grow(wear?.programs, count);
  }

  get segmentCount(): number {
    return this.segs.length;
  }

  /** Called once after open, when every live record has been retained: the rest is free. */
  initFree(): void {
    this.free = [];
    for (let i = this.segs.length - 1; i >= 0; i--) if (this.segs[i]!.liveBytes === 0) this.free.push(i);
  }

  retain(r: TrackedRecord): void {
    if (r.deleted) return;
    const s = this.segs[r.seg];
    if (!s) throw new FerryError('STORE_CORRUPT', `app ${r.app} line ${r.line} version ${r.version} points at segment ${r.seg}, past the end of the segment file`, { field: 'seg' });
    if (s.live.has(r)) return;
    s.live.add(r);
    s.liveBytes += r.len;
    r.alive = true;
  }

  /** Drops a record; its segment is reclaimed when nothing in it lives. */
  release(r: TrackedRecord): void {
    r.alive = false;
    if (r.deleted) return;
    const s = this.segs[r.seg];
    if (!s || !s.live.delete(r)) return;
    s.liveBytes -= r.len;
    if (s.liveBytes === 0 && r.seg !== this.openSeg && !this.touched.has(r.seg)) this.reclaim(r.seg);
  }

  /**
   * The one way a segment becomes reusable. Whatever emptied it (a commit, a removal, an abort)
   * may not be durable yet in `batched` mode, so there it waits for the next sync: a power loss
   * could bring back a version that still needs its bytes.
   */
  private reclaim(seg: number): void {
    if (this.commitsDurable) this.insertFree(seg);
    else this.quarantine.push(seg);
  }

  private insertFree(seg: number): void {
    // descending order; segments are few (file / segment size), a linear insert is fine
    let i = 0;
    while (i < this.free.length && this.free[i]! > seg) i++;
    this.free.splice(i, 0, seg);
  }

  /** Every commit so far is durable: quarantined segments may be reused. */
  releaseQuarantine(): void {
    for (const s of this.quarantine) this.insertFree(s);
    this.quarantine = [];
  }

  /** Appends a line's bytes to the open segment; returns where they went. */
  append(bytes: Uint8Array): { seg: number; off: number } {
    if (bytes.length > this.segBytes) throw new FerryError('STORE_BAD_INPUT', `a line of ${bytes.length} bytes does not fit a ${this.segBytes}-byte segment`, { field: 'bytes' });
    if (this.openSeg < 0 || this.openOff + bytes.length > this.segBytes) this.openNext();
    const at = { seg: this.openSeg, off: this.openOff };
    this.buf.set(bytes, this.openOff);
    this.openOff += bytes.length;
    if (this.openOff === this.segBytes) this.flushOpen();
    return at;
  }

  private openNext(): void {
    if (this.openSeg >= 0) {
      this.flushOpen();
      const prev = this.openSeg;
      this.openSeg = -1;
    }
    let seg = this.free.pop();
    if (seg === undefined) {
      seg = this.segs.length;
      const newSize = (seg + 1) * this.segBytes;
      if (this.maxBytes > 0 && newSize > this.maxBytes) {
        throw new FerryError('STORE_NO_SPACE', `the segment file would grow to ${newSize} bytes, over options.maxBytes = ${this.maxBytes}`, { field: 'maxBytes' });
      }
      const free = this.deviceFree();
      if (free !== undefined && free < this.segBytes + DEVICE_RESERVE_BYTES) {
        throw new FerryError('STORE_NO_SPACE', `the device is full: ${free} bytes free, and another ${this.segBytes}-byte segment would leave less than the ${DEVICE_RESERVE_BYTES} bytes kept for heap.db`, { field: 'segments', free });
      }
      this.segs.push({ liveBytes: 0, live: new Set() });
      this.erases = grow(this.erases, this.segs.length);
      this.programs = grow(this.programs, this.segs.length);
    } else {
      this.erases[seg]! += 1;
    }
    this.openSeg = seg;
    this.openOff = 0;
    this.flushedOff = 0;
    this.touched.add(seg);
  }

  /** Writes what the open segment holds beyond what is already on disk, as one write. */
  flushOpen(): void {
    if (this.openSeg < 0 || this.openOff === this.flushedOff) return;
    const start = this.flushedOff;
    const data = this.buf.subarray(start, this.openOff);
    try {
      this.io.pwrite(this.fd, data, this.openSeg * this.segBytes + start);
    } catch (e) {
      throw ioError('write', e);
    }
    this.flushedOff = this.openOff;
    this.bytesWritten += data.length;
    this.programs[this.openSeg]! += 1;
  }

  sync(): void {
    try {
      this.io.fdatasync(this.fd);
    } catch (e) {
      throw ioError('sync', e);
    }
    this.syncs++;
  }

  /** The transaction is over (committed or aborted): segments it wrote but nothing keeps are reclaimable. */
  endTransaction(): void {
    for (const seg of this.touched) {
      if (seg !== this.openSeg && this.segs[seg]!.liveBytes === 0) this.reclaim(seg);
    }
    this.touched.clear();
    if (this.openSeg >= 0) this.touched.add(this.openSeg);
  }

  /** After a failed write or sync the open segment's tail is suspect: start the next commit in a new segment. */
  abandonOpen(): void {
    if (this.openSeg < 0) return;
    const seg = this.openSeg;
    this.openSeg = -1;
    this.touched.delete(seg);
    if (this.segs[seg]!.liveBytes === 0) this.reclaim(seg);
  }

  read(r: LineRecord): Uint8Array {
    const out = new Uint8Array(r.len);
    if (r.seg === this.openSeg && r.off + r.len > this.flushedOff) {
      out.set(this.buf.subarray(r.off, r.off + r.len));
      return out;
    }
    let n: number;
    try {
      n = this.io.pread(this.fd, out, r.seg * this.segBytes + r.off);
    } catch (e) {
      throw ioError('read', e);
    }
    if (n !== r.len) throw new FerryError('STORE_CORRUPT', `segment ${r.seg} is truncated: read ${n} of ${r.len} bytes at offset ${r.off}`, { field: 'seg' });
    return out;
  }

  liveBytesOf(seg: number): number {
    return this.segs[seg]?.liveBytes ?? 0;
  }

  liveRecordsOf(seg: number): Iterable<TrackedRecord> {
    return this.segs[seg]?.live ?? [];
  }

  get openSegment(): number {
    return this.openSeg;
  }

  /** Segments that hold live data (the open one included). */
  usedSegments(): number {
    return this.segs.length - this.free.length - this.quarantine.length;
  }

  freeSegments(): number {
    return this.free.length;
  }

  totalLiveBytes(): number {
    let n = 0;
    for (const s of this.segs) n += s.liveBytes;
    return n;
  }

  /** Candidate segments for compaction, lowest live bytes first (the open one excluded). */
  victims(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.segs.length; i++) if (i !== this.openSeg && this.segs[i]!.liveBytes > 0) out.push(i);
    return out.sort((a, b) => this.segs[a]!.liveBytes - this.segs[b]!.liveBytes);
  }

  wear(): WearStats {
    const n = Math.max(1, this.segs.length);
    let eMax = 0, eSum = 0, pMax = 0, pSum = 0;
    for (let i = 0; i < this.segs.length; i++) {
      eMax = Math.max(eMax, this.erases[i]!); eSum += this.erases[i]!;
      pMax = Math.max(pMax, this.programs[i]!); pSum += this.programs[i]!;
    }
    return { erasesMax: eMax, erasesMean: eSum / n, programsMax: pMax, programsMean: pSum / n };
  }

  wearArrays(): { erases: Uint32Array; programs: Uint32Array } {
    return { erases: this.erases.slice(0, this.segs.length), programs: this.programs.slice(0, this.segs.length) };
  }
}

function grow(a: Uint32Array | undefined, n: number): Uint32Array {
  if (a && a.length >= n) return a;
  const out = new Uint32Array(Math.max(n, (a?.length ?? 0) * 2, 16));
  if (a) out.set(a);
  return out;
}

function ioError(op: string, e: unknown): FerryError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FerryError('STORE_NO_SPACE', `the segment file ${op} failed: the device is full (${code})`, { field: 'segments' }, { cause: e });
  }
  return new FerryError('STORE_IO', `the segment file ${op} failed: ${(e as Error)?.message ?? String(e)}`, { field: 'segments', op }, { cause: e });
}
