import { randomBytes } from 'node:crypto';
import { FerryError, isFerryError, type ErrorCode } from '../../core/errors.js';
import type { Envelope } from '../../transports/contract.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import { fingerprint, generateX25519, type RawKeyPair } from './keys.js';
import { commitment, comparisonCode, confirmationMac, macEquals, NONCE_BYTES, opensCommitment, transcript, type PairingSide } from './pairing-crypto.js';
import { checkPeerId, PairBody, pairTopic, type CancelCode, type Introduction } from './pairing-messages.js';
import type { PeerRecord } from './peer-registry.js';

/**
 * Pairing by numeric comparison (DESIGN.md, "Pairing"; PROTOCOL.md §B.2):
 *
 *   initiator                                responder
 *   pair.request {keys, ephemeral, commit} → (pending until its owner accepts)
 *            ← pair.response {keys, ephemeral, nonce}
 *   pair.reveal {nonce}                    → (checks the commitment)
 *   both show the 6-digit code; each owner confirms on their own device
 *   pair.confirm {mac}                     ↔ pair.confirm {mac}
 *   each stores the other once both confirmations are in
 *
 * Any step can end the attempt on both sides with `pair.cancel {code}`. Nothing is stored
 * before the owner of this device has said yes and the peer's confirmation checks out.
 */

/** What this device says of itself in an attempt. */
export interface PairingSelf {
  deviceId: string;
  deviceKey: Buffer;
  staticKey: Buffer;
  profile: string;
  label: string;
}

/** What the owner is shown once the code is known. */
export interface CodeView {
  peer: string;
  role: 'initiator' | 'responder';
  code: string;
  fingerprint: string;
  profile: string;
  label: string;
  /** Already paired with that device: confirming replaces the stored keys. */
  repair: boolean;
}

/** An attempt in progress, as `ferry peers` lists it. */
export interface AttemptView {
  peer: string;
  role: 'initiator' | 'responder';
  step: Step;
  /** ISO 8601, UTC (as every time the control channel answers). */
  startedAt: string;
  expiresAt: string;
  code?: string;
  fingerprint?: string;
  profile?: string;
  label?: string;
}

type Step = 'requested' | 'incoming' | 'revealing' | 'compare' | 'confirmed';

export interface PairingOptions {
  bus: MqttBus;
  self: PairingSelf;
  /** How long one attempt may take from request to both confirmations, ms. */
  timeoutMs: number;
  /** Stores a confirmed peer (the registry's atomic add). */
  store(rec: PeerRecord): void;
  /** Is this device paired with `peer` now. */
  isPaired(peer: string): boolean;
  log(level: 'debug' | 'info' | 'warn', event: string, fields: Record<string, unknown>): void;
  /**
   * Test builds only (never from options or config): false sends the initiator's nonce in the
   * request with no commitment, the protocol without its defence, so the man-in-the-middle test
   * can show that its attack then succeeds.
   */
  commit?: boolean;
}

/** Most incoming requests held at once awaiting their owner; the oldest goes first. */
export const MAX_INCOMING = 16;

class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  constructor() {
    this.promise = new Promise<T>((res, rej) => ((this.resolve = res), (this.reject = rej)));
    this.promise.catch(() => undefined); // may end before anyone waits on it
  }
}

interface Attempt {
  id: string;
  peer: string;
  role: 'initiator' | 'responder';
  step: Step;
  startedAt: number;
  ephemeral: RawKeyPair;
  nonce: Buffer;
  /** The peer's introduction (a responder has it from the request; an initiator from the response). */
  theirs?: Introduction;
  theirCommit?: Buffer;
  theirNonce?: Buffer;
  hash?: Buffer;
  code?: string;
  /** The peer's confirmation, if it came before this owner's answer. */
  theirMac?: Buffer;
  timer: NodeJS.Timeout;
  codeReady: Deferred<CodeView>;
  done: Deferred<PeerRecord>;
}

/** Ended attempts remembered per peer (why they ended), so an owner answering late learns why. */
const REMEMBER_ENDED = 64;

export class Pairing {
  private readonly attempts = new Map<string, Attempt>();
  /** Why the last attempt with each peer ended, until a new attempt with it starts or timeoutMs passes. */
  private readonly ended = new Map<string, { error: FerryError; at: number }>();
  private unsubscribe: (() => Promise<void>) | undefined;
  private readonly commit: boolean;

