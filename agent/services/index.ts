/**
 * agent/services: discovery, lookup, leases, renewal, handover, alternates,
 * spaces and system services over the MQTT Bus (see DESIGN.md beside this file
 * and the "Services" section of transports/PROTOCOL.md).
 */
import { FerryError } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import type { Bus, BusSessionOptions } from '../../transports/contract.js';
import { connectBus, startEmbeddedBroker, type EmbeddedBroker, type EmbeddedBrokerOptions } from '../../transports/index.js';
import { Alternates } from './alternate.js';
import { systemClock, type Clock } from './clock.js';
import { ConnectionEpoch, Discovery, type Offer } from './discovery.js';
import type { ServiceDescription } from './protocol.js';
import { LeaseClient } from './lease-client.js';
import { LeaseGrantor } from './lease-grantor.js';
import { readLogLimits, type LeaseClientOptions, type LeaseGrantorOptions, type RenewalManagerOptions, type SpaceOptions, type SystemServicesOptions } from './options.js';
import { RenewalManager } from './renewal-manager.js';
import { ServicesLog, type ServicesLogLimits, type ServicesLogSink } from './service-log.js';
import { SpaceHost, SpaceRouter } from './spaces.js';
import { SystemServices } from './system-services.js';

export * from './alternate.js';
export * from './clock.js';
export * from './discovery.js';
export * from './fence.js';
export * from './service-log.js';
export * from './lease-client.js';
export * from './lease-grantor.js';
export * from './lease-table.js';
export * from './options.js';
export * from './protocol.js';
export * from './renewal-manager.js';
export * from './spaces.js';
export * from './system-services.js';

/** Options of `startServices`: one device's whole services stack. */
export interface ServicesOptions extends BusSessionOptions {
  /**
   * Broker URL (`mqtt://` or `mqtts://` with `tls`). Omit it to run the embedded
   * aedes broker in this process (options.broker) and connect to that: a lone
   * device, or the one device of a federation that hosts the broker.
   */
  url?: string;
  /** Embedded broker, used only when `url` is absent: port (default 1883; 0 = pick a free one) and loopback host. Refused beside `url`. */
  broker?: EmbeddedBrokerOptions;
  /** This device's id (a topic level). Required. */
  deviceId: string;
  /** Connection epoch file (see ConnectionEpoch). Default: none (wall-clock epochs). */
  epochFile?: string;
  /** Grantor options; omit to run no grantor (a device that only holds leases). `stateFile` is required inside. */
  grantor?: LeaseGrantorOptions;
  /** Lease client options. */
  client?: LeaseClientOptions;
  /** Renewal manager options. */
  renewal?: RenewalManagerOptions;
  /** System services to offer (needs `grantor`). Default: none. */
  system?: SystemServicesOptions;
  /** Extra bus options passed through to the transport (keepalive, reconnect delays, ...). */
  bus?: Record<string, unknown>;
  /** Injected clock. Default Date.now. */
  clock?: Clock;
  /**
   * Where the services log the messages they drop or refuse as malformed (service-log.ts):
   * `(level, event, fields) => void`; the runtime's `Logger.log` fits. Lines: `services.invalid`
   * (warn: dropped unanswered), `services.bad-request` (debug: answered SERVICE_BAD_REQUEST),
   * `services.ignored` (debug: a description or death notice discovery ignored),
   * `services.log-suppressed` (warn: how many lines the limits held back). Never a payload byte.
   * Default: no log.
   */
  log?: ServicesLogSink;
  /**
   * Rate limits of `log`: `linesPerSource` (default 5, 1..10,000) lines per source per
   * `intervalMs` (ms, default 60,000, 100..86,400,000), and `maxLines` (default 100,
   * 1..1,000,000) per interval in all. Suppressed lines are counted and reported once per
   * interval. Refused without `log`.
   */
  logLimits?: ServicesLogLimits;
}

