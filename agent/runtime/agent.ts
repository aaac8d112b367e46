import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { getProfile, loadProfileFile, type HwProfile } from '../../hw-profiles/index.js';
import { openStore, type Store } from '../../store/index.js';
import { ENVELOPE_VERSION } from '../../transports/contract.js';
import { DurableSession, type DurableSessionOptions } from '../../transports/durable-session.js';
import { appMailboxTopic } from '../../transports/topics.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../transports/options.js';
import { startServices, type HeldLease, type Services } from '../services/index.js';
import { readAgentOptions, type AgentOptions, type ResolvedAgentOptions } from './agent-options.js';
import { checkModuleFile } from './app-installer.js';
import { AppInstance, type CallOutcome, type OutboxEntry } from './app-instance.js';
import { AppLeases, type LeaseView } from './app-leases.js';
import { NAME } from './app-definition.js';
import { loadApp } from './app-loader.js';
import { AppRunner } from './app-runner.js';
import { inAgentTerms } from './broker-credentials.js';
import { BrokerWatch } from './broker-watch.js';
import { redactUrl } from '../../transports/options.js';
import { Logger } from './logger.js';
import { Registry, writeAtomically, type InstanceRecord, type InstanceState } from './registry.js';

/** One running instance and what serves it. */
interface Running {
  record: InstanceRecord;
  instance: AppInstance;
  runner: AppRunner;
  /** Made once the services are up (recovery opens heaps before connecting). */
  leases: AppLeases | undefined;
  session: DurableSession | undefined;
}

/** What `ferry apps` shows of one instance. */
export interface InstanceView {
  instance: string;
  app: string;
  appVersion: string | undefined;
  /** `failed`: it should run and cannot (see `error`); `ferry resume` tries again. */
  state: InstanceState | 'failed';
  error?: string;
  /** Newest committed checkpoint version (0 before any). */
  checkpoint: number;
  applied: number | undefined;
  /** `maxObjectBytes`: the largest encoded size of one heap object (HEAP_VALUE_TOO_LARGE past it). */
  heap: { residentBytes: number; budgetBytes: number; virtualBytes: number; maxObjectBytes: number } | undefined;
  mailbox: { calls: number; commits: number; maxBatch: number } | undefined;
}


/** Delay before a message that could not be published (the broker away) is tried again, ms. */
const SEND_RETRY_MS = 1000;

/** How often a running instance looks again for a required service it lost or never found, ms. */
const LEASE_RETRY_MS = 500;

