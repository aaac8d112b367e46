import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import type { Bridge, BridgeLog } from '../bridge/bridge.js';
import type { MigrateOptions } from '../bridge/move-options.js';
import type { MoveReport } from '../bridge/move-report.js';
import { codeHash } from '../runtime/app-upgrade.js';
import type { InstanceMoves } from '../runtime/instance-moves.js';
import type { InstalledApp, InstanceRecord } from '../runtime/registry.js';
import { bestOf, rankCandidates, type Candidate, type PeerFacts, type Wanted } from './candidates.js';
import { readFleetOptions, type FleetOptions, type ResolvedFleetOptions } from './options.js';
import { evacuationPlan, runPlan, type PlanReport } from './plan-runner.js';
import { readPlan } from './plan.js';
import { Summaries } from './summaries.js';
import type { DeviceFigures } from './summary-wire.js';

export { readFleetOptions, type FleetOptions } from './options.js';
export { readPlan, type Plan } from './plan.js';
export type { Candidate } from './candidates.js';
export type { PlanReport, StepResult } from './plan-runner.js';

/** What the fleet needs of the agent: lent by `ferry start` (start.ts). */
export interface FleetLinks {
  bridge: Bridge;
  moves: InstanceMoves;
  store: Store;
  profile: HwProfile;
  dataDir: string;
  maxInstances: number;
  instances: () => InstanceRecord[];
  apps: () => InstalledApp[];
  /** Service types this device's discovery finds. */
  serviceTypes: () => string[];
  log: BridgeLog;
}

/** The longest one `migrate-watch` wait lasts inside a plan, ms. */
const WATCH_MS = 5000;

/**
 * Handoff across a fleet (agent/fleet/DESIGN.md): region summaries exchanged with paired peers,
 * the choice of a destination, plans of several moves and the evacuation of this device. It sits
 * above the bridge and the runtime and moves instances only through the bridge's `Migrations`.
 */
export class Fleet {
  readonly summaries: Summaries;
  private readonly codeHashes = new Map<string, string>();

  constructor(
    private readonly l: FleetLinks,
    readonly options: ResolvedFleetOptions,
  ) {
    this.summaries = new Summaries(
      {
        channels: l.bridge.channels,
        peers: () => l.bridge.peers.list().map((p) => p.deviceId),
        store: l.store,
        // Every heap the store keeps, arriving ones too: a move or dry run that is undone leaves the lines where they were.
        heaps: () => l.instances().map((i) => i.instance),
        device: () => this.device(),
        log: l.log,
      },
      options,
    );
  }

  static start(l: FleetLinks, options: FleetOptions = {}): Fleet {
    const f = new Fleet(l, readFleetOptions(options));
    f.summaries.start();
    return f;
  }

  close(): void {
    this.summaries.close();
  }

  /** This device's figures, as its summaries carry them. */
  device(): DeviceFigures {
    const p = this.l.profile;
    return {
      profile: p.name,
      wordBits: p.wordBits,
      lineSize: p.cacheLineBytes,
      heapBudgetBytes: p.heapBudgetBytes,
      bandwidthBps: Math.round(p.link.bandwidthBps),
      latencyMs: Math.round(p.link.latencyMs),
      instances: this.l.moves.placesTaken(),
      maxInstances: this.l.maxInstances,
      services: [...new Set(this.l.serviceTypes())].slice(0, 256),
      codes: this.l.apps().map((a) => this.codeOf(a)).filter((c): c is string => c !== undefined).slice(0, 256),
    };
  }

  /**
   * Every paired peer as a destination for `instance`, best first (`ferry peers --for`). Peers
   * whose summary is stale or missing, or all with `refresh`, are asked for it now (that answer
   * shows them reachable); the others are pinged.
   */
  async candidates(instance: unknown, o: { refresh?: boolean; placed?: ReadonlyMap<string, number>; exclude?: readonly string[] } = {}): Promise<{ instance: string; heapBytes: number; lines: number; candidates: Candidate[] }> {
    if (typeof instance !== 'string') throw new FerryError('BAD_OPTION', 'instance must be an instance id', { field: 'instance' });
    const w = this.wanted(instance);
    const peers = this.l.bridge.peers.list().filter((p) => !(o.exclude ?? []).includes(p.deviceId));
    const facts = await Promise.all(
      peers.map(async (p): Promise<PeerFacts> => {
        const had = this.summaries.of(p.deviceId);
        let reachable: boolean;
        if (o.refresh || !had?.fresh) reachable = (await this.summaries.ask(p.deviceId)) !== undefined;
        else reachable = await this.l.bridge.channels.request(p.deviceId, 'bridge.ping', null, this.options.askTimeoutMs).then(() => true, () => false);
        return { peer: p.deviceId, label: p.label, profile: p.profile, reachable, summaries: this.summaries.of(p.deviceId), placed: o.placed?.get(p.deviceId) ?? 0 };
      }),
    );
    const ranked = rankCandidates(w, facts, { bandwidthBps: this.l.profile.link.bandwidthBps, latencyMs: this.l.profile.link.latencyMs });
    return { instance, heapBytes: w.lines.reduce((n, x) => n + x.len, 0), lines: w.lines.length, candidates: ranked };
  }