  private constructor(private readonly o: PairingOptions) {
    this.commit = o.commit ?? true;
  }

  static async start(o: PairingOptions): Promise<Pairing> {
    const p = new Pairing(o);
    p.unsubscribe = await o.bus.subscribe(pairTopic(o.self.deviceId), (env) => p.onMessage(env));
    return p;
  }

  /** `ferry pair <peer>`: starts an attempt (or rejoins this owner's, or answers the peer's own request to pair) and resolves with the code. */
  initiate(peerArg: unknown): Promise<CodeView> {
    const peer = this.checkPeer(peerArg);
    const a = this.attempts.get(peer);
    if (a?.role === 'responder' && a.step === 'incoming') return this.accept(peer); // both owners asked: answer theirs
    if (a) return a.codeReady.promise;
    const n = this.newAttempt(peer, 'initiator', randomBytes(16).toString('base64url'));
    n.step = 'requested';
    const mine = this.introduction(n);
    const body = this.commit ? { pairing: n.id, ...mine, commit: commitment(this.side(n, 'mine'), n.id, n.nonce) } : { pairing: n.id, ...mine, nonce: n.nonce };
    this.send(n, 'pair.request', body);
    this.o.log('info', 'pair.requested', { peer, pairing: n.id });
    return n.codeReady.promise;
  }

  /** `ferry pair --accept <peer>`: answers the peer's pending request and resolves with the code. */
  accept(peerArg: unknown): Promise<CodeView> {
    const peer = this.checkPeer(peerArg);
    const a = this.attempts.get(peer);
    if (!a || a.role !== 'responder') throw this.whyEnded(peer) ?? new FerryError('PAIR_UNKNOWN', `no pairing request from ${peer} is waiting here (ferry peers lists the pending ones; the request may have timed out)`, { field: 'peer' });
    if (a.step === 'incoming') {
      a.step = 'revealing';
      this.send(a, 'pair.response', { pairing: a.id, ...this.introduction(a), nonce: a.nonce });
      if (!this.commit && a.theirNonce) this.computeCode(a); // the test build without the commitment has the nonce already
    }
    return a.codeReady.promise;
  }

  /**
   * The owner's answer. `yes` with `code` (scripts: `--confirm <code>`) is checked against the code
   * computed here; a different code ends the attempt (PAIR_CODE_MISMATCH) on both sides. Resolves
   * with the stored peer once the peer's owner has confirmed too.
   */
  async confirm(peerArg: unknown, yes: boolean, code?: string): Promise<PeerRecord> {
    const peer = this.checkPeer(peerArg);
    // The arguments first: a malformed code is the same error whatever state the attempt is in.
    if (code !== undefined && !/^\d{6}$/.test(code)) throw new FerryError('BAD_OPTION', `the code must be 6 digits, got ${JSON.stringify(code)}`, { field: 'code' });
    const a = this.attempts.get(peer);
    if (!a) throw this.whyEnded(peer) ?? new FerryError('PAIR_UNKNOWN', `no pairing with ${peer} is in progress here (start one with ferry pair ${peer})`, { field: 'peer' });
    if (a.step === 'incoming') throw new FerryError('PAIR_UNKNOWN', `the request from ${peer} is not accepted yet: ferry pair --accept ${peer}`, { field: 'peer' });
    await a.codeReady.promise;
    if (this.attempts.get(peer) !== a) return a.done.promise; // ended meanwhile: its outcome
    if (!yes) {
      this.end(a, 'PAIR_REFUSED', `the owner of ${this.o.self.deviceId} refused the pairing`, 'the owner refused the pairing here');
      return a.done.promise;
    }
    if (code !== undefined && code !== a.code) {
      const e = new FerryError('PAIR_CODE_MISMATCH', `the code given (${code}) is not the code this device computed for ${peer}; the attempt ended and nothing was stored (a typo, or a man in the middle)`, { field: 'code' });
      this.end(a, 'PAIR_REFUSED', `the codes did not match on ${this.o.self.deviceId}`, e);
      return a.done.promise;
    }
    if (a.step !== 'confirmed') {
      a.step = 'confirmed';
      const mac = confirmationMac(a.ephemeral.privateKey, a.theirs!.ephemeral, a.hash!, a.role);
      this.send(a, 'pair.confirm', { pairing: a.id, mac });
      this.o.log('info', 'pair.confirmed-here', { peer, pairing: a.id });
    }
    if (a.theirMac) this.finish(a);
    return a.done.promise;
  }

