import { decode } from 'cbor-x';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { importObjects, installLines, type ExportedObject, type ObjectImage } from '../heap/migration.js';
import type { Discovery } from '../services/discovery.js';
import type { HeldLease } from '../services/index.js';
import type { InstanceMoves } from '../runtime/instance-moves.js';
import type { Channels } from './channel.js';
import type { BridgeLog } from './bridge.js';
import { BUNDLE_ID } from './bundle-format.js';
import { dropHere, faultPoint } from './fault-points.js';
import { BodyReader, HASH_BYTES, readGifts, readPrepare, readRound, type PrepareAnswer, type PrepareBody, type RoundBody } from './move-wire.js';

/**
 * The destination of a handoff (DESIGN.md, "Handoff"): answers the origin's prepare, stages each
 * pre-copy round as a store version of the instance (so the switch writes only the last delta),
 * installs the final image and answers `prepared` once that and its registry mark are durable,
 * then starts the instance when told the decision. Until the decision it never runs the instance;
 * after a crash it asks the origin for the decision (`move.decision`).
 */

export interface DestinationLinks {
  channels: Channels;
  moves: InstanceMoves;
  store: Store;
  profile: HwProfile;
  deviceId: string;
  discovery: () => Discovery | undefined;
  log: BridgeLog;
  /** An undecided incoming move with no record from its origin for this long is undone, ms. */
  idleMs: number;
  /** How often a prepared destination whose origin went quiet asks it for the decision, ms. */
  askEveryMs: number;
  /** This device's site, told in the prepare's answer (the origin forwards the mailbox to another site). */
  site?: string | undefined;
}

interface Incoming {
  id: string;
  peer: string;
  p: PrepareBody;
  path: 'lines' | 'objects';
  plan: PrepareAnswer['leasePlan'];
  /** Staged lines: line → hash (hex), as of origin version `base`. */
  staged: Map<number, string>;
  base: number;
  round: number;
  /** Bulk data received for this move, by kind (`round:<n>`, `code`, `objects`). */
  received: Map<string, Buffer>;
  lastActivity: number;
  prepared: boolean;
  codeFile: string | undefined;
  needCode: boolean;
  /** What a mailbox-session connect costs here (a probe run at prepare), ms; told to the origin's estimate. */
  connectMs?: number;
  probe?: Promise<void>;
  /** Object path: the staged records by object id. */
  objects?: Map<number, Uint8Array>;
  idle: NodeJS.Timeout;
}

export class MoveDestination {
  private readonly incoming = new Map<string, Incoming>();
  private readonly asking = new Map<string, NodeJS.Timeout>();

  constructor(private readonly l: DestinationLinks) {
    const c = l.channels;
    c.handle('move.prepare', (peer, b) => this.prepare(peer, b));
    c.handle('move.have', (peer, b) => this.have(peer, b));
    c.handle('move.code', (peer, b) => this.code(peer, b));
    // A dropped request (fault-points.ts) is never answered, as if it were lost on the way.
    const lost = new Promise<never>(() => undefined);
    c.handle('move.round', (peer, b) => (dropHere('destination', 'round') ? lost : this.round(peer, b, false)));
    c.handle('move.switch', (peer, b) => (dropHere('destination', 'switch') ? lost : this.round(peer, b, true)));
    c.handle('move.commit', (peer, b) => (dropHere('destination', 'commit') ? lost : this.commit(peer, b)));
    c.handle('move.abort', (peer, b) => this.abort(peer, b));
  }

  /** Bulk data of a move (sealed-bulk.ts): kept until the request that names it. */
  onTransfer(from: string, data: Buffer, meta: unknown): boolean {
    const m = meta as { move?: unknown; kind?: unknown } | null;
    if (!m || typeof m.move !== 'string' || typeof m.kind !== 'string') return false;
    const inc = this.incoming.get(m.move);
    if (!inc || inc.peer !== from) return true; // for no move of this peer: dropped
    inc.received.set(m.kind, data);
    this.touch(inc);
    return true;
  }

  /** After a restart: undoes moves that were never prepared; asks the origin about prepared ones. */
  recover(): void {
    for (const rec of this.l.moves.marked()) {
      if (rec.state !== 'incoming') continue;
      const m = rec.move!;
      if (BUNDLE_ID.test(m.id)) continue; // an import of an offline bundle: bundles.ts recovers it, asking nobody
      if (m.version === 0) {
        this.l.moves.undoIncoming(rec.instance, m.id);
        this.l.log('info', 'move.undone', { instance: rec.instance, move: m.id, from: m.peer, why: 'not prepared before the restart' });
      } else this.askDecision(rec.instance, m.id, m.peer);
    }
  }

