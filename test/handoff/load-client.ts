/**
 * A client that streams numbered requests into an app instance's mailbox while the instance is
 * moved around (the handoff tests): `app.call` envelopes, one id per number, published QoS 1 to
 * `ferry/v1/app/<instance>/req` with `replyTo` its own inbox, at most `window` unanswered at a
 * time. It never resends: a request the broker or a device lost stays unanswered, so the tests
 * see every loss. It talks to the broker directly (the requester is not the device being moved).
 *
 * Also here: app modules the handoff tests write into a temp dir (their requirements name the
 * devices of the run), and the apps-and-checkpoints snapshot the refusal tests compare.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../../agent/cli/control-client.js';
import { appMailboxTopic, connectBus, ENVELOPE_VERSION, inboxTopic, type Envelope, type MqttBus } from '../../transports/index.js';
import type { Device } from '../bridge/helpers.js';

export interface StreamOptions {
  /** The broker the client connects to (directly, never through a device's emulated link). */
  url: string;
  instance: string;
  /** The handler each request calls; its message is `{ n }` unless `message` says otherwise. */
  handler: string;
  message?: (n: number) => unknown;
  /** Most requests unanswered at once. Default 8. */
  window?: number;
  /** Pause between two sends, ms (the load's pace). Default 5. */
  gapMs?: number;
  /** A tag for the client id and the request ids. */
  tag: string;
}

/** One answer as it arrived: its number, envelope type and body, and when. */
export interface Answer {
  n: number;
  type: string;
  body: unknown;
  at: number;
}

export class LoadClient {
  /** Requests sent: numbers 0 .. sent-1. */
  sent = 0;
  /** Every answer, in arrival order (a repeat of an id shows up twice). */
  readonly answers: Answer[] = [];
  /** The first answer of each number. */
  readonly first = new Map<number, Answer>();
  private sending = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  private constructor(
    private readonly bus: MqttBus,
    private readonly o: Required<Omit<StreamOptions, 'message'>> & Pick<StreamOptions, 'message'>,
  ) {}

  static async connect(options: StreamOptions): Promise<LoadClient> {
    const deviceId = `load-${options.tag}-${process.pid}`;
    const bus = await connectBus({ url: options.url, deviceId, maxInFlight: 64 });
    const c = new LoadClient(bus, { window: 8, gapMs: 5, ...options });
    const prefix = `${options.tag}-`;
    await bus.subscribe(inboxTopic(deviceId), (env: Envelope) => {
      if (!env.corr?.startsWith(prefix)) return;
      const a: Answer = { n: Number(env.corr.slice(prefix.length)), type: env.type, body: env.body, at: Date.now() };
      c.answers.push(a);
      if (!c.first.has(a.n)) c.first.set(a.n, a);
      c.wake?.();
    });
    return c;
  }

  /** Requests sent and not answered yet. */
  get unanswered(): number {
    return this.sent - this.first.size;
  }

  /** Starts streaming (numbers go on from where the last stream stopped). */
  start(): void {
    if (this.sending) return;
    this.sending = true;
    this.loop = (async () => {
      while (this.sending) {
        if (this.unanswered >= this.o.window) {
          await new Promise<void>((r) => {
            this.wake = r;
            setTimeout(r, 50);
          });
          continue;
        }
        await this.send(this.sent++);
        await new Promise((r) => setTimeout(r, this.o.gapMs));
      }
    })();
  }

  /** Stops sending (answers still arrive). */
  async stop(): Promise<void> {
    this.sending = false;
    this.wake?.();
    await this.loop;
  }

  /** Waits until at least `count` numbers are answered (or every one sent, if fewer); false after `timeoutMs`. */
  async waitAnswered(count = this.sent, timeoutMs = 60_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.first.size < Math.min(count, this.sent) || (!this.sending && this.first.size < this.sent)) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /** Numbers sent that have no answer. */
  missing(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.sent; i++) if (!this.first.has(i)) out.push(i);
    return out;
  }

  /** Answers that were not a success, or a second answer that differs from the first. */
  oddAnswers(): Answer[] {
    return this.answers.filter((a) => a.type !== 'app.call.ok' || JSON.stringify(a.body) !== JSON.stringify(this.first.get(a.n)!.body));
  }

  async close(): Promise<void> {
    await this.stop();
    await this.bus.close();
  }

  private send(n: number): Promise<void> {
    const body = { handler: this.o.handler, message: this.o.message ? this.o.message(n) : { n } };
    return this.bus.publishEnvelope(appMailboxTopic(this.o.instance), { v: ENVELOPE_VERSION, type: 'app.call', id: `${this.o.tag}-${n}`, from: this.bus.deviceId, replyTo: inboxTopic(this.bus.deviceId), ts: Date.now(), body });
  }
}

/** Writes an app module `<name>.mjs` into `dir` and returns its path (for `ferry install`). */
export function writeApp(dir: string, name: string, source: string): string {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, source);
  return file;
}

/**
 * An ordered ledger of request numbers (`apply` appends `m.n`, answers `{ n, length }`), read
 * back a piece at a time (`range`: a result must fit in one heap object). `extra` goes into the
 * module's top level (requirements and more handlers).
 */
export function ledgerSource(name: string, extra: { requirements?: string; handlers?: string } = {}): string {
  return `export default {
  name: ${JSON.stringify(name)},
  version: '1.0.0',
  ${extra.requirements ? `requirements: ${extra.requirements},` : ''}
  init(ctx) {
    ctx.root.seen = [];
  },
  handlers: {
    apply(ctx, m) {
      ctx.root.seen.push(m.n);
      return { n: m.n, length: ctx.root.seen.length };
    },
    range(ctx, m) {
      return { length: ctx.root.seen.length, items: ctx.root.seen.slice(m.from, m.to) };
    },
    ${extra.handlers ?? ''}
  },
};
`;
}

/** The whole ledger of `instance`, read with `ferry call` on the device that runs it. */
export async function readLedger(d: Device, instance: string): Promise<number[]> {
  const out: number[] = [];
  for (let from = 0; ; from += 2000) {
    const r = await d.json<{ length: number; items: number[] }>(['call', instance, 'range', JSON.stringify({ from, to: from + 2000 })]);
    if (r.code !== 0) throw new Error(`ferry call ${instance} range failed: ${r.stdout}${r.stderr}`);
    out.push(...r.value.items);
    if (from + 2000 >= r.value.length) return out;
  }
}

/**
 * What a refusal must leave as it was: a device's apps and instances, and its checkpoint versions.
 * Read on the control socket, where `ferry apps --json` and `ferry checkpoints --json` read them
 * (the same values, without two `ferry` processes per device: the refusal tests take dozens).
 */
export async function snapshot(d: Device): Promise<{ apps: unknown; checkpoints: unknown }> {
  const [apps, checkpoints] = await Promise.all([controlRequest(d.dataDir, 'apps'), controlRequest(d.dataDir, 'checkpoints')]);
  return { apps, checkpoints };
}
