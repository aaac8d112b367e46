import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, type ErrorCode } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import type { Discovery } from '../services/discovery.js';
import type { Services } from '../services/index.js';
import type { InstanceMoves } from '../runtime/instance-moves.js';
import { writeAtomically } from '../runtime/registry.js';
import type { BridgeLog } from './bridge.js';
import type { Channels } from './channel.js';
import { dropHere } from './fault-points.js';
import { MoveDestination } from './move-destination.js';
import { MoveOrigin } from './move-origin.js';
import type { MoveProgress, MoveReport } from './move-report.js';
import { readMigrateOptions, type MigrateOptions } from './move-options.js';
import { BodyReader } from './move-wire.js';
import type { PeerRegistry } from './peer-registry.js';
import type { SealedBulk } from './sealed-bulk.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { answerArrived, PendingForwards } from './mailbox-forward.js';

/** What the handoff needs of the runtime: lent by the agent (its `moves`, store and profile). */
export interface HandoffRuntime {
  moves: InstanceMoves;
  store: Store;
  profile: HwProfile;
  services: () => Services | undefined;
}

export interface MigrationsLinks extends HandoffRuntime {
  channels: Channels;
  bulk: SealedBulk;
  peers: PeerRegistry;
  deviceId: string;
  dataDir: string;
  maxFrameBytes: number;
  log: BridgeLog;
  /** The agent's bus: a move across brokers forwards the mailbox's requests on it (mailbox-forward.ts). */
  bus: MqttBus;
  /** This device's site (BridgeOptions.site); undefined: one broker. */
  site: string | undefined;
}

/** A move's progress as `ferry migrate` follows it: numbered events, then the report. */
export interface MoveWatch {
  id: string;
  events: Array<MoveProgress & { seq: number; at: string }>;
  done?: MoveReport;
}

interface Active {
  origin: MoveOrigin;
  events: MoveWatch['events'];
  seq: number;
  done?: MoveReport;
  waiters: Array<() => void>;
}

/** Moves kept in `ferry migrations` (and its file). */
const HISTORY = 100;
/** Events kept per move for followers. */
const EVENTS = 500;
/** An incoming move with no record from its origin for this long is undone, ms. */
const INCOMING_IDLE_MS = 60_000;
/** How often a prepared destination asks a quiet origin for the decision, ms. */
const ASK_EVERY_MS = 2000;
/** How long a forward tried again after a restart may take, ms. */
const FORWARD_TIMEOUT_MS = 30_000;

/**
 * The live handoff (DESIGN.md, "Handoff"): starts and follows moves of this device's instances
 * (the origin side, move-origin.ts), receives moves (move-destination.ts), answers a destination's
 * question about a decision, and keeps the history `ferry migrations` shows.
 */
export class Migrations {
  readonly destination: MoveDestination;
  /** Mailbox forwards of moves to another site not done yet (mailbox-forward.ts). */
  private readonly forwards: PendingForwards;
  private readonly active = new Map<string, Active>();
  private readonly byInstance = new Map<string, string>();
  private history: MoveReport[];
  /** Per peer: the part of past switches the estimate missed (ms), so the next estimate is honest. */
  private readonly learned = new Map<string, number>();
  private readonly file: string;

  constructor(private readonly l: MigrationsLinks) {
    this.file = join(l.dataDir, 'bridge', 'migrations.json');
    this.history = readHistory(this.file);
    this.destination = new MoveDestination({
      channels: l.channels,
      moves: l.moves,
      store: l.store,
      profile: l.profile,
      deviceId: l.deviceId,
      discovery: (): Discovery | undefined => l.services()?.discovery,
      log: l.log,
      idleMs: INCOMING_IDLE_MS,
      askEveryMs: ASK_EVERY_MS,
      site: l.site,
    });
    answerArrived(l.channels, l.moves);
    this.forwards = new PendingForwards(join(l.dataDir, 'bridge', 'forwards.json'), { bus: l.bus, moves: l.moves, channels: l.channels, log: l.log });
    l.channels.handle('move.decision', (peer, b) => (dropHere('origin', 'decision') ? new Promise<never>(() => undefined) : this.decision(peer, b)));
    this.destination.recover();
    this.forwards.recover(FORWARD_TIMEOUT_MS);
  }

