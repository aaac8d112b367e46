import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.js';
import type { Store } from '../../store/index.js';
import type { DurableSessionOptions } from '../../transports/durable-session.js';
import type { HeldLease } from '../services/index.js';
import { codeHash } from './app-upgrade.js';
import { checkFit, checkRoom, placesTaken, type FitHost, type FitRequest } from './instance-fit.js';
import type { ServiceRequirement } from './app-definition.js';
import type { LoadedApp } from './app-loader.js';
import type { Logger } from './logger.js';
import { CODE_FILE, writeAtomically, type InstanceRecord, type MoveMark } from './registry.js';
import type { Running } from './running.js';

/**
 * The runtime's side of a live handoff (agent/bridge/DESIGN.md, "Handoff"): the narrow set of
 * operations the bridge drives on an instance, so the bridge never reaches into the agent. The
 * origin describes, pauses, unpauses or hands off a running instance; the destination checks a
 * fit, keeps incoming code, marks an incoming instance durably and starts it. Every registry
 * change here is one atomic write (registry.ts): the durable steps of the two-sided commit.
 */

/** What the origin tells about an instance it offers to move. */
export interface OutgoingInstance {
  instance: string;
  app: string;
  appVersion: string;
  code: string;
  source: string;
  /** Its newest committed store version. */
  version: number;
  lineSize: number;
  maxLines: number;
  wordBits: number;
  minHeapBytes: number;
  /** The app's own word-size requirement, if it has one. */
  requiredWordBits: 32 | 64 | undefined;
  services: ServiceRequirement[];
  /** Resident lines, most recently used first (sent first). */
  hot: number[];
  /** The leases it holds now, by service type. */
  leases: Array<{ type: string; lease: HeldLease }>;
}

/** How an instance arriving in a handoff starts (agent.start): its leases, `onMigrated` with `migrated`. */
export interface Arrival {
  /** Takes over the handed-over leases and leases mapped resources from this device's own services. */
  adopt: (r: Running) => Promise<void>;
  migrated: Record<string, unknown>;
  /** Its heap, opened while the decision was awaited. */
  opened?: Running;
  /** Runs the write of its `running` record (deferred: see commitIncoming). */
  record: (write: () => void) => void;
}

/** A lease the destination takes over, with the time left on it, ms. */
export interface AdoptedLease {
  type: string;
  lease: HeldLease;
  remainingMs: number;
}

/** What the agent lends this part: its state and the steps it already has. */
export interface MovesHost extends FitHost {
  store: Store;
  dataDir: string;
  deviceId: string;
  log: Logger;
  /** Opens and connects an instance from its record, records it running (agent.start). */
  start(rec: InstanceRecord, arrival: Arrival): Promise<unknown>;
  /** Opens an arriving instance's heap without running it (not registered), if `still()` holds once its module is loaded. */
  openAhead(rec: InstanceRecord, still: () => boolean): Promise<Running>;
  /** Compiles an app module into a sandbox for `instance` (app-loader.ts). */
  load(source: string, filename: string, instance: string): Promise<LoadedApp>;
  /** Connects (and ends) a throwaway mailbox session: what an arriving instance's connect costs here, ms. */
  probeSession(): Promise<number>;
  /** Reconnects a paused instance's mailbox session and restarts its timers. */
  reconnect(r: Running): Promise<void>;
  /** The mailbox session of `instance` at this agent's broker (its client id, filter, credentials): a move across brokers drains it. */
  sessionOptions(instance: string): DurableSessionOptions;
}

/** The longest a pause waits for the last burst's answers before the mailbox session closes, ms. */
const ANSWER_WAIT_MS = 500;

export class InstanceMoves {
  /** Instances with a move under way here (either side): lifecycle commands refuse them. */
  private readonly moving = new Set<string>();
  /** Heaps of prepared arriving instances, opened while the decision is awaited (not running), by instance. */
  private readonly ahead = new Map<string, { id: string; opened: Promise<Running | undefined> }>();
  /** Mailbox sessions being closed at a pause, by instance. */
  private readonly closing = new Map<string, Promise<void>>();
  /** Modules of arriving instances compiled ahead, by instance: the switch does not wait for the compiler. */
  private readonly preloaded = new Map<string, { source: string; loaded: Promise<LoadedApp | undefined> }>();

  constructor(private readonly h: MovesHost) {}

