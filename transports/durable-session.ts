import { MqttClient } from 'mqtt';
import { connectRefusal } from './connect-refusal.js';
import { FerryError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';
import type { BusSessionOptions } from './contract.js';
import { deferred, openSocket, settledOrNew, sleep, type Deferred } from './connection.js';
import { BROKER_URL_PATTERN, readPassword, readTls, redactUrl } from './options.js';
import { isValidFilter } from './topics.js';

/** Options of `DurableSession.connect`. Every field is validated on entry. */
export interface DurableSessionOptions extends Omit<BusSessionOptions, 'will'> {
  /** Broker URL, `mqtt://host:port` or `mqtts://host:port`. Required. */
  url: string;
  /** MQTT client id: the session's name at the broker, the same on every connection. 1..128 characters. Required. */
  clientId: string;
  /** The one filter this session subscribes to (QoS 1). Required. */
  filter: string;
  /** MQTT keepalive, seconds. Default 30. Limits 0..65,535. */
  keepaliveSeconds?: number;
  /** Time allowed for TCP connect + CONNACK, ms. Default 10,000. Limits 100..600,000. */
  connectTimeoutMs?: number;
  /** Delay before reconnecting after a lost connection, ms. Default 200. Limits 10..60,000. */
  reconnectMs?: number;
}

/** A QoS 1 message of the session and its acknowledgement, to send once the receiver made it durable. */
export type SessionMessage = { topic: string; payload: Buffer; redelivered: boolean; ack: () => void };

/**
 * A persistent MQTT session (clean session off, fixed client id) whose QoS 1
 * messages are acknowledged when the receiver says so, not when they arrive.
 *
 * The broker keeps the subscription and queues messages while no connection is
 * up, and redelivers every message not yet acknowledged when the session
 * reconnects. Holding the PUBACK until the receiver has committed what the message
 * did is what makes a power loss unable to lose an acknowledged message.
 *
 * mqtt.js sends the PUBACK itself when its message callback returns, and holding
 * that callback would stall its packet pipeline. So the session calls back at
 * once and filters the PUBACKs out of mqtt.js's own sends; `ack()` writes the
 * PUBACK later, and only on the connection the message came on (after a
 * reconnect the broker redelivers it, and the receiver's exactly-once records
 * answer the repeat).
 */
export class DurableSession {
  /** Counters: messages received, acknowledged, acks dropped because their connection had ended. */
  readonly stats = { received: 0, acked: 0, staleAcks: 0, connects: 0 };
  private readonly client: MqttClient;
  private generation = 0;
  private closed = false;
  private ready: Deferred = deferred();
  private lastError: Error | undefined;
  /** performance.now() at the current connection's CONNACK; undefined while none is up. */
  private upSince: number | undefined;
  /** ms of connections that have ended. */
  private upMs = 0;

  private constructor(
    readonly options: Readonly<Required<Pick<DurableSessionOptions, 'url' | 'clientId' | 'filter'>>>,
    client: (self: DurableSession) => MqttClient,
    private readonly onMessage: (m: SessionMessage) => void,
  ) {
    this.client = client(this);
  }

  /** Connects (resuming the session if the broker has it) and subscribes; resolves when SUBACK'd. */
  static async connect(options: DurableSessionOptions, onMessage: (m: SessionMessage) => void): Promise<DurableSession> {
    const o = readSessionOptions(options);
    const { url, clientId, filter, connectTimeoutMs } = o;
    const session = new DurableSession({ url, clientId, filter }, (self) => newClient(o, false).on('connect', () => self.onConnect()), onMessage);
    session.hook();
    let timer: NodeJS.Timeout | undefined;
    let onError: ((e: unknown) => void) | undefined;
    try {
      await Promise.race([
        session.ready.promise,
        // Refused credentials or certificate: every retry would be refused too.
        new Promise<never>((_, reject) => {
          onError = (e) => {
            const refused = connectRefusal(e);
            if (refused) reject(refused);
          };
          session.client.on('error', onError);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const why = session.lastError ? ` (${session.lastError.message})` : '';
            reject(new FerryError('BUS_OFFLINE', `cannot open the session ${clientId} at ${redactUrl(url)} within ${connectTimeoutMs} ms (options.connectTimeoutMs)${why}`, { field: 'options.url' }));
          }, connectTimeoutMs);
        }),
      ]);
    } catch (e) {
      await session.close();
      throw e;
    } finally {
      clearTimeout(timer);
      if (onError) session.client.off('error', onError);
    }
    return session;
  }

  get connected(): boolean {
    return this.client.connected && !this.closed;
  }

  /**
   * How long this session has had a connection up, ms, summed over its connections
   * (CONNACK to close, on a monotonic clock). It stands still while the broker is
   * unreachable: the app runtime ages the request ids it remembers by it
   * (agent/runtime/DESIGN.md, "Spent ids").
   */
  connectedMs(): number {
    return this.upMs + (this.upSince !== undefined ? performance.now() - this.upSince : 0);
  }

  private down(): void {
    if (this.upSince === undefined) return;
    this.upMs += performance.now() - this.upSince;
    this.upSince = undefined;
  }

  /** Resolves once connected and subscribed (again). */
  whenReady(): Promise<void> {
    return this.ready.promise;
  }

  private hook(): void {
    const client = this.client as unknown as {
      _sendPacket(packet: { cmd: string }, cb?: (e?: Error) => void, cbStorePut?: unknown, noStore?: boolean): void;
      _writePacket(packet: object, cb?: () => void): void;
    };
    const send = client._sendPacket.bind(client);
    client._sendPacket = (packet, cb, cbStorePut, noStore) => {
      // mqtt.js's own PUBACK for a message just handed over: not yet; ack() sends it.
      if (packet.cmd === 'puback') {
        cb?.();
        return;
      }
      send(packet, cb, cbStorePut, noStore);
    };
    this.client.on('message', (topic, payload, packet) => {
      this.stats.received++;
      const generation = this.generation;
      const messageId = packet.messageId;
      let acked = packet.qos === 0;
      const ack = () => {
        if (acked) return;
        acked = true;
        if (this.closed || generation !== this.generation || !this.client.connected || messageId === undefined) {
          this.stats.staleAcks++;
          return;
        }
        this.stats.acked++;
        client._writePacket({ cmd: 'puback', messageId });
      };
      try {
        this.onMessage({ topic, payload, redelivered: packet.dup === true, ack });
      } catch {
        // The receiver's fault must not reach mqtt.js's parser; the message stays unacknowledged.
      }
    });
    this.client.on('close', () => {
      this.down();
      this.generation++;
      if (!this.closed) this.ready = settledOrNew(this.ready);
    });
    // Reconnects handle errors; the last one explains a connect that never succeeds.
    this.client.on('error', (e) => {
      this.lastError = e;
    });
  }

  private onConnect(): void {
    this.stats.connects++;
    if (!this.closed) this.upSince ??= performance.now();
    this.client.subscribe(this.options.filter, { qos: 1 }, (err, granted) => {
      if (this.closed || !this.client.connected) return;
      if (err || granted?.some((g) => g.qos === 128)) {
        if (!this.ready.settled) this.ready.reject(new FerryError('BAD_OPTION', `the broker refused the subscription to ${this.options.filter}`, { field: 'filter' }));
        return;
      }
      this.ready.resolve();
    });
  }

  /**
   * Ends the connection without ending the session: the broker keeps queueing
   * (a suspended app's requests wait for it). Unacknowledged messages are redelivered later.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.down();
    this.generation++;
    if (!this.ready.settled) this.ready.reject(new FerryError('BUS_CLOSED', `the session ${this.options.clientId} is closed`, { field: 'session' }));
    await Promise.race([this.client.endAsync(!this.client.connected).catch(() => undefined), sleep(1000)]);
    if (!this.client.disconnected) await this.client.endAsync(true).catch(() => undefined);
  }

  /** Ends the session at the broker too (its queue and subscription): a removed app's mailbox. */
  static async discard(options: DurableSessionOptions): Promise<void> {
    const o = readSessionOptions(options);
    // A clean-session connection under the same client id: the broker drops the old session.
    const client = newClient({ ...o, reconnectMs: 0 }, true);
    client.on('error', () => undefined);
    await Promise.race([new Promise<void>((res) => client.once('connect', () => res())), sleep(o.connectTimeoutMs)]);
    await client.endAsync().catch(() => undefined);
  }

  /** How long connecting a session takes here (ms): a throwaway one, discarded after (a handoff's estimate). */
  static async probe(options: DurableSessionOptions): Promise<number> {
    const t = performance.now();
    const s = await DurableSession.connect(options, (m) => m.ack());
    const ms = performance.now() - t;
    await s.close();
    await DurableSession.discard(options);
    return ms;
  }
}

