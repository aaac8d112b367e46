/**
 * A man in the middle of pairing with full control of the broker: an aedes broker that hands
 * every pairing message to the attacker only, and the attacker's client, which answers each side
 * posing as the other with its own keys (PROTOCOL.md §B.2 is the protocol it attacks).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { generateEd25519, generateX25519, type RawKeyPair } from '../../agent/bridge/keys.js';
import { commitment, comparisonCode, confirmationMac, NONCE_BYTES, transcript, type PairingSide } from '../../agent/bridge/pairing-crypto.js';
import { pairTopic } from '../../agent/bridge/pairing-messages.js';
import { ENVELOPE_VERSION, type Envelope } from '../../transports/contract.js';
import { newMessageId } from '../../transports/envelope.js';
import { MqttBus } from '../../transports/mqtt-bus.js';
import { searchResponderNonce } from './code-search.js';

const PAIR_TOPIC = /^ferry\/v1\/bridge\/[^/]+\/pair$/;

export interface CompromisedBroker {
  url: string;
  stop(): Promise<void>;
}

/**
 * An aedes broker on a free loopback port where pairing messages (`ferry/v1/bridge/+/pair`)
 * published by anyone reach only the client `interceptor`, and those the interceptor publishes
 * reach everyone else: the devices never see each other's pairing messages. All other traffic
 * flows as usual.
 */