  /** Throws MIGRATE_BUSY if `instance` is moving, MIGRATE_MOVED if it moved away or is arriving. */
  checkHere(instance: string): void {
    if (this.moving.has(instance)) throw new FerryError('MIGRATE_BUSY', `instance ${instance} is being moved; wait for the move to end or cancel it (ferry migrate --cancel ${instance})`, { field: 'instance' });
    const rec = this.h.registry.instance(instance);
    if (rec?.state === 'moved') throw new FerryError('MIGRATE_MOVED', `instance ${instance} moved to ${rec.move!.peer} (checkpoint ${rec.move!.version}); it runs there now`, { field: 'instance' });
    if (rec?.state === 'incoming') throw new FerryError('MIGRATE_BUSY', `instance ${instance} is arriving from ${rec.move!.peer}; the move is not decided yet`, { field: 'instance' });
  }

  isRunningHere(instance: string): boolean {
    return this.h.running.has(instance);
  }

  isMoving(instance: string): boolean {
    return this.moving.has(instance);
  }

  /** Marks a move of `instance` under way (MIGRATE_BUSY if one is); returns the release. */
  claim(instance: string): () => void {
    if (this.moving.has(instance)) this.checkHere(instance);
    this.moving.add(instance);
    return () => this.moving.delete(instance);
  }

  // ---- origin ----

  describe(instance: string): OutgoingInstance {
    const r = this.runningOrThrow(instance);
    const def = r.instance.definition;
    const info = this.h.store.appInfo(instance);
    return {
      instance,
      app: r.record.app,
      appVersion: def.version,
      code: codeHash(r.source),
      source: r.source,
      version: r.instance.heapStats().version,
      lineSize: info.lineSize,
      maxLines: info.maxLines,
      wordBits: this.h.profile.wordBits,
      minHeapBytes: def.requirements.minHeapBytes,
      requiredWordBits: def.requirements.wordBits,
      services: def.requirements.services,
      hot: r.instance.recentLines(),
      leases: [...(r.leases?.held ?? [])].map(([type, lease]) => ({ type, lease })),
    };
  }

  /** The newest committed version of a running instance (pre-copy reads it from the store). */
  committedVersion(instance: string): number {
    return this.runningOrThrow(instance).instance.heapStats().version;
  }

  /** The committed version of an instance paused at its bookmark (everything it answered is in it). */
  committedVersionPaused(instance: string): number {
    const r = this.h.running.get(instance);
    if (!r?.paused) throw new FerryError('MIGRATE_PROTOCOL', `instance ${instance} is not paused for a move`, { field: 'instance' });
    return r.instance.heapStats().version;
  }

  /**
   * The bookmark: no handler runs after this. Pending calls are committed (and answered), timers
   * stop, and the mailbox session starts closing (requests not acknowledged stay queued at the
   * broker for whoever connects next; `sessionClosed` waits for it, before anyone else connects);
   * the heap stays open and the leases held, so an abort resumes at once. Returns the committed
   * version every answered call is in.
   */
  pause(instance: string): { version: number } {
    const r = this.runningOrThrow(instance);
    r.paused = true;
    r.runner.stop();
    r.instance.settle(); // outbox entries delivered since the last commit must not be delivered again there
    const s = r.session;
    r.session = undefined;
    // The answers of the last burst reach the broker first: their requests' acknowledgements go on
    // this session, and a request not acknowledged here is redelivered (and answered again) there.
    const answered = Promise.race([Promise.allSettled([...r.answering]), new Promise((w) => setTimeout(w, ANSWER_WAIT_MS))]);
    this.closing.set(instance, answered.then(() => s?.close()).catch(() => undefined));
    return { version: r.instance.heapStats().version };
  }

  /** Resolves when the mailbox session `pause` began closing is closed. */
  async sessionClosed(instance: string): Promise<void> {
    await this.closing.get(instance);
    this.closing.delete(instance);
  }

  /** An aborted move: the paused instance takes requests again (its outbox is handed out afresh). */
  async unpause(instance: string): Promise<void> {
    const r = this.h.running.get(instance);
    if (!r || !r.paused) return;
    await this.sessionClosed(instance);
    r.paused = false;
    r.instance.rehandOutbox();
    r.runner.restart();
    await this.h.reconnect(r);
    // Its commit (at the next turn, with the requests that came meanwhile) hands the outbox out
    // again: timers skipped during the pause fire now.
    r.runner.hook('onResume', { checkpoint: r.instance.heapStats().version, afterAbortedMove: true });
  }

