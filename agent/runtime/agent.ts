import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { getProfile, loadProfileFile, type HwProfile } from '../../hw-profiles/index.js';
import { openStore, type Store } from '../../store/index.js';
import { withReason } from '../heap/index.js';
import { DurableSession, type DurableSessionOptions } from '../../transports/durable-session.js';
import { appMailboxTopic } from '../../transports/topics.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { startServices, type HeldLease, type Services } from '../services/index.js';
import { readAgentOptions, type AgentOptions, type ResolvedAgentOptions } from './agent-options.js';
import { checkModuleFile } from './app-installer.js';
import { AppLeases, type LeaseView } from './app-leases.js';
import { NAME } from './app-definition.js';
import { loadApp } from './app-loader.js';
import { AppRunner } from './app-runner.js';
import { codeHash, upgradeFailed } from './app-upgrade.js';
import { inAgentTerms } from './broker-credentials.js';
import { BrokerWatch } from './broker-watch.js';
import { redactUrl } from '../../transports/options.js';
import { Logger } from './logger.js';
import { Registry, writeAtomically, type InstanceRecord } from './registry.js';
import type { DeliveryHost } from './outbox-delivery.js';
import type { Running } from './running.js';
import { checkpointViews, instanceView, type CheckpointView, type InstanceView } from './instance-view.js';
import { InstanceMoves, type Arrival } from './instance-moves.js';
import { openRunning, type OpeningHost } from './instance-opening.js';
import { residentBytes } from './resident-memory.js';

/** How often a running instance looks again for a required service it lost or never found, ms. */
const LEASE_RETRY_MS = 500;

/**
 * The agent: several app instances on their heaps in one store, each with its
 * mailbox session, leases and timers; crash recovery at start. See DESIGN.md
 * ("The agent").
 */
export type { InstanceView };

export class Agent {
  readonly options: ResolvedAgentOptions;
  readonly log: Logger;
  readonly profile: HwProfile;
  private readonly running = new Map<string, Running>();
  /** Instances that should run but could not (open or connect failed at recovery, a commit failed): id → why. */
  private readonly failed = new Map<string, string>();
  /** Lifecycle commands (run, resume, suspend, restore, remove) run one at a time. */
  private lifecycle: Promise<unknown> = Promise.resolve();
  private services: Services | undefined;
  private brokerWatch: BrokerWatch | undefined;
  private closed = false;
  private readonly startedAt = Date.now();
  /** The handoff's operations on instances (instance-moves.ts), for the bridge. */
  readonly moves: InstanceMoves;

  private constructor(
    options: ResolvedAgentOptions,
    readonly store: Store,
    readonly registry: Registry,
    profile: HwProfile,
  ) {
    this.options = options;
    this.profile = profile;
    this.log = new Logger(options.logLevel, options.log);
    this.moves = new InstanceMoves({
      running: this.running,
      registry,
      store,
      profile,
      dataDir: options.dataDir,
      deviceId: options.deviceId,
      maxInstances: options.maxInstances,
      log: this.log,
      services: () => this.services,
      start: (rec, arrival) => this.start(rec, undefined, undefined, arrival),
      openAhead: (rec, still) => this.open(rec, undefined, undefined, { still }),
      load: (source, filename, instance) => loadApp(source, { filename, instance, timeoutMs: options.handlerTimeoutMs }),
      reconnect: (r) => this.reconnect(r),
      sessionOptions: (instance) => this.sessionOptions(instance),
      probeSession: () => DurableSession.probe(this.sessionOptions(`ferry-probe-${options.deviceId}`.slice(0, 64).toLowerCase().replace(/[^a-z0-9-]/g, '-'))),
    });
  }

  /**
   * Opens the data directory and resumes every instance that was running
   * (from its last committed checkpoint), then connects: the broker (embedded
   * if no URL), each instance's mailbox session (its queued requests arrive)
   * and its leases.
   */
  static async start(options: AgentOptions): Promise<Agent> {
    const o = readAgentOptions(options);
    const profile = o.profile.endsWith('.json') ? loadProfileFile(o.profile) : getProfile(o.profile);
    mkdirSync(join(o.dataDir, 'apps'), { recursive: true });
    const store = openStore({ dir: join(o.dataDir, 'store'), profile, durability: o.durability, keepVersions: o.keepVersions });
    let agent: Agent;
    try {
      agent = new Agent(o, store, Registry.open(o.dataDir), profile);
    } catch (e) {
      store.close();
      throw e;
    }
    try {
      await agent.recover();
    } catch (e) {
      await agent.close();
      throw e;
    }
    return agent;
  }

