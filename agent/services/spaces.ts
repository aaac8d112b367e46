import { Decoder, Encoder } from 'cbor-x';
import { FerryError } from '../../core/errors.js';
import type { Bus, Envelope } from '../../transports/contract.js';
import { randomId, systemClock, type Clock } from './clock.js';
import type { LeaseClient, HeldLease } from './lease-client.js';
import type { LeaseGrantor } from './lease-grantor.js';
import type { Lease, RequestedDuration } from './lease-table.js';
import { readSpaceOptions, type ResolvedSpaceOptions, type SpaceOptions } from './options.js';
import { asMap, duration, requestEnvelope, str, topics, type ServiceDescription } from './protocol.js';
import { Replay } from './replay.js';
import { ServicesLog } from './service-log.js';
import { SpaceStore } from './space-store.js';

/**
 * Spaces (the seed's CNSCS Spaces, JavaSpaces made small): a host keeps entries
 * (CBOR maps); peers write, read and take them by template. Every entry lives
 * under a lease held by its writer at the host's grantor (renew and cancel it
 * like any lease); when the lease ends the entry is gone.
 *
 * - transient: entries in memory at the host, a rendezvous between peers;
 * - persistent: entries in the device's store (store/, app `space.<name>`), one
 *   committed version per write, take, renewal and end, kept across host restarts
 *   with their absolute expiry (the leases are put back into the grantor's table
 *   on open). See space-store.ts and DESIGN.md, "Spaces".
 *
 * Matching: a template field equal to null matches anything; every other field
 * must be present and equal (deep, CBOR data model). Among matches the oldest
 * entry wins, so take is FIFO and deterministic.
 */
export type Entry = Record<string, unknown>;

interface Stored {
  id: string;
  seq: number;
  fields: Entry;
  leaseId: string;
  holder: string;
  expiresAt: number;
}

const enc = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false, pack: false, structuredClone: false, bundleStrings: false });
const dec = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((x, i) => x === b[i]);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual((a as Entry)[k], (b as Entry)[k]));
  }
  return false;
}

/** Template matching: null fields are wildcards, every other field must be equal. */
export function matchesTemplate(entry: Entry, template: Entry): boolean {
  for (const [k, v] of Object.entries(template)) {
    if (v === null || v === undefined) continue;
    if (!Object.prototype.hasOwnProperty.call(entry, k) || !deepEqual(entry[k], v)) return false;
  }
  return true;
}

export class SpaceHost {
  readonly topic: string;
  readonly options: ResolvedSpaceOptions;
  private readonly entries = new Map<string, Stored>();
  private readonly byLease = new Map<string, string>();
  private seq = 0;
  private persisted: SpaceStore | undefined;
  /** Entries whose lease ended, removed from the store together at the next microtask. */
  private ended: string[] = [];
  private readonly replay: Replay;
  private readonly prefix: string;
  private timer: NodeJS.Timeout | undefined;
  private router: SpaceRouter | undefined;
  /** The space's description while it is announced (options.discovery). */
  description: ServiceDescription | undefined;

  private constructor(
    readonly bus: Bus,
    readonly grantor: LeaseGrantor,
    options: SpaceOptions,
    private readonly clock: Clock,
  ) {
    this.options = readSpaceOptions(options);
    this.topic = topics(this.options.topicPrefix).space(bus.deviceId, this.options.name);
    this.prefix = `space:${this.options.name}:`;
    this.replay = new Replay(clock, 120_000, 100_000);
  }

  /** The service name a space is announced under (PROTOCOL §S.6): `space.<name>`. */
  static serviceName(name: string): string {
    return `space.${name}`;
  }

