import { join } from 'node:path';
import { FerryError, isFerryError } from '../../core/errors.js';
import type { MqttBus } from '../../transports/mqtt-bus.js';
import type { Discovery } from '../services/discovery.js';
import { Channels } from './channel.js';
import { loadIdentity, type DeviceIdentity } from './identity.js';
import { readBridgeOptions, type BridgeOptions, type ResolvedBridgeOptions } from './options.js';
import { Migrations, type HandoffRuntime } from './migrations.js';
import { Bundles, type BundleLinks, type BundleOptions } from './bundles.js';
import { Pairing, type AttemptView, type CodeView } from './pairing.js';
import { PeerRegistry, type PeerRecord } from './peer-registry.js';
import { SealedBulk, type SealedBulkOptions, type SealedBulkResult, type SealedTransfer } from './sealed-bulk.js';

/** Where the bridge's lines go: the runtime's `Logger.log` fits. */
export type BridgeLog = (level: 'debug' | 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>) => void;

/** What the bridge needs of the agent's connection. */
export interface BridgeLinks {
  bus: MqttBus;
  discovery: Discovery;
  log: BridgeLog;
  /** The runtime's side of a handoff; without it this device neither sends nor takes moves. */
  runtime?: HandoffRuntime;
  /** Whether a peer holds an app's code by hash (offline bundles leave the code out then); default: unknown, the code goes in. */
  codeHeld?: BundleLinks['codeHeld'];
  /** Limits of offline bundles (bundles.ts); defaults when absent. */
  bundles?: BundleOptions;
}

/** A paired peer as `ferry peers` shows it. */
export interface PeerView {
  deviceId: string;
  fingerprint: string;
  profile: string;
  label: string;
  pairedAt: string;
  /** Last authenticated frame from it since this agent started (ISO), or null. */
  lastSeen: string | null;
  /** It answered a sealed ping just now (only when asked to check). */
  reachable?: boolean;
}

/** How long `peers` waits for each peer's ping, ms. */
const REACH_MS = 1500;

/**
 * The bridge (agent/bridge/DESIGN.md): this device's identity, its paired peers, pairing and
 * the sealed channel. It sits above the runtime and reaches it only through `BridgeLinks`.
 */
export class Bridge {
  private readonly lastSeen = new Map<string, number>();
  private announced = false;
  /** Live handoff (migrations.ts); undefined when the bridge runs without a runtime. */
  migrations: Migrations | undefined;
  /** Offline bundles (bundles.ts); undefined when the bridge runs without a runtime. */
  bundles: Bundles | undefined;

  private constructor(
    readonly options: ResolvedBridgeOptions,
    readonly identity: DeviceIdentity,
    readonly peers: PeerRegistry,
    private readonly links: BridgeLinks,
    readonly pairing: Pairing,
    readonly channels: Channels,
    readonly bulk: SealedBulk,
  ) {}