  /**
   * The origin's durable decision: the instance moved to `peer` at `version`. From this write on
   * it never runs here again unless it comes back; its heap stays as the cached version for a
   * return. The in-memory instance is freed and its leases forgotten without being cancelled
   * (the handoff gives them to the destination).
   */
  decide(instance: string, mark: Omit<MoveMark, 'at' | 'prev'>): void {
    const rec = this.h.registry.instance(instance);
    if (!rec) throw new FerryError('APP_UNKNOWN', `no instance ${instance} here`, { field: 'instance' });
    this.h.registry.update((d) => {
      d.instances[instance] = { ...strip(rec), state: 'moved', since: Date.now(), move: { ...mark, at: Date.now() } };
    });
  }

  /** After the decision: frees the paused instance; its leases are left to the handoff (not cancelled). */
  letGo(instance: string): void {
    const r = this.h.running.get(instance);
    if (!r) return;
    this.h.running.delete(instance);
    const services = this.h.services();
    for (const l of r.leases?.held.values() ?? []) services?.alternates.forget(l.leaseId);
    r.leases?.held.clear();
    void r.leases?.release();
    // Freeing the heap waits a turn: it is not on the way to the destination's commit.
    setImmediate(() => r.instance.close());
  }

  /** Cancels leases of the origin's own resources the app held (mapped to the destination's own on arrival). */
  async cancelLeases(leases: HeldLease[]): Promise<void> {
    const s = this.h.services();
    for (const l of leases) await s?.client.cancel(l).catch(() => undefined);
  }

  // ---- offline bundles (agent/bridge/bundles.ts) ----

  /** The registry record of `instance`: a bundle of a suspended instance reads its app and code from it. */
  record(instance: string): InstanceRecord | undefined {
    return this.h.registry.instance(instance);
  }

  /** The module source an instance (not running) opens with: its own file, else its app's installed one. */
  sourceOf(rec: InstanceRecord): string {
    const file = rec.codeFile ?? this.h.registry.app(rec.app)?.file;
    if (!file) throw new FerryError('APP_UNKNOWN', `app ${rec.app} of instance ${rec.instance} is not installed here`, { field: 'app' });
    return readFileSync(join(this.h.dataDir, 'apps', file), 'utf8');
  }

  /**
   * A bundle was cancelled before its import (its recipient recorded the revocation, or the owner
   * forced it): the instance that moved away in move `moveId` is here again, suspended (resumable
   * from the version it left at, which the store kept). False if it is not moved away in that move.
   */
  takeBack(instance: string, moveId: string): boolean {
    const rec = this.h.registry.instance(instance);
    if (rec?.state !== 'moved' || rec.move!.id !== moveId) return false;
    this.h.registry.update((d) => {
      d.instances[instance] = { ...strip(rec), state: 'suspended', since: Date.now() };
    });
    return true;
  }

  // ---- destination ----

  /** Instances that take a place here: running, or arriving (instance-fit.ts). */
  placesTaken(except?: string): number {
    return placesTaken(this.h, except);
  }

  /** AGENT_FULL when `instance` would be one more than maxInstances runs here. */
  checkRoom(instance: string): void {
    checkRoom(this.h, instance);
  }

  /** Whether this device can run the app (instance-fit.ts); MIGRATE_NO_FIT naming what does not fit. */
  checkFit(req: FitRequest): { missing: string[] } {
    return checkFit(this.h, req);
  }

  /** Compiles the module an arriving instance will run (`codeFile`, else the installed one) ahead of its start. */
  preload(instance: string, app: string, codeFile?: string): void {
    const file = codeFile ?? this.h.registry.app(app)?.file;
    if (!file) return;
    let source: string;
    try {
      source = readFileSync(join(this.h.dataDir, 'apps', file), 'utf8');
    } catch {
      return; // the start reads it again and says what is wrong
    }
    this.preloaded.set(instance, { source, loaded: this.h.load(source, file, instance).catch(() => undefined) });
  }

  /** A module compiled ahead for `instance`, if it is this source (used once). */
  async takePreloaded(instance: string, source: string): Promise<LoadedApp | undefined> {
    const p = this.preloaded.get(instance);
    this.preloaded.delete(instance);
    return p && p.source === source ? p.loaded : undefined;
  }

  /** The options of `instance`'s mailbox session at this agent's broker (a move across brokers drains it there). */
  mailboxOptions(instance: string): DurableSessionOptions {
    return this.h.sessionOptions(instance);
  }

  /** Whether `instance` runs here with its mailbox session connected (and so subscribed). */
  sessionUp(instance: string): boolean {
    const r = this.h.running.get(instance);
    return r !== undefined && !r.paused && r.session?.connected === true;
  }