  /**
   * Opens (or creates) the space and serves its topic through the device's SpaceRouter
   * (started here if the bus has none); announces it when `options.discovery` is given.
   */
  static async start(bus: Bus, grantor: LeaseGrantor, options: SpaceOptions, clock: Clock = systemClock): Promise<SpaceHost> {
    const s = new SpaceHost(bus, grantor, options, clock);
    const router = await SpaceRouter.for(bus, s.options.topicPrefix, s.options.log);
    if (router.has(s.options.name)) {
      throw new FerryError('BAD_OPTION', `options.name: device ${bus.deviceId} already hosts a space ${JSON.stringify(s.options.name)}`, { field: 'options.name' });
    }
    s.open();
    router.add(s.options.name, s);
    s.router = router;
    // The grantor sweeps leases; this sweep only wakes it for entries when no request comes by.
    s.timer = setInterval(() => grantor.table.sweep(), s.options.sweepIntervalMs);
    s.timer.unref();
    const discovery = s.options.discovery;
    if (discovery) {
      const name = SpaceHost.serviceName(s.options.name);
      // Leasing the space itself is optional (writes need no lease on it): it lets a holder that
      // found it by lookup be told when the host goes, and move to an alternate.
      grantor.offer(name, { exclusive: false });
      try {
        s.description = await discovery.announce({
          name,
          type: 'space',
          attrs: { space: s.options.name, kind: s.options.kind, maxEntryBytes: s.options.maxEntryBytes },
          exclusive: false,
          callTopic: s.topic,
        });
      } catch (e) {
        await s.close();
        throw e;
      }
    }
    return s;
  }

  get size(): number {
    return this.entries.size;
  }

  private open(): void {
    this.grantor.onEnd((l) => this.onLeaseEnd(l));
    this.grantor.onChange((l) => this.onLeaseChange(l));
    if (this.options.kind !== 'persistent') return;
    const ps = new SpaceStore(this.options.store!, this.options.name, this.options.maxEntryBytes, this.options.maxEntries);
    this.persisted = ps;
    const now = this.clock.now();
    const expired: string[] = [];
    for (const { meta, bytes } of ps.load()) {
      if (meta.expiresAt <= now) {
        expired.push(meta.id);
        continue;
      }
      const s: Stored = { id: meta.id, seq: meta.seq, fields: dec.decode(bytes) as Entry, leaseId: meta.leaseId, holder: meta.holder, expiresAt: meta.expiresAt };
      this.grantor.offer(this.prefix + s.id, { exclusive: false, maxHolders: 1 });
      this.grantor.table.adopt({ id: s.leaseId, resource: this.prefix + s.id, holder: s.holder, exclusive: false, expiresAt: s.expiresAt });
      this.entries.set(s.id, s);
      this.byLease.set(s.leaseId, s.id);
    }
    this.seq = ps.highestSeq;
    ps.remove(expired);
  }

  /** Writes an entry under a lease held by `holder`. */
  write(holder: string, fields: Entry, durationMs: RequestedDuration): { entryId: string; lease: Lease } {
    const bytes = enc.encode(fields);
    if (bytes.length > this.options.maxEntryBytes) {
      throw new FerryError('MESSAGE_TOO_LARGE', `entry is ${bytes.length} bytes; the space takes at most ${this.options.maxEntryBytes} (options.maxEntryBytes)`, {
        field: 'body.entry',
        limit: this.options.maxEntryBytes,
      });
    }
    if (this.entries.size >= this.options.maxEntries) {
      throw new FerryError('LEASE_DENIED', `space ${this.options.name} holds its maximum of ${this.options.maxEntries} entries`, { field: 'body.entry' });
    }
    const id = randomId();
    this.grantor.offer(this.prefix + id, { exclusive: false, maxHolders: 1 });
    let lease: Lease;
    try {
      lease = this.grantor.grantLocal(this.prefix + id, holder, durationMs);
    } catch (e) {
      this.grantor.withdraw(this.prefix + id);
      // The grantor names its own request's field; a space.write has no `service`.
      if (e instanceof FerryError && e.details.field === 'body.service') e.details.field = 'body.entry';
      throw e;
    }
    const s: Stored = { id, seq: ++this.seq, fields, leaseId: lease.id, holder, expiresAt: lease.expiresAt };
    // Persistent: committed (atomic, durable) before the write is answered; a failed commit grants nothing.
    try {
      this.persisted?.add({ id, seq: s.seq, leaseId: s.leaseId, holder, expiresAt: s.expiresAt }, bytes);
    } catch (e) {
      this.grantor.withdraw(this.prefix + id);
      throw e;
    }
    this.entries.set(id, s);
    this.byLease.set(lease.id, id);
    return { entryId: id, lease };
  }

  read(template: Entry): { entryId: string; entry: Entry } {
    const s = this.match(template);
    return { entryId: s.id, entry: s.fields };
  }

