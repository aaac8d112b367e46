/**
 * The contract between `transports/` and the parts above it (`agent/services/`,
 * later the runtime and the bridge). `transports/` implements it; everything
 * above codes against these types only. Change it only with both sides.
 */

/** Current envelope version. A receiver refuses any other with `ENVELOPE_VERSION`. */
export const ENVELOPE_VERSION = 1;

/**
 * One versioned CBOR envelope (standard CBOR, RFC 8949: a map with these text keys).
 * Every Ferry message on MQTT is one of these, except raw bulk-transfer chunks.
 */
export interface Envelope<B = unknown> {
  /** Envelope version; always ENVELOPE_VERSION when sent. */
  v: number;
  /** Message type, dotted, e.g. `lease.grant`, `lease.grant.ok`, `error`. */
  type: string;
  /** Unique message id (random, ≥ 128 bits, base64url). Receivers use it to drop QoS 1 duplicates. */
  id: string;
  /** Sender: the device id (or app instance id) that sent it. */
  from: string;
  /** Topic the answer goes to, on requests. */
  replyTo?: string;
  /** On answers: the `id` of the request answered. */
  corr?: string;
  /** Sender's wall clock when sent, ms since the epoch. */
  ts: number;
  /** Time to live, ms from `ts`; a receiver drops an expired message. Absent: no expiry. */
  ttl?: number;
  /** Type-specific body: plain CBOR data (maps, arrays, strings, numbers, byte strings). */
  body: B;
}

export interface PublishOptions {
  /** MQTT QoS. Default 1. */
  qos?: 0 | 1;
  /** Retained message. Default false. */
  retain?: boolean;
}

export interface RequestOptions {
  /** How long to wait for the answer, ms. Default 5,000. */
  timeoutMs?: number;
  /** TTL put on the request, ms. Default = timeoutMs. */
  ttlMs?: number;
}

/** Called for each valid envelope received on a subscription. Must not await a QoS 1 publish. */
export type EnvelopeHandler = (env: Envelope, topic: string) => void;

/** Answers a request: returns the answer body (type `<request type>.ok`) or throws a FerryError (sent back as type `error`). */
export type RequestHandler = (env: Envelope, topic: string) => unknown | Promise<unknown>;

export type BusEvent = 'connect' | 'reconnect' | 'offline' | 'close' | 'error' | 'invalid';

/**
 * A connection to one MQTT broker (3.1.1 baseline) carrying envelopes.
 * Implementations: the mqtt.js client in `transports/`.
 */
export interface Bus {
  /** This end's id: used as `from` and as the MQTT client id prefix. */
  readonly deviceId: string;
  /** True while connected to the broker. */
  readonly connected: boolean;

  /** Publishes an envelope built from type and body. Resolves when the broker has it (PUBACK for QoS 1). */
  publish(topic: string, type: string, body: unknown, options?: PublishOptions & { replyTo?: string; corr?: string; ttlMs?: number }): Promise<void>;
  /** Publishes raw bytes (or an empty retained payload to clear a retained message). */
  publishRaw(topic: string, payload: Uint8Array, options?: PublishOptions): Promise<void>;
  /** Subscribes (QoS 1) and delivers decoded, de-duplicated, unexpired envelopes. Resolves when SUBACK'd. Returns an unsubscribe. */
  subscribe(filter: string, handler: EnvelopeHandler): Promise<() => Promise<void>>;
  /** Request/response over plain 3.1.1 topics: publishes to `topic` with a replyTo of this bus's inbox, waits for `corr`. Rejects with a FerryError on timeout or an `error` answer. */
  request<R = unknown>(topic: string, type: string, body: unknown, options?: RequestOptions): Promise<Envelope<R>>;
  /** Serves requests arriving on `filter`: each answer goes to the request's replyTo with corr = request id. */
  serve(filter: string, handler: RequestHandler): Promise<() => Promise<void>>;
  /** Listens for connection events; `invalid` carries the FerryError of a dropped malformed message. */
  on(event: BusEvent, listener: (arg?: unknown) => void): void;
  off(event: BusEvent, listener: (arg?: unknown) => void): void;
  /** Closes the connection; pending requests reject with `BUS_CLOSED`. */
  close(): Promise<void>;
}

// ---- Bus factory options the parts above rely on (added by agent/services) ----

/** A last will: the broker publishes it if the connection ends without DISCONNECT. */
export interface BusWill {
  /** Topic the will goes to. */
  topic: string;
  /** Envelope type of the will (the body is wrapped in an envelope like any publish). */
  type: string;
  /** Envelope body. */
  body: unknown;
  /** Retained will. Default false. */
  retain?: boolean;
  /** QoS of the will. Default 1. */
  qos?: 0 | 1;
}

/**
 * Connection options the bus factory (`connectBus` / `BusOptions`) should accept
 * besides url and deviceId. Discovery needs `will`; the security section of
 * agent/services needs the credentials and TLS.
 */
export interface BusSessionOptions {
  /**
   * Last will of the connection. A function is called before every connection
   * attempt (first and every reconnect), so the will can carry a per-connection
   * epoch (Sparkplug's bdSeq): discovery ignores a will older than the newest
   * announcement.
   */
  will?: BusWill | (() => BusWill);
  /** MQTT username. Default none. */
  username?: string;
  /** MQTT password. Default none. */
  password?: string | Uint8Array;
  /** TLS (`mqtts://` URL): CA, client certificate and key (PEM), server name, whether to verify the server. Default none (plain TCP). */
  tls?: { ca?: string | Uint8Array; cert?: string | Uint8Array; key?: string | Uint8Array; servername?: string; rejectUnauthorized?: boolean };
}
