import type { Socket } from 'node:net';
import { MqttClient, type IPublishPacket } from 'mqtt';
import { connectRefusal } from './connect-refusal.js';
import { FerryError, isFerryError } from '../core/errors.js';
import { describe, OptionReader } from '../core/options.js';
import {
  ENVELOPE_VERSION,
  type Bus,
  type BusEvent,
  type Envelope,
  type EnvelopeHandler,
  type PublishOptions,
  type RequestHandler,
  type RequestOptions,
} from './contract.js';
import { deferred, openSocket, settledOrNew, sleep, type Deferred } from './connection.js';
import { decodeEnvelope, encodeEnvelope, isExpired, isPublishTopic, newMessageId } from './envelope.js';
import { checkWill, readBusOptions, redactUrl, type BusOptions, type ResolvedBusOptions } from './options.js';
import { PublishWindow, type SendOutcome } from './publish-window.js';
import { RequestResponse } from './request-response.js';
import { backoffDelay, setReconnectDelay } from './reconnect-backoff.js';
import { RecentIds } from './recent-ids.js';
import { inboxTopic, isValidFilter, topicMatches } from './topics.js';

const NO_OPTIONS: PublishOptions = Object.freeze({});

/** Receives raw payloads on a subscription (bulk chunks); no envelope decoding. */
export type RawHandler = (topic: string, payload: Buffer) => void;

/** Counters, for tests, benchmarks and diagnostics. */
export interface BusStats {
  /** Publishes acknowledged (QoS 1) or written (QoS 0). */
  published: number;
  /** MQTT messages received. */
  received: number;
  /** Envelopes handed to handlers. */
  delivered: number;
  /** Envelopes dropped as QoS 1 redeliveries (same id seen). */
  duplicates: number;
  /** Envelopes dropped because their ttl ran out. */
  expired: number;
  /** Messages dropped as malformed or too large (each also an `invalid` event). */
  invalid: number;
  /** Zero-length payloads skipped (a retained message being cleared). */
  empty: number;
  /** Publishes in flight now, and waiting behind the window now. */
  inFlight: number;
  queued: number;
  /** Highest in-flight count reached. Never above options.maxInFlight. */
  maxInFlightSeen: number;
  /** Connections made (1 + reconnections). */
  connects: number;
}

interface Subscription {
  filter: string;
  envelope: Set<EnvelopeHandler>;
  raw: Set<RawHandler>;
}

/**
 * The `Bus` on mqtt.js, MQTT 3.1.1 (protocol level 4), clean sessions.
 *
 * Connection: TCP with TCP_NODELAY (small request/response messages must not
 * wait for Nagle), reconnect with exponential backoff, and after every
 * (re)connect this bus subscribes again to every filter it holds: with a clean
 * session (and after a broker restart in any case) the broker has forgotten them.
 *
 * Receiving: every payload is size-checked, decoded and validated; bad ones are
 * reported through `invalid` and dropped, never thrown into mqtt.js. Expired
 * envelopes and QoS 1 duplicates (same `id`) are dropped. Handlers run
 * synchronously inside mqtt.js's message callback, so they must not await a
 * QoS 1 publish there: `serve` runs request handlers outside it.
 *
 * Events: `connect` after each (re)connection once every subscription is
 * SUBACK'd again (publishes queued while offline go out after it); `close` each
 * time the connection is lost, and once at `close()`; `offline` when it starts
 * reconnecting; `reconnect` at each attempt; `error` for socket errors, a
 * refused resubscription or a throwing handler; `invalid` with the FerryError of
 * each dropped message.
 */
export class MqttBus implements Bus {
  readonly deviceId: string;
  /** This bus's request inbox, `ferry/v1/inbox/<deviceId>`. */
  readonly inbox: string;
  readonly options: Readonly<ResolvedBusOptions>;

  private readonly client: MqttClient;
  private readonly window: PublishWindow;
  private readonly recent: RecentIds;
  private readonly subs = new Map<string, Subscription>();
  /** The subscriptions whose filter has a wildcard (matched one by one on receive). */
  private readonly wildcardSubs = new Set<Subscription>();
  private readonly rr: RequestResponse;
  private readonly listeners = new Map<BusEvent, Set<(arg?: unknown) => void>>();
  private readonly counters = { published: 0, received: 0, delivered: 0, duplicates: 0, expired: 0, invalid: 0, empty: 0, connects: 0 };
  private closed = false;
  private closing: Promise<void> | undefined;
  private reconnectAttempts = 0;
  /** The socket corked by onMessage until the message's PUBACK is queued (handleMessage). */
  private corkedForAck: Socket | undefined;
  /** Resolved after the subscriptions of the current connection are SUBACK'd. */
  private ready: Deferred;

