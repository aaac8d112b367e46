import { EventEmitter } from 'node:events';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { FerryError } from '../../core/errors.js';
import type { Bus, BusWill, Envelope } from '../../transports/contract.js';
import { readDiscoveryOptions, topicLevel, type DiscoveryOptions } from './options.js';
import { SCHEMA, asMap, checkAttrs, parseDescription, topics, type ServiceDescription } from './protocol.js';

/**
 * A device's connection epoch (Sparkplug's bdSeq): a number that grows on every
 * MQTT connection, carried by both the service announcements of that connection
 * and its last will. Persisted (decimal text, replaced atomically by rename) so it
 * also grows across restarts.
 */
export class ConnectionEpoch {
  private value: number;
  constructor(
    readonly deviceId: string,
    private readonly file?: string,
    readonly topicPrefix = 'ferry/v1',
  ) {
    topicLevel(deviceId, 'deviceId');
    let stored = 0;
    if (file) {
      try {
        stored = Number.parseInt(readFileSync(file, 'utf8').trim(), 10) || 0;
      } catch {
        stored = 0; // first start: no file yet
      }
    }
    this.value = stored;
  }

  get current(): number {
    return this.value;
  }

  /** Moves to the next epoch (call once per connection attempt). */
  next(): number {
    this.value = this.file ? this.value + 1 : Math.max(this.value + 1, Date.now());
    if (this.file) {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, `${this.value}\n`, { flush: true });
      renameSync(tmp, this.file);
    }
    return this.value;
  }

  /** The bus `will` option: a function, so every (re)connection gets the next epoch. */
  will(): () => BusWill {
    return () => ({ topic: topics(this.topicPrefix).death(this.deviceId), type: 'svc.death', body: { provider: this.deviceId, epoch: this.next() }, retain: true, qos: 1 });
  }
}

/**
 * The removal rule, as a pure function: a description is live iff its epoch is
 * greater than the newest death epoch known for its provider. Order-independent,
 * so a late will (older epoch) can never cancel a newer announcement, and a
 * newcomer reading retained messages in any order reaches the same view.
 */
export function isLive(desc: { epoch: number }, deathEpoch: number | undefined): boolean {
  return deathEpoch === undefined || desc.epoch > deathEpoch;
}

/** Lookup template: a type and attributes that must all be equal. */
export interface ServiceQuery {
  type: string;
  attrs?: Record<string, string | number | boolean>;
  /** Service ids to leave out (e.g. the one that just died). */
  exclude?: string[];
}

export function matches(d: ServiceDescription, q: ServiceQuery): boolean {
  if (d.type !== q.type) return false;
  if (q.exclude?.includes(d.id)) return false;
  for (const [k, v] of Object.entries(q.attrs ?? {})) if (d.attrs[k] !== v) return false;
  return true;
}

/** What a provider announces (the rest is filled in). */
export interface Offer {
  name: string;
  type: string;
  attrs?: Record<string, string | number | boolean>;
  exclusive: boolean;
  maxHolders?: number;
  callTopic?: string;
}

export type DownReason = 'death' | 'withdrawn';

/**
 * Discovery, join and lookup. Every device subscribes to all retained service
 * descriptions and death notices and keeps the live view; a provider also
 * announces its own services (retained), again after every reconnection with the
 * new epoch.
 *
 * Events: `up` (description), `down` (description, reason).
 */
export class Discovery extends EventEmitter {
  private readonly t: ReturnType<typeof topics>;
  private readonly known = new Map<string, ServiceDescription>();
  /** The envelope id of the announcement each known description came from. */
  private readonly announceIds = new Map<string, string>();
  /**
   * Per service id, the envelope id of an announcement a withdrawal superseded. A broker may
   * deliver a retained replay (read before the withdrawal replaced it) after the live
   * withdrawal; it carries the same envelope id, and must not bring the service back.
   */
  private readonly withdrawnIds = new Map<string, string>();
  private readonly deaths = new Map<string, number>();
  private readonly mine = new Map<string, Offer>();
  private readonly unsubs: (() => Promise<void>)[] = [];
  private readonly onConnect = () => void this.reannounce();
  private readonly o: ReturnType<typeof readDiscoveryOptions>;