  /** Starts moving `instance` to `peer`; the move runs on in the agent (follow it with `watch`). A dry run answers with its plan. */
  async start(instance: unknown, peer: unknown, options: MigrateOptions = {}): Promise<{ id: string; instance: string; peer: string } | MoveReport> {
    const o = readMigrateOptions(options);
    if (typeof instance !== 'string') throw new FerryError('BAD_OPTION', 'instance must be an instance id', { field: 'instance' });
    const to = this.l.peers.require(typeof peer === 'string' ? peer : String(peer)).deviceId;
    this.l.moves.describe(instance); // running here, not paused, not moved: else its error now
    const release = this.l.moves.claim(instance);
    const a: Active = { origin: undefined as unknown as MoveOrigin, events: [], seq: 0, waiters: [] };
    let begun: () => void = () => undefined;
    const underWay = new Promise<void>((resolve) => (begun = resolve));
    const origin = new MoveOrigin(
      {
        channels: this.l.channels,
        bulk: this.l.bulk,
        moves: this.l.moves,
        store: this.l.store,
        profile: this.l.profile,
        deviceId: this.l.deviceId,
        services: this.l.services,
        maxFrameBytes: this.l.maxFrameBytes,
        site: this.l.site,
        forwards: this.forwards,
        learned: (p) => this.learned.get(p) ?? 0,
        probeDecide: () => {
          const t = performance.now();
          writeAtomically(join(this.l.dataDir, 'bridge', 'move-probe'), `${Date.now()}\n`);
          return performance.now() - t;
        },
      },
      instance,
      to,
      o,
      (p) => {
        this.event(a, p);
        if (p.phase !== 'aborted') begun();
      },
    );
    a.origin = origin;
    this.active.set(origin.id, a);
    this.byInstance.set(instance, origin.id);
    this.l.log('info', 'move.started', { move: origin.id, instance, to, downtimeLimitMs: o.downtimeLimitMs, dryRun: o.dryRun });
    const run = origin.run().then(
      (r) => r,
      (e: unknown): MoveReport => {
        // Only after the decision can run() throw: the move stands; say what went wrong after it.
        this.l.log('error', 'move.after-decision-failed', { move: origin.id, instance, error: String(e) });
        return { ...origin.progress, id: origin.id, instance, from: this.l.deviceId, to, path: 'lines', outcome: 'moved', message: String(e), startedAt: new Date().toISOString(), totalMs: 0, downtimeMs: 0, downtimeLimitMs: o.downtimeLimitMs, rounds: 0, linesReused: 0, linesSent: 0, leasesHandedOver: 0, leasePlan: [], codeSent: false };
      },
    );
    const finished = run.then((r) => {
      release();
      this.ended(a, r);
      return r;
    });
    // A peer that refuses the instance (it does not fit there) is bad input, answered as an error
    // like the others: the prepare is the move's first step, answered before any progress. A
    // dry run that cannot move is an error too.
    const r = o.dryRun ? await finished : await Promise.race([finished, underWay.then(() => undefined)]);
    if (r?.outcome === 'aborted' && (o.dryRun || r.code === 'MIGRATE_NO_FIT' || r.code === 'MIGRATE_CROSS_SITE')) throw new FerryError((r.code ?? 'MIGRATE_ABORTED') as ErrorCode, r.message ?? `the move of ${instance} was aborted`, { field: 'peer' });
    if (o.dryRun) return r!;
    return { id: origin.id, instance, peer: to };
  }