  close(): void {
    for (const inc of this.incoming.values()) clearTimeout(inc.idle);
    for (const t of this.asking.values()) clearTimeout(t);
    this.asking.clear();
  }

  private prepare(peer: string, b: unknown): PrepareAnswer {
    const p = readPrepare(b);
    if (this.incoming.has(p.id)) throw new FerryError('MIGRATE_PROTOCOL', `move ${p.id} is already being prepared`, { field: 'body.id' });
    const fit = this.l.moves.checkFit({ app: p.app, instance: p.instance, minHeapBytes: p.minHeapBytes, requiredWordBits: p.requiredWordBits, services: p.services });
    const path = p.lineSize === this.l.profile.cacheLineBytes && p.wordBits === this.l.profile.wordBits ? 'lines' : 'objects';
    const needCode = !this.l.moves.hasCode(p.app, p.code);
    const d = this.l.discovery();
    const leasePlan = p.leases.map((l) => {
      if (l.local) {
        const mine = d?.lookup({ type: l.type }).some((s) => s.attrs?.device === this.l.deviceId) ?? false;
        return { type: l.type, action: mine ? ('map' as const) : ('lost' as const), provider: mine ? this.l.deviceId : l.provider };
      }
      const seen = d?.lookup({ type: l.type }).some((s) => s.provider === l.provider || s.attrs?.device === l.provider) ?? false;
      return { type: l.type, action: seen ? ('handover' as const) : ('lost' as const), provider: l.provider };
    });
    // Durable before anything of the instance is stored here: a crash from now on is undone at restart.
    this.l.moves.beginIncoming(p.instance, p.app, { id: p.id, peer });
    for (const [old, o] of this.incoming) if (o.p.instance === p.instance && o.peer === peer) this.forget(old);
    faultPoint('destination', 'incoming');
    const inc: Incoming = { id: p.id, peer, p, path, plan: leasePlan, staged: new Map(), base: 0, round: -1, received: new Map(), lastActivity: Date.now(), prepared: false, codeFile: undefined, needCode, idle: setTimeout(() => undefined, 0) };
    this.incoming.set(p.id, inc);
    this.touch(inc);
    inc.probe = this.l.moves.probeSession().then(
      (ms) => void (inc.connectMs = ms),
      (e: unknown) => this.l.log('debug', 'move.probe-failed', { move: p.id, error: String(e) }),
    );
    if (!needCode) this.l.moves.preload(p.instance, p.app);
    this.l.log('info', 'move.incoming', { move: p.id, instance: p.instance, from: peer, path, needCode });
    return { path, needCode, missing: fit.missing, leasePlan, ...(this.l.site !== undefined ? { site: this.l.site } : {}) };
  }

  private have(peer: string, b: unknown): { have: Uint8Array } {
    const r = new BodyReader(b);
    const inc = this.get(peer, r.id());
    const raw = r.bytes('hashes', 4096 * HASH_BYTES);
    if (raw.length % HASH_BYTES !== 0) throw new FerryError('MIGRATE_PROTOCOL', `body.hashes must be a multiple of ${HASH_BYTES} bytes long`, { field: 'body.hashes' });
    const hashes: Uint8Array[] = [];
    for (let i = 0; i < raw.length; i += HASH_BYTES) hashes.push(raw.subarray(i, i + HASH_BYTES));
    const held = this.l.store.hasHashes(hashes);
    const bits = new Uint8Array(Math.ceil(held.length / 8));
    held.forEach((h, i) => {
      if (h) bits[i >> 3]! |= 1 << (i & 7);
    });
    this.touch(inc);
    return { have: bits };
  }