  private async recover(): Promise<void> {
    const wanted = this.registry.instances().filter((r) => r.state === 'running');
    // Heaps first: an app is serving again (from its checkpoint) before the network is up.
    for (const rec of wanted) {
      try {
        await this.open(rec);
        this.log.info('app.resumed', { instance: rec.instance, app: rec.app, checkpoint: this.running.get(rec.instance)?.instance.heapStats().version, sinceStartMs: Math.round(process.uptime() * 1000) });
      } catch (e) {
        this.fail(rec.instance, 'app.resume-failed', e);
      }
    }
    const o = this.options;
    this.services = await startServices({
      ...o.credentials,
      deviceId: o.deviceId,
      ...(o.brokerUrl !== undefined ? { url: o.brokerUrl } : { broker: { port: o.brokerPort, persistenceFile: join(o.dataDir, 'broker.db') } }),
      epochFile: join(o.dataDir, 'epoch'),
      grantor: { stateFile: join(o.dataDir, 'grantor.db') },
      system: { profile: this.profile },
      bus: { maxInFlight: 256 },
      // Malformed service requests are logged, rate-limited (PROTOCOL §3.4).
      log: (level, event, fields) => this.log.log(level, event, fields),
    }).catch((e: unknown) => {
      throw inAgentTerms(e, o.credentials, o.brokerUrl);
    });
    const alt = this.services.alternates;
    alt.on('alternate', (old: HeldLease, next: HeldLease) => {
      let claimed = false;
      for (const r of this.running.values()) {
        if (r.leases?.replaced(old, next)) {
          claimed = true;
          this.log.info('lease.moved', { instance: r.record.instance, from: old.leaseId, to: next.leaseId });
        }
      }
      // The instance went away while the replacement was being leased: give it back.
      if (!claimed) {
        alt.forget(next.leaseId);
        void this.services?.client.cancel(next).catch(() => undefined);
      }
    });
    alt.on('unavailable', (old: HeldLease, e: unknown) => {
      for (const r of this.running.values()) {
        const type = r.leases?.lost(old);
        if (type === undefined) continue;
        this.log.warn('lease.lost', { instance: r.record.instance, type, error: String(e) });
        r.runner.hook('onLeaseLost', { type, leaseId: old.leaseId, reason: isFerryError(e) ? e.code : String(e) });
        this.lookAgain(r, type);
      }
    });
    this.brokerWatch = new BrokerWatch(this.services.bus, this.log, redactUrl(this.brokerUrl));
    this.log.info('agent.connected', { deviceId: o.deviceId, broker: redactUrl(this.brokerUrl), embedded: o.brokerUrl === undefined });
    for (const r of [...this.running.values()]) {
      try {
        await this.connect(r, false);
      } catch (e) {
        // One instance's broker trouble (a refused subscription) must not keep the others down.
        await this.shut(r, 'close');
        this.fail(r.record.instance, 'app.connect-failed', e);
      }
    }
  }

  /** Records that an instance should run and cannot; `resume` tries again. */
  private fail(instance: string, event: string, e: unknown): void {
    this.failed.set(instance, isFerryError(e) ? `${e.code}: ${e.message}` : String(e));
    this.log.error(event, { instance, error: String(e) });
  }

  /** Runs lifecycle commands one after another: two resumes of one instance must not open its heap twice. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lifecycle.then(fn, fn);
    this.lifecycle = next.catch(() => undefined);
    return next;
  }

  /** The agent's services stack (bus, discovery, leases), for the parts above the runtime (the bridge); undefined before recovery connects. */
  get connection(): Services | undefined {
    return this.services;
  }

  get brokerUrl(): string {
    return this.options.brokerUrl ?? this.services?.broker?.url ?? '';
  }

  // ---- apps ----

