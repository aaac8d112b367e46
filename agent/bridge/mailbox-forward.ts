import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { drainSession } from '../../transports/session-drain.js';
import { appMailboxTopic } from '../../transports/topics.js';
import type { InstanceMoves } from '../runtime/instance-moves.js';
import { writeAtomically } from '../runtime/registry.js';
import type { BridgeLog } from './bridge.js';
import type { Channels } from './channel.js';
import { SITE_NAME } from './options.js';
import { BodyReader } from './move-wire.js';

/**
 * A handoff across brokers (DESIGN.md, "Handoff across brokers"; PROTOCOL "Federation"). An
 * instance's mailbox is a persistent session at one broker: after a move to a device of another
 * site, requests the origin's broker queued in it (those left unacknowledged at the pause, and
 * those published while the session was there and not connected) would stay there. The origin
 * drains that session once the destination's own session is up, and publishes each request again
 * at its broker: the bridge carries it to the destination. A request the destination also got
 * directly is answered from the reply map, never applied twice.
 */

/** How the two devices of a move stand to each other's broker. */
export type SiteRelation = 'same' | 'forward' | 'unknown';

/** Same broker when both name the same site (or neither names one); another one when both name different sites. */
export function siteRelation(origin: string | undefined, destination: string | undefined): SiteRelation {
  if (origin === destination) return 'same';
  return origin !== undefined && destination !== undefined ? 'forward' : 'unknown';
}

/** The destination's site in its prepare answer: absent, or a site name (else MIGRATE_PROTOCOL naming it). */
export function readAnswerSite(answer: unknown): string | undefined {
  const v = (answer as { site?: unknown } | null)?.site;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !SITE_NAME.test(v)) throw new FerryError('MIGRATE_PROTOCOL', `the prepare answer's site must be a site name (a-z 0-9 -, at most 32), got ${JSON.stringify(v)}`, { field: 'site' });
  return v;
}

/** The refusal of a move whose mailbox could neither be taken over nor forwarded safely. */
export function crossSiteRefusal(instance: string, peer: string, origin: string | undefined, destination: string | undefined): FerryError {
  const name = (s: string | undefined) => (s === undefined ? 'no site' : `site ${s}`);
  return new FerryError(
    'MIGRATE_CROSS_SITE',
    `cannot tell whether ${peer} (${name(destination)}) shares this device's broker (${name(origin)}): ${instance}'s mailbox could be neither taken over nor forwarded safely; start every agent with its broker's --site (ferry broker-config). Nothing moved`,
    { field: 'site' },
  );
}

export interface ForwardLinks {
  bus: MqttBus;
  moves: InstanceMoves;
  channels: Channels;
  log: BridgeLog;
}

/** Answers `move.arrived`: whether an instance runs here with its mailbox session up (the origin drains only then). */
export function answerArrived(channels: Channels, moves: InstanceMoves): void {
  channels.handle('move.arrived', (_peer, b) => {
    const r = new BodyReader(b);
    r.id();
    return { up: moves.sessionUp(r.name('instance')) };
  });
}

/** How often the origin asks whether the destination's session is up, ms. */
const ASK_MS = 100;

/**
 * After the commit: waits until the destination's mailbox session is subscribed (else a request
 * published meanwhile would find no session anywhere), then drains this broker's session of the
 * instance, publishing each request again on the instance's topic. Returns how many it forwarded.
 * On a failure the session is left at this broker with what it holds (never lost): the caller
 * says so in the move's report.
 */
export async function forwardMailbox(l: ForwardLinks, moveId: string, instance: string, peer: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const a = (await l.channels.request(peer, 'move.arrived', { id: moveId, instance }, Math.max(100, Math.min(5000, Math.round(deadline - performance.now())))).catch((e: unknown) => {
      if (isFerryError(e, 'BUS_TIMEOUT') || isFerryError(e, 'BRIDGE_CLOSED')) return null;
      throw e;
    })) as { up?: unknown } | null;
    if (a?.up === true) break;
    if (performance.now() > deadline) throw new FerryError('BUS_TIMEOUT', `${peer} did not report ${instance}'s mailbox session up within ${timeoutMs} ms; its requests stay queued at this broker`, { field: 'stepTimeoutMs' });
    await new Promise((r) => setTimeout(r, ASK_MS));
  }
  const topic = appMailboxTopic(instance);
  const { taken } = await drainSession(
    { ...l.moves.mailboxOptions(instance), sentinelTopic: `ferry/v1/app/${instance}/drain/${randomBytes(16).toString('base64url')}`, timeoutMs },
    async (_t, payload) => {
      try {
        await l.bus.publishRaw(topic, payload, { qos: 1 });
      } catch (e) {
        // One the destination would drop unread anyway (PROTOCOL A.4 step 1): dropped here too.
        if (!isFerryError(e, 'MESSAGE_TOO_LARGE')) throw e;
        l.log('warn', 'move.forward-dropped', { instance, bytes: payload.length, why: 'larger than this bus takes' });
      }
    },
  );
  l.log('info', 'move.forwarded', { move: moveId, instance, to: peer, requests: taken });
  return taken;
}