  /** What connecting a mailbox session costs here now, ms (the destination reports it to the origin's estimate). */
  probeSession(): Promise<number> {
    return this.h.probeSession();
  }

  /** Whether this device holds the module with code hash `code` (the installed one for `app`). */
  hasCode(app: string, code: string): boolean {
    const installed = this.h.registry.app(app);
    if (!installed) return false;
    return codeHash(readFileSync(join(this.h.dataDir, 'apps', installed.file), 'utf8')) === code;
  }

  /**
   * Durably marks `instance` as arriving (state `incoming`) before anything of it is stored here,
   * keeping what the record was (a return trip) so an undone move puts it back.
   */
  beginIncoming(instance: string, app: string, mark: { id: string; peer: string }): void {
    const prev = this.h.registry.instance(instance);
    if (this.h.running.has(instance) || (prev && prev.state !== 'moved' && prev.state !== 'incoming')) {
      throw new FerryError('MIGRATE_NO_FIT', `an instance named ${instance} already exists here (${prev?.state ?? 'running'}); remove it first`, { field: 'instance' });
    }
    // A new move from the same origin means its earlier one is over (the origin moves an instance
    // once at a time, and could not move it again had it decided the earlier one): replaced.
    if (prev?.state === 'incoming' && prev.move!.id !== mark.id && prev.move!.peer !== mark.peer) {
      throw new FerryError('MIGRATE_BUSY', `instance ${instance} is arriving from ${prev.move!.peer} in another move not decided yet`, { field: 'instance' });
    }
    if (prev?.state === 'incoming' && prev.move!.id !== mark.id) this.dropAhead(instance);
    // Kept whole: a `moved` record (a return trip) without its move mark is not a valid record, and
    // an undone move must put back one the registry can open again.
    const before = prev?.state === 'incoming' ? prev.move!.prev : prev ? { ...prev } : undefined;
    this.h.registry.update((d) => {
      d.instances[instance] = { instance, app, state: 'incoming', since: Date.now(), move: { ...mark, version: 0, at: Date.now(), ...(before ? { prev: before } : {}) } };
    });
  }

  /**
   * The prepared state: the image is installed as `version`; `code` names the module it runs.
   * Its heap is then opened (not run) while the decision is awaited, so the commit only connects.
   */
  prepared(instance: string, version: number, code: { hash: string; appVersion: string; file?: string }): void {
    const rec = this.incoming(instance);
    this.h.registry.update((d) => {
      d.instances[instance] = { ...rec, code: code.hash, appVersion: code.appVersion, ...(code.file ? { codeFile: code.file } : {}), move: { ...rec.move!, version } };
    });
    const id = rec.move!.id;
    const { move: _, ...plain } = this.h.registry.instance(instance)!;
    const still = () => this.h.registry.instance(instance)?.move?.id === id && this.ahead.get(instance)?.id === id;
    // After the `prepared` answer is on its way (it is what the origin waits for).
    const opened = new Promise<void>((r) => setImmediate(r)).then(() => this.h.openAhead({ ...plain, state: 'running' }, still)).catch(() => undefined);
    this.ahead.set(instance, { id, opened });
  }

  /** Closes a heap opened ahead for an arrival that will not happen. */
  private dropAhead(instance: string): void {
    const a = this.ahead.get(instance);
    this.ahead.delete(instance);
    void a?.opened.then((r) => r?.instance.close());
  }

  /** Keeps a received module: installed as the app if this device has none, else as this instance's own file. */
  keepCode(instance: string, app: string, appVersion: string, source: string): string | undefined {
    const hash = codeHash(source);
    if (!this.h.registry.app(app)) {
      writeAtomically(join(this.h.dataDir, 'apps', `${app}.mjs`), source);
      this.h.registry.update((d) => {
        d.apps[app] = { name: app, version: appVersion, file: `${app}.mjs`, installedAt: Date.now() };
        const rec = d.instances[instance];
        if (rec?.state === 'incoming') rec.move!.installedApp = true;
      });
      return undefined;
    }
    const file = `${instance}@${hash}.mjs`;
    if (!CODE_FILE.test(file)) throw new FerryError('MIGRATE_PROTOCOL', `instance name ${instance} cannot name a module file`, { field: 'instance' });
    writeAtomically(join(this.h.dataDir, 'apps', file), source);
    return file;
  }

