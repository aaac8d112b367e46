import { randomBytes } from 'node:crypto';
import { encode } from 'cbor-x';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import type { HeldLease, Services } from '../services/index.js';
import type { InstanceMoves, OutgoingInstance } from '../runtime/instance-moves.js';
import type { Channels } from './channel.js';
import type { SealedBulk } from './sealed-bulk.js';
import type { PrepareAnswer, WireLine } from './move-wire.js';
import { exportAt, objectDelta, recordHash } from './move-objects.js';
import { prepareBody } from './move-report.js';
import type { MovePhase, MoveProgress, MoveReport } from './move-report.js';
import type { ResolvedMigrateOptions } from './move-options.js';
import { SwitchEstimate } from './move-estimate.js';
import { faultPoint } from './fault-points.js';
import { crossSiteRefusal, readAnswerSite, siteRelation, type PendingForwards, type SiteRelation } from './mailbox-forward.js';

/**
 * The origin of a handoff, which coordinates it (DESIGN.md, "Handoff"): prepare, pre-copy while
 * the app runs, switch at a bookmark when the expected downtime fits the limit, the durable
 * decision, lease handover, commit. Every failure before the decision aborts: the destination is
 * told to undo and the origin serves on. After the decision the move is final.
 */

export interface OriginLinks {
  channels: Channels;
  bulk: SealedBulk;
  moves: InstanceMoves;
  store: Store;
  profile: HwProfile;
  deviceId: string;
  services: () => Services | undefined;
  maxFrameBytes: number;
  /** The fixed part of the switch learned from earlier moves to this peer (ms): what the estimate missed. */
  learned: (peer: string) => number;
  /** Times a registry-sized atomic write here (the decision's cost), ms. */
  probeDecide: () => number;
  /** This device's site (its broker); undefined: one broker. */
  site: string | undefined;
  /** Forwards of the mailbox to a destination on another broker, kept until done (mailbox-forward.ts). */
  forwards: PendingForwards;
}

/** Round bodies up to this share of a frame go inline; larger ones as a sealed bulk transfer. */
const INLINE_SHARE = 0.5;
/** Rounds after which a switch whose fixed part alone breaks the limit ends the move. */
const FLOOR_ROUNDS = 3;
/** Hashes per `move.have` request. */
const HAVE_BATCH = 4096;

const hex = (h: Uint8Array) => Buffer.from(h).toString('hex');
const round2 = (x: number) => Math.round(x * 100) / 100;

export class MoveOrigin {
  readonly id = randomBytes(16).toString('base64url');
  readonly progress: MoveProgress = { phase: 'prepare', round: 0, bytesSent: 0, bytesMissing: 0, heapBytes: 0, dirtyRateBps: 0, bandwidthBps: 0, rttMs: 0, expectedDowntimeMs: 0 };
  private cancelled: FerryError | undefined;
  private readonly t0 = performance.now();
  private readonly startedAt = new Date();
  private desc!: OutgoingInstance;
  private prep!: PrepareAnswer;
  private paused = false;
  private pausedAt = 0;
  private decided = false;
  private est!: SwitchEstimate;
  private linesReused = 0;
  private linesSent = 0;
  private leasesHandedOver = 0;
  private rounds = 0;
  private codeSent = false;
  /** Same broker as the destination, or another one (its mailbox is then forwarded after the commit). */
  private sites: SiteRelation = 'same';
  private readonly report: Partial<MoveReport> = {};
  /** Resolved when the destination asked for the decision and was told "moved" (migrations.ts). */
  private readonly asked: Promise<void>;
  private answeredMoved: () => void = () => undefined;

  constructor(
    private readonly l: OriginLinks,
    readonly instance: string,
    readonly peer: string,
    readonly o: ResolvedMigrateOptions,
    private readonly onProgress: (p: MoveProgress) => void,
  ) {
    this.asked = new Promise((r) => (this.answeredMoved = r));
  }

  /** The destination asked for the decision and was told "moved": it runs the instance. */
  toldMoved(): void {
    this.answeredMoved();
  }

  /** Asks the move to stop; it aborts at its next step unless the decision is already written. */
  cancel(): boolean {
    if (this.decided) return false;
    this.cancelled ??= new FerryError('MIGRATE_ABORTED', `the move of ${this.instance} to ${this.peer} was cancelled; ${this.instance} serves on here`, { field: 'instance' });
    return true;
  }