interface PendingForward {
  move: string;
  instance: string;
  peer: string;
}

/** How often a forward that failed is tried again, ms, and for how long at most. */
const RETRY_MS = 5000;
const RETRY_FOR_MS = 30 * 60_000;

/**
 * Forwards not yet done, kept in `<data>/bridge/forwards.json` (written atomically) from before
 * the pause to the end of the drain, so a forward that fails, or an origin killed before it ended,
 * is tried again (at start, then every RETRY_MS for RETRY_FOR_MS). An entry whose move was never
 * decided (aborted: the instance runs here, its session is its own) or whose instance is back here
 * is dropped: its session there delivers what it holds.
 */
export class PendingForwards {
  private entries: PendingForward[];
  private readonly retrying = new Set<string>();
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly l: ForwardLinks,
  ) {
    this.entries = readPending(file);
  }

  add(e: PendingForward): void {
    this.entries = [...this.entries.filter((x) => x.move !== e.move), e];
    this.save();
  }

  drop(move: string): void {
    if (!this.entries.some((x) => x.move === move)) return;
    this.entries = this.entries.filter((x) => x.move !== move);
    this.save();
  }

  /** Forwards `move`'s mailbox now; if it fails, keeps trying in the background and rethrows. */
  async run(move: string, timeoutMs: number): Promise<number> {
    const e = this.entries.find((x) => x.move === move);
    if (!e) return 0;
    try {
      const n = await forwardMailbox(this.l, e.move, e.instance, e.peer, timeoutMs);
      this.drop(move);
      return n;
    } catch (err) {
      this.l.log('warn', 'move.forward-failed', { move, instance: e.instance, to: e.peer, error: String(err), retryMs: RETRY_MS });
      this.retry(e, timeoutMs);
      throw err;
    }
  }

  /** At start: each pending forward of a decided move is tried again; the others are dropped. */
  recover(timeoutMs: number): void {
    for (const e of this.entries) {
      if (this.decided(e)) this.retry(e, timeoutMs, 0);
      else this.drop(e.move);
    }
  }

  close(): void {
    this.closed = true;
  }

  /** The move is decided (the instance moved away in it) and the instance has not come back. */
  private decided(e: PendingForward): boolean {
    return this.l.moves.marked().some((r) => r.instance === e.instance && r.state === 'moved' && r.move?.id === e.move);
  }

  private retry(e: PendingForward, timeoutMs: number, firstMs = RETRY_MS): void {
    if (this.retrying.has(e.move)) return;
    this.retrying.add(e.move);
    const until = Date.now() + RETRY_FOR_MS;
    const attempt = (): void => {
      if (this.closed) return void this.retrying.delete(e.move);
      if (!this.decided(e) || Date.now() > until) {
        this.retrying.delete(e.move);
        if (!this.decided(e)) this.drop(e.move);
        else this.l.log('error', 'move.forward-abandoned', { move: e.move, instance: e.instance, to: e.peer, why: `not done within ${RETRY_FOR_MS} ms; its requests stay queued at this broker` });
        return;
      }
      forwardMailbox(this.l, e.move, e.instance, e.peer, timeoutMs).then(
        () => {
          this.retrying.delete(e.move);
          this.drop(e.move);
        },
        (err: unknown) => {
          this.l.log('warn', 'move.forward-retry', { move: e.move, instance: e.instance, to: e.peer, error: String(err) });
          setTimeout(attempt, RETRY_MS).unref();
        },
      );
    };
    setTimeout(attempt, firstMs).unref();
  }

  private save(): void {
    try {
      writeAtomically(this.file, `${JSON.stringify({ format: 'ferry.forwards/1', forwards: this.entries })}\n`);
    } catch (e) {
      this.l.log('warn', 'move.forwards-not-saved', { error: String(e) });
    }
  }
}

function readPending(file: string): PendingForward[] {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; forwards?: unknown };
    if (v.format !== 'ferry.forwards/1' || !Array.isArray(v.forwards)) return [];
    return (v.forwards as PendingForward[]).filter((x) => typeof x?.move === 'string' && typeof x.instance === 'string' && typeof x.peer === 'string');
  } catch {
    return []; // none
  }
}