  /**
   * Checks and keeps an app module (`ferry install`). Installing a name again replaces its module;
   * running instances keep their code (listed in `oldCodeRunning`) until `upgrade` or their next opening.
   */
  async install(path: string): Promise<{ name: string; version: string; replaced: boolean; oldCodeRunning: string[] }> {
    const m = await checkModuleFile(path, this.options.handlerTimeoutMs);
    const { name, version } = m.definition;
    const replaced = this.registry.app(name) !== undefined;
    const file = `${name}.mjs`;
    writeAtomically(join(this.options.dataDir, 'apps', file), m.source);
    this.registry.update((d) => {
      d.apps[name] = { name, version, file, installedAt: Date.now() };
    });
    const oldCodeRunning = [...this.running.values()].filter((r) => r.record.app === name && r.source !== m.source).map((r) => r.record.instance);
    this.log.info('app.installed', { app: name, version, replaced, ...(oldCodeRunning.length > 0 ? { oldCodeRunning } : {}) });
    return { name, version, replaced, oldCodeRunning };
  }

  /** Moves a running instance to its app's installed code on the same heap (`ferry upgrade`; app-upgrade.ts). */
  upgrade(instance: string): Promise<InstanceView & { from: string; to: string; upgraded: boolean }> {
    return this.exclusive(async () => {
      this.checkOpen();
      const r = this.running.get(instance);
      const rec = this.registry.instance(instance);
      if (!rec) throw this.unknownApp(instance);
      this.moves.checkHere(instance);
      if (!r) throw new FerryError('APP_NOT_RUNNING', `instance ${instance} is ${this.failed.has(instance) ? 'failed' : rec.state}: it opens with the installed code (and runs its onUpgrade) when resumed (ferry resume ${instance})`, { field: 'instance' });
      const installed = this.registry.app(rec.app)!;
      const source = readFileSync(join(this.options.dataDir, 'apps', installed.file), 'utf8');
      const from = r.instance.definition.version;
      if (source === r.source) return { ...this.view(instance), from, to: from, upgraded: false };
      r.runner.stop();
      const at = r.instance.heapStats().version;
      await this.shut(r, 'close');
      try {
        return { ...(await this.start(r.record, undefined)), from, to: installed.version, upgraded: true };
      } catch (e) {
        // Back to the old code at the version it committed (which becomes the newest again).
        await this.start(r.record, at, r.source).catch((back: unknown) => {
          this.fail(instance, 'app.upgrade-rollback-failed', back);
          throw back;
        });
        this.log.warn('app.upgrade-failed', { instance, from, to: installed.version, error: String(e) });
        throw isFerryError(e, 'APP_UPGRADE_FAILED') ? e : upgradeFailed(instance, { fromVersion: from, toVersion: installed.version, fromCode: codeHash(r.source), toCode: codeHash(source) }, String(e), e);
      }
    });
  }

  /** Starts an instance of an installed app (`ferry run`); a new one runs `init`. */
  run(app: string, instance = app): Promise<InstanceView> {
    return this.exclusive(() => this.runNow(app, instance));
  }

  private async runNow(app: string, instance: string): Promise<InstanceView> {
    this.checkOpen();
    if (!this.registry.app(app)) throw this.unknownApp(app);
    if (typeof instance !== 'string' || !NAME.test(instance)) {
      throw new FerryError('BAD_OPTION', `instance must be 1..64 of a-z 0-9 - starting with a letter, got ${JSON.stringify(instance)}`, { field: 'instance' });
    }
    const known = this.registry.instance(instance);
    this.moves.checkHere(instance);
    if (known && known.app !== app) throw new FerryError('APP_EXISTS', `instance ${instance} already exists and runs app ${known.app}`, { field: 'instance' });
    if (this.running.has(instance)) throw new FerryError('APP_EXISTS', `instance ${instance} is already running`, { field: 'instance' });
    this.moves.checkRoom(instance);
    try {
      return await this.start({ instance, app, state: 'running', since: Date.now() }, undefined);
    } catch (e) {
      // A new instance that could not start leaves no heap behind (else a later run skips init).
      if (!known && this.store.hasApp(instance)) this.store.removeApp(instance);
      throw e;
    }
  }

