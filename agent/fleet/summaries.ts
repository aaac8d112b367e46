import { encode } from 'cbor-x';
import { isFerryError } from '../../core/errors.js';
import type { Store } from '../../store/index.js';
import type { BridgeLog } from '../bridge/bridge.js';
import type { Channels } from '../bridge/channel.js';
import type { ResolvedFleetOptions } from './options.js';
import { encodeSummarySet, type SummarySet } from './summary-filter.js';
import { readSummaryRecord, type DeviceFigures, type HeapSummary, type SummaryRecord } from './summary-wire.js';

/** What the summaries need of the device. */
export interface SummariesLinks {
  channels: Channels;
  /** Paired peers' ids. */
  peers: () => string[];
  store: Store;
  /** Instances whose heaps this device keeps (running, suspended, or cached after a move away). */
  heaps: () => string[];
  device: () => DeviceFigures;
  log: BridgeLog;
  now?: () => number;
}

/** What this device knows of a peer's heaps. */
export interface PeerSummaries {
  device: DeviceFigures;
  heaps: Map<string, { summary: HeapSummary; set: SummarySet }>;
  /** When the peer last told us (a change, a keepalive, an answer), ms since the epoch. */
  heardAt: number;
  nextWithinMs: number;
  /** A full record has arrived since this agent started: without one the view may lack heaps. */
  complete: boolean;
}

/** Traffic this device's summaries caused (the benchmark's refresh figure). */
export interface SummaryTraffic {
  records: number;
  bytes: number;
  heapsSent: number;
}

/**
 * Region summaries (agent/fleet/DESIGN.md): this device's heaps summarised as Golomb-coded sets
 * of their line hashes, sent to every paired peer when a heap has committed since its last
 * summary (at most once per `summaryRefreshMs`), a keepalive otherwise; and the peers' summaries
 * as they arrive, each marked fresh or stale.
 */