  /** Whether the durable decision is written (the move is then final, whatever happens next). */
  get isDecided(): boolean {
    return this.decided;
  }

  async run(): Promise<MoveReport> {
    try {
      this.desc = this.l.moves.describe(this.instance);
      this.est = new SwitchEstimate(this.desc.leases.length, this.l.learned(this.peer));
      this.est.decideMs = Math.max(this.l.probeDecide(), this.l.probeDecide());
      // Measured while the rest of the prepare goes on (an aborted switch reconnects the session).
      void this.l.moves.probeSession().then((ms) => (this.est.ownConnectMs = ms), () => undefined);
      await this.measureRtt();
      this.prep = (await this.request('move.prepare', { ...prepareBody(this.id, this.desc, this.l.deviceId), ...(this.l.site !== undefined ? { site: this.l.site } : {}) })) as PrepareAnswer;
      // Another broker: the mailbox is forwarded after the commit. Unknown: refused (nothing moved).
      const there = readAnswerSite(this.prep);
      this.sites = siteRelation(this.l.site, there);
      if (this.sites === 'unknown') throw crossSiteRefusal(this.instance, this.peer, this.l.site, there);
      faultPoint('origin', 'prepare');
      const r = this.prep.path === 'objects' ? await this.objectPath() : await this.linePath();
      return r;
    } catch (e) {
      if (this.decided) throw e;
      return await this.abort(e);
    }
  }

  // ---- line path ----

  private async linePath(): Promise<MoveReport> {
    const size = this.desc.lineSize;
    // Not desc.version: the app commits on during the prepare, and the store keeps only a few versions.
    let version = this.l.moves.committedVersion(this.instance);
    let lines = this.l.store.listLines(this.instance, { version });
    this.progress.heapBytes = lines.length * size;
    const held = this.o.precopy ? await this.held(lines.map((x) => x.hash)) : new Set<string>();
    const missing = lines.filter((x) => !held.has(hex(x.hash)));
    this.progress.bytesMissing = missing.length * size;
    if (this.o.dryRun) return this.plan(this.est.guessMs(this.progress.bytesMissing));
    await this.sendCode();
    let sent = new Map<number, string>();
    let base = 0;
    if (this.o.precopy) [sent, base] = await this.precopy(lines, held, version);
    return this.switchOver(async (budgetMs) => {
      const v = this.l.moves.committedVersionPaused(this.instance);
      const { changed, removed } = delta(sent, this.l.store.listLines(this.instance, { version: v }));
      const bytes = changed.length * size;
      if (this.o.precopy) this.check(bytes, budgetMs());
      const body = { id: this.id, round: this.rounds, base, version: v, lines: changed.map((x): WireLine => [x.line, x.hash, this.readLine(x.line, v)]), removed, meta: this.l.store.readState(this.instance, { version: v }) };
      this.linesSent += changed.length;
      return this.timedRequest('move.switch', await this.roundBody(body, bytes), this.o.precopy ? budgetMs() : this.o.stepTimeoutMs);
    });
  }