  /** Waits (up to `waitMs`) for events after `after`, or the end; a follower asks again at once. */
  async watch(id: string, after: number, waitMs: number): Promise<MoveWatch> {
    const a = this.active.get(id);
    if (!a) {
      const past = this.history.find((r) => r.id === id);
      if (!past) throw new FerryError('MIGRATE_PROTOCOL', `no move ${id} here (ferry migrations lists them)`, { field: 'id' });
      return { id, events: [], done: past };
    }
    if (!a.done && !a.events.some((e) => e.seq > after)) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, waitMs);
        a.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return { id, events: a.events.filter((e) => e.seq > after), ...(a.done ? { done: a.done } : {}) };
  }

  /** `ferry migrate --cancel`: the move aborts at its next step unless it is decided already. */
  cancel(instance: unknown): { instance: string; cancelled: boolean; move?: string } {
    if (typeof instance !== 'string') throw new FerryError('BAD_OPTION', 'instance must be an instance id', { field: 'instance' });
    const id = this.byInstance.get(instance);
    const a = id !== undefined ? this.active.get(id) : undefined;
    if (!a || a.done) throw new FerryError('MIGRATE_PROTOCOL', `no move of ${instance} is under way here`, { field: 'instance' });
    return { instance, cancelled: a.origin.cancel(), move: a.origin.id };
  }

  /** Recent moves, newest first, with those under way. */
  list(): { active: Array<MoveProgress & { id: string; instance: string; to: string }>; recent: MoveReport[] } {
    return {
      active: [...this.active.values()].filter((a) => !a.done).map((a) => ({ id: a.origin.id, instance: a.origin.instance, to: a.origin.peer, ...a.origin.progress })),
      recent: [...this.history].reverse(),
    };
  }

  close(): void {
    for (const a of this.active.values()) a.origin.cancel();
    this.destination.close();
    this.forwards.close();
  }

  private event(a: Active, p: MoveProgress): void {
    a.events.push({ ...p, seq: ++a.seq, at: new Date().toISOString() });
    if (a.events.length > EVENTS) a.events.shift();
    this.wake(a);
  }

  private wake(a: Active): void {
    const w = a.waiters;
    a.waiters = [];
    for (const f of w) f();
  }

  private ended(a: Active, r: MoveReport): void {
    a.done = r;
    this.wake(a);
    this.byInstance.delete(r.instance);
    // Followers get the report for a while; the history keeps it.
    setTimeout(() => this.active.delete(r.id), 60_000).unref();
    // Only pre-copy moves teach the switch's fixed cost: a stop-and-copy downtime is mostly the
    // whole heap's transfer, which the next estimate already counts as bytes.
    if (r.outcome === 'moved' && a.origin.o.precopy) {
      const missed = Math.max(0, r.downtimeMs - r.expectedDowntimeMs);
      this.learned.set(r.to, Math.max((this.learned.get(r.to) ?? 0) * 0.5, missed));
    } else if (r.outcome === 'aborted' && r.code === 'MIGRATE_NO_CONVERGENCE') {
      // What was learned decays here too: else one slow switch (a busy moment) would keep every
      // later move to this peer from converging, and only a successful move could lower it.
      this.learned.set(r.to, (this.learned.get(r.to) ?? 0) * 0.5);
    }
    this.l.log(r.outcome === 'aborted' ? 'warn' : 'info', `move.${r.outcome}`, { move: r.id, instance: r.instance, to: r.to, downtimeMs: r.downtimeMs, bytesSent: r.bytesSent, rounds: r.rounds, ...(r.code ? { code: r.code } : {}) });
    if (r.outcome === 'planned') return;
    this.history.push(r);
    if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
    try {
      writeAtomically(this.file, `${JSON.stringify({ format: 'ferry.migrations/1', moves: this.history })}\n`);
    } catch (e) {
      this.l.log('warn', 'move.history-not-saved', { error: String(e) });
    }
  }

  /** A destination asks what became of a move it prepared: the origin's durable decision, or none (aborted), or still under way. */
  private decision(peer: string, b: unknown): { decision: 'moved' | 'aborted' | 'pending' } {
    const r = new BodyReader(b);
    const id = r.id();
    const instance = r.name('instance');
    const a = this.active.get(id);
    if (a && !a.done && a.origin.peer === peer && !a.origin.isDecided) return { decision: 'pending' };
    const rec = this.l.moves.marked().find((x) => x.instance === instance && x.state === 'moved');
    if (a?.origin.isDecided && a.origin.peer === peer) {
      a.origin.toldMoved();
      return { decision: 'moved' };
    }
    if (rec?.move?.id === id && rec.move.peer === peer) return { decision: 'moved' };
    // No decision was written for it (presumed abort): the instance is here or went elsewhere since.
    return { decision: 'aborted' };
  }
}

function readHistory(file: string): MoveReport[] {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; moves?: unknown };
    return v.format === 'ferry.migrations/1' && Array.isArray(v.moves) ? (v.moves as MoveReport[]).slice(-HISTORY) : [];
  } catch {
    return []; // none yet, or unreadable: the history is informational, never a reason not to start
  }
}