  /** Opens an instance (at `version`, or its newest), connects it, records it as running. */
  private async start(rec: InstanceRecord, version: number | undefined, source?: string, arrival?: Arrival): Promise<InstanceView> {
    const r = arrival?.opened ?? (await this.open(rec, version, source));
    this.running.set(rec.instance, r); // (an arrival's heap was opened ahead, unregistered)
    try {
      await arrival?.adopt(r);
      // An arrival's queued requests wait until the commit's answer has left: the origin counts the
      // downtime to that answer, and the requests are answered a moment later either way.
      if (arrival) r.runner.hold();
      await this.connect(r, arrival === undefined, arrival?.migrated);
    } catch (e) {
      await this.shut(r, 'close');
      throw e;
    }
    const record = (): void => {
      if (this.running.get(rec.instance) !== r) return;
      this.registry.update((d) => {
        const { move: _, ...plain } = rec;
        d.instances[rec.instance] = { ...plain, state: 'running', since: Date.now(), code: codeHash(r.source), appVersion: r.instance.definition.version };
      });
      r.record = this.registry.instance(rec.instance)!;
    };
    this.failed.delete(rec.instance);
    if (arrival) {
      arrival.record(() => {
        try {
          record();
        } finally {
          r.runner.release();
        }
      });
    } else record();
    this.log.info('app.running', { instance: rec.instance, app: rec.app, checkpoint: r.instance.heapStats().version });
    return this.view(rec.instance);
  }

  /** Loads an instance's module and opens its heap; `ahead` (an arriving instance): not registered as running, and only if `ahead.still()` holds once the module is loaded. */
  private async open(rec: InstanceRecord, version?: number, code?: string, ahead?: { still: () => boolean }): Promise<Running> {
    const installed = this.registry.app(rec.app);
    if (!installed) throw this.unknownApp(rec.app);
    const file = rec.codeFile ?? installed.file;
    const source = code ?? readFileSync(join(this.options.dataDir, 'apps', file), 'utf8');
    // An arriving instance's module was compiled while its heap was on the way (instance-moves.ts).
    const { definition, sandbox } = (await this.moves.takePreloaded(rec.instance, source)) ?? (await loadApp(source, { filename: file, instance: rec.instance, timeoutMs: this.options.handlerTimeoutMs }));
    if (ahead && !ahead.still()) throw new FerryError('MIGRATE_ABORTED', `the move of ${rec.instance} ended before its heap was opened`, { field: 'instance' });
    const min = definition.requirements.minHeapBytes;
    if (min > this.profile.heapBudgetBytes) {
      throw new FerryError('HEAP_NO_MEMORY', `app ${rec.app} needs ${min} bytes of heap; profile ${this.profile.name} gives each app ${this.profile.heapBudgetBytes}`, { field: 'requirements.minHeapBytes' });
    }
    const bits = definition.requirements.wordBits;
    if (bits !== undefined && bits !== this.profile.wordBits) {
      throw new FerryError('APP_UNSUPPORTED', `app ${rec.app} requires a ${bits}-bit device; profile ${this.profile.name} is ${this.profile.wordBits}-bit`, { field: 'requirements.wordBits' });
    }
    const running = openRunning(this.opening, rec, { definition, sandbox, source, ...(version !== undefined ? { version } : {}) });
    if (!ahead) this.running.set(rec.instance, running);
    return running;
  }

  /**
   * Leases, mailbox session, timers, and the outbox left from before a restart; an arrived instance
   * runs `onMigrated` instead of `onResume`. Not `strict` (recovery, an arrival: it must run, the
   * move is decided): a required service that cannot be leased now is looked for again while it runs.
   */
  private async connect(r: Running, strict: boolean, migrated?: Record<string, unknown>): Promise<void> {
    const services = this.services!;
    const leases = (r.leases ??= new AppLeases(services, r.instance.definition));
    await leases.acquire(this.options.leaseWaitMs, strict, (type, e) => {
      this.log.warn('lease.missing', { instance: r.record.instance, type, error: String(e) });
      this.lookAgain(r, type);
    });
    await this.reconnect(r);
    // The hook's commit also hands out the outbox left from before a restart.
    // An arrival's hook commits at the next turn, with the requests that came meanwhile (group
    // commit), after the commit's answer left: it is running from the moment its session is up.
    if (migrated) r.runner.hook('onMigrated', { ...migrated, checkpoint: r.instance.heapStats().version });
    else {
      r.runner.hook('onResume', { checkpoint: r.instance.heapStats().version });
      r.runner.flush();
    }
  }