  /** Round 0 and the delta rounds, until the expected downtime fits; returns what the destination has staged and its version. */
  private async precopy(all: ReturnType<Store['listLines']>, held: Set<string>, version: number): Promise<[Map<number, string>, number]> {
    const size = this.desc.lineSize;
    this.phase('precopy');
    // The newest version, read before any await: the one listed before the code went may be pruned since.
    version = this.l.moves.committedVersion(this.instance);
    all = this.l.store.listLines(this.instance, { version });
    // Round 0: the lines the destination lacks, the app's recently used ones first; held ones by hash.
    const hot = new Map(this.desc.hot.map((line, i) => [line, i]));
    const lines = [...all].sort((a, b) => (hot.get(a.line) ?? Infinity) - (hot.get(b.line) ?? Infinity) || a.line - b.line);
    // Lines the app's latest commit wrote wait for the next round: they are the likeliest to be
    // written again before the switch (the runtime's own records, the app's hottest objects), and
    // each would cross the link twice. The next round's delta takes whatever was not sent.
    const written = this.lastWritten(version, all);
    const first = lines.filter((x) => !written.has(x.line) || held.has(hex(x.hash)));
    let sent = new Map<number, string>();
    let lastAt = performance.now();
    await this.sendRound(0, 0, version, first.map((x) => [x.line, x.hash, held.has(hex(x.hash)) ? null : this.readLine(x.line, version)]), [], held);
    for (const x of first) sent.set(x.line, hex(x.hash));
    faultPoint('origin', 'precopy');
    let base = version;
    for (let round = 1; ; round++) {
      this.checkCancelled();
      version = this.l.moves.committedVersion(this.instance);
      const now = this.l.store.listLines(this.instance, { version });
      const { changed, removed } = delta(sent, now);
      const t = performance.now();
      this.progress.dirtyRateBps = Math.round((changed.length * size * 1000) / Math.max(1, t - lastAt));
      lastAt = t;
      // What the switch would send: the dirty lines now, plus what the app dirties until it pauses.
      const dirty = changed.length * size;
      const expected = this.est.downtimeMs(dirty + (this.progress.dirtyRateBps * this.est.sendMs(dirty)) / 1000);
      this.progress.expectedDowntimeMs = expected;
      this.onProgress({ ...this.progress });
      if (expected <= this.o.downtimeLimitMs) break;
      // The switch alone (its round trips and writes, nothing to send) is over the limit: no round
      // can help. Judged after a few rounds, whose figures refine the estimate.
      const floor = this.est.downtimeMs(0);
      if (round >= FLOOR_ROUNDS && floor > this.o.downtimeLimitMs) {
        throw new FerryError('MIGRATE_DOWNTIME_EXCEEDED', `the switch of ${this.instance} alone would take about ${floor} ms (round trips ${Math.round(this.est.rttMs)} ms, the writes and the session's connect there), over the ${this.o.downtimeLimitMs} ms limit; raise --downtime-limit`, { field: 'downtimeLimitMs', expectedDowntimeMs: floor });
      }
      if (round > this.o.maxRounds || performance.now() - this.t0 > this.o.maxTotalMs) {
        throw new FerryError('MIGRATE_NO_CONVERGENCE', `the move of ${this.instance} did not converge: after ${round - 1} rounds the expected downtime is ${expected} ms (limit ${this.o.downtimeLimitMs} ms; dirty rate ${this.progress.dirtyRateBps} B/s, link ${this.progress.bandwidthBps} B/s)`, { field: 'downtimeLimitMs', expectedDowntimeMs: expected, rounds: round - 1 });
      }
      if (changed.length + removed.length > 0) {
        // Read before the peer's answer: the app's commits meanwhile may prune this version.
        const data = changed.map((x) => this.readLine(x.line, version));
        const meta = this.l.store.readState(this.instance, { version });
        const heldNow = await this.held(changed.map((x) => x.hash));
        // Numbered by rounds sent (this.rounds), not by loop turns: a turn with nothing to send
        // sends no round, and the destination takes only the next number.
        await this.sendRound(this.rounds, base, version, changed.map((x, i): WireLine => [x.line, x.hash, heldNow.has(hex(x.hash)) ? null : data[i]!]), removed, heldNow, meta);
        sent = new Map(now.map((x) => [x.line, hex(x.hash)]));
        base = version;
      } else await new Promise((r) => setTimeout(r, Math.min(50, this.o.downtimeLimitMs)));
    }
    return [sent, base];
  }

  /** Lines of `lines` (the listing at `version`) whose content differs from the kept version before it (none if there is none). */
  private lastWritten(version: number, lines: ReturnType<Store['listLines']>): Set<number> {
    const before = this.l.store.versions(this.instance).filter((v) => v.version < version).at(-1);
    if (!before) return new Set();
    const was = new Map(this.l.store.listLines(this.instance, { version: before.version }).map((x) => [x.line, hex(x.hash)]));
    return new Set(lines.filter((x) => was.get(x.line) !== hex(x.hash)).map((x) => x.line));
  }

  private readLine(line: number, version: number): Uint8Array {
    const b = this.l.store.readLine(this.instance, line, { version });
    if (!b) throw new FerryError('HEAP_BAD_IMAGE', `line ${line} of ${this.instance} is not in version ${version}`, { field: 'line' });
    return b;
  }