  /**
   * Loads (or, on a fresh data directory, makes) the identity and the peer registry, then
   * listens for pairing and channel traffic and announces the device's keys. A missing or corrupt
   * identity or registry is thrown (IDENTITY_CORRUPT, PEERS_CORRUPT), never replaced.
   */
  static async start(options: BridgeOptions, links: BridgeLinks, onTransfer: (t: SealedTransfer) => void = () => undefined): Promise<Bridge> {
    const o = readBridgeOptions(options, links.bus.options.maxMessageBytes);
    const dir = join(o.dataDir, 'bridge');
    const identity = loadIdentity(dir);
    for (const w of identity.warnings) links.log('warn', 'bridge.identity-warning', { warning: w });
    if (identity.created) links.log('info', 'bridge.identity-created', { file: identity.file, fingerprint: identity.fingerprint });
    const peers = PeerRegistry.open(join(dir, 'peers.json'), identity.fingerprint, { create: true });
    let bridge: Bridge | undefined;
    const pairing = await Pairing.start({
      bus: links.bus,
      self: { deviceId: o.deviceId, deviceKey: identity.deviceKey, staticKey: identity.staticKey.publicKey, profile: o.profile, label: o.label },
      timeoutMs: o.pairTimeoutMs,
      store: (rec) => {
        peers.add(rec);
        bridge?.channels.drop(rec.deviceId, new FerryError('BRIDGE_CLOSED', `${rec.deviceId} was paired again`, { field: 'peer' }));
      },
      isPaired: (peer) => peers.get(peer) !== undefined,
      log: links.log,
    });
    let channels: Channels;
    try {
      channels = await Channels.start({
        bus: links.bus,
        deviceId: o.deviceId,
        staticKey: identity.staticKey,
        peerStaticKey: (peer) => peers.get(peer)?.staticKey,
        handshakeTimeoutMs: o.handshakeTimeoutMs,
        requestTimeoutMs: o.requestTimeoutMs,
        maxFrameBytes: o.maxFrameBytes,
        seen: (peer) => bridge?.lastSeen.set(peer, Date.now()),
        log: links.log,
      });
    } catch (e) {
      await pairing.close();
      throw e;
    }
    const bulk = new SealedBulk(channels, { maxTransferBytes: o.maxTransferBytes, maxTransfers: 4, maxChunkBytes: o.maxFrameBytes - 256 }, (t) => {
      if (!bridge?.migrations?.destination.onTransfer(t.from, t.data, t.meta)) onTransfer(t);
    });
    bridge = new Bridge(o, identity, peers, links, pairing, channels, bulk);
    if (links.runtime) {
      bridge.migrations = new Migrations({ ...links.runtime, channels, bulk, peers, deviceId: o.deviceId, dataDir: o.dataDir, maxFrameBytes: o.maxFrameBytes, log: links.log, bus: links.bus, site: o.site });
      const r = links.runtime;
      bridge.bundles = new Bundles({ channels, moves: r.moves, store: r.store, profile: r.profile, peers, identity, deviceId: o.deviceId, dataDir: o.dataDir, log: links.log, ...(links.codeHeld ? { codeHeld: links.codeHeld } : {}) }, links.bundles);
      void bridge.bundles.recover().catch((e: unknown) => links.log('error', 'bundle.recover-failed', { error: String(e) }));
    }
    channels.handle('bridge.ping', () => ({ ts: Date.now() }));
    channels.handle('bridge.unpair', (peer) => {
      // Answered first (the answer is sealed on the session this drops), then forgotten.
      setImmediate(() => bridge!.forget(peer, 'peer'));
      return { forgotten: true };
    });
    await bridge.announce();
    links.log('info', 'bridge.ready', { deviceId: o.deviceId, fingerprint: identity.fingerprint, peers: peers.list().length });
    return bridge;
  }

  /** The device's keys in its discovery description: peers (and owners) can see who it is before pairing. */
  private async announce(): Promise<void> {
    await this.links.discovery.announce({
      name: 'bridge',
      type: 'ferry.bridge',
      exclusive: false,
      attrs: {
        device: this.options.deviceId,
        profile: this.options.profile,
        label: this.options.label,
        fingerprint: this.identity.fingerprint,
        deviceKey: this.identity.deviceKey.toString('base64url'),
        staticKey: this.identity.staticKey.publicKey.toString('base64url'),
        // Its broker's site in a fleet over several brokers (absent: one broker).
        ...(this.options.site !== undefined ? { site: this.options.site } : {}),
      },
    });
    this.announced = true;
  }

  /** `ferry status` adds these. */
  status(): Record<string, unknown> {
    return { fingerprint: this.identity.fingerprint, paired: this.peers.list().length, pairing: this.pairing.attemptsView().length };
  }

