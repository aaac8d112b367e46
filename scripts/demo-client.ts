/**
 * The demo's client: an MQTT client that knows an instance only by its mailbox topic (PROTOCOL.md,
 * "App mailbox"). Each request is an `app.call` envelope with its own id and a replyTo (this
 * client's inbox); answers come back with `corr` = that id, from whichever device runs the app.
 * No request is ever resent: what the mailbox loses shows as lost.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { ENVELOPE_VERSION, appMailboxTopic, decodeEnvelope, encodeEnvelope, inboxTopic, type Envelope } from '../transports/index.js';

export interface Call {
  seq: number;
  id: string;
  handler: string;
  sentAt: number;
  answeredAt?: number;
  /** The handler's result (`app.call.ok`), or the error answer's body. */
  result?: unknown;
  error?: unknown;
  /** Answers received for this id: more than one is a redelivered request answered again. */
  answers: number;
  /** A later answer said something else than the first: the request was applied twice. */
  differs?: boolean;
}

export class MailboxClient {
  readonly calls: Call[] = [];
  private readonly byId = new Map<string, Call>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly client: MqttClient,
    readonly me: string,
    private readonly instance: string,
  ) {
    client.on('message', (_topic, payload) => this.onAnswer(payload));
  }

  static async connect(url: string, instance: string): Promise<MailboxClient> {
    const me = `demo-client-${randomBytes(4).toString('hex')}`;
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, clientId: me, reconnectPeriod: 1000 });
    const c = new MailboxClient(client, me, instance);
    await client.subscribeAsync(inboxTopic(me), { qos: 1 });
    return c;
  }

  /** Publishes one request (QoS 1) to the instance's mailbox. */
  send(handler: string, message: unknown = null): Call {
    const call: Call = { seq: this.calls.length + 1, id: '', handler, sentAt: performance.now(), answers: 0 };
    call.id = `${this.me}.${call.seq}`;
    this.calls.push(call);
    this.byId.set(call.id, call);
    const env: Envelope = { v: ENVELOPE_VERSION, type: 'app.call', id: call.id, from: this.me, replyTo: inboxTopic(this.me), ts: Date.now(), body: { handler, message } };
    this.client.publish(appMailboxTopic(this.instance), encodeEnvelope(env), { qos: 1 });
    return call;
  }

  private onAnswer(payload: Buffer): void {
    let env: Envelope;
    try {
      env = decodeEnvelope(payload);
    } catch {
      return;
    }
    const call = env.corr !== undefined ? this.byId.get(env.corr) : undefined;
    if (!call) return;
    if (++call.answers > 1) {
      if (JSON.stringify(env.body) !== JSON.stringify(call.result ?? call.error)) call.differs = true;
      return;
    }
    call.answeredAt = performance.now();
    if (env.type === 'app.call.ok') call.result = env.body;
    else call.error = env.body;
  }

  /** Sends `handler` every `everyMs` until `stopStream()`, whether or not earlier ones were answered. */
  stream(handler: string, everyMs: number): void {
    this.timer = setInterval(() => this.send(handler), everyMs);
  }

  stopStream(): void {
    clearInterval(this.timer);
  }

  /** Waits until every request has its answer, or `timeoutMs` passed; true if all were answered. */
  async settle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.calls.some((c) => c.answeredAt === undefined)) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /** One request, its answer awaited (undefined if none came within `timeoutMs`). */
  async ask(handler: string, timeoutMs = 10_000): Promise<Call | undefined> {
    const call = this.send(handler);
    const deadline = Date.now() + timeoutMs;
    while (call.answeredAt === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return call.answeredAt === undefined ? undefined : call;
  }

  async close(): Promise<void> {
    this.stopStream();
    await this.client.endAsync(true);
  }
}