  /** Which of `hashes` the destination holds (any app, any version it keeps). */
  private async held(hashes: Uint8Array[]): Promise<Set<string>> {
    const unique = [...new Map(hashes.map((h) => [hex(h), h])).values()];
    const have = new Set<string>();
    for (let i = 0; i < unique.length; i += HAVE_BATCH) {
      const batch = unique.slice(i, i + HAVE_BATCH);
      const a = (await this.request('move.have', { id: this.id, hashes: Buffer.concat(batch) })) as { have?: unknown };
      const bits = a?.have;
      if (!(bits instanceof Uint8Array) || bits.length < Math.ceil(batch.length / 8)) throw new FerryError('MIGRATE_PROTOCOL', `${this.peer} answered move.have without a bitmap`, { field: 'have' });
      batch.forEach((h, j) => {
        if (bits[j >> 3]! & (1 << (j & 7))) have.add(hex(h));
      });
    }
    return have;
  }

  private async sendRound(round: number, base: number, version: number, lines: WireLine[], removed: number[], held: Set<string>, meta = this.l.store.readState(this.instance, { version })): Promise<void> {
    const bytes = lines.reduce((n, l) => n + (l[2]?.length ?? 0), 0);
    this.linesSent += lines.filter((l) => l[2] !== null).length;
    this.linesReused += lines.filter((l) => l[2] === null && held.has(hex(l[1]))).length;
    const body = { id: this.id, round, base, version, lines, removed, meta };
    const t = performance.now();
    const a = (await this.request('move.round', await this.roundBody(body, bytes))) as { applyMs?: unknown; connectMs?: unknown };
    this.measured(bytes, performance.now() - t, a);
    this.rounds = round + 1;
    this.progress.round = round;
    this.onProgress({ ...this.progress });
  }

  /** A round's request body: inline when small, else its data goes ahead as a sealed bulk transfer. */
  private async roundBody(body: Record<string, unknown> & { round: number }, bytes: number): Promise<Record<string, unknown>> {
    if (bytes + 64 * 1024 < this.l.maxFrameBytes * INLINE_SHARE) {
      this.progress.bytesSent += bytes;
      return body;
    }
    const { id: _, ...rest } = body;
    const data = encode(rest) as Buffer;
    await this.l.bulk.send(this.peer, data, { meta: { move: this.id, kind: `round:${body.round}` }, timeoutMs: this.o.stepTimeoutMs });
    this.progress.bytesSent += data.length;
    return { id: this.id, round: body.round, bulk: true };
  }

  // ---- object path (another line or word size): stop-and-copy of objects, pre-copied once ----

  private async objectPath(): Promise<MoveReport> {
    const first = exportAt(this.l, this.instance, this.l.moves.committedVersion(this.instance)); // not desc.version: pruned by now under load
    const bytes = first.objects.reduce((n, [, r]) => n + r.length, 0);
    this.progress.heapBytes = bytes;
    this.progress.bytesMissing = bytes;
    if (this.o.dryRun) return this.plan(this.est.guessMs(bytes));
    await this.sendCode();
    // Pre-copy once at object level: the whole image while the app runs (it also measures the
    // link); the switch sends the objects whose records changed since.
    this.phase('precopy');
    const t = performance.now();
    const data0 = encode({ objects: first.objects, image: first.image }) as Buffer;
    await this.l.bulk.send(this.peer, data0, { meta: { move: this.id, kind: 'objects:0' }, timeoutMs: this.o.stepTimeoutMs });
    const a = (await this.request('move.round', { id: this.id, round: 0, bulk: true })) as { connectMs?: unknown };
    this.progress.bytesSent += data0.length;
    this.linesSent = first.objects.length;
    this.measured(data0.length, performance.now() - t, a);
    // The import at the switch places every object: its cost grows with the whole image.
    this.est.applyPerByteMs = Math.max(this.est.applyPerByteMs, (this.est.applyFixedMs + 1) / Math.max(1, bytes));
    const sent = new Map(first.objects.map(([oid, rec]) => [oid, recordHash(rec)]));
    const now = exportAt(this.l, this.instance, this.l.moves.committedVersion(this.instance));
    const dirty = objectDelta(sent, now.objects).changed.reduce((n, [, r]) => n + r.length, 0);
    const expected = this.est.downtimeMs(dirty);
    this.progress.expectedDowntimeMs = expected;
    this.onProgress({ ...this.progress });
    if (expected > this.o.downtimeLimitMs) {
      throw new FerryError('MIGRATE_DOWNTIME_EXCEEDED', `the object-level switch of ${this.instance} (${dirty} bytes of changed objects) would take about ${expected} ms at ${this.progress.bandwidthBps} B/s; the limit is ${this.o.downtimeLimitMs} ms`, { field: 'downtimeLimitMs', expectedDowntimeMs: expected });
    }
    return this.switchOver(async (budgetMs) => {
      const img = exportAt(this.l, this.instance, this.l.moves.committedVersionPaused(this.instance));
      const { changed, removed } = objectDelta(sent, img.objects);
      const size = changed.reduce((n, [, r]) => n + r.length, 0);
      this.check(size, budgetMs());
      this.linesSent += changed.length;
      this.rounds = 2;
      const body = { changed, removed, image: img.image };
      if (size + 64 * 1024 < this.l.maxFrameBytes * INLINE_SHARE) {
        this.progress.bytesSent += size;
        return this.timedRequest('move.switch', { id: this.id, ...body }, budgetMs());
      }
      const data = encode(body) as Buffer;
      await this.l.bulk.send(this.peer, data, { meta: { move: this.id, kind: 'objects:1' }, timeoutMs: Math.max(1, budgetMs()) });
      this.progress.bytesSent += data.length;
      return this.timedRequest('move.switch', { id: this.id, bulk: true }, budgetMs());
    });
  }

