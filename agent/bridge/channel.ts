import { randomBytes } from 'node:crypto';
import { ERROR_CODES, FerryError, isFerryError, type ErrorCode } from '../../core/errors.js';
import { errorAnswerBody } from '../../transports/pending-requests.js';
import { decodeOwnedCbor, encodeCbor } from '../../transports/envelope.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { TOPIC_ROOT } from '../../transports/topics.js';
import { systemClock } from '../services/clock.js';
import { ServicesLog } from '../services/service-log.js';
import type { RawKeyPair } from './keys.js';
import { KKHandshake } from './noise.js';
import { bridgePrologue, decodeFrame, decodeRefusal, encodeFrame, encodeRefusal, FrameKind, RecordOpener, RecordSealer, type DecodedFrame } from './records.js';

/**
 * The sealed channel between paired devices (DESIGN.md, "Channel"; PROTOCOL.md §B.3): a Noise KK
 * handshake (one round trip) makes a session; every message after it is a sealed record with a
 * counter. The broker sees frame headers (versions, session ids, device ids) and ciphertext.
 */

/** Where a device receives bridge frames. */
export function channelTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/bridge/${deviceId}/ch`;
}

export interface ChannelOptions {
  bus: MqttBus;
  deviceId: string;
  /** This device's X25519 static key pair (the Noise `s`). */
  staticKey: RawKeyPair;
  /** The static key this device paired with for `peer`, or undefined when not paired (now). */
  peerStaticKey(peer: string): Buffer | undefined;
  /** How long a handshake may take, ms. */
  handshakeTimeoutMs: number;
  /** How long a sealed request waits for its answer by default, ms. */
  requestTimeoutMs: number;
  /** Largest frame accepted or sent, bytes. */
  maxFrameBytes: number;
  /** Called on every authenticated frame from a peer (its "last seen"). */
  seen(peer: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>): void;
}

/** Answers a sealed request (its result is the reply body), or takes a one-way message. */
export type RecordHandler = (peer: string, body: unknown) => unknown;

interface Session {
  id: Buffer;
  peer: string;
  sealer: RecordSealer;
  opener: RecordOpener;
  dead: boolean;
}

interface Waiting {
  session: Session;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

interface Handshaking {
  peer: string;
  hs: KKHandshake;
  resolve(s: Session): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

/** Counts of what the channel did and refused, for `ferry peers --stats` and the tests. */
export interface ChannelStats {
  handshakes: number;
  sealed: number;
  opened: number;
  refused: Partial<Record<ErrorCode, number>>;
}

/** Sessions kept per peer: the newest and the one before (records of it may still be in flight). */
const SESSIONS_PER_PEER = 2;

/** Session ids remembered per peer to refuse a replayed first handshake message (in memory: see DESIGN.md). */
const SEEN_SESSIONS_PER_PEER = 64;

/** `bridge.refused` lines (and refusal frames) per sender and in all, per minute. */
const BRIDGE_LOG_LIMITS = { linesPerSource: 60, intervalMs: 60_000, maxLines: 300 };

export class Channels {
  private readonly sessions = new Map<string, Session>();
  private readonly byPeer = new Map<string, Session[]>();
  private readonly handshaking = new Map<string, Handshaking>();
  private readonly connecting = new Map<string, Promise<Session>>();
  private readonly waiting = new Map<string, Waiting>();
  private readonly handlers = new Map<string, RecordHandler>();
  /** Session ids each peer opened with us lately (handshake replay guard), newest last. */
  private readonly seenSessions = new Map<string, string[]>();
  private unsubscribe: (() => Promise<void>) | undefined;
  private closed = false;
  readonly stats: ChannelStats = { handshakes: 0, sealed: 0, opened: 0, refused: {} };

  /** The refusals' log, rate-limited like the services' (BRIDGE_LOG_LIMITS). */
  private readonly limited: ServicesLog;

  private constructor(private readonly o: ChannelOptions) {
    this.limited = new ServicesLog(o.log, BRIDGE_LOG_LIMITS, systemClock, 'bridge.log-suppressed');
  }

  static async start(o: ChannelOptions): Promise<Channels> {
    const c = new Channels(o);
    c.unsubscribe = await o.bus.subscribeRaw(channelTopic(o.deviceId), (_t, payload) => c.onFrame(payload));
    return c;
  }

  /** Registers what answers sealed messages of `type`. */
  handle(type: string, handler: RecordHandler): void {
    this.handlers.set(type, handler);
  }

  /** Sends a sealed request to a paired peer and resolves with its answer (an error answer is thrown with its code). */
  async request(peer: string, type: string, body: unknown, timeoutMs = this.o.requestTimeoutMs): Promise<unknown> {
    try {
      return await this.requestOnce(peer, type, body, timeoutMs);
    } catch (e) {
      // The peer said it holds no such session (it restarted): nothing was acted on, so ask once
      // more on a new session. Requests must be idempotent anyway: a refusal is only a hint.
      if (isFerryError(e, 'BRIDGE_CLOSED') && e.details.stale === true) return this.requestOnce(peer, type, body, timeoutMs);
      throw e;
    }
  }

  private async requestOnce(peer: string, type: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const s = await this.session(peer);
    const corr = randomBytes(12).toString('base64url');
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(corr);
        reject(new FerryError('BUS_TIMEOUT', `${peer} did not answer ${type} within ${timeoutMs} ms`, { field: 'peer' }));
      }, timeoutMs);
      this.waiting.set(corr, { session: s, resolve, reject, timer });
    });
    try {
      await this.seal(s, { t: type, c: corr, b: body });
    } catch (e) {
      this.settle(corr, undefined, e);
    }
    return answer;
  }

  /**
   * Sends a sealed one-way record whose plaintext is given as CBOR in parts, sealed without
   * joining them (sealed bulk: a record header and a chunk of data, see sealed-bulk.ts).
   */
  async sendEncoded(peer: string, parts: readonly Buffer[]): Promise<void> {
    await this.seal(await this.session(peer), parts);
  }

  /** Sends a sealed one-way message; resolves once the broker has it. */
  async send(peer: string, type: string, body: unknown): Promise<void> {
    await this.seal(await this.session(peer), { t: type, b: body });
  }

  /** Forgets every session with `peer` at once (unpaired): its records are refused from now on. */
  drop(peer: string, why: FerryError = new FerryError('BRIDGE_NOT_PAIRED', `${peer} is not paired with this device any more`, { field: 'peer' })): void {
    for (const s of this.byPeer.get(peer) ?? []) this.kill(s, why);
    this.byPeer.delete(peer);
    const h = [...this.handshaking.entries()].find(([, x]) => x.peer === peer);
    if (h) this.failHandshake(h[0], why);
  }

  async close(): Promise<void> {
    this.closed = true;
    const why = new FerryError('BRIDGE_CLOSED', 'the bridge is shutting down', { field: 'bridge' });
    for (const peer of [...this.byPeer.keys()]) this.drop(peer, why);
    for (const k of [...this.handshaking.keys()]) this.failHandshake(k, why);
    await this.unsubscribe?.().catch(() => undefined);
    this.limited.close();
  }

  // ---- sessions ----

  /** The newest live session with `peer`, or a new one (one handshake at a time per peer). */
  private session(peer: string): Promise<Session> {
    if (this.closed) return Promise.reject(new FerryError('BRIDGE_CLOSED', 'the bridge is shutting down', { field: 'bridge' }));
    if (!this.o.peerStaticKey(peer)) return Promise.reject(new FerryError('BRIDGE_NOT_PAIRED', `${peer} is not paired with this device (ferry pair ${peer})`, { field: 'peer' }));
    const live = (this.byPeer.get(peer) ?? []).filter((s) => !s.dead).at(-1);
    if (live) return Promise.resolve(live);
    let p = this.connecting.get(peer);
    if (!p) {
      p = this.handshake(peer).finally(() => this.connecting.delete(peer));
      this.connecting.set(peer, p);
    }
    return p;
  }

  private handshake(peer: string): Promise<Session> {
    const id = randomBytes(8);
    const key = id.toString('hex');
    const hs = new KKHandshake({ initiator: true, prologue: bridgePrologue(this.o.deviceId, peer, id), s: this.o.staticKey, rs: this.o.peerStaticKey(peer)! });
    return new Promise<Session>((resolve, reject) => {
      const timer = setTimeout(
        () => this.failHandshake(key, new FerryError('BUS_TIMEOUT', `${peer} did not answer the handshake within ${this.o.handshakeTimeoutMs} ms (is its agent running and connected?)`, { field: 'peer' })),
        this.o.handshakeTimeoutMs,
      );
      this.handshaking.set(key, { peer, hs, resolve, reject, timer });
      const frame = encodeFrame({ kind: FrameKind.Hs1, session: id, from: this.o.deviceId }, hs.writeMessage(Buffer.alloc(0)));
      this.o.bus.publishRaw(channelTopic(peer), frame).catch((e: unknown) => this.failHandshake(key, e));
    });
  }

  private failHandshake(key: string, e: unknown): void {
    const h = this.handshaking.get(key);
    if (!h) return;
    this.handshaking.delete(key);
    clearTimeout(h.timer);
    h.reject(e);
  }

  private established(id: Buffer, peer: string, split: ReturnType<KKHandshake['split']>): Session {
    const limits = { maxFrameBytes: this.o.maxFrameBytes };
    const s: Session = { id, peer, sealer: new RecordSealer(split.send, id, this.o.deviceId, limits), opener: new RecordOpener(split.recv, id, limits), dead: false };
    this.sessions.set(id.toString('hex'), s);
    const list = [...(this.byPeer.get(peer) ?? []), s];
    while (list.length > SESSIONS_PER_PEER) this.kill(list.shift()!, new FerryError('BRIDGE_CLOSED', `a newer session with ${peer} replaced this one`, { field: 'peer' }));
    this.byPeer.set(peer, list);
    this.stats.handshakes++;
    this.o.log('debug', 'bridge.session', { peer, session: id.toString('hex') });
    return s;
  }

  private kill(s: Session, why: unknown): void {
    s.dead = true;
    this.sessions.delete(s.id.toString('hex'));
    for (const [corr, w] of this.waiting) if (w.session === s) this.settle(corr, undefined, why);
  }

  /**
   * Seals and publishes one record: a map, or its CBOR given already in parts (sendEncoded).
   * An oversized record is refused by the sealer before it takes a counter, so the session goes on.
   */
  private async seal(s: Session, record: Record<string, unknown> | readonly Buffer[]): Promise<void> {
    if (s.dead) throw new FerryError('BRIDGE_CLOSED', `the session with ${s.peer} ended`, { field: 'peer' });
    const frame = s.sealer.seal(Array.isArray(record) ? record : encodeCbor(record));
    this.stats.sealed++;
    try {
      await this.o.bus.publishRaw(channelTopic(s.peer), frame);
    } catch (e) {
      // A record that never reached the broker leaves a gap the peer refuses: start a new session next time.
      this.kill(s, e);
      throw e;
    }
  }

  private settle(corr: string, value: unknown, error?: unknown): void {
    const w = this.waiting.get(corr);
    if (!w) return;
    this.waiting.delete(corr);
    clearTimeout(w.timer);
    if (error !== undefined) w.reject(error);
    else w.resolve(value);
  }

  // ---- receiving ----

  private refused(code: ErrorCode, from: string | undefined, e: unknown, answer?: DecodedFrame, level: 'debug' | 'warn' = 'warn'): void {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
    const err = isFerryError(e) ? e : undefined;
    // Rate-limited per sender: whoever can publish to the broker must not be able to fill the log,
    // nor make this device send refusals to ids of their choosing at the rate they send.
    const written = this.limited.report(level, 'bridge.refused', from ?? '(unknown sender)', { code, from, field: err?.details.field, error: err?.message ?? String(e) });
    // Tell the sender (a hint, unauthenticated) so it stops waiting or makes a new session.
    if (written && answer && from !== undefined) {
      this.o.bus.publishRaw(channelTopic(from), encodeRefusal(answer.session, this.o.deviceId, code, err?.message ?? code)).catch(() => undefined);
    }
  }

  private onFrame(payload: Buffer): void {
    if (this.closed) return;
    let f: DecodedFrame;
    try {
      f = decodeFrame(payload, this.o.maxFrameBytes);
    } catch (e) {
      this.refused(isFerryError(e) ? e.code : 'BRIDGE_FRAME_MALFORMED', undefined, e);
      return;
    }
    try {
      switch (f.kind) {
        case FrameKind.Hs1:
          return this.onHello(f);
        case FrameKind.Hs2:
          return this.onHelloAnswer(f);
        case FrameKind.Record:
          return this.onRecord(f);
        case FrameKind.Refusal:
          return this.onRefusal(f);
      }
    } catch (e) {
      this.refused(isFerryError(e) ? e.code : 'BRIDGE_FRAME_MALFORMED', f.from, e);
    }
  }

  private onHello(f: DecodedFrame): void {
    const rs = this.o.peerStaticKey(f.from);
    if (!rs) {
      this.refused('BRIDGE_NOT_PAIRED', f.from, new FerryError('BRIDGE_NOT_PAIRED', `a handshake from ${f.from}, which is not paired with ${this.o.deviceId}`, { field: 'frame.from' }), f);
      return;
    }
    // A KK first message can be replayed as is: a session id seen before from this peer is a replay
    // (initiators pick them at random), and answering it would replace the live session's keys.
    const seen = this.seenSessions.get(f.from) ?? [];
    const id = f.session.toString('hex');
    if (seen.includes(id)) {
      this.refused('BRIDGE_REPLAY', f.from, new FerryError('BRIDGE_REPLAY', `a handshake from ${f.from} for session ${id}, which was made before (replayed)`, { field: 'frame.session' }));
      return;
    }
    const hs = new KKHandshake({ initiator: false, prologue: bridgePrologue(f.from, this.o.deviceId, f.session), s: this.o.staticKey, rs });
    try {
      hs.readMessage(f.body);
    } catch (e) {
      this.refused('BRIDGE_HANDSHAKE_FAILED', f.from, e, f);
      return;
    }
    seen.push(id);
    if (seen.length > SEEN_SESSIONS_PER_PEER) seen.shift();
    this.seenSessions.set(f.from, seen);
    const answer = encodeFrame({ kind: FrameKind.Hs2, session: f.session, from: this.o.deviceId }, hs.writeMessage(Buffer.alloc(0)));
    this.established(Buffer.from(f.session), f.from, hs.split());
    this.o.seen(f.from);
    this.o.bus.publishRaw(channelTopic(f.from), answer).catch(() => undefined);
  }

  private onHelloAnswer(f: DecodedFrame): void {
    const key = f.session.toString('hex');
    const h = this.handshaking.get(key);
    if (!h || h.peer !== f.from) {
      this.o.log('debug', 'bridge.stray', { from: f.from, kind: 'hs2' });
      return;
    }
    try {
      h.hs.readMessage(f.body);
    } catch (e) {
      this.refused('BRIDGE_HANDSHAKE_FAILED', f.from, e);
      this.failHandshake(key, new FerryError('BRIDGE_HANDSHAKE_FAILED', `${f.from} does not hold the identity key this device paired with (reinstalled? pair again), or its answer was modified`, { field: 'peer' }));
      return;
    }
    this.handshaking.delete(key);
    clearTimeout(h.timer);
    this.o.seen(f.from);
    h.resolve(this.established(Buffer.from(f.session), f.from, h.hs.split()));
  }

  private onRecord(f: DecodedFrame): void {
    const s = this.sessions.get(f.session.toString('hex'));
    if (!this.o.peerStaticKey(f.from)) {
      if (s) this.drop(f.from);
      this.refused('BRIDGE_NOT_PAIRED', f.from, new FerryError('BRIDGE_NOT_PAIRED', `a record from ${f.from}, which is not paired with ${this.o.deviceId}`, { field: 'frame.from' }), f);
      return;
    }
    if (!s || s.peer !== f.from) {
      this.refused('BRIDGE_CLOSED', f.from, new FerryError('BRIDGE_CLOSED', `no session ${f.session.toString('hex')} with ${f.from} here (restarted?); make a new one`, { field: 'frame.session' }), f);
      return;
    }
    let plain: Buffer;
    try {
      plain = s.opener.open(f);
    } catch (e) {
      if (isFerryError(e, 'BRIDGE_REPLAY')) {
        // QoS 1 may deliver a record twice: dropping it is normal, so not a warning.
        this.refused(e.code, f.from, e, undefined, 'debug');
        return;
      }
      if (isFerryError(e, 'BRIDGE_RECORD_LOST')) {
        // The peer goes on sealing on a session whose records no longer open here: end it at both
        // ends (the refusal tells the peer), and what waits on it is asked again on a new one.
        this.kill(s, new FerryError('BRIDGE_CLOSED', `${e.message}; a new session is made`, { field: 'peer', stale: true }));
        this.refused(e.code, f.from, e, f);
        return;
      }
      this.refused(isFerryError(e) ? e.code : 'BRIDGE_RECORD_REFUSED', f.from, e);
      return;
    }
    this.stats.opened++;
    this.o.seen(f.from);
    let rec: Record<string, unknown>;
    try {
      const v = decodeOwnedCbor(plain); // plain is this record's own buffer: no copies of its byte strings
      if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as Record<string, unknown>).t !== 'string') {
        throw new FerryError('BRIDGE_FRAME_MALFORMED', 'a sealed record must be a CBOR map with a text t', { field: 'record.t' });
      }
      rec = v as Record<string, unknown>;
    } catch (e) {
      this.refused('BRIDGE_FRAME_MALFORMED', f.from, e);
      return;
    }
    void this.dispatch(s, rec);
  }

  private async dispatch(s: Session, rec: Record<string, unknown>): Promise<void> {
    const corr = typeof rec.c === 'string' ? rec.c : undefined;
    if (rec.r === 1) {
      if (corr === undefined) return;
      const w = this.waiting.get(corr);
      if (!w || w.session.peer !== s.peer) return; // an answer to nothing we asked: dropped
      if (rec.t === 'error') {
        const b = (rec.b ?? {}) as { code?: unknown; message?: unknown; field?: unknown };
        const code = typeof b.code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, b.code) ? (b.code as ErrorCode) : 'REMOTE_ERROR';
        this.settle(corr, undefined, new FerryError(code, `${s.peer}: ${String(b.message)}`, typeof b.field === 'string' ? { field: b.field } : {}));
      } else this.settle(corr, rec.b);
      return;
    }
    const type = rec.t as string;
    const h = this.handlers.get(type);
    let reply: Record<string, unknown>;
    try {
      if (!h) throw new FerryError('BRIDGE_FRAME_MALFORMED', `no handler for sealed ${JSON.stringify(type)} records here`, { field: 'record.t' });
      reply = { t: `${type}.ok`, c: corr, r: 1, b: (await h(s.peer, rec.b)) ?? null };
    } catch (e) {
      const err = isFerryError(e) ? e : new FerryError('REMOTE_ERROR', String(e), { field: 'record' });
      if (corr === undefined) {
        this.o.log('warn', 'bridge.message-failed', { from: s.peer, type, code: err.code, error: err.message });
        return;
      }
      reply = { t: 'error', c: corr, r: 1, b: errorAnswerBody(err) };
    }
    if (corr === undefined || s.dead) return;
    await this.seal(s, reply).catch((e: unknown) => this.o.log('warn', 'bridge.reply-failed', { peer: s.peer, type, error: String(e) }));
  }

  private onRefusal(f: DecodedFrame): void {
    const { code, message } = decodeRefusal(f.body);
    const key = f.session.toString('hex');
    const known: ErrorCode = (['BRIDGE_NOT_PAIRED', 'BRIDGE_HANDSHAKE_FAILED', 'BRIDGE_CLOSED'] as const).find((c) => c === code) ?? 'BRIDGE_CLOSED';
    const e = new FerryError(known, `${f.from} refused: ${message}`, { field: 'peer', ...(known === 'BRIDGE_CLOSED' ? { stale: true } : {}) });
    if (this.handshaking.get(key)?.peer === f.from) {
      this.failHandshake(key, e);
      return;
    }
    const s = this.sessions.get(key);
    // A hint only (refusals are not authenticated): it can end a session, never open or act on one.
    if (s && s.peer === f.from) this.kill(s, e);
  }
}