export interface Services {
  bus: Bus;
  /** The embedded broker this device started (no `url` given); closed with the services. */
  broker?: EmbeddedBroker;
  epoch: ConnectionEpoch;
  discovery: Discovery;
  client: LeaseClient;
  renewals: RenewalManager;
  alternates: Alternates;
  grantor?: LeaseGrantor;
  system?: SystemServices;
  /** Serves this device's space topics (`<prefix>/space/<deviceId>/+`): a name it hosts no space of gets SPACE_NOT_FOUND. */
  spaces: SpaceRouter;
  /** The log of malformed and refused messages (options.log), shared by every part. */
  log: ServicesLog;
  /**
   * Hosts a space on this device (needs a grantor), announced through the device's discovery
   * (type `space`, PROTOCOL §S.6) and logged through its log; closed with the services.
   */
  hostSpace(options: Omit<SpaceOptions, 'discovery' | 'log'>): Promise<SpaceHost>;
  /** Offers a service from this device's grantor and announces it (needs a grantor). */
  offer(offer: Offer): Promise<ServiceDescription>;
  /** Withdraws it: its leases end, its description is replaced by a retained withdrawal. */
  withdraw(name: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Connects one device: a bus whose last will carries the connection epoch, then
 * discovery, the lease client, the renewal manager and alternates, and optionally
 * a grantor and the profile's system services. Credentials and TLS pass through
 * to the bus.
 */
export async function startServices(options: ServicesOptions): Promise<Services> {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(['url', 'broker', 'deviceId', 'epochFile', 'grantor', 'client', 'renewal', 'system', 'bus', 'clock', 'will', 'username', 'password', 'tls', 'log', 'logLimits']);
  if (r.has('will')) r.fail('will', 'absent: startServices sets the will itself (the connection epoch)', r.raw('will'));
  if (r.has('system') && !r.has('grantor')) r.fail('system', 'given only with options.grantor (system services are leased from it)', r.raw('system'));
  if (r.has('url') && r.has('broker')) r.fail('broker', 'absent when options.url is given (the embedded broker runs only without a broker URL)', r.raw('broker'));
  if (r.has('url')) r.string('url');
  const b = r.raw('broker');
  if (b !== undefined && (b === null || typeof b !== 'object' || Array.isArray(b))) r.fail('broker', 'an object (EmbeddedBrokerOptions)', b);
  const clock = options.clock ?? systemClock;
  const sink = r.raw('log');
  if (sink !== undefined && typeof sink !== 'function') r.fail('log', 'a function (level, event, fields)', sink);
  if (r.has('logLimits') && sink === undefined) r.fail('logLimits', 'given only with options.log', r.raw('logLimits'));
  const log = new ServicesLog(sink as ServicesLogSink | undefined, readLogLimits(options.logLimits), clock);
  const epoch = new ConnectionEpoch(r.string('deviceId'), options.epochFile);
  // No broker URL: this device hosts the broker itself (aedes, loopback, the configured port).
  const broker = options.url === undefined ? await startEmbeddedBroker({ port: 1883, ...(options.broker ?? {}) }) : undefined;
  let bus: Bus;
  try {
    bus = await connectBus({
      ...(options.bus ?? {}),
      url: options.url ?? broker!.url,
      deviceId: options.deviceId,
      will: epoch.will(),
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
      ...(options.tls !== undefined ? { tls: options.tls } : {}),
    } as Parameters<typeof connectBus>[0]);
  } catch (e) {
    await broker?.close();
    throw e;
  }
  // Messages dropped unanswered (not CBOR, bad envelope, too large, a request without replyTo).
  const onInvalid = (e: unknown) => {
    if (e instanceof FerryError) log.invalid(e);
  };
  bus.on('invalid', onInvalid);
  const parts: { close(): unknown }[] = [log];
  try {
    const discovery = await Discovery.start(bus, epoch, { log });
    parts.push(discovery);
    const grantor = options.grantor ? await LeaseGrantor.start(bus, { ...options.grantor, log }, clock) : undefined;
    if (grantor) parts.push(grantor);
    const spaces = await SpaceRouter.for(bus, grantor?.options.topicPrefix ?? 'ferry/v1', log);
    parts.push(spaces);
    const client = new LeaseClient(bus, options.client, clock);
    const renewals = new RenewalManager(client, options.renewal, clock);
    parts.push(renewals);
    const alternates = new Alternates(discovery, client, renewals);
    parts.push(alternates);
    const system = options.system && grantor ? await SystemServices.start(bus, grantor, discovery, { ...options.system, log }, clock) : undefined;
    if (system) parts.push(system);
    return {
      bus,
      ...(broker ? { broker } : {}),
      epoch,
      discovery,
      client,
      renewals,
      alternates,
      ...(grantor ? { grantor } : {}),
      ...(system ? { system } : {}),
      spaces,
      log,
      async hostSpace(o) {
        if (!grantor) throw new FerryError('BAD_OPTION', 'this device runs no grantor (options.grantor), so it cannot host a space', { field: 'options.grantor' });
        const host = await SpaceHost.start(bus, grantor, { ...o, discovery, log }, clock);
        parts.push(host);
        return host;
      },
      async offer(o) {
        if (!grantor) throw new FerryError('BAD_OPTION', 'this device runs no grantor (options.grantor), so it cannot offer services', { field: 'options.grantor' });
        if (typeof o.name === 'string' && o.name.startsWith('space.')) {
          throw new FerryError('BAD_OPTION', `offer.name ${JSON.stringify(o.name)}: names starting with "space." are the descriptions of spaces (hostSpace)`, { field: 'offer.name' });
        }
        grantor.offer(o.name, { exclusive: o.exclusive, ...(o.maxHolders !== undefined ? { maxHolders: o.maxHolders } : {}) });
        return discovery.announce(o);
      },
      async withdraw(name) {
        grantor?.withdraw(name);
        await discovery.withdraw(name);
      },
      async close() {
        for (const p of parts.reverse()) await p.close();
        bus.off('invalid', onInvalid);
        await bus.close();
        await broker?.close();
      },
    };
  } catch (e) {
    for (const p of parts.reverse()) await p.close();
    await bus.close();
    await broker?.close();
    throw e instanceof Error ? e : new FerryError('BAD_OPTION', String(e));
  }
}
