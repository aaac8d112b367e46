import { FerryError } from '../../core/errors.js';
import type { LogLine } from './agent-options.js';

/**
 * Bounds of the agent's in-memory log ring (DESIGN.md, "The log ring"). The ring holds at most
 * `maxLines` lines and at most `maxBytes` of their JSON text (UTF-8); the oldest lines leave
 * first. A line whose JSON text is over `maxLineBytes` is kept shortened (see `shorten`), so
 * one huge line cannot empty the ring.
 */
export interface LogRingLimits {
  maxLines: number;
  maxBytes: number;
  maxLineBytes: number;
}

/** 2,000 lines, 1 MiB of text, 16 KiB a line: about 1.2 MiB of memory with the per-line overhead. */
export const LOG_RING_LIMITS: LogRingLimits = { maxLines: 2000, maxBytes: 1024 * 1024, maxLineBytes: 16 * 1024 };

/** The least `maxLineBytes`: a shortened line (time, level, event, instance) always fits. */
const MIN_LINE_BYTES = 512;

/** The most lines one read returns. */
export const MAX_LOG_READ = 5000;

/** One line as `logs` answers it: its sequence number, then the line's own fields. */
export type SeqLine = { seq: number } & LogLine;

/** What one read answers. */
export interface LogPage {
  /** Oldest first. */
  lines: SeqLine[];
  /** The sequence number to read after next time (the newest line looked at). */
  next: number;
  /**
   * Lines after `after` that left the ring before this read (of any instance: the ring keeps no
   * count per instance); 0 without `after`.
   */
  skipped: number;
}

export interface LogQuery {
  /** Only lines about this instance (`instance` field, or listed in `instances`). */
  instance?: string;
  /** Lines with a greater sequence number, oldest first; without it, the newest `limit` lines. */
  after?: number;
  /** At most this many lines (default 100). */
  limit?: number;
}

interface Entry {
  seq: number;
  text: string;
  bytes: number;
  /** Instances the line is about. */
  about: readonly string[];
}

/**
 * The agent's recent log lines, in memory only: a bounded ring (count and bytes) filled by the
 * Logger with every line it writes, read by the control channel's `logs` command by sequence
 * number. Each line is kept as its JSON text, taken when it is logged (an app's logged data may be
 * a heap object that changes or goes away after). Durable logs are the log sink's business
 * (journald under systemd); the ring never touches the disk.
 */
export class LogRing {
  private entries: Entry[] = [];
  /** Index of the oldest held entry in `entries` (dropped ones before it are compacted away lazily). */
  private head = 0;
  private heldBytes = 0;
  private nextSeq = 1;
  private dropped = 0;
  private readonly waiters = new Set<{ instance: string | undefined; wake: () => void }>();

  constructor(readonly limits: LogRingLimits = LOG_RING_LIMITS) {
    const { maxLines, maxBytes, maxLineBytes } = limits;
    if (!(Number.isInteger(maxLines) && maxLines >= 1 && Number.isInteger(maxLineBytes) && maxLineBytes >= MIN_LINE_BYTES && Number.isInteger(maxBytes) && maxBytes >= maxLineBytes)) {
      throw new FerryError('BAD_OPTION', `log ring limits must have maxLines >= 1 and ${MIN_LINE_BYTES} <= maxLineBytes <= maxBytes, got ${JSON.stringify(limits)}`, { field: 'limits' });
    }
  }

  /** Lines held now. */
  get size(): number {
    return this.entries.length - this.head;
  }

  /** Bytes of JSON text held now. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Sequence number of the newest line (0 before any). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Lines that left the ring since it was made. */
  get droppedLines(): number {
    return this.dropped;
  }