  /** The top candidate for `instance` (FLEET_NO_CANDIDATE with each peer's reason when none fits). */
  async best(instance: string, placed?: ReadonlyMap<string, number>, exclude?: readonly string[]): Promise<{ best: Candidate; fitting: number; candidates: Candidate[] }> {
    const c = await this.candidates(instance, { ...(placed ? { placed } : {}), ...(exclude ? { exclude } : {}) });
    return { best: bestOf(instance, c.candidates), fitting: c.candidates.filter((x) => x.fits).length, candidates: c.candidates };
  }

  /** Whether `peer` holds the module with this code hash, by its fresh summary (undefined: not known). */
  codeHeld(peer: string, code: string): boolean | undefined {
    const s = this.summaries.of(peer);
    return s?.fresh ? s.view.device.codes.includes(code) : undefined;
  }

  /** `ferry migrate <instance> --best`: the move to the top candidate, with the choice. */
  async migrateBest(instance: unknown, options: MigrateOptions): Promise<{ chosen: Candidate; fitting: number; started: { id: string } | MoveReport }> {
    if (typeof instance !== 'string') throw new FerryError('BAD_OPTION', 'instance must be an instance id', { field: 'instance' });
    const { best, fitting } = await this.best(instance);
    return { chosen: best, fitting, started: await this.migrations().start(instance, best.peer, options) };
  }

  /** `ferry plan run <file>`: a checked plan, run step by step (or its dry run). */
  runPlan(plan: unknown, dryRun: boolean): Promise<PlanReport> {
    return this.run(readPlan(plan), dryRun);
  }

  /** `ferry evacuate`: every running instance off this device, smallest first, within `timeLimitMs`. */
  evacuate(o: { to?: string; dryRun: boolean; timeLimitMs: number; downtimeLimitMs?: number }): Promise<PlanReport> {
    if (o.to !== undefined) this.l.bridge.peers.require(o.to);
    const running = this.l.instances().filter((i) => i.state === 'running');
    const sized = running.map((i) => ({ instance: i.instance, heapBytes: this.l.store.hasApp(i.instance) ? this.l.store.listLines(i.instance).reduce((n, x) => n + x.len, 0) : 0 }));
    return this.run(evacuationPlan(sized, o.to, o.timeLimitMs, o.downtimeLimitMs), o.dryRun);
  }

  private run(plan: ReturnType<typeof readPlan>, dryRun: boolean): Promise<PlanReport> {
    return runPlan(plan, dryRun, {
      best: (instance, placed, exclude) => this.best(instance, placed, exclude),
      start: (instance, peer, options) => this.migrations().start(instance, peer, options),
      finished: (id) => this.finished(id),
      dropBackup: (instance) => this.l.moves.dropBackup(instance),
    });
  }

  /** Follows a started move to its report. */
  async finished(id: string): Promise<MoveReport> {
    let after = 0;
    for (;;) {
      const w = await this.migrations().watch(id, after, WATCH_MS);
      for (const e of w.events) after = Math.max(after, e.seq);
      if (w.done) return w.done;
    }
  }

  private migrations() {
    const m = this.l.bridge.migrations;
    if (!m) throw new FerryError('BRIDGE_CLOSED', 'this bridge runs without apps (no runtime): it neither sends nor takes moves', { field: 'bridge' });
    return m;
  }

  private wanted(instance: string): Wanted {
    const d = this.l.moves.describe(instance); // running here, else its error
    return {
      instance,
      app: d.app,
      code: d.code,
      codeBytes: Buffer.byteLength(d.source),
      lineSize: d.lineSize,
      wordBits: d.wordBits,
      requiredWordBits: d.requiredWordBits,
      minHeapBytes: d.minHeapBytes,
      services: Array.from(d.services, (s) => s).filter((s) => !s.optional).map((s) => s.type),
      lines: this.l.store.listLines(instance, { version: d.version }),
    };
  }

  private codeOf(a: InstalledApp): string | undefined {
    let h = this.codeHashes.get(a.file);
    if (h === undefined) {
      try {
        h = codeHash(readFileSync(join(this.l.dataDir, 'apps', a.file), 'utf8'));
      } catch {
        return undefined;
      }
      this.codeHashes.set(a.file, h);
    }
    return h;
  }
}