  // ---- the switch, the decision, the commit ----

  /**
   * Pauses the instance at a bookmark, sends the final delta (`send`, given the time left), and
   * writes the decision when the destination is prepared. Any failure or lateness before the
   * decision unpauses the instance here.
   */
  private async switchOver(send: (budgetMs: () => number) => Promise<unknown>): Promise<MoveReport> {
    this.checkCancelled();
    this.phase('switch');
    this.pausedAt = performance.now();
    // Recorded before the pause (not on its clock): a forward left undone is tried again, also after a restart.
    if (this.sites === 'forward') this.l.forwards.add({ move: this.id, instance: this.instance, peer: this.peer });
    this.paused = true;
    this.l.moves.pause(this.instance);
    faultPoint('origin', 'paused');
    const at = () => Math.round((performance.now() - this.pausedAt) * 100) / 100;
    const steps = { pausedMs: at(), preparedMs: 0, decidedMs: 0, handedOverMs: 0, runningMs: 0 };
    this.report.switchSteps = steps;
    // Time kept for what follows the destination's answer: the decision, the handover, the commit.
    const reserve = this.est.holdBackMs();
    const budget = () => this.o.downtimeLimitMs - reserve - (performance.now() - this.pausedAt);
    await send(budget);
    steps.preparedMs = at();
    faultPoint('origin', 'prepared');
    this.checkCancelled();
    // Stop and copy (the benchmark's baseline) has no limit to keep.
    if (this.o.precopy && budget() < 0) throw this.late(`${this.peer} answered prepared, but not`, budget());
    // The decision: durable before anything is acted on. From here the instance never runs here again.
    const version = this.l.moves.committedVersionPaused(this.instance);
    this.l.moves.decide(this.instance, { id: this.id, peer: this.peer, version });
    this.decided = true;
    faultPoint('origin', 'decided');
    steps.decidedMs = at();
    this.phase('commit');
    this.l.moves.letGo(this.instance);
    const gifts = await this.handOverLeases();
    // The destination connects this session next: the old connection must be gone first.
    await this.l.moves.sessionClosed(this.instance);
    steps.handedOverMs = at();
    faultPoint('origin', 'handedover');
    let downtimeMs = performance.now() - this.pausedAt;
    try {
      const committed = this.request('move.commit', { id: this.id, instance: this.instance, leases: gifts, downtimeMs: Math.round(downtimeMs) }, this.o.stepTimeoutMs, this.o.retries);
      // A destination that asked for the decision (its commit was lost) and was told "moved" runs it: done too.
      const asked = this.asked.then(() => {
        this.report.message = "moved; the commit's answer was lost, and the destination asked for the decision instead";
      });
      await Promise.race([committed, asked]);
      committed.catch(() => undefined);
    } catch (e) {
      // Decided: the destination learns it when it asks (move.decision). The move stands.
      this.report.message = `moved; the destination had not confirmed the commit (${String(e)}), it will ask`;
    }
    downtimeMs = performance.now() - this.pausedAt;
    steps.runningMs = at();
    faultPoint('origin', 'committed');
    if (this.sites === 'forward') await this.forward();
    await this.l.moves.cancelLeases(this.desc.leases.filter((x) => this.prep.leasePlan.find((p) => p.type === x.type)?.action !== 'handover').map((x) => x.lease));
    this.phase('done');
    return this.finish('moved', downtimeMs);
  }

