import type { TrackedRecord } from './segment-space.js';

/** What the index calls when a record dies. */
export interface Releaser {
  release(r: TrackedRecord): void;
}

/** A version row as the index knows it. */
export interface VersionMeta {
  version: number;
  /** 1: the row holds the full map (a base); 0: only the lines that checkpoint changed. */
  kind: 0 | 1;
  createdAt: number;
  /** Lines visible at this version. */
  lineCount: number;
  stateBytes: number;
  /** Removed by the user (`removeVersion`): kept only as a link in the delta chain. */
  removed: boolean;
  /** Bytes of the row's map, for the rebase rule. */
  mapBytes: number;
  /** Lines the row's map names. */
  lines: number[];
}

/**
 * One app's heap segment in memory: every line's records by version, the version rows, and
 * which versions are kept. Liveness rule (store/DESIGN.md, "Reclaiming space"): a record is alive
 * while some kept version k has record.version ≤ k < (the version of the line's next record).
 */
export class AppIndex {
  readonly history = new Map<number, TrackedRecord[]>();
  readonly rows: VersionMeta[] = [];
  private kept: number[] = [];

  constructor(
    readonly app: string,
    /** The app's number: its version rows are keyed num·2^32 + version. */
    readonly num: number,
    readonly lineSize: number,
    readonly maxLines: number,
    private readonly keepVersions: number,
  ) {}

  get head(): number {
    return this.rows.length ? this.rows[this.rows.length - 1]!.version : 0;
  }

  keptVersions(): readonly number[] {
    return this.kept;
  }

  isKept(version: number): boolean {
    return binarySearch(this.kept, version) >= 0;
  }

  row(version: number): VersionMeta | undefined {
    let lo = 0, hi = this.rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.rows[mid]!.version;
      if (v === version) return this.rows[mid];
      if (v < version) lo = mid + 1; else hi = mid - 1;
    }
    return undefined;
  }

  /**
   * Recomputes the kept set: the versions numbered in (head − keepVersions, head] that the user
   * has not removed. Deterministic from the rows, so reopening finds the same set; removing a
   * version leaves a gap instead of recalling an older one whose lines may be reclaimed already.
   * Returns the versions that left the set.
   */
  recomputeKept(): number[] {
    const before = this.kept;
    this.kept = this.keptWith(this.head);
    return before.filter((v) => binarySearch(this.kept, v) < 0);
  }

  /** Versions that will be kept once `version` is committed. */
  keptAfterCommit(version: number): number[] {
    return [...this.keptWith(version - 1).filter((v) => v > version - this.keepVersions), version];
  }

  private keptWith(head: number): number[] {
    const floor = head - this.keepVersions;
    const out: number[] = [];
    for (const r of this.rows) if (r.version > floor && r.version <= head && !r.removed) out.push(r.version);
    return out;
  }

  /** The record a version sees for a line (a tombstone when the line was deleted), or undefined. */
  recordAt(line: number, version: number): TrackedRecord | undefined {
    const h = this.history.get(line);
    if (!h) return undefined;
    let lo = 0, hi = h.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (h[mid]!.version <= version) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found < 0 ? undefined : h[found];
  }

  /** Adds a record to its line's history (records arrive in version order, duplicates ignored). */
  add(r: TrackedRecord): boolean {
    let h = this.history.get(r.line);
    if (!h) this.history.set(r.line, (h = []));
    const last = h[h.length - 1];
    if (last && last.version >= r.version) {
      if (h.some((x) => x.version === r.version)) return false;
      h.push(r);
      h.sort((a, b) => a.version - b.version);
      return true;
    }
    h.push(r);
    return true;
  }

  /** Whether a kept version sees this record. */
  shouldLive(r: TrackedRecord): boolean {
    const h = this.history.get(r.line)!;
    const i = h.indexOf(r);
    const until = i >= 0 && i + 1 < h.length ? h[i + 1]!.version : Infinity;
    const k = lowerBound(this.kept, r.version);
    return k < this.kept.length && this.kept[k]! < until;
  }

  /**
   * After versions left the kept set: releases the records only they saw. For a dropped version d,
   * such a record was rewritten in (d, next kept], so only lines named by those rows are examined.
   */
  releaseDropped(dropped: readonly number[], space: Releaser): void {
    const examined = new Set<number>();
    for (const d of dropped) {
      const nextKept = this.kept[lowerBound(this.kept, d + 1)] ?? this.head;
      for (const row of this.rows) {
        if (row.version <= d) continue;
        if (row.version > nextKept) break;
        for (const line of row.lines) {
          examined.add(line);
          const r = this.recordAt(line, d);
          if (r && r.alive && !this.shouldLive(r)) space.release(r);
        }
      }
    }
    this.prune(examined);
  }

  /** Forgets records older than what the oldest kept version sees: no version can reach them. Only the given lines changed. */
  private prune(lines: Iterable<number>): void {
    const oldest = this.kept[0];
    if (oldest === undefined) return;
    for (const line of lines) {
      const h = this.history.get(line);
      if (!h) continue;
      let first = 0;
      while (first + 1 < h.length && h[first + 1]!.version <= oldest) first++;
      if (first > 0 && h.slice(0, first).every((r) => !r.alive)) h.splice(0, first);
      if (h.length === 1 && h[0]!.deleted && h[0]!.version <= oldest) this.history.delete(line);
    }
  }

  /** Visible (non-deleted) records at a version, in line order. */
  visibleAt(version: number): TrackedRecord[] {
    const out: TrackedRecord[] = [];
    for (const line of [...this.history.keys()].sort((a, b) => a - b)) {
      const r = this.recordAt(line, version);
      if (r && !r.deleted) out.push(r);
    }
    return out;
  }

  /** Lowest version whose row must stay so every kept version can be rebuilt: the last base at or below the oldest kept. */
  oldestNeededRow(oldestKept = this.kept[0] ?? this.head, extra?: VersionMeta): number {
    let need = this.rows[0]?.version ?? extra?.version ?? 0;
    for (const row of extra ? [...this.rows, extra] : this.rows) {
      if (row.version > oldestKept) break;
      if (row.kind === 1) need = row.version;
    }
    return need;
  }

  /** Drops rows below `version` from memory (their database rows are gone). */
  dropRowsBelow(version: number): void {
    let n = 0;
    while (n < this.rows.length && this.rows[n]!.version < version) n++;
    if (n > 0) this.rows.splice(0, n);
  }

  /** Map bytes written since (and excluding) the last base row: the rebase rule's input. */
  deltaBytesSinceBase(): number {
    let n = 0;
    for (let i = this.rows.length - 1; i >= 0 && this.rows[i]!.kind === 0; i--) n += this.rows[i]!.mapBytes;
    return n;
  }
}

export function lowerBound(a: readonly number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function binarySearch(a: readonly number[], x: number): number {
  const i = lowerBound(a, x);
  return i < a.length && a[i] === x ? i : -1;
}
