import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { FerryError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';
import { SqlitePersistence, type BrokerPacket } from './broker-persistence.js';

/** Options of `startEmbeddedBroker`. */
export interface EmbeddedBrokerOptions {
  /** TCP port to listen on. 0 = let the OS pick a free one. Default 0. Limits 0..65535. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`. Only loopback addresses are accepted: the embedded broker is for one device and tests. */
  host?: string;
  /** Longest client id accepted, characters. Default 128 (MQTT 3.1.1 only guarantees 23; Ferry ids are longer). Limits 23..65535. */
  maxClientIdLength?: number;
  /**
   * SQLite file that keeps the broker's state across restarts, crashes and power loss:
   * persistent sessions (subscriptions, queued QoS 1/2 messages), retained messages and
   * wills (transports/DESIGN.md, "the embedded broker's store"). Created if absent; its
   * directory must exist. Default: none, state in memory and lost when the broker stops
   * (for tests and benchmarks). A path, 1..4096 characters, not `:memory:`.
   * Cost: every acknowledgement (PUBACK, SUBACK, …) waits for an fsync, shared by all the
   * writes of one event-loop turn; the file holds what is queued, a few hundred bytes per
   * message beyond its payload. A damaged or foreign file is BROKER_STORE_CORRUPT.
   */
  persistenceFile?: string;
}

export interface EmbeddedBroker {
  /** `mqtt://host:port`. */
  readonly url: string;
  readonly port: number;
  /** Cuts every client connection, stops listening and closes aedes (and its store). Idempotent. */
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;
/** A file name: not SQLite's `:memory:` (or any `:name`), which would keep nothing. */
const FILE_PATH = /^(?!:)[^\0]{1,4096}$/;

/** Starts an in-process aedes broker (MQTT 3.1.1) on a loopback TCP port. */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const r = new OptionReader(options as Record<string, unknown>, 'options');
  r.rejectUnknown(['port', 'host', 'maxClientIdLength', 'persistenceFile']);
  const port = r.number('port', { min: 0, max: 65535 }, 0);
  const host = r.string('host', '127.0.0.1', LOOPBACK);
  const maxClientsIdLength = r.number('maxClientIdLength', { min: 23, max: 65535 }, 128);
  const file = r.has('persistenceFile') ? r.string('persistenceFile', undefined, FILE_PATH) : undefined;

  // Opened first: a damaged store stops the broker before it takes the port.
  const persistence = file === undefined ? undefined : new SqlitePersistence(file);
  const aedes = await Aedes.createBroker({ maxClientsIdLength, ...(persistence ? { persistence } : {}) }).catch(async (e: unknown) => {
    await persistence?.destroy();
    throw e;
  });
  const closeAedes = async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await persistence?.destroy();
  };
  if (persistence) {
    storeBeforeAck(aedes);
    try {
      await publishOrphanedWills(aedes, persistence);
    } catch (e) {
      await closeAedes();
      throw e;
    }
  }
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A client that vanishes mid-packet must not take the broker down.
    socket.on('error', () => socket.destroy());
    aedes.handle(socket);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await closeAedes();
    throw new FerryError('BAD_OPTION', `options.port ${port} on ${host} cannot be listened on: ${(e as Error).message}`, { field: 'options.port' }, { cause: e });
  }
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${actualPort}`,
    port: actualPort,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await stopped;
        await closeAedes();
      })();
      return closing;
    },
  };
}

/**
 * Publishes the wills a previous run of this broker left in its store, then drops them.
 * They belong to clients whose connections that run's end cut: after a crash (the agent
 * killed, the power gone) none of them said DISCONNECT, so MQTT owes their wills. Done
 * before the broker listens: a client that reconnected first would replace its will
 * unpublished, and the services' death notices (PROTOCOL.md §S.2) of the epoch the crash
 * ended would never come, leaving that epoch's retained descriptions live. (aedes itself
 * publishes a dead broker's wills only after four heartbeat intervals, and only those of
 * clients that have not come back.)
 */
async function publishOrphanedWills(aedes: Aedes, persistence: SqlitePersistence): Promise<void> {
  for await (const will of persistence.streamWill({ [aedes.id]: true })) {
    const w = will as BrokerPacket & { clientId: string };
    await new Promise<void>((resolve, reject) => (aedes.publish as unknown as PublishFn).call(aedes, w, null, (e) => (e ? reject(e) : resolve())));
    await persistence.delWill({ id: w.clientId });
  }
}

type PublishFn = (this: Aedes, packet: object, client?: unknown, done?: (e?: Error | null) => void) => void;

/**
 * Makes aedes store a client's QoS 1 message before it acknowledges it.
 *
 * aedes 1.x (lib/handlers/publish.js) writes the PUBACK of a QoS 1 PUBLISH first and only
 * then publishes it, which is when the message is queued for offline sessions: a crash in
 * between loses a message its sender holds a PUBACK for. aedes awaits `authorizePublish`
 * before the PUBACK, so the publish (store, then delivery) runs there, and the publish aedes
 * makes after the PUBACK is skipped for that packet. Store → PUBACK is the order aedes
 * already follows for QoS 2 (store → PUBREC). A failed store fails the authorization:
 * aedes closes the connection, no PUBACK is sent, and the sender sends the message again.
 */
export function storeBeforeAck(aedes: Aedes): void {
  const stored = new WeakSet<object>();
  const authorize = aedes.authorizePublish;
  const publish = (aedes as unknown as { publish: PublishFn }).publish;
  aedes.authorizePublish = (client, packet, callback) => {
    authorize.call(aedes, client, packet, (err) => {
      // Only a client's QoS 1 PUBLISH: a will has no message id and keeps aedes's own path.
      if (err || !client || packet.qos !== 1 || typeof packet.messageId !== 'number') return callback(err);
      publish.call(aedes, packet, client, (e) => {
        if (!e) stored.add(packet);
        callback(e ?? null);
      });
    });
  };
  (aedes as unknown as { publish: PublishFn }).publish = function (packet, client, done) {
    if (stored.delete(packet)) {
      const cb = typeof client === 'function' ? (client as (e?: Error | null) => void) : done;
      cb?.(null);
      return;
    }
    publish.call(this, packet, client, done);
  };
}