  constructor(options: BusOptions) {
    this.options = readBusOptions(options);
    const o = this.options;
    this.deviceId = o.deviceId;
    this.inbox = inboxTopic(o.deviceId);
    this.window = new PublishWindow(o.maxInFlight, o.maxQueued);
    this.recent = new RecentIds(o.dedupeWindow);
    this.ready = deferred();
    const bus = this;
    this.rr = new RequestResponse({
      deviceId: o.deviceId,
      inbox: this.inbox,
      requestTimeoutMs: o.requestTimeoutMs,
      now: o.now,
      publishEnvelope: (topic, env) => this.publishEnvelope(topic, env),
      publishBytes: (topic, bytes, settle) => this.publishCb(topic, bytes, NO_OPTIONS, settle),
      subscribe: (filter, handler) => this.subscribe(filter, handler),
      reportInvalid: (e) => this.reportInvalid(e),
      reportError: (e) => this.emit('error', e),
      get closed() {
        return bus.closed;
      },
    });

    // mqtt.js calls the stream builder before every connection attempt, just before it builds
    // CONNECT: the moment to refresh the will (a function may stamp a per-connection epoch).
    const streamBuilder = (client: MqttClient): Socket => {
      this.refreshWill(client);
      return openSocket(o.url, o.tls);
    };
    this.client = new MqttClient(streamBuilder, {
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: o.clientId,
      clean: true,
      keepalive: o.keepaliveSeconds,
      connectTimeout: o.connectTimeoutMs,
      reconnectPeriod: o.reconnectMinMs,
      // Subscriptions are restored by this bus (resubscribeAll), so it knows when they are live again.
      resubscribe: false,
      queueQoSZero: true,
      // mqtt.js traces every packet through `debug` (several calls per message, a few µs even when
      // disabled); keep it only when someone asked for it with DEBUG=mqttjs*.
      ...(/mqttjs/.test(process.env.DEBUG ?? '') ? {} : { log: () => undefined }),
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
    });
    this.client.on('connect', () => this.onConnect());
    this.client.on('close', () => this.onConnectionLost());
    this.client.on('offline', () => this.emit('offline'));
    this.client.on('reconnect', () => this.emit('reconnect'));
    this.client.on('error', (e) => this.emit('error', e));
    this.client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    // mqtt.js calls handleMessage right after each 'message' event and sends the PUBACK in its
    // callback. Calling back one microtask later lets what the handlers started (an answer resolving
    // a request's promise, the caller's next request) run before the PUBACK is written, and the
    // PUBACK, the handlers' own publishes and that next request leave in one socket write: onMessage
    // corks the socket, and it is uncorked here once the PUBACK is queued (see DESIGN.md).
    this.client.handleMessage = (_packet, callback) => {
      const corked = this.corkedForAck;
      this.corkedForAck = undefined;
      queueMicrotask(() => {
        try {
          callback();
        } catch (e) {
          this.emit('error', e);
        } finally {
          corked?.uncork();
        }
      });
    };
  }