export type ResolvedSessionOptions = Required<Pick<DurableSessionOptions, 'url' | 'clientId' | 'filter' | 'keepaliveSeconds' | 'connectTimeoutMs' | 'reconnectMs'>> & {
  username: string | undefined;
  password: Buffer | undefined;
  tls: DurableSessionOptions['tls'];
};

export function readSessionOptions(options: DurableSessionOptions): ResolvedSessionOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['url', 'clientId', 'filter', 'keepaliveSeconds', 'connectTimeoutMs', 'reconnectMs', 'username', 'password', 'tls']);
  const url = r.string('url', undefined, BROKER_URL_PATTERN);
  const filter = r.string('filter');
  if (!isValidFilter(filter)) r.fail('filter', 'a valid MQTT topic filter', filter);
  return {
    url,
    clientId: r.string('clientId', undefined, /^[^\u0000]{1,128}$/),
    filter,
    keepaliveSeconds: r.number('keepaliveSeconds', { min: 0, max: 65_535 }, 30),
    connectTimeoutMs: r.number('connectTimeoutMs', { min: 100, max: 600_000 }, 10_000),
    reconnectMs: r.number('reconnectMs', { min: 10, max: 60_000 }, 200),
    username: r.has('username') ? r.string('username') : undefined,
    password: readPassword(r),
    tls: readTls(r, url),
  };
}

/** An MQTT 3.1.1 client on the session's client id; Ferry's own socket (TCP_NODELAY, TLS options). */
function newClient(o: ResolvedSessionOptions, clean: boolean): MqttClient {
  return new MqttClient(() => openSocket(o.url, o.tls), {
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: o.clientId,
    clean,
    keepalive: o.keepaliveSeconds,
    connectTimeout: o.connectTimeoutMs,
    reconnectPeriod: o.reconnectMs,
    resubscribe: false,
    log: () => undefined,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  } as ConstructorParameters<typeof MqttClient>[1]);
}