  /** The mailbox session and timers (also after a handoff's pause that was aborted). */
  private async reconnect(r: Running): Promise<void> {
    r.session = await DurableSession.connect(this.sessionOptions(r.record.instance), (m) => r.runner.onMailbox(m)).catch((e: unknown) => {
      throw inAgentTerms(e, this.options.credentials, this.options.brokerUrl); // names the agent's own option
    });
    r.runner.startTimers();
  }

  /** Keeps looking for a lost or missing service while the instance runs. */
  private lookAgain(r: Running, type: string): void {
    r.leases?.retry(type, LEASE_RETRY_MS, (lease) => this.log.info('lease.found', { instance: r.record.instance, type, leaseId: lease.leaseId, provider: lease.description?.provider }));
  }

  private sessionOptions(instance: string): DurableSessionOptions {
    return { ...this.options.credentials, url: this.brokerUrl, clientId: `ferry-app-${instance}`, filter: appMailboxTopic(instance) };
  }

  /** What instance-opening.ts needs of the agent. */
  private readonly opening: OpeningHost = {
    store: () => this.store,
    profile: () => this.profile,
    options: () => this.options,
    log: () => this.log,
    services: () => this.services,
    delivery: () => this.delivery,
    // The heap holds changes that were never committed and whose callers were told so: drop them
    // (close, no checkpoint) and take the instance off until it is resumed.
    failed: (instance, runner, e) => {
      const r = this.running.get(instance);
      if (r && r.runner === runner) {
        this.fail(instance, 'app.commit-failed', e);
        this.shut(r, 'close').catch((err: unknown) => this.log.error('app.shutdown-failed', { instance, error: String(err) }));
      }
    },
  };

  /** What outbox-delivery.ts needs of the agent. */
  private readonly delivery: DeliveryHost = {
    bus: () => this.services?.bus as MqttBus | undefined,
    warn: (event, fields) => this.log.warn(event, fields),
    error: (event, fields) => this.log.error(event, fields),
    isCurrent: (r) => this.running.get(r.record.instance) === r && r.paused !== true,
  };

  /** Runs a handler (`ferry call`) and returns its result after the commit; an app error is thrown as a FerryError. */
  async call(instance: string, handler: string, message: unknown): Promise<unknown> {
    const r = this.get(instance);
    const { outcome } = await r.runner.callAsync(handler, message === undefined ? null : message);
    if (outcome.ok) return outcome.body;
    throw new FerryError(outcome.code as 'APP_HANDLER_FAILED', outcome.message, { field: outcome.field ?? 'handler', instance });
  }

  /** Checkpoints an instance, releases its leases, frees its heap; its requests queue at the broker. */
  suspend(instance: string, state: 'suspended' | 'stopped' = 'suspended'): Promise<InstanceView> {
    return this.exclusive(() => this.suspendNow(instance, state));
  }

  private async suspendNow(instance: string, state: 'suspended' | 'stopped'): Promise<InstanceView> {
    const rec = this.registry.instance(instance);
    if (!rec) throw this.unknownApp(instance);
    this.moves.checkHere(instance);
    const r = this.running.get(instance);
    if (r) await this.shut(r, 'suspend');
    this.registry.update((d) => {
      d.instances[instance] = { ...rec, state, since: Date.now() };
    });
    this.failed.delete(instance);
    this.log.info(state === 'stopped' ? 'app.stopped' : 'app.suspended', { instance });
    return this.view(instance);
  }

  stop(instance: string): Promise<InstanceView> {
    return this.suspend(instance, 'stopped');
  }

  /** Resumes a suspended or stopped instance, from its newest checkpoint or `version` (which becomes the newest). */
  resume(instance: string, version?: number): Promise<InstanceView> {
    return this.exclusive(() => this.resumeNow(instance, version));
  }

  private async resumeNow(instance: string, version: number | undefined): Promise<InstanceView> {
    this.checkOpen();
    const rec = this.registry.instance(instance);
    if (!rec) throw this.unknownApp(instance);
    this.moves.checkHere(instance);
    const r = this.running.get(instance);
    if (r) {
      if (version === undefined) throw new FerryError('APP_EXISTS', `instance ${instance} is already running`, { field: 'instance' });
      return this.reopenAt(r, version);
    }
    if (version !== undefined) this.checkVersion(instance, version);
    return this.start(rec, version);
  }