  /** Removes and returns the oldest match; its lease ends. */
  take(template: Entry): { entryId: string; entry: Entry } {
    const s = this.match(template);
    // Persistent: the removal is committed before the entry is handed out.
    this.persisted?.remove([s.id]);
    this.remove(s.id);
    this.grantor.withdraw(this.prefix + s.id);
    return { entryId: s.id, entry: s.fields };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    // From now on the device answers requests to this space with SPACE_NOT_FOUND.
    this.router?.remove(this.options.name, this);
    this.router = undefined;
    if (this.description) {
      this.description = undefined;
      const name = SpaceHost.serviceName(this.options.name);
      this.grantor.withdraw(name);
      try {
        await this.options.discovery?.withdraw(name);
      } catch {
        // bus already closed: the will (or the next announcement's absence) tells the others
      }
    }
    this.flushEnded();
    // The store belongs to the device: the space only stops using it.
    this.persisted = undefined;
  }

  private match(template: Entry): Stored {
    this.grantor.table.sweep();
    for (const s of this.entries.values()) if (matchesTemplate(s.fields, template)) return s;
    throw new FerryError('SPACE_NO_MATCH', `no entry in space ${this.options.name} matches the template`, { field: 'body.template' });
  }

  private remove(id: string): void {
    const s = this.entries.get(id);
    if (!s) return;
    this.entries.delete(id);
    this.byLease.delete(s.leaseId);
  }

  /**
   * Removes entries whose lease ended from the store, all in one version. Not
   * urgent for correctness (an entry past its expiry is dropped at open anyway),
   * so a sweep ending many leases costs one commit, not one each.
   */
  private flushEnded(): void {
    const ids = this.ended;
    this.ended = [];
    if (ids.length === 0 || !this.persisted) return;
    try {
      this.persisted.remove(ids);
    } catch {
      // Left in the store: dropped as expired at the next open, or a cancelled one at its expiry.
    }
  }

  private onLeaseEnd(l: Lease): void {
    if (!l.resource.startsWith(this.prefix)) return;
    const id = l.resource.slice(this.prefix.length);
    if (this.entries.has(id)) {
      this.remove(id);
      this.grantor.withdraw(l.resource);
      if (this.persisted) {
        if (this.ended.push(id) === 1) queueMicrotask(() => this.flushEnded());
      }
    }
  }

  private onLeaseChange(l: Lease): void {
    const id = this.byLease.get(l.id);
    const s = id === undefined ? undefined : this.entries.get(id);
    if (!s) return;
    s.expiresAt = l.expiresAt;
    s.holder = l.holder;
    // A renewal or handover is answered after this returns, so the new term is durable first.
    this.persisted?.update(s.id, l.expiresAt, l.holder);
  }

  /** One request whose envelope the router checked (type, sender) and whose body is a map. */
  handle(env: Envelope, body: Record<string, unknown>): unknown {
    const reqId = str(body, 'reqId', 128);
    return this.replay.run(env.from, env.type, reqId, () => {
      switch (env.type) {
        case 'space.write': {
          const entry = asMap(body.entry, 'body.entry');
          const { entryId, lease } = this.write(env.from, entry, duration(body, 'durationMs')!);
          return { entryId, leaseId: lease.id, durationMs: lease.durationMs, leaseTopic: this.grantor.topic };
        }
        case 'space.read':
          return this.read(asMap(body.template, 'body.template'));
        default: // space.take (the router admits only the three types)
          return this.take(asMap(body.template, 'body.template'));
      }
    });
  }

  /** The log of refused requests of this space (options.log). */
  get log(): ServicesLog {
    return this.options.log;
  }
}

/** The requests a space serves on its topic. */
export const SPACE_TYPES = ['space.write', 'space.read', 'space.take'] as const;

/**
 * One per (bus, topic prefix): serves `<prefix>/space/<device>/+` and hands each request to
 * the space named by the topic's last level. A name with no space is refused with
 * SPACE_NOT_FOUND (field `topic`): a request to a space that does not exist is answered,
 * never left in silence. `startServices` starts the device's router (so a device hosting no
 * space refuses too); `SpaceHost.start` starts one on a bus that has none. It stays subscribed
 * until `close()` (Services.close does it).
 */
export class SpaceRouter {
  private static readonly routers = new WeakMap<Bus, Map<string, Promise<SpaceRouter>>>();
  private readonly hosts = new Map<string, SpaceHost>();
  private unserve: (() => Promise<void>) | undefined;
  readonly filter: string;