/**
 * The agent: several app instances on their heaps in one store, each with its
 * mailbox session, leases and timers; crash recovery at start. See DESIGN.md
 * ("The agent").
 */
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

  private constructor(
    options: ResolvedAgentOptions,
    readonly store: Store,
    readonly registry: Registry,
    profile: HwProfile,
  ) {
    this.options = options;
    this.profile = profile;
    this.log = new Logger(options.logLevel, options.log);
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
      ...(o.brokerUrl !== undefined ? { url: o.brokerUrl } : { broker: { port: o.brokerPort } }),
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

  /** Checks and keeps an app module (`ferry install`). Installing a name again replaces its module; running instances keep theirs until resumed. */
  async install(path: string): Promise<{ name: string; version: string; replaced: boolean }> {
    const m = await checkModuleFile(path, this.options.handlerTimeoutMs);
    const { name, version } = m.definition;
    const replaced = this.registry.app(name) !== undefined;
    const file = `${name}.mjs`;
    writeAtomically(join(this.options.dataDir, 'apps', file), m.source);
    this.registry.update((d) => {
      d.apps[name] = { name, version, file, installedAt: Date.now() };
    });
    this.log.info('app.installed', { app: name, version, replaced });
    return { name, version, replaced };
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
    if (known && known.app !== app) throw new FerryError('APP_EXISTS', `instance ${instance} already exists and runs app ${known.app}`, { field: 'instance' });
    if (this.running.has(instance)) throw new FerryError('APP_EXISTS', `instance ${instance} is already running`, { field: 'instance' });
    try {
      return await this.start({ instance, app, state: 'running', since: Date.now() }, undefined);
    } catch (e) {
      // A new instance that could not start leaves no heap behind (else a later run skips init).
      if (!known && this.store.hasApp(instance)) this.store.removeApp(instance);
      throw e;
    }
  }

  /** Opens an instance (at `version`, or its newest), connects it, records it as running. */
  private async start(rec: InstanceRecord, version: number | undefined): Promise<InstanceView> {
    const r = await this.open(rec, version);
    try {
      await this.connect(r, true);
    } catch (e) {
      await this.shut(r, 'close');
      throw e;
    }
    this.registry.update((d) => {
      d.instances[rec.instance] = { ...rec, state: 'running', since: Date.now() };
    });
    this.failed.delete(rec.instance);
    r.record = this.registry.instance(rec.instance)!;
    this.log.info('app.running', { instance: rec.instance, app: rec.app, checkpoint: r.instance.heapStats().version });
    return this.view(rec.instance);
  }

  private async open(rec: InstanceRecord, version?: number): Promise<Running> {
    const installed = this.registry.app(rec.app);
    if (!installed) throw this.unknownApp(rec.app);
    const source = readFileSync(join(this.options.dataDir, 'apps', installed.file), 'utf8');
    const { definition, sandbox } = await loadApp(source, { filename: installed.file, instance: rec.instance, timeoutMs: this.options.handlerTimeoutMs });
    const min = definition.requirements.minHeapBytes;
    if (min > this.profile.heapBudgetBytes) {
      throw new FerryError('HEAP_NO_MEMORY', `app ${rec.app} needs ${min} bytes of heap; profile ${this.profile.name} gives each app ${this.profile.heapBudgetBytes}`, { field: 'requirements.minHeapBytes' });
    }
    let running: Running | undefined;
    const instance = AppInstance.open({
      instance: rec.instance,
      definition,
      sandbox,
      heap: { store: this.store, profile: this.profile, ...(version !== undefined ? { version } : {}) },
      handlerTimeoutMs: this.options.handlerTimeoutMs,
      rememberReplies: this.options.rememberReplies,
      replayHorizonMs: this.options.replayHorizonMs,
      // Spent ids age only while the mailbox is connected: a broker that was down, or an
      // instance suspended, has not had the time to save what it acknowledged.
      mailboxMs: () => running?.session?.connectedMs() ?? 0,
      host: {
        now: () => Date.now(),
        log: (level, message, data) => this.log.log(level, 'app.log', { instance: rec.instance, message, data }),
        leasesJson: () => JSON.stringify(running?.leases?.view() ?? []),
        app: { name: definition.name, version: definition.version, instance: rec.instance },
      },
    });
    const runner = new AppRunner(
      instance,
      {
        answer: (replyTo, corr, outcome, then) => this.answer(replyTo, corr, outcome, then),
        deliver: (entries) => {
          for (const e of entries) void this.deliver(running!, e);
        },
        warn: (event, data) => this.log.warn(event, data),
        // Only at debug level: the line is built per commit, so at other levels it is not offered.
        ...(this.options.logLevel === 'debug' ? { debug: (event: string, data: Record<string, unknown>) => this.log.debug(event, data) } : {}),
        failed: (e) => {
          // The heap holds changes that were never committed and whose callers were told so:
          // drop them (close, no checkpoint) and take the instance off until it is resumed.
          const r = this.running.get(rec.instance);
          if (r && r.runner === runner) {
            this.fail(rec.instance, 'app.commit-failed', e);
            this.shut(r, 'close').catch((err: unknown) => this.log.error('app.shutdown-failed', { instance: rec.instance, error: String(err) }));
          }
        },
        now: () => Date.now(),
        maxClockSkewMs: 1000,
        // The agent's bus runs with the default limit (§1); its mailbox sessions take the same.
        maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
      },
      this.options.maxBatch,
    );
    running = { record: rec, instance, runner, leases: this.services ? new AppLeases(this.services, definition) : undefined, session: undefined };
    this.running.set(rec.instance, running);
    return running;
  }

  /** Leases, mailbox session, timers, and the outbox left from before a restart. */
  private async connect(r: Running, strict: boolean): Promise<void> {
    const services = this.services!;
    const leases = (r.leases ??= new AppLeases(services, r.instance.definition));
    await leases.acquire(this.options.leaseWaitMs, strict, (type, e) => {
      this.log.warn('lease.missing', { instance: r.record.instance, type, error: String(e) });
      this.lookAgain(r, type);
    });
    r.session = await DurableSession.connect(this.sessionOptions(r.record.instance), (m) => r.runner.onMailbox(m));
    r.runner.startTimers();
    // The hook's commit also hands out the outbox left from before a restart.
    r.runner.hook('onResume', { checkpoint: r.instance.heapStats().version });
    r.runner.flush();
  }

  /** Keeps looking for a lost or missing service while the instance runs. */
  private lookAgain(r: Running, type: string): void {
    r.leases?.retry(type, LEASE_RETRY_MS, (lease) => this.log.info('lease.found', { instance: r.record.instance, type, leaseId: lease.leaseId, provider: lease.description?.provider }));
  }

  private sessionOptions(instance: string): DurableSessionOptions {
    return { ...this.options.credentials, url: this.brokerUrl, clientId: `ferry-app-${instance}`, filter: appMailboxTopic(instance) };
  }

  /**
   * Publishes an answer; `then` (the request's PUBACK) runs once the broker has it, so a
   * crash never leaves an acknowledged request unanswered. An answer too large to send is
   * replaced by a MESSAGE_TOO_LARGE error answer (a retry would get the same record).
   */
  private answer(replyTo: string, corr: string, outcome: CallOutcome, then: () => void): void {
    const bus = this.services?.bus;
    if (!bus) return;
    // A failed outcome is already the `error` body (code, message, field).
    const send = (o: CallOutcome) => {
      if (o.ok) return bus.publish(replyTo, 'app.call.ok', o.body, { corr });
      const { ok: _, ...body } = o;
      return bus.publish(replyTo, 'error', body, { corr });
    };
    send(outcome).then(then, (e: unknown) => {
      if (!isFerryError(e, 'MESSAGE_TOO_LARGE')) {
        // Not acknowledged: the broker redelivers the request and it gets its recorded answer.
        this.log.warn('answer.failed', { replyTo, corr, error: String(e) });
        return;
      }
      send({ ok: false, code: e.code, message: `the answer to ${corr} is too large to send: ${e.message}`, field: 'result' }).then(then, () => undefined);
    });
  }

  /** Hands an outbox entry to the world; the entry leaves the outbox when done (a repeat after a crash is dropped by its id). */
  private async deliver(r: Running, e: OutboxEntry): Promise<void> {
    const bus = this.services?.bus;
    if (!bus) return;
    if (e.kind === 'timer') {
      // Fires once, as a call whose id is the entry's: a fire repeated after a crash is recorded, not run.
      const fire = () => {
        if (this.running.get(r.record.instance) !== r) return; // suspended: the entry is handed out again at resume
        const left = e.at - Date.now();
        if (left > 0) {
          setTimeout(fire, Math.min(left, 2 ** 31 - 1)).unref();
          return;
        }
        try {
          r.runner.call(e.handler, e.body, `${e.id}/fire`, () => r.runner.delivered(e.id));
        } catch (err) {
          this.log.warn('timer.failed', { instance: e.from, error: String(err) });
        }
      };
      fire();
      return;
    }
    if (e.kind === 'send') {
      try {
        await (bus as MqttBus).publishEnvelope(appMailboxTopic(e.to), {
          v: ENVELOPE_VERSION,
          type: 'app.call',
          id: e.id,
          from: e.from,
          ts: Date.now(),
          body: { handler: e.handler, message: e.body },
        });
        r.runner.delivered(e.id);
      } catch (err) {
        if (isFerryError(err, 'MESSAGE_TOO_LARGE') || isFerryError(err, 'BAD_OPTION')) {
          // It can never be sent: drop it rather than fail at every opening.
          this.log.error('send.dropped', { instance: e.from, to: e.to, error: String(err) });
          r.runner.delivered(e.id);
          return;
        }
        this.log.warn('send.failed', { instance: e.from, to: e.to, error: String(err) });
        const retry = setTimeout(() => {
          if (this.running.get(r.record.instance) === r) void this.deliver(r, e);
        }, SEND_RETRY_MS);
        retry.unref();
      }
      return;
    }
    let result: unknown;
    try {
      if (!r.leases) throw new FerryError('SERVICE_NOT_FOUND', 'the agent is not connected yet', { field: 'ctx.request.type' });
      result = { ok: true, body: await r.leases.call(e.type, e.op, e.args) };
    } catch (err) {
      result = isFerryError(err) ? { ok: false, code: err.code, message: err.message } : { ok: false, code: 'REMOTE_ERROR', message: String(err) };
    }
    if (this.running.get(r.record.instance) !== r) return; // suspended meanwhile: redelivered at resume
    try {
      r.runner.call(e.reply, result, `${e.id}/reply`, () => r.runner.delivered(e.id));
    } catch (err) {
      this.log.warn('service.reply-failed', { instance: e.from, error: String(err) });
    }
  }

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
    for (const rec of mine) {
      const r = this.running.get(rec.instance);
      if (r) await this.shut(r, 'close');
      if (this.store.hasApp(rec.instance)) this.store.removeApp(rec.instance);
      if (this.brokerUrl) await DurableSession.discard(this.sessionOptions(rec.instance));
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

  checkpoints(instance?: string): Array<{ instance: string; version: number; createdAt: number; bytes: number; current: boolean }> {
    const ids = instance !== undefined ? [this.known(instance)] : this.registry.instances().map((i) => i.instance);
    return ids.flatMap((id) => (this.store.hasApp(id) ? this.store.versions(id).map((v) => ({ instance: id, version: v.version, createdAt: v.createdAt, bytes: v.bytes + v.stateBytes, current: v.current })) : []));
  }

  /** Makes `version` the newest checkpoint and resumes the instance there if it was running. */
  restore(instance: string, version: number): Promise<InstanceView> {
    return this.exclusive(() => this.restoreNow(instance, version));
  }

  private async restoreNow(instance: string, version: number): Promise<InstanceView> {
    this.known(instance);
    const r = this.running.get(instance);
    if (r) return this.reopenAt(r, version);
    this.checkVersion(instance, version);
    this.store.restore(instance, version);
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
      rssBytes: process.memoryUsage().rss,
      pid: process.pid,
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
    const rec = this.registry.instance(instance);
    const r = this.running.get(instance);
    const hs = r?.instance.heapStats();
    return {
      instance,
      app: rec?.app ?? r?.record.app ?? '?',
      appVersion: this.registry.app(rec?.app ?? '')?.version,
      state: r ? 'running' : this.failed.has(instance) ? 'failed' : (rec?.state ?? 'stopped'),
      ...(this.failed.has(instance) ? { error: this.failed.get(instance) } : {}),
      checkpoint: hs?.version ?? (this.store.hasApp(instance) ? this.store.headVersion(instance) : 0),
      applied: r?.instance.applied,
      heap: hs ? { residentBytes: hs.residentBytes, budgetBytes: hs.budgetBytes, virtualBytes: hs.virtualBytes, maxObjectBytes: hs.maxObjectBytes } : undefined,
      mailbox: r ? { calls: r.runner.stats.calls, commits: r.runner.stats.commits, maxBatch: r.runner.stats.maxBatch } : undefined,
    };
  }

  /** The running instance (tests, the benchmark). */
  runner(instance: string): AppRunner {
    return this.get(instance).runner;
  }

  // ---- helpers ----

  private get(instance: string): Running {
    const r = this.running.get(instance);
    if (r) return r;
    const why = this.failed.get(instance);
    if (why !== undefined) throw new FerryError('APP_NOT_RUNNING', `instance ${instance} failed (${why}); ferry resume ${instance} tries again`, { field: 'instance' });
    if (this.registry.instance(instance)) throw new FerryError('APP_NOT_RUNNING', `instance ${instance} is ${this.registry.instance(instance)!.state}; resume it first`, { field: 'instance' });
    if (this.registry.app(instance)) throw new FerryError('APP_NOT_RUNNING', `app ${instance} is installed but no instance of it runs; start one with ferry run ${instance}`, { field: 'instance' });
    throw this.unknownApp(instance);
  }

  private known(instance: string): string {
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
