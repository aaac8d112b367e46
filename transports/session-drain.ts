import { randomBytes } from 'node:crypto';
import { MqttClient } from 'mqtt';
import { FerryError } from '../core/errors.js';
import { connectRefusal } from './connect-refusal.js';
import { openSocket } from './connection.js';
import { DurableSession, readSessionOptions, type DurableSessionOptions } from './durable-session.js';
import { isPublishTopic } from './envelope.js';
import { redactUrl } from './options.js';

/** Options of `drainSession`: the session's (as `DurableSession.connect` takes them), and these. */
export interface DrainOptions extends DurableSessionOptions {
  /**
   * A topic only this drain uses (it should hold a fresh random part): the sentinel that marks the
   * end of the queue is published there, and the session subscribes to it. Required.
   */
  sentinelTopic: string;
  /** The longest the drain may take, ms; past it the session is left as it is (nothing lost). Default 30,000; 100..600,000. */
  timeoutMs?: number;
}

export interface DrainResult {
  /** Messages handed to `take` and acknowledged. */
  taken: number;
  /** Whether the broker still held the session (false: nothing was queued). */
  sessionPresent: boolean;
}

/**
 * Empties a persistent session at its broker and ends it (a mailbox left behind by a handoff to a
 * device on another broker: agent/bridge/DESIGN.md, "Handoff across brokers").
 *
 * It connects under the session's client id with clean session off, so the broker hands over
 * what it queued; unsubscribes the session's filter at once, so nothing new is queued after that;
 * then subscribes to `sentinelTopic` and publishes one message there. The broker queues a
 * session's messages in one FIFO, so the sentinel comes back after every message queued before
 * it: the queue is empty then. Each message is handed to `take` in order and acknowledged only
 * when `take` resolves (mqtt.js's `handleMessage`, which holds its packet pipeline meanwhile:
 * `take` must not publish on this connection); a `take` that fails leaves it unacknowledged, and
 * the drain ends with that error, the session kept. Only when the sentinel came is the session
 * discarded (a clean-session connection under its id). A connection cut meanwhile (another
 * client took the id over) ends the drain with BUS_OFFLINE, the session kept: its messages stay
 * queued, never lost.
 */
export async function drainSession(options: DrainOptions, take: (topic: string, payload: Buffer) => Promise<void>): Promise<DrainResult> {
  const { sentinelTopic, timeoutMs: t, ...sessionOptions } = options;
  const o = readSessionOptions(sessionOptions);
  if (typeof sentinelTopic !== 'string' || !isPublishTopic(sentinelTopic)) {
    throw new FerryError('BAD_OPTION', `options.sentinelTopic must be a topic without wildcards, got ${JSON.stringify(sentinelTopic)}`, { field: 'options.sentinelTopic' });
  }
  const timeoutMs = t ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000) throw new FerryError('BAD_OPTION', `options.timeoutMs must be an integer in 100..600000, got ${String(timeoutMs)}`, { field: 'options.timeoutMs' });
  const nonce = randomBytes(16).toString('base64url');
  let taken = 0;
  let sessionPresent = false;
  let settle!: (e?: Error) => void;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (e) => (e ? reject(e) : resolve());
  });
  let over = false;
  const end = (e?: Error) => {
    if (over) return;
    over = true;
    settle(e);
  };
  const client = new MqttClient(() => openSocket(o.url, o.tls), {
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: o.clientId,
    clean: false,
    keepalive: o.keepaliveSeconds,
    connectTimeout: o.connectTimeoutMs,
    reconnectPeriod: 0,
    resubscribe: false,
    log: () => undefined,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  } as ConstructorParameters<typeof MqttClient>[1]);
  // mqtt.js sends a QoS 1 message's PUBACK when `handleMessage` calls back, and takes the next
  // packet only then: so each message is acknowledged once `take` has it, and in order.
  client.handleMessage = (packet, callback) => {
    const topic = packet.topic.toString();
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (topic === sentinelTopic) {
      if (payload.toString() === nonce) end();
      callback();
      return;
    }
    if (over) return; // ended: left unacknowledged, the broker keeps it
    take(topic, payload).then(
      () => {
        taken++;
        callback();
      },
      (e: unknown) => end(e instanceof Error ? e : new Error(String(e))),
    );
  };
  // A refused CONNACK as its own code; any other error of the connection (cut, taken over) as BUS_OFFLINE.
  client.on('error', (e) => end(connectRefusal(e) ?? new FerryError('BUS_OFFLINE', `the connection draining session ${o.clientId} at ${redactUrl(o.url)} failed (${e.message}); its messages stay queued there`, { field: 'options.url' }, { cause: e })));
  client.on('close', () => end(new FerryError('BUS_OFFLINE', `the connection draining session ${o.clientId} at ${redactUrl(o.url)} was closed before its queue was empty; its messages stay queued there`, { field: 'options.url' })));
  client.on('connect', (connack: { sessionPresent?: boolean }) => {
    sessionPresent = connack.sessionPresent === true;
    // No session there: this connection made an empty one, with nothing queued and no subscription.
    if (!sessionPresent) return end();
    client.unsubscribe(o.filter, (e1) => {
      if (e1) return end(e1);
      client.subscribe(sentinelTopic, { qos: 1 }, (e2, granted) => {
        if (e2 || granted?.some((g) => g.qos === 128)) return end(e2 ?? new FerryError('BAD_OPTION', `the broker refused the subscription to ${sentinelTopic}`, { field: 'options.sentinelTopic' }));
        client.publish(sentinelTopic, nonce, { qos: 1 }, (e3) => e3 && end(e3));
      });
    });
  });
  const timer = setTimeout(() => end(new FerryError('BUS_TIMEOUT', `session ${o.clientId} at ${redactUrl(o.url)} was not drained within ${timeoutMs} ms (options.timeoutMs); its messages stay queued there`, { field: 'options.timeoutMs' })), timeoutMs);
  try {
    await finished;
  } finally {
    clearTimeout(timer);
    await Promise.race([client.endAsync(!client.connected).catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    if (!client.disconnected) await client.endAsync(true).catch(() => undefined);
  }
  // Every queued message is taken: the session (an unsubscribed, empty one now) goes.
  await DurableSession.discard(sessionOptions);
  return { taken, sessionPresent };
}