  private constructor(
    readonly bus: Bus,
    readonly topicPrefix: string,
    private readonly log: ServicesLog,
  ) {
    this.filter = topics(topicPrefix).space(bus.deviceId, '+');
  }

  /** The router of `bus` for `topicPrefix`, started (subscribed) on first use. */
  static for(bus: Bus, topicPrefix = 'ferry/v1', log: ServicesLog = new ServicesLog(undefined)): Promise<SpaceRouter> {
    let byPrefix = SpaceRouter.routers.get(bus);
    if (!byPrefix) SpaceRouter.routers.set(bus, (byPrefix = new Map()));
    let p = byPrefix.get(topicPrefix);
    if (!p) {
      const r = new SpaceRouter(bus, topicPrefix, log);
      const m = byPrefix;
      p = r.start().then(
        () => r,
        (e: unknown) => {
          m.delete(topicPrefix);
          throw e;
        },
      );
      byPrefix.set(topicPrefix, p);
    }
    return p;
  }

  private async start(): Promise<void> {
    this.unserve = await this.bus.serve(this.filter, (env, topic) => this.route(env, topic));
  }

  has(name: string): boolean {
    return this.hosts.has(name);
  }

  add(name: string, host: SpaceHost): void {
    this.hosts.set(name, host);
  }

  remove(name: string, host: SpaceHost): void {
    if (this.hosts.get(name) === host) this.hosts.delete(name);
  }

  /** The names of the spaces served, sorted. */
  names(): string[] {
    return [...this.hosts.keys()].sort();
  }

  /** Stops serving: requests to this device's spaces go unanswered again. */
  async close(): Promise<void> {
    const byPrefix = SpaceRouter.routers.get(this.bus);
    if (byPrefix) byPrefix.delete(this.topicPrefix);
    const u = this.unserve;
    this.unserve = undefined;
    try {
      await u?.();
    } catch {
      // bus already closed
    }
  }

  private route(env: Envelope, topic: string): unknown {
    const name = topic.slice(topic.lastIndexOf('/') + 1);
    const host = this.hosts.get(name);
    try {
      // Envelope first (type, sender), then which space, then the body.
      requestEnvelope(env, SPACE_TYPES, 'a space');
      if (!host) throw new FerryError('SPACE_NOT_FOUND', `device ${this.bus.deviceId} hosts no space ${JSON.stringify(name)}`, { field: 'topic' });
      return host.handle(env, asMap(env.body));
    } catch (e) {
      if (e instanceof FerryError && e.code === 'SERVICE_BAD_REQUEST') (host?.log ?? this.log).badRequest(env, topic, e);
      throw e;
    }
  }
}

/** A peer's side of a space. */
export class SpaceClient {
  constructor(
    readonly client: LeaseClient,
    /** The space's topic (`<prefix>/space/<host>/<name>`). */
    readonly topic: string,
    private readonly timeoutMs = 2000,
  ) {}

  async write(entry: Entry, durationMs: RequestedDuration = 'any'): Promise<{ entryId: string; lease: HeldLease }> {
    const sentAt = this.client.clock.now();
    const r = await this.req<{ entryId: string; leaseId: string; durationMs: number; leaseTopic: string }>('space.write', { entry, durationMs });
    const lease: HeldLease = {
      leaseId: r.leaseId,
      service: `space-entry:${r.entryId}`,
      leaseTopic: r.leaseTopic,
      holder: this.client.bus.deviceId,
      exclusive: false,
      durationMs: r.durationMs,
      expiresAt: sentAt + r.durationMs,
    };
    return { entryId: r.entryId, lease };
  }

  read(template: Entry): Promise<{ entryId: string; entry: Entry }> {
    return this.req('space.read', { template });
  }

  take(template: Entry): Promise<{ entryId: string; entry: Entry }> {
    return this.req('space.take', { template });
  }

  private async req<R>(type: string, body: Record<string, unknown>): Promise<R> {
    // One reqId for every resend: a take that did happen is answered again, never applied twice.
    const reqId = randomId();
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.client.bus.request<R>(this.topic, type, { ...body, reqId }, { timeoutMs: this.timeoutMs })).body;
      } catch (e) {
        if (!(e instanceof FerryError && e.code === 'BUS_TIMEOUT') || attempt >= 2) throw e;
      }
    }
  }
}