  /**
   * Moves a running instance to checkpoint `version`. Its pending calls are committed
   * first, without the extra checkpoint a suspend writes (which could push the oldest
   * kept version out); if `version` is not there, the instance goes on at its newest.
   */
  private async reopenAt(r: Running, version: number): Promise<InstanceView> {
    r.runner.stop();
    let missing: unknown;
    try {
      this.checkVersion(r.record.instance, version);
    } catch (e) {
      missing = e;
    }
    await this.shut(r, 'close');
    if (missing !== undefined) {
      await this.start(r.record, undefined);
      throw missing;
    }
    return this.start(r.record, version);
  }

  /** Removes an app: its instances (heaps, checkpoints, mailbox sessions) and its module. */
  remove(app: string): Promise<{ removed: string[] }> {
    return this.exclusive(() => this.removeNow(app));
  }

  private async removeNow(app: string): Promise<{ removed: string[] }> {
    if (!this.registry.app(app)) throw this.unknownApp(app);
    const mine = this.registry.instances().filter((i) => i.app === app);
    for (const rec of mine) if (this.moves.isMoving(rec.instance) || rec.state === 'incoming') this.moves.checkHere(rec.instance);
    for (const rec of mine) {
      const r = this.running.get(rec.instance);
      if (r) await this.shut(r, 'close');
      if (this.store.hasApp(rec.instance)) this.store.removeApp(rec.instance);
      // A moved instance's mailbox session is the one it uses where it runs now: left alone.
      if (this.brokerUrl && rec.state !== 'moved') await DurableSession.discard(this.sessionOptions(rec.instance));
    }
    const file = this.registry.app(app)!.file;
    this.registry.update((d) => {
      for (const rec of mine) delete d.instances[rec.instance];
      delete d.apps[app];
    });
    rmSync(join(this.options.dataDir, 'apps', file), { force: true });
    this.log.info('app.removed', { app, instances: mine.map((i) => i.instance) });
    return { removed: mine.map((i) => i.instance) };
  }

  // ---- checkpoints ----

  /** Kept versions of one instance or of all (`checkpointViews`). */
  checkpoints(instance?: string): CheckpointView[] {
    const ids = instance !== undefined ? [this.known(instance)] : this.registry.instances().map((i) => i.instance);
    return ids.flatMap((id) => checkpointViews(this.store, id));
  }

  /** Makes `version` the newest checkpoint and resumes the instance there if it was running. */
  restore(instance: string, version: number): Promise<InstanceView> {
    return this.exclusive(() => this.restoreNow(instance, version));
  }

  private async restoreNow(instance: string, version: number): Promise<InstanceView> {
    this.known(instance);
    this.moves.checkHere(instance);
    const r = this.running.get(instance);
    if (r) return this.reopenAt(r, version);
    this.checkVersion(instance, version);
    this.store.restore(instance, version, withReason(this.store.readState(instance, { version }), instance, `restore of ${version}`));
    return this.view(instance);
  }

  removeCheckpoint(instance: string, version: number): { instance: string; version: number } {
    this.known(instance);
    this.checkVersion(instance, version);
    if (this.store.headVersion(instance) === version) {
      throw new FerryError('BAD_OPTION', `version ${version} is the newest checkpoint of ${instance}; restore another version first`, { field: 'version' });
    }
    this.store.removeVersion(instance, version);
    return { instance, version };
  }

  // ---- views ----

  status(): Record<string, unknown> {
    return {
      deviceId: this.options.deviceId,
      profile: this.profile.name,
      dataDir: this.options.dataDir,
      broker: redactUrl(this.brokerUrl),
      embeddedBroker: this.options.brokerUrl === undefined,
      ...(this.brokerWatch?.view() ?? { brokerConnected: false, brokerReconnects: 0 }),
      uptimeMs: Date.now() - this.startedAt,
      apps: this.registry.apps().length,
      running: this.running.size,
      rssBytes: residentBytes(),
      pid: process.pid,
      // What the store wrote to flash: line bytes into its segment file, and its commits (each a few page writes more).
      store: (({ commits, segmentBytesWritten }) => ({ commits, segmentBytesWritten }))(this.store.stats()),
    };
  }

