/**
 * The conformance suite's side of the wire: a plain MQTT 3.1.1 client (mqtt.js, protocol level 4,
 * clean session, nothing of Ferry's transport), a real agent process started with
 * `ferry start --samples`, and a view of one app instance's mailbox through requests built with
 * the suite's own CBOR (./cbor.ts). Every answer is decoded strictly (it must itself be inside
 * §3.2's subset) and checked against §3.1, §4.1 and A.3.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import type { TestBroker } from '../helpers/brokers.js';
import { C, decodeStrict, encode, isNode, type Node, type Written } from './cbor.js';
import type { DetailsRow, ProtocolDoc } from './protocol-doc.js';

/** A fresh request id: 128 random bits, base64url (22 characters), as §3.1 suggests. */
export const freshId = (): string => randomBytes(16).toString('base64url');

export interface Received {
  topic: string;
  bytes: Buffer;
  /** The decoded envelope, if it is inside the subset. */
  env?: Record<string, unknown>;
  /** How each top-level value was written (major type), for `v` and `ts`. */
  written?: Map<string, Written>;
  /** Why it could not be decoded strictly. */
  problem?: string;
}

/** A raw MQTT 3.1.1 client with an inbox (`ferry/v1/inbox/<me>`). */
export class WireClient {
  readonly all: Received[] = [];
  private readonly byCorr = new Map<string, Received[]>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly client: MqttClient,
    readonly me: string,
    readonly inbox: string,
    private readonly maxDepth: number,
  ) {}

  static async connect(url: string, me: string, maxDepth: number): Promise<WireClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, keepalive: 30, clientId: `${me}-${randomBytes(4).toString('hex')}` });
    const w = new WireClient(client, me, `ferry/v1/inbox/${me}`, maxDepth);
    client.on('message', (topic, payload) => w.receive(topic, payload));
    // Also below the inbox: an answer to a malformed replyTo built from it (which must not come) lands here.
    await client.subscribeAsync([w.inbox, `${w.inbox}/+`], { qos: 1 });
    return w;
  }

  private receive(topic: string, payload: Buffer): void {
    const r: Received = { topic, bytes: Buffer.from(payload) };
    try {
      const written = new Map<string, Written>();
      const env = decodeStrict(payload, this.maxDepth, 'envelope', written);
      if (typeof env !== 'object' || env === null || Array.isArray(env)) throw new Error('not a map');
      r.env = env as Record<string, unknown>;
      r.written = written;
    } catch (e) {
      r.problem = `an answer outside §3.2's subset: ${(e as Error).message} (${payload.subarray(0, 64).toString('hex')}...)`;
    }
    this.all.push(r);
    const corr = r.env?.corr;
    if (typeof corr === 'string') this.byCorr.set(corr, [...(this.byCorr.get(corr) ?? []), r]);
    for (const w of this.waiters) w();
  }

  publish(topic: string, payload: Uint8Array): Promise<void> {
    return this.client.publishAsync(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos: 1 }).then(() => undefined);
  }

  answers(corr: string): Received[] {
    return this.byCorr.get(corr) ?? [];
  }

  /** Resolves once `pred()` holds; rejects with `what` after `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        clearTimeout(t);
        this.waiters.delete(check);
        resolve();
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  /** The `n`-th answer (1-based) with `corr`. */
  async answer(corr: string, timeoutMs = 10_000, n = 1): Promise<Received> {
    await this.waitFor(() => this.answers(corr).length >= n, timeoutMs, `answer #${n} to ${corr}`);
    return this.answers(corr)[n - 1]!;
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** A real agent process: `ferry start --broker <url> --samples` (counter, notes, sensor-log). */
export interface Ferry {
  readonly agent: AgentProcess;
  readonly deviceId: string;
  alive(): boolean;
  /** The agent's stderr and warning log lines, for failure messages. */
  recentLogs(n?: number): string;
  stop(): Promise<void>;
}

export async function startFerry(brokerUrl: string, deviceId: string, config: Record<string, unknown> = {}): Promise<Ferry> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-conformance-'));
  const args = ['--broker', brokerUrl, '--samples', '--device-id', deviceId, '--log-level', 'warn'];
  if (Object.keys(config).length > 0) {
    writeFileSync(join(dir, 'ferry.config.json'), JSON.stringify(config));
    args.push('--config', join(dir, 'ferry.config.json'));
  }
  const agent = startAgentProcess(join(dir, 'data'), args);
  try {
    await agent.ready;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    agent,
    deviceId,
    alive: () => agent.proc.exitCode === null && agent.proc.signalCode === null,
    recentLogs: (n = 8) =>
      agent.logs
        .slice(-n)
        .map((l) => JSON.stringify(l).slice(0, 400))
        .join('\n'),
    async stop() {
      await agent.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What an envelope's fields are set to; a Node is written as it is, `undefined` leaves the key out. */
export type Parts = Partial<Record<'v' | 'type' | 'id' | 'from' | 'replyTo' | 'corr' | 'ts' | 'ttl' | 'body', unknown>>;

export interface EnvelopeShape {
  /** Key order; default §3.1's. */
  order?: string[];
  /** More entries after the fields (unknown keys, duplicates, non-text keys). */
  extra?: Array<[Node | string, Node]>;
  /** Write the envelope's map with an indefinite length. */
  indef?: boolean;
}

/** What the suite reads once from the document and needs for every answer it checks. */
export interface DocFacts {
  fieldOrder: string[];
  maxDepth: number;
  appCodes: Map<string, string | undefined>;
  errorBody: Array<{ key: string; optional: boolean }>;
  details: DetailsRow[];
}

export function docFacts(doc: ProtocolDoc): DocFacts {
  return {
    fieldOrder: doc.envelopeFields().map((f) => f.key),
    maxDepth: doc.maxDepth(),
    appCodes: doc.appCodes(),
    errorBody: doc.errorBody(),
    details: doc.detailsTable(),
  };
}

/**
 * An app instance's mailbox (`ferry/v1/app/<instance>/req`) seen from the wire, for the counter
 * sample: it tracks the count the valid requests sent so far must have produced.
 */
export class Mailbox {
  readonly topic: string;
  /** The count the counter must hold: the sum of the increments of the requests that ran. */
  count = 0;
  /** Every `error` code the agent answered (A.3 must list each). */
  readonly codes = new Set<string>();
  /** Answers the suite expected and looked at: at the end, the client must have received exactly these. */
  readonly accounted = new Set<Received>();

  constructor(
    readonly wire: WireClient,
    readonly ferry: Ferry,
    readonly facts: DocFacts,
    readonly instance = 'counter',
  ) {
    this.topic = `ferry/v1/app/${instance}/req`;
  }

  /** An envelope as a node tree: the request fields by default, overridden by `parts`. */
  envelope(parts: Parts, shape: EnvelopeShape = {}): Node {
    const base: Parts = { v: 1, type: 'app.call', id: freshId(), from: this.wire.me, replyTo: this.wire.inbox, ts: Date.now() };
    const all: Record<string, unknown> = { ...base, ...parts };
    const order = shape.order ?? this.facts.fieldOrder;
    const entries: Array<[Node | string, Node]> = [];
    for (const k of order) if (all[k] !== undefined) entries.push([k, C.of(all[k])]);
    for (const k of Object.keys(all)) if (!order.includes(k) && all[k] !== undefined) entries.push([k, C.of(all[k])]);
    return C.map([...entries, ...(shape.extra ?? [])], shape.indef ?? false);
  }

  /** A valid `app.call` request's bytes. */
  request(id: string, handler: string, message: unknown, parts: Parts = {}): Buffer {
    return encode(this.envelope({ id, body: { handler, message }, ...parts }));
  }

  send(payload: Node | Uint8Array): Promise<void> {
    return this.wire.publish(this.topic, isNode(payload) ? encode(payload) : payload);
  }

  /** Sends a valid request and returns its (checked) answer. */
  async call(handler: string, message: unknown, id = freshId()): Promise<Received> {
    const n = this.wire.answers(id).length + 1;
    await this.send(this.request(id, handler, message));
    return this.expectAnswer(id, n);
  }

  /** The answer to `id`, checked against §3.1, §4.1 and A.3 (any problem fails the caller). */
  async expectAnswer(id: string, n = 1, timeoutMs = 10_000): Promise<Received> {
    let r: Received;
    try {
      r = await this.wire.answer(id, timeoutMs, n);
    } catch (e) {
      throw new Error(`${(e as Error).message}; agent ${this.ferry.alive() ? 'alive' : 'DEAD'}; its last log lines:\n${this.ferry.recentLogs()}`);
    }
    this.accounted.add(r);
    const problems = this.answerProblems(r, id);
    if (problems.length > 0) throw new Error(`the answer to ${id} breaks the document:\n- ${problems.join('\n- ')}\n${JSON.stringify(r.env)}`);
    return r;
  }

  /** A valid increment by `by`: must answer `{count}` with exactly the expected count. */
  async increment(by: number, id = freshId()): Promise<void> {
    const r = await this.call('increment', { by }, id);
    expectOk(r, id);
    this.count += by;
    const got = (r.env!.body as { count?: unknown }).count;
    const want = this.count;
    if (typeof got === 'number') this.count = got; // resynchronised: one failure, not a cascade
    if (got !== want) throw new Error(`counter: expected count ${want} after a valid increment by ${by} (${id}), got ${JSON.stringify(got)}: something hostile was applied, or a valid request was not`);
  }

  /** Waits until the instance's mailbox answers (its session is up); sets `count` from it. */
  async ready(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const sent: string[] = [];
    while (Date.now() < deadline) {
      const id = `warm-${freshId()}`;
      sent.push(id);
      await this.send(this.request(id, 'get', null));
      try {
        await this.wire.waitFor(() => sent.some((s) => this.wire.answers(s).length > 0), 300, 'warm-up');
        const first = sent.find((s) => this.wire.answers(s).length > 0)!;
        const r = this.wire.answers(first)[0]!;
        this.count = (r.env!.body as { count: number }).count;
        // Later warm-ups may still be answered: wait for them, so they are not mistaken for anything.
        await this.wire.waitFor(() => sent.every((s) => this.wire.answers(s).length > 0), 3000, 'warm-up answers').catch(() => undefined);
        for (const s of sent) for (const r of this.wire.answers(s)) this.accounted.add(r);
        return;
      } catch {
        if (!this.ferry.alive()) throw new Error(`the agent exited before its mailbox answered:\n${this.ferry.recentLogs()}`);
      }
    }
    throw new Error(`the ${this.instance} mailbox did not answer within ${timeoutMs} ms:\n${this.ferry.recentLogs()}`);
  }

  /** What in answer `r` to request `id` disagrees with §3.1, §4, §4.1 and A.3. */
  answerProblems(r: Received, id: string, topic = this.wire.inbox): string[] {
    const p: string[] = [];
    if (r.problem || !r.env) return [r.problem ?? 'no envelope'];
    const e = r.env;
    const str = (x: unknown, max: number) => typeof x === 'string' && x.length >= 1 && x.length <= max;
    if (e.v !== 1 || r.written?.get('v')?.major !== 0) p.push('§3.1: v must be the unsigned integer 1');
    if (!str(e.type, 256)) p.push('§3.1: type must be text of 1..256 characters');
    if (!str(e.id, 256)) p.push('§3.1: id must be text of 1..256 characters');
    if (e.from !== this.ferry.deviceId) p.push(`A.3: from must be the agent's device id ${this.ferry.deviceId}, got ${JSON.stringify(e.from)}`);
    if (e.corr !== id) p.push(`A.3: corr must be the request's id ${id}`);
    if (typeof e.ts !== 'number' || !Number.isInteger(e.ts) || e.ts < 0 || r.written?.get('ts')?.major !== 0) p.push('§3.1/§3.2: ts must be an unsigned integer (major type 0)');
    if ('ttl' in e) p.push('A.3: an answer carries no ttl');
    if (!('body' in e)) p.push('§3.1: body is required');
    if (r.topic !== topic) p.push(`A.3: the answer must come on replyTo (${topic}), came on ${r.topic}`);
    if (e.type === 'error') {
      const b = e.body as Record<string, unknown> | null;
      if (typeof b !== 'object' || b === null || Array.isArray(b)) return [...p, '§4.1: an error body is a map'];
      const allowed = this.facts.errorBody.map((k) => k.key);
      for (const k of Object.keys(b)) if (!allowed.includes(k)) p.push(`§4.1: error body key ${k} is not one of ${allowed.join(', ')}`);
      for (const k of this.facts.errorBody) {
        if (!k.optional && !(k.key in b)) p.push(`§4.1: error body lacks ${k.key}`);
        if (k.key in b && k.key !== 'details' && typeof b[k.key] !== 'string') p.push(`§4.1: error body ${k.key} must be text`);
      }
      const code = String(b.code);
      this.codes.add(code);
      if (!this.facts.appCodes.has(code)) p.push(`A.3: ${code} is not one of the app's codes (${[...this.facts.appCodes.keys()].join(', ')})`);
      // A.3's field for the code: literal (`handler`) or a pattern (`handlers.<name>`).
      const documentedField = this.facts.appCodes.get(code);
      if (documentedField !== undefined) {
        const re = new RegExp(`^${documentedField.split(/<[^>]*>/).map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.+')}$`);
        if (typeof b.field !== 'string' || !re.test(b.field)) p.push(`A.3: ${code} has field \`${documentedField}\`, got ${JSON.stringify(b.field)}`);
      }
      if ('details' in b) {
        const keys = this.facts.details.filter((d) => d.code === code).map((d) => d.key);
        if (keys.length === 0) p.push(`§4.1: ${code} defines no details, yet the answer has details`);
        else for (const k of Object.keys(b.details as object)) if (!keys.includes(k)) p.push(`§4.1: ${code} has no details key ${k}`);
      }
    }
    return p;
  }
}

export function expectOk(r: Received, id: string): void {
  if (r.env?.type !== 'app.call.ok') throw new Error(`expected app.call.ok for ${id}, got ${JSON.stringify(r.env)}`);
}

export function errorOf(r: Received): { code?: string; field?: string } {
  if (r.env?.type !== 'error') return {};
  return r.env.body as { code?: string; field?: string };
}

/** What each broker's suite runs on: the broker, a real agent on it, a raw client, the counter's mailbox. */
export interface Rig {
  broker: TestBroker;
  ferry: Ferry;
  wire: WireClient;
  mb: Mailbox;
}

/** Starts a rig: `tag` names the agent's device and the client (unique per process and broker). */
export async function startRig(start: () => Promise<TestBroker>, tag: string, maxDepth: number, facts: DocFacts, agentConfig: Record<string, unknown> = {}): Promise<Rig> {
  const broker = await start();
  const ferry = await startFerry(broker.url, `${tag}-${process.pid}`, agentConfig);
  const wire = await WireClient.connect(broker.url, `${tag}-client-${process.pid}`, maxDepth);
  const mb = new Mailbox(wire, ferry, facts);
  await mb.ready();
  return { broker, ferry, wire, mb };
}

/** Stops what a rig started (any part may be missing when the start failed halfway). */
export async function stopRig(r: Partial<Rig>): Promise<void> {
  await r.wire?.close();
  await r.ferry?.stop();
  await r.broker?.stop();
}