  /** Requests left in this broker's session of the instance go to the destination's broker (mailbox-forward.ts); the move stands whatever happens. */
  private async forward(): Promise<void> {
    try {
      this.report.mailboxForwarded = await this.l.forwards.run(this.id, this.o.stepTimeoutMs);
    } catch (e) {
      this.report.message = `moved; the requests left in its mailbox session at this broker are not forwarded yet (${String(e)}): they stay queued there, and the forward is tried again`;
    }
  }

  private async handOverLeases(): Promise<Array<{ type: string; lease: HeldLease; remainingMs: number }>> {
    const s = this.l.services();
    const gifts: Array<{ type: string; lease: HeldLease; remainingMs: number }> = [];
    for (const { type, lease } of this.desc.leases) {
      if (this.prep.leasePlan.find((p) => p.type === type)?.action !== 'handover' || !s) continue;
      try {
        const moved = await s.client.handover(lease, this.peer);
        const { description: _, ...plain } = moved;
        gifts.push({ type, lease: { ...plain, ...(lease.description ? { description: lease.description } : {}) } as HeldLease, remainingMs: Math.max(0, moved.expiresAt - Date.now()) });
        this.leasesHandedOver++;
      } catch {
        // Not handed over: the destination leases one through alternates (onLeaseLost if none).
      }
    }
    return gifts;
  }

  private check(bytes: number, budgetMs: number): void {
    const need = this.est.sendMs(bytes);
    this.progress.expectedDowntimeMs = Math.round(performance.now() - this.pausedAt + need + this.est.reserveMs());
    if (need > budgetMs) {
      throw new FerryError('MIGRATE_DOWNTIME_EXCEEDED', `at the switch the final delta of ${this.instance} (${bytes} bytes) would take about ${Math.round(need)} ms with ${Math.max(0, Math.round(budgetMs))} ms of the ${this.o.downtimeLimitMs} ms limit left`, { field: 'downtimeLimitMs', expectedDowntimeMs: this.progress.expectedDowntimeMs });
    }
  }

  /** The switch ran out of its budget: `leftMs` past it, or (undefined) an answer never came within it. */
  private late(what: string, leftMs?: number): FerryError {
    const when = leftMs === undefined ? `within the ${this.o.downtimeLimitMs} ms downtime limit` : `in time: ${Math.round(-leftMs)} ms past what the ${this.o.downtimeLimitMs} ms downtime limit allows`;
    return new FerryError('MIGRATE_DOWNTIME_EXCEEDED', `${what} ${when}; the move was aborted`, { field: 'downtimeLimitMs' });
  }

  /** A request that must answer within `budgetMs`, else the switch is late (aborted). */
  private async timedRequest(type: string, body: unknown, budgetMs: number): Promise<unknown> {
    if (budgetMs < 1) throw this.late(`${type} could not be sent`, budgetMs);
    try {
      return await this.l.channels.request(this.peer, type, body, Math.max(1, Math.ceil(budgetMs)));
    } catch (e) {
      if (isFerryError(e, 'BUS_TIMEOUT')) throw this.late(`${this.peer} did not answer ${type}`);
      throw e;
    }
  }

  // ---- estimates ----