  private code(peer: string, b: unknown): { kept: true } {
    const r = new BodyReader(b);
    const inc = this.get(peer, r.id());
    const data = inc.received.get('code');
    if (!data) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: no code was received`, { field: 'body.id' });
    inc.received.delete('code');
    inc.codeFile = this.l.moves.keepCode(inc.p.instance, inc.p.app, inc.p.appVersion, data.toString('utf8'));
    inc.needCode = false;
    this.l.moves.preload(inc.p.instance, inc.p.app, inc.codeFile);
    return { kept: true };
  }

  /** A pre-copy round (staged) or the final one (`prepared`: installed and marked durably). */
  private async round(peer: string, b: unknown, final: boolean): Promise<{ version: number; applyMs: number; connectMs?: number }> {
    const r = new BodyReader(b);
    const inc = this.get(peer, r.id());
    // The origin's estimate needs the probe's figure before it can judge a switch.
    if (!final && inc.connectMs === undefined) await inc.probe;
    if (inc.prepared) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id} is prepared already`, { field: 'body.id' });
    if (final && inc.needCode) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: the switch came before the code`, { field: 'body.id' });
    const t0 = performance.now();
    let version: number;
    if (inc.path === 'objects') {
      if (!final) {
        this.stageObjects(inc, this.objectData(inc, 'objects:0'));
        return { version: 0, applyMs: Math.round((performance.now() - t0) * 100) / 100, ...(inc.connectMs !== undefined ? { connectMs: inc.connectMs } : {}) };
      }
      version = this.installObjects(inc, r.b.bulk === true ? this.objectData(inc, 'objects:1') : r.b);
    } else {
      const round = this.roundBody(inc, r);
      if (final) faultPoint('destination', 'install');
      version = this.installRound(inc, round);
      if (round.round === 0) faultPoint('destination', 'staged');
    }
    if (final) {
      this.l.moves.prepared(inc.p.instance, version, { hash: inc.p.code, appVersion: inc.p.appVersion, ...(inc.codeFile ? { file: inc.codeFile } : {}) });
      inc.prepared = true;
      faultPoint('destination', 'prepared');
      clearTimeout(inc.idle);
      // From here only the origin's decision ends it; if it never comes, ask for it.
      this.askDecision(inc.p.instance, inc.id, inc.peer, this.l.askEveryMs * 2);
    } else this.touch(inc);
    return { version, applyMs: Math.round((performance.now() - t0) * 100) / 100, ...(inc.connectMs !== undefined ? { connectMs: inc.connectMs } : {}) };
  }

  private roundBody(inc: Incoming, r: BodyReader): RoundBody {
    const limits = { maxLines: inc.p.maxLines, lineSize: inc.p.lineSize };
    if (r.b.bulk === true) {
      const key = `round:${r.int('round', 0, 1_000_000)}`;
      const data = inc.received.get(key);
      if (!data) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: round data ${key} was not received`, { field: 'body.round' });
      inc.received.delete(key);
      let body: unknown;
      try {
        body = decode(data);
      } catch (e) {
        throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: round data is not CBOR (${(e as Error).message})`, { field: 'body.round' });
      }
      return readRound({ ...(body as object), id: inc.id }, limits);
    }
    return readRound(r.b, limits);
  }

  private installRound(inc: Incoming, round: RoundBody): number {
    if (round.round !== inc.round + 1 || round.base !== inc.base) {
      throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: round ${round.round} on base ${round.base} does not follow round ${inc.round} at ${inc.base}`, { field: 'body.base' });
    }
    const next = new Map(inc.staged);
    const bytes = new Map<number, Uint8Array>();
    for (const line of round.removed) next.delete(line);
    for (const [line, hash, b] of round.lines) {
      next.set(line, Buffer.from(hash).toString('hex'));
      if (b) bytes.set(line, b);
    }
    const version = installLines(this.l.store, inc.p.instance, {
      lineSize: inc.p.lineSize,
      maxLines: inc.p.maxLines,
      meta: round.meta,
      lines: [...next].map(([line, hex]) => ({ line, hash: Buffer.from(hex, 'hex'), ...(bytes.has(line) ? { bytes: bytes.get(line)! } : {}) })),
    });
    inc.staged = next;
    inc.base = round.version;
    inc.round = round.round;
    return version;
  }

  private objectData(inc: Incoming, kind: string): Record<string, unknown> {
    const data = inc.received.get(kind);
    if (!data) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: no object image ${kind} was received`, { field: 'body.id' });
    inc.received.delete(kind);
    let v: unknown;
    try {
      v = decode(data);
    } catch (e) {
      throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: object image ${kind} is not CBOR (${(e as Error).message})`, { field: 'body.objects' });
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: object image ${kind} is not a map`, { field: 'body.objects' });
    return v as Record<string, unknown>;
  }

  private stageObjects(inc: Incoming, img: Record<string, unknown>): void {
    inc.objects = new Map(objectList(img.objects, 'objects'));
  }

  private installObjects(inc: Incoming, delta: Record<string, unknown>): number {
    if (!inc.objects) throw new FerryError('MIGRATE_PROTOCOL', `move ${inc.id}: the switch came before the object image`, { field: 'body.id' });
    for (const [oid, rec] of objectList(delta.changed, 'changed')) inc.objects.set(oid, rec);
    const removed = delta.removed;
    if (!Array.isArray(removed) || removed.some((x) => !Number.isInteger(x))) throw new FerryError('MIGRATE_PROTOCOL', 'body.removed must be an array of object ids', { field: 'body.removed' });
    for (const oid of removed as number[]) inc.objects.delete(oid);
    const image = delta.image as ObjectImage;
    // A cached heap of the instance from an earlier stay has this device's line size but not this
    // content; an object image is installed whole into a fresh heap.
    if (this.l.store.hasApp(inc.p.instance)) this.l.store.removeApp(inc.p.instance);
    const heap = importObjects({ store: this.l.store, app: inc.p.instance, profile: this.l.profile }, inc.objects, image);
    const v = heap.version;
    heap.close();
    return v;
  }

  private async commit(peer: string, b: unknown): Promise<{ running: true; resumedAt: number }> {
    const r = new BodyReader(b);
    const id = r.id();
    const instance = r.name('instance');
    const gifts = readGifts(r.b.leases);
    const downtimeMs = r.int('downtimeMs', 0, 2 ** 31);
    const rec = this.l.moves.marked().find((x) => x.instance === instance && x.state === 'incoming' && x.move!.id === id && x.move!.peer === peer);
    if (!rec) {
      if (this.l.moves.isRunningHere(instance)) return { running: true, resumedAt: Date.now() }; // a repeated commit
      throw new FerryError('MIGRATE_PROTOCOL', `no prepared move ${id} of ${instance} from ${peer} here`, { field: 'body.id' });
    }
    if (rec.move!.version === 0) throw new FerryError('MIGRATE_PROTOCOL', `move ${id} of ${instance} was never prepared here`, { field: 'body.id' });
    faultPoint('destination', 'commit');
    const mapped = this.incoming.get(id)?.plan.filter((p) => p.action === 'map').map((p) => p.type) ?? [];
    await this.finish(instance, id, peer, gifts.map((g) => ({ type: g.type, lease: g.lease as unknown as HeldLease, remainingMs: g.remainingMs })), downtimeMs, mapped);
    return { running: true, resumedAt: Date.now() };
  }

  private async finish(instance: string, id: string, peer: string, leases: Array<{ type: string; lease: HeldLease; remainingMs: number }>, downtimeMs: number, mapped: string[] = []): Promise<void> {
    this.forget(id);
    const t = this.asking.get(instance);
    if (t) clearTimeout(t);
    this.asking.delete(instance);
    try {
      await this.l.moves.commitIncoming(instance, leases, { from: peer, to: this.l.deviceId, downtimeMs }, mapped);
    } catch (e) {
      // Decided, and it did not start here (its module, its heap): still `incoming`; try again by asking.
      this.l.log('error', 'move.start-failed', { instance, move: id, from: peer, error: String(e) });
      this.askDecision(instance, id, peer, this.l.askEveryMs);
      throw e;
    }
    faultPoint('destination', 'running');
  }

  private abort(peer: string, b: unknown): { undone: boolean } {
    const r = new BodyReader(b);
    const id = r.id();
    const inc = this.incoming.get(id);
    if (inc && inc.peer !== peer) throw new FerryError('MIGRATE_PROTOCOL', `move ${id} is not from ${peer}`, { field: 'body.id' });
    const instance = inc?.p.instance ?? this.l.moves.marked().find((x) => x.move?.id === id && x.move.peer === peer)?.instance;
    this.forget(id);
    if (instance === undefined) return { undone: false };
    const undone = this.l.moves.undoIncoming(instance, id);
    if (undone) this.l.log('info', 'move.undone', { instance, move: id, from: peer, why: 'the origin aborted' });
    return { undone };
  }

  /** Asks the origin for the decision on a prepared move until it answers (`moved` or `aborted`). */
  private askDecision(instance: string, id: string, peer: string, firstMs = 0): void {
    const old = this.asking.get(instance);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.asking.delete(instance);
      this.l.channels.request(peer, 'move.decision', { id, instance }).then(
        async (a) => {
          const d = (a as { decision?: unknown; leases?: unknown; downtimeMs?: unknown } | null)?.decision;
          const rec = this.l.moves.marked().find((x) => x.instance === instance && x.move?.id === id);
          if (!rec || rec.state !== 'incoming') return;
          if (d === 'moved') {
            this.l.log('info', 'move.decided', { instance, move: id, from: peer, decision: 'moved', asked: true });
            await this.finish(instance, id, peer, [], 0);
          } else if (d === 'aborted') {
            this.forget(id);
            this.l.moves.undoIncoming(instance, id);
            this.l.log('info', 'move.undone', { instance, move: id, from: peer, why: 'the origin says it aborted' });
          } else this.askDecision(instance, id, peer, this.l.askEveryMs); // still under way there
        },
        (e: unknown) => {
          this.l.log('debug', 'move.ask-failed', { instance, move: id, peer, error: String(e) });
          this.askDecision(instance, id, peer, this.l.askEveryMs);
        },
      ).catch((e: unknown) => this.l.log('error', 'move.finish-failed', { instance, move: id, error: String(e) }));
    }, firstMs);
    t.unref();
    this.asking.set(instance, t);
  }

  private get(peer: string, id: string): Incoming {
    const inc = this.incoming.get(id);
    if (!inc || inc.peer !== peer) throw new FerryError('MIGRATE_PROTOCOL', `no move ${id} from ${peer} is under way here`, { field: 'body.id' });
    return inc;
  }

  /**
   * Records activity of an unprepared move. After `idleMs` with nothing from the origin it is
   * undone; before that, a quiet origin is asked every `askEveryMs` whether the move is still
   * under way there (a restarted origin says "aborted": it holds no such move), so a move whose
   * origin died is undone as soon as that origin is back.
   */
  private touch(inc: Incoming): void {
    inc.lastActivity = Date.now();
    clearTimeout(inc.idle);
    const undo = (why: string) => {
      if (inc.prepared || !this.incoming.has(inc.id)) return;
      this.forget(inc.id);
      try {
        if (this.l.moves.undoIncoming(inc.p.instance, inc.id)) this.l.log('warn', 'move.undone', { instance: inc.p.instance, move: inc.id, from: inc.peer, why });
      } catch (e) {
        this.l.log('error', 'move.undo-failed', { instance: inc.p.instance, move: inc.id, error: isFerryError(e) ? e.toString() : String(e) });
      }
    };
    const check = () => {
      if (inc.prepared || !this.incoming.has(inc.id)) return;
      if (Date.now() - inc.lastActivity >= this.l.idleMs) return undo(`nothing from the origin for ${this.l.idleMs} ms`);
      const asked = Date.now();
      this.l.channels.request(inc.peer, 'move.decision', { id: inc.id, instance: inc.p.instance }, this.l.askEveryMs).then(
        (a) => {
          if ((a as { decision?: unknown } | null)?.decision === 'aborted' && inc.lastActivity <= asked) undo('the origin no longer has the move');
          else arm();
        },
        (e: unknown) => {
          this.l.log('debug', 'move.ask-failed', { instance: inc.p.instance, move: inc.id, peer: inc.peer, error: String(e) });
          arm();
        },
      );
    };
    const arm = () => {
      if (!this.incoming.has(inc.id) || inc.prepared) return;
      inc.idle = setTimeout(check, this.l.askEveryMs * 2);
      inc.idle.unref();
    };
    arm();
  }

  private forget(id: string): void {
    const inc = this.incoming.get(id);
    if (inc) clearTimeout(inc.idle);
    this.incoming.delete(id);
  }
}

function objectList(v: unknown, field: string): ExportedObject[] {
  if (!Array.isArray(v)) throw new FerryError('MIGRATE_PROTOCOL', `body.${field} must be an array of [oid, record] pairs`, { field: `body.${field}` });
  return v.map((x, i) => {
    if (!Array.isArray(x) || x.length !== 2 || !Number.isInteger(x[0]) || !(x[1] instanceof Uint8Array)) {
      throw new FerryError('MIGRATE_PROTOCOL', `body.${field}[${i}] must be an [oid, record] pair`, { field: `body.${field}[${i}]` });
    }
    return [x[0] as number, x[1] as Uint8Array];
  });
}