  /** Ends an attempt: `refuse` (an incoming request) tells the peer PAIR_REFUSED, else PAIR_CANCELLED. */
  cancel(peerArg: unknown, refuse = false): { peer: string; cancelled: boolean } {
    const peer = this.checkPeer(peerArg);
    const a = this.attempts.get(peer);
    if (!a) throw new FerryError('PAIR_UNKNOWN', `no pairing with ${peer} is in progress here`, { field: 'peer' });
    this.end(a, refuse ? 'PAIR_REFUSED' : 'PAIR_CANCELLED', `the owner of ${this.o.self.deviceId} ${refuse ? 'refused' : 'cancelled'} the pairing`, refuse ? 'refused here' : 'cancelled here');
    return { peer, cancelled: true };
  }

  attemptsView(): AttemptView[] {
    return [...this.attempts.values()].map((a) => ({
      peer: a.peer,
      role: a.role,
      step: a.step,
      startedAt: new Date(a.startedAt).toISOString(),
      expiresAt: new Date(a.startedAt + this.o.timeoutMs).toISOString(),
      ...(a.code !== undefined ? { code: a.code } : {}),
      ...(a.theirs ? { fingerprint: fingerprint(a.theirs.deviceKey, a.theirs.staticKey), profile: a.theirs.profile, label: a.theirs.label } : {}),
    }));
  }

  async close(): Promise<void> {
    for (const a of [...this.attempts.values()]) this.end(a, 'PAIR_CANCELLED', `${this.o.self.deviceId} is shutting down`, new FerryError('BRIDGE_CLOSED', 'the agent is shutting down', { field: 'agent' }));
    await this.unsubscribe?.().catch(() => undefined);
  }

  // ---- messages ----

  private onMessage(env: Envelope): void {
    let peer: string;
    try {
      peer = checkPeerId(env.from, 'envelope.from');
    } catch {
      return; // the bus already checked `from`; nothing to answer
    }
    const a = this.attempts.get(peer);
    try {
      const body = new PairBody(env.body);
      const pairing = body.pairing();
      if (env.type === 'pair.request') return this.onRequest(peer, body);
      if (!a || a.id !== pairing) {
        this.o.log('debug', 'pair.stray', { from: peer, type: env.type });
        return; // an ended or foreign attempt: nothing to act on
      }
      switch (env.type) {
        case 'pair.response':
          return this.onResponse(a, body);
        case 'pair.reveal':
          return this.onReveal(a, body);
        case 'pair.confirm':
          return this.onConfirm(a, body);
        case 'pair.cancel': {
          const code = body.cancelCode();
          this.end(a, undefined, '', new FerryError(code, `${peer} ended the pairing (${code})`, { field: 'peer' }));
          return;
        }
        default:
          throw new FerryError('PAIR_PROTOCOL', `unknown pairing message type ${JSON.stringify(env.type)}`, { field: 'envelope.type' });
      }
    } catch (e) {
      const err = isFerryError(e) ? e : new FerryError('PAIR_PROTOCOL', String(e), { field: 'body' });
      this.o.log('warn', 'pair.bad-message', { from: peer, type: env.type, code: err.code, field: err.details.field, error: err.message });
      if (a && env.type !== 'pair.request') this.end(a, 'PAIR_PROTOCOL', err.message, err);
    }
  }

  private onRequest(peer: string, body: PairBody): void {
    const r = body.request();
    if (!this.commit !== (r.commit === undefined)) throw new FerryError('PAIR_PROTOCOL', this.commit ? 'body.commit is required' : 'this test build takes body.nonce', { field: 'body.commit' });
    const a = this.attempts.get(peer);
    if (a?.role === 'initiator') {
      // Both owners asked at once: the device with the lower id stays the initiator.
      if (this.o.self.deviceId < peer) return;
      this.drop(a);
    } else if (a) {
      // A newer request from the same device replaces the old one; whoever waited on it learns so.
      this.end(a, undefined, '', new FerryError('PAIR_CANCELLED', `${peer} started a new pairing attempt, which replaces this one (ferry peers)`, { field: 'peer' }));
    }
    if ([...this.attempts.values()].filter((x) => x.step === 'incoming').length >= MAX_INCOMING) {
      const oldest = [...this.attempts.values()].find((x) => x.step === 'incoming')!;
      this.end(oldest, 'PAIR_CANCELLED', `${this.o.self.deviceId} holds too many pending requests`, 'too many pending requests');
    }
    const n = this.newAttempt(peer, 'responder', r.pairing);
    n.step = 'incoming';
    n.theirs = r;
    if (r.commit) n.theirCommit = r.commit;
    if (r.nonce) n.theirNonce = r.nonce;
    this.o.log('info', 'pair.incoming', { peer, fingerprint: fingerprint(r.deviceKey, r.staticKey), profile: r.profile, label: r.label });
    // The owner of this device had asked to pair with that peer too: go on with theirs.
    if (a?.role === 'initiator') {
      const waiting = a.codeReady;
      this.accept(peer).then(waiting.resolve, waiting.reject);
    }
  }

