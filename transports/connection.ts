import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BusSessionOptions } from './contract.js';

/**
 * The socket under the MQTT connection, and small promise helpers of the bus.
 *
 * Our own stream builder rather than mqtt.js's: its TCP builder has no way to
 * set TCP_NODELAY, and small request/response messages must not wait for Nagle
 * (with delayed ACKs that adds ~40 ms per round trip). TLS (`mqtts://`) takes
 * the CA, client certificate and key from BusOptions.tls and verifies the
 * server unless told otherwise.
 */
export function openSocket(url: string, tls: BusSessionOptions['tls']): Socket {
  const { hostname, port, protocol } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, '');
  if (protocol === 'mqtts:') {
    const t = tls ?? {};
    const pem = (v: string | Uint8Array | undefined) => (v === undefined || typeof v === 'string' ? v : Buffer.from(v));
    const s = tlsConnect({
      host,
      port: Number(port),
      ca: pem(t.ca),
      cert: pem(t.cert),
      key: pem(t.key),
      rejectUnauthorized: t.rejectUnauthorized ?? true,
      // SNI only for names: an IP address as servername is refused by Node.
      servername: t.servername ?? (/^[\d.:]+$/.test(host) ? undefined : host),
    });
    s.setNoDelay(true);
    return s;
  }
  return createConnection({ host, port: Number(port), noDelay: true });
}

export interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
  settled: boolean;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // rejected only at close; waiting callers see it, nobody else must
  const d: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      d.settled = true;
      resolve();
    },
    reject: (e) => {
      d.settled = true;
      reject(e);
    },
  };
  return d;
}

/** Keeps a still-pending readiness promise (callers already wait on it); replaces a settled one. */
export function settledOrNew(d: Deferred): Deferred {
  return d.settled ? deferred() : d;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