  private constructor(
    readonly bus: Bus,
    /** The epoch source whose will the bus was created with; absent for a device that only looks up. */
    readonly epoch: ConnectionEpoch | undefined,
    options: DiscoveryOptions,
  ) {
    super();
    this.o = readDiscoveryOptions(options);
    this.t = topics(this.o.topicPrefix);
  }

  static async start(bus: Bus, epoch?: ConnectionEpoch, options: DiscoveryOptions = {}): Promise<Discovery> {
    const d = new Discovery(bus, epoch, options);
    d.unsubs.push(await bus.subscribe(d.t.deathFilter, (env, topic) => d.onDeath(env, topic)));
    d.unsubs.push(await bus.subscribe(d.t.announceFilter, (env, topic) => d.onAnnounce(env, topic)));
    bus.on('connect', d.onConnect);
    return d;
  }

  /** Announces (or re-announces) a service of this device. Retained, carries the current epoch. */
  async announce(offer: Offer): Promise<ServiceDescription> {
    if (!this.epoch) throw new FerryError('BAD_OPTION', 'this Discovery was started without a ConnectionEpoch, so it cannot announce (its bus has no will)', { field: 'epoch' });
    topicLevel(offer.name, 'offer.name');
    checkAttrs(offer.attrs, 'offer.attrs');
    this.mine.set(offer.name, offer);
    const d = this.describe(offer);
    await this.bus.publish(this.t.announce(this.bus.deviceId, offer.name), 'svc.announce', d, { retain: true });
    return d;
  }

  /** Withdraws a service: a retained `svc.withdraw` replaces its description. */
  async withdraw(name: string): Promise<void> {
    this.mine.delete(name);
    await this.bus.publish(this.t.announce(this.bus.deviceId, name), 'svc.withdraw', { id: `${this.bus.deviceId}/${name}`, epoch: this.epoch?.current ?? 0 }, { retain: true });
  }