  /** Creates a bus and resolves once it is connected (and its inbox subscribed). Rejects with BUS_OFFLINE if the broker cannot be reached within options.connectTimeoutMs. */
  static async connect(options: BusOptions): Promise<MqttBus> {
    const bus = new MqttBus(options);
    const timeoutMs = bus.options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let onError: ((e?: unknown) => void) | undefined;
    try {
      await Promise.race([
        bus.whenReady(),
        // A certificate that fails verification, or credentials the broker refuses, will fail every retry too: refuse at once, typed.
        new Promise<never>((_, reject) => {
          onError = (e) => {
            const refused = connectRefusal(e);
            if (refused) reject(refused);
          };
          bus.on('error', onError);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new FerryError('BUS_OFFLINE', `cannot connect to ${redactUrl(bus.options.url)} within ${timeoutMs} ms (options.connectTimeoutMs)`, { field: 'options.url' })),
            timeoutMs,
          );
        }),
      ]);
    } catch (e) {
      await bus.close();
      throw e;
    } finally {
      clearTimeout(timer);
      if (onError) bus.off('error', onError);
    }
    return bus;
  }

  get connected(): boolean {
    return this.client.connected && !this.closed;
  }

  /** Resolves when connected with every subscription restored. */
  whenReady(): Promise<void> {
    return this.ready.promise;
  }

  stats(): BusStats {
    return { ...this.counters, inFlight: this.window.inFlight, queued: this.window.queued, maxInFlightSeen: this.window.maxInFlightSeen };
  }

  // ---- publishing ----

  async publish(topic: string, type: string, body: unknown, options: PublishOptions & { replyTo?: string; corr?: string; ttlMs?: number } = {}): Promise<void> {
    const r = new OptionReader(options as Record<string, unknown>, 'options');
    r.rejectUnknown(['qos', 'retain', 'replyTo', 'corr', 'ttlMs']);
    if (r.has('ttlMs')) r.number('ttlMs', { min: 0, max: Number.MAX_SAFE_INTEGER });
    if (r.has('retain')) r.boolean('retain');
    if (r.has('corr')) r.string('corr');
    if (r.has('replyTo') && !isPublishTopic(options.replyTo)) r.fail('replyTo', 'a topic without wildcards', options.replyTo);
    if (typeof type !== 'string' || type.length === 0) throw new FerryError('BAD_OPTION', `type must be a non-empty string, got ${describe(type)}`, { field: 'type' });
    const env: Envelope = { v: ENVELOPE_VERSION, type, id: newMessageId(), from: this.deviceId, ts: this.options.now(), body: body === undefined ? null : body };
    if (options.replyTo !== undefined) env.replyTo = options.replyTo;
    if (options.corr !== undefined) env.corr = options.corr;
    if (options.ttlMs !== undefined) env.ttl = options.ttlMs;
    await this.publishEnvelope(topic, env, options);
  }

  /** Publishes a complete envelope as given (its id, ts and from are kept). */
  publishEnvelope(topic: string, env: Envelope, options: PublishOptions = {}): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = encodeEnvelope(env);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.publishRaw(topic, bytes, options);
  }

  publishRaw(topic: string, payload: Uint8Array, options: PublishOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.publishCb(topic, payload, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * `publishRaw` without a promise: `settle` is called once, with null when the
   * publish is acknowledged (QoS 1) or written (QoS 0), else with the error
   * (a refusal synchronously). The request/answer path uses it.
   */
  publishCb(topic: string, payload: Uint8Array, options: PublishOptions, settle: SendOutcome): void {
    const refused = this.checkPublish(topic, payload, options);
    if (refused) {
      settle(refused);
      return;
    }
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    const qos = options.qos ?? 1;
    const retain = options.retain ?? false;
    // Counted in mqtt.js's callback: no second promise (and microtask) per publish just to count it.
    this.window.submitCb((done) => {
      this.client.publish(topic, buf, { qos, retain }, (err) => {
        if (!err) this.counters.published++;
        done(err ?? null);
      });
    }, settle);
  }

  /** Why a publish is refused at once, or undefined. */
  private checkPublish(topic: string, payload: Uint8Array, options: PublishOptions): FerryError | undefined {
    if (this.closed) return this.closedError();
    if (!isPublishTopic(topic)) return new FerryError('BAD_OPTION', `topic must be a non-empty topic without wildcards, got ${JSON.stringify(topic)}`, { field: 'topic' });
    const qos = options.qos ?? 1;
    if (qos !== 0 && qos !== 1) return new FerryError('BAD_OPTION', `options.qos must be 0 or 1, got ${String(qos)}`, { field: 'options.qos' });
    if (payload.length > this.options.maxMessageBytes) {
      return new FerryError('MESSAGE_TOO_LARGE', `payload to ${topic} is ${payload.length} bytes; options.maxMessageBytes is ${this.options.maxMessageBytes}`, {
        field: 'payload',
        bytes: payload.length,
        limit: this.options.maxMessageBytes,
      });
    }
    if (!this.client.connected && !this.options.offlineQueue) {
      return new FerryError('BUS_OFFLINE', `not connected to ${redactUrl(this.options.url)} and options.offlineQueue is false`, { field: 'options.offlineQueue' });
    }
    return undefined;
  }

  // ---- subscribing ----

  subscribe(filter: string, handler: EnvelopeHandler): Promise<() => Promise<void>> {
    return this.addSubscription(filter, (s) => s.envelope.add(handler), (s) => s.envelope.delete(handler));
  }

  /** Subscribes (QoS 1) to raw payloads: no envelope decoding, dedupe or ttl (bulk chunks). Size-checked like everything else. */
  subscribeRaw(filter: string, handler: RawHandler): Promise<() => Promise<void>> {
    return this.addSubscription(filter, (s) => s.raw.add(handler), (s) => s.raw.delete(handler));
  }

  private async addSubscription(filter: string, add: (s: Subscription) => void, remove: (s: Subscription) => void): Promise<() => Promise<void>> {
    if (this.closed) throw this.closedError();
    if (!isValidFilter(filter)) throw new FerryError('BAD_OPTION', `filter must be a valid MQTT topic filter, got ${JSON.stringify(filter)}`, { field: 'filter' });
    let sub = this.subs.get(filter);
    const isNew = !sub;
    if (!sub) {
      sub = { filter, envelope: new Set(), raw: new Set() };
      this.subs.set(filter, sub);
      if (/[+#]/.test(filter)) this.wildcardSubs.add(sub);
    }
    add(sub);
    if (isNew) {
      try {
        if (this.client.connected) {
          try {
            await this.mqttSubscribe([filter]);
          } catch (e) {
            // Connection lost before the SUBACK: the filter is registered, the next connect subscribes it.
            if (isFerryError(e) || this.client.connected) throw e;
            await this.ready.promise;
          }
        } else {
          await this.ready.promise; // resubscribeAll on the next connect covers it
        }
      } catch (e) {
        remove(sub);
        if (sub.envelope.size === 0 && sub.raw.size === 0) this.dropSubscription(sub);
        throw e;
      }
    } else if (!this.client.connected) {
      await this.ready.promise;
    }
    const s = sub;
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      remove(s);
      if (s.envelope.size === 0 && s.raw.size === 0 && this.subs.get(filter) === s) {
        this.dropSubscription(s);
        if (this.client.connected && !this.closed) await this.client.unsubscribeAsync(filter).catch(() => undefined);
      }
    };
  }

  private dropSubscription(sub: Subscription): void {
    this.subs.delete(sub.filter);
    this.wildcardSubs.delete(sub);
  }

  private async mqttSubscribe(filters: string[]): Promise<void> {
    if (filters.length === 0) return;
    const granted = await this.client.subscribeAsync(filters.map((f) => f), { qos: 1 });
    const refused = granted.filter((g) => g.qos === 128);
    if (refused.length > 0) {
      throw new FerryError('BAD_OPTION', `the broker refused the subscription to ${refused.map((g) => JSON.stringify(g.topic)).join(', ')}`, { field: 'filter' });
    }
  }

  // ---- request / response (request-response.ts) ----

  request<R = unknown>(topic: string, type: string, body: unknown, options: RequestOptions = {}): Promise<Envelope<R>> {
    return this.rr.request<R>(topic, type, body, options, () => this.closedError());
  }

  serve(filter: string, handler: RequestHandler): Promise<() => Promise<void>> {
    return this.rr.serve(filter, handler);
  }

  // ---- events ----

  on(event: BusEvent, listener: (arg?: unknown) => void): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
  }

  off(event: BusEvent, listener: (arg?: unknown) => void): void {
    this.listeners.get(event)?.delete(listener);
  }

  private emit(event: BusEvent, arg?: unknown): void {
    for (const l of [...(this.listeners.get(event) ?? [])]) {
      try {
        l(arg);
      } catch {
        // A listener's bug must not break the connection handling that emitted the event.
      }
    }
  }

  // ---- connection ----

  /** Sets the will of the next CONNECT; a will function is called once per connection attempt. */
  private refreshWill(client: MqttClient): void {
    const w = this.options.will;
    if (w === undefined) return;
    let will;
    try {
      will = typeof w === 'function' ? checkWill(w(), 'options.will()') : w;
    } catch (e) {
      // A broken will function must not stop reconnecting: connect without a will and say so.
      this.emit('error', e);
      delete client.options.will;
      return;
    }
    const env: Envelope = { v: ENVELOPE_VERSION, type: will.type, id: newMessageId(), from: this.deviceId, ts: this.options.now(), body: will.body ?? null };
    client.options.will = { topic: will.topic, payload: encodeEnvelope(env), qos: will.qos ?? 1, retain: will.retain ?? false };
  }

  private onConnect(): void {
    this.counters.connects++;
    this.reconnectAttempts = 0;
    this.client.options.reconnectPeriod = this.options.reconnectMinMs;
    const filters = [...this.subs.keys()];
    this.mqttSubscribe(filters).then(
      () => {
        if (this.closed || !this.client.connected) return;
        this.window.resume();
        const r = this.ready;
        r.resolve();
        this.emit('connect');
      },
      (e: unknown) => {
        // Lost again before the SUBACKs: the next connect retries.
        if (this.closed || !this.client.connected || !isFerryError(e)) return;
        // A refused resubscription: report it, and still let publishes flow.
        this.emit('error', e);
        this.window.resume();
        this.ready.resolve();
      },
    );
  }

  private onConnectionLost(): void {
    this.window.pause();
    if (this.closed) return;
    // Callers awaiting readiness now wait for the next connection.
    this.ready = settledOrNew(this.ready);
    this.emit('close');
    setReconnectDelay(this.client, backoffDelay(this.reconnectAttempts++, this.options.reconnectMinMs, this.options.reconnectMaxMs));
  }

  // ---- receiving ----

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.corkedForAck === undefined) {
      const stream = this.client.stream as Socket | undefined;
      if (stream && typeof stream.cork === 'function') {
        stream.cork();
        this.corkedForAck = stream;
      }
    }
    try {
      this.dispatch(topic, payload, packet);
    } catch (e) {
      // Nothing may escape into mqtt.js's parser loop.
      this.emit('error', e);
    }
  }

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.counters.received++;
    if (payload.length > this.options.maxMessageBytes) {
      this.reportInvalid(
        new FerryError('MESSAGE_TOO_LARGE', `message on ${topic} is ${payload.length} bytes; options.maxMessageBytes is ${this.options.maxMessageBytes}`, {
          field: 'payload',
          topic,
          bytes: payload.length,
          limit: this.options.maxMessageBytes,
        }),
      );
      return;
    }
    // An exact subscription is one map lookup; only wildcard filters are matched one by one. The
    // common case (one exact subscription, no wildcard filter) allocates nothing here.
    const exact = this.subs.get(topic);
    let matched: Subscription[] | undefined;
    if (this.wildcardSubs.size > 0) {
      matched = exact ? [exact] : [];
      for (const sub of this.wildcardSubs) if (topicMatches(sub.filter, topic)) matched.push(sub);
    }
    let envelopeHandlers = 0;
    if (matched) for (const sub of matched) envelopeHandlers += this.deliverRaw(sub, topic, payload);
    else if (exact) envelopeHandlers = this.deliverRaw(exact, topic, payload);
    if (envelopeHandlers === 0) return;
    if (payload.length === 0) {
      this.counters.empty++;
      return;
    }
    let env: Envelope;
    try {
      env = decodeEnvelope(payload);
    } catch (e) {
      const fe = e as FerryError;
      fe.details.topic = topic;
      this.reportInvalid(fe);
      return;
    }
    if (isExpired(env, this.options.now(), this.options.maxClockSkewMs)) {
      this.counters.expired++;
      return;
    }
    // Retained messages replayed at subscribe time are state, not events: deliver them on every
    // (re)subscription rather than dropping them as duplicates of the previous replay.
    if (!packet.retain && this.recent.seen(env.id)) {
      this.counters.duplicates++;
      return;
    }
    if (matched) for (const sub of matched) this.deliverEnvelope(sub, env, topic);
    else if (exact) this.deliverEnvelope(exact, env, topic);
  }

  /** Runs a subscription's raw handlers; returns how many envelope handlers it has. */
  private deliverRaw(sub: Subscription, topic: string, payload: Buffer): number {
    if (sub.raw.size > 0) {
      for (const h of sub.raw) {
        try {
          h(topic, payload);
        } catch (e) {
          this.emit('error', e);
        }
      }
    }
    return sub.envelope.size;
  }

  private deliverEnvelope(sub: Subscription, env: Envelope, topic: string): void {
    for (const h of sub.envelope) {
      this.counters.delivered++;
      try {
        h(env, topic);
      } catch (e) {
        this.emit('error', e);
      }
    }
  }

  private reportInvalid(e: FerryError): void {
    this.counters.invalid++;
    this.emit('invalid', e);
  }

  private closedError(): FerryError {
    return new FerryError('BUS_CLOSED', `the bus of ${this.deviceId} is closed`, { field: 'bus' });
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      const err = this.closedError();
      this.rr.failAll(err);
      this.window.failAll(err);
      if (!this.ready.settled) this.ready.reject(err);
      // Give a connected client a moment to send DISCONNECT; never hang on an unreachable broker.
      await Promise.race([this.client.endAsync(!this.client.connected).catch(() => undefined), sleep(1000)]);
      if (!this.client.disconnected) await this.client.endAsync(true).catch(() => undefined);
      this.emit('close');
    })();
    return this.closing;
  }
}

/** Connects a bus (see MqttBus.connect). */
export function connectBus(options: BusOptions): Promise<MqttBus> {
  return MqttBus.connect(options);
}