  add(line: LogLine): void {
    let text: string;
    try {
      text = JSON.stringify(line);
    } catch (e) {
      // A cyclic or BigInt field: keep that it happened.
      text = JSON.stringify({ ts: line.ts, level: line.level, event: line.event, ...(typeof line.instance === 'string' ? { instance: line.instance } : {}), unserialisable: String(e) });
    }
    let bytes = Buffer.byteLength(text);
    if (bytes > this.limits.maxLineBytes) {
      text = shorten(line, bytes, this.limits.maxLineBytes);
      bytes = Buffer.byteLength(text);
    }
    const about = aboutOf(line);
    const seq = this.nextSeq++;
    this.entries.push({ seq, text, bytes, about });
    this.heldBytes += bytes;
    // A line is at most maxLineBytes <= maxBytes, so it always fits once older ones are gone.
    while (this.size > this.limits.maxLines || this.heldBytes > this.limits.maxBytes) {
      this.heldBytes -= this.entries[this.head]!.bytes;
      this.entries[this.head] = undefined as unknown as Entry;
      this.head++;
      this.dropped++;
    }
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    for (const w of this.waiters) if (w.instance === undefined || about.includes(w.instance)) w.wake();
  }

  read(q: LogQuery = {}): LogPage {
    const limit = Math.min(q.limit ?? 100, MAX_LOG_READ);
    const match = (e: Entry) => q.instance === undefined || e.about.includes(q.instance);
    const out: Entry[] = [];
    if (q.after === undefined) {
      for (let i = this.entries.length - 1; i >= this.head && out.length < limit; i--) if (match(this.entries[i]!)) out.push(this.entries[i]!);
      out.reverse();
      return { lines: out.map(parse), next: this.lastSeq, skipped: 0 };
    }
    // A sequence number from another run of the agent (higher than any here) reads from now.
    const after = Math.min(q.after, this.lastSeq);
    const firstSeq = this.size > 0 ? this.entries[this.head]!.seq : this.nextSeq;
    const skipped = Math.max(0, firstSeq - after - 1);
    let next = this.lastSeq;
    // Sequence numbers are consecutive: the first entry after `after` is found by offset.
    for (let i = this.head + Math.max(0, after + 1 - firstSeq); i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (!match(e)) continue;
      if (out.length === limit) {
        next = e.seq - 1; // the next read starts at this line
        break;
      }
      out.push(e);
    }
    return { lines: out.map(parse), next, skipped };
  }

  /**
   * Resolves when a line about `instance` (any line, without it) is added, or after `ms`
   * (its timer does not keep the process alive).
   */
  wait(instance: string | undefined, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const w = {
        instance,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        },
      };
      const timer = setTimeout(w.wake, ms);
      timer.unref();
      this.waiters.add(w);
    });
  }
}

/** The instances a line is about: its `instance` field, or those its `instances` lists (app.removed). */
function aboutOf(line: LogLine): readonly string[] {
  if (typeof line.instance === 'string') return [line.instance];
  if (Array.isArray(line.instances)) return line.instances.filter((i): i is string => typeof i === 'string');
  return [];
}

/** A line too long for the ring: its time, level, event and instance, the start of its message, and its size. */
function shorten(line: LogLine, bytes: number, max: number): string {
  const keep: Record<string, unknown> = { ts: String(line.ts).slice(0, 40), level: line.level, event: String(line.event).slice(0, 100) };
  if (typeof line.instance === 'string') keep.instance = line.instance.slice(0, 100);
  keep.truncated = true;
  keep.bytes = bytes;
  const bare = JSON.stringify(keep);
  if (typeof line.message !== 'string') return bare;
  // As much of the message as fits (a character is at most 6 bytes of JSON text: \\uXXXX).
  const room = Math.floor((max - Buffer.byteLength(bare) - 20) / 6);
  return room > 0 ? JSON.stringify({ ...keep, message: line.message.slice(0, room) }) : bare;
}

function parse(e: Entry): SeqLine {
  return Object.assign({ seq: e.seq }, JSON.parse(e.text) as LogLine, { seq: e.seq });
}