  /** Three sealed pings: the best shows the link, the worst goes into the estimate. */
  private async measureRtt(): Promise<void> {
    const ms: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await this.request('bridge.ping', null);
      ms.push(performance.now() - t);
    }
    this.progress.rttMs = round2(Math.min(...ms));
    this.est.rttMs = Math.max(...ms);
  }


  /** A round's figures into the estimate: its data, its time, the destination's install time and session probe. */
  private measured(bytes: number, ms: number, a: { applyMs?: unknown; connectMs?: unknown } | null): void {
    this.est.round(bytes, ms, typeof a?.applyMs === 'number' ? a.applyMs : undefined);
    if (typeof a?.connectMs === 'number') this.est.connect(a.connectMs);
    this.progress.bandwidthBps = this.est.bandwidthBps;
  }

  // ---- helpers ----

  private async sendCode(): Promise<void> {
    if (!this.prep.needCode) return;
    this.phase('code');
    const data = Buffer.from(this.desc.source, 'utf8');
    await this.l.bulk.send(this.peer, data, { meta: { move: this.id, kind: 'code' }, timeoutMs: this.o.stepTimeoutMs });
    await this.request('move.code', { id: this.id });
    this.progress.bytesSent += data.length;
    this.codeSent = true;
  }

  private async request(type: string, body: unknown, timeoutMs = this.o.stepTimeoutMs, retries = 0): Promise<unknown> {
    this.checkCancelled();
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.l.channels.request(this.peer, type, body, timeoutMs);
      } catch (e) {
        // Only a lost message or session is worth resending (the receiver's steps are idempotent).
        if (attempt >= retries || !(isFerryError(e, 'BRIDGE_CLOSED') || isFerryError(e, 'BUS_TIMEOUT'))) throw e;
      }
    }
  }

  private checkCancelled(): void {
    if (this.cancelled && !this.decided) throw this.cancelled;
  }

  private phase(p: MovePhase): void {
    this.progress.phase = p;
    this.onProgress({ ...this.progress });
  }

  private async abort(e: unknown): Promise<MoveReport> {
    const err = isFerryError(e) ? e : new FerryError('MIGRATE_ABORTED', String(e), { field: 'move' });
    // The destination undoes what it staged; told at once, and it also undoes on its own when it hears nothing.
    const told = this.l.channels.request(this.peer, 'move.abort', { id: this.id }, Math.min(2000, this.o.stepTimeoutMs)).catch(() => undefined);
    if (this.sites === 'forward') this.l.forwards.drop(this.id);
    let downtimeMs = 0;
    if (this.paused) {
      await this.l.moves.unpause(this.instance).catch((u: unknown) => {
        this.report.message = `could not resume after the abort: ${String(u)}`;
      });
      downtimeMs = performance.now() - this.pausedAt;
    }
    await told;
    this.phase('aborted');
    const code = err.code.startsWith('MIGRATE_') ? err.code : 'MIGRATE_ABORTED';
    return this.finish('aborted', downtimeMs, code, err.code === code ? err.message : `${err.code}: ${err.message}`);
  }

  private async plan(expected: number): Promise<MoveReport> {
    this.progress.expectedDowntimeMs = expected;
    // Awaited: the prepare marked the instance incoming at the destination, and a dry run answers
    // only once that is undone (it moves nothing, there either).
    await this.l.channels.request(this.peer, 'move.abort', { id: this.id }, 2000).catch(() => undefined);
    return this.finish('planned', 0);
  }

  private finish(outcome: MoveReport['outcome'], downtimeMs: number, code?: string, message?: string): MoveReport {
    return {
      ...this.progress,
      id: this.id,
      instance: this.instance,
      from: this.l.deviceId,
      to: this.peer,
      path: this.prep?.path ?? 'lines',
      outcome,
      ...(code ? { code } : {}),
      ...(message ?? this.report.message ? { message: message ?? this.report.message } : {}),
      startedAt: this.startedAt.toISOString(),
      totalMs: Math.round(performance.now() - this.t0),
      downtimeMs: round2(downtimeMs),
      downtimeLimitMs: this.o.downtimeLimitMs,
      rounds: this.rounds,
      linesReused: this.linesReused,
      linesSent: this.linesSent,
      leasesHandedOver: this.leasesHandedOver,
      leasePlan: this.prep?.leasePlan ?? [],
      codeSent: this.codeSent,
      ...(this.report.switchSteps ? { switchSteps: this.report.switchSteps } : {}),
      ...(this.report.mailboxForwarded !== undefined ? { mailboxForwarded: this.report.mailboxForwarded } : {}),
    };
  }
}

/** Lines of `now` whose hash differs from what the destination has staged (`sent`), and staged lines `now` lacks. */
function delta(sent: Map<number, string>, now: Array<{ line: number; hash: Uint8Array }>): { changed: Array<{ line: number; hash: Uint8Array }>; removed: number[] } {
  const live = new Set(now.map((x) => x.line));
  return { changed: now.filter((x) => sent.get(x.line) !== hex(x.hash)), removed: [...sent.keys()].filter((line) => !live.has(line)) };
}