export class Summaries {
  private readonly own = new Map<string, HeapSummary>();
  private readonly fromPeers = new Map<string, PeerSummaries>();
  /** Per peer: whether it holds our full view, and when it last heard from us. */
  private readonly sent = new Map<string, { complete: boolean; at: number; busy: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  readonly traffic: SummaryTraffic = { records: 0, bytes: 0, heapsSent: 0 };
  private readonly now: () => number;

  constructor(
    private readonly l: SummariesLinks,
    private readonly o: ResolvedFleetOptions,
  ) {
    this.now = l.now ?? Date.now;
    l.channels.handle('fleet.summary', (peer, b) => this.received(peer, b));
    l.channels.handle('fleet.summaries', () => this.record(true, []));
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.summaryRefreshMs);
    this.timer.unref();
    void this.tick();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** One refresh: rebuilds the summaries of heaps committed since, and tells each peer what changed (or that nothing did). */
  async tick(): Promise<void> {
    const { changed, removed } = this.refreshOwn();
    const keepaliveMs = this.o.summaryRefreshMs * this.o.keepaliveEvery;
    await Promise.all(
      this.l.peers().map(async (peer) => {
        const s = this.sent.get(peer) ?? { complete: false, at: 0, busy: false };
        this.sent.set(peer, s);
        if (s.busy) return;
        const due = !s.complete || changed.length > 0 || removed.length > 0 || this.now() - s.at >= keepaliveMs;
        if (!due) return;
        s.busy = true;
        const full = !s.complete;
        const record = this.record(full, removed, full ? undefined : changed);
        try {
          const answer = (await this.l.channels.request(peer, 'fleet.summary', record, this.o.askTimeoutMs)) as { needFull?: unknown } | null;
          const bytes = encode(record).length;
          this.traffic.records++;
          this.traffic.bytes += bytes;
          this.traffic.heapsSent += record.heaps.length;
          s.at = this.now();
          s.complete = answer?.needFull !== true;
        } catch (e) {
          // Unreachable or refused: it gets the whole view when it answers again.
          s.complete = false;
          this.l.log('debug', 'fleet.summary-not-sent', { peer, error: isFerryError(e) ? e.code : String(e) });
        } finally {
          s.busy = false;
        }
      }),
    );
  }

  /** Asks a peer for its whole view now (a choice with a stale or missing summary); undefined when it does not answer. */
  async ask(peer: string): Promise<PeerSummaries | undefined> {
    try {
      const b = await this.l.channels.request(peer, 'fleet.summaries', null, this.o.askTimeoutMs);
      this.apply(peer, b);
    } catch (e) {
      this.l.log('debug', 'fleet.summary-not-asked', { peer, error: isFerryError(e) ? e.code : String(e) });
      return undefined;
    }
    return this.fromPeers.get(peer);
  }

  /** What this device holds of `peer`'s summaries, and whether it is fresh (the peer spoke within its promise). */
  of(peer: string): { view: PeerSummaries; fresh: boolean } | undefined {
    const v = this.fromPeers.get(peer);
    if (!v) return undefined;
    return { view: v, fresh: v.complete && this.now() <= v.heardAt + 1.5 * v.nextWithinMs + 5000 };
  }

  /** What this device holds of each peer (`fleet-summaries`). */
  peerViews(): Array<{ peer: string; fresh: boolean; heardAt: string; heaps: Array<{ heap: string; version: number; lines: number }>; device: DeviceFigures }> {
    return [...this.fromPeers.keys()].map((peer) => {
      const { view, fresh } = this.of(peer)!;
      return { peer, fresh, heardAt: new Date(view.heardAt).toISOString(), heaps: [...view.heaps.values()].map((h) => ({ heap: h.summary.heap, version: h.summary.version, lines: h.summary.n })), device: view.device };
    });
  }

  /** This device's own summaries (the benchmark's size figure, `ferry peers --for`'s own line). */
  ownSummaries(): HeapSummary[] {
    this.refreshOwn();
    return [...this.own.values()];
  }

  /** The size of a keepalive record (the device figures, no heaps), bytes. */
  keepaliveBytes(): number {
    return encode(this.record(false, [], [])).length;
  }

  forget(peer: string): void {
    this.fromPeers.delete(peer);
    this.sent.delete(peer);
  }

  private refreshOwn(): { changed: HeapSummary[]; removed: string[] } {
    const changed: HeapSummary[] = [];
    const held = new Set(this.l.heaps().filter((h) => this.l.store.hasApp(h)));
    for (const heap of held) {
      const version = this.l.store.headVersion(heap);
      if (this.own.get(heap)?.version === version) continue;
      const s: HeapSummary = { heap, version, ...encodeSummarySet(this.l.store.hashesOf(heap), this.o.summaryBits) };
      this.own.set(heap, s);
      changed.push(s);
    }
    const removed = [...this.own.keys()].filter((h) => !held.has(h));
    for (const h of removed) this.own.delete(h);
    return { changed, removed };
  }

  private record(full: boolean, removed: string[], changed?: HeapSummary[]): SummaryRecord {
    if (full) this.refreshOwn();
    return {
      v: 1,
      device: this.l.device(),
      heaps: full ? [...this.own.values()] : (changed ?? []),
      removed: full ? [] : removed,
      full,
      nextWithinMs: this.o.summaryRefreshMs * this.o.keepaliveEvery,
    };
  }

  private received(peer: string, b: unknown): { ok: true; needFull?: true } {
    const had = this.fromPeers.get(peer);
    this.apply(peer, b);
    // A change on top of a view this device does not hold (it restarted): ask for the whole.
    return !(b as SummaryRecord).full && !had?.complete ? { ok: true, needFull: true } : { ok: true };
  }

  private apply(peer: string, b: unknown): void {
    const { record, sets } = readSummaryRecord(b);
    const prev = this.fromPeers.get(peer);
    const heaps = record.full || !prev ? new Map<string, { summary: HeapSummary; set: SummarySet }>() : prev.heaps;
    for (const h of record.heaps) heaps.set(h.heap, { summary: h, set: sets.get(h.heap)! });
    for (const h of record.removed) heaps.delete(h);
    this.fromPeers.set(peer, { device: record.device, heaps, heardAt: this.now(), nextWithinMs: record.nextWithinMs, complete: record.full || (prev?.complete ?? false) });
  }
}
