import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import { describe } from '../../core/options.js';
import { getProfile, type HwProfile } from '../../hw-profiles/index.js';
import type { Store } from '../../store/index.js';
import { importObjects, installLines } from '../heap/migration.js';
import type { HeldLease } from '../services/index.js';
import type { InstanceMoves } from '../runtime/instance-moves.js';
import { syncDirectory } from '../runtime/registry.js';
import { codeHash } from '../runtime/app-upgrade.js';
import type { BridgeLog } from './bridge.js';
import type { Channels } from './channel.js';
import { decodeContent, encodeContent, type BundleContent } from './bundle-content.js';
import { BUNDLE_ID, openBundle, sealBundle, type BundleHeader } from './bundle-format.js';
import { BundleLedger } from './bundle-ledger.js';
import { faultPoint } from './fault-points.js';
import type { DeviceIdentity } from './identity.js';
import { exportAt } from './move-objects.js';
import type { PeerRegistry } from './peer-registry.js';

/**
 * Offline bundles (agent/bridge/DESIGN.md, "Offline bundles"): `export` seals a suspended
 * instance into a file for one paired peer and marks it moved here; `import` opens such a file
 * and runs the instance; `cancel` takes an exported instance back while its bundle is unimported,
 * by asking the peer to revoke it. The durable steps, in order, make every crash leave the
 * instance on exactly one device:
 *   export: ledger `exporting` → temp file written and fsynced → registry `moved` (the decision)
 *           → rename to the file name → ledger `exported`
 *   import: registry `incoming` v0 → heap and code stored → ledger `imported` (the decision)
 *           → registry `incoming` vN → running
 */

export interface BundleOptions {
  /** Largest bundle written or read, bytes. Default 256 MiB; 1 KiB .. 4 GiB. Limits the memory an import takes (the file is read whole). */
  maxBundleBytes?: number;
  /** How long `cancel` waits for the peer's answer, ms. Default 5000; 100 .. 120 000. */
  cancelTimeoutMs?: number;
}

export interface BundleLinks {
  channels: Channels;
  moves: InstanceMoves;
  store: Store;
  profile: HwProfile;
  peers: PeerRegistry;
  identity: DeviceIdentity;
  deviceId: string;
  dataDir: string;
  log: BridgeLog;
  /** Whether `peer` already holds the module of `app` with this code hash (region summaries); undefined = unknown, so the code goes in. */
  codeHeld?: (peer: string, app: string, codeHash: string) => boolean | undefined;
}

export interface ExportResult {
  bundle: string;
  instance: string;
  peer: string;
  file: string;
  bytes: number;
  heapBytes: number;
  path: 'lines' | 'objects';
  codeIncluded: boolean;
  leasesReleased: string[];
}

function readOptions(o: BundleOptions): Required<BundleOptions> {
  const num = (k: keyof BundleOptions, d: number, min: number, max: number) => {
    const v = o[k] ?? d;
    if (!Number.isSafeInteger(v) || v < min || v > max) throw new FerryError('BAD_OPTION', `options.${k} must be an integer in ${min}..${max}, got ${describe(v)}`, { field: `options.${k}` });
    return v;
  };
  return { maxBundleBytes: num('maxBundleBytes', 256 * 1024 * 1024, 1024, 4 * 1024 ** 3), cancelTimeoutMs: num('cancelTimeoutMs', 5000, 100, 120_000) };
}

function absoluteFile(file: unknown): string {
  if (typeof file !== 'string' || !isAbsolute(file)) throw new FerryError('BAD_OPTION', `file must be an absolute path (the CLI resolves it against its working directory), got ${describe(file)}`, { field: 'file' });
  return file;
}