  /** Paired peers and attempts in progress; `check` pings each paired peer (REACH_MS at most). */
  async peerList(check = true): Promise<{ self: Record<string, unknown>; paired: PeerView[]; pending: AttemptView[] }> {
    const list = this.peers.list();
    const reach = check ? await Promise.all(list.map((p) => this.channels.request(p.deviceId, 'bridge.ping', null, REACH_MS).then(() => true, () => false))) : [];
    return {
      self: { deviceId: this.options.deviceId, fingerprint: this.identity.fingerprint, profile: this.options.profile, label: this.options.label, ...(this.options.site !== undefined ? { site: this.options.site } : {}) },
      paired: list.map((p, i) => ({
        deviceId: p.deviceId,
        fingerprint: p.fingerprint,
        profile: p.profile,
        label: p.label,
        pairedAt: new Date(p.pairedAt).toISOString(),
        lastSeen: this.lastSeen.has(p.deviceId) ? new Date(this.lastSeen.get(p.deviceId)!).toISOString() : null,
        ...(check ? { reachable: reach[i]! } : {}),
      })),
      pending: this.pairing.attemptsView(),
    };
  }

  pair(peer: unknown, accept: boolean): Promise<CodeView> {
    return accept ? this.pairing.accept(peer) : this.pairing.initiate(peer);
  }

  async confirm(peer: unknown, yes: boolean, code: string | undefined): Promise<PeerView> {
    const rec = await this.pairing.confirm(peer, yes, code);
    return this.view(rec);
  }

  /**
   * Unpairs: the peer is told (a sealed `bridge.unpair` request; `told` means it answered,
   * within REACH_MS) so it forgets this device too, then its record and sessions go: its channel
   * is refused from then on. A peer that was not reachable learns at its next attempt, which is
   * refused (BRIDGE_NOT_PAIRED).
   */
  async unpair(peerArg: unknown): Promise<{ peer: string; told: boolean }> {
    const rec = this.peers.require(typeof peerArg === 'string' ? peerArg : String(peerArg));
    const peer = rec.deviceId;
    let told = false;
    // Tell it first while the keys are here, but never wait long: unpairing must not hang on a dead
    // peer. A request, not a one-way message: only an answer shows the peer read it.
    try {
      await this.channels.request(peer, 'bridge.unpair', null, REACH_MS);
      told = true;
    } catch {
      told = false;
    }
    this.forget(peer, 'here');
    return { peer, told };
  }

  private forget(peer: string, by: 'here' | 'peer'): { forgotten: boolean } {
    const had = this.peers.remove(peer);
    this.channels.drop(peer);
    this.bulk.forget(peer);
    this.lastSeen.delete(peer);
    if (had) this.links.log('info', 'peer.unpaired', { peer, by });
    return { forgotten: had };
  }

  /** A sealed round trip to `peer` (`ferry peers --ping`): proves the pairing and the channel work. */
  async ping(peer: unknown): Promise<{ peer: string; rttMs: number; session: 'new' | 'kept' }> {
    const id = this.peers.require(typeof peer === 'string' ? peer : String(peer)).deviceId;
    const handshakes = this.channels.stats.handshakes;
    const t0 = performance.now();
    await this.channels.request(id, 'bridge.ping', null);
    // A session the peer no longer held is replaced inside the request: count handshakes, not sessions.
    return { peer: id, rttMs: Math.round((performance.now() - t0) * 10) / 10, session: this.channels.stats.handshakes === handshakes ? 'kept' : 'new' };
  }

  sendBulk(peer: string, data: Uint8Array, options?: SealedBulkOptions): Promise<SealedBulkResult> {
    return this.bulk.send(peer, data, options);
  }

  private view(p: PeerRecord): PeerView {
    return { deviceId: p.deviceId, fingerprint: p.fingerprint, profile: p.profile, label: p.label, pairedAt: new Date(p.pairedAt).toISOString(), lastSeen: null };
  }

  async close(): Promise<void> {
    this.migrations?.close();
    await this.pairing.close();
    await this.channels.close();
    if (this.announced) await this.links.discovery.withdraw('bridge').catch(() => undefined);
  }
}

/** Says whether an error means the bridge could not start from its files (the agent runs on without it). */
export function isBridgeFileError(e: unknown): boolean {
  return isFerryError(e, 'IDENTITY_CORRUPT') || isFerryError(e, 'PEERS_CORRUPT');
}
