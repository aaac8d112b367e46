import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { FerryError } from '../core/errors.js';
import { OptionReader } from '../core/options.js';

/** Options of `startEmbeddedBroker`. */
export interface EmbeddedBrokerOptions {
  /** TCP port to listen on. 0 = let the OS pick a free one. Default 0. Limits 0..65535. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`. Only loopback addresses are accepted: the embedded broker is for one device and tests. */
  host?: string;
  /** Longest client id accepted, characters. Default 128 (MQTT 3.1.1 only guarantees 23; Ferry ids are longer). Limits 23..65535. */
  maxClientIdLength?: number;
}

export interface EmbeddedBroker {
  /** `mqtt://host:port`. */
  readonly url: string;
  readonly port: number;
  /** Cuts every client connection, stops listening and closes aedes. Idempotent. */
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;

/** Starts an in-process aedes broker (MQTT 3.1.1) on a loopback TCP port. */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const r = new OptionReader(options as Record<string, unknown>, 'options');
  r.rejectUnknown(['port', 'host', 'maxClientIdLength']);
  const port = r.number('port', { min: 0, max: 65535 }, 0);
  const host = r.string('host', '127.0.0.1', LOOPBACK);
  const maxClientsIdLength = r.number('maxClientIdLength', { min: 23, max: 65535 }, 128);

  const aedes = await Aedes.createBroker({ maxClientsIdLength });
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
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
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
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
      })();
      return closing;
    },
  };
}