/** Writes `data` to `path` and fsyncs it (a temp file: renamed into place later). */
function writeSynced(path: string, data: Buffer): void {
  rmSync(path, { force: true });
  const fd = openSync(path, 'wx', 0o600);
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const partOf = (file: string) => `${file}.part`;

export class Bundles {
  private readonly o: Required<BundleOptions>;
  private readonly ledgerOrError: BundleLedger | FerryError;

  constructor(
    private readonly l: BundleLinks,
    options: BundleOptions = {},
  ) {
    this.o = readOptions(options);
    let ledger: BundleLedger | FerryError;
    try {
      ledger = BundleLedger.open(join(l.dataDir, 'bridge', 'bundles.json'));
    } catch (e) {
      // The agent runs on; every bundle command answers this error (never an empty ledger).
      if (!isFerryError(e)) throw e;
      l.log('error', 'bundle.ledger-damaged', { error: e.toString() });
      ledger = e;
    }
    this.ledgerOrError = ledger;
    l.channels.handle('bundle.revoke', (peer, b) => this.revoke(peer, b));
  }

  private get ledger(): BundleLedger {
    if (this.ledgerOrError instanceof FerryError) throw this.ledgerOrError;
    return this.ledgerOrError;
  }

  // ---- export ----

  async export(instanceArg: unknown, fileArg: unknown, peerArg: unknown): Promise<ExportResult> {
    const ledger = this.ledger;
    if (typeof instanceArg !== 'string') throw new FerryError('BAD_OPTION', `instance must be an instance id, got ${describe(instanceArg)}`, { field: 'instance' });
    const instance = instanceArg;
    const file = absoluteFile(fileArg);
    const peer = this.l.peers.require(typeof peerArg === 'string' ? peerArg : String(peerArg));
    const m = this.l.moves;
    m.checkHere(instance); // moved away, arriving, or moving: its error now
    const rec = m.record(instance);
    if (!rec) throw new FerryError('APP_UNKNOWN', `no instance ${JSON.stringify(instance)} here (ferry apps lists them)`, { field: 'instance' });
    const release = m.claim(instance);
    const running = m.isRunningHere(instance);
    let paused = false;
    let decided = false;
    const id = `bundle-${randomBytes(16).toString('hex')}`;
    try {
      // A running instance stops at a bookmark (as a live move's switch): answered calls are
      // committed, its mailbox session closes (what it did not acknowledge stays queued).
      let version: number;
      let source: string;
      let leases: Array<{ type: string; lease: HeldLease }> = [];
      if (running) {
        const d = m.describe(instance);
        source = d.source;
        leases = d.leases;
        m.pause(instance);
        paused = true;
        version = m.committedVersionPaused(instance);
      } else {
        source = m.sourceOf(rec);
        version = this.l.store.headVersion(instance);
      }
      const code = codeHash(source);
      const appVersion = rec.appVersion ?? '0.0.0';
      const codeIncluded = this.l.codeHeld?.(peer.deviceId, rec.app, code) !== true;
      const { content, path, heapBytes, lineSize } = this.heapAt(instance, version, peer.profile);
      if (codeIncluded) content.code = source;
      content.leases = leases.map((x) => ({ type: x.type, provider: String(x.lease.description?.provider ?? '') }));
      const header = { id, origin: this.l.deviceId, recipient: peer.deviceId, instance, app: rec.app, appVersion, code, codeIncluded, path, lineSize, wordBits: this.l.profile.wordBits, heapBytes, createdAt: Date.now() };
      const bytes = sealBundle({ header, payload: encodeContent(content), staticKey: this.l.identity.staticKey, recipientStaticKey: peer.staticKey, sign: (d) => this.l.identity.sign(d) });
      if (bytes.length > this.o.maxBundleBytes) throw new FerryError('BUNDLE_TOO_LARGE', `the bundle of ${instance} would be ${bytes.length} bytes, over maxBundleBytes (${this.o.maxBundleBytes})`, { field: 'maxBundleBytes', limit: this.o.maxBundleBytes });
      // Durable steps: the ledger first (so a restart knows the temp file), the file, the decision, the name.
      ledger.update((d) => {
        d.outgoing[id] = { instance, peer: peer.deviceId, file, state: 'exporting', at: Date.now() };
      });
      writeSynced(partOf(file), bytes);
      faultPoint('origin', 'bundle-sealed');
      m.decide(instance, { id, peer: peer.deviceId, version });
      decided = true;
      faultPoint('origin', 'bundle-decided');
      if (paused) {
        m.letGo(instance);
        await m.cancelLeases(leases.map((x) => x.lease)); // leases are not handed over offline: the importer leases anew
        await m.sessionClosed(instance);
      }
      this.publish(id);
      this.l.log('info', 'bundle.exported', { bundle: id, instance, to: peer.deviceId, bytes: bytes.length, heapBytes, path });
      return { bundle: id, instance, peer: peer.deviceId, file, bytes: bytes.length, heapBytes, path, codeIncluded, leasesReleased: leases.map((x) => x.type) };
    } catch (e) {
      if (!decided) {
        rmSync(partOf(file), { force: true });
        if (ledger.outgoing(id)) ledger.update((d) => void delete d.outgoing[id]);
        if (paused) await m.unpause(instance).catch((u: unknown) => this.l.log('error', 'bundle.resume-failed', { instance, error: String(u) }));
      }
      throw e;
    } finally {
      release();
    }
  }

  /** The heap at `version`, as lines when the peer's profile has this line and word size, else as objects. */
  private heapAt(instance: string, version: number, peerProfile: string): { content: BundleContent; path: 'lines' | 'objects'; heapBytes: number; lineSize: number } {
    const info = this.l.store.appInfo(instance);
    let same = false;
    try {
      const p = getProfile(peerProfile);
      same = p.cacheLineBytes === info.lineSize && p.wordBits === this.l.profile.wordBits;
    } catch {
      same = false; // a profile this device does not know (a custom file): objects fit any
    }
    const base = { version, maxLines: info.maxLines, leases: [] };
    if (same) {
      const lines = this.l.store.listLines(instance, { version }).map((x): [number, Uint8Array, Uint8Array] => {
        const b = this.l.store.readLine(instance, x.line, { version });
        if (!b) throw new FerryError('HEAP_BAD_IMAGE', `line ${x.line} of ${instance} is not in version ${version}`, { field: 'line' });
        return [x.line, x.hash, b];
      });
      return { content: { ...base, meta: this.l.store.readState(instance, { version }), lines }, path: 'lines', heapBytes: lines.length * info.lineSize, lineSize: info.lineSize };
    }
    const { objects, image } = exportAt({ store: this.l.store, profile: this.l.profile }, instance, version);
    return { content: { ...base, objects, image }, path: 'objects', heapBytes: objects.reduce((n, [, r]) => n + r.length, 0), lineSize: info.lineSize };
  }

  /** The decided export's file gets its name (and the ledger says so); also run at restart for an export cut after its decision. */
  private publish(id: string): void {
    const out = this.ledger.outgoing(id)!;
    try {
      renameSync(partOf(out.file), out.file);
      syncDirectory(dirname(out.file));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    this.ledger.update((d) => void (d.outgoing[id]!.state = 'exported'));
  }

  // ---- import ----

  async import(fileArg: unknown): Promise<{ bundle: string; instance: string; from: string; version: number; path: string; heapBytes: number }> {
    const ledger = this.ledger;
    const file = absoluteFile(fileArg);
    let data: Buffer;
    try {
      const size = statSync(file).size;
      if (size > this.o.maxBundleBytes) throw new FerryError('BUNDLE_TOO_LARGE', `bundle ${file} is ${size} bytes, over maxBundleBytes (${this.o.maxBundleBytes})`, { field: 'file', limit: this.o.maxBundleBytes });
      data = readFileSync(file);
    } catch (e) {
      if (isFerryError(e)) throw e;
      throw new FerryError('BAD_OPTION', `cannot read bundle file ${file}: ${(e as Error).message}`, { field: 'file' });
    }
    const { header: h, payload } = openBundle(data, {
      self: this.l.deviceId,
      staticKey: this.l.identity.staticKey,
      originKeys: (o) => this.l.peers.get(o),
      maxBytes: this.o.maxBundleBytes,
    });
    this.checkNotSeen(h);
    const c = decodeContent(payload, h);
    if (h.path === 'lines' && (h.lineSize !== this.l.profile.cacheLineBytes || h.wordBits !== this.l.profile.wordBits)) {
      throw new FerryError('MIGRATE_NO_FIT', `bundle ${h.id} holds ${h.lineSize}-byte lines of a ${h.wordBits}-bit device; this one (${this.l.profile.name}) has ${this.l.profile.cacheLineBytes}-byte lines, ${this.l.profile.wordBits}-bit: export it again (it then travels as objects)`, { field: 'header.lineSize' });
    }
    const m = this.l.moves;
    if (!h.codeIncluded && !m.hasCode(h.app, h.code)) throw new FerryError('BUNDLE_NO_CODE', `bundle ${h.id} does not carry app ${h.app}'s code (${h.code}) and this device does not hold it: install that version of ${h.app}, or export again`, { field: 'header.codeIncluded' });
    m.checkRoom(h.instance); // a full device (maxInstances) refuses it before anything is stored: AGENT_FULL
    const release = m.claim(h.instance);
    try {
      m.beginIncoming(h.instance, h.app, { id: h.id, peer: h.origin }); // durable before anything of it is stored
      let version: number;
      let codeFile: string | undefined;
      try {
        if (h.codeIncluded && !m.hasCode(h.app, h.code)) codeFile = m.keepCode(h.instance, h.app, h.appVersion, c.code!);
        version = this.install(h, c);
        faultPoint('destination', 'bundle-installed');
        // The decision: checked and written in one turn, so a revocation cannot slip between.
        this.checkNotSeen(h);
        ledger.update((d) => {
          d.incoming[h.id] = { origin: h.origin, instance: h.instance, state: 'imported', at: Date.now(), version, code: { hash: h.code, appVersion: h.appVersion, ...(codeFile ? { file: codeFile } : {}) } };
        });
      } catch (e) {
        m.undoIncoming(h.instance, h.id);
        throw e;
      }
      faultPoint('destination', 'bundle-imported');
      await this.run(h.id);
      this.l.log('info', 'bundle.imported', { bundle: h.id, instance: h.instance, from: h.origin, version, path: h.path });
      return { bundle: h.id, instance: h.instance, from: h.origin, version, path: h.path, heapBytes: h.heapBytes };
    } finally {
      release();
    }
  }

  private checkNotSeen(h: BundleHeader): void {
    const seen = this.ledger.incoming(h.id);
    if (seen?.state === 'imported') throw new FerryError('BUNDLE_IMPORTED', `bundle ${h.id} (${h.instance} from ${h.origin}) was imported here already`, { field: 'header.id' });
    if (seen?.state === 'revoked' && seen.origin === h.origin) throw new FerryError('BUNDLE_REVOKED', `bundle ${h.id} (${h.instance}) was cancelled by ${h.origin} before it was imported; ${h.instance} is back there`, { field: 'header.id' });
  }

  private install(h: BundleHeader, c: BundleContent): number {
    const store = this.l.store;
    if (h.path === 'lines') {
      return installLines(store, h.instance, { lineSize: h.lineSize, maxLines: c.maxLines, meta: c.meta!, lines: c.lines!.map(([line, hash, bytes]) => ({ line, hash, bytes })) });
    }
    // An object image goes into a fresh heap (a cached one from an earlier stay has other content).
    if (store.hasApp(h.instance)) store.removeApp(h.instance);
    const heap = importObjects({ store, app: h.instance, profile: this.l.profile }, c.objects!, c.image!);
    const v = heap.version;
    heap.close();
    return v;
  }

  /** Starts an imported instance (its ledger entry is written): prepared, then committed as an arrival with no leases handed over. */
  private async run(id: string): Promise<void> {
    const e = this.ledger.incoming(id)!;
    const m = this.l.moves;
    const rec = m.record(e.instance);
    if (rec?.state !== 'incoming' || rec.move!.id !== id) return;
    if (rec.move!.version === 0) m.prepared(e.instance, e.version!, { hash: e.code!.hash, appVersion: e.code!.appVersion, ...(e.code!.file ? { file: e.code!.file } : {}) });
    const migrated = { from: e.origin, to: this.l.deviceId, downtimeMs: Math.max(0, Date.now() - (rec.move!.at ?? Date.now())), bundle: id };
    await m.commitIncoming(e.instance, [], migrated);
  }

  // ---- cancel ----

  /** Takes back an exported instance whose bundle the peer has not imported; `waitMs` for the peer's answer (default cancelTimeoutMs). */
  async cancel(instanceArg: unknown, force = false, waitMs = this.o.cancelTimeoutMs): Promise<{ instance: string; bundle: string; peer: string; state: 'suspended'; revoked: boolean; forced: boolean; fileRemoved: boolean }> {
    const ledger = this.ledger;
    if (typeof instanceArg !== 'string') throw new FerryError('BAD_OPTION', `instance must be an instance id, got ${describe(instanceArg)}`, { field: 'instance' });
    const instance = instanceArg;
    const m = this.l.moves;
    const rec = m.record(instance);
    const id = rec?.state === 'moved' ? rec.move!.id : undefined;
    const out = id !== undefined && BUNDLE_ID.test(id) ? ledger.outgoing(id) : undefined;
    if (!rec || !id || !out || out.state === 'cancelled') throw new FerryError('BUNDLE_UNKNOWN', `no bundle of ${instance} is outstanding here${rec ? ` (it is ${rec.state})` : ''}`, { field: 'instance' });
    const release = m.claim(instance);
    try {
      let revoked = false;
      try {
        const a = (await this.l.channels.request(out.peer, 'bundle.revoke', { id, instance }, Math.max(100, waitMs))) as { state?: unknown } | null;
        if (a?.state === 'imported') throw new FerryError('BUNDLE_IMPORTED', `bundle ${id} was imported on ${out.peer} already: ${instance} runs there now (move it back instead)`, { field: 'instance' });
        if (a?.state !== 'revoked') throw new FerryError('BRIDGE_CLOSED', `${out.peer} answered bundle.revoke with ${describe(a?.state)}`, { field: 'state' });
        revoked = true;
      } catch (e) {
        if (isFerryError(e, 'BUNDLE_IMPORTED')) throw e;
        if (!force) throw new FerryError('BUNDLE_PEER_UNREACHABLE', `cannot reach ${out.peer} to revoke bundle ${id} (${isFerryError(e) ? e.code : String(e)}); nothing changed. --force takes ${instance} back anyway, but the bundle could then still be imported there`, { field: 'peer' });
        this.l.log('warn', 'bundle.cancel-forced', { bundle: id, instance, peer: out.peer, error: String(e) });
      }
      m.takeBack(instance, id);
      ledger.update((d) => void (d.outgoing[id]!.state = 'cancelled'));
      let fileRemoved = false;
      try {
        rmSync(out.file);
        fileRemoved = true;
      } catch {
        fileRemoved = false; // moved elsewhere by its owner, or already gone: harmless once revoked
      }
      this.l.log('info', 'bundle.cancelled', { bundle: id, instance, peer: out.peer, revoked, forced: !revoked });
      return { instance, bundle: id, peer: out.peer, state: 'suspended', revoked, forced: !revoked, fileRemoved };
    } finally {
      release();
    }
  }

  /** The peer's side of a cancel: a durable tombstone unless the bundle was imported here. */
  private revoke(peer: string, b: unknown): { state: 'imported' | 'revoked' } {
    const body = b as { id?: unknown; instance?: unknown } | null;
    if (typeof body?.id !== 'string' || !BUNDLE_ID.test(body.id)) throw new FerryError('MIGRATE_PROTOCOL', 'body.id must be a bundle id', { field: 'body.id' });
    if (typeof body.instance !== 'string') throw new FerryError('MIGRATE_PROTOCOL', 'body.instance must be an instance id', { field: 'body.instance' });
    const id = body.id;
    const seen = this.ledger.incoming(id);
    if (seen && seen.origin === peer) return { state: seen.state };
    this.ledger.update((d) => {
      d.incoming[id] = { origin: peer, instance: body.instance as string, state: 'revoked', at: Date.now() };
    });
    this.l.log('info', 'bundle.revoked', { bundle: id, instance: body.instance, from: peer });
    return { state: 'revoked' };
  }

  // ---- recovery ----

  /** After a restart: finishes an export cut after its decision (or drops one cut before), and an import cut after its decision (or undoes one cut before). */
  async recover(): Promise<void> {
    if (this.ledgerOrError instanceof FerryError) return;
    const m = this.l.moves;
    for (const [id, out] of this.ledger.outgoingAll()) {
      if (out.state !== 'exporting') continue;
      const rec = m.record(out.instance);
      if (rec?.state === 'moved' && rec.move!.id === id) this.publish(id);
      else {
        rmSync(partOf(out.file), { force: true });
        this.ledger.update((d) => void delete d.outgoing[id]);
      }
      this.l.log('info', 'bundle.export-recovered', { bundle: id, instance: out.instance, decided: rec?.state === 'moved' });
    }
    for (const rec of m.marked()) {
      if (rec.state !== 'incoming' || !BUNDLE_ID.test(rec.move!.id)) continue;
      const id = rec.move!.id;
      if (this.ledger.incoming(id)?.state === 'imported') {
        await this.run(id).catch((e: unknown) => this.l.log('error', 'bundle.start-failed', { bundle: id, instance: rec.instance, error: String(e) }));
        this.l.log('info', 'bundle.import-recovered', { bundle: id, instance: rec.instance });
      } else {
        m.undoIncoming(rec.instance, id);
        this.l.log('info', 'bundle.import-undone', { bundle: id, instance: rec.instance, why: 'cut before it was recorded as imported' });
      }
    }
  }
}