  private onResponse(a: Attempt, body: PairBody): void {
    if (a.role !== 'initiator' || a.step !== 'requested') throw new FerryError('PAIR_PROTOCOL', `pair.response out of turn (step ${a.step})`, { field: 'envelope.type' });
    const r = body.response();
    a.theirs = r;
    a.theirNonce = r.nonce;
    // Revealed only now, after the responder's nonce is fixed: a relay cannot fit its nonce to ours.
    if (this.commit) this.send(a, 'pair.reveal', { pairing: a.id, nonce: a.nonce });
    this.computeCode(a);
  }

  private onReveal(a: Attempt, body: PairBody): void {
    if (a.role !== 'responder' || a.step !== 'revealing') throw new FerryError('PAIR_PROTOCOL', `pair.reveal out of turn (step ${a.step})`, { field: 'envelope.type' });
    const nonce = body.bytes('nonce', NONCE_BYTES);
    if (!opensCommitment(a.theirCommit!, this.side(a, 'theirs'), a.id, nonce)) {
      throw new FerryError('PAIR_PROTOCOL', "the revealed nonce does not open the initiator's commitment (the request was altered, or a relay is in between)", { field: 'body.nonce' });
    }
    a.theirNonce = nonce;
    this.computeCode(a);
  }

  private onConfirm(a: Attempt, body: PairBody): void {
    if (a.step !== 'compare' && a.step !== 'confirmed') throw new FerryError('PAIR_PROTOCOL', `pair.confirm out of turn (step ${a.step})`, { field: 'envelope.type' });
    a.theirMac = body.bytes('mac', 32);
    if (a.step === 'confirmed') this.finish(a);
  }

  // ---- steps ----

  private computeCode(a: Attempt): void {
    const [init, resp] = a.role === 'initiator' ? [this.side(a, 'mine'), this.side(a, 'theirs')] : [this.side(a, 'theirs'), this.side(a, 'mine')];
    const [ni, nr] = a.role === 'initiator' ? [a.nonce, a.theirNonce!] : [a.theirNonce!, a.nonce];
    a.hash = transcript(a.id, init, resp, ni, nr);
    a.code = comparisonCode(a.hash);
    a.step = 'compare';
    const t = a.theirs!;
    this.o.log('info', 'pair.compare', { peer: a.peer, role: a.role });
    a.codeReady.resolve({ peer: a.peer, role: a.role, code: a.code, fingerprint: fingerprint(t.deviceKey, t.staticKey), profile: t.profile, label: t.label, repair: this.o.isPaired(a.peer) });
  }

  private finish(a: Attempt): void {
    const theirRole = a.role === 'initiator' ? 'responder' : 'initiator';
    // Their MAC is keyed from their ephemeral private key and ours: recompute from our side of the DH.
    const expect = confirmationMac(a.ephemeral.privateKey, a.theirs!.ephemeral, a.hash!, theirRole);
    if (!macEquals(expect, a.theirMac!)) {
      const e = new FerryError('PAIR_PROTOCOL', `the confirmation from ${a.peer} does not check out (not from the device that computed the code)`, { field: 'body.mac' });
      this.end(a, 'PAIR_PROTOCOL', e.message, e);
      return;
    }
    const t = a.theirs!;
    const rec: PeerRecord = { deviceId: a.peer, deviceKey: t.deviceKey, staticKey: t.staticKey, fingerprint: fingerprint(t.deviceKey, t.staticKey), profile: t.profile, label: t.label, pairedAt: Date.now() };
    try {
      this.o.store(rec);
    } catch (e) {
      this.end(a, 'PAIR_CANCELLED', `${this.o.self.deviceId} could not store the pairing`, e);
      return;
    }
    this.drop(a);
    this.o.log('info', 'peer.paired', { peer: a.peer, fingerprint: rec.fingerprint, profile: rec.profile });
    a.done.resolve(rec);
  }

