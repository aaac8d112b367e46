import { hostname } from 'node:os';
import { OptionReader } from '../../core/options.js';
import { DEVICE_ID_PATTERN } from '../../transports/options.js';
import { LABEL, PROFILE_NAME } from './pairing-messages.js';

/** The bridge's options (`Bridge.start`), each validated on entry naming the field. */
export interface BridgeOptions {
  /** The agent's data directory; the bridge keeps `bridge/identity.key` and `bridge/peers.json` in it. Required. */
  dataDir: string;
  /** This device's id (the agent's). Required. */
  deviceId: string;
  /** This device's hardware profile name, told to peers when pairing. Required. */
  profile: string;
  /** A name the other owner sees when pairing: 0..64 printable characters. Default: the host name. */
  label?: string;
  /** How long one pairing attempt may take, from request to both confirmations, ms. Default 120,000; 1,000..600,000. */
  pairTimeoutMs?: number;
  /** How long a sealed-channel handshake may take, ms. Default 10,000; 100..120,000. */
  handshakeTimeoutMs?: number;
  /** How long a sealed request waits for its answer, ms. Default 10,000; 100..600,000. */
  requestTimeoutMs?: number;
  /** Largest bridge frame sent or accepted, bytes. Default 262,144; 1,024..16,777,216 (and no more than the bus takes). */
  maxFrameBytes?: number;
  /** Largest sealed bulk transfer received, bytes. Default 268,435,456 (256 MiB); 0..4,294,967,295. */
  maxTransferBytes?: number;
  /**
   * The site (broker) this device is on, in a fleet over several brokers: 1..32 of `a-z 0-9 -`,
   * the same for every device on one broker (`ferry broker-config --site`). Announced in the
   * bridge's description and told in a handoff, where a peer of another site makes the origin
   * forward its mailbox (DESIGN.md, "Handoff across brokers"). Default: none (one broker).
   */
  site?: string;
}

export type ResolvedBridgeOptions = Required<Omit<BridgeOptions, 'site'>> & { site: string | undefined };

/** A site's name (`site`): it goes into client ids and a Mosquitto bridge's name. */
export const SITE_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

const KNOWN = ['dataDir', 'deviceId', 'profile', 'label', 'pairTimeoutMs', 'handshakeTimeoutMs', 'requestTimeoutMs', 'maxFrameBytes', 'maxTransferBytes', 'site'];

export function readBridgeOptions(options: BridgeOptions, busMaxMessageBytes: number): ResolvedBridgeOptions {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  r.rejectUnknown(KNOWN);
  return {
    dataDir: r.string('dataDir'),
    deviceId: r.string('deviceId', undefined, DEVICE_ID_PATTERN),
    profile: r.string('profile', undefined, PROFILE_NAME),
    label: r.has('label') ? r.string('label', undefined, LABEL) : hostname().replace(/\p{Cc}/gu, '').slice(0, 64),
    pairTimeoutMs: r.number('pairTimeoutMs', { min: 1000, max: 600_000 }, 120_000),
    handshakeTimeoutMs: r.number('handshakeTimeoutMs', { min: 100, max: 120_000 }, 10_000),
    requestTimeoutMs: r.number('requestTimeoutMs', { min: 100, max: 600_000 }, 10_000),
    maxFrameBytes: r.number('maxFrameBytes', { min: 1024, max: Math.min(16_777_216, busMaxMessageBytes) }, Math.min(262_144, busMaxMessageBytes)),
    maxTransferBytes: r.number('maxTransferBytes', { min: 0, max: 4_294_967_295 }, 268_435_456),
    site: r.has('site') ? r.string('site', undefined, SITE_NAME) : undefined,
  };
}