  apps(): { apps: Array<{ name: string; version: string; installedAt: number }>; instances: InstanceView[] } {
    return {
      apps: this.registry.apps().map(({ name, version, installedAt }) => ({ name, version, installedAt })),
      instances: this.registry.instances().map((i) => this.view(i.instance)),
    };
  }

  serviceList(): unknown[] {
    return this.services?.discovery.all() ?? [];
  }

  leases(): Array<LeaseView & { instance: string }> {
    return [...this.running.values()].flatMap((r) => (r.leases?.view() ?? []).map((l) => ({ instance: r.record.instance, ...l })));
  }

  view(instance: string): InstanceView {
    return instanceView(instance, { registry: this.registry, store: this.store, running: this.running.get(instance), failed: this.failed.get(instance) });
  }

  /** The running instance (tests, the benchmark). */
  runner(instance: string): AppRunner {
    return this.get(instance).runner;
  }

  // ---- helpers ----

  private get(instance: string): Running {
    const r = this.running.get(instance);
    if (r && !r.paused) return r;
    this.moves.checkHere(instance);
    if (r) return r;
    const why = this.failed.get(instance);
    if (why !== undefined) throw new FerryError('APP_NOT_RUNNING', `instance ${instance} failed (${why}); ferry resume ${instance} tries again`, { field: 'instance' });
    if (this.registry.instance(instance)) throw new FerryError('APP_NOT_RUNNING', `instance ${instance} is ${this.registry.instance(instance)!.state}; resume it first`, { field: 'instance' });
    if (this.registry.app(instance)) throw new FerryError('APP_NOT_RUNNING', `app ${instance} is installed but no instance of it runs; start one with ferry run ${instance}`, { field: 'instance' });
    throw this.unknownApp(instance);
  }

  /** The id of a known instance, else APP_UNKNOWN (checkpoints, restore, `ferry logs`). */
  known(instance: string): string {
    if (!this.registry.instance(instance)) throw this.unknownApp(instance);
    return instance;
  }

  private checkVersion(instance: string, version: number): void {
    if (!Number.isInteger(version) || version < 1) throw new FerryError('BAD_OPTION', `version must be a positive integer, got ${String(version)}`, { field: 'version' });
    if (!this.store.hasApp(instance) || !this.store.versions(instance).some((v) => v.version === version)) {
      throw new FerryError('STORE_UNKNOWN_VERSION', `instance ${instance} has no checkpoint version ${version} (ferry checkpoints ${instance})`, { field: 'version' });
    }
  }

  private unknownApp(name: string): FerryError {
    const names = [...new Set([...this.registry.apps().map((a) => a.name), ...this.registry.instances().map((i) => i.instance)])];
    return new FerryError('APP_UNKNOWN', `no app or instance ${JSON.stringify(name)} here (${names.length ? `have: ${names.join(', ')}` : 'nothing installed; ferry install <path>'})`, { field: 'app' });
  }

  private checkOpen(): void {
    if (this.closed) throw new FerryError('APP_NOT_RUNNING', 'the agent is shutting down', { field: 'agent' });
  }

  /** Takes an instance off: `suspend` checkpoints first, `close` drops what is uncommitted (nothing was answered). */
  private async shut(r: Running, how: 'suspend' | 'close'): Promise<void> {
    this.running.delete(r.record.instance);
    r.runner.stop();
    await r.session?.close();
    await r.leases?.release();
    if (how === 'suspend') {
      try {
        r.instance.suspend();
      } catch (e) {
        // What was answered is committed already; free the heap without the checkpoint.
        this.log.error('app.suspend-failed', { instance: r.record.instance, error: String(e) });
        r.instance.close();
        throw e;
      }
    } else r.instance.close();
  }

  /** Shuts down: every instance is checkpointed (and stays `running` in the registry, so the next start resumes it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.lifecycle;
    for (const r of [...this.running.values()]) {
      try {
        await this.shut(r, 'suspend');
      } catch (e) {
        this.log.error('app.shutdown-failed', { instance: r.record.instance, error: String(e) });
      }
    }
    this.brokerWatch?.close();
    await this.services?.close();
    this.store.close();
    this.log.info('agent.stopped', {});
  }
}