  /**
   * Ends an attempt on both sides: tells the peer `cancel` (unless it told us) and fails this
   * side's waiters with `why` (a FerryError, or a reason for one of code `cancel`).
   */
  private end(a: Attempt, cancel: CancelCode | undefined, toPeer: string, why: unknown): void {
    if (this.attempts.get(a.peer) !== a) return;
    this.drop(a);
    if (cancel) this.send(a, 'pair.cancel', { pairing: a.id, code: cancel, message: toPeer });
    const e = isFerryError(why) ? why : new FerryError(cancel as ErrorCode, `pairing with ${a.peer}: ${String(why)}`, { field: 'peer' });
    this.ended.delete(a.peer);
    this.ended.set(a.peer, { error: e, at: Date.now() });
    if (this.ended.size > REMEMBER_ENDED) this.ended.delete(this.ended.keys().next().value as string);
    this.o.log('info', 'pair.ended', { peer: a.peer, code: e.code });
    a.codeReady.reject(e);
    a.done.reject(e);
  }

  /** The error the last attempt with `peer` ended with, if that was less than timeoutMs ago. */
  private whyEnded(peer: string): FerryError | undefined {
    const e = this.ended.get(peer);
    return e && Date.now() - e.at < this.o.timeoutMs ? e.error : undefined;
  }

  private drop(a: Attempt): void {
    clearTimeout(a.timer);
    if (this.attempts.get(a.peer) === a) this.attempts.delete(a.peer);
  }

  private newAttempt(peer: string, role: 'initiator' | 'responder', id: string): Attempt {
    this.ended.delete(peer);
    const a: Attempt = {
      id,
      peer,
      role,
      step: 'requested',
      startedAt: Date.now(),
      ephemeral: generateX25519(),
      nonce: randomBytes(NONCE_BYTES),
      timer: setTimeout(() => this.end(a, 'PAIR_TIMEOUT', `${this.o.self.deviceId} gave up after ${this.o.timeoutMs} ms`, new FerryError('PAIR_TIMEOUT', `pairing with ${peer} did not complete within ${this.o.timeoutMs} ms (did its owner run ferry pair --accept ${this.o.self.deviceId} and confirm?); nothing was stored`, { field: 'peer' })), this.o.timeoutMs),
      codeReady: new Deferred<CodeView>(),
      done: new Deferred<PeerRecord>(),
    };
    a.timer.unref();
    this.attempts.set(peer, a);
    return a;
  }

  private introduction(a: Attempt): Record<string, unknown> {
    const s = this.o.self;
    return { deviceKey: s.deviceKey, staticKey: s.staticKey, ephemeral: a.ephemeral.publicKey, profile: s.profile, label: s.label };
  }

  private side(a: Attempt, which: 'mine' | 'theirs'): PairingSide {
    if (which === 'mine') return { deviceId: this.o.self.deviceId, deviceKey: this.o.self.deviceKey, staticKey: this.o.self.staticKey, ephemeral: a.ephemeral.publicKey };
    const t = a.theirs!;
    return { deviceId: a.peer, deviceKey: t.deviceKey, staticKey: t.staticKey, ephemeral: t.ephemeral };
  }

  private send(a: Attempt, type: string, body: Record<string, unknown>): void {
    this.o.bus.publish(pairTopic(a.peer), type, body, { ttlMs: this.o.timeoutMs }).catch((e: unknown) => {
      this.o.log('warn', 'pair.send-failed', { peer: a.peer, type, error: String(e) });
      if (type !== 'pair.cancel') this.end(a, undefined, '', new FerryError('PAIR_CANCELLED', `could not reach ${a.peer}: ${String(e)}`, { field: 'peer' }));
    });
  }

  private checkPeer(v: unknown): string {
    return checkPairPeer(v, this.o.self.deviceId);
  }
}

/** A peer to pair with: a device id, not this device's own (BAD_OPTION naming `peer`). */
export function checkPairPeer(v: unknown, self: string): string {
  const peer = checkPeerId(v, 'peer');
  if (peer === self) throw new FerryError('BAD_OPTION', `a device cannot pair with itself (${peer})`, { field: 'peer' });
  return peer;
}
