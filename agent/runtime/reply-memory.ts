import { deserialize, serialize } from 'node:v8';
import { isFerryError } from '../../core/errors.js';
import type { CallOutcome } from './app-instance.js';
import type { SpentIds } from './spent-ids.js';

/**
 * Request ids per map of remembered replies. One map of every id would reach the heap's
 * object size limit (64 KiB: about 2,000 ids) and then refuse every call; a small map is
 * also all a commit rewrites of them.
 */
const REPLY_BUCKET = 64;

/** Memory for the outcomes of read-only calls kept for duplicates, bytes (serialized). */
const READ_REPLY_BYTES = 1024 * 1024;

/** The runtime record's reply maps (heap objects: writes to them are part of the call's checkpoint). */
export interface ReplyMaps {
  replies: Map<string, CallOutcome>;
  olderReplies?: Array<Map<string, CallOutcome>>;
}

/**
 * Which request ids have an outcome kept (DESIGN.md, "Exactly once"): the outcomes of writing
 * calls and failures in the heap's reply maps, at least `window` of them, their ids spent when
 * they go; the outcomes of read-only calls in memory only.
 */
export class ReplyMemory {
  /**
   * Request ids that may be in the heap's reply maps: every remembered id is in it
   * (a miss here is a miss there), forgotten ones leave it only when it is rebuilt.
   */
  private knownIds = new Set<string>();
  /** Serialized outcomes of read-only calls by request id, newest last (at most `window` of them and READ_REPLY_BYTES in all). */
  private readonly reads = new Map<string, Buffer>();
  private readBytes = 0;

  constructor(
    private readonly window: number,
    private readonly spent: SpentIds,
  ) {}

  /** Rebuilds the index of remembered ids from the heap's maps (at every opening of the heap). */
  index(rec: ReplyMaps): void {
    const ids = new Set<string>();
    for (const k of rec.replies.keys()) ids.add(k);
    for (const b of rec.olderReplies ?? []) for (const k of b.keys()) ids.add(k);
    this.knownIds = ids;
  }

  /** The recorded outcome of `requestId` in the heap, if remembered. */
  recalled(rec: ReplyMaps, requestId: string): CallOutcome | undefined {
    // Almost every id is new: answer that from memory, not from a walk over the heap's maps.
    if (!this.knownIds.has(requestId)) return undefined;
    const hit = rec.replies.get(requestId);
    const older = rec.olderReplies;
    if (hit !== undefined || older === undefined) return hit;
    for (let i = older.length - 1; i >= 0; i--) {
      const h = older[i]!.get(requestId);
      if (h !== undefined) return h;
    }
    return undefined;
  }

  /** The answer a read-only call with this id gave in this run, if kept (a fresh copy). */
  readAnswer(requestId: string): CallOutcome | undefined {
    const b = this.reads.get(requestId);
    return b === undefined ? undefined : (deserialize(b) as CallOutcome);
  }

  rememberRead(requestId: string, outcome: CallOutcome): void {
    const bytes = serialize(outcome);
    // A result too large to keep is not kept: a duplicate of it runs again (it changes nothing).
    if (bytes.length > READ_REPLY_BYTES / 4) return;
    this.reads.set(requestId, bytes);
    this.readBytes += bytes.length;
    while (this.reads.size > this.window || this.readBytes > READ_REPLY_BYTES) {
      const [id, oldest] = this.reads.entries().next().value!;
      this.reads.delete(id);
      this.readBytes -= oldest.length;
    }
  }

  /** Records an outcome in the heap, inside the call's transaction; ids past the window become spent. */
  remember(rec: ReplyMaps, requestId: string | undefined, outcome: CallOutcome): void {
    if (requestId === undefined) return;
    // Into the index before the heap, and never out of it but by a rebuild: it stays a superset.
    this.knownIds.add(requestId);
    if (this.knownIds.size > 2 * this.window + REPLY_BUCKET) this.index(rec);
    if (rec.replies.size >= REPLY_BUCKET && this.window > REPLY_BUCKET) this.newBucket(rec);
    try {
      rec.replies.set(requestId, outcome);
    } catch (e) {
      // Full by the heap's object size limit before REPLY_BUCKET ids (a small profile, long ids).
      if (!isFerryError(e, 'HEAP_VALUE_TOO_LARGE') || rec.replies.size === 0) throw e;
      this.newBucket(rec);
      rec.replies.set(requestId, outcome);
    }
    const replies = rec.replies;
    while (replies.size > this.window) {
      const oldest = replies.keys().next().value;
      if (oldest === undefined) break;
      replies.delete(oldest);
      this.spent.add(oldest);
    }
  }

  /** Starts a new `replies` map; the oldest maps go while the others still hold `window` ids. */
  private newBucket(rec: ReplyMaps): void {
    rec.olderReplies ??= [];
    const older = rec.olderReplies;
    older.push(rec.replies);
    rec.replies = new Map();
    let kept = 0;
    for (const b of older) kept += b.size;
    while (older.length > 0 && kept - older[0]!.size >= this.window) {
      const gone = older[0]!;
      kept -= gone.size;
      for (const id of gone.keys()) this.spent.add(id);
      older.shift();
    }
  }
}