  /** The decision was "moved here": the instance runs here now, with the leases handed over. */
  async commitIncoming(instance: string, leases: AdoptedLease[], migrated: { from: string; to: string; downtimeMs: number }, mapped: string[] = []): Promise<void> {
    const rec = this.incoming(instance);
    const at = rec.move!.version;
    const { move: _, ...plain } = rec;
    const a = this.ahead.get(instance);
    this.ahead.delete(instance);
    const opened = a?.id === rec.move!.id ? await a.opened : undefined;
    const own = mapped.filter((t) => !leases.some((l) => l.type === t));
    await this.h.start(
      { ...plain, state: 'running' },
      {
        ...(opened ? { opened } : {}),
        migrated,
        adopt: async (r) => {
          if (!this.h.services() || !r.leases) return;
          for (const l of leases) {
            const req = r.instance.definition.requirements.services.find((x) => x.type === l.type);
            r.leases.adopt(l.type, { ...l.lease, expiresAt: Date.now() + l.remainingMs }, { type: l.type, attrs: req?.attributes });
          }
          if (own.length > 0) await r.leases.acquireOwn(own, this.h.deviceId);
        },
        // After the commit's answer: until then the record says `incoming` (prepared), and a crash
        // before the write asks the origin again, which says `moved`.
        record: (write) =>
          setImmediate(() => {
            try {
              write();
            } catch (e) {
              this.h.log.error('app.record-failed', { instance, error: String(e) });
            }
          }),
      },
    );
    this.h.log.info('app.arrived', { instance, checkpoint: at, from: rec.move!.peer, leases: leases.length });
  }

  /** The move was undone: the record goes back to what it was (or away, with its heap, if the instance was new here). */
  undoIncoming(instance: string, moveId: string): boolean {
    const rec = this.h.registry.instance(instance);
    if (rec?.state !== 'incoming' || rec.move!.id !== moveId) return false;
    const prev = rec.move!.prev;
    this.preloaded.delete(instance);
    this.dropAhead(instance);
    if (rec.codeFile && rec.codeFile !== prev?.codeFile) rmSync(join(this.h.dataDir, 'apps', rec.codeFile), { force: true });
    if (!prev && this.h.store.hasApp(instance)) this.h.store.removeApp(instance);
    // An app this move installed (its code came with it) goes too, unless something else uses it now.
    const uninstall = rec.move!.installedApp === true && !this.h.registry.instances().some((i) => i.app === rec.app && i.instance !== instance);
    const file = this.h.registry.app(rec.app)?.file;
    this.h.registry.update((d) => {
      if (prev) d.instances[instance] = { ...prev };
      else delete d.instances[instance];
      if (uninstall) delete d.apps[rec.app];
    });
    if (uninstall && file) rmSync(join(this.h.dataDir, 'apps', file), { force: true });
    return true;
  }

  /**
   * Drops the heap an instance that moved away left here (a plan step with `keepBackup: false`):
   * its record stays `moved`, so it still cannot run here; a return trip then sends every line.
   */
  dropBackup(instance: string): boolean {
    const rec = this.h.registry.instance(instance);
    if (rec?.state !== 'moved' || this.moving.has(instance) || !this.h.store.hasApp(instance)) return false;
    this.h.store.removeApp(instance);
    return true;
  }

  /** Every instance whose move is undecided here (`incoming`) or decided away (`moved`), for recovery. */
  marked(): InstanceRecord[] {
    return this.h.registry.instances().filter((r) => r.state === 'incoming' || r.state === 'moved');
  }

  private incoming(instance: string): InstanceRecord {
    const rec = this.h.registry.instance(instance);
    if (rec?.state !== 'incoming') throw new FerryError('MIGRATE_PROTOCOL', `instance ${instance} is not arriving here`, { field: 'instance' });
    return rec;
  }

  private runningOrThrow(instance: string): Running {
    const r = this.h.running.get(instance);
    if (r && !r.paused) return r;
    this.checkHere(instance);
    if (!this.h.registry.instance(instance)) throw new FerryError('APP_UNKNOWN', `no instance ${JSON.stringify(instance)} here (ferry apps lists them)`, { field: 'instance' });
    throw new FerryError('APP_NOT_RUNNING', `instance ${instance} is not running here${this.h.registry.instance(instance) ? ` (${this.h.registry.instance(instance)!.state})` : ''}`, { field: 'instance' });
  }
}

function strip(rec: InstanceRecord): Omit<InstanceRecord, 'move'> {
  const { move: _, ...plain } = rec;
  return plain;
}