  /** Live services matching the query, sorted by id (stable choice of alternates). */
  lookup(q: ServiceQuery): ServiceDescription[] {
    const out: ServiceDescription[] = [];
    for (const d of this.known.values()) if (isLive(d, this.deaths.get(d.provider)) && matches(d, q)) out.push(d);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The first live match, or SERVICE_NOT_FOUND. */
  find(q: ServiceQuery): ServiceDescription {
    const [d] = this.lookup(q);
    if (!d) throw new FerryError('SERVICE_NOT_FOUND', `no live service of type ${JSON.stringify(q.type)} matches ${JSON.stringify(q.attrs ?? {})}`, { field: 'type' });
    return d;
  }

  /** Waits until a match is live (retained messages arrive just after subscribing). */
  async waitFor(q: ServiceQuery, timeoutMs = 5000): Promise<ServiceDescription> {
    const now = this.lookup(q)[0];
    if (now) return now;
    return new Promise((resolve, reject) => {
      const onUp = () => {
        const d = this.lookup(q)[0];
        if (d) {
          clearTimeout(timer);
          this.off('up', onUp);
          resolve(d);
        }
      };
      const timer = setTimeout(() => {
        this.off('up', onUp);
        reject(new FerryError('SERVICE_NOT_FOUND', `no live service of type ${JSON.stringify(q.type)} appeared within ${timeoutMs} ms`, { field: 'type' }));
      }, timeoutMs);
      this.on('up', onUp);
    });
  }

  /** Every live service known, sorted by id (the `ferry services` listing). */
  all(): ServiceDescription[] {
    return [...this.known.values()].filter((d) => this.isLive(d.id)).sort((a, b) => a.id.localeCompare(b.id));
  }

  isLive(id: string): boolean {
    const d = this.known.get(id);
    return d !== undefined && isLive(d, this.deaths.get(d.provider));
  }

  async close(): Promise<void> {
    this.bus.off('connect', this.onConnect);
    for (const u of this.unsubs.splice(0)) {
      try {
        await u();
      } catch {
        // bus already closed
      }
    }
  }

  private describe(offer: Offer): ServiceDescription {
    const dev = this.bus.deviceId;
    return {
      schema: SCHEMA,
      id: `${dev}/${offer.name}`,
      name: offer.name,
      type: offer.type,
      attrs: offer.attrs ?? {},
      provider: dev,
      exclusive: offer.exclusive,
      ...(offer.maxHolders !== undefined ? { maxHolders: offer.maxHolders } : {}),
      epoch: this.epoch!.current,
      leaseTopic: this.t.lease(dev),
      ...(offer.callTopic !== undefined ? { callTopic: offer.callTopic } : {}),
    };
  }

  private async reannounce(): Promise<void> {
    for (const offer of this.mine.values()) {
      try {
        await this.bus.publish(this.t.announce(this.bus.deviceId, offer.name), 'svc.announce', this.describe(offer), { retain: true });
      } catch {
        // Lost again; the next connect re-announces.
      }
    }
  }

  private onDeath(env: Envelope, topic: string): void {
    let provider: string;
    let epoch: number;
    try {
      const b = asMap(env.body);
      provider = String(b.provider);
      epoch = Number(b.epoch);
      if (!Number.isInteger(epoch)) {
        this.o.log.ignored(env, topic, 'death-malformed');
        return;
      }
    } catch (e) {
      // Malformed notices are ignored: they cannot remove anything.
      this.o.log.ignored(env, topic, 'death-malformed', e as FerryError);
      return;
    }
    const prev = this.deaths.get(provider);
    if (prev !== undefined && prev >= epoch) return;
    const wasLive = [...this.known.values()].filter((d) => d.provider === provider && isLive(d, prev));
    this.deaths.set(provider, epoch);
    for (const d of wasLive) if (!isLive(d, epoch)) this.emit('down', d, 'death' satisfies DownReason);
  }

  private onAnnounce(env: Envelope, topic: string): void {
    const id = topic.split('/').slice(-2).join('/');
    const prev = this.known.get(id);
    if (env.type === 'svc.withdraw') {
      if (!prev) return;
      const b = env.body as { epoch?: unknown } | null;
      if (b && typeof b.epoch === 'number' && b.epoch < prev.epoch) return; // stale withdrawal
      this.known.delete(id);
      const aid = this.announceIds.get(id);
      this.announceIds.delete(id);
      if (aid !== undefined) this.withdrawnIds.set(id, aid);
      if (isLive(prev, this.deaths.get(prev.provider))) this.emit('down', prev, 'withdrawn' satisfies DownReason);
      return;
    }
    if (env.type !== 'svc.announce') {
      this.o.log.ignored(env, topic, 'unknown-type');
      return;
    }
    if (this.withdrawnIds.get(id) === env.id) return; // a late replay of an announcement already withdrawn
    let d: ServiceDescription;
    try {
      d = parseDescription(env.body);
    } catch (e) {
      this.o.log.ignored(env, topic, 'description-malformed', e as FerryError);
      return;
    }
    if (d.id !== id || env.from !== d.provider) {
      // A description must come from its provider, on its own topic.
      this.o.log.ignored(env, topic, d.id !== id ? 'id-not-topic' : 'provider-not-sender');
      return;
    }
    if (prev && prev.epoch > d.epoch) return; // out of order: an older announcement
    const wasLive = prev !== undefined && isLive(prev, this.deaths.get(prev.provider));
    this.known.set(id, d);
    this.announceIds.set(id, env.id);
    this.withdrawnIds.delete(id);
    if (isLive(d, this.deaths.get(d.provider)) && (!wasLive || prev!.epoch !== d.epoch)) this.emit('up', d);
  }
}