export async function startCompromisedBroker(interceptor: string): Promise<CompromisedBroker> {
  const aedes = await Aedes.createBroker();
  const forged = new Set<string>();
  const digest = (p: Buffer | string) => createHash('sha256').update(p).digest('hex');
  aedes.authorizePublish = (client, packet, done) => {
    if (client?.id === interceptor && PAIR_TOPIC.test(packet.topic)) forged.add(digest(packet.payload));
    done(null);
  };
  aedes.authorizeForward = (client, packet) => {
    if (!PAIR_TOPIC.test(packet.topic)) return packet;
    const fromInterceptor = forged.has(digest(packet.payload));
    return fromInterceptor !== (client.id === interceptor) ? packet : null;
  };
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    aedes.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** What the man in the middle managed. */
export interface MitmReport {
  /** It knew the initiator's nonce when it had to pick its own nonce toward the initiator. */
  knewNonce: boolean;
  /** Its search found a nonce giving both devices the same code (else it sent a random one: a guess). */
  found: boolean;
  tries: number;
  /** Messages it forged, as `type→device`, in order. */
  forged: string[];
  /** Messages it kept from their destination (e.g. the cancels once the owners saw different codes). */
  dropped: string[];
}

interface Attempt {
  pairing: string;
  initiator: string;
  responder: string;
  commit: boolean;
  real: { initiator: PairingSide; responder?: PairingSide };
  /** The initiator's nonce once known: at once without the commitment, at the reveal with it. */
  initiatorNonce?: Buffer;
  /** Toward the responder it poses as the initiator. */
  asInitiator: { ephemeral: RawKeyPair; nonce: Buffer; side: PairingSide; hash?: Buffer };
  /** Toward the initiator it poses as the responder. */
  asResponder?: { ephemeral: RawKeyPair; nonce: Buffer; side: PairingSide };
}

const bytes = (body: Record<string, unknown>, k: string) => Buffer.from(body[k] as Uint8Array);

/**
 * The attacker's client. It relays nothing as is: every pairing message is rewritten with its own
 * device key, static key, ephemeral key, commitment and nonce. Its one chance is the responder
 * nonce it sends the initiator: when it knows the initiator's nonce by then, it searches for one
 * that gives the initiator the code the responder shows.
 */
export class Mitm {
  readonly deviceKey = generateEd25519().publicKey;
  readonly staticKey = generateX25519().publicKey;
  readonly report: MitmReport = { knewNonce: false, found: false, tries: 0, forged: [], dropped: [] };
  /** Errors of its own (a test failure if any). */
  readonly errors: unknown[] = [];
  private attempt: Attempt | undefined;
  private queue = Promise.resolve();

  private constructor(
    private readonly bus: MqttBus,
    private readonly maxTries: number,
  ) {}

  static async start(url: string, clientId: string, maxTries: number): Promise<Mitm> {
    const bus = await MqttBus.connect({ url, deviceId: 'mallory', clientId });
    const m = new Mitm(bus, maxTries);
    await bus.subscribe('ferry/v1/bridge/+/pair', (env, topic) => {
      m.queue = m.queue.then(() => m.onMessage(env, topic.split('/')[3]!)).catch((e: unknown) => void m.errors.push(e));
    });
    return m;
  }

  close(): Promise<void> {
    return this.bus.close();
  }

  private mine(deviceId: string, ephemeral: RawKeyPair): PairingSide {
    return { deviceId, deviceKey: this.deviceKey, staticKey: this.staticKey, ephemeral: ephemeral.publicKey };
  }

  private async forge(to: string, from: string, type: string, body: Record<string, unknown>): Promise<void> {
    const env: Envelope = { v: ENVELOPE_VERSION, type, id: newMessageId(), from, ts: Date.now(), ttl: 120_000, body };
    await this.bus.publishEnvelope(pairTopic(to), env, { qos: 1 });
    this.report.forged.push(`${type}→${to}`);
  }

  private async onMessage(env: Envelope, to: string): Promise<void> {
    const body = env.body as Record<string, unknown>;
    const a = this.attempt;
    if (env.type === 'pair.request') {
      const ephemeral = generateX25519();
      const nonce = randomBytes(NONCE_BYTES);
      const side = this.mine(env.from, ephemeral);
      const pairing = body.pairing as string;
      const commit = body.commit !== undefined;
      this.attempt = {
        pairing,
        initiator: env.from,
        responder: to,
        commit,
        real: { initiator: { deviceId: env.from, deviceKey: bytes(body, 'deviceKey'), staticKey: bytes(body, 'staticKey'), ephemeral: bytes(body, 'ephemeral') } },
        ...(commit ? {} : { initiatorNonce: bytes(body, 'nonce') }),
        asInitiator: { ephemeral, nonce, side },
      };
      const { commit: _c, nonce: _n, ...rest } = body;
      await this.forge(to, env.from, 'pair.request', { ...rest, deviceKey: this.deviceKey, staticKey: this.staticKey, ephemeral: ephemeral.publicKey, ...(commit ? { commit: commitment(side, pairing, nonce) } : { nonce }) });
      return;
    }
    if (!a) throw new Error(`${env.type} before any request`);
    if (env.type === 'pair.response' && env.from === a.responder) {
      const responder: PairingSide = { deviceId: env.from, deviceKey: bytes(body, 'deviceKey'), staticKey: bytes(body, 'staticKey'), ephemeral: bytes(body, 'ephemeral') };
      a.real.responder = responder;
      a.asInitiator.hash = transcript(a.pairing, a.asInitiator.side, responder, a.asInitiator.nonce, bytes(body, 'nonce'));
      // The code the responder will show; now make the initiator show it too.
      const target = comparisonCode(a.asInitiator.hash);
      const ephemeral = generateX25519();
      const side = this.mine(env.from, ephemeral);
      let nonce: Buffer = randomBytes(NONCE_BYTES); // without the initiator's nonce: a guess, one chance in 10^6
      if (a.initiatorNonce) {
        this.report.knewNonce = true;
        const r = await searchResponderNonce({ pairingId: a.pairing, initiator: a.real.initiator, responder: side, initiatorNonce: a.initiatorNonce, target, maxTries: this.maxTries });
        this.report.tries = r.tries;
        if (r.nonce) {
          this.report.found = true;
          nonce = r.nonce;
        }
      }
      a.asResponder = { ephemeral, nonce, side };
      await this.forge(a.initiator, env.from, 'pair.response', { ...body, deviceKey: this.deviceKey, staticKey: this.staticKey, ephemeral: ephemeral.publicKey, nonce });
      if (a.commit) await this.forge(a.responder, a.initiator, 'pair.reveal', { pairing: a.pairing, nonce: a.asInitiator.nonce });
      return;
    }
    if (env.type === 'pair.reveal' && env.from === a.initiator) {
      a.initiatorNonce = bytes(body, 'nonce'); // too late: its nonce toward the initiator is sent
      return;
    }
    if (env.type === 'pair.confirm' && env.from === a.initiator && a.asResponder && a.initiatorNonce) {
      const r = a.asResponder;
      const hash = transcript(a.pairing, a.real.initiator, r.side, a.initiatorNonce, r.nonce);
      await this.forge(a.initiator, a.responder, 'pair.confirm', { pairing: a.pairing, mac: confirmationMac(r.ephemeral.privateKey, a.real.initiator.ephemeral, hash, 'responder') });
      return;
    }
    if (env.type === 'pair.confirm' && env.from === a.responder && a.real.responder && a.asInitiator.hash) {
      const i = a.asInitiator;
      await this.forge(a.responder, a.initiator, 'pair.confirm', { pairing: a.pairing, mac: confirmationMac(i.ephemeral.privateKey, a.real.responder.ephemeral, i.hash!, 'initiator') });
      return;
    }
    this.report.dropped.push(`${env.type}→${to}`);
  }
}
